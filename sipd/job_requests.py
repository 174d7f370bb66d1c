"""Requests for the learning pipeline's jobs: the checks that can fail fast, and the
one place where the typed params of each job type are built (masks, prepare,
train, test, predict, export).

Every caller that submits one of these jobs (the servicers, PredictStream, the
watched folders) builds its params here, so a job looks the same whoever asked.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

from sipd.config import Config
from sipd.contracts.job_record import JobRecord
from sipd.contracts.jobs import (
    ClassWeights,
    ExportParams,
    MasksParams,
    ModelRef,
    PredictItem,
    PredictParams,
    PrepareParams,
    ProjectSnapshot,
    Split,
    TestParams,
    TrainParams,
    build,
)
from sipd.dataset.summary import dataset_dir, needs_prepare
from sipd.errors import AlreadyExists, FailedPrecondition, InvalidArgument
from sipd.jobs.engine import JobEngine
from sipd.modelrepo import ModelRepository, ModelVersion
from sipd.paths import PathPolicy
from sipd.projects import Projects, check_mask_opens, check_scene_dtype
from sipd.raster import FilesCheck, check_readable, raster_info


@dataclass(frozen=True)
class TrainOptions:
    """What a caller may choose for a training run; 0 / None: the configured default."""

    arch: str = ""
    epochs: int = 0
    batch_size: int = 0
    learning_rate: float = 0.0
    chip_size: int = 0
    seed: int = 0
    class_weights: tuple[float, ...] = ()
    balanced: bool = False
    augment: bool = True
    # None: the configured patience; 0: never stop early.
    patience: int | None = None


@dataclass(frozen=True)
class PredictOptions:
    confidence: bool = False
    confidence_path: str = ""
    probabilities: bool = False
    quicklook: bool = False
    background_mask: str = ""
    tile_size: int = 0
    batch_size: int = 0
    overwrite: bool = False


def model_ref(model: ModelVersion) -> ModelRef:
    return ModelRef(project=model.project, version=model.version, path=str(model.path))


def predict_params(
    model: ModelVersion,
    items: list[PredictItem],
    *,
    background_mask: str = "",
    tile_size: int = 0,
    batch_size: int = 0,
    overwrite: bool = False,
) -> PredictParams:
    """The params of a "predict" job: for the API, PredictStream and watched folders."""
    return build(
        PredictParams,
        model=model_ref(model),
        items=items,
        background_mask=background_mask,
        tile_size=tile_size,
        batch_size=batch_size,
        overwrite=overwrite,
    )


class JobRequests:
    def __init__(
        self,
        config: Config,
        projects: Projects,
        models: ModelRepository,
        engine: JobEngine,
        policy: PathPolicy,
    ) -> None:
        self.config = config
        self.projects = projects
        self.models = models
        self.engine = engine
        self.policy = policy

    def model(self, project: str, version: str) -> ModelVersion:
        return self.models.get(project, self.models.resolve(project, version))

    # -- masks and dataset ------------------------------------------------------------

    def masks(self, project: str, scene_ids: list[str]) -> JobRecord:
        """Masks of the named scenes, or of every scene (ROIs or not) when none are named."""
        for sid in scene_ids:
            self.projects.get_scene(project, sid)
        scene_ids = scene_ids or [s["id"] for s in self.projects.list_scenes(project)]
        snapshot = self.projects.snapshot(project, tuple(Split), scene_ids=scene_ids)
        return self.engine.submit(MasksParams(snapshot=snapshot), project=project)

    def _train_snapshot(self, project: str) -> ProjectSnapshot:
        if self.projects.count_rois(project, "train") == 0:
            self.projects.get(project)
            raise FailedPrecondition(
                f"project {project!r} has no train ROIs; add some with `sipctl roi add` or "
                "`sipctl roi import` (split train) before preparing or training"
            )
        return self.projects.snapshot(project, (Split.TRAIN, Split.VAL))

    def prepare(self, project: str, chip_size: int) -> JobRecord:
        chip_size = chip_size or self.config.training.chip_size
        _check_chip_size(chip_size)
        params = build(
            PrepareParams,
            snapshot=self._train_snapshot(project),
            dataset_dir=str(dataset_dir(self.projects, project)),
            chip_size=chip_size,
        )
        return self.engine.submit(params, project=project)

    # -- training ---------------------------------------------------------------------

    def train(self, project: str, options: TrainOptions) -> JobRecord:
        t = self.config.training
        chip_size = options.chip_size or t.chip_size
        _check_chip_size(chip_size)
        snapshot = self._train_snapshot(project)
        weights: ClassWeights = list(options.class_weights) or None
        if options.balanced:
            weights = "balanced"
        patience = t.patience if options.patience is None else options.patience
        params = build(
            TrainParams,
            snapshot=snapshot,
            dataset_dir=str(dataset_dir(self.projects, project)),
            chip_size=chip_size,
            prepare=needs_prepare(self.projects, project, chip_size),
            models_root=str(self.models.project_dir(project)),
            arch=options.arch or t.arch,
            epochs=options.epochs or t.epochs,
            batch_size=options.batch_size or t.batch_size,
            learning_rate=options.learning_rate or t.learning_rate,
            seed=options.seed,
            class_weights=weights,
            augment=options.augment,
            # 0 means "never stop early" to the user; the trainer takes None for that.
            patience=patience or None,
        )
        return self.engine.submit(params, project=project)

    # -- testing and prediction ---------------------------------------------------------

    def test(self, project: str, version: str, scene_ids: list[str]) -> JobRecord:
        model = self.model(project, version)
        for sid in scene_ids:
            self.projects.get_scene(project, sid)
        snapshot = self.projects.snapshot(project, (Split.TEST,), scene_ids=scene_ids)
        if not snapshot.scenes:
            raise FailedPrecondition(
                f"project {project!r} has no test ROIs{' on those scenes' if scene_ids else ''}; "
                "add ROIs with split test (e.g. `sipctl roi add ... --split test`)"
            )
        params = TestParams(snapshot=snapshot, model=model_ref(model))
        return self.engine.submit(params, project=project)

    def check_bands(
        self, model: ModelVersion, raster: Path, what: str, check_files: FilesCheck | None = None
    ) -> None:
        info = raster_info(raster, check_files)
        # The pixel types scenes may have (float64 and complex ones are refused here,
        # not failed later in the worker).
        check_scene_dtype(info)
        count = info["band_count"]
        bands = model.card.bands
        if count != len(bands):
            raise InvalidArgument(
                f"{what} has {count} band(s) but {model.name} expects {len(bands)}: "
                f"{', '.join(bands)}"
            )

    def predict(
        self,
        project: str,
        version: str,
        inputs: list[str],
        output: str,
        options: PredictOptions,
    ) -> JobRecord:
        model = self.model(project, version)
        if not inputs:
            raise InvalidArgument("inputs is empty; give at least one raster to classify")
        if not output:
            raise InvalidArgument("output is empty; give a file (one input) or a folder (several)")
        resolved = [self.policy.check_input(p, "input raster") for p in inputs]
        for path in resolved:
            # Every file GDAL opens for the input (VRT sources, sidecars) is
            # checked against the roots before a pixel is read.
            opened = functools.partial(self.policy.check_opened, what=f"input raster {path}")
            check_readable(path, opened)
            self.check_bands(model, path, str(path), opened)
        data_dir = self.config.data_dir
        out = self.policy.check_output(output, "output path", data_dir)
        if len(resolved) > 1 or out.is_dir():
            if not out.is_dir():
                raise InvalidArgument(f"output {out} must be an existing folder for several inputs")
            targets = [out / f"{p.stem}_labels.tif" for p in resolved]
        else:
            targets = [out if out.suffix.lower() in (".tif", ".tiff") else out.with_suffix(".tif")]
        if len(set(targets)) != len(targets):
            raise InvalidArgument("two inputs have the same file name; their outputs would collide")
        if options.confidence_path and len(resolved) > 1:
            raise InvalidArgument(
                "confidence_path names one file; with several inputs leave it empty"
            )
        items = []
        scene_files = self.projects.scene_files()
        for src, dst in zip(resolved, targets, strict=True):
            if src == dst:
                raise InvalidArgument(f"output {dst} would overwrite its input")
            confidence = None
            if options.confidence:
                confidence = (
                    self.policy.check_output(options.confidence_path, "confidence path", data_dir)
                    if options.confidence_path
                    else dst.with_name(f"{dst.stem}_confidence.tif")
                )
            probabilities = (
                dst.with_name(f"{dst.stem}_probabilities.tif") if options.probabilities else None
            )
            quicklook = dst.with_suffix(".png") if options.quicklook else None
            for path in (dst, confidence, probabilities, quicklook):
                if path is not None:
                    self.projects.refuse_scene_file(
                        Path(os.path.realpath(path)), "output", scene_files
                    )
                if path is not None and path.exists() and not options.overwrite:
                    raise AlreadyExists(
                        f"{path} exists; pass overwrite (sipctl --overwrite) to replace it"
                    )
            items.append(
                PredictItem(
                    input=str(src),
                    output=str(dst),
                    confidence=str(confidence or ""),
                    probabilities=str(probabilities or ""),
                    quicklook=str(quicklook or ""),
                )
            )
        mask = (
            self.policy.check_input(options.background_mask, "background mask")
            if (options.background_mask)
            else None
        )
        if mask is not None:
            check_mask_opens(self.policy, mask)
        params = predict_params(
            model,
            items,
            background_mask=str(mask or ""),
            tile_size=options.tile_size or self.config.inference.tile_size,
            batch_size=options.batch_size or self.config.inference.batch_size,
            overwrite=options.overwrite,
        )
        return self.engine.submit(params, project=project)

    # -- export -----------------------------------------------------------------------

    def export(self, project: str, version: str, fp16: bool) -> JobRecord:
        if version in ("", "latest"):
            raise InvalidArgument("name the version to export explicitly, not 'latest'")
        model = self.model(project, version)
        if not (Path(model.path) / "checkpoint.pt").is_file():
            raise FailedPrecondition(
                f"{model.name} has no checkpoint.pt to export from (a folder copied "
                "without it can predict, but not be re-exported)"
            )
        params = ExportParams(model=model_ref(model), fp16=fp16)
        return self.engine.submit(params, project=project)


def _check_chip_size(chip_size: int) -> None:
    # Checked before the project snapshot is taken: a cheap refusal first.
    if not 32 <= chip_size <= 1024 or chip_size % 8:
        raise InvalidArgument(f"chip_size must be a multiple of 8 in 32..1024, got {chip_size}")
