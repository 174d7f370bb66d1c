"""The multichannel preprocessor: biomedical and industrial images (OME-TIFF, ImageJ,
multi-page and multi-sample TIFF, PNG/JPEG, folders of one image per channel) to one
float32 scene, one band per chosen channel.

Per output band:
- Z and T: one plane by index, or a projection over the axis: maximum intensity
  projection (max over Z of the value at each pixel; Wallis et al., "Three-dimensional
  display in nuclear medicine", IEEE Trans. Med. Imaging 8(4), 1989) or the mean.
  NaN (nodata) planes are left out of both.
- normalize=percentile: v = clip((x - P_lo) / (P_hi - P_lo), 0, 1), with P_lo, P_hi the
  channel's percentiles (linear interpolation between order statistics, Hyndman & Fan
  1996 definition 7, numpy's default) of the projected plane: the percentile
  normalisation of CSBDeep (Weigert et al., "Content-aware image restoration", Nature
  Methods 15, 2018; csbdeep.utils.normalize with clip=True) and scikit-image's
  exposure.rescale_intensity(in_range=(P_lo, P_hi)). A constant channel (P_hi == P_lo)
  gives 0. Images over PERCENTILE_SAMPLE_PIXELS pixels take the percentiles on every
  k-th row, k = ceil(pixels / PERCENTILE_SAMPLE_PIXELS), so memory stays bounded.
Values as stored otherwise (int8 included), as float32; non-finite values and the
file's nodata value (GDAL_NODATA) are NaN.
"""

from __future__ import annotations

import math
import resource
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.errors import NotGeoreferencedWarning, RasterioError
from rasterio.windows import Window

from sipd.contracts.options.multichannel import PERCENTILE_SAMPLE_PIXELS, MultichannelOptions
from sipd.contracts.preprocessing import PreprocessStep
from sipd.errors import InvalidArgument
from sipd.preprocess.band_stack import RunResult, StackGrid, write_stack
from sipd.preprocess.multichannel_source import (
    IMAGE_SUFFIXES,
    Channel,
    ImageSource,
    Plane,
    folder_images,
    image_magic,
    open_image,
)
from sipd.preprocess.product_files import open_measurement
from sipd.preprocess.streaming import DatasetsPerThread
from sipd.progress import JobContext
from sipd.raster import check_files_read

# Rows per block when the percentiles read a whole (small) image.
_SAMPLE_BLOCK = 256


def accepts(path: Path) -> bool:
    """A TIFF, PNG or JPEG (by its first bytes), or a folder with such images directly
    in it (the first few names are looked at, never a walk)."""
    try:
        if path.is_dir():
            return bool(folder_images(path, limit=1))
        if not path.is_file() or not path.name.lower().endswith(IMAGE_SUFFIXES):
            return False
    except OSError:
        return False
    return image_magic(path) != ""


@dataclass(frozen=True)
class Selected:
    """An output band: the channel, the planes to read (per time point, per Z plane) and
    how Z and T reduce ("" for a single index)."""

    channel: Channel
    planes: list[list[Plane]]  # [t][z]
    z_kind: str
    t_kind: str


def run(
    source: Path,
    step: PreprocessStep,
    output: Path,
    ctx: JobContext,
    tags: dict[str, str],
    threads: int,
) -> RunResult:
    options = step.options
    if not isinstance(options, MultichannelOptions):
        raise TypeError("the multichannel preprocessor needs MultichannelOptions")
    seconds: dict[str, float] = {}
    t = time.perf_counter()
    image = open_image(source, options.series)
    bands = select(image, options)
    threads = _threads_for(bands, threads)
    seconds["open"] = time.perf_counter() - t
    ctx.check_cancelled()
    datasets = DatasetsPerThread(opener=_open_plane)
    try:
        limits: list[tuple[float, float]] = []
        if options.normalize == "percentile":
            t = time.perf_counter()
            limits = _percentiles(image, bands, options.percentiles, datasets, ctx)
            seconds["percentiles"] = time.perf_counter() - t

        def read_block(row0: int, row1: int) -> np.ndarray:
            out = np.empty((len(bands), row1 - row0, image.width), np.float32)
            for i, band in enumerate(bands):
                values = band_rows(band, row0, row1, image.width, datasets)
                out[i] = normalize(values, *limits[i]) if limits else values
            return out

        out_tags = {**output_tags(image, options, bands, limits), **tags}
        band_tags = [_band_tags(b, limits[i] if limits else None) for i, b in enumerate(bands)]
        seconds.update(
            write_stack(
                output,
                grid(image),
                [b.channel.name for b in bands],
                read_block,
                ctx,
                out_tags,
                threads=threads,
                band_tags=band_tags,
            )
        )
    finally:
        datasets.close()
    n = len(image.channels)
    sensor = f"{image.format} ({n} channel{'s' if n != 1 else ''}, {image.dtype})"
    metadata = {k.removeprefix("MULTICHANNEL_").lower(): v for k, v in out_tags.items()
                if k.startswith(("MULTICHANNEL_", "PHYSICAL_SIZE"))}  # fmt: skip
    return RunResult(sensor, metadata, seconds)


# ---------------------------------------------------------------- selection


def select(image: ImageSource, options: MultichannelOptions) -> list[Selected]:
    """The output bands the options choose, in their order."""
    chosen = [image.channels[i] for i in _channel_indices(image, options.channels)]
    zs, z_kind = _axis_choice(options.z, image.size_z, "z", "Z planes")
    ts, t_kind = _axis_choice(options.t, image.size_t, "t", "time points")
    return [Selected(c, [[c.planes[z][t] for z in zs] for t in ts], z_kind, t_kind)
            for c in chosen]  # fmt: skip


def _channel_indices(image: ImageSource, wanted: list[str]) -> list[int]:
    names = [c.name for c in image.channels]
    if not wanted:
        return list(range(len(names)))
    out = []
    for w in wanted:
        # A name first (channels may be named "488"), then a 0-based index.
        if w in names:
            out.append(names.index(w))
        elif w.isdigit() and int(w) < len(names):
            out.append(int(w))
        else:
            raise InvalidArgument(
                f"channel {w!r} is not in {image.name}; its channels are "
                f"{', '.join(names)} (or indices 0 to {len(names) - 1})"
            )
    return out


def _axis_choice(choice: str, size: int, option: str, what: str) -> tuple[list[int], str]:
    if choice in ("max", "mean"):
        return list(range(size)), choice
    index = int(choice)
    if index >= size:
        raise InvalidArgument(
            f"{option}={index} is not in the image: it has {size} {what} (0 to {size - 1}); "
            "accepted: an index in that range, or max / mean"
        )
    return [index], ""


def _threads_for(bands: list[Selected], threads: int) -> int:
    """Each thread keeps every plane it reads open (a TIFF page is its own GDAL dataset and
    file handle, and reopening page n walks n IFDs): a deep projection could run out of
    file handles, so threads are cut to fit half the process's limit, and a projection
    that cannot fit even on one thread is refused up front."""
    planes = sum(len(zs) for b in bands for zs in b.planes)
    budget = resource.getrlimit(resource.RLIMIT_NOFILE)[0] // 2
    if budget <= 0:  # RLIM_INFINITY is -1
        return threads
    if planes > budget:
        raise InvalidArgument(
            f"the options read {planes} planes at once (channels x Z x T), more than this "
            f"system's open-file budget ({budget}); take fewer channels, or a z/t index "
            "rather than a projection"
        )
    return max(1, min(threads, budget // planes))


# ---------------------------------------------------------------- pixels


def _open_plane(path: str) -> rasterio.DatasetReader:
    """A plane's dataset: a file through open_raster, a TIFF page ("GTIFF_DIR:n:file")
    with the same checks (the file against the allowed roots, then what GDAL opened)."""
    if not path.startswith("GTIFF_DIR:"):
        return open_measurement(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        check_files_read([path.split(":", 2)[2]])
        try:
            ds = rasterio.open(path)
        except RasterioError as exc:
            raise InvalidArgument(f"cannot read TIFF page {path}: {exc}") from exc
    try:
        check_files_read(list(ds.files))
    except BaseException:
        ds.close()
        raise
    return ds


def _read_plane(
    plane: Plane, row0: int, row1: int, width: int, datasets: DatasetsPerThread
) -> np.ndarray:
    """Rows [row0, row1) of a plane as float64, nodata and non-finite values as NaN."""
    ds = datasets.get(plane.path)
    try:
        raw = ds.read(plane.band, window=Window(0, row0, width, row1 - row0))
    except RasterioError as exc:
        raise InvalidArgument(
            f"{plane.path} cannot be read at rows {row0}-{row1} (truncated or corrupt): "
            f"{exc}; copy or download it again"
        ) from exc
    values = raw.astype(np.float64)
    nodata = ds.nodatavals[plane.band - 1]
    if nodata is not None and not math.isnan(nodata):
        values[raw == nodata] = np.nan
    values[~np.isfinite(values)] = np.nan
    return values


def _reduce(planes: Iterator[np.ndarray], kind: str) -> np.ndarray:
    """One plane (kind ""), or the max / mean over the planes, accumulated one plane at a
    time (a deep Z stack holds two planes in memory, not all); NaN is left out, and a
    pixel NaN in every plane stays NaN."""
    first = next(planes)
    if not kind:
        return first
    if kind == "max":
        out = first
        for plane in planes:
            out = np.fmax(out, plane)
        return out
    ok = ~np.isnan(first)
    total = np.where(ok, first, 0.0)
    count = ok.astype(np.int64)
    for plane in planes:
        ok = ~np.isnan(plane)
        total += np.where(ok, plane, 0.0)
        count += ok
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def band_rows(
    band: Selected, row0: int, row1: int, width: int, datasets: DatasetsPerThread
) -> np.ndarray:
    """Rows [row0, row1) of an output band before normalisation (float64): Z reduced at
    each time point, then T."""
    per_t = (
        _reduce((_read_plane(p, row0, row1, width, datasets) for p in zs), band.z_kind)
        for zs in band.planes
    )
    return _reduce(per_t, band.t_kind)


def normalize(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """clip((x - low) / (high - low), 0, 1); 0 for a constant channel (high == low)."""
    if not high > low:
        return np.where(np.isnan(values), np.nan, 0.0)
    return np.clip((values - low) / (high - low), 0.0, 1.0)


def sample_rows(height: int, width: int) -> tuple[int, list[tuple[int, int]]]:
    """The stride k and the row spans the percentiles read: every row of an image up to
    PERCENTILE_SAMPLE_PIXELS pixels, else every k-th row."""
    k = max(1, math.ceil(height * width / PERCENTILE_SAMPLE_PIXELS))
    if k == 1:
        return 1, [(r, min(r + _SAMPLE_BLOCK, height)) for r in range(0, height, _SAMPLE_BLOCK)]
    return k, [(r, r + 1) for r in range(0, height, k)]


def _percentiles(
    image: ImageSource,
    bands: list[Selected],
    percentiles: list[float],
    datasets: DatasetsPerThread,
    ctx: JobContext,
) -> list[tuple[float, float]]:
    _, spans = sample_rows(image.height, image.width)
    limits = []
    for i, band in enumerate(bands):
        ctx.check_cancelled()
        ctx.progress("percentiles", i / len(bands), f"channel {band.channel.name}")
        sample = np.concatenate(
            [band_rows(band, r0, r1, image.width, datasets).ravel() for r0, r1 in spans]
        )
        sample = sample[~np.isnan(sample)]
        if sample.size == 0:
            raise InvalidArgument(
                f"channel {band.channel.name} of {image.name} holds no valid pixel "
                "(all nodata): nothing to normalise; use normalize=none or drop the channel"
            )
        lo, hi = np.percentile(sample, percentiles)
        limits.append((float(lo), float(hi)))
    return limits


# ---------------------------------------------------------------- grid and tags


def grid(image: ImageSource) -> StackGrid:
    """No CRS; the physical pixel size, where the file has one, as the transform's scale
    (y negative, rows going down as in every north-up raster, so viewers show the image
    upright)."""
    if image.physical is None:
        return StackGrid(image.width, image.height, None, Affine.identity())
    sx, sy, _, _ = image.physical
    return StackGrid(image.width, image.height, None, Affine(sx, 0.0, 0.0, 0.0, -sy, 0.0))


def _axis_text(choice: str, size: int) -> str:
    return f"{choice} of {size}" if choice in ("max", "mean") else f"index {choice} of {size}"


def output_tags(
    image: ImageSource,
    options: MultichannelOptions,
    bands: list[Selected],
    limits: list[tuple[float, float]],
) -> dict[str, str]:
    tags = {
        "MULTICHANNEL_FORMAT": image.format,
        "MULTICHANNEL_SOURCE": image.name,
        "MULTICHANNEL_AXES": image.axes,
        "MULTICHANNEL_SHAPE": "x".join(str(n) for n in image.shape),
        "MULTICHANNEL_DTYPE": image.dtype,
        "MULTICHANNEL_SERIES": f"{options.series} of {image.series_count}",
        "MULTICHANNEL_Z": _axis_text(options.z, image.size_z),
        "MULTICHANNEL_T": _axis_text(options.t, image.size_t),
        "MULTICHANNEL_CHANNELS": ",".join(c.name for c in image.channels),
        "MULTICHANNEL_NORMALIZE": (
            f"percentile {options.percentiles[0]:g},{options.percentiles[1]:g}"
            if limits
            else "none"
        ),
        **{f"MULTICHANNEL_{k}": v for k, v in image.metadata.items()},
    }
    if image.physical is not None:
        sx, sy, unit, origin = image.physical
        tags.update(
            PHYSICAL_SIZE_X=f"{sx:.9g}",
            PHYSICAL_SIZE_Y=f"{sy:.9g}",
            PHYSICAL_SIZE_UNIT=unit,
            PHYSICAL_SIZE_SOURCE=origin,
        )
    return tags


def _band_tags(band: Selected, limits: tuple[float, float] | None) -> dict[str, str]:
    tags = dict(band.channel.tags)
    if limits is not None:
        tags.update(
            percentile_low_value=f"{limits[0]:.9g}", percentile_high_value=f"{limits[1]:.9g}"
        )
    return tags
