"""Job types: what the worker runs for each `Job.type`.

Each handler takes the job's params (plain data, paths already checked by
the daemon) and a JobContext, and returns the result as plain data shaped
like the proto result message of that type. Heavy imports (torch,
onnxruntime) happen inside handlers so the worker starts fast.
"""

from __future__ import annotations

import functools
import json
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sipd.errors import InvalidArgument
from sipd.progress import JobContext

Handler = Callable[[dict[str, Any], JobContext], dict[str, Any]]
HANDLERS: dict[str, Handler] = {}


def handler(name: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        HANDLERS[name] = fn
        return fn

    return register


def run(job_type: str, params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    fn = HANDLERS.get(job_type)
    if fn is None:
        raise InvalidArgument(
            f"unknown job type {job_type!r}; known: {', '.join(sorted(HANDLERS))}"
        )
    return fn(params, ctx)


@handler("inspect")
def inspect(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    from sipd.raster import band_statistics, open_raster, raster_info

    ctx.progress("inspect", 0.0, "reading metadata", force=True)
    info = raster_info(params["path"])
    result: dict[str, Any] = {"info": {k: v for k, v in info.items() if k in _RASTER_INFO_FIELDS}}
    if info["nodata"] is None:
        result["info"].pop("nodata")
    if params.get("statistics"):
        with open_raster(params["path"]) as ds:
            blocks = max(1, sum(1 for _ in ds.block_windows(1)))
            done = 0

            def step() -> None:
                nonlocal done
                ctx.check_cancelled()
                done += 1
                ctx.progress("statistics", done / blocks, f"block {done}/{blocks}")

            stats = band_statistics(ds, step)
        result["statistics"] = [{"band": i + 1, **s} for i, s in enumerate(stats)]
    return result


_RASTER_INFO_FIELDS = (
    "path",
    "driver",
    "width",
    "height",
    "band_count",
    "dtype",
    "band_names",
    "crs",
    "transform",
    "nodata",
    "block_shape",
)


@handler("diagnostics")
def diagnostics(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    import onnxruntime as ort
    import torch

    from sipd.inference.sessions import usable_providers

    seconds = float(params.get("seconds", 2.0))
    size = int(params.get("matrix_size", 1024))
    device = torch.device(ctx.device)
    a = torch.randn(size, size, device=device)
    b = torch.randn(size, size, device=device)
    iterations = 0
    start = time.perf_counter()
    # Cancel is checked between multiplies: one multiply is the longest
    # stretch the job cannot be interrupted cooperatively.
    while time.perf_counter() - start < seconds:
        ctx.check_cancelled()
        torch.matmul(a, b)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        iterations += 1
        elapsed = time.perf_counter() - start
        ctx.progress("measure", min(elapsed / seconds, 1.0), f"{iterations} multiplies")
    elapsed = time.perf_counter() - start
    gflops = 2.0 * size**3 * iterations / elapsed / 1e9
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = platform.processor() or platform.machine()
    return {
        "device": ctx.device,
        "device_name": name,
        "gflops": gflops,
        "iterations": iterations,
        "seconds": elapsed,
        "onnxruntime_providers": usable_providers(ctx.device),
        "torch_version": torch.__version__,
        "onnxruntime_version": ort.__version__,
    }


# -- the learning pipeline ------------------------------------------------------------
# Params are snapshots made by the daemon at submit time (sipd.projects.snapshot):
# the job trains/tests on the ROIs that existed when it was asked for.

_sessions: Any = None  # SessionCache, warm across jobs in this worker process


def session_cache(ctx: JobContext) -> Any:
    global _sessions
    if _sessions is None:
        from sipd.inference.sessions import SessionCache

        conf = ctx.settings.get("inference", {})
        _sessions = SessionCache(
            max_sessions=int(conf.get("session_cache_size", 4)),
            device=ctx.device,
            intra_op_threads=int(conf.get("intra_op_threads") or ctx.settings.get("threads") or 0),
            enable_tensorrt=bool(conf.get("tensorrt", False)),
            fp16=bool(conf.get("fp16", False)),
        )
    return _sessions


def _batch_size(params: dict[str, Any], ctx: JobContext, model: Any) -> int:
    """Tiles per onnxruntime call: the request's, else the config's, else by device.

    On a CPU one ~1000 px tile already keeps every core busy, and each more
    tile in a batch costs its activations (~0.4 GB for the default U-Net);
    a GPU wants several tiles per launch.
    """
    configured = params.get("batch_size") or ctx.settings.get("inference", {}).get("batch_size")
    if configured:
        return int(configured)
    return 4 if model.on_gpu else 1


def _write_json(path: Path, data: dict[str, Any]) -> None:
    from sipd.raster import atomic_path

    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2))


def _masks(
    params: dict[str, Any], ctx: JobContext, splits: tuple[str, ...]
) -> list[dict[str, Any]]:
    """Rasterize each scene's ROI snapshot into mask GeoTIFFs."""
    from sipd.labeling.masks import scene_masks

    out = []
    scenes = params["scenes"]
    for i, scene in enumerate(scenes):
        ctx.check_cancelled()
        ctx.progress("mask", i / len(scenes), f"scene {scene['name']}", force=True)
        result = scene_masks(scene, scene["rois"], params["classes"], scene["masks_dir"], splits)
        out.append({"name": scene["name"], "path": scene["path"], "masks": result["paths"]})
    return out


def _prepare(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    from sipd.dataset.prepare import prepare_dataset

    scenes = _masks(params, ctx.child(0.0, 0.2), ("train", "val"))
    summary = prepare_dataset(
        scenes,
        out_dir=params["dataset_dir"],
        bands=params["bands"],
        chip_size=int(params["chip_size"]),
        ctx=ctx.child(0.2, 0.8),
    )
    # Which labels the dataset was made from: the daemon compares this with
    # the project's revision to tell whether the dataset is stale.
    _write_json(
        Path(params["dataset_dir"]) / "source.json",
        {"revision": params["revision"], "chip_size": int(params["chip_size"])},
    )
    names = {int(c["value"]): c["name"] for c in params["classes"]}
    labeled = [
        {
            "class_name": names.get(int(v), str(v)),
            "split": f"SPLIT_{split.upper()}",
            "pixels": int(n),
        }
        for split, per_class in summary["labeled_pixels"].items()
        for v, n in per_class.items()
    ]
    return {
        "chips": summary["chips"],
        "chip_size": summary["chip_size"],
        "labeled_pixels": labeled,
        "normalization_mean": summary["normalization"]["mean"],
        "normalization_std": summary["normalization"]["std"],
        "scenes": [f"projects/{params['project']}/scenes/{s['name']}" for s in params["scenes"]],
    }


@handler("prepare")
def prepare(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    return _prepare(params, ctx)


@handler("train")
def train(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    from sipd.training.train import train_model

    step = ctx
    if params.get("prepare"):
        _prepare(params, ctx.child(0.0, 0.15))
        step = ctx.child(0.15, 0.85)
    result = train_model(
        dataset_dir=params["dataset_dir"],
        models_root=params["models_root"],
        project=params["project"],
        classes=params["classes"],
        bands=params["bands"],
        arch=params["arch"],
        epochs=int(params["epochs"]),
        batch_size=int(params["batch_size"]),
        learning_rate=float(params["learning_rate"]),
        seed=int(params["seed"]),
        class_weights=params.get("class_weights"),
        augment=bool(params["augment"]),
        patience=params.get("patience"),
        ctx=step,
    )
    return {k: result[k] for k in _TRAIN_RESULT if k in result}


_TRAIN_RESULT = (
    "model",
    "version",
    "epochs_run",
    "best_epoch",
    "best_val_accuracy",
    "history",
    "onnx_max_abs_diff",
    "seconds",
)


@handler("test")
def test(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    from sipd.inference.evaluate import evaluate_model

    model = session_cache(ctx).get(params["model_dir"])
    scenes = [
        {"name": s["name"], "path": s["path"], "test_mask": s["masks"]["test"]}
        for s in _masks(params, ctx.child(0.0, 0.1), ("test",))
    ]
    report = evaluate_model(
        model, scenes, ctx=ctx.child(0.1, 0.9), batch_size=_batch_size(params, ctx, model)
    )
    report["model"] = params["model"]
    report["scenes"] = [f"projects/{params['project']}/scenes/{s['name']}" for s in scenes]
    # The latest test report travels with the model folder.
    metrics_path = Path(params["model_dir"]) / "metrics.json"
    metrics = json.loads(metrics_path.read_text()) if metrics_path.exists() else {}
    metrics["test"] = report
    _write_json(metrics_path, metrics)
    return report


@handler("predict")
def predict(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """Every input through one pipeline: the next scene is read while the current
    one is inferred, and finished scenes become COGs while the next one runs."""
    from sipd.inference.predictor import SceneRequest, predict_scenes

    started = time.perf_counter()
    model = session_cache(ctx).get(params["model_dir"])
    inputs = params["inputs"]
    mask = params.get("background_mask") or ""
    requests = [
        SceneRequest(
            item["path"],
            item["output"],
            confidence=item.get("confidence") or None,
            probabilities=item.get("probabilities") or None,
            quicklook=item.get("quicklook") or None,
            background=_background(item["path"], mask),
        )
        for item in inputs
    ]
    results = predict_scenes(
        model,
        requests,
        tile_size=int(params.get("tile_size") or 0) or None,
        batch_size=_batch_size(params, ctx, model),
        ctx=ctx,
    )
    scenes = [
        {
            "input": item["path"],
            "output": item["output"],
            "confidence": item.get("confidence", ""),
            "probabilities": item.get("probabilities", ""),
            "quicklook": item.get("quicklook", ""),
            **{k: result[k] for k in _SCENE_RESULT if k in result},
        }
        for item, result in zip(inputs, results, strict=True)
    ]
    return {
        "model": params["model"],
        "scenes": scenes,
        "provider": model.provider,
        "seconds": time.perf_counter() - started,
    }


def _background(scene: str, mask: str) -> Any:
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


@handler("export")
def export(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """Re-export a model folder's checkpoint (lean head), optionally with an fp16 variant."""
    from sipd.training.onnx_export import reexport_model

    ctx.progress("export", 0.0, "exporting ONNX", force=True)
    result = reexport_model(params["model_dir"], fp16=bool(params.get("fp16")))
    ctx.progress("export", 1.0, "done", force=True)
    return {"model": params["model"], **result}


_SCENE_RESULT = (
    "width",
    "height",
    "pixels",
    "class_pixels",
    "class_area_m2",
    "seconds",
    "mpx_per_s",
)
