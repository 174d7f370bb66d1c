"""The sparse-click quality benchmark's parts: clicks, mask decoding, polygons, scoring."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin
from scipy import ndimage

from sipd.bench.quality import confusion, score
from sipd.bench.quality_data import (
    DUBAI_COLOURS,
    bbbc_truth,
    clicks_geojson,
    decode_colour_mask,
    full_split,
    mask_geojson,
    pure_pixels,
    sample_clicks,
    subsample,
)
from sipd.labeling.importers import import_rois
from sipd.labeling.rasterize import rasterize_rois


def _blobs(shape: tuple[int, int] = (96, 120), classes: int = 3, seed: int = 0) -> np.ndarray:
    """A truth with irregular regions of 1..classes, holes and a few ignore (0) pixels."""
    rng = np.random.default_rng(seed)
    field = ndimage.gaussian_filter(rng.normal(size=shape), 6)
    edges = np.quantile(field, np.linspace(0, 1, classes + 1)[1:-1])
    truth = (np.digitize(field, edges) + 1).astype(np.uint8)
    truth[rng.random(shape) < 0.002] = 0
    truth[10:14, 20:60] = 0
    return truth


def test_clicks_are_pure_counted_split_four_to_one_and_deterministic() -> None:
    truth = _blobs()
    clicks = sample_clicks(truth, 50, seed=3, image_index=1)
    again = sample_clicks(truth, 50, seed=3, image_index=1)
    assert clicks == again
    assert clicks != sample_clicks(truth, 50, seed=4, image_index=1)
    assert clicks != sample_clicks(truth, 50, seed=3, image_index=2)
    h, w = truth.shape
    for value in (1, 2, 3):
        mine = [c for c in clicks if c.value == value]
        assert len(mine) == 50
        assert len({(c.row, c.col) for c in mine}) == 50  # without replacement
        assert sum(c.split == "val" for c in mine) == 10  # 4 train : 1 val
        for c in mine:
            assert 1 <= c.row < h - 1 and 1 <= c.col < w - 1
            assert (truth[c.row - 1 : c.row + 2, c.col - 1 : c.col + 2] == value).all()
    assert not any(c.value == 0 for c in clicks)


def test_clicks_of_a_small_class_take_what_is_pure() -> None:
    truth = np.ones((40, 40), np.uint8)
    truth[5:8, 5:8] = 2  # one pure pixel: (6, 6)
    truth[20, 20] = 2  # never pure
    assert pure_pixels(truth, 2).sum() == 1
    clicks = sample_clicks(truth, 10, seed=0, image_index=0)
    twos = [(c.row, c.col) for c in clicks if c.value == 2]
    assert twos == [(6, 6)]
    doc = clicks_geojson(clicks, ["a", "b"])
    assert doc["sipd:coordinates"] == "pixel"
    point = next(f for f in doc["features"] if f["properties"]["class"] == "b")
    assert point["geometry"]["coordinates"] == [6.5, 6.5]  # the pixel centre


def _write_png(path: Path, data: np.ndarray, colormap: dict | None = None) -> None:
    profile = {"driver": "PNG", "width": data.shape[2], "height": data.shape[1],
               "count": data.shape[0], "dtype": "uint8"}  # fmt: skip
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(data)
        if colormap:
            ds.write_colormap(1, colormap)


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_dubai_colour_masks_decode_from_rgb_and_palette_png(tmp_path: Path) -> None:
    colours = list(DUBAI_COLOURS)  # 5 classes, grey, black
    ids = np.array([DUBAI_COLOURS[c] for c in colours], np.uint8)
    index = np.arange(28, dtype=np.uint8).reshape(4, 7) % len(colours)
    want = ids[index]
    rgb = np.array(colours, np.uint8)[index]  # rows, cols, 3
    _write_png(tmp_path / "rgb.png", np.moveaxis(rgb, -1, 0))
    assert (decode_colour_mask(tmp_path / "rgb.png") == want).all()
    # Palette PNG (tiles 2 and 4): the index is NOT the class; the colour map decides.
    shuffled = [6, 3, 0, 5, 1, 4, 2]
    cmap = {i: (*colours[shuffled[i]], 255) for i in range(len(colours))}
    inverse = np.argsort(shuffled).astype(np.uint8)
    _write_png(tmp_path / "pal.png", inverse[index][None], colormap=cmap)
    with rasterio.open(tmp_path / "pal.png") as ds:
        assert ds.count == 1
    assert (decode_colour_mask(tmp_path / "pal.png") == want).all()
    # classes.json's display colour for water is not a mask colour: refused, not guessed.
    bad = rgb.copy()
    bad[0, 0] = (0x50, 0xE3, 0xC2)
    _write_png(tmp_path / "bad.png", np.moveaxis(bad, -1, 0))
    with pytest.raises(ValueError, match="#50E3C2"):
        decode_colour_mask(tmp_path / "bad.png")


def test_bbbc_truth_is_two_classes_from_the_red_channel() -> None:
    mask = np.zeros((4, 2, 3), np.uint8)
    mask[3] = 255
    mask[0, 0, :] = [0, 1, 3]  # 1..3 only keep touching nuclei apart
    assert bbbc_truth(mask).tolist() == [[1, 2, 2], [1, 1, 1]]


def test_full_mask_polygons_rasterize_back_to_the_mask(tmp_path: Path) -> None:
    truth = _blobs((80, 64), classes=3, seed=5)
    names = ["c1", "c2", "c3"]
    doc = mask_geojson(truth, names)
    path = tmp_path / "full.geojson"
    path.write_text(json.dumps(doc))
    h, w = truth.shape
    rois = import_rois(path, width=w, height=h, transform=from_origin(0, h, 1, 1), crs="",
                       class_names=names)  # fmt: skip
    masks, report = rasterize_rois(
        rois, width=w, height=h, class_values={n: i + 1 for i, n in enumerate(names)}
    )
    val = full_split(truth.shape)
    assert masks["train"].tolist() == np.where(val, 0, truth).tolist()
    assert masks["val"].tolist() == np.where(val, truth, 0).tolist()
    assert report["conflicting_pixels"] == 0 and report["pixels_in_several_splits"] == 0
    assert 0.15 < val.mean() < 0.25  # 4:1 by rows


def test_score_matches_sklearn() -> None:
    from sklearn.metrics import accuracy_score, cohen_kappa_score, f1_score, jaccard_score

    rng = np.random.default_rng(7)
    truth = rng.integers(0, 5, (60, 70)).astype(np.uint8)  # 0 = ignore
    pred = np.where(rng.random(truth.shape) < 0.6, truth, rng.integers(1, 5, truth.shape))
    pred[truth == 0] = 3  # ignored pixels do not count
    s = score(pred, truth, [1, 2, 3, 4])
    keep = truth != 0
    t, p = truth[keep], pred[keep]
    labels = [1, 2, 3, 4]
    assert s["pixels"] == keep.sum()
    assert s["overall_accuracy"] == pytest.approx(accuracy_score(t, p))
    assert s["kappa"] == pytest.approx(cohen_kappa_score(t, p))
    f1 = f1_score(t, p, labels=labels, average=None)
    iou = jaccard_score(t, p, labels=labels, average=None)
    assert [c["f1"] for c in s["per_class"]] == pytest.approx(f1.tolist())
    assert [c["iou"] for c in s["per_class"]] == pytest.approx(iou.tolist())
    assert s["mean_iou"] == pytest.approx(jaccard_score(t, p, labels=labels, average="macro"))
    # A pixel predicted as nothing (nodata 0) is wrong, and kappa agrees with sklearn's.
    pred[5, 5] = 0
    t2, p2 = truth[keep], pred[keep]
    s2 = score(pred, truth, labels)
    assert s2["overall_accuracy"] == pytest.approx(accuracy_score(t2, p2))
    assert s2["kappa"] == pytest.approx(cohen_kappa_score(t2, p2))
    assert s2["unclassified"] == int(truth[5, 5] != 0)
    assert confusion(pred, truth, labels).sum() == keep.sum()


def test_subsample_spreads_evenly() -> None:
    items = list(range(36))
    assert subsample(items, 0) == items and subsample(items, 50) == items
    picked = subsample(items, 8)
    assert len(picked) == 8 and picked[0] == 0 and picked[-1] == 35


def test_ab_chips_hold_every_click_once_with_its_class_and_split() -> None:
    """quality_ab cuts chips on sipd.dataset's grid, shifted inwards at the right and
    bottom edges, each taking its own cell's labels: no click lost or counted twice."""
    from sipd.bench.quality_ab import chips
    from sipd.bench.quality_data import Dataset, Item
    from sipd.training.data import IGNORE

    truth = _blobs((150, 100), classes=3, seed=3)
    item = Item(name="a", scene=Path("unused.tif"), truth=truth, split="train")
    ds = Dataset(name="t", classes=["c1", "c2", "c3"], items=[item])
    clicks = {"a": sample_clicks(truth, 20, seed=0, image_index=0)}
    image = np.arange(150 * 100, dtype=np.float32).reshape(1, 150, 100)
    x, t, v = chips(ds, {"a": image}, clicks, 64, full=False)
    assert x.shape[1:] == (1, 64, 64) and t.shape == v.shape == (x.shape[0], 64, 64)
    found = sorted(
        (int(x[i, 0, r, c]), int(lab[i, r, c]) + 1, split)
        for split, lab in (("train", t), ("val", v))
        for i, r, c in zip(*np.nonzero(lab != IGNORE), strict=True)
    )
    expected = sorted((k.row * 100 + k.col, k.value, k.split) for k in clicks["a"])
    assert found == expected  # the pixel value is its scene index: each click in place
