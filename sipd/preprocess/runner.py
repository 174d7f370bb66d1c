"""A preprocess run as the worker does it: open the product, check what it reads,
run the chain, describe the result. Shared by the preprocess job and by predict
jobs whose inputs are raw products."""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import rasterio

from sipd.contracts.preprocessing import PreprocessStep, SarOptions
from sipd.errors import AlreadyExists
from sipd.paths import require_regular
from sipd.preprocess import catalog, sar_pipeline
from sipd.preprocess.band_stack import RunResult
from sipd.preprocess.product_files import product_name
from sipd.progress import JobContext
from sipd.raster import raster_info, remove_stale_scratch

log = logging.getLogger("sipd.preprocess")

MAX_THREADS = 8


def preprocess(
    source: str, output: str, step: PreprocessStep, ctx: JobContext, *, overwrite: bool
) -> dict[str, Any]:
    """Preprocess `source` into the COG `output`; returns the result's fields."""
    started = time.perf_counter()
    require_regular(source, "product")
    out = Path(output)
    if out.exists() and not overwrite:
        raise AlreadyExists(f"output {output} exists; pass overwrite to replace it")
    remove_stale_scratch(out)
    preprocessor = catalog.get(step.preprocessor)
    tags = {
        "SIPD_SOURCE": product_name(source),
        catalog.SOFTWARE_TAG: json.dumps(
            {
                "preprocessor": step.preprocessor,
                "recipe": step.recipe,
                "recipe_version": step.recipe_version,
                "options": step.options.model_dump(mode="json"),
            },
            sort_keys=True,
        ),
    }
    # Each thread holds a block or two (~100 MB at IW widths): at most MAX_THREADS keeps
    # memory under 1 GB on a large machine; 2 cores need ~300 MB.
    threads = max(1, min(MAX_THREADS, ctx.settings.threads or os.cpu_count() or 1))
    # GDAL's block cache defaults to 5% of RAM; the chains read each block once, so a
    # small cache loses nothing and keeps the memory bound (a GDAL_CACHEMAX set in the
    # environment, as the worker does, is GDAL's to read and stays as it is).
    cache = {} if "GDAL_CACHEMAX" in os.environ else {"GDAL_CACHEMAX": 256}
    ctx.progress("open", 0.0, f"reading {preprocessor.name} metadata", force=True)
    with rasterio.Env(**cache):
        if preprocessor.kind == "sar":
            ran = _sar(preprocessor, source, step, out, ctx, tags, threads)
        else:
            ran = _sensor(preprocessor, source, step, out, ctx, tags, threads)
    info = raster_info(out)
    ctx.progress("write", 1.0, f"wrote {out.name}", force=True)
    return {
        "preprocessor": step.preprocessor,
        "input": source,
        "output": str(out),
        "info": info,
        "metadata": {"sensor": ran.sensor, **ran.metadata},
        "step_seconds": {k: round(v, 3) for k, v in ran.seconds.items()},
        "seconds": time.perf_counter() - started,
        "recipe": step.recipe,
        "recipe_version": step.recipe_version,
    }


def _sar(
    preprocessor: catalog.Preprocessor,
    source: str,
    step: PreprocessStep,
    out: Path,
    ctx: JobContext,
    tags: dict[str, str],
    threads: int,
) -> RunResult:
    t = time.perf_counter()
    # The reader checks every file it reads, and every raster it opens, against the
    # allowed roots (ProductFiles, open_measurement): a product may hold links.
    options = step.options
    assert isinstance(options, SarOptions)
    product = preprocessor.open(source, options.polarisations or None)
    opened = time.perf_counter() - t
    if options.noise_removal:
        missing = [b.polarisation for b in product.bands if not b.radiometry.noise_available()]
        product.metadata["noise_removal"] = (
            f"not available for {','.join(missing)}" if missing else "applied"
        )
    tags = {"SAR_SENSOR": product.sensor, "SAR_SOURCE": tags["SIPD_SOURCE"], **tags}
    seconds = sar_pipeline.run(product, options, out, ctx, tags, threads=threads)
    seconds["open"] = opened
    return RunResult(product.sensor, dict(product.metadata), seconds)


def _sensor(
    preprocessor: catalog.Preprocessor,
    source: str,
    step: PreprocessStep,
    out: Path,
    ctx: JobContext,
    tags: dict[str, str],
    threads: int,
) -> RunResult:
    # The readers turn the faults they expect into clear messages; anything else the
    # product's content provokes still names the product and what went wrong.
    with catalog.malformed_is_bad_input(
        f"{source} cannot be read as a {preprocessor.name} product"
    ):
        ran: RunResult = preprocessor.code().run(Path(source), step, out, ctx, tags, threads)
    return ran
