"""The multichannel preprocessor (OME-TIFF, multi-page/multi-sample TIFF, PNG folders),
called directly, on the real OME and TIFF samples in ../shared/fixtures/biomedical.

Expected values are computed here with separate code: pixels read with tifffile
(uncompressed fixtures; the LZW one through plain GDAL page reads), the OME-XML parsed
with ElementTree/regex, and the formulas in float64:
- normalize=percentile: v = clip((x - P_lo) / (P_hi - P_lo), 0, 1) (CSBDeep
  csbdeep.utils.normalize with clip=True, Weigert et al., Nature Methods 15, 2018;
  scikit-image exposure.rescale_intensity), P the linear-interpolation percentile of
  Hyndman & Fan (1996) definition 7, written out here by hand (not numpy.percentile).
- z=max: maximum intensity projection (Wallis et al., IEEE TMI 8(4), 1989); z=mean:
  the arithmetic mean over the planes.
- Pixel size: OME Pixels@PhysicalSizeX/Y (OME data model), else TIFF 6.0
  X/YResolution in pixels per ResolutionUnit (3 = centimetre).
"""

from __future__ import annotations

import math
import re
import shutil
import threading
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np
import pydantic
import pytest
import rasterio
import tifffile

from sipd.contracts.options.multichannel import MultichannelOptions
from sipd.contracts.preprocessing import PreprocessStep
from sipd.errors import InvalidArgument
from sipd.preprocess import multichannel
from sipd.progress import JobContext
from tests.support import shared_fixture

pytestmark = pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")

BIO = "biomedical"


def run(source: Path, out: Path, threads: int = 2, **options: str) -> multichannel.RunResult:
    step = PreprocessStep(preprocessor="multichannel", options=options)
    return multichannel.run(source, step, out, JobContext(), {"SIPD_PREPROCESSING": "{}"},
                            threads)  # fmt: skip


def read(
    path: Path,
) -> tuple[np.ndarray, tuple[str | None, ...], dict[str, Any], list[dict[str, str]]]:
    with rasterio.open(path) as ds:
        assert ds.crs is None and ds.dtypes[0] == "float32" and math.isnan(ds.nodata)
        band_tags = [ds.tags(b) for b in range(1, ds.count + 1)]
        return (
            ds.read().astype(np.float64),
            ds.descriptions,
            ds.tags() | {"_t": ds.transform},
            band_tags,
        )


def percentile_h7(values: np.ndarray, p: float) -> float:
    """Hyndman & Fan (1996) definition 7: h = (n - 1) p / 100, linear between the order
    statistics x[floor(h)] and x[floor(h) + 1]."""
    x = np.sort(values.astype(np.float64).ravel())
    h = (x.size - 1) * p / 100.0
    lo = math.floor(h)
    hi = min(lo + 1, x.size - 1)
    return float(x[lo] + (h - lo) * (x[hi] - x[lo]))


def normalized(x: np.ndarray, p_lo: float, p_hi: float) -> np.ndarray:
    lo, hi = percentile_h7(x, p_lo), percentile_h7(x, p_hi)
    return np.clip((x.astype(np.float64) - lo) / (hi - lo), 0.0, 1.0)


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# ---------------------------------------------------------------- real OME and TIFF samples


def test_ome_int8_channels_as_stored(tmp_path: Path) -> None:
    src = shared_fixture(f"{BIO}/multi-channel.ome.tif")
    expected = tifffile.imread(src)  # CYX int8, independent read
    assert expected.dtype == np.int8 and expected.shape == (3, 167, 439)
    result = run(src, tmp_path / "o.tif")
    values, names, tags, _ = read(tmp_path / "o.tif")
    np.testing.assert_array_equal(values, expected.astype(np.float64))
    assert names == ("ch0", "ch1", "ch2")  # the OME channels have no Name
    assert tags["MULTICHANNEL_DTYPE"] == "int8" and tags["MULTICHANNEL_AXES"] == "CYX"
    assert tags["MULTICHANNEL_FORMAT"] == "OME-TIFF" and tags["SIPD_PREPROCESSING"] == "{}"
    # Bio-Formats wrote XResolution 0: no physical size, no transform.
    assert "PHYSICAL_SIZE_X" not in tags and tags["_t"].is_identity
    assert result.sensor == "OME-TIFF (3 channels, int8)"


def test_percentile_normalisation_equals_the_formula(tmp_path: Path) -> None:
    src = shared_fixture(f"{BIO}/multi-channel.ome.tif")
    stack = tifffile.imread(src)
    run(src, tmp_path / "n.tif", channels="2,0", normalize="percentile", percentiles="2,98.5")
    values, names, tags, band_tags = read(tmp_path / "n.tif")
    assert names == ("ch2", "ch0")
    for i, c in enumerate((2, 0)):
        np.testing.assert_allclose(values[i], normalized(stack[c], 2, 98.5), atol=1e-6)
        assert float(band_tags[i]["percentile_low_value"]) == pytest.approx(
            percentile_h7(stack[c], 2)
        )
        assert float(band_tags[i]["percentile_high_value"]) == pytest.approx(
            percentile_h7(stack[c], 98.5)
        )
    assert tags["MULTICHANNEL_NORMALIZE"] == "percentile 2,98.5"


def _multifile_planes(folder: Path) -> list[np.ndarray]:
    """The Z planes in Z order, from the OME-XML's TiffData (FirstZ -> UUID FileName),
    each file's first page read on its own."""
    xml = tifffile.TiffFile(folder / "multifile-Z1.ome.tiff").ome_metadata
    root = ET.fromstring(xml)
    order = {}
    for td in root.iter():
        if td.tag.endswith("TiffData"):
            uuid = next(e for e in td if e.tag.endswith("UUID"))
            order[int(td.get("FirstZ", "0"))] = uuid.get("FileName")
    assert len(order) == 5
    planes = []
    for z in sorted(order):
        with tifffile.TiffFile(folder / order[z]) as t:
            planes.append(t.pages[0].asarray())  # the file's own page, not the OME series
    return planes


@pytest.mark.parametrize("z", ["max", "mean", "3"])
def test_ome_multifile_z_stack(tmp_path: Path, z: str) -> None:
    folder = shared_fixture(f"{BIO}/ome_multifile")
    planes = np.stack(_multifile_planes(folder)).astype(np.float64)
    expected = {"max": planes.max(axis=0), "mean": planes.sum(axis=0) / 5, "3": planes[3]}[z]
    outputs = []
    # Named by the file with the XML, by a pixels-only file of the set, or by its folder.
    for i, src in enumerate(
        (folder / "multifile-Z1.ome.tiff", folder / "multifile-Z3.ome.tiff", folder)
    ):
        run(src, tmp_path / f"{i}.tif", z=z)
        values, names, tags, _ = read(tmp_path / f"{i}.tif")
        np.testing.assert_allclose(values[0], expected, rtol=1e-6)
        outputs.append(values)
    assert tags["MULTICHANNEL_Z"] == ("index 3 of 5" if z == "3" else f"{z} of 5")
    # Physical size from the TIFF tags: X/YResolution pixels per cm (ResolutionUnit 3).
    with tifffile.TiffFile(folder / "multifile-Z1.ome.tiff") as t:
        num, den = t.pages[0].tags["XResolution"].value
        assert t.pages[0].tags["ResolutionUnit"].value == 3
    size_um = 1e4 / (num / den)
    assert float(tags["PHYSICAL_SIZE_X"]) == pytest.approx(size_um)
    assert tags["PHYSICAL_SIZE_UNIT"] == "µm"
    assert tags["_t"].a == pytest.approx(size_um) and tags["_t"].e == pytest.approx(-size_um)


def test_multipage_rgb_tiff_pages_then_samples(tmp_path: Path) -> None:
    src = shared_fixture(f"{BIO}/shapes_tiled_multi.tif")  # 3 LZW tiled pages of RGB
    run(src, tmp_path / "m.tif")
    values, names, tags, _ = read(tmp_path / "m.tif")
    assert names == tuple(f"ch{i}" for i in range(9))
    # tifffile cannot decode LZW without imagecodecs: whole pages through plain GDAL.
    for page in range(3):
        with rasterio.open(f"GTIFF_DIR:{page + 1}:{src}") as ds:
            np.testing.assert_array_equal(values[3 * page : 3 * page + 3], ds.read())
    assert tags["MULTICHANNEL_AXES"] == "IYXS" and tags["MULTICHANNEL_SHAPE"] == "3x72x128x3"
    # 72 pixels per inch -> 25400 / 72 µm.
    assert float(tags["PHYSICAL_SIZE_X"]) == pytest.approx(25400 / 72, rel=1e-8)


def test_multisample_float_tiff(tmp_path: Path) -> None:
    src = shared_fixture(f"{BIO}/shapes_hyper.tif")
    expected = np.moveaxis(tifffile.imread(src), -1, 0)  # YXS -> SYX
    run(src, tmp_path / "h.tif", channels="6,1")
    values, names, _, _ = read(tmp_path / "h.tif")
    assert names == ("ch6", "ch1")
    np.testing.assert_array_equal(values, expected[[6, 1]].astype(np.float64))


# ---------------------------------------------------------------- written OME: names, sizes


def _write_ome(path: Path, data: np.ndarray, **meta: object) -> None:
    tifffile.imwrite(path, data, ome=True, compression="zlib", rowsperstrip=64, metadata=meta)


def test_ome_names_physical_size_projection_and_blocks(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    # 1100 rows: three 512-row blocks, so block seams are checked too.
    data = rng.integers(0, 4096, (3, 3, 1100, 40), dtype=np.uint16)  # ZCYX
    src = tmp_path / "cells.ome.tif"
    _write_ome(src, data, axes="ZCYX", Channel={"Name": ["DAPI", "GFP", "488"]},
               PhysicalSizeX=0.65, PhysicalSizeY=0.5, PhysicalSizeXUnit="µm",
               PhysicalSizeYUnit="µm")  # fmt: skip
    xml = tifffile.TiffFile(src).ome_metadata
    px = ET.fromstring(xml).find(".//{*}Pixels")
    assert px is not None
    sx, sy = float(px.get("PhysicalSizeX")), float(px.get("PhysicalSizeY"))
    names = re.findall(r'<Channel [^>]*Name="([^"]+)"', xml)
    assert names == ["DAPI", "GFP", "488"]

    run(src, tmp_path / "o.tif", channels="488,DAPI", z="max", threads=3)
    values, bands, tags, band_tags = read(tmp_path / "o.tif")
    assert bands == ("488", "DAPI")  # "488" is a name here, not an index
    mip = data.astype(np.float64).max(axis=0)
    np.testing.assert_array_equal(values, mip[[2, 0]])
    assert tags["_t"].a == pytest.approx(sx) and tags["_t"].e == pytest.approx(-sy)
    assert tags["PHYSICAL_SIZE_SOURCE"] == "OME" and tags["PHYSICAL_SIZE_UNIT"] == "µm"
    assert tags["MULTICHANNEL_CHANNELS"] == "DAPI,GFP,488"
    assert band_tags[0]["channel_name"] == "488" and band_tags[0]["channel_index"] == "2"

    run(src, tmp_path / "m.tif", channels="1", z="mean", normalize="percentile")
    values, bands, _, _ = read(tmp_path / "m.tif")
    mean = data[:, 1].astype(np.float64).sum(axis=0) / 3
    assert bands == ("GFP",)
    np.testing.assert_allclose(values[0], normalized(mean, 1, 99), atol=1e-6)


def test_nodata_and_nan_are_left_out_of_projections(tmp_path: Path) -> None:
    data = np.arange(2 * 30 * 20, dtype=np.float32).reshape(2, 30, 20)
    data[0, 0, :5] = np.nan  # NaN in one plane: the other plane's value
    data[:, 1, :3] = np.nan  # NaN in both: NaN
    data[1, 2, 0] = np.inf
    src = tmp_path / "z.ome.tif"
    _write_ome(src, data, axes="ZYX")
    run(src, tmp_path / "o.tif", z="mean")
    values, _, _, _ = read(tmp_path / "o.tif")
    finite = np.where(np.isfinite(data), data, np.nan).astype(np.float64)
    with np.errstate(invalid="ignore"):
        expected = np.nansum(finite, axis=0) / np.sum(~np.isnan(finite), axis=0)
    np.testing.assert_allclose(values[0], expected, rtol=1e-6)
    assert np.isnan(values[0, 1, :3]).all() and values[0, 0, 0] == data[1, 0, 0]

    # The GDAL_NODATA TIFF tag (42113) marks nodata in integer images.
    ints = np.full((10, 12), 7, np.uint16)
    ints[3, 4] = 65535
    src16 = tmp_path / "nd.tif"
    tifffile.imwrite(src16, ints, extratags=[(42113, "s", 0, "65535", True)])
    run(src16, tmp_path / "nd_out.tif")
    values, _, _, _ = read(tmp_path / "nd_out.tif")
    assert np.isnan(values[0, 3, 4]) and np.nansum(values) == 7 * (10 * 12 - 1)


def test_percentiles_on_a_bounded_sample(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Above PERCENTILE_SAMPLE_PIXELS the percentiles come from every k-th row,
    k = ceil(pixels / PERCENTILE_SAMPLE_PIXELS)."""
    monkeypatch.setattr(multichannel, "PERCENTILE_SAMPLE_PIXELS", 1000)
    rng = np.random.default_rng(3)
    data = rng.normal(100, 30, (1, 300, 50)).astype(np.float32)
    src = tmp_path / "big.ome.tif"
    _write_ome(src, data, axes="CYX")
    run(src, tmp_path / "o.tif", normalize="percentile", percentiles="5,95")
    values, _, _, band_tags = read(tmp_path / "o.tif")
    k = math.ceil(300 * 50 / 1000)
    sample = data[0, ::k].astype(np.float64)
    lo, hi = percentile_h7(sample, 5), percentile_h7(sample, 95)
    assert float(band_tags[0]["percentile_low_value"]) == pytest.approx(lo, rel=1e-7)
    expected = np.clip((data[0].astype(np.float64) - lo) / (hi - lo), 0, 1)
    np.testing.assert_allclose(values[0], expected, atol=1e-6)
    assert multichannel.sample_rows(100_000, 100_000)[0] * 1000 >= 100_000 * 100_000 / 100_000


def test_imagej_hyperstack_t_and_z(tmp_path: Path) -> None:
    """TZCYX: t by index, z by mean, channels by index; ImageJ writes pixels per its unit
    (unit=um in its description) with ResolutionUnit 1."""
    data = np.random.default_rng(5).integers(0, 1000, (2, 3, 2, 20, 30), dtype=np.uint16)
    src = tmp_path / "ij.tif"
    tifffile.imwrite(src, data, imagej=True, resolution=(4.0, 5.0),
                     metadata={"axes": "TZCYX", "unit": "um"})  # fmt: skip
    run(src, tmp_path / "o.tif", t="1", z="mean", channels="1")
    values, names, tags, _ = read(tmp_path / "o.tif")
    assert names == ("ch1",) and tags["MULTICHANNEL_AXES"] == "TZCYX"
    np.testing.assert_allclose(values[0], data[1, :, 1].astype(np.float64).sum(axis=0) / 3)
    with tifffile.TiffFile(src) as t:
        xnum, xden = t.pages[0].tags["XResolution"].value
        ynum, yden = t.pages[0].tags["YResolution"].value
    assert tags["_t"].a == pytest.approx(xden / xnum) and tags["_t"].e == pytest.approx(
        -yden / ynum
    )
    assert tags["PHYSICAL_SIZE_UNIT"] == "µm" and tags["MULTICHANNEL_T"] == "index 1 of 2"


def test_renamed_single_file_ome(tmp_path: Path) -> None:
    """The OME-XML names the file as it was written; a renamed copy is matched by UUID."""
    src = shutil.copy(shared_fixture(f"{BIO}/multi-channel.ome.tif"), tmp_path / "x.ome.tif")
    run(Path(src), tmp_path / "o.tif", channels="1")
    values, _, _, _ = read(tmp_path / "o.tif")
    np.testing.assert_array_equal(values[0], tifffile.imread(src)[1])


# ---------------------------------------------------------------- folders of images


def _write_png(path: Path, data: np.ndarray) -> None:
    with rasterio.open(path, "w", driver="PNG", width=data.shape[-1], height=data.shape[-2],
                       count=1 if data.ndim == 2 else data.shape[0],
                       dtype=str(data.dtype)) as ds:  # fmt: skip
        ds.write(data if data.ndim == 3 else data[None])


def test_folder_of_pngs_one_channel_each(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    folder = tmp_path / "stack"
    folder.mkdir()
    planes = {n: rng.integers(0, 65535, (33, 47), dtype=np.uint16)
              for n in ("c_red", "a_blue", "b_green")}  # fmt: skip
    for name, plane in planes.items():
        _write_png(folder / f"{name}.png", plane)
    (folder / "notes.txt").write_text("not an image")
    assert multichannel.accepts(folder)
    run(folder, tmp_path / "all.tif")
    values, names, tags, _ = read(tmp_path / "all.tif")
    assert names == ("a_blue", "b_green", "c_red")  # sorted by file name
    np.testing.assert_array_equal(values, np.stack([planes[n] for n in names]).astype(float))
    assert tags["MULTICHANNEL_FORMAT"] == "image folder (PNG)"
    run(folder, tmp_path / "two.tif", channels="c_red,a_blue")
    values, names, _, _ = read(tmp_path / "two.tif")
    assert names == ("c_red", "a_blue")
    np.testing.assert_array_equal(values[0], planes["c_red"])


def test_single_rgba_png_alpha_dropped(tmp_path: Path) -> None:
    rgba = np.random.default_rng(2).integers(0, 255, (4, 16, 24), dtype=np.uint8)
    rgba[3] = 255
    src = tmp_path / "photo.png"
    with rasterio.open(src, "w", driver="PNG", width=24, height=16, count=4, dtype="uint8",
                       photometric="RGB", alpha="YES") as ds:  # fmt: skip
        ds.write(rgba)
    assert multichannel.accepts(src)
    run(src, tmp_path / "o.tif")
    values, names, tags, _ = read(tmp_path / "o.tif")
    assert names == ("photo_1", "photo_2", "photo_3") and tags["MULTICHANNEL_FORMAT"] == "PNG"
    np.testing.assert_array_equal(values, rgba[:3].astype(np.float64))


# ---------------------------------------------------------------- bad input


def test_bad_inputs_are_refused_with_no_output(tmp_path: Path) -> None:
    ome = shared_fixture(f"{BIO}/multi-channel.ome.tif")
    out = tmp_path / "out"
    out.mkdir()
    cases: dict[str, tuple[Path, dict[str, str], str]] = {}
    cases["channel-name"] = (ome, {"channels": "DAPI"}, "its channels are ch0, ch1, ch2")
    cases["channel-index"] = (ome, {"channels": "3"}, "indices 0 to 2")
    cases["z-index"] = (ome, {"z": "2"}, "1 Z planes")
    cases["t-index"] = (ome, {"t": "1"}, "1 time points")
    cases["series"] = (ome, {"series": "1"}, "holds 1 series")

    empty = tmp_path / "empty"
    empty.mkdir()
    cases["empty-folder"] = (empty, {}, "holds no image")

    sizes = tmp_path / "sizes"
    sizes.mkdir()
    _write_png(sizes / "a.png", np.zeros((10, 12), np.uint8))
    _write_png(sizes / "b.png", np.zeros((11, 12), np.uint8))
    cases["sizes"] = (sizes, {}, "a.png 12x10, b.png 12x11")

    truncated = tmp_path / "cut.ome.tif"
    truncated.write_bytes(ome.read_bytes()[: ome.stat().st_size * 2 // 3])
    cases["truncated"] = (truncated, {}, "truncated")

    # A folder holding only a broken OME-TIFF: the same clean refusal as the file named
    # directly (was tifffile.TiffFileError from the folder's OME check).
    broken_folder = tmp_path / "broken"
    broken_folder.mkdir()
    # The first 200 bytes of a real OME-TIFF: tifffile raises TiffFileError on opening.
    (broken_folder / "a.ome.tif").write_bytes(ome.read_bytes()[:200])
    cases["broken-ome-in-folder"] = (broken_folder, {}, "is not a readable TIFF")
    cases["broken-ome-named"] = (broken_folder / "a.ome.tif", {}, "is not a readable TIFF")

    not_image = tmp_path / "x.tif"
    not_image.write_text("hello")
    cases["not-an-image"] = (not_image, {}, "not an image")

    problems = []
    for name, (src, options, words) in cases.items():
        target = out / f"{name}.tif"
        try:
            run(src, target, **options)
            problems.append(f"{name}: no error")
        except InvalidArgument as exc:
            if words not in str(exc):
                problems.append(f"{name}: {exc} (wanted {words!r})")
    assert not problems, "\n".join(problems)
    assert leftovers(out) == []


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"percentiles": "99,1"}, "LOW < HIGH"),
        ({"percentiles": "a,b"}, "two numbers"),
        ({"z": "median"}, "max / mean"),
        ({"channels": "GFP,GFP"}, "named twice"),
        ({"normalize": "zscore"}, "percentile"),
        ({"bands": "1"}, "bands"),
    ],
)
def test_bad_options(options: dict[str, str], words: str) -> None:
    with pytest.raises(pydantic.ValidationError, match=words):
        MultichannelOptions.model_validate(options)


def test_options_from_text() -> None:
    o = MultichannelOptions.model_validate(
        {"channels": "DAPI, GFP ,Cy5", "z": "MAX", "t": "02", "percentiles": "0.5,99.8"}
    )
    assert o.channels == ["DAPI", "GFP", "Cy5"] and o.z == "max" and o.t == "2"
    assert o.percentiles == [0.5, 99.8] and o.output_bands() == ["DAPI", "GFP", "Cy5"]
    assert MultichannelOptions.model_validate({"channels": "2,0"}).output_bands() == []
    assert MultichannelOptions().output_bands() == [] and MultichannelOptions.PATH_OPTIONS == ()
    assert all(f.description for f in MultichannelOptions.model_fields.values())


def test_cancel_leaves_no_output(tmp_path: Path) -> None:
    src = shared_fixture(f"{BIO}/multi-channel.ome.tif")
    cancel = threading.Event()
    cancel.set()
    step = PreprocessStep(preprocessor="multichannel", options={})
    with pytest.raises(Exception, match="(?i)cancel"):
        multichannel.run(src, step, tmp_path / "c.tif", JobContext(cancel_event=cancel), {}, 2)
    assert leftovers(tmp_path) == []


def test_accepts(tmp_path: Path) -> None:
    for rel in ("multi-channel.ome.tif", "shapes_hyper.tif", "ome_multifile"):
        assert multichannel.accepts(shared_fixture(f"{BIO}/{rel}"))
    (tmp_path / "a.txt").write_text("x")
    (tmp_path / "fake.tif").write_text("not a tiff")
    shutil.make_archive(str(tmp_path / "z"), "zip", tmp_path, "a.txt")
    for p in ("a.txt", "fake.tif", "z.zip", "missing.tif"):
        assert not multichannel.accepts(tmp_path / p), p
    (tmp_path / "empty").mkdir()
    assert not multichannel.accepts(tmp_path / "empty")
