"""Builders shared by the inference tests: a tiny model folder and synthetic scenes.

No tests here; the model follows models/README.md exactly so the predictor
is tested against the same contract the trainer writes.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import rasterio
import torch
import yaml
from rasterio.transform import from_origin

BANDS = ["B1", "B2", "B3", "B4"]
CLASSES = [
    {"value": 1, "name": "ice", "color": "#ffa500"},
    {"value": 2, "name": "water", "color": "#4b0082"},
    {"value": 3, "name": "land", "color": "#228b22"},
]
MEAN = [1000.0, 1200.0, 900.0, 1500.0]
STD = [300.0, 350.0, 250.0, 400.0]
# Two 3x3 convolutions: each output pixel depends on inputs at most 2 px away.
RECEPTIVE_MARGIN = 2


class TinyNet(torch.nn.Module):
    """Normalization + two 3x3 convs + softmax heads, like the real export."""

    def __init__(self, bands: int, classes: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(MEAN).view(1, bands, 1, 1))
        self.register_buffer("std", torch.tensor(STD).view(1, bands, 1, 1))
        self.conv1 = torch.nn.Conv2d(bands, 8, 3, padding=1)
        self.conv2 = torch.nn.Conv2d(8, classes, 3, padding=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = (x - self.mean) / self.std
        logits = self.conv2(torch.relu(self.conv1(x)))
        probs = torch.softmax(logits, dim=1)
        conf, idx = probs.max(dim=1)
        return (idx + 1).to(torch.uint8), conf, probs


def export_model(
    net: torch.nn.Module, folder: Path, *, tile_size: int, halo: int, multiple: int
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    net.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter announces its deprecation
        torch.onnx.export(
            net,
            torch.zeros(1, len(BANDS), 64, 64),
            str(folder / "model.onnx"),
            dynamo=False,
            opset_version=17,
            input_names=["input"],
            output_names=["labels", "confidence", "probabilities"],
            dynamic_axes={
                "input": {0: "n", 2: "h", 3: "w"},
                "labels": {0: "n", 1: "h", 2: "w"},
                "confidence": {0: "n", 1: "h", 2: "w"},
                "probabilities": {0: "n", 2: "h", 3: "w"},
            },
        )
    # Format 1, as sipd wrote cards before format 2: the predictor tests thus
    # also run every older model folder's card through the upgrader.
    doc = {
        "format": "sipd-model/1",
        "name": "projects/test/models/1",
        "project": "test",
        "version": 1,
        "created": "2026-11-24T00:00:00Z",
        "classes": CLASSES,
        "bands": BANDS,
        "input": {"name": "input", "dtype": "float32", "layout": "NCHW"},
        "outputs": {
            "labels": "labels",
            "confidence": "confidence",
            "probabilities": "probabilities",
        },
        "normalization": {"mean": MEAN, "std": STD},
        "tile": {"size": tile_size, "halo": halo, "multiple": multiple},
        "architecture": {"name": "tiny", "params": {}},
    }
    (folder / "model.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    return folder


def make_tiny_model(folder: Path, tile_size: int = 256, halo: int = 8) -> Path:
    torch.manual_seed(0)
    net = TinyNet(len(BANDS), len(CLASSES))
    with torch.no_grad():
        # Larger weights than the default init, so classes change across the
        # image and tile seams would show.
        net.conv1.weight.mul_(3.0)
    return export_model(net, folder, tile_size=tile_size, halo=halo, multiple=8)


def scene_array(height: int, width: int, seed: int = 0) -> np.ndarray:
    """uint16 [4, H, W]: smooth blobs plus noise, around the model's mean."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    bands = []
    for b in range(len(BANDS)):
        fy, fx = rng.uniform(0.005, 0.03, 2)
        base = np.sin(yy * fy + b) * np.cos(xx * fx - b)
        noise = rng.normal(0, 0.3, (height, width))
        bands.append(MEAN[b] + STD[b] * (base + noise))
    return np.clip(np.stack(bands), 1, 65535).astype(np.uint16)


def write_scene(
    path: Path,
    data: np.ndarray,
    *,
    nodata: float | None = None,
    crs: str = "EPSG:32633",
    tiled: bool = True,
    compress: str | None = "deflate",
) -> Path:
    count, height, width = data.shape
    profile = {
        "driver": "GTiff",
        "width": width,
        "height": height,
        "count": count,
        "dtype": data.dtype.name,
        "crs": crs,
        "transform": from_origin(500000, 7000000, 10, 10),
        "nodata": nodata,
    }
    if tiled:
        profile.update(tiled=True, blockxsize=256, blockysize=256)
    if compress:
        profile["compress"] = compress
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(data)
    return path


def whole_image_labels(session, data: np.ndarray) -> np.ndarray:
    """One forward pass over the whole scene (the reference tiling must match)."""
    x = data.astype(np.float32)[None]
    return session.run(["labels"], {"input": x})[0][0]
