"""Sentinel-2 preprocessing through a real daemon (sipctl preprocess, gRPC Preprocess).

Products: the real MTD_MSIL2A.xml (baseline 04.00) and MTD_MSIL1C.xml (03.01) of
../shared/fixtures/sentinel2 with their tiles shrunk to 120 x 120 px at 10 m and every
listed band file written as a small JP2 of known DN (tests/unit/test_preprocess_sentinel2).

Expected values are computed here from the metadata parsed by hand (regular expressions)
in float64: reflectance = (DN + offset) / QUANTIFICATION_VALUE with the offset only from
PROCESSING_BASELINE 04.00 on (ESA, "Copernicus Sentinel-2: Processing Baseline 04.00",
2022; Sentinel-2 Products Specification Document S2-PDGS-TAS-DI-PSD v14.9), DN 0 and
65535 as nodata, SCL classes from the product's Scene_Classification_List as nodata.
"""

from __future__ import annotations

import re
import shutil
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from sipapi.v1 import common_pb2, preprocess_pb2

from tests.support import Sipd, assert_cog, refusal_problems, wait_job
from tests.unit.test_preprocess_sentinel2 import (
    L1C,
    L2A,
    SIZE,
    expected_reflectance,
    make_product,
)

State = common_pb2.Job.State


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sipd]:
    root = tmp_path_factory.mktemp("s2")
    d = Sipd(root / "state", roots=[root]).start()
    yield d
    if d.proc is not None and d.proc.poll() is None:
        d.stop()


@pytest.fixture(scope="module")
def products(daemon: Sipd) -> dict[str, Any]:
    root = Path(daemon.roots[0])
    l2a, l2a_dn = make_product(L2A, root / "l2a")
    l1c, l1c_dn = make_product(L1C, root / "l1c")
    archive = root / "zips" / (l2a.stem + ".zip")
    archive.parent.mkdir()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as zf:
        for f in sorted(l2a.rglob("*")):
            zf.write(f, f.relative_to(l2a.parent).as_posix())
    return {"l2a": l2a, "l2a_dn": l2a_dn, "l1c": l1c, "l1c_dn": l1c_dn, "zip": archive}


def scl_codes(safe: Path, names: tuple[str, ...]) -> list[int]:
    text = (safe / "MTD_MSIL2A.xml").read_text()
    legend = dict(re.findall(r"<SCENE_CLASSIFICATION_TEXT>(\w+)</SCENE_CLASSIFICATION_TEXT>\s*"
                             r"<SCENE_CLASSIFICATION_INDEX>(\d+)<", text))  # fmt: skip
    return [int(legend[n]) for n in names]


def test_l2a_zip_with_scl_mask_through_sipctl(daemon: Sipd, products: dict[str, Any]) -> None:
    """The zip as downloaded, read in place, at 20 m with clouds and shadows as nodata."""
    out = Path(daemon.roots[0]) / "out" / "l2a.tif"
    daemon.sipctl("preprocess", str(products["zip"]), "-o", str(out), "--sensor", "sentinel2",
                  "--option", "bands=blue,nir08,swir22", "--option", "resolution=20",
                  "--option", "mask=cloud,cloud_shadow")  # fmt: skip
    assert_cog(out)
    safe, dn = products["l2a"], products["l2a_dn"]
    classes = ("SC_CLOUD_SHADOW", "SC_CLOUD_MEDIUM_PROBA", "SC_CLOUD_HIGH_PROBA", "SC_THIN_CIRRUS")
    masked = np.isin(dn[("SCL", 20)], scl_codes(safe, classes))
    with rasterio.open(out) as ds:
        assert ds.descriptions == ("blue", "nir08", "swir22")
        assert (ds.width, ds.height, ds.transform.a) == (SIZE // 2, SIZE // 2, 20)
        assert ds.crs.to_epsg() == 32633 and ds.dtypes[0] == "float32"
        tags = ds.tags()
        for i, ident in enumerate(("B02", "B8A", "B12"), start=1):
            expected = expected_reflectance(safe, ident, dn[(ident, 20)])
            expected[masked] = np.nan
            actual = ds.read(i).astype(np.float64)
            np.testing.assert_array_equal(np.isnan(actual), np.isnan(expected))
            np.testing.assert_allclose(actual, expected, rtol=2e-6, atol=1e-7, equal_nan=True)
    assert tags["SIPD_MASK"] == "cloud,cloud_shadow" and tags["S2_OFFSET_APPLIED"] == "true"
    assert tags["S2_PROCESSING_BASELINE"] == "04.00" and "SIPD_PREPROCESSING" in tags
    assert masked.any() and (~masked).any()


def test_l1c_detected_through_grpc(daemon: Sipd, products: dict[str, Any]) -> None:
    """No preprocessor named: detected from MTD_MSIL1C.xml; 03.01 so no offset."""
    out = Path(daemon.roots[0]) / "out" / "l1c.tif"
    job = daemon.client.preprocess.Preprocess(preprocess_pb2.PreprocessRequest(
        input=str(products["l1c"] / "MTD_MSIL1C.xml"), output=str(out),
        options={"bands": "red,rededge1"}))  # fmt: skip
    done = wait_job(daemon, job.name)
    assert done.state == State.SUCCEEDED, (done.error_code, done.error, daemon.log()[-2000:])
    safe, dn = products["l1c"], products["l1c_dn"]
    with rasterio.open(out) as ds:
        red = ds.read(1).astype(np.float64)
        assert ds.tags()["S2_OFFSET_APPLIED"] == "false" and ds.width == SIZE
        assert ds.tags(2)["resampling"] == "bilinear"
    expected = expected_reflectance(safe, "B04", dn[("B04", 10)])
    np.testing.assert_allclose(red, expected, rtol=2e-6, equal_nan=True)
    ok = ~np.isnan(red)
    np.testing.assert_allclose(red[ok], dn[("B04", 10)][ok] / 10000.0, rtol=2e-6)


def test_preprocess_list_shows_sentinel2(daemon: Sipd) -> None:
    text = daemon.sipctl("preprocess", "list").stdout
    assert re.search(r"^sentinel2: ", text, re.M), text
    listed = daemon.sipctl_json("preprocess", "list")
    s2 = {p["name"]: p for p in listed["preprocessors"]}["sentinel2"]
    specs = {o["name"]: o for o in s2["option_specs"]}
    assert specs["bands"]["type"] == "list" and specs["bands"]["default"] == "blue,green,red,nir"
    assert specs["upsampling"]["choices"] == "bilinear,nearest"
    assert specs["saturated"]["choices"] == "nodata,keep"
    assert specs["resolution"]["default"] == "10" and "cloud_shadow" in specs["mask"]["description"]
    assert all(o["description"] for o in specs.values())


def test_bad_products_and_options_are_refused_cleanly(
    daemon: Sipd, products: dict[str, Any]
) -> None:
    root = Path(daemon.roots[0])
    whole = products["zip"]
    truncated = root / "zips" / "truncated.zip"
    truncated.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    missing = root / "missing"
    shutil.copytree(products["l2a"], missing / products["l2a"].name)
    gone = next((missing / products["l2a"].name).rglob("*_B8A_20m.jp2"))
    gone.unlink()
    cases = {
        "truncated-zip": (truncated, {}, "zip"),
        "missing-band": (missing / products["l2a"].name, {}, gone.name.removesuffix(".jp2")),
        "band-not-in-l2a": (products["l2a"], {"bands": "cirrus"}, "cirrus"),
        "unknown-mask": (products["l2a"], {"mask": "clouds"}, "clouds"),
        "l1c-mask-on-l2a": (products["l2a"], {"mask": "opaque_cloud"}, "opaque_cloud"),
        "bad-resolution": (products["l2a"], {"resolution": "30"}, "10, 20, 60"),
    }
    problems = []
    for name, (product, options, words) in cases.items():
        problems += refusal_problems(daemon, root / "bad-out" / name, words,
                                     preprocessor="sentinel2", input=str(product),
                                     options=options)  # fmt: skip
    assert not problems, "\n".join(problems)
    assert daemon.proc is not None and daemon.proc.poll() is None
