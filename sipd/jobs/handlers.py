"""Job types: what the worker runs for each params contract.

Each handler takes its typed params (paths already checked by the daemon) and
a JobContext, and returns its typed result (sipd.contracts.jobs). Heavy
imports (torch, onnxruntime) happen inside handlers so the worker starts fast.
"""

from __future__ import annotations

import functools
import json
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from sipd.contracts.jobs import (
    BandStatistics,
    DiagnosticsParams,
    DiagnosticsResult,
    EpochMetrics,
    ExportParams,
    ExportResult,
    InspectParams,
    InspectResult,
    JobParams,
    JobResult,
    LabelCount,
    MasksParams,
    MasksResult,
    PredictParams,
    PredictResult,
    PrepareParams,
    PrepareResult,
    PreprocessParams,
    PreprocessResult,
    ProjectSnapshot,
    RasterInfo,
    SceneMasks,
    ScenePrediction,
    Split,
    SuggestedRegion,
    SuggestParams,
    SuggestResult,
    TestParams,
    TestResult,
    TrainParams,
    TrainResult,
)
from sipd.paths import require_regular
from sipd.progress import JobContext

P = TypeVar("P", bound=JobParams)
Handler = Callable[[Any, JobContext], JobResult]
HANDLERS: dict[type[JobParams], Handler] = {}


def handler(params_type: type[P]) -> Callable[[Callable[[P, JobContext], JobResult]], Handler]:
    def register(fn: Callable[[P, JobContext], JobResult]) -> Handler:
        HANDLERS[params_type] = fn
        return fn

    return register


def run(params: JobParams, ctx: JobContext) -> JobResult:
    return HANDLERS[type(params)](params, ctx)


@handler(InspectParams)
def inspect(params: InspectParams, ctx: JobContext) -> InspectResult:
    from sipd.raster import band_statistics, open_raster, raster_info

    ctx.progress("inspect", 0.0, "reading metadata", force=True)
    info = RasterInfo(**raster_info(params.path))
    statistics: list[BandStatistics] = []
    if params.statistics:
        with open_raster(params.path) as ds:
            blocks = max(1, sum(1 for _ in ds.block_windows(1)))
            done = 0

            def step() -> None:
                nonlocal done
                ctx.check_cancelled()
                done += 1
                ctx.progress("statistics", done / blocks, f"block {done}/{blocks}")

            stats = band_statistics(ds, step)
        statistics = [
            BandStatistics(
                band=i + 1,
                valid_pixels=int(s["valid_pixels"]),
                min=s["min"],
                max=s["max"],
                mean=s["mean"],
                std=s["std"],
            )
            for i, s in enumerate(stats)
        ]
    return InspectResult(info=info, statistics=statistics)


@handler(DiagnosticsParams)
def diagnostics(params: DiagnosticsParams, ctx: JobContext) -> DiagnosticsResult:
    import onnxruntime as ort
    import torch

    from sipd.device import torch_device
    from sipd.inference.sessions import usable_providers

    size = params.matrix_size
    device = torch_device(ctx.device)
    a = torch.randn(size, size, device=device)
    b = torch.randn(size, size, device=device)
    iterations = 0
    start = time.perf_counter()
    # Cancel is checked between multiplies: one multiply is the longest
    # stretch the job cannot be interrupted cooperatively.
    while time.perf_counter() - start < params.seconds:
        ctx.check_cancelled()
        torch.matmul(a, b)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        iterations += 1
        elapsed = time.perf_counter() - start
        ctx.progress("measure", min(elapsed / params.seconds, 1.0), f"{iterations} multiplies")
    elapsed = time.perf_counter() - start
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = platform.processor() or platform.machine()
    return DiagnosticsResult(
        device=ctx.device,
        device_name=name,
        gflops=2.0 * size**3 * iterations / elapsed / 1e9,
        iterations=iterations,
        seconds=elapsed,
        onnxruntime_providers=usable_providers(ctx.device),
        torch_version=torch.__version__,
        onnxruntime_version=ort.__version__,
    )


# -- the learning pipeline ------------------------------------------------------------
# Params carry a snapshot made by the daemon at submit time (sipd.projects.snapshot):
# the job trains/tests on the ROIs that existed when it was asked for.

_sessions: Any = None  # SessionCache, warm across jobs in this worker process


def session_cache(ctx: JobContext) -> Any:
    global _sessions
    if _sessions is None:
        from sipd.inference.sessions import SessionCache

        conf = ctx.settings.inference
        _sessions = SessionCache(
            max_sessions=conf.session_cache_size,
            device=ctx.device,
            intra_op_threads=conf.intra_op_threads or ctx.settings.threads,
            enable_tensorrt=conf.tensorrt,
            fp16=conf.fp16,
        )
    return _sessions


def _batch_size(requested: int, ctx: JobContext, model: Any) -> int:
    """Tiles per onnxruntime call: the request's, else the config's, else by device.

    On a CPU one ~1000 px tile already keeps every core busy, and each more
    tile in a batch costs its activations (~0.4 GB for the default U-Net);
    a GPU wants several tiles per launch.
    """
    configured = requested or ctx.settings.inference.batch_size
    if configured:
        return configured
    return 4 if model.on_gpu else 1


def _masks(
    snapshot: ProjectSnapshot, ctx: JobContext, splits: tuple[Split, ...]
) -> list[SceneMasks]:
    """Rasterize each scene's ROI snapshot into mask GeoTIFFs, one per split."""
    from sipd.labeling.masks import scene_masks

    classes = [c.model_dump() for c in snapshot.classes]
    names = [str(s) for s in splits]
    out = []
    for i, scene in enumerate(snapshot.scenes):
        ctx.check_cancelled()
        ctx.progress("mask", i / len(snapshot.scenes), f"scene {scene.name}", force=True)
        rois = [r.model_dump(mode="json") for r in scene.rois]
        result = scene_masks(scene.model_dump(mode="json"), rois, classes, scene.masks_dir, names)
        out.append(
            SceneMasks(
                scene=scene.name,
                paths={Split(k): v for k, v in result["paths"].items()},
                counts=_label_counts(result["counts"]),
                conflicting_pixels=result["conflicting_pixels"],
                pixels_in_several_splits=result["pixels_in_several_splits"],
            )
        )
    return out


def _label_counts(counts: dict[str, dict[str, int]]) -> list[LabelCount]:
    """{split: {class name: pixels}} -> LabelCount list."""
    return [
        LabelCount(class_name=name, split=Split(split), pixels=int(n))
        for split, per_class in counts.items()
        for name, n in per_class.items()
    ]


@handler(MasksParams)
def masks(params: MasksParams, ctx: JobContext) -> MasksResult:
    scenes = _masks(params.snapshot, ctx, params.splits)
    ctx.progress("mask", 1.0, "done", force=True)
    return MasksResult(scenes=scenes)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    from sipd.raster import atomic_path

    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2))


def _prepare(params: PrepareParams, ctx: JobContext) -> PrepareResult:
    from sipd.dataset.prepare import prepare_dataset

    snapshot = params.snapshot
    scenes = _masks(snapshot, ctx.child(0.0, 0.2), (Split.TRAIN, Split.VAL))
    paths = {s.name: s.path for s in snapshot.scenes}
    summary = prepare_dataset(
        [
            {
                "name": m.scene,
                "path": paths[m.scene],
                "masks": {str(split): path for split, path in m.paths.items()},
            }
            for m in scenes
        ],
        out_dir=params.dataset_dir,
        bands=snapshot.bands,
        chip_size=params.chip_size,
        ctx=ctx.child(0.2, 0.8),
    )
    # Which labels the dataset was made from: the daemon compares this with
    # the project's revision to tell whether the dataset is stale.
    _write_json(
        Path(params.dataset_dir) / "source.json",
        {"revision": snapshot.revision, "chip_size": params.chip_size},
    )
    names = {c.value: c.name for c in snapshot.classes}
    return PrepareResult(
        chips=summary["chips"],
        chip_size=summary["chip_size"],
        labeled_pixels=[
            LabelCount(class_name=names.get(int(v), str(v)), split=Split(split), pixels=int(n))
            for split, per_class in summary["labeled_pixels"].items()
            for v, n in per_class.items()
        ],
        normalization_mean=summary["normalization"]["mean"],
        normalization_std=summary["normalization"]["std"],
        scenes=[s.name for s in snapshot.scenes],
    )


@handler(PrepareParams)
def prepare(params: PrepareParams, ctx: JobContext) -> PrepareResult:
    return _prepare(params, ctx)


@handler(TrainParams)
def train(params: TrainParams, ctx: JobContext) -> TrainResult:
    # A first event before the seconds of imports and data loading: a watcher (the
    # studio, `sipctl train`) sees the job start, not a blank progress.
    ctx.progress("prepare" if params.prepare else "load", 0.0, "starting", force=True)
    from sipd.training.train import train_model

    step = ctx
    if params.prepare:
        _prepare(params, ctx.child(0.0, 0.15))
        step = ctx.child(0.15, 0.85)
    snapshot = params.snapshot
    preprocessing = params.preprocessing.model_dump(mode="json") if params.preprocessing else None
    if params.arch == "forest":
        # The instant model kind: epochs, batch size, lr, augment and patience do not
        # apply (its card says so); the forest balances classes itself.
        from sipd.training.forest import train_forest

        result = train_forest(
            dataset_dir=params.dataset_dir,
            models_root=params.models_root,
            project=snapshot.project,
            classes=[c.model_dump() for c in snapshot.classes],
            bands=snapshot.bands,
            seed=params.seed,
            preprocessing=preprocessing,
            ctx=step,
        )
        return _train_result(snapshot.project, result)
    result = train_model(
        dataset_dir=params.dataset_dir,
        models_root=params.models_root,
        project=snapshot.project,
        classes=[c.model_dump() for c in snapshot.classes],
        bands=snapshot.bands,
        arch=params.arch,
        epochs=params.epochs,
        batch_size=params.batch_size,
        learning_rate=params.learning_rate,
        seed=params.seed,
        class_weights=params.class_weights,
        augment=params.augment,
        patience=params.patience,
        steps_per_epoch=params.steps_per_epoch,
        prior_correction=params.prior_correction,
        preprocessing=preprocessing,
        ctx=step,
    )
    return _train_result(snapshot.project, result)


def _train_result(project: str, result: dict[str, Any]) -> TrainResult:
    return TrainResult(
        project=project,
        version=result["version"],
        epochs_run=result["epochs_run"],
        best_epoch=result["best_epoch"],
        best_val_accuracy=result["best_val_accuracy"],
        history=[EpochMetrics(**row) for row in result["history"]],
        onnx_max_abs_diff=result["onnx_max_abs_diff"],
        seconds=result["seconds"],
    )


@handler(TestParams)
def test(params: TestParams, ctx: JobContext) -> TestResult:
    from sipd.contracts.jobs import AccuracyReport
    from sipd.inference.evaluate import evaluate_model
    from sipd.modelrepo import record_evaluation

    scenes = _masks(params.snapshot, ctx.child(0.0, 0.1), (Split.TEST,))
    paths = {s.name: s.path for s in params.snapshot.scenes}
    tested = [
        {"name": m.scene, "path": paths[m.scene], "test_mask": m.paths[Split.TEST]}
        for m in scenes
    ]
    if ctx.settings.executor == "ray":
        report = AccuracyReport(**_ray_test_report(params.model.path, tested, ctx))
    else:
        model = session_cache(ctx).get(params.model.path)
        report = AccuracyReport(
            **evaluate_model(model, tested, ctx=ctx.child(0.1, 0.9),
                             batch_size=_batch_size(0, ctx, model))  # fmt: skip
        )
    scene_ids = [m.scene for m in scenes]
    # A published version never changes: the report is a record of its own beside it.
    record = record_evaluation(
        params.model.path, report.model_dump(mode="json"), "test", scenes=scene_ids
    )
    return TestResult(
        project=params.model.project,
        version=params.model.version,
        report=report,
        scenes=scene_ids,
        evaluation=str(record),
    )


def _ray_test_report(
    model_path: str, scenes: list[dict[str, Any]], ctx: JobContext
) -> dict[str, Any]:
    """The test report with the scenes' pixels counted on the Ray cluster's actors."""
    from sipd.accuracy import accuracy_report
    from sipd.errors import FailedPrecondition
    from sipd.jobs.ray_executor import ray_test_counts
    from sipd.modelrepo import read_card

    card = read_card(model_path)
    batch = ctx.settings.inference.batch_size or (4 if ctx.settings.ray.gpus_per_actor else 1)
    counts = ray_test_counts(model_path, scenes, batch_size=batch, ctx=ctx.child(0.1, 0.9))
    if not counts.sum():
        raise FailedPrecondition(
            "no test pixels: add ROIs with split test to the scenes (and rebuild the test "
            f"masks) before testing; scenes checked: {[s['name'] for s in scenes]}"
        )
    ctx.progress("test", 1.0, "done", force=True)
    return accuracy_report(counts, [c.name for c in card.classes],
                           [c.value for c in card.classes])  # fmt: skip


@handler(PredictParams)
def predict(params: PredictParams, ctx: JobContext) -> PredictResult:
    """Every input through one pipeline: the next scene is read while the current
    one is inferred, and finished scenes become COGs while the next one runs."""
    # stat before anything opens an input: a FIFO (dropped in an inbox, or
    # swapped in after submit) would block the one worker in open() for good.
    for item in params.items:
        if not item.input.startswith("/vsi"):  # sipd's own archive paths
            require_regular(item.input, "input raster")
    if params.background_mask:
        require_regular(params.background_mask, "background mask")
    started = time.perf_counter()
    try:
        provider, results = _predict(params, ctx)
    finally:
        # Whatever happened: a failed or cancelled job leaves no intermediate that the
        # request did not want kept.
        for item in params.items:
            if item.preprocess is not None and not item.keep_preprocessed:
                Path(item.preprocessed).unlink(missing_ok=True)
    return PredictResult(
        project=params.model.project,
        version=params.model.version,
        scenes=[
            ScenePrediction(
                input=item.input,
                output=item.output,
                confidence=item.confidence,
                probabilities=item.probabilities,
                quicklook=item.quicklook,
                width=r["width"],
                height=r["height"],
                pixels=r["pixels"],
                class_pixels=r["class_pixels"],
                class_area_m2=r["class_area_m2"],
                pixel_area_m2=r["pixel_area_m2"],
                seconds=r["seconds"],
                mpx_per_s=r["mpx_per_s"],
                tiles=r["tiles"],
                tile_shape=r["tile_shape"],
                timing=r["timing"],
                uncertainty=item.uncertainty,
                mean_uncertainty=r["mean_uncertainty"],
                uncertain_share=r["uncertain_share"],
                preprocess=item.preprocess,
                preprocessed=item.preprocessed,
                keep_preprocessed=item.keep_preprocessed,
                warnings=item.warnings,
            )
            for item, r in zip(params.items, results, strict=True)
        ],
        provider=provider,
        seconds=time.perf_counter() - started,
    )


def _predict(params: PredictParams, ctx: JobContext) -> tuple[str, list[dict[str, Any]]]:
    """Raw products among the inputs become scenes first (the first half of the job's
    progress), then every scene is predicted: here, or on the Ray cluster's actors
    (`executor: ray`, sipd.jobs.ray_executor). Returns the provider and the results."""
    from sipd.inference.predictor import SceneRequest, predict_scenes

    raw = [item for item in params.items if item.preprocess is not None]
    if raw:
        from sipd.preprocess.runner import preprocess as run_preprocess

        for index, item in enumerate(raw):
            assert item.preprocess is not None
            step_ctx = ctx.child(0.5 * index / len(raw), 0.5 / len(raw))
            # overwrite: a retried arrival replaces what an earlier attempt left.
            run_preprocess(item.input, item.preprocessed, item.preprocess, step_ctx, overwrite=True)
    scene_ctx = ctx.child(0.5, 0.5) if raw else ctx
    if ctx.settings.executor == "ray":
        from sipd.jobs.ray_executor import ray_predict

        results = ray_predict(
            params.model.path, params.items, background_mask=params.background_mask,
            tile_size=params.tile_size or None, ctx=scene_ctx,
            batch_size=params.batch_size or ctx.settings.inference.batch_size
            or (4 if ctx.settings.ray.gpus_per_actor else 1),
        )  # fmt: skip
        return (results[0].get("provider", "") if results else ""), results
    model = session_cache(ctx).get(params.model.path)
    requests = [
        SceneRequest(
            item.preprocessed or item.input,
            item.output,
            confidence=item.confidence or None,
            probabilities=item.probabilities or None,
            quicklook=item.quicklook or None,
            background=background_for(item.preprocessed or item.input, params.background_mask),
            uncertainty=item.uncertainty or None,
        )
        for item in params.items
    ]
    results = predict_scenes(
        model,
        requests,
        tile_size=params.tile_size or None,
        batch_size=_batch_size(params.batch_size, ctx, model),
        ctx=scene_ctx,
    )
    return model.provider, results


@handler(SuggestParams)
def suggest(params: SuggestParams, ctx: JobContext) -> SuggestResult:
    """Regions where a new label would help most (sipd.inference.suggest): the model's
    uncertainty reduced per region in the streaming tile loop, ranked, as GeoJSON."""
    from sipd.inference.suggest import SuggestScene, regions_geojson, suggest_regions

    for scene in params.snapshot.scenes:
        require_regular(scene.path, "scene raster")
    started = time.perf_counter()
    model = session_cache(ctx).get(params.model.path)
    scenes = [
        SuggestScene(
            name=s.name,
            src=s.path,
            crs=s.info.crs,
            transform=s.info.transform,
            rois=[(r.wkt, r.width) for r in s.rois],
            background=background_for(s.path, s.background_mask),
        )
        for s in params.snapshot.scenes
    ]
    regions, candidates = suggest_regions(
        model,
        scenes,
        n=params.n,
        size=params.size,
        min_distance=params.min_distance,
        tile_size=params.tile_size or None,
        batch_size=_batch_size(params.batch_size, ctx, model),
        ctx=ctx,
    )
    return SuggestResult(
        project=params.model.project,
        version=params.model.version,
        regions=[
            SuggestedRegion(
                rank=r.rank,
                scene=r.scene,
                row=r.row,
                col=r.col,
                size=r.size,
                uncertainty=r.uncertainty,
                class_mix=r.class_mix,
                majority_class=r.majority_class,
            )
            for r in regions
        ],
        geojson=json.dumps(regions_geojson(regions, scenes)),
        scenes=[s.name for s in scenes],
        candidates=candidates,
        seconds=time.perf_counter() - started,
    )


@handler(PreprocessParams)
def preprocess(params: PreprocessParams, ctx: JobContext) -> PreprocessResult:
    """A raw product into a calibrated, geocoded COG (sipd.preprocess)."""
    from sipd.preprocess.runner import preprocess as run_preprocess

    fields = run_preprocess(
        params.input, params.output, params.step, ctx, overwrite=params.overwrite
    )
    return PreprocessResult(**{**fields, "info": RasterInfo(**fields["info"])})


def background_for(scene: str, mask: str) -> Any:
    """What the predictor takes as a background mask for `scene`.

    A raster mask is read window by window with the tiles; a vector mask is
    rasterized when its scene is first read (and dropped when it is done),
    so memory holds at most the scenes in flight, not all of a job's.
    """
    if not mask:
        return None
    from sipd.labeling.rasterize import VECTOR_MASK_EXTENSIONS, background_mask

    if Path(mask).suffix.lower() in VECTOR_MASK_EXTENSIONS:
        return functools.partial(background_mask, scene, mask)
    return mask


@handler(ExportParams)
def export(params: ExportParams, ctx: JobContext) -> ExportResult:
    """Re-export a version's checkpoint (lean head, optional fp16 variant) as a new version."""
    from sipd.modelrepo import read_card

    ctx.progress("export", 0.0, "exporting ONNX", force=True)
    if read_card(params.model.path).architecture.name == "forest":
        # A forest is re-exported from its forest.joblib, not a torch checkpoint.
        from sipd.training.forest import reexport_forest as reexport
    else:
        from sipd.training.onnx_export import reexport_model as reexport
    result = reexport(params.model.path, fp16=params.fp16)  # a new version
    ctx.progress("export", 1.0, f"model version {result['version']}", force=True)
    return ExportResult(
        project=params.model.project,
        version=result["version"],
        source_version=params.model.version,
        files=result["files"],
        max_abs_diff=result["max_abs_diff"],
    )
