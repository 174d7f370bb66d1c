"""The sentinel3 preprocessor, called directly, on the real .SEN3 layouts
(xfdumanifest.xml as published) with netCDF variables written here: the fixture's
*.nc files are stubs without variables.

Expected values are computed here with separate code, in float64:
- radiance / brightness temperature: CF packing, stored * scale_factor + add_offset,
  _FillValue nodata (CF conventions 1.7, sect. 8.1);
- OLCI TOA reflectance (ESA Sentinel-3 OLCI User Guide, Level-1 "TOA reflectance";
  OLCI L1 ATBD S3-ACRI-TN-007): rho = pi * L / (F0[band, detector_index] * cos(SZA)),
  SZA bilinear in the tie-point grid (one tie point every ac columns, al rows);
- the map grid: nearest swath pixel centre (brute force here), within one step; where
  the swath is not affine (curved, sheared, uneven steps) the inverse map may pick a
  pixel at most 2 * max_error steps farther than the nearest (sentinel3_swath's
  documented tolerance; max_error is reported in the S3_GEOLOCATION tag).
Orientation: the test swaths have latitudes that increase with the row, so the
output's first row must hold the swath's last row (GDAL reads netCDF bottom-up
unless told not to).
"""

from __future__ import annotations

import re
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import rasterio
from pyproj import Transformer

from sipd.bench.sentinel3_products import make_s3_olci_product, write_nc
from sipd.contracts.options.sentinel3 import Sentinel3Options
from sipd.contracts.preprocessing import PreprocessStep
from sipd.errors import InvalidArgument
from sipd.preprocess import catalog, sentinel3, sentinel3_swath
from sipd.progress import JobContext
from tests.support import shared_fixture

OLCI = "sentinel3/S3A_OL_1_EFR____20211021T073827_20211021T074112_20211021T091357_0164_077_334_4320_LN1_O_NR_002.SEN3"  # noqa: E501
SLSTR = "sentinel3/S3A_SL_1_RBT____20210930T220914_20210930T221214_20211002T102150_0180_077_043_5400_LN2_O_NT_004.SEN3"  # noqa: E501
ROWS, COLS, AC, AL, DETECTORS = 40, 49, 8, 1, 100
STEP_DEG = 0.01
BANDS = ("Oa04", "Oa08", "Oa17")
SCALES = {"Oa04": 0.0123, "Oa08": 0.0087, "Oa17": 0.0051}


def _latlon_regular(rows: int, cols: int, step: float, lat0: float, lon0: float):
    lat = lat0 + step * np.arange(rows)[:, None] * np.ones((1, cols))
    lon = lon0 + step * np.arange(cols)[None, :] * np.ones((rows, 1))
    return lat, lon


def _geo_vars(lat: np.ndarray, lon: np.ndarray, suffix: str = "") -> dict:
    def packed(a: np.ndarray) -> tuple[np.ndarray, dict]:
        return np.round(a * 1e6).astype(np.int32), {
            "scale_factor": 1e-6,
            "_FillValue": np.int32(-2147483647),
        }

    return {f"latitude{suffix}": packed(lat), f"longitude{suffix}": packed(lon)}


def make_olci(dest: Path, lat: np.ndarray, lon: np.ndarray, seed: int = 1) -> dict:
    """Copy the real EFR layout to `dest` and write the variables; returns the arrays."""
    shutil.copytree(shared_fixture(OLCI), dest)
    rng = np.random.default_rng(seed)
    rows, cols = lat.shape
    write_nc(dest / "geo_coordinates.nc", _geo_vars(lat, lon))
    arrays: dict = {"lat": lat, "lon": lon}
    for band in BANDS:
        dn = rng.integers(500, 30000, size=(rows, cols)).astype(np.uint16)
        dn[3, 4] = 65535
        arrays[band] = dn
        attrs = {
            "scale_factor": np.float32(SCALES[band]),
            "add_offset": np.float32(0.0),
            "_FillValue": np.int16(-1),  # 65535 unsigned
        }
        write_nc(dest / f"{band}_radiance.nc", {f"{band}_radiance": (dn, attrs)})
    det = rng.integers(0, DETECTORS, size=(rows, cols)).astype(np.int16)
    det[5, 6] = -1
    flux = rng.uniform(900.0, 1900.0, size=(21, DETECTORS)).astype(np.float32)
    write_nc(
        dest / "instrument_data.nc",
        {
            "detector_index": (det, {"_FillValue": np.int16(-1)}),
            "solar_flux": (flux, {"_FillValue": np.float32(-1.0)}),
        },
        ac_subsampling_factor=AC,
        al_subsampling_factor=AL,
    )
    tie_cols = (cols - 1) // AC + 1
    tie_rows = (rows - 1) // AL + 1
    sza = 30.0 + 0.4 * np.arange(tie_rows)[:, None] + 2.5 * np.arange(tie_cols)[None, :]
    sza_packed = np.round(sza * 1e6).astype(np.uint32)
    write_nc(
        dest / "tie_geometries.nc",
        {"SZA": (sza_packed, {"scale_factor": 1e-6})},
        ac_subsampling_factor=AC,
        al_subsampling_factor=AL,
    )
    flags = np.zeros((rows, cols), dtype=np.int32)
    flags[10:12, 20:25] = 1 << 27  # bright
    flags[30, :] = 1 << 25  # invalid
    flags[2, 2] = 1 << 13  # saturated@Oa08
    write_nc(
        dest / "qualityFlags.nc",
        {
            "quality_flags": (
                flags,
                {
                    "flag_masks": np.array([1 << 30, 1 << 27, 1 << 25, 1 << 13], dtype=np.int32),
                    "flag_meanings": "land bright invalid saturated@Oa08",
                },
            )
        },
    )
    arrays.update(det=det, flux=flux.astype(np.float64), sza=sza_packed * 1e-6, flags=flags)
    return arrays


def expected_reflectance(a: dict, band: str) -> np.ndarray:
    """pi L / (F0 cos SZA) per swath pixel, in float64, with its own interpolation."""
    rows, cols = a["det"].shape
    L = a[band].astype(np.float64) * np.float64(np.float32(SCALES[band]))
    L[a[band] == 65535] = np.nan
    index = int(band[2:]) - 1
    det = a["det"].astype(np.int64)
    f0 = np.where(det >= 0, a["flux"][index, np.clip(det, 0, None)], np.nan)
    sza = np.empty((rows, cols))
    for r in range(rows):
        for c in range(cols):
            tr, tc = r / AL, c / AC
            i, j = min(int(tr), a["sza"].shape[0] - 2), min(int(tc), a["sza"].shape[1] - 2)
            fr, fc = tr - i, tc - j
            g = a["sza"]
            sza[r, c] = (
                g[i, j] * (1 - fr) * (1 - fc)
                + g[i, j + 1] * (1 - fr) * fc
                + g[i + 1, j] * fr * (1 - fc)
                + g[i + 1, j + 1] * fr * fc
            )
    return np.pi * L / (f0 * np.cos(np.radians(sza)))


def _run(product: Path, out: Path, **options: str) -> sentinel3.RunResult:
    step = PreprocessStep(preprocessor="sentinel3", options=options)
    return sentinel3.run(product, step, out, JobContext(), {"SIPD_TEST": "1"}, threads=2)


@pytest.fixture(scope="module")
def olci(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    lat, lon = _latlon_regular(ROWS, COLS, STEP_DEG, 45.0, 10.0)
    dest = tmp_path_factory.mktemp("s3") / Path(OLCI).name
    return dest, make_olci(dest, lat, lon)


def _manifest_band(product: Path, band: str) -> tuple[str, str]:
    text = (product / "xfdumanifest.xml").read_text()
    m = re.search(
        rf'<sentinel3:band name="{band}">\s*<sentinel3:centralWavelength>([^<]+)<.*?'
        r"<sentinel3:bandwidth>([^<]+)<",
        text,
        re.S,
    )
    assert m
    return m.group(1), m.group(2)


def test_olci_reflectance_and_orientation(olci: tuple[Path, dict], tmp_path: Path) -> None:
    """On a regular lat/lon swath at the output step, pixels map one to one: the output
    is the swath flipped north-up (lat grows with the row here) and equals pi L/(F0 cosSZA)."""
    product, a = olci
    out = tmp_path / "r.tif"
    result = _run(product, out, bands=",".join(BANDS), crs="EPSG:4326",
                  resolution=str(STEP_DEG * 111320.0))  # fmt: skip
    with rasterio.open(out) as ds:
        assert (ds.width, ds.height) == (COLS, ROWS)
        t = ds.transform
        assert t.a == pytest.approx(STEP_DEG) and t.e == pytest.approx(-STEP_DEG)
        assert t.c == pytest.approx(10.0 - STEP_DEG / 2)
        assert t.f == pytest.approx(45.0 + (ROWS - 1) * STEP_DEG + STEP_DEG / 2)
        assert ds.descriptions == BANDS
        got = ds.read().astype(np.float64)
        tags = ds.tags()
        band_tags = [ds.tags(i) for i in (1, 2, 3)]
    for i, band in enumerate(BANDS):
        expected = np.flipud(expected_reflectance(a, band))
        np.testing.assert_array_equal(np.isnan(got[i]), np.isnan(expected))
        ok = ~np.isnan(expected)
        np.testing.assert_allclose(got[i][ok], expected[ok], rtol=2e-6)
        assert 0.05 < np.nanmean(got[i]) < 50
        wl, bw = _manifest_band(product, band)
        assert band_tags[i]["wavelength"] == wl and band_tags[i]["bandwidth"] == bw
        assert band_tags[i]["quantity"] == "reflectance"
    # Fill (row 3, col 4) and an unknown detector (row 5, col 6), flipped north-up.
    assert np.isnan(got[:, ROWS - 1 - 3, 4]).all() and np.isnan(got[:, ROWS - 1 - 5, 6]).all()
    assert tags["S3_PRODUCT_TYPE"] == "OL_1_EFR___" and tags["S3_PLATFORM"] == "Sentinel-3A"
    assert tags["S3_START_TIME"] == "2021-10-21T07:38:27.254946Z"
    assert tags["SIPD_TEST"] == "1" and tags["S3_QUANTITY"] == "reflectance"
    assert tags["S3_GEOLOCATION"].startswith("geo_coordinates.nc: inverse-map, max error")
    assert result.sensor == "Sentinel-3A OLCI OL_1_EFR"


def test_olci_radiance_and_mask(olci: tuple[Path, dict], tmp_path: Path) -> None:
    product, a = olci
    out = tmp_path / "m.tif"
    _run(product, out, bands="Oa08", quantity="radiance", crs="EPSG:4326",
         resolution=str(STEP_DEG * 111320.0), mask="invalid,bright,saturated")  # fmt: skip
    with rasterio.open(out) as ds:
        got = ds.read(1).astype(np.float64)
        assert ds.tags()["SIPD_MASK"] == "invalid,bright,saturated"
        assert ds.tags(1)["quantity"] == "radiance"
    expected = a["Oa08"].astype(np.float64) * np.float64(np.float32(SCALES["Oa08"]))
    bits = (1 << 27) | (1 << 25) | (1 << 13)
    expected[(a["Oa08"] == 65535) | ((a["flags"] & bits) != 0)] = np.nan
    expected = np.flipud(expected)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
    ok = ~np.isnan(expected)
    np.testing.assert_allclose(got[ok], expected[ok], rtol=1e-6)
    assert np.isnan(got[ROWS - 1 - 30]).all()


def test_olci_bilinear(olci: tuple[Path, dict], tmp_path: Path) -> None:
    """resampling bilinear on the regular swath at 1.5 steps: each output pixel is the
    weighted mean of the four swath pixels around its centre (computed here from the
    centre's latitude/longitude), nodata when one of them is nodata or masked and beyond
    the outermost swath pixel centres."""
    product, a = olci
    out = tmp_path / "bl.tif"
    step = STEP_DEG * 1.5
    _run(product, out, bands="Oa08", quantity="radiance", crs="EPSG:4326",
         resolution=str(step * 111320.0), resampling="bilinear", mask="invalid")  # fmt: skip
    with rasterio.open(out) as ds:
        got = ds.read(1).astype(np.float64)
        assert ds.tags()["S3_RESAMPLING"] == "bilinear"
        cols, rows = np.meshgrid(np.arange(ds.width), np.arange(ds.height))
        lon = ds.transform.c + (cols + 0.5) * ds.transform.a
        lat = ds.transform.f + (rows + 0.5) * ds.transform.e
    rad = a["Oa08"].astype(np.float64) * np.float64(np.float32(SCALES["Oa08"]))
    rad[(a["Oa08"] == 65535) | ((a["flags"] & (1 << 25)) != 0)] = np.nan
    # Swath centres as the file stores them: micro-degrees times a float32 1e-6.
    scale = np.float64(np.float32(1e-6))
    r = (lat / scale - 45_000_000) / (STEP_DEG * 1e6)
    c = (lon / scale - 10_000_000) / (STEP_DEG * 1e6)
    inside = (r >= 0) & (r <= ROWS - 1) & (c >= 0) & (c <= COLS - 1)
    r0 = np.clip(np.floor(r), 0, ROWS - 2).astype(int)
    c0 = np.clip(np.floor(c), 0, COLS - 2).astype(int)
    fr, fc = r - r0, c - c0

    def bilinear(v: np.ndarray) -> np.ndarray:
        out = (
            v[r0, c0] * (1 - fr) * (1 - fc) + v[r0, c0 + 1] * (1 - fr) * fc
            + v[r0 + 1, c0] * fr * (1 - fc) + v[r0 + 1, c0 + 1] * fr * fc
        )  # fmt: skip
        return np.where(inside, out, np.nan)

    expected = bilinear(rad)
    # Not on the hull of the swath centres (where rounding decides inside or outside).
    on_hull = np.zeros(got.shape, dtype=bool)
    for v, n in ((r, ROWS), (c, COLS)):
        on_hull |= (np.abs(v) < 1e-6) | (np.abs(v - (n - 1)) < 1e-6)
    ok = ~on_hull
    np.testing.assert_allclose(got[ok], expected[ok], rtol=1e-6)  # NaNs in the same places
    # Nodata inside the swath: next to the fill pixel and the masked (invalid) row.
    assert (inside & ok & np.isnan(expected)).sum() > 10 and np.isfinite(got).mean() > 0.8

    # TOA reflectance: each of the four pixels' own pi L / (F0 cos SZA), then weighted.
    _run(product, out, bands="Oa04", crs="EPSG:4326", resolution=str(step * 111320.0),
         resampling="bilinear")  # fmt: skip
    with rasterio.open(out) as ds:
        got = ds.read(1).astype(np.float64)
    expected = bilinear(expected_reflectance(a, "Oa04"))
    np.testing.assert_allclose(got[ok], expected[ok], rtol=2e-6)


def _brute_nearest(src_x, src_y, out_x, out_y, step):
    d = np.hypot(out_x.ravel()[:, None] - src_x.ravel()[None], out_y.ravel()[:, None]
                 - src_y.ravel()[None])  # fmt: skip
    k = d.argmin(axis=1)
    return k, d[np.arange(len(k)), k] <= step * 1.0001


def test_rotated_swath_nearest_neighbour_in_utm(tmp_path: Path) -> None:
    """A swath rotated 13 degrees, 300 m steps, in UTM 32N (crs auto): each output pixel
    holds the nearest swath pixel's radiance (brute force), nodata beyond one step."""
    theta = np.radians(13.0)
    r, c = np.mgrid[0:ROWS, 0:COLS].astype(np.float64)
    x = 500000.0 + 300.0 * (c * np.cos(theta) - r * np.sin(theta))
    y = 5000000.0 - 300.0 * (c * np.sin(theta) + r * np.cos(theta))
    to_geo = Transformer.from_crs("EPSG:32632", "EPSG:4326", always_xy=True)
    lon, lat = to_geo.transform(x, y)
    product = tmp_path / Path(OLCI).name
    a = make_olci(product, lat, lon, seed=2)
    out = tmp_path / "u.tif"
    result = _run(product, out, bands="Oa17", quantity="radiance")
    with rasterio.open(out) as ds:
        assert ds.crs.to_epsg() == 32632 and ds.transform.a == 300.0
        # The fast path, exact here: an affine swath has no interpolation error.
        assert ds.tags()["S3_GEOLOCATION"].startswith("geo_coordinates.nc: inverse-map")
        got = ds.read(1).astype(np.float64)
        cols, rows = np.meshgrid(np.arange(ds.width), np.arange(ds.height))
        ox = ds.transform.c + (cols + 0.5) * ds.transform.a
        oy = ds.transform.f + (rows + 0.5) * ds.transform.e
    # Swath centres as the file stores them (micro-degrees), projected here.
    lat_s = np.round(lat * 1e6) * 1e-6
    lon_s = np.round(lon * 1e6) * 1e-6
    sx, sy = Transformer.from_crs("EPSG:4326", "EPSG:32632", always_xy=True).transform(lon_s, lat_s)
    k, near = _brute_nearest(sx, sy, ox, oy, 300.0)
    rad = a["Oa17"].astype(np.float64) * np.float64(np.float32(SCALES["Oa17"]))
    rad[a["Oa17"] == 65535] = np.nan
    expected = np.where(near, rad.ravel()[k], np.nan).reshape(got.shape)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
    ok = ~np.isnan(expected)
    np.testing.assert_allclose(got[ok], expected[ok], rtol=1e-6)
    assert ok.sum() > 0.8 * ROWS * COLS and (~ok).sum() > 100  # corners outside the swath
    assert result.metadata["crs"] == "EPSG:32632"


def _curved_swath(rows: int, cols: int) -> tuple[np.ndarray, np.ndarray]:
    """UTM 32N centres of a swath rotated 13 degrees, rows sheared 3 degrees and
    across-track steps growing from 300 to 329 m (three times as fast as a real OLCI
    swath's at its edge): no affine or bilinear map holds it."""
    theta, shear = np.radians(13.0), np.radians(3.0)
    r, c = np.mgrid[0:rows, 0:cols].astype(np.float64)
    across = 300.0 * (c + 0.001 * c * c)
    along = 300.0 * r + across * np.sin(shear)
    x = 500000.0 + across * np.cos(theta) - along * np.sin(theta)
    y = 5000000.0 - across * np.sin(theta) - along * np.cos(theta)
    return x, y


def _unique_dn_product(tmp_path: Path, x: np.ndarray, y: np.ndarray) -> tuple[Path, dict]:
    """An EFR product on the UTM 32N centres (x, y) whose Oa17 DN is 1 + the pixel's
    flat index, so the output tells which swath pixel each output pixel took."""
    lon, lat = Transformer.from_crs("EPSG:32632", "EPSG:4326", always_xy=True).transform(x, y)
    product = tmp_path / Path(OLCI).name
    a = make_olci(product, lat, lon, seed=4)
    dn = (np.arange(x.size) + 1).reshape(x.shape).astype(np.uint16)
    write_nc(product / "Oa17_radiance.nc", {"Oa17_radiance": (dn, {
        "scale_factor": np.float32(SCALES["Oa17"]), "_FillValue": np.int16(-1)})})  # fmt: skip
    return product, a


def _taken_and_nearest(out: Path, product_lat_lon: tuple[np.ndarray, np.ndarray]):
    """Per output pixel: the flat index of the swath pixel it took (-1: nodata), the
    brute-force nearest, and the map distances to both."""
    lat, lon = product_lat_lon
    with rasterio.open(out) as ds:
        got = ds.read(1).astype(np.float64)
        cols, rows = np.meshgrid(np.arange(ds.width), np.arange(ds.height))
        ox = ds.transform.c + (cols + 0.5) * ds.transform.a
        oy = ds.transform.f + (rows + 0.5) * ds.transform.e
        tag = ds.tags()["S3_GEOLOCATION"]
    lat_s, lon_s = np.round(lat * 1e6) * 1e-6, np.round(lon * 1e6) * 1e-6
    sx, sy = Transformer.from_crs("EPSG:4326", "EPSG:32632", always_xy=True).transform(lon_s, lat_s)
    sx, sy = sx.ravel(), sy.ravel()
    taken = np.where(np.isnan(got), 0, np.rint(got / np.float32(SCALES["Oa17"]))).astype(int) - 1
    taken = taken.ravel()
    d = np.hypot(ox.ravel()[:, None] - sx[None], oy.ravel()[:, None] - sy[None])
    nearest = d.argmin(axis=1)
    d_near = d[np.arange(len(nearest)), nearest]
    d_taken = np.where(taken >= 0, d[np.arange(len(taken)), np.clip(taken, 0, None)], np.inf)
    # One sampling step as documented: the larger median neighbour distance.
    gx, gy = sx.reshape(lat.shape), sy.reshape(lat.shape)
    step = max(
        np.median(np.hypot(np.diff(gx, axis=0), np.diff(gy, axis=0))),
        np.median(np.hypot(np.diff(gx, axis=1), np.diff(gy, axis=1))),
    )
    return taken, nearest, d_taken, d_near, step, tag


def test_curved_swath_inverse_map_against_brute_force(tmp_path: Path) -> None:
    """The inverse map (fitted through every 8th pixel's geolocation) against the
    brute-force nearest swath pixel on a rotated, sheared, unevenly sampled swath:
    each output pixel takes the nearest, or one at most 2 * max_error steps farther
    (max_error reported, and below MAX_INVERSE_ERROR); nodata beyond one step."""
    x, y = _curved_swath(ROWS, COLS)
    product, a = _unique_dn_product(tmp_path, x, y)
    out = tmp_path / "c.tif"
    _run(product, out, bands="Oa17", quantity="radiance", resolution="300")
    taken, nearest, d_taken, d_near, step, tag = _taken_and_nearest(out, (a["lat"], a["lon"]))
    m = re.fullmatch(r"geo_coordinates\.nc: inverse-map, max error ([0-9.]+) px", tag)
    assert m, tag
    max_error = float(m.group(1))
    assert 0.001 < max_error < sentinel3_swath.MAX_INVERSE_ERROR
    # The largest step is 329 m: a pixel off by e swath pixels is at most 2 e 329 m farther.
    tolerance = 2 * (max_error + 0.0005) * 329.0
    inside = d_near <= step * 1.0001
    margin = np.abs(d_near - step) <= tolerance
    assert np.array_equal((taken >= 0)[~margin], inside[~margin])
    both = (taken >= 0) & inside
    assert np.all(d_taken[both] <= d_near[both] + tolerance)
    same = taken[both] == nearest[both]
    assert same.mean() > 0.97, same.mean()
    assert both.sum() > 0.8 * ROWS * COLS and (~inside).sum() > 100
    # Fill (DN 65535) is not in this band; the masked rows of the flags are not asked for.
    assert taken.max() < ROWS * COLS


def test_irregular_geolocation_uses_the_exact_method(tmp_path: Path) -> None:
    """Geolocation a smooth map cannot hold (one pixel displaced by 0.7 steps, as terrain
    does in ortho-geolocated coordinates): the exact KD-tree method, equal to brute force."""
    x, y = _curved_swath(ROWS, COLS)
    x[20, 25] += 0.7 * 300.0
    product, a = _unique_dn_product(tmp_path, x, y)
    out = tmp_path / "e.tif"
    _run(product, out, bands="Oa17", quantity="radiance", resolution="300")
    taken, nearest, _, d_near, step, tag = _taken_and_nearest(out, (a["lat"], a["lon"]))
    assert tag.startswith("geo_coordinates.nc: kd-tree (a smooth inverse map errs by 0.")
    inside = d_near <= step * 1.0001
    assert np.array_equal(taken >= 0, inside)
    assert np.array_equal(taken[inside], nearest[inside])
    # Bilinear weights need positions between swath pixels: refused, saying why.
    with pytest.raises(InvalidArgument, match="resampling bilinear needs a smooth geolocation"):
        _run(product, tmp_path / "b.tif", bands="Oa17", resampling="bilinear")
    assert not (tmp_path / "b.tif").exists()


def test_missing_geolocation_uses_the_exact_method(olci: tuple[Path, dict], tmp_path: Path) -> None:
    """A fill value in the latitudes: the exact method, the pixel without geolocation
    never taken, the rest one to one as with the inverse map."""
    product, a = olci
    broken = tmp_path / product.name
    shutil.copytree(product, broken)
    geo = _geo_vars(a["lat"], a["lon"])
    geo["latitude"][0][0, 0] = -2147483647  # the _FillValue
    write_nc(broken / "geo_coordinates.nc", geo)
    out = tmp_path / "x.tif"
    _run(broken, out, bands="Oa08", quantity="radiance", crs="EPSG:4326",
         resolution=str(STEP_DEG * 111320.0))  # fmt: skip
    with rasterio.open(out) as ds:
        got = ds.read(1).astype(np.float64)
        assert ds.tags()["S3_GEOLOCATION"] == (
            "geo_coordinates.nc: kd-tree (the geolocation has missing pixels), max error 0.000 px"
        )
    expected = a["Oa08"].astype(np.float64) * np.float64(np.float32(SCALES["Oa08"]))
    expected[a["Oa08"] == 65535] = np.nan
    expected = np.flipud(expected)
    # Swath pixel (0, 0) (now the last output row) has no position: its output pixel
    # takes the nearest other swath pixel, one step away.
    np.testing.assert_allclose(got[:-1], expected[:-1], rtol=1e-6)  # NaNs in the same places
    np.testing.assert_allclose(got[-1, 1:], expected[-1, 1:], rtol=1e-6)
    assert np.isclose(got[-1, 0], [expected[-1, 1], expected[-2, 0]], rtol=1e-6).any()


def test_bench_product_north_up_through_the_inverse_map(tmp_path: Path) -> None:
    """sipd.bench.sentinel3_products' tilted descending swath (row 0 north): output pixels
    whose centre is within 0.3 step of a swath pixel centre hold that pixel's radiance."""
    product = make_s3_olci_product(tmp_path, lines=200, columns=600, bands=("Oa08",))
    out = tmp_path / "b.tif"
    result = _run(product, out, bands="Oa08", quantity="radiance")
    lat, _ = sentinel3_swath.read_variable(f'NETCDF:"{product}/geo_coordinates.nc":latitude')
    lon, _ = sentinel3_swath.read_variable(f'NETCDF:"{product}/geo_coordinates.nc":longitude')
    rad, _ = sentinel3_swath.read_variable(f'NETCDF:"{product}/Oa08_radiance.nc":Oa08_radiance')
    assert lat[0].mean() > lat[-1].mean()  # descending: the first row is the northern one
    with rasterio.open(out) as ds:
        assert "inverse-map" in ds.tags()["S3_GEOLOCATION"]
        assert ds.crs.to_epsg() == 32632 and result.metadata["crs"] == "EPSG:32632"
        got = ds.read(1)
        x, y = Transformer.from_crs("EPSG:4326", ds.crs, always_xy=True).transform(lon, lat)
        inv = ~ds.transform
        col, row = inv.a * x + inv.b * y + inv.c, inv.d * x + inv.e * y + inv.f
    oc, orow = np.floor(col).astype(int), np.floor(row).astype(int)
    close = np.hypot(col - oc - 0.5, row - orow - 0.5) * 300.0 < 0.3 * 294.0
    close &= np.isfinite(rad)
    assert close.sum() > 1000
    np.testing.assert_allclose(got[orow[close], oc[close]], rad[close], rtol=1e-6)
    # Without the shared fixture: a minimal manifest listing what is written; TOA
    # reflectance (the tie-point grid covers the last column) and the real flag names.
    small = make_s3_olci_product(tmp_path / "m", lines=60, columns=400, bands=("Oa17",),
                                 minimal=True)  # fmt: skip
    assert sorted(p.name for p in small.iterdir())[-1] == "xfdumanifest.xml"
    assert len(list(small.iterdir())) == 7 and sentinel3.accepts(small)
    _run(small, tmp_path / "r.tif", mask="invalid,land")
    with rasterio.open(tmp_path / "r.tif") as ds:
        assert ds.tags(1)["quantity"] == "reflectance" and ds.descriptions == ("Oa17",)
        assert 0.02 < np.nanmean(ds.read(1)) < 1.0


def test_zip_equals_folder_and_detect(olci: tuple[Path, dict], tmp_path: Path) -> None:
    product, _ = olci
    archive = tmp_path / (product.name.replace(".SEN3", "") + ".zip")
    with zipfile.ZipFile(archive, "w") as zf:
        for f in sorted(product.iterdir()):
            zf.write(f, f"{product.name}/{f.name}")
    opts = {"bands": "Oa08", "crs": "EPSG:4326", "resolution": str(STEP_DEG * 111320.0)}
    _run(product, tmp_path / "f.tif", **opts)
    _run(archive, tmp_path / "z.tif", **opts)
    with rasterio.open(tmp_path / "f.tif") as f, rasterio.open(tmp_path / "z.tif") as z:
        np.testing.assert_array_equal(f.read(), z.read())
    for p in (product, product / "xfdumanifest.xml", archive, shared_fixture(SLSTR)):
        assert sentinel3.accepts(p), p
        assert catalog.detect(p) == "sentinel3"
    s2 = next(shared_fixture("sentinel2").glob("S2*MSIL2A*.SAFE"))
    assert not sentinel3.accepts(s2) and not sentinel3.accepts(tmp_path / "f.tif")
    assert not sentinel3.accepts(tmp_path / "missing")


def test_slstr_radiance_and_brightness_temperature(tmp_path: Path) -> None:
    """S1 on the 0.5 km 'an' grid and S8 on the 1 km 'in' grid, nadir, on one map grid."""
    product = tmp_path / Path(SLSTR).name
    shutil.copytree(shared_fixture(SLSTR), product)
    rng = np.random.default_rng(3)
    lat_a, lon_a = _latlon_regular(30, 24, 0.005, -20.0, 30.0)
    lat_i, lon_i = _latlon_regular(15, 12, 0.01, -20.0025, 30.0025)
    write_nc(product / "geodetic_an.nc", _geo_vars(lat_a, lon_a, "_an"))
    write_nc(product / "geodetic_in.nc", _geo_vars(lat_i, lon_i, "_in"))
    s1 = rng.integers(0, 20000, size=lat_a.shape).astype(np.int16)
    s1[0, 0] = -32768
    write_nc(product / "S1_radiance_an.nc", {"S1_radiance_an": (s1, {
        "scale_factor": 0.0061, "add_offset": 0.0, "_FillValue": np.int16(-32768)})})  # fmt: skip
    s8 = rng.integers(-3000, 3000, size=lat_i.shape).astype(np.int16)
    write_nc(product / "S8_BT_in.nc", {"S8_BT_in": (s8, {
        "scale_factor": 0.01, "add_offset": 283.73, "_FillValue": np.int16(-32768)})})  # fmt: skip
    out = tmp_path / "sl.tif"
    result = _run(product, out, bands="S1,S8", crs="EPSG:4326", resolution=str(0.005 * 111320))
    with rasterio.open(out) as ds:
        got = ds.read().astype(np.float64)
        assert ds.descriptions == ("S1", "S8")
        assert ds.tags(2)["quantity"] == "brightness_temperature" and ds.tags(2)["units"] == "K"
        assert ds.tags(1)["wavelength"] == "554.27"
        assert ds.tags()["S3_VIEW"] == "nadir"
        cols, rows = np.meshgrid(np.arange(ds.width), np.arange(ds.height))
        ox = ds.transform.c + (cols + 0.5) * ds.transform.a
        oy = ds.transform.f + (rows + 0.5) * ds.transform.e
    exp_s1 = s1 * 0.0061
    exp_s1[s1 == -32768] = np.nan
    np.testing.assert_allclose(got[0], np.flipud(exp_s1), rtol=1e-6)
    assert np.isnan(got[0, -1, 0])
    lat_st, lon_st = np.round(lat_i * 1e6) * 1e-6, np.round(lon_i * 1e6) * 1e-6
    k, near = _brute_nearest(lon_st, lat_st, ox, oy, 0.01)
    bt = s8 * 0.01 + 283.73
    expected = np.where(near, bt.ravel()[k], np.nan).reshape(got[1].shape)
    np.testing.assert_array_equal(np.isnan(got[1]), np.isnan(expected))
    ok = ~np.isnan(expected)
    np.testing.assert_allclose(got[1][ok], expected[ok], rtol=1e-6)
    assert ok.mean() > 0.9
    assert result.sensor == "Sentinel-3A SLSTR SL_1_RBT"

    # Mask: summary_cloud of the 'an' confidence flags and gross_cloud of the 'in'
    # cloud flags; a pixel masked on either grid is nodata in every band.
    conf_meanings = (
        "coastline ocean tidal land inland_water unfilled spare spare cosmetic "
        "duplicate day twilight sun_glint snow summary_cloud summary_pointing"
    )
    cloud_meanings = "visible 1.37_threshold gross_cloud thin_cirrus"

    def flags_file(grid: str, shape: tuple[int, int], conf: np.ndarray, cloud: np.ndarray):
        write_nc(product / f"flags_{grid}.nc", {
            f"confidence_{grid}": (conf, {"flag_masks": np.array(
                [1 << i for i in range(16)], dtype=np.int32), "flag_meanings": conf_meanings}),
            f"cloud_{grid}": (cloud, {"flag_masks": np.array([1, 2, 4, 8], dtype=np.int32),
                                      "flag_meanings": cloud_meanings}),
        })  # fmt: skip

    conf_a = np.zeros(lat_a.shape, np.uint16)
    conf_a[4:6, 3:9] = 1 << 14  # summary_cloud
    conf_a[20, 20] = 1 << 3  # land: not asked for
    flags_file("an", lat_a.shape, conf_a, np.zeros(lat_a.shape, np.uint16))
    cloud_i = np.zeros(lat_i.shape, np.uint16)
    cloud_i[10, 5] = 4  # gross_cloud
    flags_file("in", lat_i.shape, np.zeros(lat_i.shape, np.uint16), cloud_i)
    masked_out = tmp_path / "slm.tif"
    _run(product, masked_out, bands="S1,S8", crs="EPSG:4326",
         resolution=str(0.005 * 111320), mask="summary_cloud,gross_cloud")  # fmt: skip
    with rasterio.open(masked_out) as ds:
        gm = ds.read().astype(np.float64)
        assert ds.tags()["SIPD_MASK"] == "summary_cloud,gross_cloud"
    cloud_hit = np.where(near, (cloud_i.ravel()[k] & 4) != 0, False).reshape(got[1].shape)
    # Band nodata stays per band; the mask blanks every band.
    masked = np.flipud((conf_a & (1 << 14)) != 0) | cloud_hit
    np.testing.assert_array_equal(np.isnan(gm), np.isnan(got) | masked[None])
    np.testing.assert_array_equal(gm[~np.isnan(gm)], got[~np.isnan(gm)])
    assert cloud_hit.sum() >= 1 and not np.isnan(gm[0, 30 - 1 - 20, 20])


def test_bad_products_are_refused(olci: tuple[Path, dict], tmp_path: Path) -> None:
    product, _ = olci
    out = tmp_path / "o.tif"
    opts = {"crs": "EPSG:4326"}
    # A band whose file is the fixture's stub (no variable): refused, naming it.
    with pytest.raises(InvalidArgument, match="cannot read variable Oa05_radiance"):
        _run(product, out, bands="Oa05", **opts)
    broken = tmp_path / "broken.SEN3"
    shutil.copytree(product, broken)
    (broken / "Oa08_radiance.nc").unlink()
    with pytest.raises(InvalidArgument, match="incomplete: Oa08_radiance.nc is missing"):
        _run(broken, out, bands="Oa08", **opts)
    with pytest.raises(InvalidArgument, match="has no band S7"):
        _run(product, out, bands="S7", **opts)
    with pytest.raises(InvalidArgument, match="mask flag cloud is not a flag.*accepted: land"):
        _run(product, out, bands="Oa08", mask="cloud", **opts)
    write_nc(broken / "Oa08_radiance.nc", {"Oa08_radiance": (np.zeros((5, 5), np.int16), {})})
    with pytest.raises(InvalidArgument, match="inconsistent"):
        _run(broken, out, bands="Oa08", **opts)
    truncated = tmp_path / "t.zip"
    truncated.write_bytes(b"PK\x03\x04" + b"\0" * 100)
    with pytest.raises(InvalidArgument, match="zip"):
        _run(truncated, out)
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_options_parse_text() -> None:
    o = Sentinel3Options.model_validate(
        {
            "bands": "oa1, Oa08,OA17",
            "mask": "Invalid,bright",
            "crs": "EPSG:32633",
            "resolution": "500",
            "view": "oblique",
            "quantity": "radiance",
        }  # fmt: skip
    )
    assert o.bands == ["Oa01", "Oa08", "Oa17"] and o.output_bands() == o.bands
    assert o.mask == ["invalid", "bright"] and o.resolution == 500.0
    assert Sentinel3Options.model_validate({"bands": "s7,f1"}).bands == ["S7", "F1"]
    assert Sentinel3Options().resampling == "nearest"
    assert Sentinel3Options.model_validate({"resampling": "bilinear"}).resampling == "bilinear"
    for bad, words in (
        ({"bands": "Oa22"}, "not a Sentinel-3 band"),
        ({"bands": "Oa01,S1"}, "mixes"),
        ({"bands": "Oa01,oa1"}, "twice"),
        ({"crs": "EPSG:999999"}, "999999"),
        ({"quantity": "bt"}, "quantity"),
        ({"resolution": "-1"}, "resolution"),
        ({"resampling": "cubic"}, "resampling"),
    ):
        with pytest.raises(ValueError, match=words):
            Sentinel3Options.model_validate(bad)
    assert Sentinel3Options.PATH_OPTIONS == () and Sentinel3Options().output_bands() == []
    for name, field in Sentinel3Options.model_fields.items():
        assert field.description, name
