"""Geocoding from a geolocation grid: radar geometry onto a north-up grid in any CRS.

GDAL's warper does this with its thin-plate-spline GCP transformer, but evaluating
that spline is most of its time (measured: 16 s for one band of a 40 m IW scene on
2 cores, against 1.3 s with a cubic polynomial that misses the grid points by tens
of metres). Here the same thin-plate spline (scipy's RBFInterpolator, exact at
every grid point) maps output coordinates to (line, pixel) once, on a lattice
every LATTICE output pixels; between lattice points the map is bilinear (the
spline is smooth at that scale: the difference is far below a hundredth of a
pixel). Each output tile then samples the source window it needs with
scipy.ndimage.map_coordinates, so memory is a few tiles whatever the scene size.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.warp import transform as transform_points
from rasterio.windows import Window

from sipd.errors import InvalidArgument
from sipd.preprocess.sar_product import Gcp
from sipd.preprocess.streaming import DatasetsPerThread, in_order

WGS84 = CRS.from_epsg(4326)
LATTICE = 16  # output pixels between exactly computed (line, pixel) points
TILE = 512


def utm_for(lon: float, lat: float) -> CRS:
    """The UTM zone (WGS 84) holding lon/lat: the "auto" CRS of a scene centred there."""
    zone = int(math.floor((lon + 180.0) / 6.0)) % 60 + 1
    return CRS.from_epsg((32600 if lat >= 0 else 32700) + zone)


def parse_crs(text: str) -> CRS:
    """An output CRS the user named (EPSG:NNNN, WKT, PROJ text)."""
    try:
        return CRS.from_user_input(text)
    except Exception as exc:  # rasterio raises CRSError; any failure is the user's text
        raise InvalidArgument(
            f"crs {text!r} is not a CRS GDAL knows ({exc}); accepted: EPSG:NNNN, a WKT or "
            "PROJ string, auto (UTM of the scene centre) or none (radar geometry)"
        ) from None


@dataclass
class OutputGrid:
    crs: CRS
    transform: Affine
    width: int
    height: int


def output_grid(gcps: list[Gcp], crs: CRS, resolution: float) -> OutputGrid:
    """The north-up grid at `resolution` covering every grid point (the grid spans the
    image, first and last line and pixel included)."""
    xs, ys = transform_points(WGS84, crs, [g.lon for g in gcps], [g.lat for g in gcps])
    x0 = np.floor(min(xs) / resolution) * resolution
    y1 = np.ceil(max(ys) / resolution) * resolution
    width = int(np.ceil((max(xs) - x0) / resolution))
    height = int(np.ceil((y1 - min(ys)) / resolution))
    return OutputGrid(crs, Affine(resolution, 0, x0, 0, -resolution, y1), width, height)


def pixel_of(transform: Affine, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(col, row) pixel coordinates (corner-based) of map coordinates."""
    inv = ~transform
    return inv.a * x + inv.b * y + inv.c, inv.d * x + inv.e * y + inv.f


class InverseMap:
    """Output (row, col) pixel centres -> source (line, pixel) array indices."""

    def __init__(self, gcps: list[Gcp], grid: OutputGrid, looks: tuple[int, int]) -> None:
        xs, ys = transform_points(WGS84, grid.crs, [g.lon for g in gcps], [g.lat for g in gcps])
        cols, rows = pixel_of(grid.transform, np.asarray(xs), np.asarray(ys))
        az, rg = looks
        # GCP coordinates are GDAL corner-based in full-resolution pixels; array
        # indices of the multilooked image are centre-based.
        lines = np.array([g.line for g in gcps]) / az - 0.5
        pixels = np.array([g.pixel for g in gcps]) / rg - 0.5
        from scipy.interpolate import RBFInterpolator  # the worker's, not the daemon's import

        self.spline = spline = RBFInterpolator(
            np.column_stack([rows, cols]), np.column_stack([lines, pixels]),
            kernel="thin_plate_spline", degree=1,
        )  # fmt: skip
        self.lr = np.arange(0, grid.height + LATTICE, LATTICE, dtype=np.float64)
        self.lc = np.arange(0, grid.width + LATTICE, LATTICE, dtype=np.float64)
        rr, cc = np.meshgrid(self.lr + 0.5, self.lc + 0.5, indexing="ij")
        values = spline(np.column_stack([rr.ravel(), cc.ravel()]))
        self.lines = values[:, 0].reshape(rr.shape)
        self.pixels = values[:, 1].reshape(rr.shape)

    def coords(self, window: Window) -> tuple[np.ndarray, np.ndarray]:
        from scipy.ndimage import map_coordinates

        r = (np.arange(window.row_off, window.row_off + window.height)) / LATTICE
        c = (np.arange(window.col_off, window.col_off + window.width)) / LATTICE
        rr, cc = np.meshgrid(r, c, indexing="ij")
        at = [rr, cc]
        return (
            map_coordinates(self.lines, at, order=1, mode="nearest"),
            map_coordinates(self.pixels, at, order=1, mode="nearest"),
        )


def tiles(grid: OutputGrid) -> Iterator[Window]:
    for r in range(0, grid.height, TILE):
        for c in range(0, grid.width, TILE):
            yield Window(c, r, min(TILE, grid.width - c), min(TILE, grid.height - r))


class CoordinateMap(Protocol):
    """Output pixel centres of a window -> radar array indices (line, pixel); NaN = none."""

    def coords(self, window: Window) -> tuple[np.ndarray, np.ndarray]: ...


def _sample(
    src: rasterio.DatasetReader, mapping: CoordinateMap, window: Window, order: int
) -> np.ndarray:
    from scipy.ndimage import map_coordinates

    lines, pixels = mapping.coords(window)
    out = np.full((src.count, window.height, window.width), np.nan, dtype=np.float32)
    if not np.isfinite(lines).any():
        return out  # no terrain height under the tile (outside the DEM)
    r0 = max(0, int(np.floor(np.nanmin(lines))) - 1)
    r1 = min(src.height, int(np.ceil(np.nanmax(lines))) + 2)
    c0 = max(0, int(np.floor(np.nanmin(pixels))) - 1)
    c1 = min(src.width, int(np.ceil(np.nanmax(pixels))) + 2)
    if r0 >= r1 or c0 >= c1:
        return out  # the tile is outside the swath
    data = src.read(window=Window(c0, r0, c1 - c0, r1 - r0))
    # A sample beyond the last source pixel centre (by up to half a pixel at the
    # image edge) is outside: cval NaN. Bilinear next to a NaN is NaN: the swath
    # edge loses under one pixel rather than blending nodata into values.
    at = [lines - r0, pixels - c0]
    for b in range(src.count):
        out[b] = map_coordinates(data[b], at, order=order, mode="constant", cval=np.nan)
    return out


def warp(
    radar_path: str,
    mapping: CoordinateMap,
    grid: OutputGrid,
    dst: rasterio.io.DatasetWriter,
    *,
    nearest: bool,
    threads: int,
    progress: Callable[[int, int], None] | None = None,
) -> None:
    """Fill `dst` (opened on `grid`) from the radar-geometry raster at `radar_path`."""
    windows = list(tiles(grid))
    order = 0 if nearest else 1
    sources = DatasetsPerThread()

    def sample(window: Window) -> np.ndarray:
        return _sample(sources.get(radar_path), mapping, window, order)

    try:
        # A few tiles in flight, written in order as they finish: bounded memory.
        with in_order(sample, windows, threads, ahead=2 * threads + 1) as results:
            for done, (window, data) in enumerate(results, start=1):
                dst.write(data, window=window)
                if progress is not None:
                    progress(done, len(windows))
    finally:
        sources.close()
