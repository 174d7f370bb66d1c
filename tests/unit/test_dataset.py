"""sipd.dataset.prepare_dataset on real GeoTIFF scenes and masks."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest
import rasterio

from sipd.dataset import load_dataset, prepare_dataset
from sipd.errors import FailedPrecondition, InvalidArgument, NotFound
from sipd.progress import JobCancelled, JobContext
from sipd.synthetic import burn_rois, make_scene, sample_rois, write_mask

BANDS = ["B1", "B2", "B3", "B4"]


def make_labeled_scene(folder, name, *, seed, width=160, height=120, nodata=None,
                       splits=("train", "val", "test")):
    """A synthetic scene plus one mask GeoTIFF per split; returns (scene dict, truth)."""
    path = folder / f"{name}.tif"
    truth = make_scene(path, width=width, height=height, seed=seed, nodata=nodata)
    rois = sample_rois(truth, seed=seed, n_lines_per_class=3, n_points_per_class=4)
    masks = {}
    for split in ("train", "val", "test"):
        if split not in splits:
            masks[split] = None
            continue
        masks[split] = str(folder / f"{name}_{split}.tif")
        write_mask(masks[split], burn_rois(rois, truth.shape, split=split), like=path)
    return {"name": name, "path": str(path), "masks": masks}, truth


def read(path):
    with rasterio.open(path) as ds:
        return ds.read()


def test_chips_cover_every_labeled_pixel_and_stats_are_exact(tmp_path):
    a, _ = make_labeled_scene(tmp_path, "a", seed=1)
    b, _ = make_labeled_scene(tmp_path, "b", seed=2, nodata=0)
    # A scene with only test labels contributes no chips and no statistics.
    c, _ = make_labeled_scene(tmp_path, "c", seed=3, splits=("test",))
    events = []
    summary = prepare_dataset([a, b, c], out_dir=tmp_path / "ds", bands=BANDS, chip_size=48,
                              ctx=JobContext(emit=events.append))

    chips, stored = load_dataset(tmp_path / "ds")
    assert stored["dataset_id"] == summary["dataset_id"]
    assert summary["chips"] == chips.image.shape[0] > 0
    assert chips.image.shape[1:] == (4, 48, 48) and chips.image.dtype == np.float32
    assert [s["chips"] for s in summary["scenes"]][2] == 0
    assert summary["chip_size"] == 48

    # Every train/val labeled pixel appears exactly once, nowhere duplicated:
    # per-class counts over chips equal those over the masks.
    for split in ("train", "val"):
        expected: dict[int, int] = {}
        for scene in (a, b):
            m = read(scene["masks"][split])[0]
            img = read(scene["path"])
            m = np.where((img == 0).all(axis=0) & (scene is b), 0, m)  # labels on nodata drop
            for k, n in zip(*np.unique(m[(m > 0) & (m < 255)], return_counts=True),
                            strict=True):
                expected[int(k)] = expected.get(int(k), 0) + int(n)
        assert summary["labeled_pixels"][split] == expected
        assert stored["labeled_pixels"][split] == expected
    labeled_total = sum(summary["labeled_pixels"]["train"].values())
    assert summary["chips"] < labeled_total  # chips group pixels, not one per pixel

    # Labels in the chips sit on the right raw values (the chip's origin is honest).
    img_a = read(a["path"]).astype(np.float32)
    for i in np.flatnonzero(chips.scene == 0)[:3]:
        r0, c0 = chips.origin[i]
        h, w = min(48, img_a.shape[1] - r0), min(48, img_a.shape[2] - c0)
        assert np.array_equal(chips.image[i][:, :h, :w], img_a[:, r0:r0 + h, c0:c0 + w])

    # Normalization: exact mean/std over valid pixels of scenes a and b only.
    pix = [read(a["path"]).reshape(4, -1).astype(np.float64)]
    img_b = read(b["path"]).reshape(4, -1).astype(np.float64)
    pix.append(img_b[:, (img_b != 0).all(axis=0)])
    allpix = np.concatenate(pix, axis=1)
    assert np.allclose(summary["normalization"]["mean"], allpix.mean(axis=1), rtol=1e-9)
    assert np.allclose(summary["normalization"]["std"], allpix.std(axis=1), rtol=1e-9)
    assert [s["normalization"] for s in summary["scenes"]] == [True, True, False]

    on_disk = json.loads((tmp_path / "ds" / "dataset.json").read_text())
    assert on_disk["chips"] == summary["chips"]
    assert not [p for p in (tmp_path / "ds").iterdir() if p.name.startswith(".")]
    fractions = [e.fraction for e in events if e.stage == "prepare"]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0


def test_nodata_pixels_are_filled_with_mean_and_never_labeled(tmp_path):
    scene, _ = make_labeled_scene(tmp_path, "n", seed=5, nodata=0)
    # Label the whole nodata corner as class 1: those labels must be dropped.
    img = read(scene["path"])
    m = read(scene["masks"]["train"])[0]
    m[(img == 0).all(axis=0)] = 1
    write_mask(scene["masks"]["train"], m, like=scene["path"])
    summary = prepare_dataset([scene], out_dir=tmp_path / "ds", bands=BANDS, chip_size=32,
                              ctx=JobContext())
    chips, _ = load_dataset(tmp_path / "ds")
    corner = np.flatnonzero((chips.origin == 0).all(axis=1))[0]
    assert chips.train[corner, 0, 0] == 255
    assert np.allclose(chips.image[corner, :, 0, 0], summary["normalization"]["mean"])


def test_scene_smaller_than_chip_is_padded(tmp_path):
    scene, _ = make_labeled_scene(tmp_path, "s", seed=6, width=40, height=30)
    prepare_dataset([scene], out_dir=tmp_path / "ds", bands=BANDS, chip_size=64,
                    ctx=JobContext())
    chips, summary = load_dataset(tmp_path / "ds")
    assert chips.image.shape == (1, 4, 64, 64)
    assert np.all(chips.train[0, 30:, :] == 0) and np.all(chips.train[0, :, 40:] == 0)
    assert np.allclose(chips.image[0, :, 40:, 40:],
                       np.array(summary["normalization"]["mean"])[:, None, None])


def test_no_train_labels_is_failed_precondition(tmp_path):
    scene, _ = make_labeled_scene(tmp_path, "v", seed=7, splits=("val", "test"))
    with pytest.raises(FailedPrecondition, match="no training pixels.*split train"):
        prepare_dataset([scene], out_dir=tmp_path / "ds", bands=BANDS, ctx=JobContext())
    assert not (tmp_path / "ds").exists()


def test_bad_inputs_name_the_problem(tmp_path):
    scene, _ = make_labeled_scene(tmp_path, "x", seed=8)
    with pytest.raises(InvalidArgument, match="lacks band.*HH"):
        prepare_dataset([scene], out_dir=tmp_path / "ds", bands=["B1", "HH"], ctx=JobContext())
    missing = dict(scene, masks={"train": str(tmp_path / "gone.tif")})
    with pytest.raises(NotFound, match="run mask"):
        prepare_dataset([missing], out_dir=tmp_path / "ds", bands=BANDS, ctx=JobContext())
    other, _ = make_labeled_scene(tmp_path, "y", seed=9, width=50, height=50)
    wrong = dict(scene, masks={"train": other["masks"]["train"]})
    with pytest.raises(InvalidArgument, match="re-run mask"):
        prepare_dataset([wrong], out_dir=tmp_path / "ds", bands=BANDS, ctx=JobContext())


def test_cancel_stops_and_writes_nothing(tmp_path):
    a, _ = make_labeled_scene(tmp_path, "a", seed=1)
    b, _ = make_labeled_scene(tmp_path, "b", seed=2)
    cancel = threading.Event()

    def emit(event):
        if event.message == "chips":  # cancel once chip extraction is under way
            cancel.set()

    ctx = JobContext(emit=emit, cancel_event=cancel)
    with pytest.raises(JobCancelled):
        prepare_dataset([a, b], out_dir=tmp_path / "ds", bands=BANDS, chip_size=32, ctx=ctx)
    assert not (tmp_path / "ds" / "chips.npz").exists()
    assert not (tmp_path / "ds" / "dataset.json").exists()


def test_load_without_prepare_says_what_to_do(tmp_path):
    with pytest.raises(FailedPrecondition, match="run dataset prepare first"):
        load_dataset(tmp_path)
