"""Landsat Collection 2 preprocessing through a real daemon (sipctl preprocess, gRPC).

Expected values are computed here with separate code (the MTL read by regex one group
at a time, pixels with rasterio, float64) from the published formulas:
USGS LSDS-1619 (Landsat 8-9 Collection 2 Level-2 Science Product Guide), "Scale
factors": SR = DN * REFLECTANCE_MULT_BAND_n + REFLECTANCE_ADD_BAND_n of
LEVEL2_SURFACE_REFLECTANCE_PARAMETERS (not the Level-1 rescaling of the same name),
ST = DN * TEMPERATURE_MULT_BAND_ST_B10 + TEMPERATURE_ADD_BAND_ST_B10 (K), DN 0 fill;
QA_PIXEL bits of the same guide (0 fill, 1 dilated cloud, 3 cloud, 4 cloud shadow).
"""

from __future__ import annotations

import re
import shutil
import tarfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import rasterio
from sipapi.v1 import common_pb2, preprocess_pb2

from tests.support import Sipd, assert_cog, preprocess_attempt, shared_fixture, wait_job

PID = "LC08_L2SP_008059_20191201_20200825_02_T1"
State = common_pb2.Job.State


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sipd]:
    root = tmp_path_factory.mktemp("landsat")
    d = Sipd(root / "state", roots=[root]).start()
    yield d
    if d.proc is not None and d.proc.poll() is None:
        d.stop()


@pytest.fixture(scope="module")
def product(daemon: Sipd) -> Path:
    """The real L2SP fixture, copied inside the daemon's allowed root."""
    return Path(shutil.copytree(shared_fixture(f"landsat/{PID}"), root_of(daemon) / "in" / PID))


def root_of(d: Sipd) -> Path:
    return Path(d.roots[0])


def group_values(mtl_text: str, group: str) -> dict[str, float]:
    m = re.search(rf"GROUP = {group}\n(.*?)END_GROUP = {group}", mtl_text, re.S)
    assert m, group
    return {k: float(v) for k, v in re.findall(r"^\s*(\w+) = ([-+.\dEe]+)\s*$", m.group(1), re.M)}


def dn(path: Path) -> np.ndarray:
    with rasterio.open(path) as ds:
        return ds.read(1).astype(np.float64)


def expected_l2(product: Path, bands: list[str], masked_bits: tuple[int, ...]) -> np.ndarray:
    """SR/ST of the named files (SR_B4, ST_B10, ...) by the LSDS-1619 scale factors."""
    text = (product / f"{PID}_MTL.txt").read_text()
    sr = group_values(text, "LEVEL2_SURFACE_REFLECTANCE_PARAMETERS")
    st = group_values(text, "LEVEL2_SURFACE_TEMPERATURE_PARAMETERS")
    qa = dn(product / f"{PID}_QA_PIXEL.TIF").astype(np.int64)
    masked = np.zeros(qa.shape, bool)
    for bit in masked_bits:
        masked |= ((qa >> bit) & 1) == 1
    out = []
    for name in bands:
        raw = dn(product / f"{PID}_{name}.TIF")
        if name.startswith("ST_"):
            v = raw * st[f"TEMPERATURE_MULT_BAND_{name}"] + st[f"TEMPERATURE_ADD_BAND_{name}"]
        else:
            b = name.removeprefix("SR_B")
            v = raw * sr[f"REFLECTANCE_MULT_BAND_{b}"] + sr[f"REFLECTANCE_ADD_BAND_{b}"]
        v[(raw == 0) | masked] = np.nan
        out.append(v)
    return np.stack(out)


def read_out(path: Path) -> np.ndarray:
    with rasterio.open(path) as ds:
        return ds.read().astype(np.float64)


def test_sipctl_level2_folder_values_and_tags(daemon: Sipd, product: Path) -> None:
    out = root_of(daemon) / "out" / "l2.tif"
    cli = daemon.sipctl(
        "preprocess", str(product), "-o", str(out), "--sensor", "landsat",
        "--option", "bands=blue,red,nir,lwir11",
        "--option", "mask=fill,dilated_cloud,cloud,shadow",
    )  # fmt: skip
    assert "blue, red, nir08, lwir11" in cli.stdout, cli.stdout
    want = expected_l2(product, ["SR_B2", "SR_B4", "SR_B5", "ST_B10"], (0, 1, 3, 4))
    np.testing.assert_allclose(read_out(out), want, rtol=1e-6, atol=1e-7, equal_nan=True)
    assert_cog(out)
    with rasterio.open(out) as ds:
        assert ds.descriptions == ("blue", "red", "nir08", "lwir11")
        tags = ds.tags()
        assert tags["SIPD_MASK"] == "fill,dilated_cloud,cloud,shadow"
        assert tags["LANDSAT_SPACECRAFT_ID"] == "LANDSAT_8"
        assert tags["LANDSAT_DATE_ACQUIRED"] == "2019-12-01"
        assert '"preprocessor": "landsat"' in tags["SIPD_PREPROCESSING"]
        assert ds.tags(2)["wavelength"] == "655" and ds.tags(4)["units"] == "K"


def test_grpc_tar_is_detected_and_read_in_place(daemon: Sipd, product: Path) -> None:
    tar = root_of(daemon) / "tar" / f"{PID}.tar"
    tar.parent.mkdir()
    with tarfile.open(tar, "w") as tf:
        for f in sorted(product.iterdir()):
            tf.add(f, arcname=f.name)
    out = root_of(daemon) / "out" / "tar.tif"
    job = daemon.client.preprocess.Preprocess(
        preprocess_pb2.PreprocessRequest(
            input=str(tar), output=str(out), options={"bands": "green,nir08", "mask": ""}
        )
    )
    done = wait_job(daemon, job.name)
    assert done.state == State.SUCCEEDED, (done.error, daemon.log()[-3000:])
    assert done.preprocess.preprocessor == "landsat"
    assert done.preprocess.metadata["spacecraft_id"] == "LANDSAT_8"
    want = expected_l2(product, ["SR_B3", "SR_B5"], ())
    np.testing.assert_allclose(read_out(out), want, rtol=1e-6, atol=1e-7, equal_nan=True)
    assert sorted(p.name for p in tar.parent.iterdir()) == [tar.name]  # nothing unpacked


def test_bad_products_fail_cleanly(daemon: Sipd, product: Path) -> None:
    root = root_of(daemon)
    outs = root / "bad-out"
    # Default bands need SR_B1 (coastal), which the fixture lacks: named in the error.
    code, message = preprocess_attempt(
        daemon, input=str(product), output=str(outs / "a.tif"), preprocessor="landsat"
    )
    assert code == "INVALID_ARGUMENT" and f"{PID}_SR_B1.TIF is missing" in message, message
    # A truncated tar.
    tar = root / "cut" / f"{PID}.tar"
    tar.parent.mkdir()
    with tarfile.open(tar, "w") as tf:
        for f in sorted(product.iterdir()):
            tf.add(f, arcname=f.name)
    tar.write_bytes(tar.read_bytes()[: tar.stat().st_size // 3])
    code, message = preprocess_attempt(
        daemon,
        input=str(tar),
        output=str(outs / "b.tif"),
        preprocessor="landsat",
        options={"bands": "red"},
    )
    assert code == "INVALID_ARGUMENT" and "truncated" in message, message
    # A bad option through sipctl: named, no traceback.
    cli = daemon.sipctl(
        "preprocess", str(product), "-o", str(outs / "c.tif"), "--sensor", "landsat",
        "--option", "bands=red,ultraviolet", check=False,
    )  # fmt: skip
    assert cli.returncode != 0 and "INVALID_ARGUMENT" in cli.stderr, cli.stderr
    assert "ultraviolet" in cli.stderr and "Traceback" not in cli.stderr
    assert not outs.exists() or list(outs.iterdir()) == []
    assert daemon.proc is not None and daemon.proc.poll() is None


def test_preprocess_list_shows_landsat(daemon: Sipd) -> None:
    text = daemon.sipctl("preprocess", "list").stdout
    assert re.search(r"^landsat: ", text, re.M), text
    listed = daemon.sipctl_json("preprocess", "list")
    landsat = next(p for p in listed["preprocessors"] if p["name"] == "landsat")
    specs = {o["name"]: o for o in landsat["option_specs"]}
    assert specs["bands"]["type"] == "list" and specs["bands"]["default"] == ""
    assert specs["mask"]["default"] == "fill" and "cloud_conf_high" in specs["mask"]["description"]
