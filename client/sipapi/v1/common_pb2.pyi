import datetime

from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Split(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SPLIT_UNSPECIFIED: _ClassVar[Split]
    SPLIT_TRAIN: _ClassVar[Split]
    SPLIT_VAL: _ClassVar[Split]
    SPLIT_TEST: _ClassVar[Split]
SPLIT_UNSPECIFIED: Split
SPLIT_TRAIN: Split
SPLIT_VAL: Split
SPLIT_TEST: Split

class ClassDef(_message.Message):
    __slots__ = ("value", "name", "color")
    VALUE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    COLOR_FIELD_NUMBER: _ClassVar[int]
    value: int
    name: str
    color: str
    def __init__(self, value: _Optional[int] = ..., name: _Optional[str] = ..., color: _Optional[str] = ...) -> None: ...

class LabelCount(_message.Message):
    __slots__ = ("class_name", "split", "pixels")
    CLASS_NAME_FIELD_NUMBER: _ClassVar[int]
    SPLIT_FIELD_NUMBER: _ClassVar[int]
    PIXELS_FIELD_NUMBER: _ClassVar[int]
    class_name: str
    split: Split
    pixels: int
    def __init__(self, class_name: _Optional[str] = ..., split: _Optional[_Union[Split, str]] = ..., pixels: _Optional[int] = ...) -> None: ...

class Job(_message.Message):
    __slots__ = ("name", "type", "state", "project", "create_time", "start_time", "end_time", "progress", "error", "error_code", "params", "source", "inspect", "diagnostics", "prepare", "train", "test", "predict", "export", "preprocess", "masks", "suggest")
    class State(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        STATE_UNSPECIFIED: _ClassVar[Job.State]
        QUEUED: _ClassVar[Job.State]
        RUNNING: _ClassVar[Job.State]
        SUCCEEDED: _ClassVar[Job.State]
        FAILED: _ClassVar[Job.State]
        CANCELLED: _ClassVar[Job.State]
    STATE_UNSPECIFIED: Job.State
    QUEUED: Job.State
    RUNNING: Job.State
    SUCCEEDED: Job.State
    FAILED: Job.State
    CANCELLED: Job.State
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    ERROR_CODE_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    INSPECT_FIELD_NUMBER: _ClassVar[int]
    DIAGNOSTICS_FIELD_NUMBER: _ClassVar[int]
    PREPARE_FIELD_NUMBER: _ClassVar[int]
    TRAIN_FIELD_NUMBER: _ClassVar[int]
    TEST_FIELD_NUMBER: _ClassVar[int]
    PREDICT_FIELD_NUMBER: _ClassVar[int]
    EXPORT_FIELD_NUMBER: _ClassVar[int]
    PREPROCESS_FIELD_NUMBER: _ClassVar[int]
    MASKS_FIELD_NUMBER: _ClassVar[int]
    SUGGEST_FIELD_NUMBER: _ClassVar[int]
    name: str
    type: str
    state: Job.State
    project: str
    create_time: _timestamp_pb2.Timestamp
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    progress: JobProgress
    error: str
    error_code: str
    params: _struct_pb2.Struct
    source: str
    inspect: InspectResult
    diagnostics: DiagnosticsResult
    prepare: PrepareResult
    train: TrainResult
    test: AccuracyReport
    predict: PredictResult
    export: ExportResult
    preprocess: PreprocessResult
    masks: MaskSummary
    suggest: SuggestResult
    def __init__(self, name: _Optional[str] = ..., type: _Optional[str] = ..., state: _Optional[_Union[Job.State, str]] = ..., project: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., progress: _Optional[_Union[JobProgress, _Mapping]] = ..., error: _Optional[str] = ..., error_code: _Optional[str] = ..., params: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., source: _Optional[str] = ..., inspect: _Optional[_Union[InspectResult, _Mapping]] = ..., diagnostics: _Optional[_Union[DiagnosticsResult, _Mapping]] = ..., prepare: _Optional[_Union[PrepareResult, _Mapping]] = ..., train: _Optional[_Union[TrainResult, _Mapping]] = ..., test: _Optional[_Union[AccuracyReport, _Mapping]] = ..., predict: _Optional[_Union[PredictResult, _Mapping]] = ..., export: _Optional[_Union[ExportResult, _Mapping]] = ..., preprocess: _Optional[_Union[PreprocessResult, _Mapping]] = ..., masks: _Optional[_Union[MaskSummary, _Mapping]] = ..., suggest: _Optional[_Union[SuggestResult, _Mapping]] = ...) -> None: ...

class JobProgress(_message.Message):
    __slots__ = ("stage", "fraction", "message", "metrics", "eta_seconds", "update_time")
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    STAGE_FIELD_NUMBER: _ClassVar[int]
    FRACTION_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    ETA_SECONDS_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    stage: str
    fraction: float
    message: str
    metrics: _containers.ScalarMap[str, float]
    eta_seconds: float
    update_time: _timestamp_pb2.Timestamp
    def __init__(self, stage: _Optional[str] = ..., fraction: _Optional[float] = ..., message: _Optional[str] = ..., metrics: _Optional[_Mapping[str, float]] = ..., eta_seconds: _Optional[float] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class JobEvent(_message.Message):
    __slots__ = ("job", "sequence")
    JOB_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    job: Job
    sequence: int
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ..., sequence: _Optional[int] = ...) -> None: ...

class RasterInfo(_message.Message):
    __slots__ = ("path", "driver", "width", "height", "band_count", "dtype", "band_names", "crs", "transform", "nodata", "block_shape")
    PATH_FIELD_NUMBER: _ClassVar[int]
    DRIVER_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    BAND_COUNT_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    BAND_NAMES_FIELD_NUMBER: _ClassVar[int]
    CRS_FIELD_NUMBER: _ClassVar[int]
    TRANSFORM_FIELD_NUMBER: _ClassVar[int]
    NODATA_FIELD_NUMBER: _ClassVar[int]
    BLOCK_SHAPE_FIELD_NUMBER: _ClassVar[int]
    path: str
    driver: str
    width: int
    height: int
    band_count: int
    dtype: str
    band_names: _containers.RepeatedScalarFieldContainer[str]
    crs: str
    transform: _containers.RepeatedScalarFieldContainer[float]
    nodata: float
    block_shape: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, path: _Optional[str] = ..., driver: _Optional[str] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., band_count: _Optional[int] = ..., dtype: _Optional[str] = ..., band_names: _Optional[_Iterable[str]] = ..., crs: _Optional[str] = ..., transform: _Optional[_Iterable[float]] = ..., nodata: _Optional[float] = ..., block_shape: _Optional[_Iterable[int]] = ...) -> None: ...

class BandStatistics(_message.Message):
    __slots__ = ("band", "valid_pixels", "min", "max", "mean", "std")
    BAND_FIELD_NUMBER: _ClassVar[int]
    VALID_PIXELS_FIELD_NUMBER: _ClassVar[int]
    MIN_FIELD_NUMBER: _ClassVar[int]
    MAX_FIELD_NUMBER: _ClassVar[int]
    MEAN_FIELD_NUMBER: _ClassVar[int]
    STD_FIELD_NUMBER: _ClassVar[int]
    band: int
    valid_pixels: int
    min: float
    max: float
    mean: float
    std: float
    def __init__(self, band: _Optional[int] = ..., valid_pixels: _Optional[int] = ..., min: _Optional[float] = ..., max: _Optional[float] = ..., mean: _Optional[float] = ..., std: _Optional[float] = ...) -> None: ...

class InspectResult(_message.Message):
    __slots__ = ("info", "statistics")
    INFO_FIELD_NUMBER: _ClassVar[int]
    STATISTICS_FIELD_NUMBER: _ClassVar[int]
    info: RasterInfo
    statistics: _containers.RepeatedCompositeFieldContainer[BandStatistics]
    def __init__(self, info: _Optional[_Union[RasterInfo, _Mapping]] = ..., statistics: _Optional[_Iterable[_Union[BandStatistics, _Mapping]]] = ...) -> None: ...

class DiagnosticsResult(_message.Message):
    __slots__ = ("device", "device_name", "gflops", "iterations", "seconds", "onnxruntime_providers", "torch_version", "onnxruntime_version")
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    DEVICE_NAME_FIELD_NUMBER: _ClassVar[int]
    GFLOPS_FIELD_NUMBER: _ClassVar[int]
    ITERATIONS_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    ONNXRUNTIME_PROVIDERS_FIELD_NUMBER: _ClassVar[int]
    TORCH_VERSION_FIELD_NUMBER: _ClassVar[int]
    ONNXRUNTIME_VERSION_FIELD_NUMBER: _ClassVar[int]
    device: str
    device_name: str
    gflops: float
    iterations: int
    seconds: float
    onnxruntime_providers: _containers.RepeatedScalarFieldContainer[str]
    torch_version: str
    onnxruntime_version: str
    def __init__(self, device: _Optional[str] = ..., device_name: _Optional[str] = ..., gflops: _Optional[float] = ..., iterations: _Optional[int] = ..., seconds: _Optional[float] = ..., onnxruntime_providers: _Optional[_Iterable[str]] = ..., torch_version: _Optional[str] = ..., onnxruntime_version: _Optional[str] = ...) -> None: ...

class PrepareResult(_message.Message):
    __slots__ = ("chips", "chip_size", "labeled_pixels", "normalization_mean", "normalization_std", "scenes")
    CHIPS_FIELD_NUMBER: _ClassVar[int]
    CHIP_SIZE_FIELD_NUMBER: _ClassVar[int]
    LABELED_PIXELS_FIELD_NUMBER: _ClassVar[int]
    NORMALIZATION_MEAN_FIELD_NUMBER: _ClassVar[int]
    NORMALIZATION_STD_FIELD_NUMBER: _ClassVar[int]
    SCENES_FIELD_NUMBER: _ClassVar[int]
    chips: int
    chip_size: int
    labeled_pixels: _containers.RepeatedCompositeFieldContainer[LabelCount]
    normalization_mean: _containers.RepeatedScalarFieldContainer[float]
    normalization_std: _containers.RepeatedScalarFieldContainer[float]
    scenes: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, chips: _Optional[int] = ..., chip_size: _Optional[int] = ..., labeled_pixels: _Optional[_Iterable[_Union[LabelCount, _Mapping]]] = ..., normalization_mean: _Optional[_Iterable[float]] = ..., normalization_std: _Optional[_Iterable[float]] = ..., scenes: _Optional[_Iterable[str]] = ...) -> None: ...

class EpochMetrics(_message.Message):
    __slots__ = ("epoch", "loss", "train_accuracy", "val_accuracy")
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    LOSS_FIELD_NUMBER: _ClassVar[int]
    TRAIN_ACCURACY_FIELD_NUMBER: _ClassVar[int]
    VAL_ACCURACY_FIELD_NUMBER: _ClassVar[int]
    epoch: int
    loss: float
    train_accuracy: float
    val_accuracy: float
    def __init__(self, epoch: _Optional[int] = ..., loss: _Optional[float] = ..., train_accuracy: _Optional[float] = ..., val_accuracy: _Optional[float] = ...) -> None: ...

class TrainResult(_message.Message):
    __slots__ = ("model", "version", "epochs_run", "best_epoch", "best_val_accuracy", "history", "onnx_max_abs_diff", "seconds")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    EPOCHS_RUN_FIELD_NUMBER: _ClassVar[int]
    BEST_EPOCH_FIELD_NUMBER: _ClassVar[int]
    BEST_VAL_ACCURACY_FIELD_NUMBER: _ClassVar[int]
    HISTORY_FIELD_NUMBER: _ClassVar[int]
    ONNX_MAX_ABS_DIFF_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    model: str
    version: int
    epochs_run: int
    best_epoch: int
    best_val_accuracy: float
    history: _containers.RepeatedCompositeFieldContainer[EpochMetrics]
    onnx_max_abs_diff: float
    seconds: float
    def __init__(self, model: _Optional[str] = ..., version: _Optional[int] = ..., epochs_run: _Optional[int] = ..., best_epoch: _Optional[int] = ..., best_val_accuracy: _Optional[float] = ..., history: _Optional[_Iterable[_Union[EpochMetrics, _Mapping]]] = ..., onnx_max_abs_diff: _Optional[float] = ..., seconds: _Optional[float] = ...) -> None: ...

class ClassAccuracy(_message.Message):
    __slots__ = ("value", "name", "precision", "recall", "f1", "iou", "support")
    VALUE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    PRECISION_FIELD_NUMBER: _ClassVar[int]
    RECALL_FIELD_NUMBER: _ClassVar[int]
    F1_FIELD_NUMBER: _ClassVar[int]
    IOU_FIELD_NUMBER: _ClassVar[int]
    SUPPORT_FIELD_NUMBER: _ClassVar[int]
    value: int
    name: str
    precision: float
    recall: float
    f1: float
    iou: float
    support: int
    def __init__(self, value: _Optional[int] = ..., name: _Optional[str] = ..., precision: _Optional[float] = ..., recall: _Optional[float] = ..., f1: _Optional[float] = ..., iou: _Optional[float] = ..., support: _Optional[int] = ...) -> None: ...

class ConfusionRow(_message.Message):
    __slots__ = ("counts",)
    COUNTS_FIELD_NUMBER: _ClassVar[int]
    counts: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, counts: _Optional[_Iterable[int]] = ...) -> None: ...

class AccuracyReport(_message.Message):
    __slots__ = ("model", "overall_accuracy", "kappa", "per_class", "confusion_matrix", "class_names", "pixels", "scenes")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    OVERALL_ACCURACY_FIELD_NUMBER: _ClassVar[int]
    KAPPA_FIELD_NUMBER: _ClassVar[int]
    PER_CLASS_FIELD_NUMBER: _ClassVar[int]
    CONFUSION_MATRIX_FIELD_NUMBER: _ClassVar[int]
    CLASS_NAMES_FIELD_NUMBER: _ClassVar[int]
    PIXELS_FIELD_NUMBER: _ClassVar[int]
    SCENES_FIELD_NUMBER: _ClassVar[int]
    model: str
    overall_accuracy: float
    kappa: float
    per_class: _containers.RepeatedCompositeFieldContainer[ClassAccuracy]
    confusion_matrix: _containers.RepeatedCompositeFieldContainer[ConfusionRow]
    class_names: _containers.RepeatedScalarFieldContainer[str]
    pixels: int
    scenes: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, model: _Optional[str] = ..., overall_accuracy: _Optional[float] = ..., kappa: _Optional[float] = ..., per_class: _Optional[_Iterable[_Union[ClassAccuracy, _Mapping]]] = ..., confusion_matrix: _Optional[_Iterable[_Union[ConfusionRow, _Mapping]]] = ..., class_names: _Optional[_Iterable[str]] = ..., pixels: _Optional[int] = ..., scenes: _Optional[_Iterable[str]] = ...) -> None: ...

class ScenePrediction(_message.Message):
    __slots__ = ("input", "output", "confidence", "probabilities", "quicklook", "width", "height", "pixels", "class_pixels", "class_area_m2", "seconds", "mpx_per_s", "preprocessed", "recipe", "warnings", "uncertainty", "mean_uncertainty", "uncertain_share")
    class ClassPixelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    class ClassAreaM2Entry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    INPUT_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    PROBABILITIES_FIELD_NUMBER: _ClassVar[int]
    QUICKLOOK_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    PIXELS_FIELD_NUMBER: _ClassVar[int]
    CLASS_PIXELS_FIELD_NUMBER: _ClassVar[int]
    CLASS_AREA_M2_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    MPX_PER_S_FIELD_NUMBER: _ClassVar[int]
    PREPROCESSED_FIELD_NUMBER: _ClassVar[int]
    RECIPE_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    UNCERTAINTY_FIELD_NUMBER: _ClassVar[int]
    MEAN_UNCERTAINTY_FIELD_NUMBER: _ClassVar[int]
    UNCERTAIN_SHARE_FIELD_NUMBER: _ClassVar[int]
    input: str
    output: str
    confidence: str
    probabilities: str
    quicklook: str
    width: int
    height: int
    pixels: int
    class_pixels: _containers.ScalarMap[str, int]
    class_area_m2: _containers.ScalarMap[str, float]
    seconds: float
    mpx_per_s: float
    preprocessed: str
    recipe: str
    warnings: _containers.RepeatedScalarFieldContainer[str]
    uncertainty: str
    mean_uncertainty: float
    uncertain_share: float
    def __init__(self, input: _Optional[str] = ..., output: _Optional[str] = ..., confidence: _Optional[str] = ..., probabilities: _Optional[str] = ..., quicklook: _Optional[str] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., pixels: _Optional[int] = ..., class_pixels: _Optional[_Mapping[str, int]] = ..., class_area_m2: _Optional[_Mapping[str, float]] = ..., seconds: _Optional[float] = ..., mpx_per_s: _Optional[float] = ..., preprocessed: _Optional[str] = ..., recipe: _Optional[str] = ..., warnings: _Optional[_Iterable[str]] = ..., uncertainty: _Optional[str] = ..., mean_uncertainty: _Optional[float] = ..., uncertain_share: _Optional[float] = ...) -> None: ...

class PredictResult(_message.Message):
    __slots__ = ("model", "scenes", "provider", "seconds")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    SCENES_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    model: str
    scenes: _containers.RepeatedCompositeFieldContainer[ScenePrediction]
    provider: str
    seconds: float
    def __init__(self, model: _Optional[str] = ..., scenes: _Optional[_Iterable[_Union[ScenePrediction, _Mapping]]] = ..., provider: _Optional[str] = ..., seconds: _Optional[float] = ...) -> None: ...

class ExportResult(_message.Message):
    __slots__ = ("model", "files", "max_abs_diff", "source_model")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    FILES_FIELD_NUMBER: _ClassVar[int]
    MAX_ABS_DIFF_FIELD_NUMBER: _ClassVar[int]
    SOURCE_MODEL_FIELD_NUMBER: _ClassVar[int]
    model: str
    files: _containers.RepeatedScalarFieldContainer[str]
    max_abs_diff: float
    source_model: str
    def __init__(self, model: _Optional[str] = ..., files: _Optional[_Iterable[str]] = ..., max_abs_diff: _Optional[float] = ..., source_model: _Optional[str] = ...) -> None: ...

class PreprocessResult(_message.Message):
    __slots__ = ("preprocessor", "outputs", "info", "metadata", "step_seconds", "seconds", "recipe", "recipe_version", "scene", "input")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class StepSecondsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    PREPROCESSOR_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    INFO_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    STEP_SECONDS_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    RECIPE_FIELD_NUMBER: _ClassVar[int]
    RECIPE_VERSION_FIELD_NUMBER: _ClassVar[int]
    SCENE_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    preprocessor: str
    outputs: _containers.RepeatedScalarFieldContainer[str]
    info: RasterInfo
    metadata: _containers.ScalarMap[str, str]
    step_seconds: _containers.ScalarMap[str, float]
    seconds: float
    recipe: str
    recipe_version: int
    scene: str
    input: str
    def __init__(self, preprocessor: _Optional[str] = ..., outputs: _Optional[_Iterable[str]] = ..., info: _Optional[_Union[RasterInfo, _Mapping]] = ..., metadata: _Optional[_Mapping[str, str]] = ..., step_seconds: _Optional[_Mapping[str, float]] = ..., seconds: _Optional[float] = ..., recipe: _Optional[str] = ..., recipe_version: _Optional[int] = ..., scene: _Optional[str] = ..., input: _Optional[str] = ...) -> None: ...

class SceneMasks(_message.Message):
    __slots__ = ("scene", "paths", "counts", "conflicting_pixels", "pixels_in_several_splits")
    class PathsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    SCENE_FIELD_NUMBER: _ClassVar[int]
    PATHS_FIELD_NUMBER: _ClassVar[int]
    COUNTS_FIELD_NUMBER: _ClassVar[int]
    CONFLICTING_PIXELS_FIELD_NUMBER: _ClassVar[int]
    PIXELS_IN_SEVERAL_SPLITS_FIELD_NUMBER: _ClassVar[int]
    scene: str
    paths: _containers.ScalarMap[str, str]
    counts: _containers.RepeatedCompositeFieldContainer[LabelCount]
    conflicting_pixels: int
    pixels_in_several_splits: int
    def __init__(self, scene: _Optional[str] = ..., paths: _Optional[_Mapping[str, str]] = ..., counts: _Optional[_Iterable[_Union[LabelCount, _Mapping]]] = ..., conflicting_pixels: _Optional[int] = ..., pixels_in_several_splits: _Optional[int] = ...) -> None: ...

class MaskSummary(_message.Message):
    __slots__ = ("scenes", "totals")
    SCENES_FIELD_NUMBER: _ClassVar[int]
    TOTALS_FIELD_NUMBER: _ClassVar[int]
    scenes: _containers.RepeatedCompositeFieldContainer[SceneMasks]
    totals: _containers.RepeatedCompositeFieldContainer[LabelCount]
    def __init__(self, scenes: _Optional[_Iterable[_Union[SceneMasks, _Mapping]]] = ..., totals: _Optional[_Iterable[_Union[LabelCount, _Mapping]]] = ...) -> None: ...

class SuggestedRegion(_message.Message):
    __slots__ = ("rank", "scene", "row", "col", "size", "uncertainty", "class_mix", "majority_class")
    class ClassMixEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    RANK_FIELD_NUMBER: _ClassVar[int]
    SCENE_FIELD_NUMBER: _ClassVar[int]
    ROW_FIELD_NUMBER: _ClassVar[int]
    COL_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    UNCERTAINTY_FIELD_NUMBER: _ClassVar[int]
    CLASS_MIX_FIELD_NUMBER: _ClassVar[int]
    MAJORITY_CLASS_FIELD_NUMBER: _ClassVar[int]
    rank: int
    scene: str
    row: int
    col: int
    size: int
    uncertainty: float
    class_mix: _containers.ScalarMap[str, float]
    majority_class: str
    def __init__(self, rank: _Optional[int] = ..., scene: _Optional[str] = ..., row: _Optional[int] = ..., col: _Optional[int] = ..., size: _Optional[int] = ..., uncertainty: _Optional[float] = ..., class_mix: _Optional[_Mapping[str, float]] = ..., majority_class: _Optional[str] = ...) -> None: ...

class SuggestResult(_message.Message):
    __slots__ = ("model", "regions", "geojson", "scenes", "candidates", "seconds")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    REGIONS_FIELD_NUMBER: _ClassVar[int]
    GEOJSON_FIELD_NUMBER: _ClassVar[int]
    SCENES_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    model: str
    regions: _containers.RepeatedCompositeFieldContainer[SuggestedRegion]
    geojson: str
    scenes: _containers.RepeatedScalarFieldContainer[str]
    candidates: int
    seconds: float
    def __init__(self, model: _Optional[str] = ..., regions: _Optional[_Iterable[_Union[SuggestedRegion, _Mapping]]] = ..., geojson: _Optional[str] = ..., scenes: _Optional[_Iterable[str]] = ..., candidates: _Optional[int] = ..., seconds: _Optional[float] = ...) -> None: ...
