"""Hyperspectral preprocessing through a real daemon (sipctl preprocess, gRPC Preprocess),
on the real ENVI cube of ../shared/fixtures (PlantCV's corn kernel cube, 43 x 31 x 580,
uint16 BIL, no byte order in the header).

Expected values are computed here with separate code: the header parsed with a regex,
the pixels read with numpy.fromfile (little-endian; BIL = [line][band][sample]), float64:
- reference calibration (Geladi, Burger & Lestander 2004, Chemometr. Intell. Lab. Syst.
  72:209-217): R = r_w * (raw - dark) / (white - dark), references averaged over lines;
- principal components (Jolliffe 2002): pc = (x - mean) @ basis.T with the recipe's
  mean and basis; the fitted basis spans the top right singular vectors of the centred
  spectra (np.linalg.svd), compared up to sign.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from sipapi.v1 import common_pb2, preprocess_pb2

from tests.support import Sipd, assert_cog, preprocess_attempt, shared_fixture, wait_job

pytestmark = pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")

CUBE = "hyperspectral_envi/corn-kernel-hyperspectral"
State = common_pb2.Job.State


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sipd]:
    root = tmp_path_factory.mktemp("hyper")
    d = Sipd(root / "state", roots=[root]).start()
    yield d
    if d.proc is not None and d.proc.poll() is None:
        d.stop()


def header_fields(path: Path) -> dict[str, str]:
    fields = {}
    for m in re.finditer(r"^\s*([^=;\n]+?)\s*=\s*(\{[^}]*\}|[^\n]*)", path.read_text(), re.M):
        fields[m.group(1).strip().lower()] = m.group(2).strip().strip("{}").strip()
    return fields


def write_envi(path: Path, cube: np.ndarray, wavelengths: np.ndarray) -> Path:
    """An ENVI BIL uint16 little-endian cube [bands, lines, samples]; returns the .hdr."""
    bands, lines, samples = cube.shape
    path.with_suffix(".raw").write_bytes(cube.transpose(1, 0, 2).astype("<u2").tobytes())
    path.with_suffix(".hdr").write_text(
        f"ENVI\nsamples = {samples}\nlines = {lines}\nbands = {bands}\ndata type = 12\n"
        "interleave = bil\nbyte order = 0\nwavelength units = nm\nwavelength = {"
        + ", ".join(f"{w:g}" for w in wavelengths)
        + "}\n"
    )
    return path.with_suffix(".hdr")


@pytest.fixture(scope="module")
def product(daemon: Sipd) -> dict[str, Any]:
    """The cube copied under the allowed root, with white and dark references there."""
    src = shared_fixture(CUBE + ".hdr")
    folder = Path(daemon.roots[0]) / "in"
    folder.mkdir()
    for suffix in (".hdr", ".raw"):
        shutil.copy(src.with_suffix(suffix), folder / ("kernel" + suffix))
    f = header_fields(folder / "kernel.hdr")
    samples, lines, bands = int(f["samples"]), int(f["lines"]), int(f["bands"])
    w = np.array([float(v) for v in f["wavelength"].split(",")])
    raw = np.fromfile(folder / "kernel.raw", "<u2").reshape(lines, bands, samples)
    raw = raw.transpose(1, 0, 2).astype(np.float64)
    rng = np.random.default_rng(11)
    white = rng.integers(3000, 4000, size=(bands, 4, samples))
    dark = rng.integers(0, 30, size=(bands, 2, samples))
    return {
        "hdr": folder / "kernel.hdr",
        "raw": raw,
        "w": w,
        "white": write_envi(folder / "white", white, w),
        "dark": write_envi(folder / "dark", dark, w),
        "white_mean": white.mean(axis=1, keepdims=True),
        "dark_mean": dark.mean(axis=1, keepdims=True),
        # A white of another camera setting: every centre 3 nm off.
        "shifted": write_envi(folder / "shifted", white, w + 3.0),
    }


def _preprocess(d: Sipd, **request: Any) -> common_pb2.Job:
    job = d.client.preprocess.Preprocess(preprocess_pb2.PreprocessRequest(**request))
    done = wait_job(d, job.name)
    assert done.state == State.SUCCEEDED, (done.error_code, done.error, d.log()[-3000:])
    return done


def test_reflectance_through_sipctl(daemon: Sipd, product: dict[str, Any]) -> None:
    """R = 0.98 * (raw - dark) / (white - dark), per band and sample, 600-660 nm."""
    out = Path(daemon.roots[0]) / "out" / "refl.tif"
    result = daemon.sipctl_json(
        "preprocess", str(product["hdr"]), "-o", str(out), "--sensor", "hyperspectral",
        "--option", f"white={product['white']}", "--option", f"dark={product['dark']}",
        "--option", "white_reflectance=0.98",
        "--option", "wavelength_min=600", "--option", "wavelength_max=660",
    )  # fmt: skip
    assert result["preprocessor"] == "hyperspectral"
    assert "hyperspectral cube (ENVI, 580 bands" in result["metadata"]["sensor"]
    assert_cog(out)
    w, raw = product["w"], product["raw"]
    keep = (w >= 600) & (w <= 660)
    wm, dm = product["white_mean"], product["dark_mean"]
    expected = (0.98 * (raw - dm) / (wm - dm))[keep]
    with rasterio.open(out) as ds:
        got = ds.read().astype(np.float64)
        tags = ds.tags()
        assert ds.descriptions == tuple(f"w{x:.1f}nm" for x in w[keep])
        assert [float(ds.tags(i)["wavelength"]) for i in range(1, ds.count + 1)] == (
            pytest.approx(w[keep])
        )
        assert ds.crs is None and np.isnan(ds.nodata)
    np.testing.assert_allclose(got, expected, rtol=2e-6, atol=1e-7)
    assert tags["HYPERSPECTRAL_WHITE"] == "white.hdr" and tags["HYPERSPECTRAL_DARK"] == "dark.hdr"
    assert "little-endian (assumed" in tags["HYPERSPECTRAL_BYTE_ORDER"]
    assert '"preprocessor": "hyperspectral"' in tags["SIPD_PREPROCESSING"]


def test_band_list_and_projection_over_grpc(daemon: Sipd, product: dict[str, Any]) -> None:
    """A recipe-like projection given as options: pc = (x - mean) @ basis.T."""
    w, raw = product["w"], product["raw"]
    targets = [480.0, 550.0, 620.0, 700.0, 800.0, 900.0]
    nearest = [int(np.argmin(np.abs(w - t))) for t in targets]
    x = raw[nearest].reshape(len(targets), -1).T  # pixels x bands (no references)
    mean = x.mean(axis=0)
    _, _, vt = np.linalg.svd(x - mean, full_matrices=False)
    basis = vt[:3]
    out = Path(daemon.roots[0]) / "out" / "pc.tif"
    options = {
        "bands": ",".join(f"{t:g}" for t in targets),
        "components": "3",
        "pca_mean": ",".join(repr(float(v)) for v in mean),
        "pca_basis": ";".join(",".join(repr(float(v)) for v in row) for row in basis),
    }
    job = _preprocess(daemon, input=str(product["hdr"]), output=str(out),
                      preprocessor="hyperspectral", options=options)  # fmt: skip
    assert job.preprocess.metadata["pca_components"] == "3"
    with rasterio.open(out) as ds:
        assert ds.descriptions == ("pc1", "pc2", "pc3")
        got = ds.read().astype(np.float64)
    expected = ((x - mean) @ basis.T).T.reshape(3, *raw.shape[1:])
    np.testing.assert_allclose(got, expected, atol=1e-4 * np.abs(expected).max())


def test_detected_from_the_header(daemon: Sipd, product: dict[str, Any]) -> None:
    out = Path(daemon.roots[0]) / "out" / "detected.tif"
    _preprocess(daemon, input=str(product["hdr"]), output=str(out),
                options={"bands": "550,650"})  # fmt: skip
    with rasterio.open(out) as ds:
        assert ds.descriptions == ("w550nm", "w650nm")


def test_bad_input_is_refused_and_the_daemon_stays_up(
    daemon: Sipd, product: dict[str, Any]
) -> None:
    outs = Path(daemon.roots[0]) / "bad"
    base = {"input": str(product["hdr"]), "preprocessor": "hyperspectral"}
    cases = [
        ({"white": str(product["shifted"])}, "wrong wavelengths: white reference"),
        ({"components": "3"}, "fit it first"),
        ({"bands": "550,1500"}, "wrong wavelengths: no band"),
    ]
    for i, (options, message) in enumerate(cases):
        out = outs / f"{i}.tif"
        code, error = preprocess_attempt(daemon, output=str(out), options=options, **base)
        assert code == "INVALID_ARGUMENT" and message in error, (code, error)
        assert not out.exists()
    # A white outside the allowed roots is refused before anything runs.
    code, error = preprocess_attempt(daemon, output=str(outs / "x.tif"),
                           options={"white": "/etc/hostname"}, **base)  # fmt: skip
    assert code in ("INVALID_ARGUMENT", "PERMISSION_DENIED"), (code, error)
    # A truncated data file: a clear error, not zeros.
    short = Path(daemon.roots[0]) / "short"
    short.mkdir()
    shutil.copy(product["hdr"], short / "kernel.hdr")
    (short / "kernel.raw").write_bytes(product["hdr"].with_suffix(".raw").read_bytes()[:100000])
    code, error = preprocess_attempt(
        daemon, input=str(short / "kernel.hdr"), output=str(outs / "s.tif"),
        preprocessor="hyperspectral",
    )  # fmt: skip
    assert code == "INVALID_ARGUMENT" and "is short" in error, (code, error)
    assert not outs.exists() or sorted(p.name for p in outs.iterdir()) == []
    assert daemon.proc is not None and daemon.proc.poll() is None


def test_recipe_fitted_on_a_training_cube(daemon: Sipd, product: dict[str, Any]) -> None:
    """sipctl recipe create --fit-on: the stored projection spans the top singular
    vectors of the calibrated training spectra; prediction-side runs apply it."""
    daemon.sipctl("recipe", "create", "kernels-pc", "--sensor", "hyperspectral",
                  "--option", f"white={product['white']}", "--option", f"dark={product['dark']}",
                  "--option", "wavelength_min=500", "--option", "wavelength_max=560",
                  "--option", "components=3", "--fit-on", str(product["hdr"]))  # fmt: skip
    out = Path(daemon.roots[0]) / "out" / "recipe-pc.tif"
    daemon.sipctl("preprocess", str(product["hdr"]), "-o", str(out), "--recipe", "kernels-pc")
    w, raw = product["w"], product["raw"]
    keep = (w >= 500) & (w <= 560)
    wm, dm = product["white_mean"], product["dark_mean"]
    x = ((raw - dm) / (wm - dm))[keep].reshape(keep.sum(), -1).T
    mean = x.mean(axis=0)
    _, _, vt = np.linalg.svd(x - mean, full_matrices=False)
    expected = ((x - mean) @ vt[:3].T).T.reshape(3, *raw.shape[1:])
    with rasterio.open(out) as ds:
        assert ds.descriptions == ("pc1", "pc2", "pc3")
        got = ds.read().astype(np.float64)
    for k in range(3):  # each component up to its sign
        sign = np.sign(np.sum(got[k] * expected[k]))
        np.testing.assert_allclose(got[k] * sign, expected[k],
                                   atol=1e-3 * np.abs(expected[k]).max())  # fmt: skip

    # The fit runs in the daemon, not the worker: a header inside the roots whose data
    # file links outside them is refused there too, and no recipe is stored.
    outside = Path(daemon.roots[0]).parent / "outside-hyper"
    outside.mkdir(exist_ok=True)
    shutil.copy(product["hdr"].with_suffix(".raw"), outside / "secret.raw")
    linked = Path(daemon.roots[0]) / "linked"
    linked.mkdir()
    shutil.copy(product["hdr"], linked / "kernel.hdr")
    (linked / "kernel.raw").symlink_to(outside / "secret.raw")
    bad = daemon.sipctl("recipe", "create", "leaky", "--sensor", "hyperspectral",
                        "--option", "components=2", "--fit-on", str(linked / "kernel.hdr"),
                        check=False)  # fmt: skip
    assert bad.returncode != 0 and "PERMISSION_DENIED" in bad.stderr, bad.stderr
    assert "leaky" not in daemon.sipctl("recipe", "list").stdout


def test_listed_with_its_options(daemon: Sipd) -> None:
    listed = daemon.sipctl_json("preprocess", "list")
    by_name = {p["name"]: p for p in listed["preprocessors"]}
    specs = {o["name"]: o for o in by_name["hyperspectral"]["option_specs"]}
    assert {"white", "dark", "wavelength_min", "wavelength_max", "bands", "components",
            "pca_mean", "pca_basis"} <= set(specs)  # fmt: skip
    assert specs["bands"]["type"] == "list" and specs["components"]["default"] == "0"
    assert specs["byte_order"]["choices"] == "auto,little,big"
    assert all(o["description"] for o in specs.values())
    assert re.search(r"^hyperspectral: ", daemon.sipctl("preprocess", "list").stdout, re.M)
