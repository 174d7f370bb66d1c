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
from typing import Any

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
    PreprocessParams,
    PreprocessResult,
    ProjectSnapshot,
    SceneTarget,
    Split,
    SuggestParams,
    TestParams,
    TrainParams,
    build,
)
from sipd.contracts.preprocessing import PreprocessStep, SarOptions
from sipd.dataset.summary import dataset_dir, needs_prepare
from sipd.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, SipError
from sipd.jobs.engine import JobEngine
from sipd.modelrepo import ModelRepository, ModelVersion
from sipd.modelrepo.layout import CHECKPOINT_FILE, FOREST_FILE
from sipd.paths import PathPolicy
from sipd.preprocess import catalog
from sipd.preprocess.geocode import parse_crs
from sipd.projects import (
    Projects,
    check_mask_opens,
    check_scene_dtype,
    check_scene_id,
    scene_id_of,
)
from sipd.raster import FilesCheck, check_readable, files_checked, raster_info
from sipd.recipes import RecipeBook, make_step


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
    # None: the configured value; 0: one pass over the chips per epoch.
    steps_per_epoch: int | None = None
    # None: the configured value.
    prior_correction: bool | None = None


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
    # "" or "model": the model's recipe for raw products; else a recipe NAME[@VERSION].
    recipe: str = ""
    uncertainty: bool = False
    uncertainty_path: str = ""


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
        recipes: RecipeBook,
    ) -> None:
        self.config = config
        self.projects = projects
        self.models = models
        self.engine = engine
        self.policy = policy
        self.recipes = recipes

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
        steps = t.steps_per_epoch if options.steps_per_epoch is None else options.steps_per_epoch
        priors = t.prior_correction if options.prior_correction is None else (
            options.prior_correction)
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
            steps_per_epoch=steps or None,
            prior_correction=priors,
            preprocessing=self.training_recipe(snapshot),
        )
        return self.engine.submit(params, project=project)

    def training_recipe(self, snapshot: ProjectSnapshot) -> PreprocessStep | None:
        """The recipe every training scene was made with, for the model card; None when
        some were not made by a recipe, or by different ones."""
        labels = {
            self.projects.get_scene(snapshot.project, s.name).get("recipe", "")
            for s in snapshot.scenes
        }
        if len(labels) != 1 or "" in labels:
            return None
        try:
            return self.recipes.get(labels.pop()).step
        except NotFound:
            return None  # deleted since: the model then records none

    # -- preprocessing --------------------------------------------------------------------

    def preprocess_step(
        self, recipe: str, preprocessor: str, options: dict[str, str], product: Path
    ) -> PreprocessStep:
        """The step a request asks for: a recipe (with per-run overrides) or ad hoc options;
        the preprocessor is the recipe's, the one named, or the one the product needs."""
        if recipe:
            base = self.recipes.get(recipe).step
            if preprocessor and preprocessor != base.preprocessor:
                raise InvalidArgument(
                    f"recipe {recipe!r} runs {base.preprocessor}, not {preprocessor}"
                )
            step = base
            if options:
                merged = make_step(base.preprocessor, options, base=base.options)
                if merged.options != base.options:
                    # No longer what the recipe makes: the output must not claim it was.
                    step = merged
        else:
            step = make_step(preprocessor or catalog.detect(product), options)
        step = self.checked_step(step, product)
        pre = catalog.get(step.preprocessor)
        # A detected preprocessor has just accepted the product: not asked again.
        if (recipe or preprocessor) and not pre.accepts(product):
            try:
                detected = f"is a {catalog.detect(product)} product"
            except InvalidArgument:
                detected = "is not a product a preprocessor knows"
            raise InvalidArgument(
                f"{product} {detected}; "
                f"{'recipe ' + repr(recipe) if recipe else 'preprocessor'} "
                f"{step.preprocessor} cannot read it (it takes {pre.inputs})"
            )
        return step

    def checked_step(self, step: PreprocessStep, product: Path) -> PreprocessStep:
        """A step whose CRS GDAL knows and whose files (a DEM, a calibration panel, a
        white reference) are inside the allowed roots, resolved: refused now, not after
        a stage has run."""
        options = step.options
        crs = getattr(options, "crs", "")
        if crs not in ("auto", "none", ""):
            parse_crs(crs)
        if isinstance(options, SarOptions) and options.dem and product.suffix.lower() == ".zip":
            # Terrain correction reads the product with sarsen, which needs it unpacked.
            raise InvalidArgument(
                f"terrain correction (dem) needs the product unpacked: {product} is a zip; "
                "unzip it (the .SAFE folder) or leave dem empty"
            )
        updates: dict[str, str | list[str]] = {}
        for name in type(options).PATH_OPTIONS:
            value = getattr(options, name)
            if not value:
                continue
            resolved = [str(self.policy.check_input(v, f"{name} option")) for v in _as_list(value)]
            if name == "dem":
                check_readable(
                    resolved[0], functools.partial(self.policy.check_opened, what=f"DEM {value}")
                )
            updates[name] = resolved if isinstance(value, list) else resolved[0]
        if not updates:
            return step
        return step.model_copy(update={"options": options.model_copy(update=updates)})

    def fit_recipe(
        self, preprocessor: str, options: dict[str, str], products: list[str]
    ) -> dict[str, Any]:
        """The option values a recipe learns from training products (a hyperspectral
        recipe's principal components), fitted now so the recipe stores them and every
        scene made with it, for training or prediction, is projected the same way."""
        pre = catalog.get(preprocessor)
        if not pre.fitter:
            raise InvalidArgument(
                f"preprocessor {preprocessor} fits nothing; fit_on (--fit-on) is for: "
                + ", ".join(p.name for p in catalog.PREPROCESSORS.values() if p.fitter)
            )
        step = make_step(preprocessor, options)
        paths = []
        for product in products:
            path = self.policy.check_input(product, "fit_on product")
            if not pre.accepts(path):
                raise InvalidArgument(
                    f"fit_on product {path} is not one {preprocessor} reads; accepted: {pre.inputs}"
                )
            paths.append(path)
        step = self.checked_step(step, paths[0])
        # The fit runs here, not in the worker: every file it opens (an ENVI header's
        # data file, a reference's) is checked against the roots as the worker would.
        check = functools.partial(self.policy.check_opened, what="fit_on product")
        what = f"cannot fit {preprocessor} on {', '.join(map(str, paths))}"
        with catalog.malformed_is_bad_input(what), files_checked(check):
            return pre.fit(paths, step.options)

    def preprocess(
        self,
        product: str,
        output: str,
        *,
        recipe: str = "",
        preprocessor: str = "",
        options: dict[str, str] | None = None,
        overwrite: bool = False,
        project: str = "",
        scene: str = "",
    ) -> JobRecord:
        source = self.policy.check_input(product, "product")
        data_dir = self.config.data_dir
        step = self.preprocess_step(recipe, preprocessor, dict(options or {}), source)
        target = None
        default_output = None
        if project:
            self.projects.get(project)
            scene = scene or scene_id_of(source)
            # Checked before it names a file: "../x" must not write outside the project.
            check_scene_id(scene)
            try:
                self.projects.get_scene(project, scene)
            except NotFound:
                pass
            else:
                raise AlreadyExists(
                    f"scene {scene!r} already exists in project {project!r}; pick another name"
                )
            target = SceneTarget(project=project, scene=scene)
            # The daemon's own place for it when the caller names none.
            default_output = self.projects.preprocessed_dir(project) / f"{scene}.tif"
        if output:
            out = self.policy.check_output(output, "output path", data_dir)
        elif default_output is not None:
            out = default_output
        else:
            raise InvalidArgument("output is empty; give the COG to write (or a project)")
        if out.suffix.lower() not in (".tif", ".tiff"):
            raise InvalidArgument(f"output {out} must be a .tif (the COG to write)")
        if out.exists() and not overwrite:
            raise AlreadyExists(f"{out} exists; pass overwrite (sipctl --overwrite) to replace it")
        self.projects.refuse_scene_file(
            Path(os.path.realpath(out)), "output", self.projects.scene_files()
        )
        params = build(
            PreprocessParams,
            input=str(source),
            output=str(out),
            step=step,
            overwrite=overwrite,
            register_as=target,
        )
        return self.engine.submit(params, project=project)

    def register_preprocessed(
        self, params: PreprocessParams, result: PreprocessResult
    ) -> PreprocessResult:
        """Engine finisher: a preprocess job asked to register its output does so before
        it is final; when that fails the job fails with the reason (the COG stays)."""
        target = params.register_as
        if target is None:
            return result
        try:
            self.projects.add_scene(
                target.project,
                target.scene,
                result.output,
                "",
                recipe=params.step.recipe_label,
                made_here=True,
            )
        except SipError as exc:
            raise type(exc)(
                f"{result.output} was written but not registered as scene {target.scene!r}: {exc}"
            ) from None
        return result.model_copy(update={"scene": target.scene, "project": target.project})

    def raw_input_step(
        self, model: ModelVersion, source: Path, recipe: str
    ) -> tuple[PreprocessStep, list[str]] | None:
        """For a raw product among predict inputs: the step to make it a scene (the
        model's recipe unless one is named) and warnings; None for a plain raster."""
        card_step = model.card.preprocessing
        model_label = card_step.recipe_label if card_step else ""
        named = None if recipe in ("", "model") else self.recipes.get(recipe).step
        kind = self._raw_kind(source, named or card_step)
        if kind is None:
            return None
        warnings = []
        if named is None:
            if card_step is None:
                raise FailedPrecondition(
                    f"{source} is a raw {kind} product and {model.name} records no recipe "
                    "(its training scenes were not made by one); pass a recipe "
                    "(sipctl predict --recipe NAME) or preprocess it first"
                )
            step = card_step
        else:
            step = named
            if step.recipe_label != model_label:
                warnings.append(
                    f"recipe {step.recipe_label} differs from "
                    + (
                        f"{model_label}, the recipe {model.name}'s training scenes were made with"
                        if model_label
                        else f"how {model.name}'s training scenes were made (no recipe)"
                    )
                )
        if step.preprocessor != kind and not catalog.get(step.preprocessor).accepts(source):
            raise InvalidArgument(
                f"{source} is a {kind} product; recipe {step.recipe_label or 'of the model'} "
                f"runs {step.preprocessor}"
            )
        step = self.checked_step(step, source)
        made = step.options.output_bands()  # type: ignore[attr-defined]
        if made and [b.lower() for b in made] != [b.lower() for b in model.card.bands]:
            # Names, not only a count: HV,HH for a model of HH,HV would swap its inputs.
            raise InvalidArgument(
                f"recipe {step.recipe_label or 'of the model'} makes bands {', '.join(made)} "
                f"but {model.name} expects {', '.join(model.card.bands)}"
            )
        return step, warnings

    @staticmethod
    def _raw_kind(source: Path, step: PreprocessStep | None) -> str | None:
        """The preprocessor `source` needs, or None when it is to be read as a raster:
        a product as delivered (a folder, an archive, an HDF4 file), or an image the
        recipe's preprocessor reads (an OME-TIFF for a multichannel recipe) that is not
        already a scene sipd made."""
        if catalog.is_raw_product(source):
            try:
                return catalog.detect(source)
            except InvalidArgument:
                return None  # a folder GDAL opens as a raster: predicted as it is
        if step is None or catalog.made_by_sipd(source):
            return None
        pre = catalog.get(step.preprocessor)
        return pre.name if pre.kind != "sar" and pre.accepts(source) else None

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
        raw: dict[Path, tuple[PreprocessStep, list[str]]] = {}
        for path in resolved:
            step = self.raw_input_step(model, path, options.recipe)
            if step is not None:
                raw[path] = step
                continue
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
            targets = [out / f"{scene_id_of(p)}_labels.tif" for p in resolved]
        else:
            targets = [out if out.suffix.lower() in (".tif", ".tiff") else out.with_suffix(".tif")]
        if len(set(targets)) != len(targets):
            raise InvalidArgument("two inputs have the same file name; their outputs would collide")
        if options.confidence_path and len(resolved) > 1:
            raise InvalidArgument(
                "confidence_path names one file; with several inputs leave it empty"
            )
        if options.uncertainty_path and len(resolved) > 1:
            raise InvalidArgument(
                "uncertainty_path names one file; with several inputs leave it empty"
            )
        if options.uncertainty:
            self.require_probabilities(model, "an uncertainty map")
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
            uncertainty = None
            if options.uncertainty:
                uncertainty = (
                    self.policy.check_output(options.uncertainty_path, "uncertainty path", data_dir)
                    if options.uncertainty_path
                    else dst.with_name(f"{dst.stem}_uncertainty.tif")
                )
            step, warnings = raw.get(src, (None, []))
            preprocessed = dst.with_name(f"{dst.stem}_preprocessed.tif") if step else None
            for path in (dst, confidence, probabilities, quicklook, uncertainty, preprocessed):
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
                    uncertainty=str(uncertainty or ""),
                    preprocess=step,
                    preprocessed=str(preprocessed or ""),
                    warnings=warnings,
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

    @staticmethod
    def require_probabilities(model: ModelVersion, what: str) -> None:
        if "probabilities" not in model.card.outputs.by_role():
            raise FailedPrecondition(
                f"{model.name} has no probabilities output in model.yaml, which {what} "
                "is computed from"
            )

    def suggest(
        self,
        project: str,
        version: str,
        scene_ids: list[str],
        *,
        n: int = 10,
        size: int = 64,
        min_distance: int = 0,
        tile_size: int = 0,
        batch_size: int = 0,
    ) -> JobRecord:
        """Where new labels would help most: the `n` most uncertain regions of `size` px
        on the named scenes (default all), away from every ROI of the project."""
        if not 1 <= n <= 1000:
            raise InvalidArgument(f"n must be 1..1000 regions, got {n}")
        if not 8 <= size <= 4096:
            raise InvalidArgument(f"size must be 8..4096 pixels, got {size}")
        if min_distance < 0 or tile_size < 0 or batch_size < 0:
            raise InvalidArgument("min_distance, tile_size and batch_size must not be negative")
        self.projects.get(project)
        for sid in scene_ids:
            self.projects.get_scene(project, sid)
        if version in ("", "latest") and not self.models.versions(project):
            raise FailedPrecondition(
                f"project {project!r} has no model yet; train one with `sipctl train {project}` "
                "before asking where to label"
            )
        model = self.model(project, version)
        self.require_probabilities(model, "the uncertainty")
        scene_ids = scene_ids or [s["id"] for s in self.projects.list_scenes(project)]
        if not scene_ids:
            raise FailedPrecondition(f"project {project!r} has no scenes to search")
        # Every split: a region touching any existing ROI is never suggested.
        snapshot = self.projects.snapshot(project, tuple(Split), scene_ids=scene_ids)
        for scene in snapshot.scenes:
            self.check_bands(model, Path(scene.path), f"scene {scene.name}")
            if size > scene.info.width or size > scene.info.height:
                raise InvalidArgument(
                    f"size {size} does not fit in scene {scene.name} "
                    f"({scene.info.width} x {scene.info.height} pixels); give a smaller size"
                )
            # The worker keeps a few numbers per region: bounded, whatever the scene.
            regions = -(-scene.info.width // size) * -(-scene.info.height // size)
            if regions > 1_000_000:
                raise InvalidArgument(
                    f"size {size} cuts scene {scene.name} into {regions} regions (at most "
                    "1000000); give a larger size"
                )
        params = build(
            SuggestParams,
            model=model_ref(model),
            snapshot=snapshot,
            n=n,
            size=size,
            min_distance=min_distance,
            tile_size=tile_size or self.config.inference.tile_size,
            batch_size=batch_size or self.config.inference.batch_size,
        )
        return self.engine.submit(params, project=project)

    # -- export -----------------------------------------------------------------------

    def export(self, project: str, version: str, fp16: bool) -> JobRecord:
        if version in ("", "latest"):
            raise InvalidArgument("name the version to export explicitly, not 'latest'")
        model = self.model(project, version)
        sources = (CHECKPOINT_FILE, FOREST_FILE)
        if not any((Path(model.path) / name).is_file() for name in sources):
            raise FailedPrecondition(
                f"{model.name} has neither {' nor '.join(sources)} to export from (a folder "
                "copied without it can predict, but not be re-exported)"
            )
        params = ExportParams(model=model_ref(model), fp16=fp16)
        return self.engine.submit(params, project=project)


def _check_chip_size(chip_size: int) -> None:
    # Checked before the project snapshot is taken: a cheap refusal first.
    if not 32 <= chip_size <= 1024 or chip_size % 8:
        raise InvalidArgument(f"chip_size must be a multiple of 8 in 32..1024, got {chip_size}")


def _as_list(value: str | list[str]) -> list[str]:
    return list(value) if isinstance(value, list) else [value]
