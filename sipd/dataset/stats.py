"""Per-band mean/std over valid pixels, streamed strip by strip."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import numpy as np
import rasterio
from rasterio.windows import Window

from sipd.validity import Validity

# Pixels per strip read: bounds memory to a few tens of MB for any width.
STRIP_PIXELS = 1 << 21
# Beyond this many pixels a scene is sampled by taking every k-th strip:
# exact enough for normalization, and bounded in time.
MAX_EXACT_PIXELS = 64_000_000


class RunningStats:
    """Count, mean and sum of squared deviations per band (Chan et al. merge).

    Merging per-strip moments avoids the cancellation of sum(x^2) - n*mean^2
    on float data with a large offset.
    """

    def __init__(self, bands: int) -> None:
        self.n = np.zeros(bands, dtype=np.float64)
        self.mean = np.zeros(bands, dtype=np.float64)
        self.m2 = np.zeros(bands, dtype=np.float64)

    def add(self, band: int, values: np.ndarray) -> None:
        if values.size == 0:
            return
        v = values.astype(np.float64, copy=False)
        n_b = float(v.size)
        mean_b = float(v.mean())
        m2_b = float(np.square(v - mean_b).sum())
        n_a, mean_a = self.n[band], self.mean[band]
        n = n_a + n_b
        delta = mean_b - mean_a
        self.mean[band] = mean_a + delta * n_b / n
        self.m2[band] += m2_b + delta * delta * n_a * n_b / n
        self.n[band] = n

    def result(self) -> tuple[list[float], list[float]]:
        """Means and population stds; a constant or empty band gets std 1 (no scaling)."""
        std = np.sqrt(np.divide(self.m2, self.n, out=np.zeros_like(self.m2), where=self.n > 0))
        std = np.where(std > 1e-12 * np.maximum(1.0, np.abs(self.mean)), std, 1.0)
        return [float(m) for m in self.mean], [float(s) for s in std]


def strips(ds: rasterio.DatasetReader) -> Iterator[Window]:
    """Row strips aligned to the raster's block height, at most ~STRIP_PIXELS each,
    thinned to every k-th strip for scenes above MAX_EXACT_PIXELS."""
    block_h = ds.block_shapes[0][0] if ds.block_shapes else 1
    rows = max(block_h, (STRIP_PIXELS // max(ds.width, 1)) // block_h * block_h)
    step = max(1, math.ceil(ds.width * ds.height / MAX_EXACT_PIXELS))
    for i, r0 in enumerate(range(0, ds.height, rows)):
        if i % step == 0:
            yield Window(0, r0, ds.width, min(rows, ds.height - r0))


def accumulate_scene(
    ds: rasterio.DatasetReader,
    indexes: list[int],
    acc: RunningStats,
    on_strip: Callable[[float], None],
) -> None:
    """Add the valid pixels of `indexes` to `acc`; on_strip(fraction) after each strip."""
    windows = list(strips(ds))
    for i, window in enumerate(windows):
        data, valid, _ = read_valid(ds, indexes, window)
        for b in range(len(indexes)):
            acc.add(b, data[b][valid[b]])
        on_strip((i + 1) / len(windows))


def read_valid(
    ds: rasterio.DatasetReader, indexes: list[int], window: Window
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """float32 data [C, h, w], per-band validity [C, h, w] and pixel validity [h, w].

    Pixel validity is GDAL's dataset mask (sipd.validity), as in prediction.
    A band value counts for the statistics only in a valid pixel and when it
    is itself a measurement (not the band's nodata value, not non-finite):
    a valid pixel's nodata band is filled with the mean, so leaving it out
    keeps the mean and std those of the values the net actually sees.
    """
    data = ds.read(indexes, window=window, out_dtype="float32")
    validity = Validity(ds, indexes)
    band_bad = validity.band_invalid(data, window)
    pixel_bad = validity.invalid(data, window, band_bad)
    pixel_valid = np.ones(data.shape[1:], dtype=bool) if pixel_bad is None else ~pixel_bad
    band_valid = np.broadcast_to(pixel_valid, data.shape).copy()
    if band_bad is not None:
        band_valid &= ~band_bad
    return data, band_valid, pixel_valid
