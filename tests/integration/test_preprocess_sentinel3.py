"""Sentinel-3 preprocessing through a real daemon (sipctl preprocess, gRPC Preprocess).

The product is the real OLCI EFR layout (xfdumanifest.xml as published) with small
netCDF variables written by the unit tests' helpers. Expected values are computed with
separate float64 code (tests.unit.test_preprocess_sentinel3.expected_reflectance):
rho = pi * L / (F0[band, detector_index] * cos(SZA)), SZA bilinear in the tie-point
grid (ESA Sentinel-3 OLCI User Guide; OLCI L1 ATBD S3-ACRI-TN-007); L = stored *
scale_factor + add_offset (CF 1.7, 8.1). The swath's latitudes grow with the row, so
a north-up output is the swath flipped: this checks GDAL's netCDF orientation.
"""

from __future__ import annotations

import re
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import rasterio
from sipapi.v1 import common_pb2, preprocess_pb2

from tests.support import Sipd, assert_cog, refusal_problems, wait_job
from tests.unit.test_preprocess_sentinel3 import (
    BANDS,
    COLS,
    OLCI,
    ROWS,
    STEP_DEG,
    _latlon_regular,
    expected_reflectance,
    make_olci,
)

State = common_pb2.Job.State
RESOLUTION = str(STEP_DEG * 111320.0)


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sipd]:
    root = tmp_path_factory.mktemp("s3")
    d = Sipd(root / "state", roots=[root]).start()
    yield d
    if d.proc is not None and d.proc.poll() is None:
        d.stop()


@pytest.fixture(scope="module")
def olci(daemon: Sipd) -> tuple[Path, dict]:
    lat, lon = _latlon_regular(ROWS, COLS, STEP_DEG, 45.0, 10.0)
    dest = Path(daemon.roots[0]) / "in" / Path(OLCI).name
    return dest, make_olci(dest, lat, lon)


def test_olci_reflectance_through_sipctl(daemon: Sipd, olci: tuple[Path, dict]) -> None:
    product, arrays = olci
    out = Path(daemon.roots[0]) / "out" / "olci.tif"
    result = daemon.sipctl_json(
        "preprocess", str(product), "-o", str(out), "--sensor", "sentinel3",
        "--option", f"bands={','.join(BANDS)}", "--crs", "EPSG:4326",
        "--resolution", RESOLUTION,
    )  # fmt: skip
    assert result["preprocessor"] == "sentinel3"
    assert result["metadata"]["sensor"] == "Sentinel-3A OLCI OL_1_EFR"
    assert_cog(out)
    with rasterio.open(out) as ds:
        got = ds.read().astype(np.float64)
        assert ds.descriptions == BANDS and ds.crs.to_epsg() == 4326
        assert ds.transform.f == pytest.approx(45.0 + (ROWS - 0.5) * STEP_DEG)  # north edge
        assert ds.tags()["S3_PRODUCT_TYPE"] == "OL_1_EFR___"
        assert "SIPD_PREPROCESSING" in ds.tags()
    for i, band in enumerate(BANDS):
        expected = np.flipud(expected_reflectance(arrays, band))
        np.testing.assert_allclose(got[i], expected, rtol=2e-6)  # NaNs in the same places


def test_zip_detected_without_sensor(daemon: Sipd, olci: tuple[Path, dict]) -> None:
    product, _ = olci
    root = Path(daemon.roots[0])
    archive = root / "in" / (product.name.replace(".SEN3", ".zip"))
    with zipfile.ZipFile(archive, "w") as zf:
        for f in sorted(product.iterdir()):
            zf.write(f, f"{product.name}/{f.name}")
    outs = [root / "out" / "z.tif", root / "out" / "f.tif"]
    for src, out in zip((archive, product), outs, strict=True):
        job = daemon.client.preprocess.Preprocess(preprocess_pb2.PreprocessRequest(
            input=str(src), output=str(out),
            options={"bands": "Oa08", "crs": "EPSG:4326", "resolution": RESOLUTION}))  # fmt: skip
        done = wait_job(daemon, job.name)
        assert done.state == State.SUCCEEDED, (done.error, daemon.log()[-2000:])
    with rasterio.open(outs[0]) as z, rasterio.open(outs[1]) as f:
        np.testing.assert_array_equal(z.read(), f.read())


def test_bad_input_is_refused_cleanly_and_listed(daemon: Sipd, olci: tuple[Path, dict]) -> None:
    product, _ = olci
    root = Path(daemon.roots[0])
    cases = {
        # The fixture's stub netCDF: the file is there, the variable is not.
        "stub-band": ({"bands": "Oa05"}, "cannot read variable Oa05_radiance"),
        "unknown-flag": ({"bands": "Oa08", "mask": "cloud"}, "mask flag cloud"),
        "slstr-band": ({"bands": "S7"}, "has no band S7"),
        "bad-band": ({"bands": "Oa33"}, "Oa33"),
    }
    problems = []
    for name, (options, words) in cases.items():
        problems += refusal_problems(daemon, root / "bad" / name, words,
                                     preprocessor="sentinel3", input=str(product),
                                     options=options)  # fmt: skip
    assert not problems, "\n".join(problems)
    assert daemon.proc is not None and daemon.proc.poll() is None

    listed = daemon.sipctl_json("preprocess", "list")
    specs = {o["name"]: o for o in {p["name"]: p for p in listed["preprocessors"]}["sentinel3"][
        "option_specs"]}  # fmt: skip
    assert specs["quantity"]["choices"] == "auto,reflectance,radiance"
    assert specs["view"]["choices"] == "nadir,oblique"
    assert specs["bands"]["type"] == "list" and specs["crs"]["default"] == "auto"
    assert all(o["description"] for o in specs.values())
    assert re.search(r"^sentinel3: ", daemon.sipctl("preprocess", "list").stdout, re.M)
