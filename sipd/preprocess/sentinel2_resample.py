"""Row-block resampling between the Sentinel-2 grids (10, 20, 60 m share one upper-left
corner, so one grid's pixels nest exactly in the coarser ones: factors 2, 3 and 6).

- coarsening (a 10 m band to a 20 m output): mean of the k x k fine pixels that are not
  nodata (NaN when all are), as GDAL's "average" resampling does;
- refining (a 20 m band to a 10 m output): "nearest" repeats each coarse pixel k x k
  times; "bilinear" interpolates between the four coarse pixel centres around each fine
  pixel centre (centres aligned: fine pixel c sits at coarse coordinate (c + 0.5) / k -
  0.5; at the tile edges the outermost value is held). A NaN neighbour is left out and
  the weights renormalised; a pixel whose nearest coarse pixel is nodata stays nodata, so
  the footprint is the same whichever refinement is chosen.
- masks (booleans): "any" when coarsening (an output pixel touching a masked pixel is
  masked), nearest when refining.

Every function works on one block of output rows [r0, r1) and says which source rows it
needs (`source_rows`), so a full tile never sits in memory.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Scale:
    """How a source grid maps to the output grid: `coarsen` k (source k times finer),
    `refine` k (source k times coarser), or both 1 (same grid)."""

    coarsen: int = 1
    refine: int = 1

    @classmethod
    def between(cls, source_m: int, target_m: int) -> Scale:
        if source_m <= target_m:
            if target_m % source_m:
                raise ValueError(f"{target_m} m is not a multiple of {source_m} m")
            return cls(coarsen=target_m // source_m)
        if source_m % target_m:
            raise ValueError(f"{source_m} m is not a multiple of {target_m} m")
        return cls(refine=source_m // target_m)

    @property
    def name(self) -> str:
        return "average" if self.coarsen > 1 else ("refine" if self.refine > 1 else "none")


def source_rows(scale: Scale, r0: int, r1: int, source_height: int) -> tuple[int, int]:
    """The source rows [s0, s1) that output rows [r0, r1) need (bilinear's halo included)."""
    if scale.coarsen > 1:
        return r0 * scale.coarsen, min(source_height, r1 * scale.coarsen)
    if scale.refine > 1:
        k = scale.refine
        lo = int(np.floor((r0 + 0.5) / k - 0.5))
        hi = int(np.floor((r1 - 0.5) / k - 0.5)) + 2
        return max(0, lo), min(source_height, hi)
    return r0, min(source_height, r1)


def coarsen_mean(a: np.ndarray, k: int) -> np.ndarray:
    """Mean of the non-NaN values of each k x k cell (NaN where all are NaN)."""
    h, w = a.shape[0] // k, a.shape[1] // k
    cells = a[: h * k, : w * k].reshape(h, k, w, k)
    valid = ~np.isnan(cells)
    count = valid.sum(axis=(1, 3))
    total = np.where(valid, cells, 0).sum(axis=(1, 3), dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (total / count).astype(np.float32)
    out[count == 0] = np.nan
    return out


def coarsen_any(mask: np.ndarray, k: int) -> np.ndarray:
    """True for each k x k cell holding a True."""
    h, w = mask.shape[0] // k, mask.shape[1] // k
    return mask[: h * k, : w * k].reshape(h, k, w, k).any(axis=(1, 3))


def refine_nearest(a: np.ndarray, k: int, r0: int, r1: int, s0: int, width: int) -> np.ndarray:
    """Output rows [r0, r1) x `width` columns from source rows starting at s0."""
    rows = np.arange(r0, r1) // k - s0
    cols = np.minimum(np.arange(width) // k, a.shape[1] - 1)
    return a[np.clip(rows, 0, a.shape[0] - 1)][:, cols]


def _axis(n0: int, n1: int, k: int, s0: int, total: int) -> tuple[np.ndarray, ...]:
    """Lower neighbour index, upper one and weight of the upper, per output coordinate,
    relative to a source window starting at s0 (of a `total`-long axis)."""
    pos = (np.arange(n0, n1) + 0.5) / k - 0.5
    pos = np.clip(pos, 0.0, total - 1.0)  # hold the edge value outside the centres
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, total - 1)
    return lo - s0, hi - s0, (pos - lo).astype(np.float32)


def refine_bilinear(
    a: np.ndarray, k: int, r0: int, r1: int, s0: int, source_height: int, width: int
) -> np.ndarray:
    """Bilinear refinement (see the module notes) of source window `a` (rows from s0)."""
    y0, y1, wy = _axis(r0, r1, k, s0, source_height)
    x0, x1, wx = _axis(0, width, k, 0, a.shape[1])
    wy = wy[:, None]
    wx = wx[None, :]
    total = np.zeros((len(y0), width), np.float32)
    weight = np.zeros_like(total)
    for rows, w_row in ((y0, 1 - wy), (y1, wy)):
        band = a[rows]
        for cols, w_col in ((x0, 1 - wx), (x1, wx)):
            v = band[:, cols]
            w = w_row * w_col
            ok = ~np.isnan(v)
            total += np.where(ok, v, 0) * w
            weight += np.where(ok, w, 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = total / weight
    nearest = refine_nearest(a, k, r0, r1, s0, width)
    out[np.isnan(nearest) | (weight <= 0)] = np.nan
    return out
