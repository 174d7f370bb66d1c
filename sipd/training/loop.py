"""The epoch loop: masked cross-entropy, per-epoch accuracy, early stopping."""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sipd.nets.filter_bank import to_float16
from sipd.progress import JobContext
from sipd.training.data import IGNORE, TrainingData, augment, epoch_batches

STAGE = "train"


# See FitConfig.max_val_chips: about 500 val clicks at the benchmark's 150 per
# class and image, enough to rank epochs whose accuracies differ by points.
MAX_VAL_CHIPS = 128


@dataclass
class FitConfig:
    epochs: int
    batch_size: int
    learning_rate: float
    patience: int | None
    augment: bool
    min_steps_per_epoch: int
    weight_decay: float = 1e-4
    # Optimizer steps per epoch at most: the epoch's cost stops growing with
    # the dataset (a pass over thousands of chips is not needed to learn
    # from a few thousand clicks); None = one full pass.
    max_steps_per_epoch: int | None = None
    # Val chips evaluated each epoch at most: a fixed, seeded subset of them. With
    # sparse labels nearly every chip holds a val click, and evaluating them all cost
    # as much as the epoch's training (measured on the benchmark's 20-image case).
    max_val_chips: int | None = MAX_VAL_CHIPS


@dataclass
class FitResult:
    history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int = 0
    best_state: dict[str, torch.Tensor] = field(default_factory=dict)
    best_val_accuracy: float | None = None
    stopped_early: bool = False
    # The model and data fit trained through (a filter bank's features cached): a later
    # pass over the chips (the prior shift) runs through them and skips the bank.
    trained_through: tuple[nn.Module, TrainingData] | None = None


def masked_loss(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Weighted cross-entropy averaged over labeled pixels only.

    Equivalent to F.cross_entropy(weight=..., ignore_index=IGNORE) with mean
    reduction, except that a batch whose labeled pixels all carry weight 0
    gives 0 instead of NaN.
    """
    total = F.cross_entropy(
        logits.float(), target, weight=weight, ignore_index=IGNORE, reduction="sum"
    )
    labeled = target[target != IGNORE]
    return total / weight[labeled].sum().clamp_min(1e-12)


# Memory the fixed features of a net's chips may take (sipd.nets.unet's filter
# bank: 15 values per band and pixel at two scales, kept as float16). Computed
# once they save the bank's pass at every step and every evaluation, about a
# third of a CPU training run; a dataset whose features do not fit computes
# them per batch instead.
FEATURE_CACHE_BYTES = 2 << 30


class _FromFeatures(nn.Module):
    """`net` with its fixed features (the filter bank) outside autocast, in float32 (CUDA
    float16 would square gradients out of range), either computed per batch or, with
    `cached`, given as the input (computed beforehand by `cached_features`)."""

    def __init__(self, net: nn.Module, cached: bool) -> None:
        super().__init__()
        self.net = net
        self.cached = cached

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.cached:
            with torch.autocast(device_type=x.device.type, enabled=False):
                x = self.net.fixed_features(x.float())
        return self.net.from_features(x)


def cached_features(
    net: nn.Module, data: TrainingData, ctx: JobContext, limit: int = FEATURE_CACHE_BYTES,
    batch_size: int = 32,
) -> tuple[nn.Module, TrainingData]:
    """(model, data) to train with. For a net with fixed features (a filter bank): its
    features of every chip computed once, on the net's device, kept on the CPU when
    they fit `limit` bytes, else computed per batch; (net, data) as given otherwise.

    Exact with augmentation: the filter bank's features are invariant to the 8
    symmetries of the square (isotropic Gaussians; gradient magnitude and
    eigenvalues do not depend on orientation), so augmenting the features is
    augmenting the chip.
    """
    if getattr(net, "bank", None) is None:
        return net, data
    n, _, h, w = data.images.shape
    if n * net.bank.num_features * h * w * 2 > limit:
        return _FromFeatures(net, cached=False), data
    device = next(net.bank.buffers()).device
    out = torch.empty((n, net.bank.num_features, h, w), dtype=torch.float16)
    with torch.no_grad():
        for start in range(0, n, batch_size):
            ctx.check_cancelled()
            f = net.fixed_features(data.images[start : start + batch_size].to(device))
            out[start : start + batch_size] = to_float16(f).cpu()
    return _FromFeatures(net, cached=True), dataclasses.replace(data, images=out)


def fit(
    net: nn.Module,
    data: TrainingData,
    weight: torch.Tensor,
    cfg: FitConfig,
    *,
    device: torch.device,
    rng: np.random.Generator,
    ctx: JobContext,
    on_epoch: Callable[[dict[str, Any], bool], None],
) -> FitResult:
    """Train `net` in place; return history and the best epoch's weights (on the CPU).

    The best epoch has the highest val accuracy (train accuracy when there
    are no val labels), ties broken by the lower loss.
    """
    net.to(device)
    # Trained through `model`; `net` holds the same parameters (state is saved from it).
    model, data = cached_features(net, data, ctx)
    if cfg.max_val_chips is not None and data.val_idx.size > cfg.max_val_chips:
        # Drawn once, so every epoch is ranked on the same labels.
        subset = np.sort(rng.choice(data.val_idx, size=cfg.max_val_chips, replace=False))
        data = dataclasses.replace(data, val_idx=subset)
    weight = weight.to(device)
    amp = device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    result = FitResult(trained_through=(model, data))
    best_key: tuple[float, float] | None = None
    since_best = 0
    for epoch in range(1, cfg.epochs + 1):
        started = time.time()
        lr = _cosine_lr(cfg.learning_rate, epoch, cfg.epochs)
        for group in opt.param_groups:
            group["lr"] = lr
        loss, train_acc = _train_epoch(model, data, weight, cfg, device, amp, scaler, opt, rng,
                                       ctx)
        row: dict[str, Any] = {
            "epoch": epoch,
            "loss": loss,
            "train_accuracy": train_acc,
            "val_accuracy": None,
            "val_loss": None,
        }
        if data.has_val:
            row["val_accuracy"], row["val_loss"] = evaluate(model, data, device, amp, ctx)
            key = (row["val_accuracy"], -row["val_loss"])
        else:
            key = (train_acc, -loss)
        row["lr"] = lr
        row["seconds"] = round(time.time() - started, 3)
        result.history.append(row)
        improved = best_key is None or key > best_key
        if improved:
            best_key, since_best = key, 0
            result.best_epoch = epoch
            result.best_val_accuracy = row["val_accuracy"]
            result.best_state = {k: v.detach().to("cpu", copy=True) for k, v in
                                 net.state_dict().items()}
        else:
            since_best += 1
        on_epoch(row, improved)
        if cfg.patience is not None and since_best >= cfg.patience and epoch < cfg.epochs:
            result.stopped_early = True
            break
    return result


def _cosine_lr(base: float, epoch: int, epochs: int) -> float:
    # Cosine decay to 5% of the base rate: large steps early, fine ones late.
    t = (epoch - 1) / max(1, epochs - 1)
    return base * (0.05 + 0.95 * 0.5 * (1.0 + math.cos(math.pi * t)))


def _train_epoch(net, data, weight, cfg, device, amp, scaler, opt, rng, ctx) -> tuple[float, float]:
    net.train()
    loss_sum = 0.0
    weight_sum = 0.0
    correct = 0
    total = 0
    for batch in epoch_batches(data.train_idx, cfg.batch_size, cfg.min_steps_per_epoch, rng,
                               cfg.max_steps_per_epoch):
        ctx.check_cancelled()
        x = data.images[batch].float()
        y = data.train_targets[batch]
        if cfg.augment:
            x, y = augment(x, y, rng)
        x = x.to(device, non_blocking=True)
        y = y.to(device, non_blocking=True)
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=amp):
            logits = net(x)
        loss = masked_loss(logits, y, weight)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        labeled = y != IGNORE
        n = int(labeled.sum())
        batch_weight = float(weight[y[labeled]].sum())
        loss_sum += float(loss.detach()) * batch_weight
        weight_sum += batch_weight
        correct += int((logits.detach().argmax(1)[labeled] == y[labeled]).sum())
        total += n
    return loss_sum / max(weight_sum, 1e-12), correct / max(total, 1)


@torch.no_grad()
def evaluate(
    net: nn.Module, data: TrainingData, device: torch.device, amp: bool, ctx: JobContext,
    batch_size: int = 8,
) -> tuple[float, float]:
    """(accuracy, mean cross-entropy) on the val labels, in eval mode."""
    net.eval()
    correct = 0
    total = 0
    loss_sum = 0.0
    for start in range(0, data.val_idx.size, batch_size):
        ctx.check_cancelled()
        batch = data.val_idx[start : start + batch_size]
        x = data.images[batch].to(device).float()
        y = data.val_targets[batch].to(device)
        with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=amp):
            logits = net(x)
        labeled = y != IGNORE
        loss_sum += float(
            F.cross_entropy(logits.float(), y, ignore_index=IGNORE, reduction="sum")
        )
        correct += int((logits.argmax(1)[labeled] == y[labeled]).sum())
        total += int(labeled.sum())
    return correct / max(total, 1), loss_sum / max(total, 1)
