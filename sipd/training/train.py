"""train: a prepared dataset -> a model version folder (models/README.md)."""

from __future__ import annotations

import datetime as dt
import json
import math
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import ValidationError

from sipd.config import TrainingConfig
from sipd.dataset import load_dataset
from sipd.device import torch_device
from sipd.errors import FailedPrecondition, InvalidArgument
from sipd.modelrepo import ModelCard, publish, staging_folder, version_name, write_card
from sipd.modelrepo.card import ClassDef, describe
from sipd.modelrepo.layout import CHECKPOINT_FILE, GRAPH_FILE, METRICS_FILE, TRAIN_LOG
from sipd.nets import build_net
from sipd.progress import JobContext
from sipd.training import data as training_data
from sipd.training.checkpoint import checkpoint_payload
from sipd.training.loop import STAGE, FitConfig, fit
from sipd.training.onnx_export import INPUT, OUTPUTS, check_onnx_export, export_onnx
from sipd.training.priors import correct_priors

# The daemon's defaults (sipd.yaml `training`) are this function's too.
_DEFAULTS = TrainingConfig()
# An "epoch" is at least this many optimizer steps (see data.epoch_batches).
MIN_STEPS_PER_EPOCH = 4
# Default tile edge written into model.yaml. On a CPU, 1024 px tiles with the
# default U-Net's 72 px halo spend 1.3x the scene's pixels on overlap (512 px
# tiles: 1.6x) while one tile's activations stay well under 1 GB.
DEFAULT_TILE_SIZE = 1024
# Colour map entry of a class that came without one.
DEFAULT_COLOR = "#808080"


def train_model(
    *,
    dataset_dir: str | Path,
    models_root: str | Path,
    project: str,
    classes: list[dict[str, Any]],
    bands: list[str],
    arch: str = "unet",
    arch_params: dict[str, Any] | None = None,
    epochs: int = _DEFAULTS.epochs,
    batch_size: int = _DEFAULTS.batch_size,
    learning_rate: float = _DEFAULTS.learning_rate,
    seed: int = 0,
    class_weights: list[float] | str | None = None,
    augment: bool = True,
    patience: int | None = _DEFAULTS.patience,
    tile_size: int = DEFAULT_TILE_SIZE,
    steps_per_epoch: int | None = _DEFAULTS.steps_per_epoch,
    prior_correction: bool = _DEFAULTS.prior_correction,
    preprocessing: dict[str, Any] | None = None,
    ctx: JobContext,
) -> dict[str, Any]:
    """Train a net on a prepared dataset and publish models_root/<version>/.

    Selection and early stopping use val accuracy (train accuracy when the
    dataset has no val labels); patience=None disables early stopping.
    `seed` makes CPU runs repeatable. See models/README.md for the folder.
    """
    started = time.time()
    classes = check_classes(classes)
    _check_hyper(epochs, batch_size, learning_rate, patience, tile_size, steps_per_epoch)
    chips, summary = load_training_dataset(dataset_dir, bands)
    norm = summary["normalization"]
    num_classes = len(classes)
    net_params = dict(arch_params or {})
    log = _Log(ctx)
    device = torch_device(ctx.device, ctx.log)

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
                        MIN_STEPS_PER_EPOCH, max_steps_per_epoch=steps_per_epoch)

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
    priors = None
    if prior_correction:
        ctx.check_cancelled()
        ctx.progress("priors", 0.0, "estimating the scenes' class priors", force=True)
        net.load_state_dict(result.best_state)
        priors = correct_priors(*result.trained_through, weight, device)
        if priors is None:
            log.line("# class priors: output not shifted (no output bias, or every shift "
                     "cost accuracy on the labeled check pixels)")
        else:
            result.best_state = {k: v.detach().to("cpu", copy=True)
                                 for k, v in net.state_dict().items()}
            log.line(f"# class priors: labels {priors['labels_prior']} -> scenes "
                     f"{priors['scene_prior']}; output bias shifted by {priors['logit_shift']}")

    result.trained_through = None  # the cached features' memory goes before the export
    ctx.check_cancelled()
    ctx.progress("export", 0.0, "exporting ONNX", force=True)
    net.to("cpu").load_state_dict(result.best_state)
    net.eval()
    seconds = round(time.time() - started, 3)
    models_root = Path(models_root)
    with staging_folder(models_root) as stage:
        export_onnx(net, norm["mean"], norm["std"], stage / GRAPH_FILE)
        onnx_check = check_onnx_export(net, norm["mean"], norm["std"], stage / GRAPH_FILE)
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
        (stage / METRICS_FILE).write_text(json.dumps({"train": train_metrics}, indent=2) + "\n")
        (stage / TRAIN_LOG).write_text("\n".join(log.lines) + "\n")
        names = {c["value"]: c["name"] for c in classes}
        labeled = summary["labeled_pixels"]
        # Built (and so checked) before publishing; the version and time are set per attempt.
        draft = ModelCard(
            name=version_name(project, 1), project=project, version=1,
            created=dt.datetime.now(dt.UTC),
            classes=classes,
            bands=list(bands),
            input={"name": INPUT, "dtype": "float32", "layout": "NCHW"},
            outputs={name: name for name in OUTPUTS},
            normalization={"mean": [float(m) for m in norm["mean"]],
                           "std": [float(s) for s in norm["std"]]},
            tile=tile,
            architecture={"name": arch, "params": dict(net.hparams)},
            training=dict(
                epochs=epochs, epochs_run=len(result.history), best_epoch=result.best_epoch,
                seed=seed, batch_size=batch_size, learning_rate=learning_rate,
                augment=augment, patience=patience, device=str(device), selection=selection,
                steps_per_epoch=steps_per_epoch, prior_correction=priors,
                class_weights=[round(float(w), 6) for w in weight],
                scenes=[sc["name"] for sc in summary["scenes"]],
                labeled_pixels={
                    split: {names.get(int(k), str(k)): n for k, n in labeled.get(split, {}).items()}
                    for split in ("train", "val")
                },
            ),
            onnx_check=onnx_check,
            preprocessing=preprocessing,
        )

        def write_versioned(folder: Path, version: int) -> None:
            created = dt.datetime.now(dt.UTC).replace(microsecond=0)
            write_card(folder, draft.model_copy(update={
                "name": version_name(project, version), "version": version, "created": created}))

        ctx.check_cancelled()
        version = publish(stage, models_root, write_versioned)
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


def load_training_dataset(dataset_dir: str | Path, bands: list[str]) -> tuple[Any, dict]:
    """The prepared dataset's chips and summary, checked to fit the project and to train."""
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
    return chips, summary


def tile_defaults(net: torch.nn.Module, tile_size: int = DEFAULT_TILE_SIZE) -> dict[str, int]:
    """model.yaml `tile`: size, the halo that makes tiles seamless, and the size multiple.

    The halo is the net's own `seamless_margin` (the context a tile aligned to
    the size-multiple grid needs), rounded up to whole grid cells.
    """
    multiple = int(net.size_multiple)
    halo = max(math.ceil(int(net.seamless_margin) / multiple) * multiple, multiple)
    size = math.ceil(tile_size / multiple) * multiple
    if size <= 2 * halo:
        raise InvalidArgument(
            f"tile_size {tile_size} leaves no room inside the {halo}-pixel halo of this "
            f"architecture; use tile_size > {2 * halo} (e.g. {DEFAULT_TILE_SIZE})"
        )
    return {"size": size, "halo": halo, "multiple": multiple}


def check_classes(classes: list[dict[str, Any]]) -> list[dict[str, Any]]:
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
    for c in out:
        c["color"] = c["color"] or DEFAULT_COLOR
        # Checked now as the model card will check it, not after the whole training run.
        try:
            ClassDef.model_validate(c)
        except ValidationError as exc:
            raise InvalidArgument(f"class {c['name']!r}: {describe(exc)}") from None
    return out


def _check_hyper(epochs, batch_size, learning_rate, patience, tile_size, steps_per_epoch) -> None:
    problems = []
    if steps_per_epoch is not None and (not isinstance(steps_per_epoch, int)
                                        or steps_per_epoch < 1):
        problems.append(f"steps_per_epoch must be an integer >= 1 or None (a full pass), "
                        f"got {steps_per_epoch}")
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
