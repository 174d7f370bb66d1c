"""The multichannel preprocessor through a real daemon (sipctl preprocess, gRPC Preprocess).

Expected values are computed here with separate code from the published formulas, on the
real OME samples in ../shared/fixtures/biomedical: pixels read with tifffile, the OME-XML
parsed with ElementTree, float64:
- percentile normalisation v = clip((x - P_lo) / (P_hi - P_lo), 0, 1) (CSBDeep
  csbdeep.utils.normalize with clip=True, Weigert et al., Nature Methods 15, 2018), P the
  linear-interpolation percentile of Hyndman & Fan (1996) definition 7, written out here;
- maximum intensity projection over Z (Wallis et al., IEEE TMI 8(4), 1989).
"""

from __future__ import annotations

import math
import re
import shutil
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import rasterio
import tifffile
from sipapi.v1 import common_pb2, preprocess_pb2

from tests.support import Sipd, refusal_problems, shared_fixture, wait_job

pytestmark = pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")

BIO = "biomedical"
State = common_pb2.Job.State


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sipd]:
    root = tmp_path_factory.mktemp("multichannel")
    d = Sipd(root / "state", roots=[root]).start()
    yield d
    if d.proc is not None and d.proc.poll() is None:
        d.stop()


def root_of(d: Sipd) -> Path:
    return Path(d.roots[0])


def percentile_h7(values: np.ndarray, p: float) -> float:
    """Hyndman & Fan (1996) definition 7 (linear between order statistics)."""
    x = np.sort(values.astype(np.float64).ravel())
    h = (x.size - 1) * p / 100.0
    lo = math.floor(h)
    hi = min(lo + 1, x.size - 1)
    return float(x[lo] + (h - lo) * (x[hi] - x[lo]))


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_preprocess_list_shows_multichannel(daemon: Sipd) -> None:
    text = daemon.sipctl("preprocess", "list").stdout
    assert re.search(r"^multichannel: ", text, re.M), text
    listed = daemon.sipctl_json("preprocess", "list")
    by_name = {p["name"]: p for p in listed["preprocessors"]}
    specs = {o["name"]: o for o in by_name["multichannel"]["option_specs"]}
    assert set(specs) == {"channels", "z", "t", "series", "normalize", "percentiles"}
    assert specs["normalize"]["choices"] == "none,percentile"
    assert specs["normalize"]["default"] == "none"
    assert specs["percentiles"]["default"] == "1.0,99.0"
    assert specs["z"]["default"] == "0" and specs["channels"]["type"] == "list"
    assert all(o["description"] for o in specs.values())


def test_ome_percentile_normalisation_through_sipctl(daemon: Sipd) -> None:
    root = root_of(daemon)
    src = shutil.copy(shared_fixture(f"{BIO}/multi-channel.ome.tif"), root / "mc.ome.tif")
    stack = tifffile.imread(src).astype(np.float64)  # CYX int8
    out = root / "out" / "mc.tif"
    result = daemon.sipctl_json(
        "preprocess", str(src), "-o", str(out), "--sensor", "multichannel",
        "--option", "channels=2,0", "--option", "normalize=percentile",
        "--option", "percentiles=1,99",
    )  # fmt: skip
    assert result["metadata"]["sensor"] == "OME-TIFF (3 channels, int8)"
    assert result["metadata"]["dtype"] == "int8"
    with rasterio.open(out) as ds:
        assert ds.descriptions == ("ch2", "ch0") and ds.crs is None
        assert ds.dtypes == ("float32", "float32") and math.isnan(ds.nodata)
        assert ds.tags()["MULTICHANNEL_NORMALIZE"] == "percentile 1,99"
        assert '"preprocessor": "multichannel"' in ds.tags()["SIPD_PREPROCESSING"]
        values = ds.read().astype(np.float64)
    for i, c in enumerate((2, 0)):
        lo, hi = percentile_h7(stack[c], 1), percentile_h7(stack[c], 99)
        expected = np.clip((stack[c] - lo) / (hi - lo), 0.0, 1.0)
        np.testing.assert_allclose(values[i], expected, atol=1e-6)


def test_ome_multifile_max_projection_through_grpc(daemon: Sipd) -> None:
    root = root_of(daemon)
    folder = shutil.copytree(shared_fixture(f"{BIO}/ome_multifile"), root / "zstack")
    xml = tifffile.TiffFile(folder / "multifile-Z1.ome.tiff").ome_metadata
    files = [
        next(u for u in td if u.tag.endswith("UUID")).get("FileName")
        for td in sorted(
            (e for e in ET.fromstring(xml).iter() if e.tag.endswith("TiffData")),
            key=lambda e: int(e.get("FirstZ", "0")),
        )
    ]
    planes = []
    for name in files:
        with tifffile.TiffFile(folder / name) as t:
            planes.append(t.pages[0].asarray().astype(np.float64))
    out = root / "out" / "mip.tif"
    job = daemon.client.preprocess.Preprocess(
        preprocess_pb2.PreprocessRequest(
            preprocessor="multichannel",
            input=str(folder / "multifile-Z1.ome.tiff"),
            output=str(out),
            options={"z": "max"},
        )  # fmt: skip
    )
    done = wait_job(daemon, job.name)
    assert done.state == State.SUCCEEDED, (done.error_code, done.error, daemon.log()[-3000:])
    assert done.preprocess.metadata["z"] == "max of 5"
    with rasterio.open(out) as ds:
        np.testing.assert_array_equal(ds.read(1).astype(np.float64), np.max(planes, axis=0))
        assert ds.tags()["PHYSICAL_SIZE_UNIT"] == "µm"


def _write_png(path: Path, data: np.ndarray) -> None:
    with rasterio.open(path, "w", driver="PNG", width=data.shape[1], height=data.shape[0],
                       count=1, dtype=str(data.dtype)) as ds:  # fmt: skip
        ds.write(data[None])


def test_bad_inputs_fail_cleanly(daemon: Sipd, tmp_path_factory: pytest.TempPathFactory) -> None:
    root = root_of(daemon)
    ome = shutil.copy(shared_fixture(f"{BIO}/multi-channel.ome.tif"), root / "bad.ome.tif")
    cases: dict[str, tuple[Path, dict[str, str], tuple[str, ...], str]] = {}
    cases["channel"] = (ome, {"channels": "DAPI"}, ("INVALID_ARGUMENT",), "ch0, ch1, ch2")

    sizes = root / "sizes"
    sizes.mkdir()
    _write_png(sizes / "a.png", np.zeros((10, 12), np.uint8))
    _write_png(sizes / "b.png", np.zeros((11, 12), np.uint8))
    cases["sizes"] = (sizes, {}, ("INVALID_ARGUMENT",), "differ in size")

    empty = root / "empty"
    empty.mkdir()
    # The daemon asks accepts() first: an empty folder is no input this preprocessor reads.
    cases["empty"] = (empty, {}, ("INVALID_ARGUMENT",), "multichannel cannot read it")

    cut = root / "cut.ome.tif"
    cut.write_bytes(Path(ome).read_bytes()[:150_000])
    cases["truncated"] = (cut, {}, ("INVALID_ARGUMENT",), "truncated")

    cases["option"] = (ome, {"percentiles": "99,1"}, ("INVALID_ARGUMENT",), "percentiles")
    cases["outside"] = (shared_fixture(f"{BIO}/single-channel.ome.tif"), {},
                        ("PERMISSION_DENIED",), "")  # fmt: skip

    # An OME set inside the roots whose other files link outside them.
    linked = root / "linked"
    linked.mkdir()
    fixture = shared_fixture(f"{BIO}/ome_multifile")
    outside = tmp_path_factory.mktemp("outside-roots")
    shutil.copy(fixture / "multifile-Z1.ome.tiff", linked)
    for z in range(2, 6):
        target = shutil.copy(fixture / f"multifile-Z{z}.ome.tiff", outside)
        (linked / f"multifile-Z{z}.ome.tiff").symlink_to(target)
    cases["linked"] = (linked / "multifile-Z1.ome.tiff", {"z": "max"},
                       ("PERMISSION_DENIED", "INVALID_ARGUMENT"), "")  # fmt: skip

    problems = []
    for name, (src, options, codes, words) in cases.items():
        problems += refusal_problems(daemon, root / "bad-out" / name, words, codes,
                                     preprocessor="multichannel", input=str(src),
                                     options=options)  # fmt: skip
    assert not problems, "\n".join(problems)

    cli = daemon.sipctl("preprocess", str(ome), "-o", str(root / "cli" / "o.tif"),
                        "--sensor", "multichannel", "--option", "z=median",
                        check=False)  # fmt: skip
    assert cli.returncode != 0 and "INVALID_ARGUMENT" in cli.stderr and "median" in cli.stderr
    assert "Traceback" not in cli.stderr and leftovers(root / "cli") == []

    # Still up, still preprocessing.
    assert daemon.proc is not None and daemon.proc.poll() is None
    good = root / "good" / "ok.tif"
    daemon.sipctl("preprocess", str(ome), "-o", str(good), "--sensor", "multichannel")
    assert leftovers(good.parent) == ["ok.tif"]
