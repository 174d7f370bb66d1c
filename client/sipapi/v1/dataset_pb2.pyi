import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from sipapi.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PrepareDatasetRequest(_message.Message):
    __slots__ = ("parent", "chip_size")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    CHIP_SIZE_FIELD_NUMBER: _ClassVar[int]
    parent: str
    chip_size: int
    def __init__(self, parent: _Optional[str] = ..., chip_size: _Optional[int] = ...) -> None: ...

class GetDatasetRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class Dataset(_message.Message):
    __slots__ = ("name", "chips", "chip_size", "labeled_pixels", "normalization_mean", "normalization_std", "scenes", "create_time", "stale")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CHIPS_FIELD_NUMBER: _ClassVar[int]
    CHIP_SIZE_FIELD_NUMBER: _ClassVar[int]
    LABELED_PIXELS_FIELD_NUMBER: _ClassVar[int]
    NORMALIZATION_MEAN_FIELD_NUMBER: _ClassVar[int]
    NORMALIZATION_STD_FIELD_NUMBER: _ClassVar[int]
    SCENES_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    STALE_FIELD_NUMBER: _ClassVar[int]
    name: str
    chips: int
    chip_size: int
    labeled_pixels: _containers.RepeatedCompositeFieldContainer[_common_pb2.LabelCount]
    normalization_mean: _containers.RepeatedScalarFieldContainer[float]
    normalization_std: _containers.RepeatedScalarFieldContainer[float]
    scenes: _containers.RepeatedScalarFieldContainer[str]
    create_time: _timestamp_pb2.Timestamp
    stale: bool
    def __init__(self, name: _Optional[str] = ..., chips: _Optional[int] = ..., chip_size: _Optional[int] = ..., labeled_pixels: _Optional[_Iterable[_Union[_common_pb2.LabelCount, _Mapping]]] = ..., normalization_mean: _Optional[_Iterable[float]] = ..., normalization_std: _Optional[_Iterable[float]] = ..., scenes: _Optional[_Iterable[str]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., stale: _Optional[bool] = ...) -> None: ...
