"""Job types: what the worker runs for each `Job.type`.

Each handler takes the job's params (plain data, paths already checked by
the daemon) and a JobContext, and returns the result as plain data shaped
like the proto result message of that type. Heavy imports (torch,
onnxruntime) happen inside handlers so the worker starts fast.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable
from typing import Any

from sipd.errors import InvalidArgument
from sipd.jobs.context import JobContext

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
        "onnxruntime_providers": _usable_providers(ctx.device),
        "torch_version": torch.__version__,
        "onnxruntime_version": ort.__version__,
    }


def _usable_providers(device: str) -> list[str]:
    """Providers that initialise for `device` (ORT lists CUDA even without a GPU)."""

    if not device.startswith("cuda"):
        return ["CPUExecutionProvider"]
    from sipd.inference.engine import usable_providers

    return usable_providers(device)
