"""The landsat preprocessor on the real Collection 2 fixtures, called directly.

Expected values are computed here with separate code: the MTL is read with regular
expressions (one group at a time) or ElementTree, pixels with rasterio, formulas in
float64, from the published sources:

- Level-2 scale factors: USGS LSDS-1619 (Landsat 8-9 C2 L2 Science Product Guide) and
  LSDS-1618 (Landsat 4-7): SR = DN * 2.75e-05 - 0.2, ST = DN * 0.00341802 + 149.0 K,
  as REFLECTANCE_MULT/ADD_BAND_n (LEVEL2_SURFACE_REFLECTANCE_PARAMETERS) and
  TEMPERATURE_MULT/ADD_BAND_ST_B10 (LEVEL2_SURFACE_TEMPERATURE_PARAMETERS); DN 0 fill.
- Level-1: USGS LSDS-1574 (Landsat 8-9 Data Users Handbook) section 5 and "Using the
  USGS Landsat Level-1 Data Product": rho = (M_rho Q + A_rho) / sin(SUN_ELEVATION);
  L = M_L Q + A_L; T = K2 / ln(K1 / L + 1) (LEVEL1_RADIOMETRIC_RESCALING,
  LEVEL1_THERMAL_CONSTANTS).
- QA_PIXEL: Collection 2 bit layout (LSDS-1619 section "Pixel Quality Assessment").
"""

from __future__ import annotations

import math
import re
import shutil
import tarfile
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import rasterio
from pydantic import ValidationError

from sipd.bench.landsat_products import make_landsat_product
from sipd.contracts.options.landsat import QA_CLASSES as LANDSAT_QA_CLASSES
from sipd.contracts.options.landsat import LandsatOptions
from sipd.contracts.preprocessing import PreprocessStep
from sipd.errors import InvalidArgument
from sipd.preprocess import catalog, landsat
from sipd.preprocess.landsat_mtl import parse_mtl
from sipd.progress import JobContext
from tests.support import shared_fixture

PID = "LC08_L2SP_008059_20191201_20200825_02_T1"
L2 = f"landsat/{PID}"


# ---------------------------------------------------------------- independent helpers


def group_values(mtl_text: str, group: str) -> dict[str, float | str]:
    """KEY = VALUE lines of one ODL group, by regex (not the reader's parser)."""
    m = re.search(rf"GROUP = {group}\n(.*?)END_GROUP = {group}", mtl_text, re.S)
    assert m, group
    out: dict[str, float | str] = {}
    for key, value in re.findall(r"^\s*(\w+) = (.*)$", m.group(1), re.M):
        value = value.strip().strip('"')
        try:
            out[key] = float(value)
        except ValueError:
            out[key] = value
    return out


def dn(path: Path) -> np.ndarray:
    with rasterio.open(path) as ds:
        return ds.read(1).astype(np.float64)


def run(source: Path, out: Path, **options: str) -> landsat.RunResult:
    step = PreprocessStep(preprocessor="landsat", options=options)
    return landsat.run(source, step, out, JobContext(), {"SIPD_SOURCE": "test"}, threads=2)


def read_out(path: Path) -> np.ndarray:
    with rasterio.open(path) as ds:
        return ds.read().astype(np.float64)


def qa_bits(qa: np.ndarray, *bits: int) -> np.ndarray:
    return np.bitwise_or.reduce([(qa.astype(np.int64) >> b) & 1 for b in bits]) == 1


@pytest.fixture(scope="module")
def l2() -> Path:
    return shared_fixture(L2)


@pytest.fixture(scope="module")
def mtl_text(l2: Path) -> str:
    return (l2 / f"{PID}_MTL.txt").read_text()


def l1_product(l2: Path, mtl_text: str, folder: Path) -> Path:
    """A Level-1 (L1TP) product made from the real Level-2 MTL: its Level-1 record,
    rescaling and thermal constants are the scene's own; the L2 pixel files stand in
    for the Level-1 DN (any uint16 DN exercises the formula)."""
    pid = PID.replace("L2SP", "L1TP")
    folder.mkdir(parents=True)
    bands = {"2": "SR_B2", "3": "SR_B3", "4": "SR_B4", "5": "SR_B5", "10": "ST_B10"}
    lines = [f'    LANDSAT_PRODUCT_ID = "{pid}"', '    PROCESSING_LEVEL = "L1TP"']
    for band, src in bands.items():
        shutil.copy(l2 / f"{PID}_{src}.TIF", folder / f"{pid}_B{band}.TIF")
        lines.append(f'    FILE_NAME_BAND_{band} = "{pid}_B{band}.TIF"')
    shutil.copy(l2 / f"{PID}_QA_PIXEL.TIF", folder / f"{pid}_QA_PIXEL.TIF")
    lines.append(f'    FILE_NAME_QUALITY_L1_PIXEL = "{pid}_QA_PIXEL.TIF"')
    contents = (
        "  GROUP = PRODUCT_CONTENTS\n" + "\n".join(lines) + "\n  END_GROUP = PRODUCT_CONTENTS"
    )
    text = re.sub(r"  GROUP = PRODUCT_CONTENTS\n.*?END_GROUP = PRODUCT_CONTENTS", contents,
                  mtl_text, flags=re.S)  # fmt: skip
    text = re.sub(r"  GROUP = LEVEL2_\w+\n.*?END_GROUP = LEVEL2_\w+\n", "", text, flags=re.S)
    (folder / f"{pid}_MTL.txt").write_text(text)
    return folder


# ---------------------------------------------------------------- MTL


def test_mtl_is_read_by_group_in_all_three_forms(l2: Path, mtl_text: str) -> None:
    """REFLECTANCE_MULT_BAND_2 is 2.75e-05 in the Level-2 group and 2.0e-05 in the
    Level-1 rescaling group of the same file; txt, xml and json agree."""
    l2_group = group_values(mtl_text, "LEVEL2_SURFACE_REFLECTANCE_PARAMETERS")
    l1_group = group_values(mtl_text, "LEVEL1_RADIOMETRIC_RESCALING")
    assert l2_group["REFLECTANCE_MULT_BAND_2"] != l1_group["REFLECTANCE_MULT_BAND_2"]
    xml_root = ET.parse(l2 / f"{PID}_MTL.xml").getroot()
    parsed = {
        ext: parse_mtl((l2 / f"{PID}_MTL.{ext}").read_bytes(), ext)
        for ext in ("txt", "xml", "json")
    }
    for ext, mtl in parsed.items():
        for group, values in (
            ("LEVEL2_SURFACE_REFLECTANCE_PARAMETERS", l2_group),
            ("LEVEL1_RADIOMETRIC_RESCALING", l1_group),
        ):
            assert (
                mtl.number(group, "REFLECTANCE_MULT_BAND_2") == values["REFLECTANCE_MULT_BAND_2"]
            ), (ext, group)
            assert float(xml_root.find(f"{group}/REFLECTANCE_ADD_BAND_4").text or "") == (
                mtl.number(group, "REFLECTANCE_ADD_BAND_4")
            )
        assert mtl.get("IMAGE_ATTRIBUTES", "SPACECRAFT_ID") == "LANDSAT_8"
    assert parsed["txt"].groups.keys() == parsed["xml"].groups.keys()


def test_other_missions_mtl(tmp_path: Path) -> None:
    """The LC09 (txt), LE07 and LT05 (xml) MTLs: sensor, level, thermal band keys."""
    folder = shared_fixture("landsat/mtl_other")
    expect = {
        "LC09_L2SP_010065_20220129_20220131_02_T1_MTL.txt": ("LANDSAT_9", "OLI_TIRS", "ST_B10"),
        "LE07_L2SP_021030_20100109_20200911_02_T1_MTL.xml": ("LANDSAT_7", "ETM", "ST_B6"),
        "LT05_L2SP_010067_19860424_20200918_02_T2_MTL.xml": ("LANDSAT_5", "TM", "ST_B6"),
    }
    for name, (craft, sensor, st) in expect.items():
        mtl = parse_mtl((folder / name).read_bytes(), name)
        assert mtl.get("IMAGE_ATTRIBUTES", "SPACECRAFT_ID") == craft
        product = landsat.Product(mtl, craft, sensor, landsat.INSTRUMENTS[sensor], "L2SP")
        thermal = "lwir11" if sensor == "OLI_TIRS" else "lwir"
        plans = landsat.plan_bands(product, ["blue", thermal])
        assert plans[0].label == ("B2" if sensor == "OLI_TIRS" else "B1")
        assert plans[1].label == st and plans[1].quantity == "surface_temperature"
        assert plans[1].gain == 0.00341802 and plans[1].offset == 149.0
        default = [p.name for p in landsat.plan_bands(product, [])]
        coastal = ["coastal"] if sensor == "OLI_TIRS" else []
        assert default == [*coastal, "blue", "green", "red", "nir08", "swir16", "swir22"]
        # Level-1 only bands (OLI cirrus, ETM+ high gain); TM has no high gain band at all.
        missing = {"OLI_TIRS": "cirrus", "ETM": "lwir_high_gain", "TM": "lwir_high_gain"}
        match = "does not exist on Landsat 5 TM" if sensor == "TM" else "not made at this level"
        with pytest.raises(InvalidArgument, match=match):
            landsat.plan_bands(product, [missing[sensor]])
    le07 = folder / "LE07_L2SP_021030_20100109_20200911_02_T1_MTL.xml"
    root = ET.parse(le07).getroot()
    l1 = root.find("LEVEL1_RADIOMETRIC_RESCALING")
    assert l1 is not None
    # The ETM+ Level-1 reflectance rescaling of band 1, as a Level-1 product would use it.
    mtl = parse_mtl(le07.read_bytes(), le07.name)
    assert mtl.number("LEVEL1_RADIOMETRIC_RESCALING", "REFLECTANCE_MULT_BAND_1") == float(
        l1.findtext("REFLECTANCE_MULT_BAND_1") or ""
    )
    # The Level-1 product these were made from (its file names are the MTL's
    # LEVEL1_PROCESSING_RECORD): TOA and brightness temperature coefficients of ETM+ and
    # TM, including ETM+ band 6's two gains, against ElementTree reads of the same XML.
    for name in ("LE07_L2SP_021030_20100109_20200911_02_T1_MTL.xml",
                 "LT05_L2SP_010067_19860424_20200918_02_T2_MTL.xml"):  # fmt: skip
        root = ET.parse(folder / name).getroot()
        mtl = parse_mtl((folder / name).read_bytes(), name)
        groups = {**mtl.groups, "PRODUCT_CONTENTS": mtl.groups["LEVEL1_PROCESSING_RECORD"]}
        l1mtl = type(mtl)(groups, name)
        sensor = l1mtl.get("IMAGE_ATTRIBUTES", "SENSOR_ID")
        product = landsat.Product(l1mtl, "", sensor, landsat.INSTRUMENTS[sensor], "L1TP")
        thermal = ["lwir", "lwir_high_gain"] if sensor == "ETM" else ["lwir"]
        plans = landsat.plan_bands(product, ["red", *thermal])
        sine = math.sin(math.radians(float(root.findtext("IMAGE_ATTRIBUTES/SUN_ELEVATION") or "")))
        rescale = "LEVEL1_RADIOMETRIC_RESCALING"
        assert plans[0].quantity == "toa_reflectance" and plans[0].label == "B3"
        assert plans[0].gain == pytest.approx(
            float(root.findtext(f"{rescale}/REFLECTANCE_MULT_BAND_3") or "") / sine, rel=1e-12
        )
        assert plans[0].offset == pytest.approx(
            float(root.findtext(f"{rescale}/REFLECTANCE_ADD_BAND_3") or "") / sine, rel=1e-12
        )
        for plan in plans[1:]:
            key = plan.label.removeprefix("B")
            assert key in ("6", "6_VCID_1", "6_VCID_2")
            assert plan.quantity == "brightness_temperature"
            assert plan.gain == float(root.findtext(f"{rescale}/RADIANCE_MULT_BAND_{key}") or "")
            assert plan.offset == float(root.findtext(f"{rescale}/RADIANCE_ADD_BAND_{key}") or "")
            thermal_group = "LEVEL1_THERMAL_CONSTANTS"
            assert plan.k1 == float(root.findtext(f"{thermal_group}/K1_CONSTANT_BAND_{key}") or "")
            assert plan.k2 == float(root.findtext(f"{thermal_group}/K2_CONSTANT_BAND_{key}") or "")
            assert plan.file.endswith(f"_B{key}.TIF")
        if sensor == "ETM":
            assert [p.label for p in plans[1:]] == ["B6_VCID_1", "B6_VCID_2"]
    c1 = tmp_path / "LC08_L1TP_008059_20191201_20200825_01_T1_MTL.txt"
    c1.write_text("GROUP = L1_METADATA_FILE\n  GROUP = METADATA_FILE_INFO\n")
    with pytest.raises(InvalidArgument, match="Collection 1"):
        parse_mtl(c1.read_bytes(), c1.name)
    assert not landsat.accepts(c1)


# ---------------------------------------------------------------- Level-2 values


def test_level2_surface_reflectance_and_temperature(
    l2: Path, mtl_text: str, tmp_path: Path
) -> None:
    """SR = DN * REFLECTANCE_MULT + REFLECTANCE_ADD (Level-2 group), ST = DN *
    TEMPERATURE_MULT + TEMPERATURE_ADD; fill, cloud and shadow are NaN in every band."""
    out = tmp_path / "l2.tif"
    result = run(l2, out, bands="blue,green,red,nir,lwir11", mask="fill,cloud,shadow")
    assert result.sensor == "Landsat 8 OLI/TIRS L2SP"
    sr = group_values(mtl_text, "LEVEL2_SURFACE_REFLECTANCE_PARAMETERS")
    st = group_values(mtl_text, "LEVEL2_SURFACE_TEMPERATURE_PARAMETERS")
    qa = dn(l2 / f"{PID}_QA_PIXEL.TIF")
    masked = qa_bits(qa, 0, 3, 4)
    got = read_out(out)
    for i, b in enumerate((2, 3, 4, 5)):
        raw = dn(l2 / f"{PID}_SR_B{b}.TIF")
        want = raw * float(sr[f"REFLECTANCE_MULT_BAND_{b}"]) + float(
            sr[f"REFLECTANCE_ADD_BAND_{b}"]
        )
        want[(raw == 0) | masked] = np.nan
        np.testing.assert_allclose(got[i], want, rtol=1e-6, atol=1e-7, equal_nan=True)
    raw = dn(l2 / f"{PID}_ST_B10.TIF")
    want = raw * float(st["TEMPERATURE_MULT_BAND_ST_B10"]) + float(
        st["TEMPERATURE_ADD_BAND_ST_B10"]
    )
    want[(raw == 0) | masked] = np.nan
    np.testing.assert_allclose(got[4], want, rtol=1e-6, equal_nan=True)
    assert 0 < np.isnan(got[0]).mean() < 1 and np.nanmax(got[4]) < 373
    with rasterio.open(out) as ds:
        assert ds.descriptions == ("blue", "green", "red", "nir08", "lwir11")
        tags = ds.tags()
        assert tags["LANDSAT_SPACECRAFT_ID"] == "LANDSAT_8"
        assert tags["LANDSAT_PROCESSING_LEVEL"] == "L2SP"
        assert tags["LANDSAT_WRS_PATH"] == "8" and tags["LANDSAT_WRS_ROW"] == "59"
        assert tags["LANDSAT_SUN_ELEVATION"] == "57.08727307"
        assert tags["LANDSAT_CLOUD_COVER"] == "81.02"
        assert tags["SIPD_MASK"] == "fill,cloud,shadow" and tags["SIPD_SOURCE"] == "test"
        assert ds.tags(3)["common_name"] == "red" and ds.tags(3)["landsat_band"] == "B4"
        assert ds.tags(5)["units"] == "K" and ds.tags(5)["landsat_band"] == "ST_B10"
        assert math.isnan(ds.nodata) and ds.dtypes[0] == "float32"
        with rasterio.open(l2 / f"{PID}_SR_B4.TIF") as src:
            assert ds.transform == src.transform and ds.crs == src.crs


def test_forms_folder_mtl_files_and_tar_agree(l2: Path, tmp_path: Path) -> None:
    """The folder, each of its MTL forms and the .tar (read in place) give the same scene;
    with mask= (empty) only each band's own fill is NaN."""
    tar = tmp_path / f"{PID}.tar"
    with tarfile.open(tar, "w") as tf:
        for f in sorted(l2.iterdir()):
            tf.add(f, arcname=f.name)
    outputs = []
    for i, src in enumerate(
        [l2, l2 / f"{PID}_MTL.xml", l2 / f"{PID}_MTL.json", tar, l2 / f"{PID}_MTL.txt"]
    ):
        assert landsat.accepts(src)
        run(src, tmp_path / f"{i}.tif", bands="red,nir08", mask="")
        outputs.append(read_out(tmp_path / f"{i}.tif"))
    for other in outputs[1:]:
        np.testing.assert_array_equal(outputs[0], other)
    raw = dn(l2 / f"{PID}_SR_B4.TIF")
    np.testing.assert_array_equal(np.isnan(outputs[0][0]), raw == 0)
    assert catalog.detect(tar) == "landsat" and catalog.detect(l2) == "landsat"


# ---------------------------------------------------------------- Level-1 values


def test_level1_toa_reflectance_and_brightness_temperature(
    l2: Path, mtl_text: str, tmp_path: Path
) -> None:
    """rho = (M Q + A) / sin(SUN_ELEVATION) and T = K2 / ln(K1 / (M_L Q + A_L) + 1), with
    the real scene's LEVEL1_RADIOMETRIC_RESCALING (not the Level-2 scale of the same
    names) and LEVEL1_THERMAL_CONSTANTS."""
    product = l1_product(l2, mtl_text, tmp_path / "l1")
    out = tmp_path / "l1.tif"
    result = run(product, out, bands="green,nir08,lwir11", mask="fill,cloud_conf_high")
    assert result.sensor == "Landsat 8 OLI/TIRS L1TP"
    rescale = group_values(mtl_text, "LEVEL1_RADIOMETRIC_RESCALING")
    thermal = group_values(mtl_text, "LEVEL1_THERMAL_CONSTANTS")
    elevation = float(group_values(mtl_text, "IMAGE_ATTRIBUTES")["SUN_ELEVATION"])
    qa = dn(l2 / f"{PID}_QA_PIXEL.TIF").astype(np.int64)
    masked = ((qa & 1) == 1) | (((qa >> 8) & 3) == 3)
    got = read_out(out)
    for i, (band, src) in enumerate(((3, "SR_B3"), (5, "SR_B5"))):
        q = dn(l2 / f"{PID}_{src}.TIF")
        want = (float(rescale[f"REFLECTANCE_MULT_BAND_{band}"]) * q
                + float(rescale[f"REFLECTANCE_ADD_BAND_{band}"])) / math.sin(
            math.radians(elevation))  # fmt: skip
        want[(q == 0) | masked] = np.nan
        np.testing.assert_allclose(got[i], want, rtol=2e-6, atol=1e-7, equal_nan=True)
    q = dn(l2 / f"{PID}_ST_B10.TIF")
    radiance = float(rescale["RADIANCE_MULT_BAND_10"]) * q + float(rescale["RADIANCE_ADD_BAND_10"])
    want = float(thermal["K2_CONSTANT_BAND_10"]) / np.log(
        float(thermal["K1_CONSTANT_BAND_10"]) / radiance + 1
    )
    want[(q == 0) | masked] = np.nan
    np.testing.assert_allclose(got[2], want, rtol=2e-6, equal_nan=True)
    with rasterio.open(out) as ds:
        assert ds.tags(3)["quantity"] == "brightness_temperature"
        assert ds.tags(1)["quantity"] == "toa_reflectance"
        assert ds.tags()["LANDSAT_PROCESSING_LEVEL"] == "L1TP"


# ---------------------------------------------------------------- QA and options


def test_qa_classes_follow_the_collection2_bits() -> None:
    values = np.array(
        [
            1,  # fill
            (1 << 3) | (3 << 8),  # cloud, high confidence
            (1 << 1) | (2 << 8),  # dilated cloud, medium cloud confidence
            (1 << 4) | (3 << 10),  # shadow, high shadow confidence
            (1 << 2) | (3 << 14),  # cirrus, high cirrus confidence
            (1 << 5) | (3 << 12),  # snow
            (1 << 6) | (1 << 7) | (1 << 8),  # clear water, low cloud confidence
            (1 << 6) | (1 << 8),  # clear land
        ],
        dtype=np.uint16,
    )
    cases = {
        "fill": [0],
        "cloud": [1],
        "dilated_cloud": [2],
        "shadow": [3],
        "cirrus": [4],
        "snow": [5],
        "water": [6],
        "cloud_conf_high": [1],
        "cloud_conf_medium": [1, 2],
        "shadow_conf_high": [3],
        "cirrus_conf_high": [4],
        "snow_conf_high": [5],
        "not_clear": [0, 1, 2, 3, 4, 5],
    }
    for name, rows in cases.items():
        assert np.flatnonzero(landsat.qa_mask(values, [name])).tolist() == rows, name
    both = landsat.qa_mask(values, ["fill", "cloud", "shadow"])
    assert np.flatnonzero(both).tolist() == [0, 1, 3]


def test_clear_pixels_with_low_confidences_are_kept() -> None:
    """Collection 2 clear pixels carry low (01) confidence in all four confidence fields:
    the QA value table of LSDS-1619 (L8/9 C2 L2 Science Product Guide, "Pixel Quality
    Assessment Band") lists 21824 = clear land and 21952 = clear water ("with lows set"),
    22280 = high-confidence cloud. No mask class offered may hit the clear values."""
    low_everywhere = (1 << 8) | (1 << 10) | (1 << 12) | (1 << 14)
    clear_land = (1 << 6) | low_everywhere
    clear_water = clear_land | (1 << 7)
    cloud = (1 << 3) | (3 << 8) | (1 << 10) | (1 << 12) | (1 << 14)
    assert (clear_land, clear_water, cloud) == (21824, 21952, 22280)  # the guide's table
    values = np.array([clear_land, clear_water, cloud], dtype=np.uint16)
    for name in LANDSAT_QA_CLASSES:
        hit = np.flatnonzero(landsat.qa_mask(values, [name])).tolist()
        if name == "water":
            assert hit == [1], name
        elif name in ("cloud", "cloud_conf_medium", "cloud_conf_high", "not_clear"):
            assert hit == [2], name
        else:
            assert hit == [], name
    for low, instead in (
        ("cloud_conf_low", "cloud_conf_medium or cloud_conf_high"),
        ("shadow_conf_low", "shadow_conf_high"),
        ("snow_conf_low", "snow_conf_high"),
        ("cirrus_conf_low", "cirrus_conf_high"),
    ):
        with pytest.raises(ValidationError, match=f"{low}.*21824.*use {instead}"):
            LandsatOptions.model_validate({"mask": f"fill,{low}"})
    description = LandsatOptions.model_fields["mask"].description
    assert "cloud_conf_low" not in description and "_conf_low classes" in description


def test_options_parse_text_and_refuse_unknown_names() -> None:
    o = LandsatOptions.model_validate({"bands": "Blue, nir swir1", "mask": "cloud,shadow,cloud"})
    assert o.bands == ["blue", "nir08", "swir16"] and o.mask == ["cloud", "shadow"]
    assert o.output_bands() == ["blue", "nir08", "swir16"]
    default = LandsatOptions()
    assert default.bands == [] and default.mask == ["fill"] and default.output_bands() == []
    assert LandsatOptions.model_validate({"mask": ""}).mask == []
    for bad, match in (
        ({"bands": "red,ultraviolet"}, "not a Landsat band name"),
        ({"bands": "pan"}, "15 m"),
        ({"bands": "red,red"}, "named twice"),
        ({"mask": "clouds"}, "not a QA_PIXEL class"),
        ({"colour": "1"}, "Extra inputs"),
    ):
        with pytest.raises(ValidationError, match=match):
            LandsatOptions.model_validate(bad)
    specs = LandsatOptions.model_fields
    assert all(f.description for f in specs.values())


# ---------------------------------------------------------------- bad input


def test_bad_products_are_refused_with_clear_errors(l2: Path, tmp_path: Path) -> None:
    out = tmp_path / "out" / "x.tif"
    out.parent.mkdir()

    def refused(source: Path, match: str, **options: str) -> None:
        with pytest.raises(InvalidArgument, match=match):
            run(source, out, **options)
        assert list(out.parent.iterdir()) == []

    # Default bands: the fixture lacks SR_B1, B6, B7 (named, with the bands present).
    refused(l2, r"coastal band file .*_SR_B1\.TIF is missing; bands here: blue, green")
    refused(l2, "lwir12 does not exist|holds no lwir12", bands="lwir12")
    refused(l2, "does not exist on Landsat 8", bands="lwir")
    # A truncated tar.
    tar = tmp_path / f"{PID}.tar"
    with tarfile.open(tar, "w") as tf:
        for f in sorted(l2.iterdir()):
            tf.add(f, arcname=f.name)
    cut = tmp_path / "cut" / f"{PID}.tar"
    cut.parent.mkdir()
    cut.write_bytes(tar.read_bytes()[: tar.stat().st_size // 2])
    refused(cut, "truncated", bands="red")
    gz = tmp_path / f"{PID}.tar.gz"
    gz.write_bytes(b"\x1f\x8b")
    refused(gz, "compressed tar", bands="red")
    # A band on another grid, and a band file cut short.
    copy = tmp_path / "copy" / PID
    shutil.copytree(l2, copy)
    with rasterio.open(l2 / f"{PID}_SR_B5.TIF") as src:
        profile = {**src.profile, "width": 256}
        data = src.read(1)[:, :256]
    with rasterio.open(copy / f"{PID}_SR_B5.TIF", "w", **profile) as dst:
        dst.write(data, 1)
    refused(copy, r"nir08 file .*_SR_B5\.TIF is 256 x 512 .* one grid", bands="red,nir08")
    (copy / f"{PID}_SR_B4.TIF").write_bytes((l2 / f"{PID}_SR_B4.TIF").read_bytes()[:200_000])
    refused(copy, r"corrupt or truncated|cannot read", bands="red")
    # No QA_PIXEL while a mask is asked for.
    (copy / f"{PID}_QA_PIXEL.TIF").unlink()
    refused(copy, "no QA_PIXEL file", bands="green", mask="cloud")
    # A folder that is not a product.
    (tmp_path / "empty").mkdir()
    refused(tmp_path / "empty", "holds no Landsat metadata file")


def test_accepts_sniffs_content_and_never_raises(l2: Path, tmp_path: Path) -> None:
    assert landsat.accepts(l2)
    for ext in ("txt", "xml", "json"):
        assert landsat.accepts(l2 / f"{PID}_MTL.{ext}")
    renamed = tmp_path / "my scene"
    shutil.copytree(l2, renamed)
    assert landsat.accepts(renamed)  # found by listing, not by the folder's name
    fake = tmp_path / "X_MTL.txt"
    fake.write_text("hello")
    (tmp_path / "notes.tar").write_bytes(b"not a tar at all")
    for path in (
        l2 / f"{PID}_SR_B4.TIF",
        fake,
        tmp_path / "notes.tar",
        tmp_path / "missing",
        shared_fixture("sentinel2"),
    ):
        assert not landsat.accepts(path), path


# ---------------------------------------------------------------- bench product


def test_bench_product_runs_small(tmp_path: Path) -> None:
    """make_landsat_product at 300 x 260 (L2SP and L1TP): defaults give the 7 OLI
    reflective bands; clouds and shadows are masked where its QA_PIXEL says."""
    for level in ("L2SP", "L1TP"):
        product = make_landsat_product(tmp_path / level, 300, 260, 7, level)
        out = tmp_path / f"{level}.tif"
        run(product, out, mask="fill,cloud,shadow")
        got = read_out(out)
        assert got.shape == (7, 260, 300)
        pid = product.name
        qa = dn(product / f"{pid}_QA_PIXEL.TIF")
        masked = qa_bits(qa, 0, 3, 4)
        assert masked.any() and not masked.all()
        np.testing.assert_array_equal(np.isnan(got[3]), masked)
        sr = "SR_" if level == "L2SP" else ""
        q = dn(product / f"{pid}_{sr}B4.TIF")
        if level == "L2SP":
            want = q * 2.75e-05 - 0.2
        else:
            want = (q * 2e-05 - 0.1) / math.sin(math.radians(57.08727307))
        want[masked] = np.nan
        np.testing.assert_allclose(got[3], want, rtol=1e-6, atol=1e-7, equal_nan=True)
        assert 0.0 < np.nanmean(got[3]) < 0.5


def test_blocks_and_threads_do_not_change_values(tmp_path: Path) -> None:
    """Several 512-row blocks computed on 1 or 3 threads (one dataset per thread) give
    the same scene."""
    product = make_landsat_product(tmp_path, 64, 1300, 2, "L2SP")
    step = PreprocessStep(preprocessor="landsat", options={"bands": "blue,lwir11", "mask": "cloud"})
    outputs = []
    for threads in (1, 3):
        out = tmp_path / f"t{threads}.tif"
        landsat.run(product, step, out, JobContext(), {}, threads=threads)
        outputs.append(read_out(out))
    np.testing.assert_array_equal(outputs[0], outputs[1])
    assert np.isnan(outputs[0]).any() and not np.isnan(outputs[0]).all()
