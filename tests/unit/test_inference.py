"""predict_scene: tiled prediction equals a whole-image pass, output format, masks, failures."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.enums import ColorInterp

from sipd.errors import InvalidArgument
from sipd.inference import load_model, predict_scene, write_quicklook
from sipd.progress import JobCancelled, JobContext
from tests.support import assert_cog
from tests.unit.test_inference_support import (
    BANDS,
    make_tiny_model,
    scene_array,
    whole_image_labels,
    write_scene,
)


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory):
    folder = make_tiny_model(tmp_path_factory.mktemp("models") / "1", tile_size=256, halo=8)
    return load_model(folder)


@pytest.fixture(scope="module")
def scene_1024(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    data = scene_array(1024, 1024)
    return write_scene(tmp_path_factory.mktemp("scenes") / "s1024.tif", data), data


def _files(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()}


def test_tiled_prediction_equals_whole_image_pass(model, scene_1024, tmp_path):
    src, data = scene_1024
    reference = whole_image_labels(model.session, data)
    for tile_size in (256, 200):  # 200: cores not aligned with the input's 256 blocks
        out = tmp_path / f"labels_{tile_size}.tif"
        result = predict_scene(model, src, out, tile_size=tile_size, batch_size=3)
        with rasterio.open(out) as ds:
            labels = ds.read(1)
        agreement = float((labels == reference).mean())
        # Tiles are shifted inwards at the border, so even edge pixels see what
        # the whole-image pass sees: identical, not merely close.
        assert agreement >= 0.999
        assert agreement == 1.0
        assert result["tiles"] == int(np.ceil(1024 / tile_size)) ** 2
    assert len(np.unique(reference)) == 3  # the check is not trivial


def test_label_map_format(model, scene_1024, tmp_path):
    src, _ = scene_1024
    out = tmp_path / "out" / "labels.tif"
    result = predict_scene(model, src, out)
    with rasterio.open(src) as s, rasterio.open(out) as ds:
        assert (ds.width, ds.height) == (s.width, s.height)
        assert ds.crs == s.crs
        assert ds.transform == s.transform
        assert ds.count == 1
        assert ds.dtypes[0] == "uint8"
        assert ds.nodata == 0
        assert ds.block_shapes[0] == (512, 512)
        assert ds.compression.value == "LZW"
        assert ds.overviews(1) == [2]
        assert ds.colorinterp[0] == ColorInterp.palette
        cmap = ds.colormap(1)
        assert cmap[0] == (0, 0, 0, 0)
        assert cmap[1] == (0xFF, 0xA5, 0x00, 255)
        assert cmap[2] == (0x4B, 0x00, 0x82, 255)
        tags = ds.tags()
        assert (tags["CLASS_1"], tags["CLASS_2"], tags["CLASS_3"]) == ("ice", "water", "land")
        assert ds.descriptions == ("labels",)
        labels = ds.read(1)
    assert_cog(out)
    counts = np.bincount(labels.ravel(), minlength=4)
    assert result["width"] == result["height"] == 1024
    assert result["pixels"] == 1024 * 1024 == int(counts[1:].sum())
    assert result["class_pixels"] == {"ice": counts[1], "water": counts[2], "land": counts[3]}
    assert result["class_area_m2"]["ice"] == pytest.approx(counts[1] * 100.0)  # 10 m pixels
    assert result["provider"] == "CPUExecutionProvider"
    assert result["seconds"] > 0 and result["mpx_per_s"] > 0
    assert _files(out.parent) == {"labels.tif"}


def test_confidence_and_probabilities(model, scene_1024, tmp_path):
    src, data = scene_1024
    labels_path, conf_path, prob_path = (tmp_path / n for n in ("l.tif", "c.tif", "p.tif"))
    predict_scene(model, src, labels_path, confidence_path=conf_path, probabilities_path=prob_path)
    x = data[:, :64, :64].astype(np.float32)[None]
    ref_conf, ref_prob = model.session.run(["confidence", "probabilities"], {"input": x})
    with rasterio.open(conf_path) as ds:
        assert ds.dtypes[0] == "uint8" and ds.nodata == 0
        assert ds.scales[0] == pytest.approx(1 / 255)
        conf = ds.read(1, window=((0, 62), (0, 62)))  # away from the crop's own border
    assert np.abs(conf / 255.0 - ref_conf[0, :62, :62]).max() <= 0.5 / 255 + 1e-6
    assert conf.min() >= 1
    with rasterio.open(prob_path) as ds:
        assert ds.count == 3 and ds.dtypes[0] == "float32"
        assert ds.descriptions == ("ice", "water", "land")
        prob = ds.read(window=((0, 62), (0, 62)))
    np.testing.assert_allclose(prob, ref_prob[0, :, :62, :62], atol=1e-5)
    for path in (labels_path, conf_path, prob_path):
        assert_cog(path)


def test_nodata_and_background_are_zero(model, tmp_path):
    data = scene_array(600, 500, seed=3)
    data[:, 100:150, 200:260] = 0  # nodata in every band: invalid
    data[2, 10:20, 300:320] = 0  # nodata in one band only: valid (GDAL's dataset mask)
    src = write_scene(tmp_path / "nd.tif", data, nodata=0)
    background = np.zeros((600, 500), dtype=bool)
    background[400:, :50] = True
    out, conf_path = tmp_path / "labels.tif", tmp_path / "conf.tif"
    result = predict_scene(model, src, out, confidence_path=conf_path, background=background)
    with rasterio.open(out) as ds:
        labels = ds.read(1)
    with rasterio.open(conf_path) as ds:
        conf = ds.read(1)
    invalid = background.copy()
    invalid[100:150, 200:260] = True
    assert (labels[invalid] == 0).all()
    assert (labels[~invalid] > 0).all()
    assert (conf[invalid] == 0).all() and (conf[~invalid] > 0).all()
    assert result["pixels"] == int((~invalid).sum())

    # A background raster (nonzero = background) works like the array.
    bg_path = tmp_path / "bg.tif"
    write_scene(bg_path, background[None].astype(np.uint8))
    out2 = tmp_path / "labels2.tif"
    predict_scene(model, src, out2, background=bg_path)
    with rasterio.open(out2) as ds:
        assert np.array_equal(ds.read(1), labels)


def test_nan_pixels_in_float_scene_are_nodata(model, tmp_path):
    data = scene_array(256, 256, seed=4).astype(np.float32)
    data[:, 10:20, 10:20] = np.nan
    src = write_scene(tmp_path / "f.tif", data)
    out = tmp_path / "labels.tif"
    predict_scene(model, src, out)
    with rasterio.open(out) as ds:
        labels = ds.read(1)
    assert (labels[10:20, 10:20] == 0).all()
    # NaN must not spread through the convolutions into valid neighbours.
    assert (labels[:10] > 0).all() and (labels[20:] > 0).all()


def test_scene_not_a_multiple_of_the_tile_size(model, tmp_path):
    data = scene_array(777, 1000, seed=1)
    src = write_scene(tmp_path / "odd.tif", data, tiled=False)
    maps = {}
    for tile_size in (256, 64):
        out = tmp_path / f"odd_{tile_size}.tif"
        result = predict_scene(model, src, out, tile_size=tile_size)
        with rasterio.open(out) as ds:
            assert (ds.width, ds.height) == (1000, 777)
            maps[tile_size] = ds.read(1)
        assert result["pixels"] == 1000 * 777
    # Seams fall elsewhere with another tile size; labels must not change.
    assert np.array_equal(maps[256], maps[64])


def test_tiny_scene_smaller_than_a_tile(model, tmp_path):
    src = write_scene(tmp_path / "tiny.tif", scene_array(5, 3, seed=2), tiled=False)
    out = tmp_path / "labels.tif"
    result = predict_scene(model, src, out)
    assert result["pixels"] == 15 and result["tiles"] == 1


def test_wrong_band_count_is_invalid_argument(model, tmp_path):
    src = write_scene(tmp_path / "3b.tif", scene_array(64, 64)[:3])
    with pytest.raises(InvalidArgument) as err:
        predict_scene(model, src, tmp_path / "labels.tif")
    message = str(err.value)
    assert "3 bands" in message and "expects 4" in message
    assert all(b in message for b in BANDS)
    assert _files(tmp_path) == {"3b.tif"}


def test_geographic_crs_reports_counts_without_area(model, tmp_path):
    src = write_scene(tmp_path / "geo.tif", scene_array(64, 64), crs="EPSG:4326")
    result = predict_scene(model, src, tmp_path / "labels.tif")
    assert result["pixel_area_m2"] is None
    assert sum(result["class_pixels"].values()) == 64 * 64
    assert set(result["class_area_m2"].values()) == {0.0}


def test_cancel_leaves_no_output_and_no_temp_files(model, scene_1024, tmp_path):
    src, _ = scene_1024
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    events = []
    ctx = JobContext()

    def emit(event):
        events.append(event)
        ctx.cancel()  # cancel as soon as the first batch reports progress

    ctx._emit = emit
    with pytest.raises(JobCancelled):
        predict_scene(
            model, src, out_dir / "labels.tif", confidence_path=out_dir / "c.tif",
            batch_size=1, ctx=ctx,
        )
    assert events and events[0].fraction < 0.5
    assert _files(out_dir) == set()


@pytest.mark.timeout(60)
def test_corrupt_input_raises_without_hanging(model, tmp_path):
    src = write_scene(tmp_path / "trunc.tif", scene_array(1024, 1024), tiled=False, compress=None)
    size = src.stat().st_size
    with open(src, "r+b") as f:
        f.truncate(size // 2)  # header intact, second half of the strips gone
    out_dir = tmp_path / "out"
    with pytest.raises(InvalidArgument, match="cannot read raster"):
        predict_scene(model, src, out_dir / "labels.tif", batch_size=2)
    assert not out_dir.exists() or _files(out_dir) == set()


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_quicklook_png(model, scene_1024, tmp_path):
    src, _ = scene_1024
    labels = tmp_path / "labels.tif"
    predict_scene(model, src, labels)
    png = tmp_path / "quick.png"
    size = write_quicklook(labels, png, max_size=300)
    assert size == {"width": 300, "height": 300}
    with rasterio.open(png) as ds:
        assert ds.driver == "PNG" and (ds.width, ds.height) == (300, 300)
        assert ds.colormap(1)[1] == (0xFF, 0xA5, 0x00, 255)
        assert set(np.unique(ds.read(1))) <= {1, 2, 3}
    assert _files(tmp_path) == {"labels.tif", "quick.png"}
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".")]


@pytest.mark.timeout(60)
def test_writer_failure_propagates_and_cleans_up(model, scene_1024, tmp_path, monkeypatch):
    from sipd.inference.writers import SceneWriter

    calls = []
    original = SceneWriter.write

    def failing_write(self, tile, outputs, invalid):
        calls.append(tile.index)
        if len(calls) == 3:
            raise OSError("disk full (injected)")
        original(self, tile, outputs, invalid)

    monkeypatch.setattr(SceneWriter, "write", failing_write)
    src, _ = scene_1024
    with pytest.raises(OSError, match="injected"):
        predict_scene(model, src, tmp_path / "labels.tif", batch_size=1)
    assert _files(tmp_path) == set()


def test_internal_mask_marks_nodata(model, tmp_path):
    src = write_scene(tmp_path / "masked.tif", scene_array(300, 300, seed=5))
    mask = np.full((300, 300), 255, dtype=np.uint8)
    mask[:40, 250:] = 0  # e.g. the no-data wedge of a swath, as a GDAL mask band
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), rasterio.open(src, "r+") as ds:
        ds.write_mask(mask)
    out = tmp_path / "labels.tif"
    predict_scene(model, src, out)
    with rasterio.open(out) as ds:
        labels = ds.read(1)
    assert (labels[mask == 0] == 0).all() and (labels[mask > 0] > 0).all()


def test_several_scenes_in_one_pipeline(model, tmp_path):
    from sipd.inference import SceneRequest, predict_scenes

    sizes = [(300, 520), (777, 1000), (64, 64)]
    srcs = [write_scene(tmp_path / f"s{i}.tif", scene_array(h, w, seed=i))
            for i, (h, w) in enumerate(sizes)]
    out = tmp_path / "out"
    requests = [
        SceneRequest(srcs[0], out / "a.tif", confidence=out / "a_conf.tif"),
        SceneRequest(srcs[1], out / "b.tif", quicklook=out / "b.png"),
        SceneRequest(srcs[2], out / "c.tif", probabilities=out / "c_prob.tif"),
    ]
    events = []
    results = predict_scenes(model, requests, tile_size=256, ctx=JobContext(emit=events.append))
    assert [(r["height"], r["width"]) for r in results] == sizes
    assert _files(out) == {"a.tif", "a_conf.tif", "b.tif", "b.png", "c.tif", "c_prob.tif"}
    # The same labels as one scene at a time.
    for i, req in enumerate(requests):
        alone = tmp_path / f"alone{i}.tif"
        predict_scene(model, req.src, alone, tile_size=256)
        with rasterio.open(alone) as a, rasterio.open(req.dst) as b:
            assert np.array_equal(a.read(1), b.read(1))
        assert results[i]["pixels"] == sizes[i][0] * sizes[i][1]
    fractions = [e.fraction for e in events]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert any(e.message.startswith("scene ") and "/3, " in e.message for e in events)


def test_a_failing_scene_keeps_finished_ones_and_leaves_no_temporaries(model, tmp_path):
    from sipd.inference import SceneRequest, predict_scenes

    good = write_scene(tmp_path / "good.tif", scene_array(256, 256, seed=1))
    bad = write_scene(tmp_path / "bad.tif", scene_array(1024, 1024), tiled=False, compress=None)
    with open(bad, "r+b") as f:
        f.truncate(bad.stat().st_size // 2)
    out = tmp_path / "out"
    out.mkdir()
    requests = [SceneRequest(good, out / "good.tif"), SceneRequest(bad, out / "bad.tif")]
    with pytest.raises(InvalidArgument, match="cannot read raster"):
        predict_scenes(model, requests, tile_size=256)
    assert _files(out) == {"good.tif"}


def test_a_bad_request_is_refused_before_any_work(model, tmp_path):
    from sipd.inference import SceneRequest, predict_scenes

    good = write_scene(tmp_path / "good.tif", scene_array(64, 64))
    three = write_scene(tmp_path / "three.tif", scene_array(64, 64)[:3])
    out = tmp_path / "out"
    with pytest.raises(InvalidArgument, match="3 bands"):
        predict_scenes(
            model, [SceneRequest(good, out / "a.tif"), SceneRequest(three, out / "b.tif")]
        )
    assert not out.exists()


def test_background_raster_and_lazy_mask(model, tmp_path):
    data = scene_array(300, 300, seed=6)
    src = write_scene(tmp_path / "s.tif", data)
    bg = np.zeros((1, 300, 300), np.uint8)
    bg[0, :, :100] = 1
    bg[0, :50, :] = 9  # the mask's own nodata: says nothing
    mask = write_scene(tmp_path / "bg.tif", bg, nodata=9)
    out = tmp_path / "a.tif"
    predict_scene(model, src, out, background=mask)
    with rasterio.open(out) as ds:
        labels = ds.read(1)
    assert (labels[50:, :100] == 0).all()
    assert (labels[:50] > 0).all() and (labels[:, 100:] > 0).all()
    calls = []

    def lazy():
        calls.append(1)
        return np.asarray(bg[0] == 1)

    predict_scene(model, src, tmp_path / "b.tif", background=lazy)
    with rasterio.open(tmp_path / "b.tif") as ds:
        assert (ds.read(1)[50:, :100] == 0).all() and (ds.read(1)[:50] > 0).all()
    assert calls == [1]
