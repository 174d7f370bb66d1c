"""The pieces of `sipctl bench`: synthetic data, the bench model, the naive baseline."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio

from sipd.bench.baseline import predict_naive
from sipd.bench.throughput import compare, prepare, write_synthetic_scene
from sipd.inference import load_model, predict_scene


@pytest.fixture(scope="module")
def bench_dir(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("bench")
    info = prepare(folder, 500, 4, 3)
    assert info["made"] == ["scene", "model"]
    return folder, info


def test_prepare_reuses_what_is_there(bench_dir):
    folder, info = bench_dir
    again = prepare(folder, 500, 4, 3)
    assert again["made"] == [] and again["scene"] == info["scene"]
    assert sorted(p.name for p in folder.iterdir()) == ["model", "scene_500x500x4.tif"]


def test_synthetic_scene_is_tiled_compressed_uint16(tmp_path):
    path = tmp_path / "s.tif"
    write_synthetic_scene(path, 700, 3)
    with rasterio.open(path) as ds:
        assert (ds.width, ds.height, ds.count, ds.dtypes[0]) == (700, 700, 3, "uint16")
        assert ds.block_shapes[0] == (512, 512) and ds.compression.value == "DEFLATE"
        data = ds.read()
    assert data.std(axis=(1, 2)).min() > 50  # structure, not a constant
    assert [p.name for p in tmp_path.iterdir()] == ["s.tif"]


def test_naive_baseline_gives_the_predictors_labels(bench_dir, tmp_path):
    folder, info = bench_dir
    ours, theirs = tmp_path / "ours.tif", tmp_path / "theirs.tif"
    predict_scene(load_model(info["model"]), info["scene"], ours, tile_size=256)
    detail = predict_naive(info["model"], info["scene"], theirs, tile_size=256)
    assert detail == {"width": 500, "height": 500, "tiles": 4}
    result = compare(str(ours), str(theirs))
    assert result["pixels"] == 500 * 500 and result["agreement"] >= 0.999
    with rasterio.open(theirs) as ds:
        labels = ds.read(1)
    counts = np.bincount(labels.ravel(), minlength=4)
    assert counts[0] == 0 and (counts[1:] > 0.01 * labels.size).all()  # a map, not one class
