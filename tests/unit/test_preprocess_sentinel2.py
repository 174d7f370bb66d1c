"""The sentinel2 preprocessor on small products in the real SAFE layout.

The metadata are the real MTD_MSIL2A.xml (baseline 04.00) and MTD_MSIL1C.xml (03.01) in
../shared/fixtures/sentinel2, their tiles shrunk to 120 x 120 px at 10 m (60 at 20 m, 20
at 60 m); every band file they list is written here as a small JP2 of known DN.

Expected values are computed here, separately from the reader: the metadata parsed with
regular expressions, the published formula in float64:

- reflectance = (DN + offset) / QUANTIFICATION_VALUE, the offset (RADIO_ADD_OFFSET for
  L1C, BOA_ADD_OFFSET for L2A, per band) only from PROCESSING_BASELINE 04.00 on (ESA,
  "Copernicus Sentinel-2: Processing Baseline 04.00", 2022; S2 Products Specification
  Document S2-PDGS-TAS-DI-PSD v14.9); DN 0 = NODATA, 65535 = SATURATED (the product's
  Special_Values);
- coarsening: mean of the valid k x k fine pixels; refining: nearest = np.repeat,
  bilinear = scipy.ndimage.map_coordinates(order=1) at (c + 0.5) / k - 0.5;
- masks: SCL class codes from the product's Scene_Classification_List; MSK_CLASSI_B00
  layers 1-3 = opaque clouds, cirrus, snow; MSK_CLOUDS_B00.gml polygons by pixel centre.
"""

from __future__ import annotations

import re
import shutil
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from pydantic import ValidationError
from scipy import ndimage

from sipd.bench.sentinel2_products import (
    adapt_template,
    listed_images,
    make_s2_product,
    product_from_template,
    scene_dn,
    write_band,
)
from sipd.contracts.options.sentinel2 import Sentinel2Options
from sipd.contracts.preprocessing import PreprocessStep
from sipd.errors import InvalidArgument
from sipd.preprocess import sentinel2
from sipd.preprocess.sentinel2_resample import coarsen_mean, refine_bilinear, refine_nearest
from sipd.progress import JobContext
from tests.support import shared_fixture

L2A = "sentinel2/S2B_MSIL2A_20220413T150759_N0400_R025_T33XWJ_20220414T082126.SAFE"
L1C = "sentinel2/S2A_MSIL1C_20210908T042701_N0301_R133_T46RER_20210908T070248.SAFE"
SIZE = 120  # px at 10 m
SCL_CODES = {"SC_CLOUD_SHADOW": "cloud_shadow", "SC_CLOUD_MEDIUM_PROBA": "cloud_medium",
             "SC_CLOUD_HIGH_PROBA": "cloud_high", "SC_THIN_CIRRUS": "thin_cirrus"}  # fmt: skip


# ---------------------------------------------------------------- products


def _dn(kind: str, res: int, seed: int) -> np.ndarray:
    """Known DN of one band file: random reflectances, a few NODATA and SATURATED pixels."""
    n = SIZE * 10 // res
    rng = np.random.default_rng([seed, res, sum(map(ord, kind))])
    if kind == "SCL":
        return rng.integers(0, 12, (n, n)).astype(np.uint8)
    if kind == "TCI":
        return rng.integers(0, 255, (3, n, n)).astype(np.uint8)
    dn = rng.integers(1, 12000, (n, n)).astype(np.uint16)
    dn[0, :3] = 0
    dn[n // 2, n // 3] = 65535
    dn[n - 1, n - 1] = 0
    return dn


def make_product(
    template_rel: str,
    dest: Path,
    *,
    seed: int = 0,
    mtd_edit: tuple[str, str] | None = None,
    tl_edit: tuple[str, str] | None = None,
) -> tuple[Path, dict[tuple[str, int], np.ndarray]]:
    """A copy of a real SAFE's metadata with every listed file written; returns the
    product and the DN written per (kind, resolution)."""
    safe = adapt_template(shared_fixture(template_rel), dest / Path(template_rel).name, SIZE)
    if mtd_edit:
        _edit(next(safe.glob("MTD_MSIL*.xml")), *mtd_edit)
    if tl_edit:
        _edit(next(safe.glob("GRANULE/*/MTD_TL.xml")), *tl_edit)
    crs, ulx, uly = _tile(safe)
    written = {}
    for rel, kind, res in listed_images(safe):
        dn = _dn(kind, res, seed)
        written[(kind, res)] = dn
        write_band(safe / f"{rel}.jp2", res, SIZE,
                   lambda r0, c0, rows, cols, a=dn: a[..., r0:r0 + rows, c0:c0 + cols],
                   count=3 if kind == "TCI" else 1, dtype=str(dn.dtype),
                   ulx=ulx, uly=uly, crs=crs)  # fmt: skip
    return safe, written


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, (path, old)
    path.write_text(text.replace(old, new, 1))


def _tile(safe: Path) -> tuple[str, float, float]:
    text = next(safe.glob("GRANULE/*/MTD_TL.xml")).read_text()
    crs = re.search(r"<HORIZONTAL_CS_CODE>([^<]+)<", text).group(1)  # type: ignore[union-attr]
    ulx = float(re.search(r"<ULX>([^<]+)<", text).group(1))  # type: ignore[union-attr]
    uly = float(re.search(r"<ULY>([^<]+)<", text).group(1))  # type: ignore[union-attr]
    return crs, ulx, uly


def radiometry(safe: Path) -> tuple[float, float, dict[str, float]]:
    """(baseline, quantification, offsets by band id "B02") parsed by hand."""
    text = next(safe.glob("MTD_MSIL*.xml")).read_text()
    baseline = float(re.search(r"<PROCESSING_BASELINE>([\d.]+)<", text).group(1))  # type: ignore[union-attr]
    q = float(re.search(r"<(?:BOA_)?QUANTIFICATION_VALUE(?: [^>]*)?>([^<]+)<", text).group(1))  # type: ignore[union-attr]
    physical = dict(re.findall(r'bandId="(\d+)" physicalBand="(B\w+)"', text))
    offsets = {}
    for index, value in re.findall(r'<(?:RADIO|BOA)_ADD_OFFSET band_id="(\d+)">([^<]+)<', text):
        p = physical[index]
        offsets["B8A" if p == "B8A" else f"B{int(p[1:]):02d}"] = float(value)
    return baseline, q, offsets


def expected_reflectance(safe: Path, band_id: str, dn: np.ndarray,
                         saturated_nodata: bool = True) -> np.ndarray:  # fmt: skip
    baseline, q, offsets = radiometry(safe)
    offset = offsets.get(band_id, 0.0) if baseline >= 4.0 else 0.0
    out = (dn.astype(np.float64) + offset) / q
    out[dn == 0] = np.nan
    if saturated_nodata:
        out[dn == 65535] = np.nan
    return out


def run(safe: Path, out: Path, **options: object) -> tuple[np.ndarray, dict[str, str], Any]:
    """Run the preprocessor; (bands as float64, dataset tags, (names, band tags, profile))."""
    step = PreprocessStep(preprocessor="sentinel2", options={k: str(v) for k, v in options.items()})
    sentinel2.run(safe, step, out, JobContext(), {"SIPD_SOURCE": safe.name}, threads=2)
    with rasterio.open(out) as ds:
        band_tags = [ds.tags(i) for i in range(1, ds.count + 1)]
        return ds.read().astype(np.float64), ds.tags(), (ds.descriptions, band_tags, ds.profile)


@pytest.fixture(scope="module")
def l2a(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    return make_product(L2A, tmp_path_factory.mktemp("l2a"))


@pytest.fixture(scope="module")
def l1c(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    return make_product(L1C, tmp_path_factory.mktemp("l1c"))


def assert_close(actual: np.ndarray, expected: np.ndarray) -> None:
    assert actual.shape == expected.shape
    np.testing.assert_array_equal(np.isnan(actual), np.isnan(expected))
    np.testing.assert_allclose(actual, expected, rtol=2e-6, atol=1e-7, equal_nan=True)


# ---------------------------------------------------------------- radiometry


def test_l2a_baseline_0400_applies_the_boa_offset(l2a: tuple[Path, dict], tmp_path: Path) -> None:
    """L2A 04.00: rho = (DN + BOA_ADD_OFFSET) / BOA_QUANTIFICATION_VALUE (= (DN - 1000) /
    10000 here), NODATA and SATURATED as NaN, bands at 10 m read as they are."""
    safe, dn = l2a
    data, tags, (names, band_tags, ds) = run(safe, tmp_path / "o.tif", bands="blue,red,nir")
    assert names == ("blue", "red", "nir")
    for i, ident in enumerate(("B02", "B04", "B08")):
        assert_close(data[i], expected_reflectance(safe, ident, dn[(ident, 10)]))
    assert radiometry(safe)[2]["B04"] == -1000.0  # the real file's offset
    assert tags["S2_PROCESSING_BASELINE"] == "04.00" and tags["S2_OFFSET_APPLIED"] == "true"
    assert tags["S2_QUANTIFICATION_VALUE"] == "10000" and tags["S2_TILE_ID"] == "33XWJ"
    assert tags["S2_SPACECRAFT"] == "Sentinel-2B" and tags["S2_PRODUCT_TYPE"] == "S2MSI2A"
    assert tags["S2_SUN_ZENITH_MEAN"] == "76.5286190227361"
    assert tags["S2_CLOUD_COVER"] == "98.944211" and tags.get("SIPD_MASK", "") == ""
    assert band_tags[1]["wavelength"] == "665" and band_tags[1]["band_id"] == "B04"
    assert band_tags[1]["common_name"] == "red" and band_tags[1]["offset"] == "-1000"
    t = ds["transform"]
    assert ds["crs"].to_epsg() == 32633 and (t.c, t.f, t.a) == (499980, 8900040, 10)
    assert (ds["width"], ds["height"]) == (SIZE, SIZE) and ds["nodata"] != ds["nodata"]


@pytest.mark.parametrize("baseline", ["03.01", "04.00"])
def test_l1c_offset_follows_the_baseline_not_its_presence(baseline: str, tmp_path: Path) -> None:
    """L1C with a Radiometric_Offset_List inserted (the real >= 04.00 layout): applied at
    04.00, ignored at 03.01 (rho = DN / QUANTIFICATION_VALUE)."""
    offsets = "".join(f'<RADIO_ADD_OFFSET band_id="{i}">-1000</RADIO_ADD_OFFSET>'
                      for i in range(13))  # fmt: skip
    safe, dn = make_product(L1C, tmp_path, mtd_edit=(
        '<QUANTIFICATION_VALUE unit="none">10000</QUANTIFICATION_VALUE>',
        '<QUANTIFICATION_VALUE unit="none">10000</QUANTIFICATION_VALUE>'
        f"<Radiometric_Offset_List>{offsets}</Radiometric_Offset_List>"))  # fmt: skip
    mtd = safe / "MTD_MSIL1C.xml"
    _edit(mtd, "<PROCESSING_BASELINE>03.01<", f"<PROCESSING_BASELINE>{baseline}<")
    data, tags, _ = run(safe, tmp_path / "o.tif", bands="green,nir")
    for i, ident in enumerate(("B03", "B08")):
        expected = expected_reflectance(safe, ident, dn[(ident, 10)])
        assert_close(data[i], expected)
    raw = dn[("B03", 10)].astype(np.float64) / 10000
    if baseline == "03.01":
        ok = ~np.isnan(data[0])
        np.testing.assert_allclose(data[0][ok], raw[ok], rtol=2e-6)
    assert tags["S2_OFFSET_APPLIED"] == str(baseline == "04.00").lower()


def test_saturated_kept_or_nodata(l1c: tuple[Path, dict], tmp_path: Path) -> None:
    safe, dn = l1c
    data, _, _ = run(safe, tmp_path / "o.tif", bands="red", saturated="keep")
    assert_close(data[0], expected_reflectance(safe, "B04", dn[("B04", 10)], False))
    assert data[0][SIZE // 2, SIZE // 3] == pytest.approx(65535 / 10000)


# ---------------------------------------------------------------- resampling


def _nanmean_cells(a: np.ndarray, k: int) -> np.ndarray:
    h, w = a.shape[0] // k, a.shape[1] // k
    cells = a.reshape(h, k, w, k).swapaxes(1, 2).reshape(h, w, k * k)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN cells stay NaN
        return np.nanmean(cells, axis=2)


def _bilinear(a: np.ndarray, k: int, n: int) -> np.ndarray:
    pos = (np.arange(n) + 0.5) / k - 0.5
    rr, cc = np.meshgrid(pos, pos, indexing="ij")
    return ndimage.map_coordinates(a, [rr, cc], order=1, mode="nearest")


def test_l1c_at_20m_and_60m_averages_finer_bands(l1c: tuple[Path, dict], tmp_path: Path) -> None:
    """10 m bands averaged over 2 x 2 / 6 x 6 (NaN pixels left out), 20 m bands read as they
    are at 20 m and averaged 3 x 3 at 60 m; 60 m bands refined bilinearly at 20 m."""
    safe, dn = l1c
    data, tags, (_, band_tags, ds) = run(safe, tmp_path / "a.tif", resolution="20",
                                         bands="blue,rededge1,coastal")  # fmt: skip
    assert (ds["width"], ds["transform"].a) == (SIZE // 2, 20)
    blue = expected_reflectance(safe, "B02", dn[("B02", 10)])
    assert_close(data[0], _nanmean_cells(blue, 2))
    assert_close(data[1], expected_reflectance(safe, "B05", dn[("B05", 20)]))
    coastal = expected_reflectance(safe, "B01", dn[("B01", 60)])
    # bilinear where no NaN is near; the NaN footprint follows the nearest 60 m pixel
    ref = _bilinear(np.nan_to_num(coastal), 3, SIZE // 2)
    near = np.repeat(np.repeat(coastal, 3, 0), 3, 1)
    clean = ndimage.maximum_filter(np.isnan(coastal).astype(np.uint8), size=3) == 0
    clean = np.repeat(np.repeat(clean, 3, 0), 3, 1)
    np.testing.assert_allclose(data[2][clean], ref[clean], rtol=2e-6)
    np.testing.assert_array_equal(np.isnan(data[2]), np.isnan(near))
    assert [t["resampling"] for t in band_tags] == ["average", "none", "bilinear"]
    assert tags["S2_RESOLUTION"] == "20"

    data, _, _ = run(safe, tmp_path / "b.tif", resolution="60", bands="blue,nir08")
    assert_close(data[0], _nanmean_cells(blue, 6))
    nir08 = expected_reflectance(safe, "B8A", dn[("B8A", 20)])
    assert_close(data[1], _nanmean_cells(nir08, 3))


@pytest.mark.parametrize("upsampling", ["bilinear", "nearest"])
def test_l1c_at_10m_refines_coarser_bands(
    upsampling: str, l1c: tuple[Path, dict], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """20 and 60 m bands to 10 m; many small blocks (bilinear's halo rows across block
    edges) give the same values as one block."""
    safe, dn = l1c
    monkeypatch.setattr(sentinel2, "MAX_SOURCE_ROWS", 16)
    data, _, _ = run(safe, tmp_path / "o.tif", bands="rededge2,watervapour",
                     upsampling=upsampling)  # fmt: skip
    for i, (ident, res) in enumerate((("B06", 20), ("B09", 60))):
        k = res // 10
        refl = expected_reflectance(safe, ident, dn[(ident, res)])
        near = np.repeat(np.repeat(refl, k, 0), k, 1)
        if upsampling == "nearest":
            assert_close(data[i], near)
            continue
        clean = ndimage.maximum_filter(np.isnan(refl).astype(np.uint8), size=3) == 0
        clean = np.repeat(np.repeat(clean, k, 0), k, 1)
        ref = _bilinear(np.nan_to_num(refl), k, SIZE)
        np.testing.assert_allclose(data[i][clean], ref[clean], rtol=2e-6)
        np.testing.assert_array_equal(np.isnan(data[i]), np.isnan(near))


def test_resampling_helpers() -> None:
    a = np.arange(36, dtype=np.float32).reshape(6, 6)
    a[0, 0] = np.nan
    a[4:6, 4:6] = np.nan
    m = coarsen_mean(a, 2)
    assert m[0, 0] == pytest.approx((1 + 6 + 7) / 3) and np.isnan(m[2, 2])
    coarse = np.array([[0.0, 1.0], [2.0, 3.0]], np.float32)
    assert refine_nearest(coarse, 2, 0, 4, 0, 4).tolist()[1] == [0, 0, 1, 1]
    b = refine_bilinear(coarse, 2, 0, 4, 0, 2, 4)
    assert b[1].tolist() == pytest.approx([0.5, 0.75, 1.25, 1.5])  # edge held, centres 1/4
    coarse[0, 1] = np.nan
    b = refine_bilinear(coarse, 2, 0, 4, 0, 2, 4)
    assert np.isnan(b[:2, 2:]).all() and not np.isnan(b[:2, :2]).any()


# ---------------------------------------------------------------- masks


@pytest.mark.parametrize("resolution", [10, 20, 60])
def test_l2a_scl_mask(resolution: int, l2a: tuple[Path, dict], tmp_path: Path) -> None:
    """mask=cloud,cloud_shadow: SCL classes from the product's legend made NaN in every
    band; SCL at the output resolution when the product has it (20, 60 m), else the 20 m
    one repeated (10 m)."""
    safe, dn = l2a
    text = (safe / "MTD_MSIL2A.xml").read_text()
    legend = dict(re.findall(r"<SCENE_CLASSIFICATION_TEXT>(\w+)</SCENE_CLASSIFICATION_TEXT>\s*"
                             r"<SCENE_CLASSIFICATION_INDEX>(\d+)<", text))  # fmt: skip
    codes = [int(legend[t]) for t in SCL_CODES]
    assert sorted(codes) == [3, 8, 9, 10]
    data, tags, _ = run(safe, tmp_path / "o.tif", bands="green,swir16",
                        mask="cloud,cloud_shadow", resolution=resolution)  # fmt: skip
    scl = dn[("SCL", 20 if resolution == 10 else resolution)]
    masked = np.isin(scl, codes)
    if resolution == 10:
        masked = np.repeat(np.repeat(masked, 2, 0), 2, 1)
    green_file = ("B03", 10 if resolution == 10 else resolution)
    green = expected_reflectance(safe, "B03", dn[green_file])
    green[masked] = np.nan
    assert_close(data[0], green)
    assert np.isnan(data[1][masked]).all() and masked.any() and (~masked).any()
    assert tags["SIPD_MASK"] == "cloud,cloud_shadow"
    assert tags["S2_MASK_SOURCE"].startswith("T33XWJ") and "_SCL_" in tags["S2_MASK_SOURCE"]


def test_l1c_0400_classi_mask(tmp_path: Path) -> None:
    """Baseline 04.00 L1C: MSK_CLASSI_B00 (60 m; layers opaque, cirrus, snow)."""
    granule_qi = "QI_DATA/MSK_CLOUDS_B00.gml"
    safe, dn = make_product(L1C, tmp_path, tl_edit=(
        f'<MASK_FILENAME type="MSK_CLOUDS">GRANULE/L1C_T46RER_A032448_20210908T043714/'
        f"{granule_qi}</MASK_FILENAME>",
        '<MASK_FILENAME type="MSK_CLASSI">GRANULE/L1C_T46RER_A032448_20210908T043714/'
        "QI_DATA/MSK_CLASSI_B00.jp2</MASK_FILENAME>"))  # fmt: skip
    _edit(safe / "MTD_MSIL1C.xml", "<PROCESSING_BASELINE>03.01<", "<PROCESSING_BASELINE>04.00<")
    rng = np.random.default_rng(5)
    layers = (rng.random((3, SIZE // 6, SIZE // 6)) < 0.2).astype(np.uint8)
    crs, ulx, uly = _tile(safe)
    write_band(next(safe.glob("GRANULE/*")) / "QI_DATA" / "MSK_CLASSI_B00.jp2", 60, SIZE,
               lambda r0, c0, rows, cols: layers[:, r0:r0 + rows, c0:c0 + cols], count=3,
               dtype="uint8", ulx=ulx, uly=uly, crs=crs)  # fmt: skip
    data, tags, _ = run(safe, tmp_path / "o.tif", bands="red", mask="opaque_cloud,snow",
                        resolution=20)  # fmt: skip
    masked = np.repeat(np.repeat((layers[0] == 1) | (layers[2] == 1), 3, 0), 3, 1)
    red = _nanmean_cells(expected_reflectance(safe, "B04", dn[("B04", 10)]), 2)
    red[masked] = np.nan
    assert_close(data[0], red)
    assert tags["S2_MASK_SOURCE"] == "MSK_CLASSI_B00.jp2"
    # "cloud" means opaque + cirrus at L1C
    data, tags, _ = run(safe, tmp_path / "c.tif", bands="red", mask="cloud", resolution=60)
    masked = (layers[0] == 1) | (layers[1] == 1)
    assert np.isnan(data[0][masked]).all()
    assert not np.isnan(data[0][~masked & ~np.isnan(_nanmean_cells(
        expected_reflectance(safe, "B04", dn[("B04", 10)]), 6))]).any()  # fmt: skip


def test_l1c_0301_gml_cloud_mask(l1c: tuple[Path, dict], tmp_path: Path) -> None:
    """Before 04.00: MSK_CLOUDS_B00.gml polygons (OPAQUE, CIRRUS) burnt by pixel centre."""
    src, dn = l1c
    safe = Path(shutil.copytree(src, tmp_path / src.name))
    crs, ulx, uly = _tile(safe)
    x0, x1, y1, y0 = ulx + 203, ulx + 607, uly - 103, uly - 457  # opaque rectangle (m)
    ring = f"{x0} {y1} {x1} {y1} {x1} {y0} {x0} {y0} {x0} {y1}"
    cx0, cy1 = ulx + 800, uly - 800
    ring2 = f"{cx0} {cy1} {cx0 + 300} {cy1} {cx0 + 300} {cy1 - 300} {cx0} {cy1} "
    ring2 += f"{cx0} {cy1}"
    gml = f"""<?xml version="1.0" encoding="UTF-8"?>
<eop:Mask xmlns:eop="http://www.opengis.net/eop/2.0" xmlns:gml="http://www.opengis.net/gml/3.2">
<eop:maskMembers>
<eop:MaskFeature gml:id="OPAQUE.0"><eop:maskType codeSpace="urn:gs2:S2PDGS:maskType">OPAQUE</eop:maskType>
<eop:extentOf><gml:Polygon gml:id="OPAQUE.0_Polygon"><gml:exterior><gml:LinearRing>
<gml:posList srsDimension="2">{ring}</gml:posList></gml:LinearRing></gml:exterior></gml:Polygon>
</eop:extentOf></eop:MaskFeature>
<eop:MaskFeature gml:id="CIRRUS.0"><eop:maskType codeSpace="urn:gs2:S2PDGS:maskType">CIRRUS</eop:maskType>
<eop:extentOf><gml:Polygon gml:id="CIRRUS.0_Polygon"><gml:exterior><gml:LinearRing>
<gml:posList srsDimension="2">{ring2}</gml:posList></gml:LinearRing></gml:exterior></gml:Polygon>
</eop:extentOf></eop:MaskFeature>
</eop:maskMembers></eop:Mask>"""  # noqa: E501
    (next(safe.glob("GRANULE/*")) / "QI_DATA").mkdir()
    (next(safe.glob("GRANULE/*")) / "QI_DATA" / "MSK_CLOUDS_B00.gml").write_text(gml)
    data, tags, _ = run(safe, tmp_path / "o.tif", bands="blue", mask="opaque_cloud")
    xc = ulx + (np.arange(SIZE) + 0.5) * 10
    yc = uly - (np.arange(SIZE) + 0.5) * 10
    inside = ((yc > y0) & (yc < y1))[:, None] & ((xc > x0) & (xc < x1))[None, :]
    blue = expected_reflectance(safe, "B02", dn[("B02", 10)])
    blue[inside] = np.nan
    assert_close(data[0], blue)
    assert inside.sum() == 41 * 36 and tags["S2_MASK_SOURCE"] == "MSK_CLOUDS_B00.gml"
    data, _, _ = run(safe, tmp_path / "c.tif", bands="blue", mask="cloud")
    assert np.isnan(data[0]).sum() > np.isnan(blue).sum()  # the cirrus triangle too
    with pytest.raises(InvalidArgument, match="not available before baseline 04.00"):
        run(safe, tmp_path / "s.tif", bands="blue", mask="snow")


# ---------------------------------------------------------------- forms and detection


def test_forms_folder_mtd_zip_and_detection(l2a: tuple[Path, dict], tmp_path: Path) -> None:
    safe, _ = l2a
    archive = tmp_path / (safe.stem + ".zip")
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as zf:
        for f in sorted(safe.rglob("*")):
            zf.write(f, f.relative_to(safe.parent).as_posix())
    outs = [run(p, tmp_path / f"{i}.tif", bands="red,nir08", mask="cloud")[0]
            for i, p in enumerate((safe, safe / "MTD_MSIL2A.xml", archive))]  # fmt: skip
    np.testing.assert_array_equal(outs[0], outs[1])
    np.testing.assert_array_equal(outs[0], outs[2])
    assert sentinel2.accepts(safe) and sentinel2.accepts(safe / "MTD_MSIL2A.xml")
    assert sentinel2.accepts(archive)
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"not a zip")
    other = tmp_path / "other"
    other.mkdir()
    (other / "manifest.safe").write_text("<xfdu/>")
    for p in (junk, other, other / "manifest.safe", tmp_path / "missing", safe / "GRANULE"):
        assert not sentinel2.accepts(p), p


# ---------------------------------------------------------------- bad input


def _variant(src: Path, tmp: Path, name: str) -> Path:
    return Path(shutil.copytree(src, tmp / name / src.name))


def test_missing_short_and_wrong_size_band_files_are_refused(
    l2a: tuple[Path, dict], tmp_path: Path
) -> None:
    safe, _ = l2a
    files = {kind + str(res): rel for rel, kind, res in listed_images(safe)}
    cases = {}
    missing = _variant(safe, tmp_path, "missing")
    (missing / f"{files['AOT60']}.jp2").unlink()  # unused by the run, still listed
    cases["missing"] = (missing, "is missing")
    short = _variant(safe, tmp_path, "short")
    f = short / f"{files['B0410']}.jp2"
    f.write_bytes(f.read_bytes()[: f.stat().st_size * 2 // 3])
    cases["short"] = (short, "truncated")
    wrong = _variant(safe, tmp_path, "wrong")
    write_band(wrong / f"{files['B0810']}.jp2", 20, SIZE, lambda r0, c0, rows, cols: np.ones(
        (rows, cols), np.uint16))  # fmt: skip
    cases["wrong-size"] = (wrong, "the tile metadata says 120 x 120")
    garbage = _variant(safe, tmp_path, "garbage")
    (garbage / f"{files['TCI60']}.jp2").write_bytes(b"\x00" * 100)
    cases["garbage"] = (garbage, "not readable")
    for name, (product, words) in cases.items():
        out = tmp_path / name / "out" / "o.tif"
        with pytest.raises(InvalidArgument, match=words) as err:
            run(product, out, bands="red,nir")
        assert "Sentinel-2" in str(err.value) or "band file" in str(err.value), name
        assert not out.parent.exists() or list(out.parent.iterdir()) == [], name


def test_bands_and_masks_the_product_lacks_are_refused(
    l2a: tuple[Path, dict], tmp_path: Path
) -> None:
    safe, _ = l2a
    with pytest.raises(InvalidArgument, match=r"cirrus \(B10\) is not in this L2A product"):
        run(safe, tmp_path / "a.tif", bands="red,cirrus")
    with pytest.raises(InvalidArgument, match="'opaque_cloud' does not exist in L2A"):
        run(safe, tmp_path / "b.tif", mask="opaque_cloud")
    assert list(tmp_path.iterdir()) == []


def test_options_parse_text_and_refuse_bad_values() -> None:
    o = Sentinel2Options.model_validate(
        {"bands": "B02, b8a,SWIR22", "resolution": "20m", "mask": "cloud, SNOW"}
    )
    assert o.bands == ["blue", "nir08", "swir22"] and o.output_bands() == o.bands
    assert o.resolution == 20 and o.mask == ["cloud", "snow"]
    assert Sentinel2Options().output_bands() == ["blue", "green", "red", "nir"]
    assert all(f.description for f in Sentinel2Options.model_fields.values())
    for bad, words in (
        ({"bands": "red,B13"}, "B13"),
        ({"bands": "red,B04"}, "twice"),
        ({"bands": ""}, "no bands"),
        ({"resolution": "30"}, "10, 20, 60"),
        ({"mask": "clouds"}, "cloud_shadow"),
        ({"upsampling": "cubic"}, "bilinear"),
        ({"saturated": "clip"}, "keep"),
        ({"colour": "1"}, "colour"),
    ):
        with pytest.raises(ValidationError, match=words):
            Sentinel2Options.model_validate(bad)


@pytest.mark.parametrize("level", ["L2A", "L1C"])
def test_bench_product_is_a_consistent_product(level: str, tmp_path: Path) -> None:
    """make_s2_product (the benchmark's product, small here): every listed file present,
    clouds of its scene masked (SCL 8-10 for L2A; MSK_CLASSI opaque layer for L1C)."""
    archive = make_s2_product(tmp_path, 240, ("B04", "B8A"), level, zip=True)
    assert archive.suffix == ".zip" and sentinel2.accepts(archive)
    data, tags, _ = run(archive, tmp_path / "o.tif", bands="red,nir08", mask="cloud", resolution=20)
    assert tags["S2_PROCESSING_LEVEL"] == level and tags["S2_OFFSET_APPLIED"] == "true"
    clouds = np.isnan(data[0])
    assert 0.05 < clouds.mean() < 0.6 and (np.isnan(data[1]) == clouds).all()
    assert np.nanmin(data[0]) > 0 and np.nanmax(data[0]) < 1


def test_product_from_template_has_clouds_and_shadows(tmp_path: Path) -> None:
    """The real L2A metadata, some files kept, scene DN: SCL is the ground truth."""
    keep = lambda kind, res: kind in ("B03", "SCL") and res == 20  # noqa: E731
    zipped = product_from_template(shared_fixture(L2A), tmp_path, 240, zip=True, keep=keep)
    data, tags, _ = run(zipped, tmp_path / "o.tif", bands="green", mask="cloud,cloud_shadow",
                        resolution=20)  # fmt: skip
    scl = scene_dn(scale=240 / 10980)("SCL", 20, 0, 0, 120, 120)
    masked = np.isin(scl, [3, 8, 9, 10])
    assert masked.any() and (~masked).any()
    np.testing.assert_array_equal(np.isnan(data[0]), masked)
    assert tags["S2_TILE_ID"] == "33XWJ"
