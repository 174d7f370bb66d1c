"""Scene tiles for the studio: overviews built once and cached, band statistics, rendering.

A browser shows any scene size through 256-pixel tiles of the level that fits
the zoom (docs/studio.md). Reads at a coarse level come from overviews: a
scene that has none gets them the first time a coarse tile is asked for, as a
VRT over the user's file plus an external .ovr in the daemon's data dir, so
the user's file is never written and the cache costs a third of the scene.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import shutil
import tempfile
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import rasterio.shutil
from rasterio.enums import Resampling
from rasterio.windows import Window

from sipd.errors import InvalidArgument
from sipd.raster import FilesCheck, open_raster
from sipd.validity import Validity

log = logging.getLogger("sipd.studio")

TILE = 256
# Scenes whose longer side is at most this are read directly at every level.
SMALL_SCENE = 2048
# Statistics are taken from a read of the scene at most this many pixels across.
STATS_SIDE = 1024
STATS_CACHE = 64
# In each overview folder: the real path of the scene it was built from.
SOURCE_FILE = "source.txt"


@dataclass(frozen=True)
class BandStats:
    index: int
    name: str
    min: float
    max: float
    p2: float
    p98: float

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def max_level(width: int, height: int) -> int:
    """The first level at which the whole scene fits in one tile."""
    side = max(width, height)
    return max(0, math.ceil(math.log2(side / TILE))) if side > TILE else 0


def tile_window(
    width: int, height: int, z: int, x: int, y: int
) -> tuple[Window, tuple[int, int]]:
    """Full-resolution window of tile (z, x, y) and its (height, width) in output pixels."""
    top = max_level(width, height)
    if not 0 <= z <= top:
        raise InvalidArgument(f"tile level {z} is not in 0..{top} for a {width} x {height} scene")
    step = TILE * 2**z
    x0, y0 = x * step, y * step
    if x < 0 or y < 0 or x0 >= width or y0 >= height:
        raise InvalidArgument(f"tile {z}/{x}/{y} lies outside the {width} x {height} scene")
    w, h = min(step, width - x0), min(step, height - y0)
    return Window(x0, y0, w, h), (math.ceil(h / 2**z), math.ceil(w / 2**z))


class SceneTiles:
    """Per-scene overview sources and band statistics, cached under `cache_dir`.

    `check` is the allowed-roots check of every file GDAL opens for a scene or a
    label map (sipd.paths.PathPolicy.check_opened): a scene file replaced by a
    VRT pointing elsewhere is refused here as in jobs.
    """

    def __init__(self, cache_dir: Path, check: FilesCheck | None = None) -> None:
        self.cache_dir = cache_dir
        self.check = check
        self._lock = threading.Lock()
        self._building: dict[str, threading.Lock] = {}
        self._stats: OrderedDict[tuple[str, float], list[BandStats]] = OrderedDict()
        # Builds a crash left half done.
        for stale in cache_dir.glob(".build-*") if cache_dir.is_dir() else ():
            shutil.rmtree(stale, ignore_errors=True)

    def open(self, path: str) -> rasterio.DatasetReader:
        """A scene or label map, checked against the roots; a clear error when it is gone."""
        return open_raster(path, self.check)

    def source(self, path: str, level: int) -> str:
        """What to read a level from: the scene itself, or its cached overview VRT."""
        with self.open(path) as ds:
            return self._source_of(ds, path, level)

    def _source_of(self, ds: rasterio.DatasetReader, path: str, level: int) -> str:
        if level == 0 or ds.overviews(1) or max(ds.width, ds.height) <= SMALL_SCENE:
            return path
        return str(self._overviews(path))

    def _overviews(self, path: str) -> Path:
        real = os.path.realpath(path)
        stat = os.stat(real)
        # The key changes when the file does, so a replaced scene never shows stale pixels.
        key = hashlib.sha256(f"{real}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()
        folder = self.cache_dir / key[:24]
        vrt = folder / "scene.vrt"
        if vrt.exists():
            return vrt
        with self._lock:
            lock = self._building.setdefault(real, threading.Lock())
        with lock:
            if vrt.exists():
                return vrt
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            stage = Path(tempfile.mkdtemp(prefix=".build-", dir=self.cache_dir))
            try:
                staged = stage / "scene.vrt"
                rasterio.shutil.copy(real, staged, driver="VRT")
                with rasterio.open(staged, "r+") as ds:
                    factors = [2**i for i in range(1, max_level(ds.width, ds.height) + 1)]
                    ds.build_overviews(factors, Resampling.average)
                (stage / SOURCE_FILE).write_text(real)
                # One rename: a reader sees the folder complete or not at all.
                os.replace(stage, folder)
            except BaseException:
                shutil.rmtree(stage, ignore_errors=True)
                raise
            log.info("studio: overviews of %s built in %s", path, folder)
            self._drop_older(real, folder)
        return vrt

    def _drop_older(self, real: str, current: Path) -> None:
        """Overviews of earlier versions of the same file: never read again."""
        for folder in self.cache_dir.iterdir():
            marker = folder / SOURCE_FILE
            if folder != current and marker.is_file() and marker.read_text() == real:
                shutil.rmtree(folder, ignore_errors=True)

    def stats(self, path: str, band_names: list[str]) -> list[BandStats]:
        with self.open(path) as ds:
            key = (os.path.realpath(path), os.stat(ds.name).st_mtime)
        with self._lock:
            if key in self._stats:
                self._stats.move_to_end(key)
                return self._stats[key]
        with self.open(path) as ds:
            scale = max(1.0, max(ds.width, ds.height) / STATS_SIDE)
            shape = (max(1, round(ds.height / scale)), max(1, round(ds.width / scale)))
            data = ds.read(out_shape=(ds.count, *shape), resampling=Resampling.nearest)
            # A band's own nodata or non-finite values are not measurements, even in a
            # pixel whose other bands are valid (sipd.validity).
            bad = Validity(ds).band_invalid(data, Window(0, 0, ds.width, ds.height))
        out = []
        for i in range(data.shape[0]):
            values = (data[i] if bad is None else data[i][~bad[i]]).astype(np.float64)
            if values.size == 0:
                low = high = p2 = p98 = 0.0
            else:
                low, high = float(values.min()), float(values.max())
                p2, p98 = (float(v) for v in np.percentile(values, [2, 98]))
            name = band_names[i] if i < len(band_names) else f"band{i + 1}"
            out.append(BandStats(i + 1, name, low, high, p2, p98))
        with self._lock:
            self._stats[key] = out
            while len(self._stats) > STATS_CACHE:
                self._stats.popitem(last=False)
        return out

    def render_labels(self, path: str, z: int, x: int, y: int) -> np.ndarray:
        """Tile (z, x, y) of a uint8 label map (a predict output) in its colours."""
        with self.open(path) as ds:
            if ds.count != 1 or ds.dtypes[0] != "uint8":
                raise InvalidArgument(f"{path} is not a label map (one uint8 band)")
            window, shape = tile_window(ds.width, ds.height, z, x, y)
            # Predict writes COGs with overviews: coarse tiles read those.
            return render_labels_window(ds, window, shape)

    def render(
        self,
        path: str,
        z: int,
        x: int,
        y: int,
        bands: list[int],
        lo: list[float],
        hi: list[float],
    ) -> np.ndarray:
        """Tile (z, x, y) as uint8 RGBA [h, w, 4]: bands stretched lo..hi, invalid transparent."""
        # One checked open per tile: the scene itself is read unless the level needs
        # the cached overviews.
        with self.open(path) as ds:
            window, shape = tile_window(ds.width, ds.height, z, x, y)
            bad = [b for b in bands if not 1 <= b <= ds.count]
            if bad or len(bands) not in (1, 3):
                raise InvalidArgument(
                    f"bands {bands} are not one or three band numbers in 1..{ds.count}"
                )
            if len(lo) != len(bands) or len(hi) != len(bands):
                raise InvalidArgument(
                    f"lo and hi need one value per band ({len(bands)}), got {len(lo)} and "
                    f"{len(hi)}"
                )
            source = self._source_of(ds, path, z)
            out_shape = (len(bands), *shape)
            if source == path:
                data = ds.read(bands, window=window, out_shape=out_shape,
                               resampling=Resampling.nearest)  # fmt: skip
                invalid = invalid_mask(ds, data, window, bands)
            else:
                with rasterio.open(source) as overviews:
                    data = overviews.read(bands, window=window, out_shape=out_shape,
                                          resampling=Resampling.nearest)  # fmt: skip
                    invalid = invalid_mask(overviews, data, window, bands)
        low = np.asarray(lo, dtype=np.float32)[:, None, None]
        span = np.asarray(hi, dtype=np.float32)[:, None, None] - low
        span[span == 0] = 1.0
        scaled = np.clip((data.astype(np.float32) - low) * (255.0 / span), 0, 255)
        scaled = np.nan_to_num(scaled).astype(np.uint8)
        rgba = np.empty((*shape, 4), dtype=np.uint8)
        rgba[..., :3] = np.moveaxis(scaled if len(bands) == 3 else scaled[[0, 0, 0]], 0, -1)
        rgba[..., 3] = np.where(invalid, 0, 255)
        return rgba


def render_labels_window(ds: Any, window: Window, shape: tuple[int, int]) -> np.ndarray:
    """A label map's window as RGBA through its colour table; 0 (nodata) transparent."""
    labels = ds.read(1, window=window, out_shape=shape, resampling=Resampling.nearest)
    lut = np.zeros((256, 4), dtype=np.uint8)
    try:
        for value, colour in ds.colormap(1).items():
            if 0 < value < 256:
                lut[value] = colour[:3] + (255,)
    except ValueError:  # no colour table: grey levels
        lut[1:, :3] = np.linspace(40, 255, 255, dtype=np.uint8)[:, None]
        lut[1:, 3] = 255
    return lut[labels]


def invalid_mask(
    ds: rasterio.DatasetReader, data: np.ndarray, window: Window | None = None,
    bands: list[int] | None = None,
) -> np.ndarray:
    """[H, W] True where a pixel of `data` (bands `bands`, default all, read from `window`
    of `ds`, maybe decimated) is invalid by the project's one rule (sipd.validity): GDAL's
    dataset mask is 0, or every band read is nodata or not finite. One band at its
    nodata value among valid others is a real (dark) pixel and stays visible."""
    window = window or Window(0, 0, ds.width, ds.height)
    invalid = Validity(ds, bands).invalid(data, window)
    return np.zeros(data.shape[1:], dtype=bool) if invalid is None else invalid
