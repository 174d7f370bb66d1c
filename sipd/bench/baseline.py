"""The naive baseline `sipctl bench` compares sipd's predictor with.

What a straightforward script does with a trained net: torch eager on the
CPU, the whole scene read into memory with rasterio, a plain loop over tiles
(the same tiles and halo as sipd, so the labels are comparable), argmax, and
the label GeoTIFF written at the end. Nothing overlaps: reading, computing
and writing happen one after the other, and memory grows with the scene.

It uses torch's defaults as a careful user would (eval mode, inference
mode, torch's own thread count); it is the same net with the same weights
(the model folder's checkpoint.pt), not a handicapped one.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import rasterio
import torch

from sipd.device import torch_device
from sipd.inference.model_view import read_model_spec
from sipd.inference.tiling import make_grid
from sipd.training.checkpoint import load_checkpoint


def predict_naive(
    model_dir: str | os.PathLike[str],
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    *,
    tile_size: int | None = None,
    device: str = "cpu",
) -> dict[str, Any]:
    """Label map of `src` at `dst` (uint8 GeoTIFF, 1..K) the straightforward way.

    `device` "cuda[:N]" runs the net there (the scene stays in host memory).
    """
    spec = read_model_spec(model_dir)
    net, _ = load_checkpoint(model_dir)
    dev = torch_device(device)
    net = net.to(dev)
    mean = torch.tensor(spec.mean, dtype=torch.float32).view(-1, 1, 1)
    std = torch.tensor(spec.std, dtype=torch.float32).view(-1, 1, 1)
    with rasterio.open(src) as ds:
        image = ds.read().astype(np.float32)
        profile = ds.profile
    bands, height, width = image.shape
    x = (torch.from_numpy(image) - mean) / std
    tile = spec.tile
    grid = make_grid(width, height, tile_size or tile.size, tile.halo, tile.multiple)
    labels = np.zeros((height, width), dtype=np.uint8)
    with torch.inference_mode():
        for t in grid.tiles():
            r0, c0 = int(t.read.row_off), int(t.read.col_off)
            crop = x[:, r0 : r0 + int(t.read.height), c0 : c0 + int(t.read.width)]
            if t.pad != (0, 0):  # the scene's last rows/columns up to the size multiple
                crop = torch.nn.functional.pad(crop[None], (0, t.pad[1], 0, t.pad[0]), "reflect")[0]
            logits = net(crop[None].to(dev))[0]
            pred = (logits.argmax(dim=0) + 1).to(torch.uint8).cpu().numpy()
            oy, ox = t.offset
            labels[t.row : t.row + t.height, t.col : t.col + t.width] = pred[
                oy : oy + t.height, ox : ox + t.width
            ]
    profile.update(count=1, dtype="uint8", nodata=0)
    with rasterio.open(dst, "w", **profile) as out:
        out.write(labels, 1)
    return {"width": width, "height": height, "tiles": len(grid)}
