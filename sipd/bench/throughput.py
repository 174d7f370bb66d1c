"""The measurements behind `sipctl bench`, one per child process.

    python -m sipd.bench.throughput prepare  --dir DIR --size N [--bands 4]
                                             [--classes 3]
    python -m sipd.bench.throughput sipd     --model M --scene S --out O [--tile T]
                                             [--batch B] [--threads N] [--io-threads N]
    python -m sipd.bench.throughput baseline --model M --scene S --out O [--tile T]
    python -m sipd.bench.throughput compare  A B

Each prints one JSON line. `sipctl bench` runs every measurement in a fresh
process, so its peak RSS (VmHWM) and CPU time are that measurement's alone,
and the predictor's process never imports torch.

`prepare` writes, unless already there, a synthetic scene (uint16, tiled
512 px, DEFLATE, like a preprocessed scene; written block by block) and a
model folder of the default architecture with seeded random weights (and
BatchNorm statistics measured on the synthetic data, so the map is not one
class), exported by the real exporter: speed does not depend on training.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.transform import from_origin
from rasterio.windows import Window

from sipd.errors import SipError
from sipd.modelrepo import ModelCard, dump_card, read_card, version_name
from sipd.modelrepo.layout import CARD_FILE, GRAPH_FILE
from sipd.raster import atomic_path

MODEL_DIR = "model"  # under --dir


def write_synthetic_scene(path: Path, size: int, bands: int, block: int = 512) -> None:
    """A size x size uint16 scene written block by block (bounded memory), atomically."""
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
    with atomic_path(path) as tmp, rasterio.open(tmp, "w", **profile) as ds:
        for r in range(0, size, block):
            for c in range(0, size, block):
                h, w = min(block, size - r), min(block, size - c)
                ds.write(_synthetic_block(rng, bands, r, c, h, w), window=Window(c, r, w, h))


def _synthetic_block(
    rng: np.random.Generator, bands: int, r: int, c: int, h: int, w: int
) -> np.ndarray:
    yy, xx = np.mgrid[r : r + h, c : c + w]
    smooth = 400 * np.sin(yy / 97.0)[None] * np.cos(xx / 61.0)[None]
    tilt = 150 * np.arange(bands).reshape(-1, 1, 1) * np.sin(xx / 173.0)[None]
    data = 1000 + smooth + tilt + rng.normal(0, 150, (bands, h, w))
    return np.clip(data, 0, 65535).astype(np.uint16)


def synthetic_statistics(bands: int) -> tuple[list[float], list[float]]:
    """Per-band mean and std of the synthetic scenes (from a 1024 px sample)."""
    sample = _synthetic_block(np.random.default_rng(1), bands, 0, 0, 1024, 1024).astype(np.float64)
    return sample.mean(axis=(1, 2)).tolist(), sample.std(axis=(1, 2)).tolist()


def make_model(folder: Path, bands: int, classes: int, seed: int = 0) -> Path:
    """A model folder of the default architecture with seeded random weights.

    Exported with the trainer's exporter, checked against torch, tile and
    halo from the trainer's defaults: a real model folder, only not trained.
    The folder is written in place (it is the bench's scratch model, not a
    published version); its card says projects/bench/models/1.
    """
    # Imported here: the predictor's measurement runs in a process that must
    # not load torch (its peak memory is part of what the bench reports).
    import torch

    from sipd.nets import DEFAULT_NET, build_net
    from sipd.training.checkpoint import FILE, checkpoint_payload
    from sipd.training.onnx_export import INPUT, OUTPUTS, check_onnx_export, export_onnx
    from sipd.training.train import tile_defaults

    mean, std = synthetic_statistics(bands)
    band_names = [f"B{i + 1}" for i in range(bands)]
    palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b"]
    class_list = [
        {"value": i + 1, "name": f"class{i + 1}", "color": palette[i % len(palette)]}
        for i in range(classes)
    ]
    torch.manual_seed(seed)
    net = build_net(DEFAULT_NET, bands, classes)
    _calibrate_batchnorm(net, mean, std)
    folder.mkdir(parents=True, exist_ok=True)
    export_onnx(net, mean, std, folder / GRAPH_FILE)
    check = check_onnx_export(net, mean, std, folder / GRAPH_FILE)
    torch.save(
        checkpoint_payload(
            net, net.state_dict(), arch=DEFAULT_NET, in_channels=bands, num_classes=classes,
            normalization={"mean": mean, "std": std}, bands=band_names, classes=class_list,
        ),
        folder / FILE,
    )
    card = ModelCard(
        name=version_name("bench", 1),
        project="bench",
        version=1,
        created=dt.datetime.now(dt.UTC).replace(microsecond=0),
        classes=class_list,
        bands=band_names,
        input={"name": INPUT, "dtype": "float32", "layout": "NCHW"},
        outputs={name: name for name in OUTPUTS},
        normalization={"mean": mean, "std": std},
        tile=tile_defaults(net),
        architecture={"name": DEFAULT_NET, "params": dict(net.hparams)},
        training={"note": f"benchmark model: random weights (seed {seed}), not trained"},
        onnx_check=check,
    )
    with atomic_path(folder / CARD_FILE) as tmp:
        tmp.write_text(dump_card(card), encoding="utf-8")
    return folder


def _calibrate_batchnorm(net: Any, mean: list[float], std: list[float]) -> None:
    """BatchNorm statistics from one synthetic chip, then eval mode.

    With untouched statistics a random net gives nearly the same logits
    everywhere (a one-class map, which would make the label comparison with
    the baseline trivial); measured statistics make the map vary like a real one.
    """
    import torch

    bands = len(mean)
    chip = _synthetic_block(np.random.default_rng(2), bands, 0, 0, 512, 512).astype(np.float32)
    x = (torch.from_numpy(chip) - torch.tensor(mean).view(-1, 1, 1)) / torch.tensor(std).view(
        -1, 1, 1
    )
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = None  # a plain average over what it sees
            m.reset_running_stats()
    net.train()
    with torch.no_grad():
        net(x[None].float())
    net.eval()


def prepare(folder: Path, size: int, bands: int, classes: int) -> dict[str, Any]:
    folder.mkdir(parents=True, exist_ok=True)
    scene = folder / f"scene_{size}x{size}x{bands}.tif"
    model = folder / MODEL_DIR
    made = []
    if not scene.is_file():
        write_synthetic_scene(scene, size, bands)
        made.append("scene")
    if _model_mismatch(model, bands, classes):
        make_model(model, bands, classes)
        made.append("model")
    return {"scene": str(scene), "model": str(model), "made": made}


def _model_mismatch(model: Path, bands: int, classes: int) -> bool:
    """True unless `model` holds a readable card for this many bands and classes."""
    try:
        card = read_card(model)
    except SipError:
        return True  # missing, or written by another sipd: make a fresh one
    return len(card.bands) != bands or len(card.classes) != classes


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def peak_rss_mb() -> float:
    """This process's peak resident set (VmHWM), in MB."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def _measure(run: Any, pixels: int) -> dict[str, Any]:
    cpu0, t0 = cpu_seconds(), time.perf_counter()
    detail = run()
    seconds = time.perf_counter() - t0
    cpu = cpu_seconds() - cpu0
    mpx = pixels / 1e6
    return {
        "seconds": round(seconds, 3),
        "mpx_per_s": round(mpx / seconds, 3),
        "cpu_s": round(cpu, 2),
        # Does not depend on what else runs on the machine (unlike wall time):
        # cores / cpu_s_per_mpx is what an idle machine would reach.
        "cpu_s_per_mpx": round(cpu / mpx, 3),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "detail": detail,
    }


def _pixels(scene: str) -> int:
    with rasterio.open(scene) as ds:
        return ds.width * ds.height


def measure_sipd(args: argparse.Namespace) -> dict[str, Any]:
    # The worker bounds GDAL's block cache the same way (inference.gdal_cache_mb).
    os.environ.setdefault("GDAL_CACHEMAX", str(args.gdal_cache_mb))
    from sipd.inference.predictor import predict_scene
    from sipd.inference.sessions import load_model

    t0 = time.perf_counter()
    model = load_model(args.model, device=args.device, intra_op_threads=args.threads)
    load_s = time.perf_counter() - t0
    batch = args.batch or (4 if model.on_gpu else 1)

    def run() -> dict[str, Any]:
        result = predict_scene(
            model, args.scene, args.out, tile_size=args.tile, batch_size=batch,
            io_threads=args.io_threads,
        )
        return {k: result[k] for k in ("tiles", "tile_shape", "provider", "timing")}

    out = _measure(run, _pixels(args.scene))
    out["load_s"] = round(load_s, 3)
    out["batch"] = batch
    return out


def measure_baseline(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from sipd.bench.baseline import predict_naive

    pixels = _pixels(args.scene)
    out = _measure(
        lambda: predict_naive(
            args.model, args.scene, args.out, tile_size=args.tile, device=args.device
        ),
        pixels,
    )
    out["torch_threads"] = torch.get_num_threads()
    return out


def compare(a: str, b: str) -> dict[str, Any]:
    """Share of pixels with the same label in two label maps (read block by block)."""
    same = total = 0
    with rasterio.open(a) as da, rasterio.open(b) as db:
        if (da.width, da.height) != (db.width, db.height):
            raise SystemExit(f"{a} and {b} differ in size")
        for row in range(0, da.height, 1024):
            window = Window(0, row, da.width, min(1024, da.height - row))
            x, y = da.read(1, window=window), db.read(1, window=window)
            same += int(np.count_nonzero(x == y))
            total += x.size
    return {"agreement": same / total, "pixels": total, "differing": total - same}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m sipd.bench.throughput",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="cmd", required=True)
    q = sub.add_parser("prepare")
    q.add_argument("--dir", type=Path, required=True)
    q.add_argument("--size", type=int, required=True)
    q.add_argument("--bands", type=int, default=4)
    q.add_argument("--classes", type=int, default=3)
    for name in ("sipd", "baseline"):
        q = sub.add_parser(name)
        q.add_argument("--model", required=True)
        q.add_argument("--scene", required=True)
        q.add_argument("--out", required=True)
        q.add_argument("--tile", type=int, default=None, help="tile size (default: the model's)")
        q.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
        if name == "sipd":
            q.add_argument("--batch", type=int, default=0, help="0: 1 on CPU, 4 on GPU")
            q.add_argument("--threads", type=int, default=0, help="onnxruntime intra-op threads")
            q.add_argument("--io-threads", type=int, default=1, help="reader threads")
            q.add_argument("--gdal-cache-mb", type=int, default=256)
    q = sub.add_parser("compare")
    q.add_argument("a")
    q.add_argument("b")
    args = p.parse_args(argv)
    if args.cmd == "prepare":
        result = prepare(args.dir, args.size, args.bands, args.classes)
    elif args.cmd == "sipd":
        result = measure_sipd(args)
    elif args.cmd == "baseline":
        result = measure_baseline(args)
    else:
        result = compare(args.a, args.b)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
