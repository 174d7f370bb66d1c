"""train: a prepared dataset -> a model version folder (models/README.md)."""

from __future__ import annotations

import json
import math
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sipd.dataset import load_dataset
from sipd.errors import FailedPrecondition, InvalidArgument
from sipd.nets import build_net
from sipd.nets.unet import UNet
from sipd.progress import JobContext
from sipd.training import data as training_data
from sipd.training.checkpoint import FILE as CHECKPOINT_FILE
from sipd.training.checkpoint import checkpoint_payload
from sipd.training.device import resolve_device
from sipd.training.loop import STAGE, FitConfig, fit
from sipd.training.model_folder import MODEL_FORMAT, publish, staging_folder, write_yaml
from sipd.training.onnx_export import INPUT, OUTPUTS, check_onnx_export, export_onnx

# An "epoch" is at least this many optimizer steps (see data.epoch_batches).
MIN_STEPS_PER_EPOCH = 4
# Default tile edge written into model.yaml. On a CPU, 1024 px tiles with the
# default U-Net's 48 px halo spend 1.2x the scene's pixels on overlap (512 px
# tiles: 1.4x) while one tile's activations stay well under 1 GB.
DEFAULT_TILE_SIZE = 1024


def train_model(
    *,
    dataset_dir: str | Path,
    models_root: str | Path,
    project: str,
    classes: list[dict[str, Any]],
    bands: list[str],
    arch: str = "unet",
    arch_params: dict[str, Any] | None = None,
    epochs: int = 30,
    batch_size: int = 16,
    learning_rate: float = 2e-3,
    seed: int = 0,
    class_weights: list[float] | str | None = None,
    augment: bool = True,
    patience: int | None = 8,
    tile_size: int = DEFAULT_TILE_SIZE,
    ctx: JobContext,
) -> dict[str, Any]:
    """Train a net on a prepared dataset and publish models_root/<version>/.

    Selection and early stopping use val accuracy (train accuracy when the
    dataset has no val labels); patience=None disables early stopping.
    `seed` makes CPU runs repeatable. See models/README.md for the folder.
    """
    started = time.time()
    classes = _check_classes(classes)
    _check_hyper(epochs, batch_size, learning_rate, patience, tile_size)
    chips, summary = load_dataset(dataset_dir)
    if list(summary["bands"]) != list(bands):
        raise FailedPrecondition(
            f"the dataset in {dataset_dir} was prepared for bands {summary['bands']} but the "
            f"project uses {list(bands)}; run dataset prepare again"
        )
    if not summary["labeled_pixels"].get("train"):
        raise FailedPrecondition(
            "no training pixels in the prepared dataset; add ROIs with split train, "
            "then run mask and dataset prepare again"
        )
    norm = summary["normalization"]
    num_classes = len(classes)
    net_params = dict(arch_params or {})
    log = _Log(ctx)
    device = resolve_device(ctx.device, ctx.log)

    with torch.random.fork_rng(devices=_rng_devices(device)):
        # Seeds everything the run draws from: weight init and dropout (torch),
        # data order and augmentation (numpy), python's random for good measure.
        random.seed(seed)
        torch.manual_seed(seed)
        rng = np.random.default_rng(seed)
        net = build_net(arch, len(bands), num_classes, **net_params)
        tile = tile_defaults(net, tile_size)
        data = training_data.build(chips, norm["mean"], norm["std"], num_classes,
                                   net.size_multiple)
        weight = training_data.class_weights(data, class_weights)
        selection = "val_accuracy" if data.has_val else "train_accuracy"
        log.header(arch, net.hparams, summary, data, device, selection, patience)
        cfg = FitConfig(epochs, batch_size, learning_rate, patience, augment,
                        MIN_STEPS_PER_EPOCH)

        def on_epoch(row: dict[str, Any], best: bool) -> None:
            log.epoch(row, epochs, best)
            metrics = {k: float(row[k]) for k in
                       ("epoch", "loss", "train_accuracy", "val_accuracy", "val_loss")
                       if row[k] is not None}
            ctx.progress(STAGE, row["epoch"] / epochs, f"epoch {row['epoch']}/{epochs}",
                         metrics=metrics)

        result = fit(net, data, weight, cfg, device=device, rng=rng, ctx=ctx,
                     on_epoch=on_epoch)
    log.footer(result, len(result.history), patience, selection)

    ctx.check_cancelled()
    ctx.progress("export", 0.0, "exporting ONNX", force=True)
    net.to("cpu").load_state_dict(result.best_state)
    net.eval()
    seconds = round(time.time() - started, 3)
    models_root = Path(models_root)
    with staging_folder(models_root) as stage:
        export_onnx(net, norm["mean"], norm["std"], stage / "model.onnx")
        onnx_check = check_onnx_export(net, norm["mean"], norm["std"], stage / "model.onnx")
        log.line(f"# onnx check: max |probability difference| {onnx_check['max_abs_diff']:.3g}")
        torch.save(
            checkpoint_payload(
                net, result.best_state, arch=arch, in_channels=len(bands),
                num_classes=num_classes, best_epoch=result.best_epoch,
                normalization={"mean": norm["mean"], "std": norm["std"]},
                bands=list(bands), classes=classes,
            ),
            stage / CHECKPOINT_FILE,
        )
        train_metrics = {
            "history": result.history,
            "best_epoch": result.best_epoch,
            "best_val_accuracy": result.best_val_accuracy,
            "selection": selection,
            "seconds": seconds,
        }
        (stage / "metrics.json").write_text(json.dumps({"train": train_metrics}, indent=2) + "\n")
        (stage / "train.log").write_text("\n".join(log.lines) + "\n")
        card = {
            "classes": classes, "bands": list(bands), "normalization": norm, "tile": tile,
            "arch": arch, "params": dict(net.hparams), "summary": summary,
            "weights": [round(float(w), 6) for w in weight],
            "training": dict(
                epochs=epochs, epochs_run=len(result.history), best_epoch=result.best_epoch,
                seed=seed, batch_size=batch_size, learning_rate=learning_rate,
                augment=augment, patience=patience, device=str(device), selection=selection,
            ),
            "onnx_check": onnx_check,
        }

        def write_card(version: int) -> None:
            write_yaml(stage / "model.yaml", _model_yaml(project, version, card))

        ctx.check_cancelled()
        version = publish(stage, models_root, write_card)
    ctx.progress("export", 1.0, f"model version {version}", force=True)
    model_dir = models_root / str(version)
    ctx.log.info("model %s written to %s", version, model_dir)
    return {
        "model": f"projects/{project}/models/{version}",
        "version": version,
        "model_dir": str(model_dir),
        "epochs_run": len(result.history),
        "best_epoch": result.best_epoch,
        "best_val_accuracy": result.best_val_accuracy,
        "history": result.history,
        "onnx_max_abs_diff": onnx_check["max_abs_diff"],
        "seconds": round(time.time() - started, 3),
    }


def _model_yaml(project: str, version: int, card: dict[str, Any]) -> dict[str, Any]:
    names = {c["value"]: c["name"] for c in card["classes"]}
    labeled = card["summary"]["labeled_pixels"]
    training = {
        **card["training"],
        "class_weights": card["weights"],
        "scenes": [s["name"] for s in card["summary"]["scenes"]],
        "labeled_pixels": {
            split: {names.get(k, str(k)): n for k, n in labeled.get(split, {}).items()}
            for split in ("train", "val")
        },
    }
    return {
        "format": MODEL_FORMAT,
        "name": f"projects/{project}/models/{version}",
        "project": project,
        "version": version,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "classes": card["classes"],
        "bands": card["bands"],
        "input": {"name": INPUT, "dtype": "float32", "layout": "NCHW"},
        "outputs": {name: name for name in OUTPUTS},
        "normalization": {
            "mean": [float(m) for m in card["normalization"]["mean"]],
            "std": [float(s) for s in card["normalization"]["std"]],
        },
        "tile": card["tile"],
        "architecture": {"name": card["arch"], "params": card["params"]},
        "training": training,
        "onnx_check": card["onnx_check"],
    }


def tile_defaults(net: torch.nn.Module, tile_size: int = DEFAULT_TILE_SIZE) -> dict[str, int]:
    """model.yaml `tile`: size, the halo that makes tiles seamless, and the size multiple."""
    multiple = int(net.size_multiple)
    halo = max(math.ceil(seamless_margin(net) / multiple) * multiple, multiple)
    size = math.ceil(tile_size / multiple) * multiple
    if size <= 2 * halo:
        raise InvalidArgument(
            f"tile_size {tile_size} leaves no room inside the {halo}-pixel halo of this "
            f"architecture; use tile_size > {2 * halo} (e.g. {DEFAULT_TILE_SIZE})"
        )
    return {"size": size, "halo": halo, "multiple": multiple}


def seamless_margin(net: torch.nn.Module) -> int:
    """Context per side a tile needs so that its core equals a whole-image pass.

    `receptive_margin` holds for a pixel anywhere; the predictor aligns tiles
    to the pooling grid (`size_multiple`), so a core starts and ends on cell
    borders, and for a U-Net the reach across a tile edge is smaller: 46 px
    instead of 51 at depth 3, i.e. a 48 px halo instead of 56 (3% less work
    with 1024 px tiles). Checked against whole-image passes by the tests.
    """
    if isinstance(net, UNet):
        return _unet_edge_reach(int(net.hparams["depth"]))
    return int(net.receptive_margin)


def _unet_edge_reach(depth: int) -> int:
    """Farthest input pixel beyond a tile edge that a core pixel of a grid-aligned U-Net sees.

    Follows, in 1-D (rows and columns alike), the interval of input pixels an
    output pixel depends on: two 3x3 convs widen it by 2 cells per block, a 2x
    max pool maps cell c to pixels 2c and 2c+1 below it, nearest upsampling
    maps pixel p to cell p // 2 of the level above. A core pixel at offset j
    of its pooling cell (of `m` pixels) lies j pixels inside the core's left
    edge and m - 1 - j inside its right edge.
    """

    def encoder(level: int, lo: int, hi: int) -> tuple[int, int]:
        lo, hi = lo - 2, hi + 2
        return (lo, hi) if level == 0 else encoder(level - 1, 2 * lo, 2 * hi + 1)

    def decoder(level: int, lo: int, hi: int) -> tuple[int, int]:
        lo, hi = lo - 2, hi + 2
        skip = encoder(level, lo, hi)
        if level + 1 == depth:
            below = encoder(depth, lo // 2, hi // 2)
        else:
            below = decoder(level + 1, lo // 2, hi // 2)
        return min(skip[0], below[0]), max(skip[1], below[1])

    m = 2**depth
    origin = 16 * m  # any cell border away from the scene edge
    reach = 0
    for j in range(m):
        lo, hi = decoder(0, origin + j, origin + j)
        reach = max(reach, origin + j - lo - j, hi - (origin + j) - (m - 1 - j))
    return reach


def _check_classes(classes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    try:
        out = [
            {"value": int(c["value"]), "name": str(c["name"]), "color": str(c.get("color", ""))}
            for c in sorted(classes, key=lambda c: int(c["value"]))
        ]
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidArgument(
            f"classes must be a list of {{value, name, color}} with integer values: {exc}"
        ) from exc
    if not out or [c["value"] for c in out] != list(range(1, len(out) + 1)):
        raise InvalidArgument(
            f"class values must be 1..K without gaps (label k is class k), got "
            f"{[c['value'] for c in out]}"
        )
    return out


def _check_hyper(epochs, batch_size, learning_rate, patience, tile_size) -> None:
    problems = []
    if not isinstance(epochs, int) or epochs < 1:
        problems.append(f"epochs must be an integer >= 1, got {epochs}")
    if not isinstance(batch_size, int) or batch_size < 1:
        problems.append(f"batch_size must be an integer >= 1, got {batch_size}")
    if not (isinstance(learning_rate, int | float) and 0 < learning_rate < 10):
        problems.append(f"learning_rate must be > 0 (e.g. 0.002), got {learning_rate}")
    if patience is not None and (not isinstance(patience, int) or patience < 1):
        problems.append(f"patience must be an integer >= 1 or None (no early stop), got {patience}")
    if not isinstance(tile_size, int) or tile_size < 16:
        problems.append(f"tile_size must be an integer >= 16, got {tile_size}")
    if problems:
        raise InvalidArgument("; ".join(problems))


def _rng_devices(device: torch.device) -> list[int]:
    return [device.index or 0] if device.type == "cuda" else []


class _Log:
    """train.log lines: '#' lines describe the run, other lines are one epoch each."""

    def __init__(self, ctx: JobContext) -> None:
        self.ctx = ctx
        self.lines: list[str] = []

    def line(self, text: str) -> None:
        self.lines.append(text)
        self.ctx.log.info(text)

    def header(self, arch, params, summary, data, device, selection, patience) -> None:
        self.line(f"# sipd train: arch {arch} {params} on {device}")
        self.line(
            f"# data: {summary['chips']} chips of {summary['chip_size']} px from "
            f"{len(summary['scenes'])} scene(s); {data.train_idx.size} with train labels, "
            f"{data.val_idx.size} with val labels"
        )
        if selection == "train_accuracy":
            self.line("# no val labels: selecting the best epoch on train accuracy "
                      "(add ROIs with split val for an honest selection)")
        else:
            stop = f"patience {patience}" if patience else "no early stopping"
            self.line(f"# selection: best val accuracy, {stop}")

    def epoch(self, row: dict[str, Any], epochs: int, best: bool) -> None:
        text = (f"epoch {row['epoch']}/{epochs}  loss {row['loss']:.4f}  "
                f"train_acc {row['train_accuracy']:.4f}")
        if row["val_accuracy"] is not None:
            text += f"  val_acc {row['val_accuracy']:.4f}  val_loss {row['val_loss']:.4f}"
        text += f"  lr {row['lr']:.2e}  {row['seconds']:.1f}s"
        self.line(text + ("  *best" if best else ""))

    def footer(self, result, epochs_run: int, patience, selection) -> None:
        best = next(r for r in result.history if r["epoch"] == result.best_epoch)
        acc = best["val_accuracy"] if selection == "val_accuracy" else best["train_accuracy"]
        name = "val_acc" if selection == "val_accuracy" else "train_acc"
        text = f"# best epoch {result.best_epoch}: {name} {acc:.4f}"
        if result.stopped_early:
            text += f"; stopped after {epochs_run} epochs ({patience} without improvement)"
        self.line(text)
