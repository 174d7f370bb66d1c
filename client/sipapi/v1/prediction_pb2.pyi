from sipapi.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RasterEncoding(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RASTER_ENCODING_UNSPECIFIED: _ClassVar[RasterEncoding]
    RASTER_ENCODING_GEOTIFF: _ClassVar[RasterEncoding]
    RASTER_ENCODING_RAW: _ClassVar[RasterEncoding]
RASTER_ENCODING_UNSPECIFIED: RasterEncoding
RASTER_ENCODING_GEOTIFF: RasterEncoding
RASTER_ENCODING_RAW: RasterEncoding

class PredictRequest(_message.Message):
    __slots__ = ("model", "inputs", "output", "confidence", "probabilities", "quicklook", "background_mask", "tile_size", "batch_size", "overwrite", "confidence_path", "recipe", "uncertainty", "uncertainty_path")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    PROBABILITIES_FIELD_NUMBER: _ClassVar[int]
    QUICKLOOK_FIELD_NUMBER: _ClassVar[int]
    BACKGROUND_MASK_FIELD_NUMBER: _ClassVar[int]
    TILE_SIZE_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    OVERWRITE_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_PATH_FIELD_NUMBER: _ClassVar[int]
    RECIPE_FIELD_NUMBER: _ClassVar[int]
    UNCERTAINTY_FIELD_NUMBER: _ClassVar[int]
    UNCERTAINTY_PATH_FIELD_NUMBER: _ClassVar[int]
    model: str
    inputs: _containers.RepeatedScalarFieldContainer[str]
    output: str
    confidence: bool
    probabilities: bool
    quicklook: bool
    background_mask: str
    tile_size: int
    batch_size: int
    overwrite: bool
    confidence_path: str
    recipe: str
    uncertainty: bool
    uncertainty_path: str
    def __init__(self, model: _Optional[str] = ..., inputs: _Optional[_Iterable[str]] = ..., output: _Optional[str] = ..., confidence: _Optional[bool] = ..., probabilities: _Optional[bool] = ..., quicklook: _Optional[bool] = ..., background_mask: _Optional[str] = ..., tile_size: _Optional[int] = ..., batch_size: _Optional[int] = ..., overwrite: _Optional[bool] = ..., confidence_path: _Optional[str] = ..., recipe: _Optional[str] = ..., uncertainty: _Optional[bool] = ..., uncertainty_path: _Optional[str] = ...) -> None: ...

class SuggestRequest(_message.Message):
    __slots__ = ("model", "scenes", "n", "size", "min_distance", "tile_size", "batch_size")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    SCENES_FIELD_NUMBER: _ClassVar[int]
    N_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    MIN_DISTANCE_FIELD_NUMBER: _ClassVar[int]
    TILE_SIZE_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    model: str
    scenes: _containers.RepeatedScalarFieldContainer[str]
    n: int
    size: int
    min_distance: int
    tile_size: int
    batch_size: int
    def __init__(self, model: _Optional[str] = ..., scenes: _Optional[_Iterable[str]] = ..., n: _Optional[int] = ..., size: _Optional[int] = ..., min_distance: _Optional[int] = ..., tile_size: _Optional[int] = ..., batch_size: _Optional[int] = ...) -> None: ...

class PredictStreamHeader(_message.Message):
    __slots__ = ("model", "encoding", "total_bytes", "shape", "dtype", "nodata", "confidence")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    ENCODING_FIELD_NUMBER: _ClassVar[int]
    TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    NODATA_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    model: str
    encoding: RasterEncoding
    total_bytes: int
    shape: _containers.RepeatedScalarFieldContainer[int]
    dtype: str
    nodata: float
    confidence: bool
    def __init__(self, model: _Optional[str] = ..., encoding: _Optional[_Union[RasterEncoding, str]] = ..., total_bytes: _Optional[int] = ..., shape: _Optional[_Iterable[int]] = ..., dtype: _Optional[str] = ..., nodata: _Optional[float] = ..., confidence: _Optional[bool] = ...) -> None: ...

class PredictStreamRequest(_message.Message):
    __slots__ = ("header", "chunk")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    header: PredictStreamHeader
    chunk: bytes
    def __init__(self, header: _Optional[_Union[PredictStreamHeader, _Mapping]] = ..., chunk: _Optional[bytes] = ...) -> None: ...

class PredictStreamResult(_message.Message):
    __slots__ = ("prediction", "label_bytes", "confidence_bytes")
    PREDICTION_FIELD_NUMBER: _ClassVar[int]
    LABEL_BYTES_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_BYTES_FIELD_NUMBER: _ClassVar[int]
    prediction: _common_pb2.ScenePrediction
    label_bytes: int
    confidence_bytes: int
    def __init__(self, prediction: _Optional[_Union[_common_pb2.ScenePrediction, _Mapping]] = ..., label_bytes: _Optional[int] = ..., confidence_bytes: _Optional[int] = ...) -> None: ...

class PredictStreamResponse(_message.Message):
    __slots__ = ("result", "chunk")
    RESULT_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    result: PredictStreamResult
    chunk: bytes
    def __init__(self, result: _Optional[_Union[PredictStreamResult, _Mapping]] = ..., chunk: _Optional[bytes] = ...) -> None: ...
