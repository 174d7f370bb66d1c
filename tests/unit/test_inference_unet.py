"""The default architecture through the real exporter: seamless tiles, the halo it needs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
import yaml

from sipd.bench.throughput import make_model, write_synthetic_scene
from sipd.inference import load_model, predict_scene
from sipd.nets import DEFAULT_NET, build_net
from sipd.training.train import tile_defaults


@pytest.fixture(scope="module")
def unet_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_model(tmp_path_factory.mktemp("unet") / "model", bands=4, classes=3)


def test_model_folder_records_the_seamless_halo(unet_dir):
    card = yaml.safe_load((unet_dir / "model.yaml").read_text())
    assert card["architecture"] == {
        "name": "unet", "params": {"base_channels": 16, "depth": 3, "bank_sigmas": [1.0, 3.5]}}
    # Margin 51 + 21 (the bank at sigma 3.5) for a pixel anywhere; 46 + 21 across the edge
    # of a grid-aligned tile -> 72.
    assert card["tile"] == {"size": 1024, "halo": 72, "multiple": 8}


def test_default_unet_tiled_prediction_equals_whole_image_pass(unet_dir, tmp_path):
    src = tmp_path / "scene.tif"
    write_synthetic_scene(src, 1024, 4)
    model = load_model(unet_dir)
    with rasterio.open(src) as ds:
        x = ds.read().astype(np.float32)[None]
    reference = model.session.run(["labels"], {"input": x})[0][0]
    assert min(np.bincount(reference.ravel(), minlength=4)[1:]) > 0.02 * reference.size
    for tile_size in (256, 200):  # 16 and 36 tiles: many seams, 200 off the input's blocks
        out = tmp_path / f"labels_{tile_size}.tif"
        result = predict_scene(model, src, out, tile_size=tile_size)
        assert result["tiles"] > 1 and result["tile_shape"][0] == result["tile_shape"][1]
        with rasterio.open(out) as ds:
            labels = ds.read(1)
        agreement = float((labels == reference).mean())
        assert agreement >= 0.999, agreement
        # The halo covers the whole receptive field: nothing but float rounding may differ.
        assert agreement == 1.0, agreement


@pytest.mark.parametrize("depth", [2, 3])
def test_halo_is_the_smallest_that_is_exact(depth):
    """In float64, a grid-aligned crop's core equals the whole-image result with the
    recorded halo and differs with one size multiple less."""
    torch.manual_seed(depth)
    net = build_net(DEFAULT_NET, 4, 3, depth=depth).double().eval()
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):  # non-trivial statistics
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    tile = tile_defaults(net, 256)
    halo, multiple = tile["halo"], tile["multiple"]
    x = torch.randn(1, 4, 384, 384, dtype=torch.float64)
    start, size = 64, 256  # on the pooling grid
    with torch.no_grad():
        full = net(x)
        crop = net(x[:, :, start : start + size, start : start + size])

    def core_diff(h: int) -> float:
        inner = slice(h, size - h)
        outer = slice(start + h, start + size - h)
        return float((crop[:, :, inner, inner] - full[:, :, outer, outer]).abs().max())

    assert core_diff(halo) == 0.0
    assert core_diff(halo - multiple) > 0.0
