"""Terrain correction (sipd.preprocess.terrain.TerrainMap) on a real product's metadata.

The fixture (../shared/fixtures/sentinel1, see SOURCES.md) carries ESA's real VV
annotation (orbit state vectors, geolocation grid, srgr polynomials) and a real
30 m DEM crop over Rome. References come from the annotation itself: its
geolocation grid gives (line, pixel) for (lat, lon, ellipsoid height), computed
by ESA's processor independently of sarsen.
"""

from __future__ import annotations

import math
import zipfile
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.windows import Window

from sipd.errors import InvalidArgument
from sipd.preprocess.geocode import InverseMap, OutputGrid
from sipd.preprocess.sentinel1 import open_sentinel1
from sipd.preprocess.terrain import TerrainMap
from tests.support import shared_fixture

NAME = "S1B_IW_GRDH_1SDV_20211223T051122_20211223T051147_030148_039993_5371.SAFE"
RANGE_SPACING = 10.0  # m, the fixture's rangePixelSpacing
WGS84 = CRS.from_epsg(4326)


@pytest.fixture(scope="module")
def product() -> Path:
    return shared_fixture(f"sentinel1/{NAME}")


@pytest.fixture(scope="module")
def rome_dem() -> Path:
    return shared_fixture("sentinel1/Rome-30m-DEM.tif")


def _write_dem(path: Path, data: np.ndarray, transform: Affine, nodata: float = -9999.0) -> None:
    with rasterio.open(
        path, "w", driver="GTiff", width=data.shape[1], height=data.shape[0], count=1,
        dtype="float32", crs=WGS84, transform=transform, nodata=nodata,
    ) as dst:  # fmt: skip
        dst.write(data.astype(np.float32), 1)


@pytest.mark.slow  # range-Doppler solves over many points (seconds)
def test_geolocation_grid_points_come_back(product: Path, tmp_path: Path) -> None:
    """(lat, lon, ellipsoid height) of grid points -> the annotation's (line, pixel)."""
    gcps = open_sentinel1(str(product), ["VV"]).gcps
    # Interior points and a few on the image edges (first/last line, near/far range).
    chosen = gcps[::11] + [gcps[0], gcps[-1]]
    # One DEM over the whole scene at 0.01 deg, no data except a 5x5 block around each
    # chosen point at that point's height: a constant-height patch per grid point.
    res = 0.01
    lons = [g.lon for g in gcps]
    lats = [g.lat for g in gcps]
    x0, y1 = math.floor(min(lons)) - 0.5, math.ceil(max(lats)) + 0.5
    width = int((max(lons) + 0.5 - x0) / res) + 1
    height = int((y1 - min(lats) + 0.5) / res) + 1
    dem = np.full((height, width), -9999.0)
    for g in chosen:
        c, r = int((g.lon - x0) / res), int((y1 - g.lat) / res)
        dem[r - 2 : r + 3, c - 2 : c + 3] = g.height
    dem_path = tmp_path / "patches.tif"
    _write_dem(dem_path, dem, Affine(res, 0, x0, 0, -res, y1))
    # Output grid at 1e-5 deg (~1 m): the pixel centre nearest a grid point is within
    # 0.7 m of it, under a tenth of a 10 m pixel.
    fine = 1e-5
    grid = OutputGrid(WGS84, Affine(fine, 0, x0, 0, -fine, y1), int(width * res / fine), 1)
    looks = (2, 3)
    tm = TerrainMap(str(product), "VV", str(dem_path), grid, looks)
    assert not tm.geoid_ignored  # plain EPSG:4326: heights are ellipsoidal
    errors = []
    for g in chosen:
        window = Window(int((g.lon - x0) / fine), int((y1 - g.lat) / fine), 1, 1)
        lines, pixels = tm.coords(window)
        # Multilooked array index -> corner-based full-resolution coordinate (GCP convention).
        line = (lines[0, 0] + 0.5) * looks[0]
        pixel = (pixels[0, 0] + 0.5) * looks[1]
        errors.append((line - g.line, pixel - g.pixel))
    err = np.abs(np.array(errors))
    assert np.isfinite(err).all(), errors
    assert err.max() < 1.0, errors  # within one full-resolution pixel, both axes


@pytest.mark.slow  # range-Doppler solves over many points (seconds)
def test_rome_dem_shifts_range_by_height_over_tan_incidence(product: Path, rome_dem: Path) -> None:
    prod = open_sentinel1(str(product), ["VV"])
    # A UTM 33N grid at 30 m over the DEM (lon 12.45-12.55, lat 41.95-42.05) and a
    # margin beyond it on the east, where the DEM does not reach.
    crs = CRS.from_epsg(32633)
    x, y = rasterio.warp.transform(WGS84, crs, [12.452], [42.048])
    grid = OutputGrid(crs, Affine(30.0, 0, x[0], 0, -30.0, y[0]), 400, 300)
    looks = (1, 1)
    window = Window(0, 0, grid.width, grid.height)
    tm = TerrainMap(str(product), "VV", str(rome_dem), grid, looks)
    lines, pixels = tm.coords(window)
    flat_lines, flat_pixels = InverseMap(prod.gcps, grid, looks).coords(window)
    h = tm.heights(window)

    inside = np.isfinite(h)
    assert inside[:, :250].all()  # the DEM covers the west part of the grid ...
    assert not inside[:, 320:].any()  # ... not the east margin (> lon 12.55)
    assert np.array_equal(np.isfinite(pixels), inside)
    assert np.array_equal(np.isfinite(lines), inside)

    # The flat mapping places every pixel at the annotation's terrain height (coarse,
    # ellipsoidal, smooth over this 12 km crop); the DEM moves it by
    # -(h - h_annotation) / tan(incidence) / spacing pixels in range. Higher terrain is
    # nearer the satellite: smaller slant range, smaller GRD pixel (pixel 0 is near
    # range), hence the minus. Fit shift = k * h + (plane in row, col): the plane takes
    # h_annotation, the geoid undulation PROJ leaves out offline (EGM96 heights, ~47 m
    # at Rome) and the flat spline's own smooth error; k is the geometry.
    pts = np.array([(g.lon, g.lat) for g in prod.gcps])
    near = np.argsort(np.hypot(pts[:, 0] - 12.5, pts[:, 1] - 42.0))[:4]
    incidence = np.mean([prod.gcps[i].incidence for i in near])  # ~44 deg
    expected = -1.0 / math.tan(math.radians(incidence)) / RANGE_SPACING
    m = inside
    assert np.ptp(h[m]) > 50  # real relief in the crop
    rr, cc = np.mgrid[0 : grid.height, 0 : grid.width]
    shift = pixels - flat_pixels
    design = np.column_stack([h[m], np.ones(m.sum()), rr[m], cc[m]])
    coef, *_ = np.linalg.lstsq(design, shift[m], rcond=None)
    assert coef[0] < 0  # the sign: up is towards near range
    assert abs(coef[0] / expected - 1) < 0.15, (coef[0], expected)
    residual = shift[m] - design @ coef
    assert residual.std() < 1.0, residual.std()  # pixels
    detrended = shift[m] - design[:, 1:] @ coef[1:]
    assert np.corrcoef(detrended, h[m])[0, 1] < -0.95
    # Azimuth barely moves with height (zero-Doppler geometry).
    assert np.nanmax(np.abs(lines - flat_lines)[m]) < 1.0

    # The default lattice + height-level interpolation against sarsen's solve at
    # every pixel: the same to a hundredth of a pixel.
    tm.lattice = None
    exact_lines, exact_pixels = tm.coords(window)
    assert np.array_equal(np.isfinite(exact_pixels), inside)
    assert np.nanmax(np.abs(exact_lines - lines)) < 0.01
    assert np.nanmax(np.abs(exact_pixels - pixels)) < 0.01

    # A tile wholly off the DEM (north-west of it): all NaN, nothing solved.
    tm.lattice = 16
    off_lines, off_pixels = tm.coords(Window(-600, -600, 64, 64))
    assert off_lines.shape == off_pixels.shape == (64, 64)
    assert not np.isfinite(off_lines).any() and not np.isfinite(off_pixels).any()


@pytest.mark.slow  # range-Doppler solves over many points (seconds)
def test_dem_outside_the_footprint(product: Path, tmp_path: Path) -> None:
    dem_path = tmp_path / "gulf_of_guinea.tif"
    _write_dem(dem_path, np.full((10, 10), 5.0), Affine(0.01, 0, 0.0, 0, -0.01, 0.1))
    grid = OutputGrid(WGS84, Affine(0.001, 0, 12.4, 0, -0.001, 42.1), 10, 10)
    with pytest.raises(InvalidArgument, match="does not cover the scene"):
        # (named by its manifest.safe, as a user may)
        TerrainMap(str(product / "manifest.safe"), "VV", str(dem_path), grid, (1, 1))


def test_unreadable_dem(product: Path, tmp_path: Path) -> None:
    grid = OutputGrid(WGS84, Affine(0.001, 0, 12.4, 0, -0.001, 42.1), 10, 10)
    bad = tmp_path / "dem.tif"
    bad.write_bytes(b"not a GeoTIFF at all")
    with pytest.raises(InvalidArgument, match=r"cannot read raster .*dem\.tif"):
        TerrainMap(str(product), "VV", str(bad), grid, (1, 1))
    with pytest.raises(InvalidArgument, match=r"missing\.tif does not exist"):
        TerrainMap(str(product), "VV", str(tmp_path / "missing.tif"), grid, (1, 1))


def test_product_errors(product: Path, rome_dem: Path, tmp_path: Path) -> None:
    grid = OutputGrid(WGS84, Affine(0.001, 0, 12.4, 0, -0.001, 42.1), 10, 10)
    archive = tmp_path / f"{NAME[:-5]}.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(product / "manifest.safe", f"{NAME}/manifest.safe")
    with pytest.raises(InvalidArgument, match="needs the product unpacked"):
        TerrainMap(str(archive), "VV", str(rome_dem), grid, (1, 1))
    with pytest.raises(InvalidArgument, match="no manifest.safe"):
        TerrainMap(str(tmp_path), "VV", str(rome_dem), grid, (1, 1))
    not_s1 = tmp_path / "X.SAFE"
    not_s1.mkdir()
    (not_s1 / "manifest.safe").write_text("<xfdu/>")
    with pytest.raises(InvalidArgument, match="not a Sentinel-1 GRD product"):
        TerrainMap(str(not_s1), "VV", str(rome_dem), grid, (1, 1))
    with pytest.raises(InvalidArgument, match="has no VH measurement"):
        TerrainMap(str(product), "VH", str(rome_dem), grid, (1, 1))
