import datetime

from google.protobuf import empty_pb2 as _empty_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from sipapi.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TrainRequest(_message.Message):
    __slots__ = ("parent", "arch", "epochs", "batch_size", "learning_rate", "seed", "class_weights", "balanced_class_weights", "no_augment", "patience", "chip_size", "steps_per_epoch", "no_prior_correction")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    ARCH_FIELD_NUMBER: _ClassVar[int]
    EPOCHS_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    LEARNING_RATE_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    CLASS_WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    BALANCED_CLASS_WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    NO_AUGMENT_FIELD_NUMBER: _ClassVar[int]
    PATIENCE_FIELD_NUMBER: _ClassVar[int]
    CHIP_SIZE_FIELD_NUMBER: _ClassVar[int]
    STEPS_PER_EPOCH_FIELD_NUMBER: _ClassVar[int]
    NO_PRIOR_CORRECTION_FIELD_NUMBER: _ClassVar[int]
    parent: str
    arch: str
    epochs: int
    batch_size: int
    learning_rate: float
    seed: int
    class_weights: _containers.RepeatedScalarFieldContainer[float]
    balanced_class_weights: bool
    no_augment: bool
    patience: int
    chip_size: int
    steps_per_epoch: int
    no_prior_correction: bool
    def __init__(self, parent: _Optional[str] = ..., arch: _Optional[str] = ..., epochs: _Optional[int] = ..., batch_size: _Optional[int] = ..., learning_rate: _Optional[float] = ..., seed: _Optional[int] = ..., class_weights: _Optional[_Iterable[float]] = ..., balanced_class_weights: _Optional[bool] = ..., no_augment: _Optional[bool] = ..., patience: _Optional[int] = ..., chip_size: _Optional[int] = ..., steps_per_epoch: _Optional[int] = ..., no_prior_correction: _Optional[bool] = ...) -> None: ...

class TestRequest(_message.Message):
    __slots__ = ("model", "scenes")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    SCENES_FIELD_NUMBER: _ClassVar[int]
    model: str
    scenes: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, model: _Optional[str] = ..., scenes: _Optional[_Iterable[str]] = ...) -> None: ...

class ExportModelRequest(_message.Message):
    __slots__ = ("name", "fp16")
    NAME_FIELD_NUMBER: _ClassVar[int]
    FP16_FIELD_NUMBER: _ClassVar[int]
    name: str
    fp16: bool
    def __init__(self, name: _Optional[str] = ..., fp16: _Optional[bool] = ...) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ("parent", "page_size", "page_token")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    parent: str
    page_size: int
    page_token: str
    def __init__(self, parent: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("models", "next_page_token")
    MODELS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[Model]
    next_page_token: str
    def __init__(self, models: _Optional[_Iterable[_Union[Model, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetModelRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class DeleteModelRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class Model(_message.Message):
    __slots__ = ("name", "version", "create_time", "path", "arch", "classes", "bands", "tile_size", "tile_halo", "training", "test", "model_yaml", "derived_from", "evaluations", "recipe")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    ARCH_FIELD_NUMBER: _ClassVar[int]
    CLASSES_FIELD_NUMBER: _ClassVar[int]
    BANDS_FIELD_NUMBER: _ClassVar[int]
    TILE_SIZE_FIELD_NUMBER: _ClassVar[int]
    TILE_HALO_FIELD_NUMBER: _ClassVar[int]
    TRAINING_FIELD_NUMBER: _ClassVar[int]
    TEST_FIELD_NUMBER: _ClassVar[int]
    MODEL_YAML_FIELD_NUMBER: _ClassVar[int]
    DERIVED_FROM_FIELD_NUMBER: _ClassVar[int]
    EVALUATIONS_FIELD_NUMBER: _ClassVar[int]
    RECIPE_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: int
    create_time: _timestamp_pb2.Timestamp
    path: str
    arch: str
    classes: _containers.RepeatedCompositeFieldContainer[_common_pb2.ClassDef]
    bands: _containers.RepeatedScalarFieldContainer[str]
    tile_size: int
    tile_halo: int
    training: _common_pb2.TrainResult
    test: _common_pb2.AccuracyReport
    model_yaml: str
    derived_from: str
    evaluations: _containers.RepeatedCompositeFieldContainer[_common_pb2.AccuracyReport]
    recipe: str
    def __init__(self, name: _Optional[str] = ..., version: _Optional[int] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., path: _Optional[str] = ..., arch: _Optional[str] = ..., classes: _Optional[_Iterable[_Union[_common_pb2.ClassDef, _Mapping]]] = ..., bands: _Optional[_Iterable[str]] = ..., tile_size: _Optional[int] = ..., tile_halo: _Optional[int] = ..., training: _Optional[_Union[_common_pb2.TrainResult, _Mapping]] = ..., test: _Optional[_Union[_common_pb2.AccuracyReport, _Mapping]] = ..., model_yaml: _Optional[str] = ..., derived_from: _Optional[str] = ..., evaluations: _Optional[_Iterable[_Union[_common_pb2.AccuracyReport, _Mapping]]] = ..., recipe: _Optional[str] = ...) -> None: ...
