"""Params and results of every job type: built once by the daemon, run typed by the worker.

A job's params are built in one place per type (sipd.job_requests), validated
when built, stored in the job row as JSON (with `schema_version`), parsed back
into the same type by the worker, and its result comes back the same way.
Servicers map results to proto messages field by field (sipd.services.job_results).

The worker never invents API names: results carry scene ids, model version
numbers and `Split` values; resource names ("projects/p/scenes/s") and proto
enum names ("SPLIT_TRAIN") are made by the servicers.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from sipd.contracts.base import Contract
from sipd.contracts.preprocessing import PreprocessStep
from sipd.errors import InvalidArgument
from sipd.nets.catalog import TRAIN_ARCHS

# Bumped when a params or result shape changes incompatibly; `upgrade_params`
# turns rows written under an older version into the current one.
SCHEMA_VERSION = 1


class Split(StrEnum):
    TRAIN = "train"
    VAL = "val"
    TEST = "test"


# -- pieces shared by several job types ------------------------------------------------


class ClassDef(Contract):
    value: int = Field(ge=1, le=254)
    name: str
    color: str = ""


class RasterInfo(Contract):
    """Metadata of a raster (sipd.raster.raster_info)."""

    path: str
    driver: str
    width: int
    height: int
    band_count: int
    dtype: str
    band_names: list[str]
    crs: str = ""
    transform: list[float]
    nodata: float | None = None
    block_shape: list[int] = []
    pixel_size: list[float] = []


class RoiSnapshot(Contract):
    """One stored ROI in pixel coordinates (WKT) with its brush width."""

    class_name: str
    split: Split
    wkt: str
    width: float = Field(ge=0)


class SceneSnapshot(Contract):
    name: str
    path: str
    background_mask: str = ""
    info: RasterInfo
    rois: list[RoiSnapshot]
    masks_dir: str


class ProjectSnapshot(Contract):
    """What a job needs of a project, taken at submit time: the job works on the
    ROIs that existed when it was asked for, and the worker never opens the store."""

    project: str
    classes: list[ClassDef] = Field(min_length=1)
    bands: list[str]
    revision: int
    scenes: list[SceneSnapshot]


class ModelRef(Contract):
    """A published model version and its folder."""

    project: str
    version: int = Field(ge=1)
    path: str


class LabelCount(Contract):
    class_name: str
    split: Split
    pixels: int = Field(ge=0)


# -- params -------------------------------------------------------------------------


class JobParams(Contract):
    schema_version: Literal[1] = SCHEMA_VERSION


class InspectParams(JobParams):
    path: str
    statistics: bool = False


class DiagnosticsParams(JobParams):
    seconds: float = Field(default=2.0, gt=0, le=600)
    matrix_size: int = Field(default=1024, ge=16, le=16384)


class MasksParams(JobParams):
    snapshot: ProjectSnapshot
    splits: tuple[Split, ...] = (Split.TRAIN, Split.VAL, Split.TEST)


def _check_chip_size(value: int) -> int:
    if not 32 <= value <= 1024 or value % 8:
        raise ValueError(f"chip_size must be a multiple of 8 in 32..1024, got {value}")
    return value


class PrepareParams(JobParams):
    snapshot: ProjectSnapshot
    dataset_dir: str
    chip_size: int

    _chip = field_validator("chip_size")(_check_chip_size)


ClassWeights = Literal["balanced"] | list[Annotated[float, Field(gt=0)]] | None


class TrainParams(PrepareParams):
    # Whether the dataset must be (re)prepared first: missing, or stale against
    # the project's revision or chip size.
    prepare: bool
    models_root: str
    arch: str
    epochs: int = Field(ge=1, le=1000)
    batch_size: int = Field(ge=1, le=4096)
    learning_rate: float = Field(gt=0, lt=10)
    seed: int = 0
    class_weights: ClassWeights = None
    augment: bool = True
    # None: never stop early.
    patience: int | None = Field(default=None, ge=1)
    # None: one pass over the chips per epoch.
    steps_per_epoch: int | None = Field(default=None, ge=1, le=100_000)
    prior_correction: bool = True
    # The recipe every training scene was made with (recorded in the model card).
    preprocessing: PreprocessStep | None = None

    @field_validator("arch")
    @classmethod
    def _known_arch(cls, value: str) -> str:
        if value not in TRAIN_ARCHS:
            raise ValueError(
                f"arch {value!r} is not known; choose one of: {', '.join(TRAIN_ARCHS)}"
            )
        return value

    @model_validator(mode="after")
    def _weights_per_class(self) -> TrainParams:
        weights = self.class_weights
        if isinstance(weights, list) and len(weights) != len(self.snapshot.classes):
            raise ValueError(
                f"class_weights has {len(weights)} value(s) for "
                f"{len(self.snapshot.classes)} classes"
            )
        return self


class TestParams(JobParams):
    __test__ = False  # a "test" job's params, not a pytest class
    snapshot: ProjectSnapshot
    model: ModelRef


class PredictItem(Contract):
    """One scene to classify and where each of its outputs goes ("" = not wanted).

    With `preprocess`, `input` is a raw product: it is preprocessed into
    `preprocessed` first (kept there, or removed once predicted when
    `keep_preprocessed` is false), and that raster is classified.
    """

    input: str
    output: str
    confidence: str = ""
    probabilities: str = ""
    quicklook: str = ""
    # Per-pixel uncertainty (normalized entropy, sipd.inference.writers).
    uncertainty: str = ""
    preprocess: PreprocessStep | None = None
    preprocessed: str = ""
    keep_preprocessed: bool = True
    # What the caller should know (e.g. a recipe that differs from the model's).
    warnings: list[str] = []

    @model_validator(mode="after")
    def _preprocessed_path(self) -> PredictItem:
        if self.preprocess is not None and not self.preprocessed:
            raise ValueError(
                "a raw product to preprocess needs the path of its preprocessed raster"
            )
        return self


class PredictParams(JobParams):
    model: ModelRef
    items: list[PredictItem] = Field(min_length=1)
    background_mask: str = ""
    # 0: the model's own tile size / the configured or device's batch size.
    tile_size: int = Field(default=0, ge=0)
    batch_size: int = Field(default=0, ge=0)
    overwrite: bool = False


class SceneTarget(Contract):
    """Where a preprocessed product is registered as a scene once written."""

    project: str
    scene: str


class PreprocessParams(JobParams):
    input: str
    output: str
    step: PreprocessStep
    overwrite: bool = False
    register_as: SceneTarget | None = None


class ExportParams(JobParams):
    model: ModelRef
    fp16: bool = False


class SuggestParams(JobParams):
    """Where new labels would help most (sipd.inference.suggest): `snapshot` holds the
    scenes to search with every ROI they have (any split), which are never suggested."""

    model: ModelRef
    snapshot: ProjectSnapshot
    n: int = Field(default=10, ge=1, le=1000)
    size: int = Field(default=64, ge=8, le=4096)
    # Least centre distance in pixels between two regions of a scene; 0 = 2 * size.
    min_distance: int = Field(default=0, ge=0)
    tile_size: int = Field(default=0, ge=0)
    batch_size: int = Field(default=0, ge=0)


# -- results ------------------------------------------------------------------------


class JobResult(Contract):
    schema_version: Literal[1] = SCHEMA_VERSION


class BandStatistics(Contract):
    band: int = Field(ge=1)
    valid_pixels: int = Field(ge=0)
    min: float
    max: float
    mean: float
    std: float


class InspectResult(JobResult):
    info: RasterInfo
    statistics: list[BandStatistics] = []


class DiagnosticsResult(JobResult):
    device: str
    device_name: str
    gflops: float
    iterations: int
    seconds: float
    onnxruntime_providers: list[str]
    torch_version: str
    onnxruntime_version: str


class SceneMasks(Contract):
    scene: str
    paths: dict[Split, str]
    counts: list[LabelCount]
    conflicting_pixels: int = Field(ge=0)
    pixels_in_several_splits: int = Field(ge=0)


class MasksResult(JobResult):
    scenes: list[SceneMasks]


class PrepareResult(JobResult):
    chips: int
    chip_size: int
    labeled_pixels: list[LabelCount]
    normalization_mean: list[float]
    normalization_std: list[float]
    scenes: list[str]  # scene ids


class EpochMetrics(Contract):
    epoch: int
    loss: float
    train_accuracy: float
    val_accuracy: float | None = None
    val_loss: float | None = None
    lr: float
    seconds: float


class TrainResult(JobResult):
    project: str
    version: int
    epochs_run: int
    best_epoch: int
    best_val_accuracy: float | None
    history: list[EpochMetrics]
    onnx_max_abs_diff: float
    seconds: float


class ClassAccuracy(Contract):
    value: int
    name: str
    precision: float
    recall: float
    f1: float
    iou: float
    support: int


class AccuracyReport(Contract):
    """Accuracy on reference pixels (sipd.accuracy.accuracy_report)."""

    overall_accuracy: float
    kappa: float
    per_class: list[ClassAccuracy]
    confusion_matrix: list[list[int]]
    class_names: list[str]
    pixels: int
    # Labeled pixels the predictor left unclassified (nodata, background): counted wrong.
    unclassified: int = 0


class TestResult(JobResult):
    __test__ = False  # a "test" job's result, not a pytest class
    project: str
    version: int
    report: AccuracyReport
    scenes: list[str]  # scene ids
    # The evaluation record written beside the (unchanged) model version.
    evaluation: str


class ScenePrediction(PredictItem):
    """A predicted scene: its request (paths) and what the predictor found."""

    width: int
    height: int
    pixels: int
    class_pixels: dict[str, int]
    class_area_m2: dict[str, float]
    # None when the CRS is not projected: areas are then unknown, not zero.
    pixel_area_m2: float | None = None
    seconds: float
    mpx_per_s: float
    tiles: int = 0
    tile_shape: list[int] = []
    timing: dict[str, float] = {}
    # Whenever class probabilities were computed (uncertainty or probabilities asked
    # for): mean normalized entropy over classified pixels, and the share above 0.5.
    mean_uncertainty: float | None = None
    uncertain_share: float | None = None


class PredictResult(JobResult):
    project: str
    version: int
    scenes: list[ScenePrediction]
    provider: str
    seconds: float


class PreprocessResult(JobResult):
    preprocessor: str
    input: str
    output: str
    info: RasterInfo
    # Acquisition metadata (mission, mode, times, orbit direction, polarisations, incidence).
    metadata: dict[str, str]
    step_seconds: dict[str, float]
    seconds: float
    recipe: str = ""
    recipe_version: int = 0
    # Set when the output was registered as a scene (the daemon does it, after the worker).
    scene: str = ""
    project: str = ""


class ExportResult(JobResult):
    project: str
    # The new version the re-export was published as (the source never changes).
    version: int
    source_version: int
    files: list[str]
    max_abs_diff: float


class SuggestedRegion(Contract):
    """A square of `size` pixels at (row, col) of a scene, best first by `rank`."""

    rank: int = Field(ge=1)
    scene: str  # scene id
    row: int = Field(ge=0)
    col: int = Field(ge=0)
    size: int = Field(ge=1)
    uncertainty: float
    class_mix: dict[str, float]
    majority_class: str


class SuggestResult(JobResult):
    project: str
    version: int
    regions: list[SuggestedRegion]
    # The regions as a GeoJSON FeatureCollection (JSON text).
    geojson: str
    scenes: list[str]  # scene ids searched
    candidates: int = Field(ge=0)
    seconds: float


# -- the job types --------------------------------------------------------------------


class JobType(StrEnum):
    INSPECT = "inspect"
    DIAGNOSTICS = "diagnostics"
    MASKS = "masks"
    PREPARE = "prepare"
    TRAIN = "train"
    TEST = "test"
    PREDICT = "predict"
    EXPORT = "export"
    PREPROCESS = "preprocess"
    SUGGEST = "suggest"


PARAMS: dict[JobType, type[JobParams]] = {
    JobType.INSPECT: InspectParams,
    JobType.DIAGNOSTICS: DiagnosticsParams,
    JobType.MASKS: MasksParams,
    JobType.PREPARE: PrepareParams,
    JobType.TRAIN: TrainParams,
    JobType.TEST: TestParams,
    JobType.PREDICT: PredictParams,
    JobType.EXPORT: ExportParams,
    JobType.PREPROCESS: PreprocessParams,
    JobType.SUGGEST: SuggestParams,
}

RESULTS: dict[JobType, type[JobResult]] = {
    JobType.INSPECT: InspectResult,
    JobType.DIAGNOSTICS: DiagnosticsResult,
    JobType.MASKS: MasksResult,
    JobType.PREPARE: PrepareResult,
    JobType.TRAIN: TrainResult,
    JobType.TEST: TestResult,
    JobType.PREDICT: PredictResult,
    JobType.EXPORT: ExportResult,
    JobType.PREPROCESS: PreprocessResult,
    JobType.SUGGEST: SuggestResult,
}


def job_type_of(params: JobParams) -> JobType:
    for job_type, cls in PARAMS.items():
        if type(params) is cls:
            return job_type
    raise TypeError(f"{type(params).__name__} is not the params type of any job")


def parse_params(job_type: str, data: dict[str, Any]) -> JobParams:
    """Stored params back into their type (older schema versions upgraded first)."""
    kind = JobType(job_type)
    return PARAMS[kind].model_validate(upgrade_params(kind, data))


def parse_result(job_type: str, data: dict[str, Any]) -> JobResult:
    return RESULTS[JobType(job_type)].model_validate(data)


def build(cls: type[Any], **fields: Any) -> Any:
    """A contract from request values; what is wrong with them becomes one
    INVALID_ARGUMENT message naming each field, not a validation trace."""
    try:
        return cls(**fields)
    except ValidationError as exc:
        raise InvalidArgument(describe(exc)) from None


def describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors(include_url=False):
        where = ".".join(str(p) for p in err["loc"]) or "value"
        message = str(err["msg"]).removeprefix("Value error, ")
        parts.append(f"{where}: {message}")
    return "; ".join(parts)


def upgrade_params(kind: JobType, data: dict[str, Any]) -> dict[str, Any]:
    """Params stored by a sipd before typed contracts (no schema_version) -> version 1.

    Only "predict" jobs can sit in a queue across an upgrade in practice (the
    watched folders submit them unattended); other legacy rows are refused by
    validation, which fails that one job with the reason.
    """
    if "schema_version" in data or kind is not JobType.PREDICT:
        return data
    project, _, version = str(data.get("model", "")).removeprefix("projects/").partition("/models/")
    return {
        "schema_version": SCHEMA_VERSION,
        "model": {"project": project, "version": version, "path": data.get("model_dir", "")},
        "items": [
            {
                "input": item.get("path", ""),
                "output": item.get("output", ""),
                "confidence": item.get("confidence") or "",
                "probabilities": item.get("probabilities") or "",
                "quicklook": item.get("quicklook") or "",
            }
            for item in data.get("inputs", [])
        ],
        "background_mask": data.get("background_mask") or "",
        "tile_size": int(data.get("tile_size") or 0),
        "batch_size": int(data.get("batch_size") or 0),
        "overwrite": bool(data.get("overwrite")),
    }
