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
    __slots__ = ("name", "description", "inputs", "options")
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
    name: str
    description: str
    inputs: str
    options: _containers.ScalarMap[str, str]
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., inputs: _Optional[str] = ..., options: _Optional[_Mapping[str, str]] = ...) -> None: ...

class ListPreprocessorsResponse(_message.Message):
    __slots__ = ("preprocessors",)
    PREPROCESSORS_FIELD_NUMBER: _ClassVar[int]
    preprocessors: _containers.RepeatedCompositeFieldContainer[Preprocessor]
    def __init__(self, preprocessors: _Optional[_Iterable[_Union[Preprocessor, _Mapping]]] = ...) -> None: ...

class PreprocessRequest(_message.Message):
    __slots__ = ("preprocessor", "input", "output", "options")
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
    preprocessor: str
    input: str
    output: str
    options: _containers.ScalarMap[str, str]
    def __init__(self, preprocessor: _Optional[str] = ..., input: _Optional[str] = ..., output: _Optional[str] = ..., options: _Optional[_Mapping[str, str]] = ...) -> None: ...
