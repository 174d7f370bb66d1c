"""Sentinel-1 GRD reader (sipd.preprocess.sentinel1) on a real product's metadata.

The fixture (../shared/fixtures/sentinel1, see SOURCES.md) carries ESA's real VV
annotation, calibration and noise XML; its measurement is a zero placeholder of
the right size and its VH files are absent although manifest.safe lists them.
Products that need altering are copied to tmp_path first. Reference values are
computed independently: xarray-sentinel parses the calibration and range-noise
LUTs, scipy interpolates them, and the azimuth-noise blocks are read with
regular expressions rather than ElementTree.
"""

from __future__ import annotations

import re
import shutil
import threading
import time
import warnings
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import numpy as np
import pytest
import rasterio
import xarray as xr
import xarray_sentinel
from scipy.interpolate import RegularGridInterpolator

from sipd.errors import InvalidArgument
from sipd.preprocess.sar_product import Quantity, SarProduct
from sipd.preprocess.sentinel1 import open_sentinel1, parse_calibration, parse_noise
from tests.support import shared_fixture

NAME = "S1B_IW_GRDH_1SDV_20211223T051122_20211223T051147_030148_039993_5371.SAFE"
VV = "s1b-iw-grd-vv-20211223t051122-20211223t051147-030148-039993-001"
VH = "s1b-iw-grd-vh-20211223t051122-20211223t051147-030148-039993-002"
LINES, PIXELS = 16705, 26102
LUT_OF = {Quantity.SIGMA0: "sigmaNought", Quantity.BETA0: "betaNought", Quantity.GAMMA0: "gamma"}

pytestmark = pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def safe() -> Path:
    return shared_fixture(f"sentinel1/{NAME}")


@pytest.fixture(scope="module")
def product(safe: Path) -> SarProduct:
    return open_sentinel1(str(safe), ["VV"])


def _xs(safe: Path, group: str) -> xr.Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return xr.open_dataset(safe, group=f"IW/VV/{group}", engine="sentinel-1").load()


@pytest.fixture(scope="module")
def xs_cal(safe: Path) -> xr.Dataset:
    return _xs(safe, "calibration")


@pytest.fixture(scope="module")
def xs_noise_range(safe: Path) -> xr.Dataset:
    return _xs(safe, "noise_range")


@pytest.fixture(scope="module")
def azimuth_blocks(safe: Path) -> list[dict[str, object]]:
    """noiseAzimuthVector blocks of the real noise file, read by regex (not ElementTree)."""
    text = (safe / f"annotation/calibration/noise-{VV}.xml").read_text()
    blocks = []
    for body in re.findall(r"<noiseAzimuthVector>(.*?)</noiseAzimuthVector>", text, re.S):

        def get(tag: str, body: str = body) -> str:
            m = re.search(rf"<{tag}[^>]*>(.*?)</{tag}>", body, re.S)
            assert m, tag
            return m.group(1)

        blocks.append(
            {
                "swath": get("swath"),
                "l0": int(get("firstAzimuthLine")),
                "l1": int(get("lastAzimuthLine")),
                "p0": int(get("firstRangeSample")),
                "p1": int(get("lastRangeSample")),
                "line": np.array(get("line").split(), dtype=float),
                "lut": np.array(get("noiseAzimuthLut").split(), dtype=float),
            }
        )
    return blocks


def _grid_at(ds: xr.Dataset, var: str, lines: np.ndarray, pixels: np.ndarray) -> np.ndarray:
    """Bilinear in float64 on xarray-sentinel's (line, pixel) grid, clamped at its edges."""
    gl = ds["line"].values.astype(float)
    gp = ds["pixel"].values.astype(float)
    f = RegularGridInterpolator((gl, gp), ds[var].values.astype(np.float64), method="linear")
    pts = np.stack([np.clip(lines, gl[0], gl[-1]), np.clip(pixels, gp[0], gp[-1])], axis=-1)
    return f(pts)


def _azimuth_at(
    blocks: list[dict[str, object]], lines: np.ndarray, pixels: np.ndarray
) -> np.ndarray:
    out = np.ones(lines.shape)
    for b in blocks:
        inside = (lines >= b["l0"]) & (lines <= b["l1"]) & (pixels >= b["p0"]) & (pixels <= b["p1"])
        out[inside] = np.interp(lines[inside], b["line"], b["lut"])  # type: ignore[arg-type]
    return out


def _copy(safe: Path, dest: Path) -> Path:
    """A writable copy of the fixture (the shared files are read-only)."""
    out = dest / NAME
    shutil.copytree(safe, out, copy_function=shutil.copyfile)
    return out


def _add_vh(root: Path) -> None:
    """Make the copy dual-pol: VH files as renamed copies of the VV ones."""
    for sub, prefix, ext in [
        ("annotation", "", "xml"),
        ("annotation/calibration", "calibration-", "xml"),
        ("annotation/calibration", "noise-", "xml"),
        ("annotation/rfi", "rfi-", "xml"),
        ("measurement", "", "tiff"),
    ]:
        src = root / sub / f"{prefix}{VV}.{ext}"
        dst = root / sub / f"{prefix}{VH}.{ext}"
        if ext == "xml":
            text = src.read_text().replace(
                "<polarisation>VV</polarisation>", "<polarisation>VH</polarisation>"
            )
            dst.write_text(text)
        else:
            shutil.copyfile(src, dst)


def _zip(folder: Path, dest: Path) -> Path:
    """The product zipped as ESA delivers it: the .SAFE folder at the top."""
    out = dest / (folder.name.removesuffix(".SAFE") + ".zip")
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for f in sorted(folder.rglob("*")):
            zf.write(f, f"{folder.name}/{f.relative_to(folder)}")
    return out


def _error(path: Path | str, pols: list[str] | None = None) -> str:
    with pytest.raises(InvalidArgument) as info:
        open_sentinel1(str(path), pols)
    return str(info.value)


# ---------------------------------------------------------------- radiometry vs references


def test_k_and_n_equal_an_independent_computation_at_random_points(
    product: SarProduct,
    xs_cal: xr.Dataset,
    xs_noise_range: xr.Dataset,
    azimuth_blocks: list[dict[str, object]],
) -> None:
    rad = product.band("VV").radiometry
    rng = np.random.default_rng(7)
    # Rows include the first and last lines (past the last noise vector at 16704
    # and between calibration vectors) to exercise the clamping.
    rows = np.concatenate([[0, 667, 668, 16700, 16704], rng.integers(0, LINES, 35)])
    cols = np.concatenate([[0, 8889, 8890, 17700, 17701, 26101], rng.integers(0, PIXELS, 94)])
    lines = np.repeat(rows, cols.size).astype(float)
    pixels = np.tile(cols, rows.size).astype(float)
    n_ref = _grid_at(xs_noise_range, "noiseRangeLut", lines, pixels) * _azimuth_at(
        azimuth_blocks, lines, pixels
    )
    for quantity, var in LUT_OF.items():
        k_ref = 1.0 / _grid_at(xs_cal, var, lines, pixels) ** 2
        k_got, n_got = [], []
        for r in rows:
            k, n = rad.terms(slice(int(r), int(r) + 1), slice(0, PIXELS), quantity, True)
            assert k.dtype == np.float32 and isinstance(n, np.ndarray) and n.dtype == np.float32
            k_got.append(k[0, cols])
            n_got.append(n[0, cols])
        np.testing.assert_allclose(np.concatenate(k_got), k_ref, rtol=1e-5)
        np.testing.assert_allclose(np.concatenate(n_got), n_ref, rtol=1e-5)


@pytest.mark.parametrize(
    "rows, cols",
    [
        (slice(0, 40), slice(0, 50)),  # top-left corner
        (slice(640, 700), slice(8860, 8920)),  # across a vector line and the IW1/IW2 border
        (slice(16650, LINES), slice(26000, PIXELS)),  # bottom-right, past the last noise line
        (slice(9000, 9256), slice(17600, 17800)),  # IW2/IW3 border
    ],
)
def test_k_and_n_equal_an_independent_computation_in_windows(
    product: SarProduct,
    xs_cal: xr.Dataset,
    xs_noise_range: xr.Dataset,
    azimuth_blocks: list[dict[str, object]],
    rows: slice,
    cols: slice,
) -> None:
    k, n = product.band("VV").radiometry.terms(rows, cols, Quantity.GAMMA0, True)
    ll, pp = np.meshgrid(
        np.arange(rows.start, rows.stop, dtype=float),
        np.arange(cols.start, cols.stop, dtype=float),
        indexing="ij",
    )
    k_ref = 1.0 / _grid_at(xs_cal, "gamma", ll, pp) ** 2
    n_ref = _grid_at(xs_noise_range, "noiseRangeLut", ll, pp) * _azimuth_at(azimuth_blocks, ll, pp)
    assert k.shape == n.shape == ll.shape  # type: ignore[union-attr]
    np.testing.assert_allclose(k, k_ref, rtol=1e-5)
    np.testing.assert_allclose(n, n_ref, rtol=1e-5)
    # Without noise removal N is 0 (Sentinel-1 has no offset term).
    _, n0 = product.band("VV").radiometry.terms(rows, cols, Quantity.GAMMA0, False)
    assert n0 == 0.0


def test_matches_xarray_sentinel_calibrate_intensity(
    product: SarProduct, xs_cal: xr.Dataset
) -> None:
    rows, cols = slice(5000, 5064), slice(10000, 10300)
    dn = np.random.default_rng(3).integers(1, 2000, (64, 300)).astype(np.float32)
    da = xr.DataArray(
        dn,
        dims=("line", "pixel"),
        coords={
            "line": np.arange(rows.start, rows.stop),
            "pixel": np.arange(cols.start, cols.stop),
        },
    )
    for quantity, var in LUT_OF.items():
        ref = xarray_sentinel.calibrate_intensity(da, xs_cal[var]).values
        k, _ = product.band("VV").radiometry.terms(rows, cols, quantity, False)
        np.testing.assert_allclose(dn.astype(np.float64) ** 2 * k, ref, rtol=1e-4)


def test_every_azimuth_noise_block_is_used(
    safe: Path,
    product: SarProduct,
    xs_noise_range: xr.Dataset,
    azimuth_blocks: list[dict[str, object]],
) -> None:
    # The real file has one block per swath (IW1, IW2, IW3), each over all lines.
    assert [b["swath"] for b in azimuth_blocks] == ["IW1", "IW2", "IW3"]
    rad = product.band("VV").radiometry
    xs_az = _xs(safe, "noise_azimuth")
    # xarray-sentinel 0.9.6 keeps only the first noiseAzimuthVector (IW1) and
    # would apply it to the whole image; its LUT is IW1's.
    np.testing.assert_allclose(xs_az["noiseAzimuthLut"].values, azimuth_blocks[0]["lut"], rtol=1e-6)
    rows = slice(4000, 4100)
    _, n = rad.terms(rows, slice(0, PIXELS), Quantity.SIGMA0, True)
    ll = np.arange(rows.start, rows.stop, dtype=float)
    for block in azimuth_blocks[1:]:
        p = np.arange(int(block["p0"]), int(block["p1"]) + 1, 97, dtype=float)  # type: ignore[call-overload]
        lg, pg = np.meshgrid(ll, p, indexing="ij")
        rng_n = _grid_at(xs_noise_range, "noiseRangeLut", lg, pg)
        own = rng_n * np.interp(lg, block["line"], block["lut"])  # type: ignore[arg-type]
        first_only = rng_n * np.interp(lg, xs_az["line"].values, xs_az["noiseAzimuthLut"].values)
        got = n[:, p.astype(int)]  # type: ignore[index]
        np.testing.assert_allclose(got, own, rtol=1e-5)
        assert np.max(np.abs(got / first_only - 1)) > 1e-2, block["swath"]


def test_several_azimuth_blocks_in_one_swath(safe: Path, tmp_path: Path) -> None:
    # IPF >= 2.9 products may split a swath into several blocks along azimuth;
    # split IW2's into lines 0..8000 and 8001..16704, the second with LUT x 2.
    root = _copy(safe, tmp_path)
    noise_path = root / f"annotation/calibration/noise-{VV}.xml"
    tree = ET.parse(noise_path)
    az_list = tree.getroot().find("noiseAzimuthVectorList")
    assert az_list is not None
    iw2 = az_list.findall("noiseAzimuthVector")[1]
    second = ET.fromstring(ET.tostring(iw2))
    iw2.find("lastAzimuthLine").text = "8000"  # type: ignore[union-attr]
    second.find("firstAzimuthLine").text = "8001"  # type: ignore[union-attr]
    lut = np.array(second.find("noiseAzimuthLut").text.split(), dtype=float)  # type: ignore[union-attr]
    second.find("noiseAzimuthLut").text = " ".join(f"{v * 2:e}" for v in lut)  # type: ignore[union-attr]
    az_list.insert(2, second)
    az_list.set("count", "4")
    tree.write(noise_path, encoding="UTF-8", xml_declaration=True)

    original = open_sentinel1(str(safe), ["VV"]).band("VV").radiometry
    split = open_sentinel1(str(root), ["VV"]).band("VV").radiometry
    cols = slice(9000, 9100)  # inside IW2
    for rows, factor in [(slice(7900, 8001), 1.0), (slice(8001, 8200), 2.0)]:
        _, n_orig = original.terms(rows, cols, Quantity.SIGMA0, True)
        _, n_split = split.terms(rows, cols, Quantity.SIGMA0, True)
        np.testing.assert_allclose(n_split, np.asarray(n_orig) * factor, rtol=1e-6)
    # IW1 and IW3 are untouched.
    for cols in (slice(0, 100), slice(20000, 20100)):
        a = original.terms(slice(8001, 8100), cols, Quantity.SIGMA0, True)[1]
        b = split.terms(slice(8001, 8100), cols, Quantity.SIGMA0, True)[1]
        np.testing.assert_array_equal(a, b)


def test_old_noise_layout_and_differing_pixel_lists() -> None:
    # IPF < 2.9: noiseVectorList/noiseLut, no azimuth vectors (factor 1); and
    # vectors whose pixel lists differ, each interpolated over its own list.
    noise = ET.fromstring(
        "<noise><noiseVectorList count='2'>"
        "<noiseVector><line>0</line><pixel count='3'>0 50 99</pixel>"
        "<noiseLut count='3'>10 20 30</noiseLut></noiseVector>"
        "<noiseVector><line>40</line><pixel count='2'>0 99</pixel>"
        "<noiseLut count='2'>100 199</noiseLut></noiseVector>"
        "</noiseVectorList></noise>"
    )
    grid, blocks = parse_noise(noise, 100, "test noise")
    assert grid is not None and blocks == []
    got = grid.block(slice(0, 50), slice(0, 100)).astype(float)
    line = np.arange(50, dtype=float)[:, None]
    pix = np.arange(100, dtype=float)[None, :]
    row0 = np.interp(pix, [0, 50, 99], [10, 20, 30])
    row1 = np.interp(pix, [0, 99], [100, 199])
    t = np.clip(line / 40, 0, 1)
    np.testing.assert_allclose(got, (1 - t) * row0 + t * row1, rtol=1e-6)

    cal = ET.fromstring(
        "<calibration><calibrationVectorList>"
        "<calibrationVector><line>0</line><pixel>0 99</pixel><sigmaNought>2 4</sigmaNought>"
        "<dn>1 1</dn></calibrationVector></calibrationVectorList></calibration>"
    )
    grids = parse_calibration(cal, 100, "test calibration")
    assert sorted(grids) == ["dn", "sigmaNought"]


def test_terms_is_thread_safe_and_cached(safe: Path) -> None:
    rad = open_sentinel1(str(safe), ["VV"]).band("VV").radiometry
    windows = [slice(i * 256, i * 256 + 256) for i in range(6)]
    results: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def work(i: int) -> None:
        k, n = rad.terms(windows[i], slice(0, PIXELS), Quantity.SIGMA0, True)
        results[i] = (k, np.asarray(n))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    serial = open_sentinel1(str(safe), ["VV"]).band("VV").radiometry
    for i, w in enumerate(windows):
        k, n = serial.terms(w, slice(0, PIXELS), Quantity.SIGMA0, True)
        np.testing.assert_array_equal(results[i][0], k)
        np.testing.assert_array_equal(results[i][1], n)


def test_block_timing(product: SarProduct) -> None:
    # The pipeline asks for ~256 x full-width blocks; print the warm cost of K and N.
    rad = product.band("VV").radiometry
    rad.terms(slice(0, LINES), slice(0, 1), Quantity.SIGMA0, True)  # fill the caches
    rows = slice(8000, 8256)
    t0 = time.perf_counter()
    for _ in range(3):
        rad.terms(rows, slice(0, PIXELS), Quantity.SIGMA0, False)
    t_k = (time.perf_counter() - t0) / 3
    t0 = time.perf_counter()
    for _ in range(3):
        rad.terms(rows, slice(0, PIXELS), Quantity.SIGMA0, True)
    t_n = (time.perf_counter() - t0) / 3 - t_k
    print(f"per 256 x {PIXELS} block: K {t_k:.4f} s, N {t_n:.4f} s")
    # Loose bound: a regression to per-pixel interpolation would take seconds.
    assert t_k < 1.0 and t_n < 1.0


def test_window_outside_the_raster_is_refused(product: SarProduct) -> None:
    rad = product.band("VV").radiometry
    with pytest.raises(InvalidArgument, match="line window 16700:16800 is not inside 0:16705"):
        rad.terms(slice(16700, 16800), slice(0, 10), Quantity.SIGMA0, False)
    assert rad.noise_available()


# ---------------------------------------------------------------- forms of the product


def test_zip_and_manifest_forms_give_identical_terms(
    safe: Path, product: SarProduct, tmp_path: Path
) -> None:
    archive = _zip(safe, tmp_path)
    from_zip = open_sentinel1(str(archive), ["VV"])
    from_manifest = open_sentinel1(str(safe / "manifest.safe"), ["VV"])
    assert from_zip.files == [str(archive)]
    assert from_zip.band("VV").measurement == f"/vsizip/{archive}/{NAME}/measurement/{VV}.tiff"
    with rasterio.open(from_zip.band("VV").measurement) as ds:
        assert (ds.height, ds.width) == (LINES, PIXELS)
    assert str(safe / "manifest.safe") in from_manifest.files
    rows, cols = slice(3000, 3100), slice(8800, 9000)
    ref = product.band("VV").radiometry.terms(rows, cols, Quantity.SIGMA0, True)
    for other in (from_zip, from_manifest):
        assert other.metadata == product.metadata
        assert other.gcps == product.gcps
        got = other.band("VV").radiometry.terms(rows, cols, Quantity.SIGMA0, True)
        np.testing.assert_array_equal(got[0], ref[0])
        np.testing.assert_array_equal(got[1], ref[1])


def test_complete_dual_pol_product(safe: Path, tmp_path: Path) -> None:
    root = _copy(safe, tmp_path)
    _add_vh(root)
    p = open_sentinel1(str(root))
    assert [b.polarisation for b in p.bands] == ["VV", "VH"]
    assert p.metadata["polarisations"] == "VV,VH"
    assert p.band("vh").measurement == str(root / f"measurement/{VH}.tiff")
    assert len(p.files) == 1 + 2 * 4
    a = p.band("VV").radiometry.terms(slice(0, 10), slice(0, 10), Quantity.BETA0, True)
    b = p.band("VH").radiometry.terms(slice(0, 10), slice(0, 10), Quantity.BETA0, True)
    np.testing.assert_array_equal(a[0], b[0])
    only_vh = open_sentinel1(str(root), ["vh"])
    assert [b.polarisation for b in only_vh.bands] == ["VH"]
    assert only_vh.metadata["polarisations"] == "VH"


# ---------------------------------------------------------------- errors


def test_missing_vh_files_of_the_real_fixture(safe: Path) -> None:
    msg = _error(safe)
    assert msg == (
        f"product {safe} is incomplete: annotation file annotation/{VH}.xml "
        "listed in manifest.safe is missing"
    )


def test_missing_calibration_file(safe: Path, tmp_path: Path) -> None:
    root = _copy(safe, tmp_path)
    (root / f"annotation/calibration/calibration-{VV}.xml").unlink()
    msg = _error(root, ["VV"])
    assert msg == (
        f"product {root} is incomplete: calibration file annotation/calibration/"
        f"calibration-{VV}.xml listed in manifest.safe is missing"
    )


def test_truncated_zip(safe: Path, tmp_path: Path) -> None:
    archive = _zip(safe, tmp_path)
    data = archive.read_bytes()
    archive.write_bytes(data[: len(data) // 2])
    assert "is not a readable zip" in _error(archive, ["VV"])


def test_slc_product_is_refused(safe: Path, tmp_path: Path) -> None:
    root = _copy(safe, tmp_path)
    manifest = root / "manifest.safe"
    manifest.write_text(
        manifest.read_text().replace(
            "<s1sarl1:productType>GRD</s1sarl1:productType>",
            "<s1sarl1:productType>SLC</s1sarl1:productType>",
        )
    )
    msg = _error(root)
    assert "is a Sentinel-1 SLC product" in msg and "only GRD (GRDH, GRDM, GRDF)" in msg


def test_sentinel2_safe_is_refused() -> None:
    s2 = shared_fixture(
        "sentinel2/S2A_MSIL1C_20210908T042701_N0301_R133_T46RER_20210908T070248.SAFE"
    )
    assert "is a Sentinel-2 product, not Sentinel-1" in _error(s2)


def test_unknown_polarisation(safe: Path) -> None:
    assert _error(safe, ["HH"]).endswith("has no HH polarisation; it has VV, VH")


def test_measurement_size_mismatch(safe: Path, tmp_path: Path) -> None:
    root = _copy(safe, tmp_path)
    with rasterio.open(
        root / f"measurement/{VV}.tiff", "w", driver="GTiff", width=20, height=10, count=1,
        dtype="uint16",
    ) as ds:  # fmt: skip
        ds.write(np.zeros((1, 10, 20), np.uint16))
    msg = _error(root, ["VV"])
    assert f"is 20 x 10 pixels but its annotation says {PIXELS} x {LINES}" in msg


def test_malformed_xml_names_the_file(safe: Path, tmp_path: Path) -> None:
    root = _copy(safe, tmp_path)
    noise = root / f"annotation/calibration/noise-{VV}.xml"
    noise.write_bytes(noise.read_bytes()[:5000])
    msg = _error(root, ["VV"])
    assert f"noise file annotation/calibration/noise-{VV}.xml is not well-formed XML" in msg


# ---------------------------------------------------------------- geolocation and metadata


def test_gcps_are_the_annotation_grid(safe: Path, product: SarProduct) -> None:
    gcp = _xs(safe, "gcp")
    lines = gcp["line"].values
    pixels = gcp["pixel"].values
    assert len(product.gcps) == lines.size * pixels.size == 210
    by_pos = {(g.line, g.pixel): g for g in product.gcps}
    for i, line in enumerate(lines):
        for j, pixel in enumerate(pixels):
            g = by_pos[(line + 0.5, pixel + 0.5)]  # GDAL corner convention
            assert g.lat == pytest.approx(float(gcp["latitude"][i, j]), abs=1e-12)
            assert g.lon == pytest.approx(float(gcp["longitude"][i, j]), abs=1e-12)
            assert g.height == pytest.approx(float(gcp["height"][i, j]), abs=1e-9)
            assert g.incidence == pytest.approx(float(gcp["incidenceAngle"][i, j]), abs=1e-12)
    inc = gcp["incidenceAngle"].values
    assert float(product.metadata["incidence_near"]) == pytest.approx(inc.min(), abs=1e-4)
    assert float(product.metadata["incidence_far"]) == pytest.approx(inc.max(), abs=1e-4)


def test_metadata(safe: Path, product: SarProduct) -> None:
    annotation = (safe / f"annotation/{VV}.xml").read_text()
    pass_ = re.search(r"<pass>(\w+)</pass>", annotation).group(1).upper()  # type: ignore[union-attr]
    assert pass_ == "DESCENDING"
    assert product.sensor == "sentinel1"
    assert (product.lines, product.pixels) == (LINES, PIXELS)
    assert product.pixel_spacing == (10.0, 10.0)
    m = product.metadata
    assert {k: m[k] for k in m if not k.startswith("incidence")} == {
        "mission": "S1B",
        "mode": "IW",
        "product_type": "GRD",
        "resolution": "H",
        "start_time": "2021-12-23T05:11:22.594441",
        "stop_time": "2021-12-23T05:11:47.593146",
        "orbit_direction": pass_,
        "absolute_orbit": "30148",
        "relative_orbit": "22",
        "polarisations": "VV",
        "pixel_spacing": "10.0x10.0",
    }
    assert product.files == [
        str(safe / "manifest.safe"),
        str(safe / f"annotation/{VV}.xml"),
        str(safe / f"annotation/calibration/calibration-{VV}.xml"),
        str(safe / f"annotation/calibration/noise-{VV}.xml"),
        str(safe / f"measurement/{VV}.tiff"),
    ]


def test_files_found_by_name_without_a_data_object_section(
    safe: Path, product: SarProduct, tmp_path: Path
) -> None:
    # Some tools rewrite manifest.safe without the dataObjectSection: the files
    # are then found by ESA's naming pattern.
    root = _copy(safe, tmp_path)
    manifest = root / "manifest.safe"
    manifest.write_text(
        re.sub(r"<dataObjectSection>.*</dataObjectSection>", "", manifest.read_text(), flags=re.S)
    )
    p = open_sentinel1(str(root), ["VV"])
    assert p.band("VV").measurement == str(root / f"measurement/{VV}.tiff")
    assert p.metadata == product.metadata
