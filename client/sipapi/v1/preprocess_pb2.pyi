from sipapi.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class InspectRasterRequest(_message.Message):
    __slots__ = ("path", "statistics")
    PATH_FIELD_NUMBER: _ClassVar[int]
    STATISTICS_FIELD_NUMBER: _ClassVar[int]
    path: str
    statistics: bool
    def __init__(self, path: _Optional[str] = ..., statistics: _Optional[bool] = ...) -> None: ...

class ListPreprocessorsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Preprocessor(_message.Message):
    __slots__ = ("name", "description", "inputs", "options", "option_specs")
    class OptionsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    OPTION_SPECS_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    inputs: str
    options: _containers.ScalarMap[str, str]
    option_specs: _containers.RepeatedCompositeFieldContainer[PreprocessorOption]
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., inputs: _Optional[str] = ..., options: _Optional[_Mapping[str, str]] = ..., option_specs: _Optional[_Iterable[_Union[PreprocessorOption, _Mapping]]] = ...) -> None: ...

class PreprocessorOption(_message.Message):
    __slots__ = ("name", "type", "default", "description", "choices")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    CHOICES_FIELD_NUMBER: _ClassVar[int]
    name: str
    type: str
    default: str
    description: str
    choices: str
    def __init__(self, name: _Optional[str] = ..., type: _Optional[str] = ..., default: _Optional[str] = ..., description: _Optional[str] = ..., choices: _Optional[str] = ...) -> None: ...

class ListPreprocessorsResponse(_message.Message):
    __slots__ = ("preprocessors",)
    PREPROCESSORS_FIELD_NUMBER: _ClassVar[int]
    preprocessors: _containers.RepeatedCompositeFieldContainer[Preprocessor]
    def __init__(self, preprocessors: _Optional[_Iterable[_Union[Preprocessor, _Mapping]]] = ...) -> None: ...

class PreprocessRequest(_message.Message):
    __slots__ = ("preprocessor", "input", "output", "options", "recipe", "overwrite", "project", "scene")
    class OptionsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    PREPROCESSOR_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    RECIPE_FIELD_NUMBER: _ClassVar[int]
    OVERWRITE_FIELD_NUMBER: _ClassVar[int]
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    SCENE_FIELD_NUMBER: _ClassVar[int]
    preprocessor: str
    input: str
    output: str
    options: _containers.ScalarMap[str, str]
    recipe: str
    overwrite: bool
    project: str
    scene: str
    def __init__(self, preprocessor: _Optional[str] = ..., input: _Optional[str] = ..., output: _Optional[str] = ..., options: _Optional[_Mapping[str, str]] = ..., recipe: _Optional[str] = ..., overwrite: _Optional[bool] = ..., project: _Optional[str] = ..., scene: _Optional[str] = ...) -> None: ...

class Recipe(_message.Message):
    __slots__ = ("name", "version", "preprocessor", "options", "description", "create_time", "from_config", "deleted")
    class OptionsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    PREPROCESSOR_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    FROM_CONFIG_FIELD_NUMBER: _ClassVar[int]
    DELETED_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: int
    preprocessor: str
    options: _containers.ScalarMap[str, str]
    description: str
    create_time: float
    from_config: bool
    deleted: bool
    def __init__(self, name: _Optional[str] = ..., version: _Optional[int] = ..., preprocessor: _Optional[str] = ..., options: _Optional[_Mapping[str, str]] = ..., description: _Optional[str] = ..., create_time: _Optional[float] = ..., from_config: _Optional[bool] = ..., deleted: _Optional[bool] = ...) -> None: ...

class CreateRecipeRequest(_message.Message):
    __slots__ = ("recipe_id", "preprocessor", "options", "description", "fit_on")
    class OptionsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    RECIPE_ID_FIELD_NUMBER: _ClassVar[int]
    PREPROCESSOR_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    FIT_ON_FIELD_NUMBER: _ClassVar[int]
    recipe_id: str
    preprocessor: str
    options: _containers.ScalarMap[str, str]
    description: str
    fit_on: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, recipe_id: _Optional[str] = ..., preprocessor: _Optional[str] = ..., options: _Optional[_Mapping[str, str]] = ..., description: _Optional[str] = ..., fit_on: _Optional[_Iterable[str]] = ...) -> None: ...

class GetRecipeRequest(_message.Message):
    __slots__ = ("name", "version")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: int
    def __init__(self, name: _Optional[str] = ..., version: _Optional[int] = ...) -> None: ...

class ListRecipesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListRecipesResponse(_message.Message):
    __slots__ = ("recipes",)
    RECIPES_FIELD_NUMBER: _ClassVar[int]
    recipes: _containers.RepeatedCompositeFieldContainer[Recipe]
    def __init__(self, recipes: _Optional[_Iterable[_Union[Recipe, _Mapping]]] = ...) -> None: ...

class DeleteRecipeRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class DeleteRecipeResponse(_message.Message):
    __slots__ = ("versions",)
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    versions: int
    def __init__(self, versions: _Optional[int] = ...) -> None: ...
