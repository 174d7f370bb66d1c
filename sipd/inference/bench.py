"""Prediction benchmark: speed and memory of predict_scene on a synthetic scene.

    python -m sipd.inference.bench MODEL_DIR [--size 5000] [--tile 512] [--batch 4]
        [--threads 0] [--io-threads 1] [--confidence] [--keep DIR]

Writes a random scene with the model's band count (uint16, tiled, DEFLATE,
like a preprocessed scene), predicts it, and prints one JSON line: seconds,
Mpx/s, the read/infer/write/COG split and peak RSS (before and after).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.transform import from_origin
from rasterio.windows import Window

from sipd.inference.engine import load_model
from sipd.inference.predictor import predict_scene


def write_synthetic_scene(path: Path, size: int, bands: int, block: int = 512) -> None:
    """A size x size uint16 scene written block by block (bounded memory)."""
    rng = np.random.default_rng(0)
    profile = {
        "driver": "GTiff",
        "width": size,
        "height": size,
        "count": bands,
        "dtype": "uint16",
        "crs": "EPSG:32633",
        "transform": from_origin(500000, 7000000, 10, 10),
        "tiled": True,
        "blockxsize": block,
        "blockysize": block,
        "compress": "deflate",
        "BIGTIFF": "IF_SAFER",
    }
    with rasterio.open(path, "w", **profile) as ds:
        for r in range(0, size, block):
            for c in range(0, size, block):
                h, w = min(block, size - r), min(block, size - c)
                yy, xx = np.mgrid[r : r + h, c : c + w]
                smooth = 400 * np.sin(yy / 97.0)[None] * np.cos(xx / 61.0)[None]
                data = 1000 + smooth + rng.normal(0, 150, (bands, h, w))
                ds.write(np.clip(data, 0, 65535).astype(np.uint16), window=Window(c, r, w, h))


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def peak_rss_mb() -> float:
    # ru_maxrss is KiB on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run(args: argparse.Namespace) -> dict[str, Any]:
    model = load_model(
        args.model,
        device=args.device,
        intra_op_threads=args.threads,
        allow_spinning=args.spin,
    )
    with tempfile.TemporaryDirectory(dir=args.keep) as tmp:
        folder = Path(tmp)
        scene = folder / "scene.tif"
        write_synthetic_scene(scene, args.size, len(model.bands))
        rss_before = peak_rss_mb()
        kwargs: dict[str, Any] = {
            "tile_size": args.tile,
            "batch_size": args.batch,
            "io_threads": args.io_threads,
        }
        if args.confidence:
            kwargs["confidence_path"] = folder / "confidence.tif"
        cpu0 = cpu_seconds()
        result = predict_scene(model, scene, folder / "labels.tif", **kwargs)
        cpu = cpu_seconds() - cpu0
    result.pop("class_pixels", None)
    result.pop("class_area_m2", None)
    result.update(
        model=str(args.model),
        size=args.size,
        batch=args.batch,
        threads=args.threads,
        # CPU seconds per Mpx does not depend on what else runs on the machine;
        # 2 cores / this figure is the Mpx/s an idle 2-core machine would reach.
        cpu_s=round(cpu, 2),
        cpu_s_per_mpx=round(cpu / (args.size * args.size / 1e6), 3),
        peak_rss_mb_before=round(rss_before, 1),
        peak_rss_mb=round(peak_rss_mb(), 1),
    )
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m sipd.inference.bench", description=__doc__)
    p.add_argument("model", type=Path, help="model folder (model.onnx + model.yaml)")
    p.add_argument("--size", type=int, default=5000, help="scene edge in pixels")
    p.add_argument("--tile", type=int, default=None, help="tile size (default: the model's)")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--threads", type=int, default=0, help="onnxruntime intra-op threads")
    p.add_argument("--io-threads", type=int, default=1, help="reader threads")
    p.add_argument("--device", default="cpu")
    p.add_argument("--spin", action="store_true", help="let onnxruntime threads spin")
    p.add_argument("--confidence", action="store_true", help="also write a confidence map")
    p.add_argument("--keep", default=None, help="folder for the temporary scene")
    print(json.dumps(run(p.parse_args(argv))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
