"""Prepared chips as normalized tensors, seeded batches and augmentation."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from sipd.dataset import Chips
from sipd.dataset.grid import BACKGROUND
from sipd.errors import FailedPrecondition, InvalidArgument

IGNORE = -1  # target for unlabeled (0) and background (255) pixels


@dataclass
class TrainingData:
    """Normalized images and targets (label k -> k-1, else IGNORE), on the CPU."""

    images: torch.Tensor  # float32 [N, C, S, S]
    train_targets: torch.Tensor  # int64 [N, S, S]
    val_targets: torch.Tensor  # int64 [N, S, S]
    train_idx: np.ndarray  # chips with at least one train pixel
    val_idx: np.ndarray  # chips with at least one val pixel
    num_classes: int
    valid: torch.Tensor  # bool [N, S, S]: scene pixels with data (not nodata, not padding)

    @property
    def has_val(self) -> bool:
        return self.val_idx.size > 0


def build(
    chips: Chips, mean: list[float], std: list[float], num_classes: int, multiple: int
) -> TrainingData:
    """Normalize chips and turn labels into targets, padding chips to `multiple`."""
    for split, labels in (("train", chips.train), ("val", chips.val)):
        present = np.unique(labels)
        bad = [int(v) for v in present if num_classes < v < 255]
        if bad:
            raise InvalidArgument(
                f"the {split} labels hold class value(s) {bad} but the project has "
                f"{num_classes} class(es) (values 1..{num_classes}); fix the ROIs' classes "
                "or add the classes to the project, then mask and prepare again"
            )
    m = np.asarray(mean, dtype=np.float32)[None, :, None, None]
    s = np.asarray(std, dtype=np.float32)[None, :, None, None]
    images = (chips.image - m) / s
    train = _targets(chips.train, num_classes)
    val = _targets(chips.val, num_classes)
    valid = (chips.train != BACKGROUND) & (chips.val != BACKGROUND)
    size = chips.image.shape[-1]
    padded = math.ceil(size / multiple) * multiple
    if padded != size:
        # Zero is the band mean after normalization; padded pixels are ignored.
        pad = ((0, 0), (0, 0), (0, padded - size), (0, padded - size))
        images = np.pad(images, pad)
        train = np.pad(train, pad[1:], constant_values=IGNORE)
        val = np.pad(val, pad[1:], constant_values=IGNORE)
        valid = np.pad(valid, pad[1:], constant_values=False)
    train_idx = np.flatnonzero((train != IGNORE).any(axis=(1, 2)))
    val_idx = np.flatnonzero((val != IGNORE).any(axis=(1, 2)))
    if train_idx.size == 0:
        raise FailedPrecondition(
            "no training pixels in the prepared dataset (train labels may all lie on nodata); "
            "add ROIs with split train, then run mask and dataset prepare again"
        )
    return TrainingData(
        images=torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32)),
        train_targets=torch.from_numpy(train),
        val_targets=torch.from_numpy(val),
        train_idx=train_idx,
        val_idx=val_idx,
        num_classes=num_classes,
        valid=torch.from_numpy(valid),
    )


def _targets(labels: np.ndarray, num_classes: int) -> np.ndarray:
    t = labels.astype(np.int64) - 1
    t[(labels == 0) | (labels > num_classes)] = IGNORE
    return t


def class_weights(
    data: TrainingData, spec: list[float] | str | None
) -> torch.Tensor:
    """Per-class loss weights: uniform, explicit, or "balanced" (inverse frequency).

    Balanced weights are n_total / (K_present * n_k) for classes present in
    the train labels and 0 for absent ones (they have no pixels to weigh).
    """
    k = data.num_classes
    if spec is None:
        return torch.ones(k)
    if isinstance(spec, str):
        if spec != "balanced":
            raise InvalidArgument(
                f"class_weights {spec!r} not understood; accepted: none, 'balanced', "
                f"or a list of {k} non-negative numbers"
            )
        t = data.train_targets[data.train_targets != IGNORE]
        counts = torch.bincount(t, minlength=k).double()
        present = counts > 0
        w = torch.zeros(k, dtype=torch.float64)
        w[present] = counts.sum() / (present.sum() * counts[present])
        return w.float()
    weights = [float(x) for x in spec]
    if len(weights) != k or any(not math.isfinite(x) or x < 0 for x in weights):
        raise InvalidArgument(
            f"class_weights must be {k} non-negative numbers (one per class), got {spec}"
        )
    if sum(weights) == 0:
        raise InvalidArgument("class_weights are all zero; at least one class needs weight > 0")
    return torch.tensor(weights, dtype=torch.float32)


def epoch_batches(
    idx: np.ndarray, batch_size: int, min_steps: int, rng: np.random.Generator,
    max_steps: int | None = None,
) -> Iterator[np.ndarray]:
    """Chip indices per batch for one epoch, from a seeded shuffle.

    An epoch is one pass over the chips, but at least `min_steps` batches:
    with few chips (sparse labels on a few scenes) one pass would be one or
    two optimizer steps, far too few for an "epoch" to mean progress.
    `max_steps` caps it: with many chips an epoch is a random subset of them.
    Batches never hold the same chip twice.
    """
    bs = min(batch_size, idx.size)
    steps = max(math.ceil(idx.size / bs), min_steps)
    if max_steps is not None:
        steps = max(min(steps, max_steps), 1)
    pool: list[int] = []
    for _ in range(steps):
        if len(pool) < bs:
            # Leftovers first, then a fresh shuffle with the leftovers' repeats
            # moved to its end: the next batch is still free of duplicates.
            taken = set(pool)
            fresh = [int(i) for i in rng.permutation(idx)]
            pool += [i for i in fresh if i not in taken] + [i for i in fresh if i in taken]
        batch, pool = pool[:bs], pool[bs:]
        yield np.asarray(batch, dtype=np.int64)


def augment(
    images: torch.Tensor, targets: torch.Tensor, rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random rot90 and flip per sample (the 8 symmetries of the square).

    Scene classes do not depend on orientation (nadir imagery, microscope
    slides), so these are free extra examples from very few labels.
    """
    ks = rng.integers(0, 4, size=images.shape[0])
    flips = rng.integers(0, 2, size=images.shape[0])
    out_x, out_y = [], []
    for x, y, k, f in zip(images, targets, ks, flips, strict=True):
        x = torch.rot90(x, int(k), dims=(1, 2))
        y = torch.rot90(y, int(k), dims=(0, 1))
        if f:
            x, y = torch.flip(x, dims=(2,)), torch.flip(y, dims=(1,))
        out_x.append(x)
        out_y.append(y)
    return torch.stack(out_x), torch.stack(out_y)
