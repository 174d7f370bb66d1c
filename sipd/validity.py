"""Which pixels of a scene are valid: GDAL's dataset mask, used everywhere.

One rule for labels' background, dataset preparation (training chips and
normalization statistics) and prediction, so what is trained, what the
statistics describe and what is classified agree:

- A pixel is INVALID when GDAL's dataset mask (`ds.dataset_mask()`) is 0:
  every band at its nodata value, an alpha band at 0, or an internal/external
  per-dataset mask at 0. A pixel with ONE band at the nodata value among
  valid others is valid (GDAL's and rasterio's convention): dark real
  pixels can hit the nodata value in one band.
- A pixel whose read bands are ALL invalid (nodata, masked, or non-finite:
  NaN/inf, even without a nodata tag) is invalid too: nothing is left to
  classify it from. With all bands read this adds only all-NaN pixels.
- Inside a valid pixel, a band value that is nodata or non-finite is still
  not a measurement: callers replace it by the band's normalization mean
  (`band_invalid`), so a fill value never reaches the net or the statistics.
"""

from __future__ import annotations

import math

import numpy as np
import rasterio
from rasterio.enums import MaskFlags
from rasterio.windows import Window


def _as(value: float, dtype: np.dtype) -> np.ndarray:
    # The nodata value rounded as the data was (float64 scene read as float32).
    return np.asarray(value).astype(dtype)


class Validity:
    """Validity of one open dataset's pixels, window by window.

    `indexes` are the bands the caller reads (1-based; default all). The
    dataset mask always covers every band of the file, as GDAL's does.
    """

    def __init__(self, ds: rasterio.DatasetReader, indexes: list[int] | None = None) -> None:
        self.ds = ds
        self.indexes = list(indexes) if indexes is not None else list(ds.indexes)
        flags = ds.mask_flag_enums
        self.floating = any(np.dtype(d).kind == "f" for d in ds.dtypes)
        if all(f == [MaskFlags.all_valid] for f in flags):
            self.mode = "none"
        elif all(MaskFlags.nodata in f for f in flags) and set(self.indexes) == set(ds.indexes):
            # Comparing values the caller already holds is much cheaper than
            # asking GDAL for masks, which re-reads and re-compares the blocks.
            # Every band read, in any order: the values are the whole rule.
            self.mode = "nodata"
        else:
            self.mode = "gdal"  # alpha band, internal/external mask, or a band subset
        self._nodata = [ds.nodatavals[i - 1] for i in self.indexes]

    @property
    def all_valid(self) -> bool:
        """Every pixel is valid whatever the data: no mask, no nodata, no float NaN to find."""
        return self.mode == "none" and not self.floating

    def band_invalid(self, data: np.ndarray, window: Window) -> np.ndarray | None:
        """Per read band [C, h, w]: True where the value is nodata, masked or non-finite.

        `data` is what the caller read from `window` (bands `indexes`), at full
        resolution or decimated (`out_shape`): masks are read at data's shape.
        None when every value is valid.
        """
        bad: np.ndarray | None = None
        if self.mode == "nodata":
            bad = np.zeros(data.shape, dtype=bool)
            for b, nd in enumerate(self._nodata):
                if nd is not None:
                    bad[b] = np.isnan(data[b]) if math.isnan(nd) else data[b] == _as(nd, data.dtype)
        elif self.mode == "gdal":
            bad = self.ds.read_masks(self.indexes, window=window, out_shape=data.shape) == 0
        if self.floating or data.dtype.kind == "f":
            nonfinite = ~np.isfinite(data)
            if nonfinite.any():
                bad = nonfinite if bad is None else bad | nonfinite
        if bad is not None and not bad.any():
            return None
        return bad

    def invalid(
        self, data: np.ndarray, window: Window, band_invalid: np.ndarray | None = None
    ) -> np.ndarray | None:
        """[h, w] True where the pixel is invalid (see the module doc); None if none is.

        Pass `band_invalid` when already computed for the same data.
        """
        if band_invalid is None:
            band_invalid = self.band_invalid(data, window)
        if band_invalid is None:
            return None
        # "All read bands invalid" is the dataset mask in nodata mode (NaN
        # counting as nodata), and covers all-NaN float pixels and a band
        # subset with nothing left to classify in the other modes.
        out = band_invalid.all(axis=0)
        if self.mode == "gdal":
            out |= self.ds.dataset_mask(window=window, out_shape=out.shape) == 0
        return out if out.any() else None


def invalid_pixels(ds: rasterio.DatasetReader, window: Window | None = None) -> np.ndarray:
    """[h, w] bool: True where the pixel is invalid, for a window of the whole scene."""
    win = window or Window(0, 0, ds.width, ds.height)
    data = ds.read(window=win, out_dtype="float32")
    inv = Validity(ds).invalid(data, win)
    return np.zeros((int(win.height), int(win.width)), dtype=bool) if inv is None else inv
