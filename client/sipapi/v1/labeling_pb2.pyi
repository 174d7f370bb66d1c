import datetime

from google.protobuf import empty_pb2 as _empty_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from sipapi.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Coordinates(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    COORDINATES_UNSPECIFIED: _ClassVar[Coordinates]
    COORDINATES_PIXEL: _ClassVar[Coordinates]
    COORDINATES_SCENE: _ClassVar[Coordinates]
COORDINATES_UNSPECIFIED: Coordinates
COORDINATES_PIXEL: Coordinates
COORDINATES_SCENE: Coordinates

class Scene(_message.Message):
    __slots__ = ("name", "path", "background_mask", "width", "height", "band_count", "dtype", "band_names", "crs", "transform", "nodata", "create_time", "roi_count", "recipe")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    BACKGROUND_MASK_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    BAND_COUNT_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    BAND_NAMES_FIELD_NUMBER: _ClassVar[int]
    CRS_FIELD_NUMBER: _ClassVar[int]
    TRANSFORM_FIELD_NUMBER: _ClassVar[int]
    NODATA_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    ROI_COUNT_FIELD_NUMBER: _ClassVar[int]
    RECIPE_FIELD_NUMBER: _ClassVar[int]
    name: str
    path: str
    background_mask: str
    width: int
    height: int
    band_count: int
    dtype: str
    band_names: _containers.RepeatedScalarFieldContainer[str]
    crs: str
    transform: _containers.RepeatedScalarFieldContainer[float]
    nodata: float
    create_time: _timestamp_pb2.Timestamp
    roi_count: int
    recipe: str
    def __init__(self, name: _Optional[str] = ..., path: _Optional[str] = ..., background_mask: _Optional[str] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., band_count: _Optional[int] = ..., dtype: _Optional[str] = ..., band_names: _Optional[_Iterable[str]] = ..., crs: _Optional[str] = ..., transform: _Optional[_Iterable[float]] = ..., nodata: _Optional[float] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., roi_count: _Optional[int] = ..., recipe: _Optional[str] = ...) -> None: ...

class CreateSceneRequest(_message.Message):
    __slots__ = ("parent", "scene_id", "scene")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    SCENE_ID_FIELD_NUMBER: _ClassVar[int]
    SCENE_FIELD_NUMBER: _ClassVar[int]
    parent: str
    scene_id: str
    scene: Scene
    def __init__(self, parent: _Optional[str] = ..., scene_id: _Optional[str] = ..., scene: _Optional[_Union[Scene, _Mapping]] = ...) -> None: ...

class GetSceneRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ListScenesRequest(_message.Message):
    __slots__ = ("parent", "page_size", "page_token")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    parent: str
    page_size: int
    page_token: str
    def __init__(self, parent: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListScenesResponse(_message.Message):
    __slots__ = ("scenes", "next_page_token")
    SCENES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    scenes: _containers.RepeatedCompositeFieldContainer[Scene]
    next_page_token: str
    def __init__(self, scenes: _Optional[_Iterable[_Union[Scene, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class DeleteSceneRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class Roi(_message.Message):
    __slots__ = ("name", "class_name", "split", "wkt", "coordinates", "width", "source", "create_time")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CLASS_NAME_FIELD_NUMBER: _ClassVar[int]
    SPLIT_FIELD_NUMBER: _ClassVar[int]
    WKT_FIELD_NUMBER: _ClassVar[int]
    COORDINATES_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    name: str
    class_name: str
    split: _common_pb2.Split
    wkt: str
    coordinates: Coordinates
    width: float
    source: str
    create_time: _timestamp_pb2.Timestamp
    def __init__(self, name: _Optional[str] = ..., class_name: _Optional[str] = ..., split: _Optional[_Union[_common_pb2.Split, str]] = ..., wkt: _Optional[str] = ..., coordinates: _Optional[_Union[Coordinates, str]] = ..., width: _Optional[float] = ..., source: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CreateRoiRequest(_message.Message):
    __slots__ = ("parent", "roi")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    ROI_FIELD_NUMBER: _ClassVar[int]
    parent: str
    roi: Roi
    def __init__(self, parent: _Optional[str] = ..., roi: _Optional[_Union[Roi, _Mapping]] = ...) -> None: ...

class ListRoisRequest(_message.Message):
    __slots__ = ("parent", "split", "class_name", "page_size", "page_token")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    SPLIT_FIELD_NUMBER: _ClassVar[int]
    CLASS_NAME_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    parent: str
    split: _common_pb2.Split
    class_name: str
    page_size: int
    page_token: str
    def __init__(self, parent: _Optional[str] = ..., split: _Optional[_Union[_common_pb2.Split, str]] = ..., class_name: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListRoisResponse(_message.Message):
    __slots__ = ("rois", "next_page_token")
    ROIS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    rois: _containers.RepeatedCompositeFieldContainer[Roi]
    next_page_token: str
    def __init__(self, rois: _Optional[_Iterable[_Union[Roi, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class DeleteRoiRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ImportRoisRequest(_message.Message):
    __slots__ = ("parent", "path", "default_split", "class_field", "split_field", "label_field", "default_width", "replace", "validate_only")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_SPLIT_FIELD_NUMBER: _ClassVar[int]
    CLASS_FIELD_FIELD_NUMBER: _ClassVar[int]
    SPLIT_FIELD_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_WIDTH_FIELD_NUMBER: _ClassVar[int]
    REPLACE_FIELD_NUMBER: _ClassVar[int]
    VALIDATE_ONLY_FIELD_NUMBER: _ClassVar[int]
    parent: str
    path: str
    default_split: _common_pb2.Split
    class_field: str
    split_field: str
    label_field: str
    default_width: float
    replace: bool
    validate_only: bool
    def __init__(self, parent: _Optional[str] = ..., path: _Optional[str] = ..., default_split: _Optional[_Union[_common_pb2.Split, str]] = ..., class_field: _Optional[str] = ..., split_field: _Optional[str] = ..., label_field: _Optional[str] = ..., default_width: _Optional[float] = ..., replace: _Optional[bool] = ..., validate_only: _Optional[bool] = ...) -> None: ...

class ImportRoisResponse(_message.Message):
    __slots__ = ("imported", "objects", "format")
    IMPORTED_FIELD_NUMBER: _ClassVar[int]
    OBJECTS_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    imported: int
    objects: _containers.RepeatedCompositeFieldContainer[_common_pb2.LabelCount]
    format: str
    def __init__(self, imported: _Optional[int] = ..., objects: _Optional[_Iterable[_Union[_common_pb2.LabelCount, _Mapping]]] = ..., format: _Optional[str] = ...) -> None: ...

class ExportRoisRequest(_message.Message):
    __slots__ = ("parent", "path", "coordinates", "overwrite")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    COORDINATES_FIELD_NUMBER: _ClassVar[int]
    OVERWRITE_FIELD_NUMBER: _ClassVar[int]
    parent: str
    path: str
    coordinates: Coordinates
    overwrite: bool
    def __init__(self, parent: _Optional[str] = ..., path: _Optional[str] = ..., coordinates: _Optional[_Union[Coordinates, str]] = ..., overwrite: _Optional[bool] = ...) -> None: ...

class ExportRoisResponse(_message.Message):
    __slots__ = ("path", "count", "geojson")
    PATH_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    GEOJSON_FIELD_NUMBER: _ClassVar[int]
    path: str
    count: int
    geojson: str
    def __init__(self, path: _Optional[str] = ..., count: _Optional[int] = ..., geojson: _Optional[str] = ...) -> None: ...

class ComputeMasksRequest(_message.Message):
    __slots__ = ("parent", "scenes")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    SCENES_FIELD_NUMBER: _ClassVar[int]
    parent: str
    scenes: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, parent: _Optional[str] = ..., scenes: _Optional[_Iterable[str]] = ...) -> None: ...
