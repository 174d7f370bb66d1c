"""dataset prepare: masks + scenes -> chips with train/val labels + normalization stats."""

from __future__ import annotations

import contextlib
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
from rasterio.windows import Window

from sipd.dataset import chip_files as store
from sipd.dataset.bands import band_indexes
from sipd.dataset.grid import BACKGROUND, MaskScan, chip_window, open_masks, scan_masks
from sipd.dataset.stats import RunningStats, accumulate_scene, read_valid
from sipd.errors import FailedPrecondition, InvalidArgument
from sipd.progress import JobContext
from sipd.raster import open_raster

STAGE = "prepare"
# Share of the job's progress bar per phase (mask scan, statistics, chips).
_PHASES = {"scan": (0.0, 0.15), "stats": (0.15, 0.6), "chips": (0.6, 1.0)}


def prepare_dataset(
    scenes: list[dict[str, Any]],
    *,
    out_dir: str | Path,
    bands: list[str],
    chip_size: int = 128,
    ctx: JobContext,
) -> dict[str, Any]:
    """Extract training chips and normalization statistics; write them to out_dir.

    Each scene: {"name", "path", "masks": {"train"|"val"|"test": path or None}}.
    Chips are chip_size x chip_size windows over every grid cell holding a
    train or val label. Normalization is over valid pixels of the scenes
    with train labels. Returns the summary also stored as dataset.json.
    """
    if chip_size < 8 or chip_size > 4096:
        raise InvalidArgument(f"chip_size must be 8..4096 pixels, got {chip_size}")
    if not scenes:
        raise FailedPrecondition("no scenes given; add scenes and ROIs, then prepare")
    started = time.time()
    bands = list(bands)
    total_px = sum(_scene_pixels(s) for s in scenes) or 1
    progress = _Progress(ctx, total_px)

    # Pass 1: scan masks (cheap, uint8) to fail early when nothing is labeled.
    scans: list[MaskScan] = []
    for scene in scenes:
        ctx.check_cancelled()
        with open_raster(scene["path"]) as ds:
            band_indexes(ds, bands, scene["name"])
            shape = (ds.height, ds.width)
        masks = open_masks(scene.get("masks") or {}, scene["name"], shape)
        try:
            scans.append(scan_masks(masks, shape, chip_size, ctx.check_cancelled))
        finally:
            for m in masks.values():
                m.close()
        progress.advance("scan", shape[0] * shape[1])
    if sum(s.labeled("train") for s in scans) == 0:
        raise FailedPrecondition(
            "no training pixels: none of the "
            f"{len(scenes)} scene(s) has a labeled pixel in its train mask; "
            "add ROIs with split train (and run mask) before preparing the dataset"
        )

    # Pass 2: normalization over the scenes that carry train labels.
    acc = RunningStats(len(bands))
    for scene, scan in zip(scenes, scans, strict=True):
        if scan.labeled("train") == 0:
            continue
        with open_raster(scene["path"]) as ds:
            idx = band_indexes(ds, bands, scene["name"])
            px = ds.height * ds.width

            def on_strip(frac: float, px: int = px) -> None:
                ctx.check_cancelled()
                progress.partial("stats", px, frac)

            accumulate_scene(ds, idx, acc, on_strip)
        progress.advance("stats", px)
    mean, std = acc.result()
    if not np.all(acc.n > 0):
        empty = [b for b, n in zip(bands, acc.n, strict=True) if n == 0]
        raise FailedPrecondition(
            f"band(s) {', '.join(empty)} have no valid pixels in the training scenes "
            "(all nodata); check the scenes' nodata value or band order"
        )

    # Pass 3: chips.
    n_chips = sum(len(s.cells) for s in scans)
    chips = store.Chips(
        image=np.empty((n_chips, len(bands), chip_size, chip_size), dtype=np.float32),
        train=np.zeros((n_chips, chip_size, chip_size), dtype=np.uint8),
        val=np.zeros((n_chips, chip_size, chip_size), dtype=np.uint8),
        scene=np.zeros(n_chips, dtype=np.int32),
        origin=np.zeros((n_chips, 2), dtype=np.int32),
    )
    fill = np.asarray(mean, dtype=np.float32)[:, None, None]
    scene_rows = []
    i = 0
    for s_idx, (scene, scan) in enumerate(zip(scenes, scans, strict=True)):
        first = i
        with open_raster(scene["path"]) as ds:
            idx = band_indexes(ds, bands, scene["name"])
            shape = (ds.height, ds.width)
            masks = open_masks(
                {k: v for k, v in (scene.get("masks") or {}).items() if k in ("train", "val")},
                scene["name"],
                shape,
            )
            try:
                for cell in scan.cells:
                    ctx.check_cancelled()
                    _extract(ds, idx, masks, cell, chip_size, fill, chips, i)
                    chips.scene[i] = s_idx
                    i += 1
                    progress.partial("chips", shape[0] * shape[1], (i - first) / len(scan.cells))
            finally:
                for m in masks.values():
                    m.close()
        progress.advance("chips", shape[0] * shape[1])
        scene_rows.append(_scene_summary(scene, scan, chips, first, i))

    summary = {
        "format": store.FORMAT,
        "dataset_id": uuid.uuid4().hex,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "bands": bands,
        "chip_size": chip_size,
        "chips": n_chips,
        "labeled_pixels": {
            "train": _class_counts(chips.train),
            "val": _class_counts(chips.val),
            "test": _sum_counts(scan.counts.get("test") for scan in scans),
        },
        "normalization": {"mean": mean, "std": std, "valid_pixels": [int(n) for n in acc.n]},
        "scenes": scene_rows,
        "seconds": round(time.time() - started, 3),
    }
    ctx.check_cancelled()
    store.save(Path(out_dir), chips, summary)
    ctx.progress(STAGE, 1.0, f"{n_chips} chips from {len(scenes)} scene(s)", force=True)
    return summary


def _extract(ds, idx, masks, cell, chip, fill, chips: store.Chips, i: int) -> None:
    read, inner = chip_window(cell, chip, (ds.height, ds.width))
    data, valid, pixel_valid = read_valid(ds, idx, read)
    h, w = data.shape[1:]
    image = chips.image[i]
    image[...] = fill
    # Nodata values and padding take the band mean: zero after normalization,
    # so they look like "no signal" rather than an extreme value to the net.
    image[:, :h, :w] = np.where(valid, data, fill)
    r, c = int(inner.row_off), int(inner.col_off)
    ih, iw = int(inner.height), int(inner.width)
    cell_window = Window(read.col_off + c, read.row_off + r, iw, ih)
    for split, target in (("train", chips.train[i]), ("val", chips.val[i])):
        ds_mask = masks.get(split)
        if ds_mask is None:
            continue
        labels = ds_mask.read(1, window=cell_window).astype(np.uint8, copy=False)
        # Labels stay on every pixel valid by the dataset mask (one band at
        # nodata included): the predictor classifies exactly those.
        labels = np.where(pixel_valid[r : r + ih, c : c + iw], labels, BACKGROUND)
        target[r : r + ih, c : c + iw] = labels
    chips.origin[i] = (int(read.row_off), int(read.col_off))


def _class_counts(labels: np.ndarray) -> dict[int, int]:
    counts = np.bincount(labels.ravel(), minlength=256)
    return {k: int(counts[k]) for k in range(1, BACKGROUND) if counts[k]}


def _sum_counts(counts) -> dict[int, int]:
    total = np.zeros(256, dtype=np.int64)
    for c in counts:
        if c is not None:
            total += c
    return {k: int(total[k]) for k in range(1, BACKGROUND) if total[k]}


def _scene_summary(scene, scan: MaskScan, chips: store.Chips, first: int, last: int) -> dict:
    return {
        "name": scene["name"],
        "path": str(scene["path"]),
        "chips": last - first,
        "normalization": scan.labeled("train") > 0,
        "labeled_pixels": {
            "train": _class_counts(chips.train[first:last]),
            "val": _class_counts(chips.val[first:last]),
            "test": _sum_counts([scan.counts.get("test")]),
        },
    }


def _scene_pixels(scene: dict[str, Any]) -> int:
    with contextlib.suppress(Exception), open_raster(scene["path"]) as ds:
        return ds.width * ds.height
    return 0


class _Progress:
    """Maps per-phase pixel progress onto one 0..1 fraction for the job."""

    def __init__(self, ctx: JobContext, total_px: int) -> None:
        self.ctx = ctx
        self.total = total_px
        self.done = {phase: 0 for phase in _PHASES}

    def advance(self, phase: str, px: int) -> None:
        self.done[phase] += px
        self._emit(phase, 0)

    def partial(self, phase: str, px: int, frac: float) -> None:
        self._emit(phase, px * frac)

    def _emit(self, phase: str, extra: float) -> None:
        lo, hi = _PHASES[phase]
        frac = min(1.0, (self.done[phase] + extra) / self.total)
        self.ctx.progress(STAGE, lo + (hi - lo) * frac, phase)
