"""The micasense preprocessor through a real daemon (gRPC Preprocess, sipctl preprocess) on
real MicaSense RedEdge frames (../shared/fixtures/drone_micasense, copied into the
daemon's allowed root at test time: IMG_0000_* a calibration panel, IMG_0001_* a field).

Expected values are computed here with separate code (regular-expression XMP parsing,
tifffile's EXIF tags, float64), from the published model:
- MicaSense, "RedEdge Camera Radiometric Calibration Model" (knowledge base,
  support.micasense.com/hc/en-us/articles/115000351194) and the "MicaSense RedEdge and
  Altum Image Processing Tutorials": L = V * a1 / g * (p - pBL) / (te + a2 y - a3 te y),
  p and pBL normalised by 2^bits, V = 1 / (1 + sum_i k_i r^(i+1)), g = ISO / 100;
- reflectance (tutorial 1): panel rho = albedo * L / mean(L_panel); DLS rho = pi L / E.
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
import tifffile
from sipapi.v1 import common_pb2, preprocess_pb2

from tests.support import Sipd, assert_cog, preprocess_attempt, shared_fixture, wait_job

pytestmark = pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")

State = common_pb2.Job.State
REGION = "610,490,780,660"  # x0,y0,x1,y1 inside the panel of IMG_0000_3 (looked at)
ALBEDO = (0.52, 0.48)  # red, nir: given by the user, not in the files


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sipd]:
    root = tmp_path_factory.mktemp("micasense")
    d = Sipd(root / "state", roots=[root]).start()
    yield d
    if d.proc is not None and d.proc.poll() is None:
        d.stop()


@pytest.fixture(scope="module")
def flight(daemon: Sipd) -> Path:
    """The fixtures as an SD card folder holds them: the panel and the field capture."""
    source = shared_fixture("drone_micasense/IMG_0001_3.tif").parent
    folder = Path(daemon.roots[0]) / "0000SET" / "000"
    folder.mkdir(parents=True)
    for name in ("IMG_0000_3", "IMG_0000_4", "IMG_0001_3", "IMG_0001_4"):
        shutil.copy(source / f"{name}.tif", folder / f"{name}.tif")
    return folder


# ---------------------------------------------------------------- helpers


def attempt(d: Sipd, source: Path, output: Path, **options: str) -> tuple[str, str]:
    return preprocess_attempt(
        d, preprocessor="micasense", input=str(source), output=str(output), options=options
    )


def xmp(path: Path) -> str:
    m = re.search(rb"<x:xmpmeta.*?</x:xmpmeta>", path.read_bytes(), re.S)
    assert m
    return m.group(0).decode()


def seq(text: str, name: str) -> list[float]:
    m = re.search(rf"<\w+:{name}>\s*<rdf:Seq>(.*?)</rdf:Seq>", text, re.S)
    assert m, name
    return [float(v) for v in re.findall(r"<rdf:li>\s*([^<\s]+)\s*</rdf:li>", m.group(1))]


def radiance(path: Path) -> np.ndarray:
    """MicaSense's radiance model over the whole frame, float64. Exposure and ISO come
    from GDAL's EXIF domain here (the reader uses tifffile), the black level (a DNG tag
    GDAL does not show) from tifffile, the rest from the XMP by regular expressions."""
    text = xmp(path)
    a1, a2, a3 = seq(text, "RadiometricCalibration")
    cx, cy = seq(text, "VignettingCenter")
    k = seq(text, "VignettingPolynomial")
    with rasterio.open(path) as ds:
        exif = ds.tags(ns="EXIF")
        te = float(exif["EXIF_ExposureTime"].strip("()"))
        g = float(exif["EXIF_ISOSpeed"]) / 100.0
        bits = 2 ** int(ds.tags(1, ns="IMAGE_STRUCTURE").get("NBITS", 16))
        p = ds.read(1).astype(np.float64) / bits
    with tifffile.TiffFile(path) as tif:
        p_bl = float(np.mean(tif.pages[0].tags[50714].value)) / bits
    y, x = np.mgrid[0 : p.shape[0], 0 : p.shape[1]].astype(np.float64)
    r = np.hypot(x - cx, y - cy)
    v = 1.0 / (1.0 + sum(ki * r ** (i + 1) for i, ki in enumerate(k)))
    return v * a1 / g * np.maximum(p - p_bl, 0.0) / (te + a2 * y - a3 * te * y)


def at(image: np.ndarray, coefficients: str, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Bilinear value of `image` where the band tag's affine map sends (rows, cols)."""
    a0, a1, a2, b0, b1, b2 = (float(v) for v in coefficients.split(","))
    y, x = a0 + a1 * rows + a2 * cols, b0 + b1 * rows + b2 * cols
    y0, x0 = np.floor(y).astype(int), np.floor(x).astype(int)
    fy, fx = y - y0, x - x0
    return (
        image[y0, x0] * (1 - fy) * (1 - fx)
        + image[y0 + 1, x0] * fy * (1 - fx)
        + image[y0, x0 + 1] * (1 - fy) * fx
        + image[y0 + 1, x0 + 1] * fy * fx
    )


def pixels() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(11)
    return rng.integers(40, 920, 300), rng.integers(40, 1240, 300)


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def read(path: Path) -> tuple[np.ndarray, dict[str, str], list[dict[str, str]], Any]:
    """Pixels, dataset tags, band tags, and (crs, band descriptions)."""
    with rasterio.open(path) as ds:
        tags = [ds.tags(b) for b in range(1, ds.count + 1)]
        return ds.read().astype(np.float64), ds.tags(), tags, (ds.crs, ds.descriptions)


# ---------------------------------------------------------------- values


@pytest.mark.slow
def test_panel_reflectance_through_sipctl(daemon: Sipd, flight: Path) -> None:
    """One frame named; its capture found beside it; reflectance from the panel capture."""
    out = Path(daemon.roots[0]) / "out-panel" / "field.tif"
    cli = daemon.sipctl(
        "preprocess", str(flight / "IMG_0001_3.tif"), "-o", str(out), "--sensor", "micasense",
        "--option", f"panel={flight / 'IMG_0000_3.tif'}",
        "--option", f"panel_albedo={ALBEDO[0]},{ALBEDO[1]}",
        "--option", f"panel_region={REGION}",
    )  # fmt: skip
    assert "red_668nm, nir_840nm" in cli.stdout, cli.stdout
    assert_cog(out)
    assert leftovers(out.parent) == ["field.tif"]
    data, tags, band_tags, (crs, names) = read(out)
    assert crs is None and names == ("red_668nm", "nir_840nm")
    assert tags["MICASENSE_CAMERA"] == "MicaSense RedEdge"
    assert tags["MICASENSE_CAPTURE_ID"] == re.search(
        r"<MicaSense:CaptureId>([^<]+)<", xmp(flight / "IMG_0001_3.tif")
    ).group(1)  # type: ignore[union-attr]
    assert tags["MICASENSE_REFLECTANCE"] == "panel" and tags["SIPD_MASK"] == "saturated"
    assert tags["MICASENSE_EXPOSURE"] == "red_668nm:0.0011475,nir_840nm:0.0018"
    assert '"preprocessor": "micasense"' in tags["SIPD_PREPROCESSING"]

    x0, y0, x1, y1 = (int(v) for v in REGION.split(","))
    panel_red = radiance(flight / "IMG_0000_3.tif")[y0:y1, x0:x1].mean()
    assert float(band_tags[0]["panel_radiance"]) == pytest.approx(panel_red, rel=1e-6)
    rows, cols = pixels()
    red = data[0, rows, cols]
    ok = np.isfinite(red)
    assert ok.mean() > 0.95
    expected_red = ALBEDO[0] * radiance(flight / "IMG_0001_3.tif")[rows, cols] / panel_red
    np.testing.assert_allclose(red[ok], expected_red[ok], rtol=1e-5)
    nir_l = at(radiance(flight / "IMG_0001_4.tif"), band_tags[1]["alignment_coefficients"],
               rows, cols)  # fmt: skip
    expected_nir = ALBEDO[1] * nir_l / float(band_tags[1]["panel_radiance"])
    np.testing.assert_allclose(data[1, rows, cols][ok], expected_nir[ok], rtol=1e-4, atol=1e-6)


@pytest.mark.slow
def test_dls_reflectance_of_a_folder_through_grpc(daemon: Sipd, flight: Path) -> None:
    """A folder of one capture, preprocessor detected from its content; rho = pi L / E."""
    folder = Path(daemon.roots[0]) / "field-capture"
    folder.mkdir()
    for band in (3, 4):
        shutil.copy(flight / f"IMG_0001_{band}.tif", folder / f"IMG_0001_{band}.tif")
    out = Path(daemon.roots[0]) / "out-dls" / "field.tif"
    job = daemon.client.preprocess.Preprocess(
        preprocess_pb2.PreprocessRequest(
            input=str(folder), output=str(out), options={"reflectance": "dls", "bands": "nir,red"}
        )
    )
    done = wait_job(daemon, job.name)
    assert done.state == State.SUCCEEDED, (done.error_code, done.error, daemon.log()[-3000:])
    assert done.preprocess.preprocessor == "micasense"
    assert done.preprocess.metadata["reflectance"] == "dls"
    data, tags, band_tags, (_, names) = read(out)
    assert names == ("nir_840nm", "red_668nm")  # the order `bands` gave
    rows, cols = pixels()
    for i, band in enumerate((4, 3)):
        path = folder / f"IMG_0001_{band}.tif"
        e = float(re.search(r"<Camera:Irradiance>([^<]+)<", xmp(path)).group(1))  # type: ignore[union-attr]
        expected = (
            np.pi * at(radiance(path), band_tags[i]["alignment_coefficients"], rows, cols) / e
        )
        got = data[i, rows, cols]
        ok = np.isfinite(got)
        assert ok.mean() > 0.95
        np.testing.assert_allclose(got[ok], expected[ok], rtol=1e-4, atol=1e-6)
    assert band_tags[0]["alignment"] == "reference"


# ---------------------------------------------------------------- bad input


def test_bad_inputs_fail_clearly(daemon: Sipd, flight: Path) -> None:
    root = Path(daemon.roots[0])
    out_dir = root / "out-bad"
    out = out_dir / "x.tif"
    # Mismatched frame set: frames of two captures under one prefix.
    mixed = root / "mixed"
    mixed.mkdir()
    shutil.copy(flight / "IMG_0001_3.tif", mixed / "IMG_0005_1.tif")
    shutil.copy(flight / "IMG_0000_4.tif", mixed / "IMG_0005_2.tif")
    code, message = attempt(daemon, mixed / "IMG_0005_1.tif", out)
    assert code == "INVALID_ARGUMENT" and "different captures" in message, message
    # A panel frame without a panel: the region on the ground beside it.
    code, message = attempt(daemon, flight / "IMG_0001_3.tif", out,
                            panel=str(flight / "IMG_0000_3.tif"), panel_albedo="0.5",
                            panel_region="100,100,270,270")  # fmt: skip
    assert code == "INVALID_ARGUMENT" and "a panel frame without a panel" in message, message
    # Wrong wavelengths: the panel capture lacks the scene's red band.
    nir_panel = root / "nir-panel"
    nir_panel.mkdir()
    shutil.copy(flight / "IMG_0000_4.tif", nir_panel / "IMG_0000_4.tif")
    code, message = attempt(daemon, flight / "IMG_0001_3.tif", out, panel=str(nir_panel),
                            panel_albedo="0.5", panel_region=REGION)  # fmt: skip
    assert code == "INVALID_ARGUMENT" and "no panel frame for red_668nm" in message, message
    # An option value refused before any work.
    code, message = attempt(daemon, flight / "IMG_0001_3.tif", out, panel_region="1,2,3")
    assert code == "INVALID_ARGUMENT" and "panel_region" in message, message
    # A panel outside the allowed roots is refused before the job runs.
    code, message = attempt(daemon, flight / "IMG_0001_3.tif", out,
                            panel="/etc/IMG_0000_3.tif", panel_albedo="0.5",
                            panel_region=REGION)  # fmt: skip
    assert code in ("PERMISSION_DENIED", "INVALID_ARGUMENT"), (code, message)
    assert leftovers(out_dir) == []
    assert daemon.proc is not None and daemon.proc.poll() is None


def test_preprocess_list_shows_micasense(daemon: Sipd) -> None:
    text = daemon.sipctl("preprocess", "list").stdout
    assert re.search(r"^micasense: ", text, re.M), text
    listed = daemon.sipctl_json("preprocess", "list")
    entry = next(p for p in listed["preprocessors"] if p["name"] == "micasense")
    specs = {o["name"]: o for o in entry["option_specs"]}
    assert {"reflectance", "panel", "panel_albedo", "panel_region", "bands", "align",
            "mask", "black_level"} <= set(specs)  # fmt: skip
    assert specs["reflectance"]["choices"] == "auto,panel,dls,radiance"
    assert specs["align"]["default"] == "affine"
    assert all(o["description"] for o in specs.values())
