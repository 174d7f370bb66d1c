"""Raster I/O helpers: the one place for atomic writes and raster metadata."""

from __future__ import annotations

import contextlib
import os
import threading
import uuid
from collections.abc import Callable, Iterator
from glob import escape as glob_escape
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.errors import RasterioIOError

from sipd.errors import InvalidArgument
from sipd.paths import require_regular

# Pixel types a scene may have (the list); anything else is refused
# up front rather than failing deep inside training.
SCENE_DTYPES = ("uint8", "uint16", "int16", "float32")


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside `final`; rename it onto `final` on success.

    A reader never sees a half-written file: the temporary name starts with
    a dot (watchers and globbing skip it) and lives in the same folder, so
    the rename is atomic. On error the temporary file is removed.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".{final.name}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        yield tmp
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


# Called with every file GDAL opened for a dataset (`ds.files`: VRT sources,
# sidecars) before any pixel is read; raises to refuse the dataset.
FilesCheck = Callable[[list[str]], None]

# The check applied when a caller gives none. The worker sets it to the allowed roots
# (plus the data dir): a file swapped for a VRT after the daemon checked it, while its
# job waited in the queue, still cannot make the worker read outside them.
_process_check: FilesCheck | None = None


# A check for one thread only: work the daemon does itself, outside the worker, on
# files a request names (fitting a recipe on training products).
_thread_check = threading.local()


def check_opened_files_everywhere(check: FilesCheck | None) -> None:
    """Make `check` the default of every open_raster in this process."""
    global _process_check
    _process_check = check


@contextlib.contextmanager
def files_checked(check: FilesCheck) -> Iterator[None]:
    """Make `check` the default of every open_raster and check_files_read in this
    thread for the duration."""
    previous = getattr(_thread_check, "check", None)
    _thread_check.check = check
    try:
        yield
    finally:
        _thread_check.check = previous


def _default_check() -> FilesCheck | None:
    return getattr(_thread_check, "check", None) or _process_check


def check_files_read(files: list[str], check_files: FilesCheck | None = None) -> None:
    """Apply `check_files` (or the process-wide check) to files read without GDAL
    (a product's XML) or before opening them (its measurement rasters)."""
    check = check_files or _default_check()
    if check is not None and files:
        check(files)


def open_raster(
    path: str | os.PathLike[str], check_files: FilesCheck | None = None
) -> rasterio.DatasetReader:
    """Open a raster for reading, turning GDAL's errors into a clear InvalidArgument.

    A plain path must be a regular file or a folder (checked with os.stat before
    GDAL opens anything: open() on a FIFO would block the thread for good).
    """
    if "://" not in str(path) and not str(path).startswith("/vsi"):
        require_regular(path, "raster")
    try:
        ds = rasterio.open(path)
    except RasterioIOError as exc:
        raise InvalidArgument(
            f"cannot read raster {path}: {exc}; accepted: any GDAL-readable raster "
            "(GeoTIFF/COG, JP2, ENVI, HDF5, netCDF, NITF, PNG, SAFE, RS2)"
        ) from exc
    check_files = check_files or _default_check()
    if check_files is not None:
        try:
            check_files(list(ds.files))
        except BaseException:
            ds.close()
            raise
    return ds


def check_readable(path: str | os.PathLike[str], check_files: FilesCheck | None = None) -> None:
    """Read the first and the last block of every band: a truncated or corrupt
    file fails here, when it is registered, rather than halfway through a job."""
    with open_raster(path, check_files) as ds:
        windows = list(ds.block_windows(1))
        try:
            for _, window in (windows[0], windows[-1]) if windows else ():
                ds.read(window=window)
        except (RasterioIOError, rasterio.errors.RasterioError) as exc:
            raise InvalidArgument(
                f"raster {path} is corrupt or truncated: {exc}; write or copy it again"
            ) from exc


def raster_info(
    path: str | os.PathLike[str], check_files: FilesCheck | None = None
) -> dict[str, Any]:
    """Metadata of a raster as plain data (size, bands, dtype, CRS, transform, nodata)."""
    with open_raster(path, check_files) as ds:
        crs = ds.crs.to_string() if ds.crs else ""
        return {
            "path": str(path),
            "driver": ds.driver,
            "width": ds.width,
            "height": ds.height,
            "band_count": ds.count,
            "dtype": ds.dtypes[0],
            "band_names": [d or "" for d in ds.descriptions],
            "crs": crs,
            "transform": list(ds.transform)[:6],
            "nodata": float(ds.nodata) if ds.nodata is not None else None,
            "block_shape": list(ds.block_shapes[0]) if ds.block_shapes else [],
            "pixel_size": [abs(ds.transform.a), abs(ds.transform.e)],
        }


def band_statistics(ds: rasterio.DatasetReader, check: Any = None) -> list[dict[str, float]]:
    """Exact per-band min, max, mean and std over valid pixels, block by block.

    `check` is called once per block (the job's cancel check), so a large
    raster can be interrupted.
    """
    n = ds.count
    count = np.zeros(n, dtype=np.float64)
    total = np.zeros(n, dtype=np.float64)
    total_sq = np.zeros(n, dtype=np.float64)
    lo = np.full(n, np.inf)
    hi = np.full(n, -np.inf)
    for _, window in ds.block_windows(1):
        if check is not None:
            check()
        data = ds.read(window=window, masked=True).astype(np.float64)
        for b in range(n):
            valid = data[b].compressed()
            valid = valid[np.isfinite(valid)]
            if valid.size == 0:
                continue
            count[b] += valid.size
            total[b] += valid.sum()
            total_sq[b] += np.square(valid).sum()
            lo[b] = min(lo[b], valid.min())
            hi[b] = max(hi[b], valid.max())
    stats = []
    for b in range(n):
        if count[b] == 0:
            stats.append({"valid_pixels": 0, "min": 0.0, "max": 0.0, "mean": 0.0, "std": 0.0})
            continue
        mean = total[b] / count[b]
        var = max(total_sq[b] / count[b] - mean * mean, 0.0)
        stats.append(
            {
                "valid_pixels": float(count[b]),
                "min": float(lo[b]),
                "max": float(hi[b]),
                "mean": float(mean),
                "std": float(np.sqrt(var)),
            }
        )
    return stats


# --- Cloud-optimized GeoTIFF output -------------------------------------------
#
# GDAL's COG driver only implements CreateCopy, so a label map is produced in
# two steps: windows are written into a plain tiled GeoTIFF scratch file, then
# the COG driver copies it (building the overviews and laying out the tiles in
# COG order). The scratch file lives beside the final file (same disk, so no
# surprise when /tmp is small) under a dot-name, and is always removed.


@contextlib.contextmanager
def scratch_path(near: str | os.PathLike[str], suffix: str = ".tif") -> Iterator[Path]:
    """Yield a temporary path in the folder of `near`; always removed afterwards.

    GDAL sidecar files a driver may leave (.aux.xml, .ovr, .msk) go with it.
    """
    near = Path(near)
    near.parent.mkdir(parents=True, exist_ok=True)
    tmp = near.parent / f".{near.name}.{uuid.uuid4().hex[:8]}.scratch{suffix}"
    try:
        yield tmp
    finally:
        for p in (tmp, *(tmp.with_name(tmp.name + s) for s in (".aux.xml", ".ovr", ".msk"))):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()


def remove_stale_scratch(near: str | os.PathLike[str]) -> None:
    """Remove scratch files a killed worker left for `near` (named as by
    `scratch_path` and `atomic_path`). The one worker writes an output at a
    time, so none of them is still in use."""
    near = Path(near)
    if not near.parent.is_dir():
        return
    stem = glob_escape(near.name)
    stale = [*near.parent.glob(f".{stem}.*.scratch*"), *near.parent.glob(f".{stem}.*.tmp")]
    for p in stale:
        with contextlib.suppress(OSError):
            if p.is_file() and not p.is_symlink():
                p.unlink()


def tiled_gtiff_profile(
    like: rasterio.DatasetReader | dict[str, Any],
    *,
    count: int,
    dtype: str,
    nodata: float | None,
    blocksize: int = 512,
) -> dict[str, Any]:
    """Profile of an uncompressed tiled GeoTIFF on the grid of `like` (a dataset or profile).

    Scratch files stay uncompressed: they are read once by the COG copy, and
    compressing them would only cost CPU the inference needs.
    """
    if isinstance(like, dict):
        width, height = like["width"], like["height"]
        crs, transform = like.get("crs"), like.get("transform")
    else:
        width, height, crs, transform = like.width, like.height, like.crs, like.transform
    return {
        "driver": "GTiff",
        "width": width,
        "height": height,
        "count": count,
        "dtype": dtype,
        "nodata": nodata,
        "crs": crs,
        "transform": transform,
        "tiled": True,
        "blockxsize": blocksize,
        "blockysize": blocksize,
        "interleave": "band",
        "BIGTIFF": "IF_SAFER",
    }


def copy_to_cog(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    *,
    resampling: str = "NEAREST",
    blocksize: int = 512,
    compress: str = "DEFLATE",
    predictor: str | None = None,
    num_threads: str = "ALL_CPUS",
    level: int | None = None,
    overviews: str = "AUTO",
) -> None:
    """Copy a raster to `dst` as a COG with internal overviews.

    `resampling` is the overview method: NEAREST for label maps (an average of
    class values is meaningless), AVERAGE for continuous maps. The COG driver
    builds the overviews itself (OVERVIEWS=AUTO) down to one block, or copies
    those `src` already has (FORCE_USE_EXISTING).
    """
    import rasterio.shutil

    options: dict[str, Any] = {
        "COMPRESS": compress,
        "BLOCKSIZE": blocksize,
        "RESAMPLING": resampling,
        "OVERVIEWS": overviews,
        "NUM_THREADS": num_threads,
        "BIGTIFF": "IF_SAFER",
    }
    if predictor:
        options["PREDICTOR"] = predictor
    if level is not None:
        options["LEVEL"] = level
    rasterio.shutil.copy(str(src), str(dst), driver="COG", **options)
