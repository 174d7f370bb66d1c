"""The micasense preprocessor on real MicaSense RedEdge frames (../shared/fixtures/
drone_micasense: IMG_0000_* show a calibration panel, IMG_0001_* a field; bands 3 = Red
668 nm, 4 = NIR 840 nm).

Expected values are computed here with separate code: the XMP is parsed with regular
expressions, EXIF with tifffile's tag reader, pixels in float64, from the published model:

- MicaSense, "RedEdge Camera Radiometric Calibration Model" (knowledge base,
  support.micasense.com/hc/en-us/articles/115000351194) and the
  "MicaSense RedEdge and Altum Image Processing Tutorials" (micasense/imageprocessing,
  image.py radiance/vignette): L = V * a1 / g * (p - pBL) / (te + a2 y - a3 te y), p and
  pBL normalised by 2^bits, V = 1 / (1 + sum_i k_i r^(i+1)), g = ISO / 100.
- Reflectance (tutorial 1): panel rho = albedo * L / mean(L_panel); DLS rho = pi L / E.
"""

from __future__ import annotations

import dataclasses
import os
import re
import threading
from pathlib import Path

import numpy as np
import pytest
import rasterio
import tifffile
from scipy import ndimage

from sipd.contracts.options.micasense import MicasenseOptions
from sipd.contracts.preprocessing import PreprocessStep
from sipd.errors import InvalidArgument
from sipd.preprocess import micasense
from sipd.preprocess.micasense_align import Warp, estimate_warp, gradient_magnitude
from sipd.preprocess.micasense_meta import read_frame
from sipd.preprocess.streaming import DatasetsPerThread
from sipd.progress import JobCancelled, JobContext
from tests.support import shared_fixture

pytestmark = pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")

REGION = (610, 490, 780, 660)  # x0, y0, x1, y1: inside the panel in IMG_0000_3 (looked at)
ALBEDO = (0.52, 0.48)  # red, nir: any plausible values; not in the files


@pytest.fixture(scope="module")
def fixtures() -> Path:
    return shared_fixture("drone_micasense/IMG_0001_3.tif").parent


# ---------------------------------------------------------------- independent model


def xmp_text(path: Path) -> str:
    data = path.read_bytes()
    m = re.search(rb"<x:xmpmeta.*?</x:xmpmeta>", data, re.S)
    assert m, f"no XMP packet in {path}"
    return m.group(0).decode()


def xmp_seq(text: str, name: str) -> list[float]:
    m = re.search(rf"<\w+:{name}>\s*<rdf:Seq>(.*?)</rdf:Seq>", text, re.S)
    assert m, name
    return [float(v) for v in re.findall(r"<rdf:li>\s*([^<\s]+)\s*</rdf:li>", m.group(1))]


def xmp_scalar(text: str, prefix: str, name: str) -> str:
    m = re.search(rf"<{prefix}:{name}>([^<]+)</{prefix}:{name}>", text)
    assert m, name
    return m.group(1).strip()


def expected_radiance(path: Path) -> np.ndarray:
    """The whole frame's radiance in float64, from the published model."""
    text = xmp_text(path)
    a1, a2, a3 = xmp_seq(text, "RadiometricCalibration")
    cx, cy = xmp_seq(text, "VignettingCenter")
    k = xmp_seq(text, "VignettingPolynomial")
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        exif = page.tags["ExifTag"].value
        num, den = exif["ExposureTime"]
        te = num / den
        g = exif["ISOSpeed"] / 100.0
        black = float(np.mean(page.tags[50714].value))
        bits = page.tags["BitsPerSample"].value
        raw = page.asarray().astype(np.float64)
    rows, cols = np.mgrid[0 : raw.shape[0], 0 : raw.shape[1]].astype(np.float64)
    r = np.sqrt((cols - cx) ** 2 + (rows - cy) ** 2)
    v = 1.0 / (1.0 + sum(ki * r ** (i + 1) for i, ki in enumerate(k)))
    p = raw / 2**bits
    p_bl = black / 2**bits
    return v * a1 / g * np.maximum(p - p_bl, 0.0) / (te + a2 * rows - a3 * te * rows)


def bilinear(image: np.ndarray, y: np.ndarray, x: np.ndarray) -> np.ndarray:
    y0, x0 = np.floor(y).astype(int), np.floor(x).astype(int)
    fy, fx = y - y0, x - x0
    return (
        image[y0, x0] * (1 - fy) * (1 - fx)
        + image[y0 + 1, x0] * fy * (1 - fx)
        + image[y0, x0 + 1] * (1 - fy) * fx
        + image[y0 + 1, x0 + 1] * fy * fx
    )


def coefficients(tags: dict[str, str], key: str = "alignment_coefficients") -> list[float]:
    return [float(v) for v in tags[key].split(",")]


def sample_pixels(shape: tuple[int, int], n: int = 400, margin: int = 40) -> tuple:
    rng = np.random.default_rng(7)
    rows = rng.integers(margin, shape[0] - margin, n)
    cols = rng.integers(margin, shape[1] - margin, n)
    return rows, cols


def run(source: Path, out: Path, **options: str) -> micasense.RunResult:
    step = PreprocessStep(preprocessor="micasense", options=MicasenseOptions(**options))
    return micasense.run(source, step, out, JobContext(), {"SIPD_TEST": "1"}, threads=2)


def read(out: Path) -> tuple[np.ndarray, dict[str, str], list[dict[str, str]], tuple]:
    with rasterio.open(out) as ds:
        return (
            ds.read().astype(np.float64),
            ds.tags(),
            [ds.tags(b) for b in (1, 2)],
            ds.descriptions,
        )


# ---------------------------------------------------------------- radiometry


def test_radiance_model_on_real_frames(fixtures: Path) -> None:
    """Frame.radiance equals MicaSense's published model, recomputed here (all 4 frames)."""
    for name in ("IMG_0000_3", "IMG_0000_4", "IMG_0001_3", "IMG_0001_4"):
        path = fixtures / f"{name}.tif"
        frame = read_frame(path)
        raw = tifffile.imread(path)
        got = frame.radiance(raw, 0, frame.black_level("exif")).astype(np.float64)
        np.testing.assert_allclose(got, expected_radiance(path), rtol=2e-6, atol=1e-9)
        # A window of rows computes the same rows (the row gradient uses the frame's row).
        part = frame.radiance(raw[300:420], 300, frame.black_level("exif"))
        np.testing.assert_array_equal(part, got[300:420].astype(np.float32))


def test_metadata_read_from_the_frames(fixtures: Path) -> None:
    frame = read_frame(fixtures / "IMG_0001_4.tif")
    text = xmp_text(fixtures / "IMG_0001_4.tif")
    assert frame.output_name == "nir_840nm" and frame.band_number == 4
    assert frame.capture_id == xmp_scalar(text, "MicaSense", "CaptureId")
    assert frame.irradiance == float(xmp_scalar(text, "Camera", "Irradiance"))
    assert frame.dark_pixels == pytest.approx(np.mean(xmp_seq(text, "DarkRowValue")))
    assert (frame.width, frame.height, frame.bits) == (1280, 960, 16)
    assert (frame.make, frame.model) == ("MicaSense", "RedEdge")
    assert read_frame(fixtures / "IMG_0001_3.tif").gain == 2.0  # ISO 200 in that frame
    assert frame.black_level("exif") == 4800.0  # EXIF BlackLevel (4800, 4800, 4800, 4800)
    assert frame.black_level("dark_pixels") == pytest.approx(5028.75)  # XMP DarkRowValue mean


def test_thermal_frames_are_left_out(fixtures: Path) -> None:
    """An Altum-style capture: the LWIR frame (160 x 120, temperatures) is not a
    reflective band; it is skipped and named, and its size is not a mismatch."""
    frames = [read_frame(fixtures / f"IMG_0001_{b}.tif") for b in (3, 4)]
    lwir = dataclasses.replace(frames[1], band_number=5, band_name="LWIR", wavelength=11000.0,
                               width=160, height=120)  # fmt: skip
    capture = micasense._check_capture("IMG_0001", [*frames, lwir], "capture", fixtures)
    assert capture.names == ["red_668nm", "nir_840nm"]
    assert capture.skipped == ["lwir_11000nm (thermal)"]


def test_radiance_output_unaligned(fixtures: Path, tmp_path: Path) -> None:
    """reflectance=radiance, align=none: each band is its frame's radiance, pixel for pixel."""
    out = tmp_path / "radiance.tif"
    result = run(fixtures / "IMG_0001_3.tif", out, reflectance="radiance", align="none", mask="")
    data, tags, band_tags, names = read(out)
    assert names == ("red_668nm", "nir_840nm")
    assert result.sensor == "MicaSense RedEdge"
    assert tags["MICASENSE_UNITS"] == "W/m2/sr/nm" and tags["SIPD_TEST"] == "1"
    assert tags.get("SIPD_MASK", "") == ""  # GDAL drops empty tags
    for i, band in enumerate((3, 4)):
        expected = expected_radiance(fixtures / f"IMG_0001_{band}.tif")
        np.testing.assert_allclose(data[i], expected, rtol=2e-6, atol=1e-9)
    assert band_tags[0]["wavelength"] == "668" and band_tags[1]["common_name"] == "nir"


def test_panel_reflectance(fixtures: Path, tmp_path: Path) -> None:
    """rho = albedo * L / mean(L over the panel region) (MicaSense tutorial 1)."""
    out = tmp_path / "panel.tif"
    run(
        fixtures / "IMG_0001_3.tif",
        out,
        panel=str(fixtures / "IMG_0000_3.tif"),
        panel_albedo=",".join(map(str, ALBEDO)),
        panel_region=",".join(map(str, REGION)),
    )
    data, tags, band_tags, _ = read(out)
    assert tags["MICASENSE_REFLECTANCE"] == "panel"
    assert tags["MICASENSE_PANEL_CAPTURE"] == "IMG_0000"
    x0, y0, x1, y1 = REGION
    # Red is the reference band: its panel region is the region itself.
    panel_red = expected_radiance(fixtures / "IMG_0000_3.tif")[y0:y1, x0:x1].mean()
    assert float(band_tags[0]["panel_radiance"]) == pytest.approx(panel_red, rel=1e-6)
    # NIR: the region moved by the panel capture's warp at its centre; a uniform panel's
    # mean barely depends on sub-pixel placement.
    a0, a1, a2, b0, b1, b2 = coefficients(band_tags[1], "panel_alignment_coefficients")
    yc, xc = (y0 + y1 - 1) / 2, (x0 + x1 - 1) / 2
    dy = round(a0 + a1 * yc + a2 * xc - yc)
    dx = round(b0 + b1 * yc + b2 * xc - xc)
    panel_nir = expected_radiance(fixtures / "IMG_0000_4.tif")[
        y0 + dy : y1 + dy, x0 + dx : x1 + dx
    ].mean()
    assert float(band_tags[1]["panel_radiance"]) == pytest.approx(panel_nir, rel=3e-3)

    rows, cols = sample_pixels(data.shape[1:])
    red = expected_radiance(fixtures / "IMG_0001_3.tif")
    nir = expected_radiance(fixtures / "IMG_0001_4.tif")
    ok = np.isfinite(data[0, rows, cols])
    assert ok.mean() > 0.95
    np.testing.assert_allclose(
        data[0, rows, cols][ok], ALBEDO[0] * red[rows, cols][ok] / panel_red, rtol=1e-5
    )
    a0, a1, a2, b0, b1, b2 = coefficients(band_tags[1])
    src_r, src_c = a0 + a1 * rows + a2 * cols, b0 + b1 * rows + b2 * cols
    nir_at = bilinear(nir, src_r, src_c)
    panel_nir_used = float(band_tags[1]["panel_radiance"])
    np.testing.assert_allclose(
        data[1, rows, cols][ok], ALBEDO[1] * nir_at[ok] / panel_nir_used, rtol=1e-4, atol=1e-6
    )
    # A vegetated field: NIR reflectance well above red.
    assert np.nanmedian(data[1]) > 2 * np.nanmedian(data[0])


def test_dls_reflectance(fixtures: Path, tmp_path: Path) -> None:
    """rho = pi * L / E, E the frame's XMP Irradiance (no angular correction)."""
    out = tmp_path / "dls.tif"
    folder = tmp_path / "capture"
    folder.mkdir()
    for band in (3, 4):
        os.symlink(fixtures / f"IMG_0001_{band}.tif", folder / f"IMG_0001_{band}.tif")
    result = run(folder, out, reflectance="dls", align="translation")
    assert result.metadata["reflectance"] == "dls"
    data, tags, band_tags, _ = read(out)
    rows, cols = sample_pixels(data.shape[1:])
    for i, band in enumerate((3, 4)):
        path = fixtures / f"IMG_0001_{band}.tif"
        irradiance = float(xmp_scalar(xmp_text(path), "Camera", "Irradiance"))
        a0, a1, a2, b0, b1, b2 = coefficients(band_tags[i])
        if i == 0:
            assert (a0, a1, a2, b0, b1, b2) == (0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
        else:
            assert band_tags[i]["alignment"].startswith("translation")
            assert (a1, a2, b1, b2) == (1.0, 0.0, 0.0, 1.0)
        at = bilinear(
            expected_radiance(path), a0 + a1 * rows + a2 * cols, b0 + b1 * rows + b2 * cols
        )
        got = data[i, rows, cols]
        ok = np.isfinite(got)
        assert ok.mean() > 0.95
        np.testing.assert_allclose(got[ok], np.pi * at[ok] / irradiance, rtol=1e-4, atol=1e-6)
    assert tags["MICASENSE_DLS_IRRADIANCE"].startswith("red_668nm:0.68698")


def _edit_xmp(source: Path, target: Path, extra: str) -> None:
    """A copy of a real frame with `extra` XMP elements added to its Camera block (after
    Camera:IrradianceRoll); TIFF tag 700 rewritten in place by tifffile."""
    target.write_bytes(source.read_bytes())
    with tifffile.TiffFile(target, mode="r+b") as tif:
        tag = tif.pages[0].tags[700]
        text = tag.value if isinstance(tag.value, bytes) else str(tag.value).encode()
        end = b"</Camera:IrradianceRoll>"
        assert text.count(end) == 1
        tag.overwrite(text.replace(end, end + extra.encode()))
    assert extra in xmp_text(target)


def test_dls_irradiance_unit_scale(fixtures: Path, tmp_path: Path) -> None:
    """The DLS irradiance scale of MicaSense's metadata.py irradiance_scale_factor()
    (micasense/imageprocessing): XMP IrradianceScaleToSIUnits when present; else 0.01 when
    HorizontalIrradiance is present (DLS2, uW/cm^2/nm); else 1 (DLS1). Frames: real
    RedEdge frames with those tags added. Band 3 carries both tags with scale 0.5 (the
    explicit scale wins over the DLS2 default; 0.5 only to tell the rules apart), band 4
    only HorizontalIrradiance (-> 0.01)."""
    folder = tmp_path / "capture"
    folder.mkdir()
    _edit_xmp(
        fixtures / "IMG_0001_3.tif",
        folder / "IMG_0001_3.tif",
        "<Camera:HorizontalIrradiance>0.7</Camera:HorizontalIrradiance>"
        "<Camera:IrradianceScaleToSIUnits>0.5</Camera:IrradianceScaleToSIUnits>",
    )
    _edit_xmp(
        fixtures / "IMG_0001_4.tif",
        folder / "IMG_0001_4.tif",
        "<Camera:HorizontalIrradiance>41.5</Camera:HorizontalIrradiance>",
    )
    recorded = [
        float(xmp_scalar(xmp_text(fixtures / f"IMG_0001_{b}.tif"), "Camera", "Irradiance"))
        for b in (3, 4)
    ]
    expected = [recorded[0] * 0.5, recorded[1] * 0.01]
    red, nir = (read_frame(folder / f"IMG_0001_{b}.tif") for b in (3, 4))
    assert red.irradiance == pytest.approx(expected[0], rel=1e-12)
    assert nir.irradiance == pytest.approx(expected[1], rel=1e-12)
    assert red.irradiance_source.startswith("Irradiance * 0.5 (XMP IrradianceScaleToSIUnits")
    assert nir.irradiance_source.startswith("Irradiance * 0.01 (DLS2")
    # The unedited DLS1 frame keeps its value, scale 1.
    plain = read_frame(fixtures / "IMG_0001_3.tif")
    assert plain.irradiance == recorded[0] and plain.irradiance_source.startswith(
        "Irradiance * 1.0 (DLS1"
    )

    out = tmp_path / "dls.tif"
    run(folder, out, reflectance="dls", align="none")
    data, tags, band_tags, _ = read(out)
    rows, cols = sample_pixels(data.shape[1:])
    for i, band in enumerate((3, 4)):
        at = expected_radiance(fixtures / f"IMG_0001_{band}.tif")[rows, cols]
        got = data[i, rows, cols]
        ok = np.isfinite(got)
        assert ok.mean() > 0.95
        np.testing.assert_allclose(got[ok], np.pi * at[ok] / expected[i], rtol=1e-4, atol=1e-6)
        assert float(band_tags[i]["irradiance"]) == pytest.approx(expected[i], rel=1e-12)
    assert band_tags[1]["irradiance_source"] == nir.irradiance_source
    assert tags["MICASENSE_DLS_IRRADIANCE_SOURCE"] == (
        f"red_668nm:{red.irradiance_source},nir_840nm:{nir.irradiance_source}"
    )


def test_saturated_pixels_are_nodata_in_every_band(fixtures: Path, tmp_path: Path) -> None:
    raw = tifffile.imread(fixtures / "IMG_0001_3.tif")
    saturated = raw >= 65520
    assert saturated.sum() > 1000  # the fixture has ~1800
    run(fixtures / "IMG_0001_3.tif", tmp_path / "m.tif", reflectance="radiance")
    data, tags, _, _ = read(tmp_path / "m.tif")
    assert tags["SIPD_MASK"] == "saturated"
    assert np.isnan(data[:, saturated]).all()
    # Pixels the NIR frame's shift (~14 px right) leaves uncovered: nodata in every band.
    assert np.isnan(data[:, :, -5:]).all()
    assert (np.isnan(data[0]) == np.isnan(data[1])).all()
    run(fixtures / "IMG_0001_3.tif", tmp_path / "n.tif", reflectance="radiance", mask="",
        align="none")  # fmt: skip
    unmasked, _, _, _ = read(tmp_path / "n.tif")
    assert np.isfinite(unmasked).all()


def test_cancel_leaves_no_output(fixtures: Path, tmp_path: Path) -> None:
    """A cancel asked while the bands are written stops the job; nothing is left."""
    cancel = threading.Event()

    def emit(event: object) -> None:
        if getattr(event, "stage", "") == "bands":
            cancel.set()

    step = PreprocessStep(preprocessor="micasense", options=MicasenseOptions(align="none"))
    out = tmp_path / "out" / "c.tif"
    out.parent.mkdir()
    with pytest.raises(JobCancelled):
        micasense.run(fixtures / "IMG_0001_3.tif", step, out, JobContext(emit=emit,
                      cancel_event=cancel), {}, threads=1)  # fmt: skip
    assert list(out.parent.iterdir()) == []


# ---------------------------------------------------------------- alignment


def test_alignment_recovers_a_known_affine(fixtures: Path) -> None:
    """A frame warped by a known rotation + scale + shift is found again to < 0.3 px."""
    frame = read_frame(fixtures / "IMG_0001_4.tif")
    radiance = frame.radiance(tifffile.imread(frame.path), 0, 4800.0)
    angle, scale = np.deg2rad(0.4), 1.005
    m = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    offset = np.array([6.3, -11.7])
    # moving(r, c) = reference(M^-1 ((r, c) - offset)): so the moving frame's pixel for
    # reference pixel q is M q + offset.
    inv = np.linalg.inv(m)
    moving = ndimage.affine_transform(radiance, inv, offset=-inv @ offset, order=3, mode="nearest")
    warp = estimate_warp(gradient_magnitude(radiance), gradient_magnitude(moving), "affine")
    assert warp is not None and warp.kind == "affine"
    r, c = np.mgrid[100:900:50, 100:1200:50]
    got_r, got_c = warp.source(r, c)
    true_r = m[0, 0] * r + m[0, 1] * c + offset[0]
    true_c = m[1, 0] * r + m[1, 1] * c + offset[1]
    assert np.hypot(got_r - true_r, got_c - true_c).max() < 0.3

    shifted = ndimage.shift(radiance, (4.25, -9.5), order=3, mode="nearest")
    t = estimate_warp(gradient_magnitude(radiance), gradient_magnitude(shifted), "translation")
    assert t is not None and t.kind == "translation"
    assert t.coefficients[0] == pytest.approx(4.25, abs=0.25)
    assert t.coefficients[3] == pytest.approx(-9.5, abs=0.25)


def test_alignment_improves_band_overlap(fixtures: Path) -> None:
    """On the real capture, gradients of red and aligned NIR correlate best with the
    affine map, then the translation, then none (the rig's bands are rotated ~0.4 deg)."""
    frames = [read_frame(fixtures / f"IMG_0001_{b}.tif") for b in (3, 4)]
    rad = [f.radiance(tifffile.imread(f.path), 0, 4800.0) for f in frames]
    grads = [gradient_magnitude(r) for r in rad]

    def overlap(warp: Warp) -> float:
        aligned = warp.sample(grads[1], 0, 0, 960, 1280)[40:-40, 40:-40]
        ref = grads[0][40:-40, 40:-40]
        ok = np.isfinite(aligned)
        return float(np.corrcoef(ref[ok], aligned[ok])[0, 1])

    affine = estimate_warp(grads[0], grads[1], "affine")
    translation = estimate_warp(grads[0], grads[1], "translation")
    assert affine is not None and translation is not None
    scores = [overlap(affine), overlap(translation), overlap(Warp.identity())]
    assert scores[0] > scores[1] > scores[2], scores
    assert affine.tiles >= 12 and affine.rms < 1.0


def test_blocks_give_the_whole_frame(fixtures: Path) -> None:
    """Rows computed block by block (as write_stack asks) equal one whole-frame pass."""
    frame = read_frame(fixtures / "IMG_0001_4.tif")
    warp = Warp((5.6, 1.0055, 0.0065, 13.8, -0.0068, 1.0057), "affine")
    datasets = DatasetsPerThread(opener=micasense.open_measurement)
    try:
        whole = micasense._aligned_rows(frame, warp, 4800.0, 0, 960, 1280, True, datasets.get)
        parts = [
            micasense._aligned_rows(
                frame, warp, 4800.0, r0, min(r0 + 97, 960), 1280, True, datasets.get
            )  # fmt: skip
            for r0 in range(0, 960, 97)
        ]
    finally:
        datasets.close()
    # Equal but for float rounding of each block's offset; NaN in the same places.
    np.testing.assert_allclose(np.concatenate(parts), whole, rtol=1e-6)
    assert np.isnan(whole[-3:]).all()  # the shift leaves the last rows uncovered


# ---------------------------------------------------------------- accepts and options


def test_accepts(fixtures: Path, tmp_path: Path) -> None:
    assert micasense.accepts(fixtures)
    assert micasense.accepts(fixtures / "IMG_0000_4.tif")
    plain = tmp_path / "IMG_0001_1.tif"
    tifffile.imwrite(plain, np.zeros((8, 8), np.uint16))
    assert not micasense.accepts(plain)  # the name, but no MicaSense metadata
    (tmp_path / "IMG_0002_1.tif").write_text("not a tiff")
    assert not micasense.accepts(tmp_path / "IMG_0002_1.tif")
    assert not micasense.accepts(tmp_path / "missing")
    other = tmp_path / "other"
    other.mkdir()
    assert not micasense.accepts(other)
    renamed = tmp_path / "scene.tif"
    os.symlink(fixtures / "IMG_0001_3.tif", renamed)
    assert not micasense.accepts(renamed)  # captures are found by their IMG_xxxx_ names


def test_options_from_text() -> None:
    o = MicasenseOptions(
        panel="/data/IMG_0000_1.tif",
        panel_albedo="0.5, 0.49",
        panel_region="1,2,30,40",
        bands="nir_840nm,red_668nm",
        mask="",
    )
    assert o.panel_albedo == [0.5, 0.49] and o.panel_region == [1, 2, 30, 40]
    assert o.mask == [] and o.method == "panel"
    assert o.output_bands() == ["nir_840nm", "red_668nm"]
    assert MicasenseOptions(bands="red,nir").output_bands() == []
    assert MicasenseOptions().method == "dls" and MicasenseOptions().mask == ["saturated"]
    assert MicasenseOptions.PATH_OPTIONS == ("panel",)
    for bad, text in (
        ({"panel_albedo": "1.5"}, "between 0 and 1"),
        ({"panel_region": "1,2,3"}, "4 pixels"),
        ({"panel_region": "10,10,5,20"}, "x0 < x1"),
        ({"mask": "clouds"}, "saturated"),
        ({"bands": "Red 668"}, "band name"),
        ({"align": "homography"}, "affine"),
    ):
        with pytest.raises(ValueError, match=text):
            MicasenseOptions(**bad)
    for name, field in MicasenseOptions.model_fields.items():
        assert field.description, name


# ---------------------------------------------------------------- bad input


def link(tmp: Path, fixtures: Path, mapping: dict[str, str]) -> Path:
    tmp.mkdir(parents=True, exist_ok=True)
    for new, old in mapping.items():
        os.symlink(fixtures / f"{old}.tif", tmp / f"{new}.tif")
    return tmp


def refused(source: Path, out: Path, match: str, **options: str) -> str:
    with pytest.raises(InvalidArgument, match=match) as info:
        run(source, out, **options)
    assert not out.exists() and not [p for p in out.parent.glob(f".{out.name}*")]
    return str(info.value)


def test_mismatched_frame_sets(fixtures: Path, tmp_path: Path) -> None:
    out = tmp_path / "out" / "x.tif"
    out.parent.mkdir()
    mixed = link(
        tmp_path / "mixed", fixtures, {"IMG_0009_1": "IMG_0001_3", "IMG_0009_2": "IMG_0000_4"}
    )
    refused(mixed / "IMG_0009_1.tif", out, "different captures")
    gap = link(tmp_path / "gap", fixtures, {"IMG_0009_1": "IMG_0001_3", "IMG_0009_3": "IMG_0001_4"})
    refused(gap / "IMG_0009_3.tif", out, "band 2 is missing")
    twice = link(
        tmp_path / "twice", fixtures, {"IMG_0009_1": "IMG_0001_3", "IMG_0009_2": "IMG_0001_3"}
    )
    refused(twice, out, "red_668nm in more than one frame")
    refused(fixtures, out, "holds 2 captures")
    frames = [read_frame(fixtures / f"IMG_0001_{b}.tif") for b in (3, 4)]
    small = [frames[0], dataclasses.replace(frames[1], width=640, height=480)]
    with pytest.raises(InvalidArgument, match="different sizes"):
        micasense._check_capture("IMG_0001", small, "capture", fixtures)
    os.symlink(fixtures / "IMG_0001_3.tif", tmp_path / "scene.tif")
    with pytest.raises(InvalidArgument, match="not a MicaSense frame"):
        micasense.find_capture(tmp_path / "scene.tif", "capture")


def test_panel_errors(fixtures: Path, tmp_path: Path) -> None:
    out = tmp_path / "p.tif"
    scene = fixtures / "IMG_0001_3.tif"
    panel = str(fixtures / "IMG_0000_3.tif")
    # The region on the concrete beside the panel: textured, not a panel.
    message = refused(scene, out, "a panel frame without a panel", panel=panel,
                      panel_albedo="0.5", panel_region="100,100,270,270")  # fmt: skip
    assert "red_668nm" in message
    # The scene capture itself given as the panel: a field, no panel in it.
    refused(scene, out, "a panel frame without a panel", panel=str(scene),
            panel_albedo="0.5", panel_region=",".join(map(str, REGION)))  # fmt: skip
    # Wrong wavelengths: a panel capture with only the NIR band.
    nir_only = link(tmp_path / "nir", fixtures, {"IMG_0000_4": "IMG_0000_4"})
    refused(scene, out, "no panel frame for red_668nm", panel=str(nir_only),
            panel_albedo="0.5", panel_region=",".join(map(str, REGION)))  # fmt: skip
    refused(scene, out, "panel_albedo has 3 values", panel=panel, panel_albedo="0.5,0.5,0.5",
            panel_region=",".join(map(str, REGION)))  # fmt: skip
    refused(scene, out, "needs panel_region", panel=panel, panel_albedo="0.5")
    refused(scene, out, "needs panel_albedo", panel=panel)
    refused(scene, out, "outside the panel frame", panel=panel, panel_albedo="0.5",
            panel_region="1200,900,1300,1000")  # fmt: skip
    refused(scene, out, "band 'blue' is not in capture", bands="blue")
    refused(scene, out, "needs the panel option", reflectance="panel")
