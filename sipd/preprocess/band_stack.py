"""Writing a preprocessed scene: bands computed in row blocks, on threads, into one COG.

Every non-SAR preprocessor ends here. It hands a `read_block(row0, row1)` that
returns float32 [bands, rows, width] with NaN for nodata and masked pixels;
blocks are computed on `threads` threads, written in order by the calling
thread into an uncompressed tiled scratch GeoTIFF (memory stays at a few
blocks whatever the scene size), then copied to a COG atomically: a failed or
cancelled run leaves no output.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.errors import NotGeoreferencedWarning, RasterioError
from rasterio.windows import Window

from sipd.errors import InvalidArgument
from sipd.preprocess.streaming import in_order
from sipd.progress import JobContext
from sipd.raster import atomic_path, copy_to_cog, scratch_path, tiled_gtiff_profile

NODATA = float("nan")


@dataclass(frozen=True)
class StackGrid:
    """The output's pixel grid. `crs` is None for images without a map (microscopy,
    drone frames); `transform` then holds the physical pixel size where known."""

    width: int
    height: int
    crs: CRS | None
    transform: Affine = field(default_factory=Affine.identity)


@dataclass
class RunResult:
    """What a preprocessor reports besides the COG: the sensor, metadata to show the
    user, and seconds per step."""

    sensor: str
    metadata: dict[str, str]
    seconds: dict[str, float]


def stack_blocksize(width: int, height: int, count: int) -> int:
    """Tile edge of the scratch file and the COG: 512, smaller for many bands (a COG tile
    holds every band, pixel-interleaved: 512 x 512 x 224 bands x 4 B is 235 MB; 128 px
    tiles took a 224-band cube from 19.8 s and 2.2 GB to 8.8 s and 268 MB) and for images
    much smaller than a tile."""
    size = 512
    while size > 64 and (size * size * count * 4 > 16 * 2**20 or size >= 2 * max(width, height)):
        size //= 2
    return size


def overview_factors(width: int, height: int, blocksize: int = 512) -> list[int]:
    """2, 4, ... until the smallest overview fits in one block (as OVERVIEWS=AUTO)."""
    factors, f = [], 2
    while max(width, height) / (f // 2) > blocksize:
        factors.append(f)
        f *= 2
    return factors


def write_stack(
    output: Path,
    grid: StackGrid,
    band_names: list[str],
    read_block: Callable[[int, int], np.ndarray],
    ctx: JobContext,
    tags: dict[str, str],
    *,
    threads: int,
    block_rows: int = 512,
    band_tags: list[dict[str, str]] | None = None,
) -> dict[str, float]:
    """Write the COG `output` from `read_block`; returns seconds per step."""
    if grid.width < 1 or grid.height < 1:
        raise InvalidArgument(f"the output would be empty ({grid.width} x {grid.height} pixels)")
    if not band_names:
        raise InvalidArgument("no bands to write: the options select none of the product's bands")
    if band_tags is not None and len(band_tags) != len(band_names):
        raise ValueError("band_tags must have one entry per band")
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    blocksize = stack_blocksize(grid.width, grid.height, len(band_names))
    profile = tiled_gtiff_profile(
        {
            "width": grid.width,
            "height": grid.height,
            "crs": grid.crs,
            "transform": grid.transform,
        },
        count=len(band_names),
        dtype="float32",
        nodata=NODATA,
        blocksize=blocksize,
    )
    rows = [(r, min(r + block_rows, grid.height)) for r in range(0, grid.height, block_rows)]
    expected = (len(band_names),)
    with scratch_path(output, ".stack.tif") as scratch, warnings.catch_warnings():
        if grid.crs is None:
            # An image without a map (microscopy, drone frames) is meant to be one.
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(scratch, "w", **profile) as dst:

            def compute(span: tuple[int, int]) -> np.ndarray:
                ctx.check_cancelled()
                try:
                    return read_block(*span)
                except RasterioError as exc:
                    # GDAL failing inside a file whose metadata read fine: a damaged
                    # band (a JP2 cut or overwritten in the middle).
                    raise InvalidArgument(
                        f"cannot read rows {span[0]}-{span[1]} of the product: {exc}; the "
                        "file is damaged: download or copy it again"
                    ) from exc

            with in_order(compute, rows, threads, ahead=threads + 1) as blocks:
                for i, (span, block) in enumerate(blocks):
                    r0, r1 = span
                    shape = (*expected, r1 - r0, grid.width)
                    if block.shape != shape:
                        raise ValueError(f"read_block({r0}, {r1}) gave {block.shape}, not {shape}")
                    dst.write(
                        block.astype(np.float32, copy=False),
                        window=Window(0, r0, grid.width, r1 - r0),
                    )
                    ctx.progress("bands", (i + 1) / len(rows), f"rows {r1} of {grid.height}")
            for b, name in enumerate(band_names, start=1):
                dst.set_band_description(b, name)
                if band_tags is not None and band_tags[b - 1]:
                    dst.update_tags(b, **band_tags[b - 1])
            dst.update_tags(**tags)
        seconds["bands"] = time.perf_counter() - started
        ctx.check_cancelled()
        seconds.update(scene_cog(scratch, output, ctx, threads=threads, blocksize=blocksize))
    seconds["total"] = time.perf_counter() - started
    return seconds


def scene_cog(
    scratch: Path, output: Path, ctx: JobContext, *, threads: int, blocksize: int = 512
) -> dict[str, float]:
    """The COG of a preprocessed scene from its uncompressed tiled scratch file, written
    atomically: overviews built on the scratch first, then copied as they are. Returns
    seconds per step ("overviews", "cog")."""
    seconds: dict[str, float] = {}
    ctx.check_cancelled()
    ctx.progress("write", 0.0, "building overviews", force=True)
    t = time.perf_counter()
    with rasterio.open(scratch) as ds:
        factors = overview_factors(ds.width, ds.height, blocksize)
    if factors:
        # GDAL's BuildOverviews on the uncompressed scratch, then a COG copy that keeps
        # them: measured on 3000 x 3000 x 7 float32, 0.7 s against 23 CPU s for the COG
        # driver's own overview pass (OVERVIEWS=AUTO), which reads the scratch per level.
        with rasterio.Env(GDAL_NUM_THREADS=str(threads)), rasterio.open(scratch, "r+") as ds:
            ds.build_overviews(factors, Resampling.average)
    seconds["overviews"] = time.perf_counter() - t
    ctx.check_cancelled()
    ctx.progress("write", 0.0, "writing the COG", force=True)
    t = time.perf_counter()
    with atomic_path(output) as tmp:
        # DEFLATE at level 1 with the floating-point predictor: measured on a 40 m
        # 3-band IW scene in EPSG:3413, 14.6 s and 317 MB against 25.2 s and 360 MB
        # for LZW and 12.6 s for no compression at all.
        copy_to_cog(
            scratch,
            tmp,
            resampling="AVERAGE",
            compress="DEFLATE",
            predictor="3",
            level=1,
            num_threads=str(threads),
            blocksize=blocksize,
            overviews="FORCE_USE_EXISTING" if factors else "NONE",
        )
    seconds["cog"] = time.perf_counter() - t
    return seconds
