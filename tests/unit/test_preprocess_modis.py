"""The modis preprocessor, called directly, on the real MOD10A2 tile and on small HDF4
files written here with pyhdf.

Expected values are computed here with separate code from the published conventions:
- HDF4 calibration (HDF4 User's Guide, SDsetcal/SDgetcal "Calibration attributes";
  MODIS Land product user guides): value = scale_factor * (stored - add_offset);
  _FillValue and values outside valid_range are nodata. A scale_factor above 1 divides,
  value = (stored - add_offset) / scale_factor (MOD13 VI User's Guide "scale factor
  10000"; LP DAAC MOD13C1 v061 page: NDVI valid range -2000..10000, fill -3000, scale
  0.0001; The HDF Group bes hdf4_handler HDFEOS2Array_RealField.cc, MODIS_DIV_SCALE,
  with its MOD09 Range* and MOD16A2/A3 exceptions).
- MODIS sinusoidal tiles (Wolfe, Roy & Vermote 1998, IEEE TGRS 36(4); MODIS Land
  grid): sphere R = 6371007.181 m, 36 x 18 tiles of 1111950.5197665 m, tile (h, v) has
  its upper-left corner at x = -20015109.354 + h * 1111950.5197665,
  y = 10007554.677 - v * 1111950.5197665; StructMetadata UpperLeftPointMtrs /
  LowerRightMtrs are the outer pixel corners (HDF-EOS User's Guide vol. 2, GDcreate).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import rasterio
from pyproj import CRS as PyprojCRS
from pyproj import Transformer

from sipd.contracts.options.modis import ModisOptions
from sipd.contracts.preprocessing import PreprocessStep
from sipd.errors import InvalidArgument
from sipd.preprocess import catalog, modis
from sipd.progress import JobContext
from tests.support import shared_fixture

TILE = "modis/MOD10A2.A2022033.h09v05.061.2022042050729.hdf"
TILE_SIZE = 1111950.5197665  # metres, MODIS Land grid
HALF_WORLD = 20015109.354  # pi * R, R = 6371007.181


def _run(path: Path, out: Path, **options: str) -> modis.RunResult:
    step = PreprocessStep(preprocessor="modis", options=options)
    return modis.run(path, step, out, JobContext(), {"SIPD_TEST": "1"}, threads=2)


def _struct(path: Path) -> str:
    from pyhdf.SD import SD, SDC

    f = SD(str(path), SDC.READ)
    try:
        return str(f.attributes()["StructMetadata.0"])
    finally:
        f.end()


def _raw(path: Path, name: str) -> tuple[np.ndarray, dict]:
    from pyhdf.SD import SD, SDC

    f = SD(str(path), SDC.READ)
    try:
        sds = f.select(name)
        return np.asarray(sds.get()), sds.attributes()
    finally:
        f.end()


def test_tile_georeferencing_matches_the_modis_grid(tmp_path: Path) -> None:
    """Transform from the StructMetadata numbers (regex here) and from the tile formula."""
    path = shared_fixture(TILE)
    out = tmp_path / "t.tif"
    result = _run(path, out)
    text = _struct(path)
    ul = [float(v) for v in re.search(r"UpperLeftPointMtrs=\(([^,]+),([^)]+)\)", text).groups()]
    lr = [float(v) for v in re.search(r"LowerRightMtrs=\(([^,]+),([^)]+)\)", text).groups()]
    nx = int(re.search(r"XDim=(\d+)", text).group(1))
    ny = int(re.search(r"YDim=(\d+)", text).group(1))
    with rasterio.open(out) as ds:
        t = ds.transform
        assert (ds.width, ds.height) == (nx, ny) == (2400, 2400)
        assert t.c == pytest.approx(ul[0], abs=1e-6) and t.f == pytest.approx(ul[1], abs=1e-6)
        assert t.a == pytest.approx((lr[0] - ul[0]) / nx, rel=1e-12)
        assert t.e == pytest.approx((lr[1] - ul[1]) / ny, rel=1e-12)
        # Tile h09v05 by the MODIS grid's own formula.
        assert t.c == pytest.approx(-HALF_WORLD + 9 * TILE_SIZE, abs=0.01)
        assert t.f == pytest.approx(HALF_WORLD / 2 - 5 * TILE_SIZE, abs=0.01)
        crs = PyprojCRS.from_wkt(ds.crs.to_wkt())
        tags = ds.tags()
        assert ds.descriptions == ("Maximum_Snow_Extent", "Eight_Day_Snow_Cover")
    # The sinusoidal sphere: the tile's upper-left corner maps to lat 40 N (v05 top).
    to_geo = Transformer.from_crs(crs, "+proj=longlat +R=6371007.181", always_xy=True)
    lon, lat = to_geo.transform(ul[0], ul[1])
    assert lat == pytest.approx(40.0, abs=1e-6)
    assert crs.ellipsoid.semi_major_metre == pytest.approx(6371007.181)
    assert tags["MODIS_SHORT_NAME"] == "MOD10A2" and tags["MODIS_VERSION"] == "61"
    assert (tags["MODIS_TILE_H"], tags["MODIS_TILE_V"]) == ("9", "5")
    assert tags["MODIS_RANGE_BEGINNING_DATE"] == "2022-02-02"
    assert tags["MODIS_RANGE_ENDING_DATE"] == "2022-02-09"
    assert tags["SIPD_TEST"] == "1"
    assert result.sensor == "MODIS Terra MOD10A2"


def test_categorical_codes_kept_fill_masked(tmp_path: Path) -> None:
    """No scale_factor: codes as floats; _FillValue and outside valid_range are NaN."""
    path = shared_fixture(TILE)
    out = tmp_path / "t.tif"
    _run(path, out, sds="Maximum_Snow_Extent")
    raw, attrs = _raw(path, "Maximum_Snow_Extent")
    assert "scale_factor" not in attrs
    lo, hi = attrs["valid_range"]
    expected = raw.astype(np.float64)
    expected[(raw == attrs["_FillValue"]) | (raw < lo) | (raw > hi)] = np.nan
    with rasterio.open(out) as ds:
        assert ds.count == 1 and ds.descriptions == ("Maximum_Snow_Extent",)
        got = ds.read(1).astype(np.float64)
        assert "Key" not in ds.tags(1) and "50=cloud" in ds.tags(1)["key"]
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
    np.testing.assert_array_equal(got[~np.isnan(got)], expected[~np.isnan(expected)])
    assert len(np.unique(expected[~np.isnan(expected)])) > 2  # the tile has several classes


def _write_hdf4(
    path: Path, struct: str, data: np.ndarray, attrs: dict, grid: str, name: str = "sur_refl_b01"
) -> None:
    """A small HDF-EOS-like file: one int16 SDS on grid `grid`, StructMetadata.0."""
    from pyhdf.SD import SD, SDC

    f = SD(str(path), SDC.WRITE | SDC.CREATE)
    f.attr("StructMetadata.0").set(SDC.CHAR8, struct)
    sds = f.create(name, SDC.INT16, data.shape)
    sds.dim(0).setname(f"YDim:{grid}")
    sds.dim(1).setname(f"XDim:{grid}")
    for key, (kind, value) in attrs.items():
        sds.attr(key).set(kind, value)
    sds[:] = data
    sds.endaccess()
    f.end()


@pytest.fixture
def scaled(tmp_path: Path) -> tuple[Path, np.ndarray, str]:
    """int16 SDS with scale_factor 0.02, add_offset 100, fill -28672, valid -100..7500,
    on the fixture's grid shrunk to 30 x 40 pixels (same corners)."""
    from pyhdf.SD import SDC

    text = _struct(shared_fixture(TILE))
    text = re.sub(r"XDim=\d+", "XDim=30", re.sub(r"YDim=\d+", "YDim=40", text))
    rng = np.random.default_rng(5)
    data = rng.integers(-300, 8000, size=(40, 30)).astype(np.int16)
    data[0, :5] = -28672
    attrs = {
        "scale_factor": (SDC.FLOAT64, 0.02),
        "add_offset": (SDC.FLOAT64, 100.0),
        "_FillValue": (SDC.INT16, -28672),
        "valid_range": (SDC.INT16, [-100, 7500]),
        "long_name": (SDC.CHAR8, "test reflectance"),
    }
    path = tmp_path / "MOD09A1.test.hdf"
    _write_hdf4(path, text, data, attrs, "MOD_Grid_Snow_500m")
    return path, data, text


def test_hdf4_calibration_convention(tmp_path: Path, scaled: tuple[Path, np.ndarray, str]) -> None:
    """value = 0.02 * (stored - 100), not CF's 0.02 * stored + 100."""
    path, data, _ = scaled
    out = tmp_path / "s.tif"
    _run(path, out)
    stored = data.astype(np.float64)
    expected = 0.02 * (stored - 100.0)
    expected[(stored == -28672) | (stored < -100) | (stored > 7500)] = np.nan
    with rasterio.open(out) as ds:
        got = ds.read(1).astype(np.float64)
        assert ds.descriptions == ("sur_refl_b01",)
        assert ds.tags(1)["calibrated"] == "true"
        assert ds.tags(1)["calibration"] == "scale * (stored - offset)"
        assert ds.transform.a == pytest.approx((-8895604.157333 + 10007554.677) / 30)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
    ok = ~np.isnan(expected)
    np.testing.assert_allclose(got[ok], expected[ok], rtol=1e-6, atol=1e-4)
    assert np.isnan(got[0, :5]).all() and ok.sum() > 1000

    raw_out = tmp_path / "raw.tif"
    _run(path, raw_out, calibrate="false")
    with rasterio.open(raw_out) as ds:
        raw = ds.read(1).astype(np.float64)
    np.testing.assert_array_equal(raw[ok], stored[ok])


def _small_struct() -> str:
    text = _struct(shared_fixture(TILE))
    return re.sub(r"XDim=\d+", "XDim=3", re.sub(r"YDim=\d+", "YDim=2", text))


def test_scale_factor_above_one_divides(tmp_path: Path) -> None:
    """MOD13-style NDVI: int16, scale_factor 10000, valid_range -2000..10000, _FillValue
    -3000. The MOD13 VI User's Guide documents NDVI with "scale factor 10000" and the
    LP DAAC MOD13C1 v061 product page gives valid range -2000..10000, fill -3000,
    NDVI = stored * 0.0001, i.e. stored / 10000; The HDF Group's HDF4 handler (bes
    hdf4_handler HDFEOS2Array_RealField.cc, MODIS_DIV_SCALE) divides when scale > 1."""
    from pyhdf.SD import SDC

    data = np.array([[5000, -3000, 10001], [-2000, 10000, -2001]], dtype=np.int16)
    attrs = {
        "scale_factor": (SDC.FLOAT64, 10000.0),
        "add_offset": (SDC.FLOAT64, 0.0),
        "_FillValue": (SDC.INT16, -3000),
        "valid_range": (SDC.INT16, [-2000, 10000]),
        "units": (SDC.CHAR8, "NDVI"),
    }
    path = tmp_path / "MOD13Q1.A2022033.h09v05.061.test.hdf"
    _write_hdf4(path, _small_struct(), data, attrs, "MOD_Grid_Snow_500m", "250m 16 days NDVI")
    out = tmp_path / "ndvi.tif"
    _run(path, out)
    # By hand: 5000 / 10000 = 0.5, -2000 / 10000 = -0.2, 10000 / 10000 = 1.0;
    # -3000 is the fill, 10001 and -2001 lie outside valid_range.
    expected = np.array([[0.5, np.nan, np.nan], [-0.2, 1.0, np.nan]])
    with rasterio.open(out) as ds:
        got = ds.read(1).astype(np.float64)
        tags = ds.tags(1)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
    np.testing.assert_allclose(got[~np.isnan(got)], expected[~np.isnan(expected)], rtol=1e-6)
    assert tags["calibration"] == "(stored - offset) / scale"
    assert tags["scale_factor"] == "10000.0" and tags["units"] == "NDVI"


def test_mod09_range_scale_multiplies(tmp_path: Path) -> None:
    """MOD09GA Range_1 has scale_factor 25 metres per count, a true multiplier: the HDF4
    handler (bes HDFEOS2Array_RealField.cc) exempts MOD09/MYD09 Range* from its divide
    rule after checking with the MOD09 producer (MOD09 User's Guide)."""
    from pyhdf.SD import SDC

    attrs = {"scale_factor": (SDC.FLOAT64, 25.0), "add_offset": (SDC.FLOAT64, 0.0)}
    path = tmp_path / "MOD09GA.A2022033.h09v05.061.test.hdf"
    data = np.array([[30000, 28000, 0], [1, 2, 32767]], dtype=np.int16)
    _write_hdf4(path, _small_struct(), data, attrs, "MOD_Grid_Snow_500m", "Range_1")
    out = tmp_path / "range.tif"
    _run(path, out)
    with rasterio.open(out) as ds:
        got = ds.read(1).astype(np.float64)
        assert ds.tags(1)["calibration"] == "scale * (stored - offset)"
    # By hand: 30000 * 25 = 750000 m, 28000 * 25 = 700000 m, 32767 * 25 = 819175 m.
    np.testing.assert_allclose(got, [[750000, 700000, 0], [25, 50, 819175]], rtol=1e-7)
    # The exemptions are by product: the same dataset elsewhere divides, MOD16 never does.
    range_ds = modis._dataset("Range_1", {"scale_factor": 25.0})
    assert modis.convention(range_ds, "MOD13Q1") == modis.DIVIDE
    assert modis.convention(range_ds, "MOD16A2.A2022033.hdf") == modis.MULTIPLY
    assert modis.convention(modis._dataset("x", {}), "MOD13Q1") is None


def test_bad_inputs_are_refused(tmp_path: Path, scaled: tuple[Path, np.ndarray, str]) -> None:
    path, _, text = scaled
    out = tmp_path / "o.tif"
    with pytest.raises(InvalidArgument, match="no dataset NDVI.*accepted sds: sur_refl_b01"):
        _run(path, out, sds="NDVI")
    not_hdf = tmp_path / "x.hdf"
    not_hdf.write_bytes(b"not an hdf file at all")
    with pytest.raises(InvalidArgument, match="not an HDF4 file"):
        _run(not_hdf, out)
    truncated = tmp_path / "t.hdf"
    truncated.write_bytes(path.read_bytes()[:300])
    with pytest.raises(InvalidArgument, match="corrupt or truncated"):
        _run(truncated, out)
    swath = tmp_path / "swath.hdf"
    swath_text = re.sub(r"GROUP=GRID_1.*END_GROUP=GRID_1", "", text, flags=re.S)
    swath_text = swath_text.replace(
        "GROUP=SwathStructure", "GROUP=SwathStructure\n\tGROUP=SWATH_1\n\tEND_GROUP=SWATH_1"
    )
    from pyhdf.SD import SDC

    _write_hdf4(swath, swath_text, np.zeros((4, 4), np.int16), {"x": (SDC.INT16, 1)}, "s")
    with pytest.raises(InvalidArgument, match="swath product"):
        _run(swath, out)
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir() if p.name[0] == ".") == []


def test_accepts_and_detect(tmp_path: Path) -> None:
    path = shared_fixture(TILE)
    assert modis.accepts(path)
    assert not modis.accepts(path.with_name(path.name + ".xml"))
    assert not modis.accepts(tmp_path) and not modis.accepts(tmp_path / "missing.hdf")
    assert catalog.detect(path) == "modis"


def test_options_parse_text() -> None:
    o = ModisOptions.model_validate({"sds": "sur_refl_b01, sur_refl_b02", "calibrate": "false"})
    assert o.sds == ["sur_refl_b01", "sur_refl_b02"] and o.calibrate is False
    assert o.output_bands() == ["sur_refl_b01", "sur_refl_b02"]
    assert ModisOptions().output_bands() == [] and ModisOptions.PATH_OPTIONS == ()
    with pytest.raises(ValueError, match="twice"):
        ModisOptions.model_validate({"sds": "a,a"})
    with pytest.raises(ValueError, match="not valid"):
        ModisOptions.model_validate({"sds": "a;rm -rf"})
    for name, field in ModisOptions.model_fields.items():
        assert field.description, name
