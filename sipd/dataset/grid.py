"""Chip-grid cells that hold labeled pixels, found by scanning masks in strips."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rasterio.windows import Window

from sipd.errors import InvalidArgument, NotFound
from sipd.raster import open_raster

SPLITS = ("train", "val", "test")
# Mask values: 0 unlabeled, 1..254 class, 255 background / nodata.
BACKGROUND = 255


@dataclass
class MaskScan:
    """What one scene's masks hold: labeled cells and per-split class counts."""

    cells: list[tuple[int, int]] = field(default_factory=list)  # (row, col) of train/val cells
    counts: dict[str, np.ndarray] = field(default_factory=dict)  # split -> bincount(256)

    def labeled(self, split: str) -> int:
        c = self.counts.get(split)
        return int(c[1:BACKGROUND].sum()) if c is not None else 0


def open_masks(
    masks: dict[str, str | Path | None], scene: str, shape: tuple[int, int]
) -> dict[str, object]:
    """Open the scene's mask rasters, checking existence, band count and size."""
    out = {}
    for split, path in (masks or {}).items():
        if split not in SPLITS:
            raise InvalidArgument(
                f"scene {scene!r}: unknown mask split {split!r}; accepted: {', '.join(SPLITS)}"
            )
        if path is None:
            continue
        if not Path(path).exists():
            raise NotFound(f"scene {scene!r}: {split} mask {path} does not exist; run mask first")
        ds = open_raster(path)
        if ds.count != 1 or (ds.height, ds.width) != shape:
            ds.close()
            raise InvalidArgument(
                f"scene {scene!r}: {split} mask {path} must be one band of "
                f"{shape[1]}x{shape[0]} pixels like the scene, got {ds.count} band(s) of "
                f"{ds.width}x{ds.height}; re-run mask for this scene"
            )
        out[split] = ds
    return out


def scan_masks(mask_ds: dict[str, object], shape: tuple[int, int], chip: int, check) -> MaskScan:
    """Grid cells (chip x chip) with any train or val label, and class counts per split."""
    height, width = shape
    scan = MaskScan(counts={s: np.zeros(256, dtype=np.int64) for s in mask_ds})
    ncols = -(-width // chip)
    found: set[tuple[int, int]] = set()
    for r0 in range(0, height, chip):
        check()
        rows = min(chip, height - r0)
        for split, ds in mask_ds.items():
            m = ds.read(1, window=Window(0, r0, width, rows)).astype(np.uint8, copy=False)
            scan.counts[split] += np.bincount(m.ravel(), minlength=256)[:256]
            if split == "test":
                continue
            labeled = (m > 0) & (m < BACKGROUND)
            padded = np.zeros((rows, ncols * chip), dtype=bool)
            padded[:, :width] = labeled
            hit = padded.reshape(rows, ncols, chip).any(axis=(0, 2))
            found.update((r0 // chip, int(j)) for j in np.flatnonzero(hit))
    scan.cells = sorted(found)
    return scan


def chip_window(cell: tuple[int, int], chip: int, shape: tuple[int, int]) -> tuple[Window, Window]:
    """(read window in the scene, cell window relative to the chip) for a grid cell.

    A chip covers its cell; at the scene's right and bottom edges it is
    shifted inwards so it holds real pixels instead of padding (padding only
    when the scene is smaller than a chip). Labels are copied for the cell
    only, so every labeled pixel lands in exactly one chip.
    """
    height, width = shape
    r_cell, c_cell = cell[0] * chip, cell[1] * chip
    r0 = max(0, min(r_cell, height - chip))
    c0 = max(0, min(c_cell, width - chip))
    read = Window(c0, r0, min(chip, width - c0), min(chip, height - r0))
    inner = Window(
        c_cell - c0, r_cell - r0, min(chip, width - c_cell), min(chip, height - r_cell)
    )
    return read, inner
