"""Quick A/B of net training variants on the quality benchmark's clicks, in process.

`python -m sipd.bench.quality_ab --dataset dubai --bank 1,3.5` trains sipd's
U-Net with sipd's own training loop (`sipd.training.loop.fit`, the prior
shift of `sipd.training.priors`) on the clicks `sipctl bench quality` draws
(same seed, same images), predicts the held-out images whole and prints one
JSON line of scores. It skips the daemon, ROI import, masks and dataset
preparation (chips are cut here, on the same 128 px grid as `sipd.dataset`),
so a variant costs minutes instead of a full benchmark run: a tool to choose
what to measure with `sipctl bench quality`, whose figures are the ones to
report (docs/quality.md).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sipd.bench.quality import default_data, draw_clicks, score
from sipd.bench.quality_data import DATASETS, Dataset, Item, load_dataset, read_raster
from sipd.nets.unet import DEFAULT_BANK_SIGMAS, UNet
from sipd.progress import JobContext
from sipd.training.data import IGNORE, TrainingData
from sipd.training.loop import MAX_VAL_CHIPS, FitConfig, fit
from sipd.training.priors import (
    chip_logits,
    correct_priors,
    estimate_prior,
    output_layer,
    prior_shift,
    training_prior,
)
from sipd.training.train import MIN_STEPS_PER_EPOCH


def chips(
    ds: Dataset, images: dict[str, np.ndarray], clicks: dict[str, Any], size: int, full: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(images, train targets, val targets) of every grid cell holding a label."""
    xs, ts, vs = [], [], []
    for item in ds.side("train"):
        x = images[item.name]
        h, w = item.truth.shape
        if min(h, w) < size:
            raise SystemExit(f"{item.name}: {w} x {h} px is smaller than a {size} px chip; "
                             "use --chip with at most the smallest image's edge")
        train = np.full((h, w), IGNORE, np.int64)
        val = train.copy()
        if full:  # every 5th stripe of rows is val, as the benchmark's `full` method
            stripe = max(4, h // 25)
            is_val = (np.arange(h) // stripe) % 5 == 4
            t = item.truth.astype(np.int64) - 1
            t[item.truth == 0] = IGNORE
            train[~is_val], val[is_val] = t[~is_val], t[is_val]
        else:
            for c in clicks[item.name]:
                (train if c.split == "train" else val)[c.row, c.col] = c.value - 1
        for r0 in range(0, h, size):
            for c0 in range(0, w, size):
                # The chip is shifted inwards at the right and bottom edges; it takes
                # the labels of its own cell only, so every label is in one chip.
                r, c = max(0, min(r0, h - size)), max(0, min(c0, w - size))
                t = np.full((size, size), IGNORE, np.int64)
                v = t.copy()
                rows, cols = min(size, h - r0), min(size, w - c0)
                cell = np.s_[r0 - r : r0 - r + rows, c0 - c : c0 - c + cols]
                t[cell] = train[r0 : r0 + rows, c0 : c0 + cols]
                v[cell] = val[r0 : r0 + rows, c0 : c0 + cols]
                if (t != IGNORE).any() or (v != IGNORE).any():
                    xs.append(x[:, r : r + size, c : c + size])
                    ts.append(t)
                    vs.append(v)
    return np.stack(xs), np.stack(ts), np.stack(vs)


def predict(net: UNet, x: np.ndarray) -> np.ndarray:
    """Class values (1..K) of a whole normalized image, padded to the net's multiple."""
    m = net.size_multiple
    h, w = x.shape[1:]
    pad = ((0, 0), (0, -h % m), (0, -w % m))
    with torch.no_grad():
        logits = net(torch.from_numpy(np.pad(x, pad, mode="edge"))[None])
    return logits[0, :, :h, :w].argmax(0).numpy().astype(np.uint8) + 1


def run(a: argparse.Namespace) -> dict[str, Any]:
    torch.manual_seed(a.seed)
    rng = np.random.default_rng(a.seed)
    data_dir = Path(a.data) if a.data else default_data(a.dataset)
    ds = load_dataset(a.dataset, data_dir, Path(a.work), max_train=a.max_train,
                      max_test=a.max_test, seed=a.seed)
    k = len(ds.classes)
    raw = {i.name: read_raster(i.scene).astype(np.float32) for i in ds.items}
    train_items: list[Item] = ds.side("train")
    stack = np.concatenate([raw[i.name].reshape(raw[i.name].shape[0], -1) for i in train_items],
                           axis=1)
    mean, std = stack.mean(axis=1), stack.std(axis=1) + 1e-6
    images = {n: (x - mean[:, None, None]) / std[:, None, None] for n, x in raw.items()}
    x, t, v = chips(ds, images, draw_clicks(ds, a.clicks, a.seed), a.chip, a.full)
    data = TrainingData(
        images=torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)),
        train_targets=torch.from_numpy(t), val_targets=torch.from_numpy(v),
        train_idx=np.flatnonzero((t != IGNORE).any(axis=(1, 2))),
        val_idx=np.flatnonzero((v != IGNORE).any(axis=(1, 2))),
        num_classes=k, valid=torch.ones(t.shape, dtype=torch.bool),
    )
    sigmas = tuple(float(s) for s in a.bank.split(",")) if a.bank else ()
    net = UNet(x.shape[1], k, a.base, a.depth, bank_sigmas=sigmas)
    cfg = FitConfig(a.epochs, a.batch_size, a.lr, a.patience, True, MIN_STEPS_PER_EPOCH,
                    max_steps_per_epoch=a.steps, max_val_chips=a.max_val_chips or None)
    weight = torch.ones(k)
    started = time.time()
    result = fit(net, data, weight, cfg, device=torch.device("cpu"), rng=rng, ctx=JobContext(),
                 on_epoch=lambda row, best: print(json.dumps(row), file=sys.stderr, flush=True))
    net.load_state_dict(result.best_state)
    extra: dict[str, Any] = {}
    report_started = time.time()
    if a.shift_report:  # test OA with no shift and with the full EM shift, for comparison
        net.eval()
        test = ds.side("test")
        truth = np.concatenate([i.truth.ravel() for i in test])
        classes = list(range(1, k + 1))
        layer = output_layer(net, k)
        pi = training_prior(data, weight).double()
        # Through the cached bank features, as correct_priors does below.
        q = estimate_prior(chip_logits(*result.trained_through, torch.device("cpu"))[0], pi)
        shift = prior_shift(q, pi).float()
        for name, delta in (("oa_no_shift", 0 * shift), ("oa_full_shift", shift)):
            with torch.no_grad():
                layer.bias += delta
            pred = np.concatenate([predict(net, images[i.name]).ravel() for i in test])
            extra[name] = round(score(pred, truth, classes)["overall_accuracy"], 4)
            with torch.no_grad():
                layer.bias -= delta
        extra["em_prior"] = [round(float(v), 3) for v in q]
        extra["test_prior"] = [round(float((truth == c).sum() / (truth > 0).sum()), 3)
                               for c in classes]
    report_s = time.time() - report_started  # not training time
    priors = (correct_priors(*result.trained_through, weight, torch.device("cpu"))
              if a.priors else None)
    train_s = time.time() - started - report_s
    net.eval()
    started = time.time()
    pred = np.concatenate([predict(net, images[i.name]).ravel() for i in ds.side("test")])
    truth = np.concatenate([i.truth.ravel() for i in ds.side("test")])
    s = score(pred, truth, list(range(1, k + 1)))
    cm = np.asarray(s["confusion_matrix"])
    return {
        "args": vars(a), "chips": int(x.shape[0]),
        "overall_accuracy": round(s["overall_accuracy"], 4), "kappa": round(s["kappa"], 4),
        "mean_iou": round(s["mean_iou"], 4), "best_epoch": result.best_epoch,
        "best_val_accuracy": result.best_val_accuracy, "prior_shift": priors is not None,
        "train_seconds": round(train_s, 1), "predict_seconds": round(time.time() - started, 1),
        **extra,
        "recall": [round(float(r), 3) for r in np.diag(cm[:, :k]) / cm.sum(axis=1).clip(1)],
        "predicted_share": [round(float((pred == c).mean()), 3) for c in range(1, k + 1)],
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m sipd.bench.quality_ab", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", choices=[d for d in DATASETS if d != "folder"], default="dubai")
    p.add_argument("--data", help="dataset folder (default: as sipctl bench quality)")
    p.add_argument("--work", default="bench-data/quality", help="scenes are cached here")
    p.add_argument("--max-train", type=int, default=8)
    p.add_argument("--max-test", type=int, default=8)
    p.add_argument("--clicks", type=int, default=150)
    p.add_argument("--full", action="store_true", help="train on the full masks instead")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--bank", default=",".join(f"{s:g}" for s in DEFAULT_BANK_SIGMAS),
                   help="filter bank sigmas, comma-separated; '' = none")
    p.add_argument("--base", type=int, default=16)
    p.add_argument("--depth", type=int, default=3)
    p.add_argument("--chip", type=int, default=128)
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--steps", type=int, default=12, help="optimizer steps per epoch at most")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=0.002)
    p.add_argument("--patience", type=int, default=8)
    p.add_argument("--max-val-chips", type=int, default=MAX_VAL_CHIPS,
                   help="val chips evaluated per epoch at most; 0 = all")
    p.add_argument("--shift-report", action="store_true",
                   help="also report test OA without and with the full prior shift")
    p.add_argument("--no-priors", dest="priors", action="store_false",
                   help="skip the prior shift after training")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    print(json.dumps(run(parse_args(argv))), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
