"""MODIS preprocessing through a real daemon (sipctl preprocess, gRPC Preprocess).

Expected values are computed here with separate code (pyhdf for the stored values,
regex on the StructMetadata, float64):
- HDF4 calibration (HDF4 User's Guide, SDsetcal "Calibration attributes"): value =
  scale_factor * (stored - add_offset) (a scale_factor above 1 divides instead, as
  in the HDF4 handler's MODIS_DIV_SCALE; the unit tests cover it); _FillValue and
  outside valid_range nodata;
  categorical datasets (no scale_factor) keep their codes;
- the MODIS sinusoidal grid (Wolfe, Roy & Vermote 1998; HDF-EOS GDcreate): sphere
  R = 6371007.181 m; the transform from UpperLeftPointMtrs / LowerRightMtrs / XDim / YDim.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import rasterio
from sipapi.v1 import common_pb2, preprocess_pb2

from tests.support import (
    Sipd,
    assert_cog,
    refusal_problems,
    shared_fixture,
    wait_job,
)

TILE = "modis/MOD10A2.A2022033.h09v05.061.2022042050729.hdf"
State = common_pb2.Job.State


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sipd]:
    root = tmp_path_factory.mktemp("modis")
    d = Sipd(root / "state", roots=[root]).start()
    yield d
    if d.proc is not None and d.proc.poll() is None:
        d.stop()


@pytest.fixture(scope="module")
def tile(daemon: Sipd) -> Path:
    src = shared_fixture(TILE)
    dest = Path(daemon.roots[0]) / "in" / src.name
    dest.parent.mkdir()
    shutil.copy(src, dest)
    return dest


def _raw(path: Path, name: str) -> tuple[np.ndarray, dict]:
    from pyhdf.SD import SD, SDC

    f = SD(str(path), SDC.READ)
    try:
        sds = f.select(name)
        return np.asarray(sds.get()), sds.attributes()
    finally:
        f.end()


@pytest.mark.slow  # a whole 2400 x 2400 tile through sipctl: ~5 s
def test_tile_through_sipctl_matches_pyhdf_and_struct_metadata(daemon: Sipd, tile: Path) -> None:
    out = Path(daemon.roots[0]) / "out" / "snow.tif"
    result = daemon.sipctl_json(
        "preprocess", str(tile), "-o", str(out), "--sensor", "modis",
        "--option", "sds=Maximum_Snow_Extent,Eight_Day_Snow_Cover",
    )  # fmt: skip
    assert result["preprocessor"] == "modis"
    assert result["metadata"]["MODIS_SHORT_NAME"] == "MOD10A2"
    assert_cog(out)
    from pyhdf.SD import SD, SDC

    f = SD(str(tile), SDC.READ)
    struct = str(f.attributes()["StructMetadata.0"])
    f.end()
    ul = [float(v) for v in re.search(r"UpperLeftPointMtrs=\(([^,]+),([^)]+)\)", struct).groups()]
    lr = [float(v) for v in re.search(r"LowerRightMtrs=\(([^,]+),([^)]+)\)", struct).groups()]
    nx, ny = (int(re.search(rf"{k}=(\d+)", struct).group(1)) for k in ("XDim", "YDim"))
    with rasterio.open(out) as ds:
        t = ds.transform
        assert (t.c, t.f) == pytest.approx((ul[0], ul[1]), abs=1e-6)
        assert (t.a, t.e) == pytest.approx(((lr[0] - ul[0]) / nx, (lr[1] - ul[1]) / ny))
        assert "6371007.181" in ds.crs.to_wkt() and "Sinusoidal" in ds.crs.to_wkt()
        assert ds.descriptions == ("Maximum_Snow_Extent", "Eight_Day_Snow_Cover")
        got = ds.read().astype(np.float64)
        tags = ds.tags()
    assert (tags["MODIS_TILE_H"], tags["MODIS_TILE_V"]) == ("9", "5")
    assert "SIPD_PREPROCESSING" in tags
    for i, name in enumerate(("Maximum_Snow_Extent", "Eight_Day_Snow_Cover")):
        raw, attrs = _raw(tile, name)
        lo, hi = attrs["valid_range"]
        expected = raw.astype(np.float64)
        expected[(raw == attrs["_FillValue"]) | (raw < lo) | (raw > hi)] = np.nan
        np.testing.assert_array_equal(got[i], expected)  # NaNs compare equal here


def test_detected_without_sensor_and_listed(daemon: Sipd, tile: Path) -> None:
    out = Path(daemon.roots[0]) / "out" / "detected.tif"
    job = daemon.client.preprocess.Preprocess(
        preprocess_pb2.PreprocessRequest(input=str(tile), output=str(out))
    )
    done = wait_job(daemon, job.name)
    assert done.state == State.SUCCEEDED, (done.error, daemon.log()[-2000:])
    with rasterio.open(out) as ds:
        assert ds.count == 2
    listed = daemon.sipctl_json("preprocess", "list")
    by_name = {p["name"]: p for p in listed["preprocessors"]}
    specs = {o["name"]: o for o in by_name["modis"]["option_specs"]}
    assert specs["sds"]["type"] == "list" and specs["calibrate"]["default"] == "true"
    assert all(o["description"] for o in specs.values())
    assert re.search(r"^modis: ", daemon.sipctl("preprocess", "list").stdout, re.M)


def test_bad_input_is_refused_cleanly(daemon: Sipd, tile: Path) -> None:
    root = Path(daemon.roots[0])
    truncated = root / "in" / "truncated.hdf"
    truncated.write_bytes(tile.read_bytes()[:4000])
    cases = {
        "truncated": (truncated, {}, "corrupt or truncated"),
        "unknown-sds": (tile, {"sds": "NDVI"}, "no dataset NDVI"),
        "bad-option": (tile, {"sds": "a;b"}, "sds"),
    }
    problems = []
    for name, (product, options, words) in cases.items():
        problems += refusal_problems(daemon, root / "bad" / name, words, preprocessor="modis",
                                     input=str(product), options=options)  # fmt: skip
    assert not problems, "\n".join(problems)
    assert daemon.proc is not None and daemon.proc.poll() is None
