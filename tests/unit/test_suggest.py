"""Ranking of suggested regions (sipd.inference.suggest): a pure function of a grid of
region mean uncertainties and a labeled mask; and the per-region reduction of tiles."""

from __future__ import annotations

import numpy as np
import pytest

from sipd.inference.suggest import RegionSink, labeled_regions, rank_regions
from sipd.inference.tile_loop import normalized_entropy
from sipd.inference.tiling import make_grid


def _grid(seed: int = 0, shape: tuple[int, int] = (8, 10)) -> np.ndarray:
    return np.random.default_rng(seed).random(shape)


def test_the_most_uncertain_region_comes_first_and_order_is_by_uncertainty() -> None:
    u = _grid()
    u[5, 7] = 2.0
    picks = rank_regions(u, np.zeros(u.shape, bool), n=5, min_distance=2)
    assert (picks[0].row, picks[0].col) == (5, 7)
    values = [p.uncertainty for p in picks]
    assert values == sorted(values, reverse=True)
    assert all(p.spread for p in picks)


def test_without_spreading_the_top_n_are_the_n_largest() -> None:
    u = _grid(1)
    picks = rank_regions(u, np.zeros(u.shape, bool), n=7, min_distance=0)
    expected = sorted(u.ravel(), reverse=True)[:7]
    assert [p.uncertainty for p in picks] == pytest.approx(expected)


def test_picks_are_spread_by_the_minimum_distance() -> None:
    # A hot blob: without spreading all picks would be in it.
    u = np.zeros((12, 12))
    u[2:5, 2:5] = 1.0
    u[3, 3] = 1.5
    u[9, 9] = 0.5
    picks = rank_regions(u, np.zeros(u.shape, bool), n=3, min_distance=2.0)
    spread = [p for p in picks if p.spread]
    for i, a in enumerate(spread):
        for b in spread[i + 1 :]:
            assert np.hypot(a.row - b.row, a.col - b.col) >= 2.0
    assert (picks[0].row, picks[0].col) == (3, 3)
    # The far region beats the blob's neighbours of the best one.
    assert (9, 9) in {(p.row, p.col) for p in picks}


def test_labeled_and_invalid_regions_are_never_picked() -> None:
    u = _grid(2, (6, 6))
    u[1, 1] = 5.0
    u[4, 4] = np.nan
    labeled = np.zeros(u.shape, bool)
    labeled[1, 1] = True
    labeled[0, :] = True
    picks = rank_regions(u, labeled, n=36, min_distance=2)
    cells = {(p.row, p.col) for p in picks}
    assert (1, 1) not in cells and (4, 4) not in cells
    assert not any(r == 0 for r, _ in cells)
    # Every other region is returned: spread picks first, then fill-ups.
    assert len(picks) == 36 - 6 - 1 - 1
    flags = [p.spread for p in picks]
    assert flags == sorted(flags, reverse=True) and not all(flags)


def test_n_is_respected_and_fills_up_when_spreading_leaves_too_few() -> None:
    u = _grid(3, (4, 4))
    free = np.zeros(u.shape, bool)
    assert len(rank_regions(u, free, n=3, min_distance=1)) == 3
    assert rank_regions(u, free, n=0, min_distance=1) == []
    # At distance 3 only a few 4x4 regions fit; n=10 is reached with fill-ups.
    picks = rank_regions(u, free, n=10, min_distance=3)
    assert len(picks) == 10 and len({(p.row, p.col) for p in picks}) == 10
    assert sum(p.spread for p in picks) < 10


def test_ranking_is_deterministic_with_ties() -> None:
    u = np.ones((5, 5))
    free = np.zeros(u.shape, bool)
    a = rank_regions(u, free, n=6, min_distance=2)
    b = rank_regions(u.copy(), free.copy(), n=6, min_distance=2)
    assert a == b
    # Ties go to the upper, then the left region.
    assert (a[0].row, a[0].col) == (0, 0) and (a[1].row, a[1].col) == (0, 2)


def test_shapes_must_match() -> None:
    with pytest.raises(ValueError):
        rank_regions(np.zeros((3, 3)), np.zeros((3, 4), bool), n=1, min_distance=0)


def test_rois_mark_the_regions_they_touch() -> None:
    rois = [
        ("POINT (70 10)", 1.0),  # region (0, 1) for size 64
        ("LINESTRING (10 200, 150 200)", 3.0),  # row 3, columns 0..2
        ("POLYGON ((130 70, 140 70, 140 80, 130 80, 130 70))", 0.0),  # (1, 2)
    ]
    mask = labeled_regions(rois, (4, 4), 64)
    expected = np.zeros((4, 4), bool)
    expected[0, 1] = True
    expected[3, 0:3] = True
    expected[1, 2] = True
    assert np.array_equal(mask, expected)


def test_normalized_entropy_is_0_for_certain_and_1_for_uniform() -> None:
    p = np.zeros((3, 1, 3), np.float32)
    p[:, 0, 0] = [1, 0, 0]
    p[:, 0, 1] = 1 / 3
    p[:, 0, 2] = [0.5, 0.5, 0]
    u = normalized_entropy(p)
    assert u[0, 0] == pytest.approx(0.0, abs=1e-6)
    assert u[0, 1] == pytest.approx(1.0, abs=1e-6)
    assert u[0, 2] == pytest.approx(np.log(2) / np.log(3), abs=1e-6)


def test_region_sink_reduces_tiles_to_region_means() -> None:
    h, w, size = 100, 130, 32
    rng = np.random.default_rng(4)
    u = rng.random((h, w)).astype(np.float32)
    labels = rng.integers(1, 4, (h, w)).astype(np.uint8)
    labels[:10, :10] = 0  # unclassified
    grid = make_grid(w, h, 48, 0, 1)
    sink = RegionSink(h, w, size, 3)
    for tile in grid.tiles():
        rows = slice(tile.row, tile.row + tile.height)
        cols = slice(tile.col, tile.col + tile.width)
        sink.write(tile, {"labels": labels[rows, cols], "uncertainty": u[rows, cols]}, None)
    means = sink.grid()
    assert means.shape == (4, 5)
    # Only whole regions inside the scene are candidates: 3 rows x 4 columns.
    assert np.isfinite(means[:3, :4]).all() and np.isnan(means[3]).all()
    assert np.isnan(means[:, 4]).all()
    r, c = 1, 2
    block_u = u[r * size : (r + 1) * size, c * size : (c + 1) * size]
    block_l = labels[r * size : (r + 1) * size, c * size : (c + 1) * size]
    assert means[r, c] == pytest.approx(block_u.mean(), rel=1e-6)
    assert list(sink.classes(r, c)) == list(np.bincount(block_l.ravel(), minlength=4))
    ul = u[:size, :size][labels[:size, :size] != 0]
    assert means[0, 0] == pytest.approx(ul.mean(), rel=1e-6)


def test_geojson_is_in_the_scene_crs_or_in_pixels_without_one() -> None:
    from sipd.inference.suggest import Region, SuggestScene, regions_geojson

    region = Region("a", row=64, col=32, size=32, uncertainty=0.7, class_mix={"x": 1.0},
                    majority_class="x", spread=True, rank=1)  # fmt: skip
    geo = SuggestScene("a", "a.tif", crs="EPSG:32633", transform=(10, 0, 500000, 0, -10, 7000000))
    doc = regions_geojson([region], [geo])
    assert doc["crs"]["properties"]["name"] == "urn:ogc:def:crs:EPSG::32633"
    assert doc["sipd:coordinates"] == "scene"
    xs, ys = zip(*doc["features"][0]["geometry"]["coordinates"][0], strict=True)
    assert (min(xs), max(xs)) == (500320, 500640) and (min(ys), max(ys)) == (6999040, 6999360)
    plain = regions_geojson([region], [SuggestScene("a", "a.tif")])
    assert "crs" not in plain and plain["sipd:coordinates"] == "pixel"
    props = plain["features"][0]["properties"]
    assert props["coordinates"] == "pixel" and (props["row"], props["col"]) == (64, 32)
    xs, ys = zip(*plain["features"][0]["geometry"]["coordinates"][0], strict=True)
    assert (min(xs), max(xs), min(ys), max(ys)) == (32, 64, 64, 96)
