"""sipd.synthetic: generated scenes and ROIs the demo, tests and benchmarks rely on."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio

from sipd.errors import InvalidArgument
from sipd.synthetic import burn_rois, class_signatures, make_scene, sample_rois, write_mask


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "int16", "float32"])
def test_scene_is_georeferenced_tiled_and_matches_truth(tmp_path, dtype):
    path = tmp_path / f"scene_{dtype}.tif"
    truth = make_scene(path, width=200, height=150, bands=3, dtype=dtype, seed=4, blocksize=64)
    assert truth.shape == (150, 200) and truth.dtype == np.uint8
    assert set(np.unique(truth)) == {1, 2, 3}
    with rasterio.open(path) as ds:
        assert (ds.width, ds.height, ds.count) == (200, 150, 3)
        assert ds.dtypes[0] == dtype
        assert ds.descriptions == ("B1", "B2", "B3")
        assert ds.crs.to_epsg() == 32633
        assert ds.transform.c == 500000.0 and ds.transform.f == 7000000.0
        assert ds.transform.a == 10.0 and ds.transform.e == -10.0
        assert ds.block_shapes[0] == (64, 64)
        data = ds.read().astype(np.float64)
    # Per-class band means are close to the class signatures: classes differ
    # spectrally, and pixel values follow the truth that was returned.
    means = class_signatures(3, 3, dtype)
    for k in (1, 2, 3):
        observed = data[:, truth == k].mean(axis=1)
        spread = np.ptp(means)
        assert np.all(np.abs(observed - means[k - 1]) < 0.05 * spread)


def test_scene_is_deterministic_by_seed(tmp_path):
    a = make_scene(tmp_path / "a.tif", width=96, height=80, seed=7)
    b = make_scene(tmp_path / "b.tif", width=96, height=80, seed=7)
    c = make_scene(tmp_path / "c.tif", width=96, height=80, seed=8)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    with rasterio.open(tmp_path / "a.tif") as da, rasterio.open(tmp_path / "b.tif") as db:
        assert np.array_equal(da.read(), db.read())


def test_nodata_corner_is_nodata_and_truth_zero(tmp_path):
    path = tmp_path / "nd.tif"
    truth = make_scene(path, width=100, height=100, dtype="uint16", nodata=0, seed=1)
    with rasterio.open(path) as ds:
        assert ds.nodata == 0
        data = ds.read()
    edge = truth == 0
    assert edge[0, 0] and edge.sum() > 0
    assert np.all(data[:, edge] == 0)
    # No valid pixel reads back as nodata.
    assert np.all(data[:, ~edge] != 0)


def test_rejects_unsupported_dtype(tmp_path):
    with pytest.raises(InvalidArgument, match="accepted"):
        make_scene(tmp_path / "x.tif", width=10, height=10, dtype="complex64")


def test_rois_lie_inside_one_class_and_are_sparse(tmp_path):
    truth = make_scene(tmp_path / "s.tif", width=256, height=256, seed=3)
    rois = sample_rois(truth, seed=5, n_lines_per_class=3, n_points_per_class=5)
    assert len(rois) == 3 * (3 + 5)
    assert {r["kind"] for r in rois} == {"line", "point"}
    for r in rois:
        kind = "LINESTRING" if r["kind"] == "line" else "POINT"
        assert r["wkt"].startswith(kind)
    labeled = 0
    for split in ("train", "val", "test"):
        mask = burn_rois(rois, truth.shape, split=split)
        on = mask > 0
        assert on.any(), f"no {split} ROIs"
        assert np.array_equal(mask[on], truth[on])  # labels are correct
        assert set(np.unique(mask[on])) == {1, 2, 3}  # every class in every split
        labeled += int(on.sum())
    assert labeled < 0.005 * truth.size
    again = sample_rois(truth, seed=5, n_lines_per_class=3, n_points_per_class=5)
    assert again == rois


def test_write_mask_matches_scene_grid(tmp_path):
    scene = tmp_path / "s.tif"
    truth = make_scene(scene, width=64, height=48, seed=0)
    write_mask(tmp_path / "m.tif", truth, like=scene)
    with rasterio.open(tmp_path / "m.tif") as m, rasterio.open(scene) as s:
        assert m.transform == s.transform and m.crs == s.crs
        assert np.array_equal(m.read(1), truth)
