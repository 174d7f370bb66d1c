"""On-disk form of a prepared dataset: out_dir/chips.npz + out_dir/dataset.json.

Both files are written atomically, chips first. Each carries the same
dataset_id, so a reader can tell a pair from two different preparations
(e.g. one that was interrupted between the two renames).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sipd.errors import FailedPrecondition
from sipd.raster import atomic_path

FORMAT = "sipd-dataset/1"
CHIPS_FILE = "chips.npz"
SUMMARY_FILE = "dataset.json"


@dataclass
class Chips:
    """Chips as arrays: raw band values and the train/val labels of each chip."""

    image: np.ndarray  # float32 [N, C, S, S], raw values; invalid/padding = band mean
    train: np.ndarray  # uint8 [N, S, S]: 0 unlabeled, k class, 255 ignored
    val: np.ndarray  # uint8 [N, S, S]
    scene: np.ndarray  # int32 [N], index into the summary's scenes
    origin: np.ndarray  # int32 [N, 2], (row, col) of the chip's window in its scene


def save(out_dir: Path, chips: Chips, summary: dict[str, Any]) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_dir / CHIPS_FILE) as tmp, open(tmp, "wb") as f:
        # A file object, not a name: np.savez would append ".npz" to the temp name.
        np.savez(
            f,
            dataset_id=np.array(summary["dataset_id"]),
            image=chips.image,
            train=chips.train,
            val=chips.val,
            scene=chips.scene,
            origin=chips.origin,
        )
    with atomic_path(out_dir / SUMMARY_FILE) as tmp:
        tmp.write_text(json.dumps(_jsonable(summary), indent=2) + "\n")


def load(dataset_dir: str | Path) -> tuple[Chips, dict[str, Any]]:
    """Read a prepared dataset; FailedPrecondition when it is missing or inconsistent."""
    d = Path(dataset_dir)
    chips_path, summary_path = d / CHIPS_FILE, d / SUMMARY_FILE
    if not chips_path.is_file() or not summary_path.is_file():
        raise FailedPrecondition(
            f"no prepared dataset in {d} (need {CHIPS_FILE} and {SUMMARY_FILE}); "
            "run dataset prepare first"
        )
    summary = json.loads(summary_path.read_text())
    if summary.get("format") != FORMAT:
        raise FailedPrecondition(
            f"{summary_path} has format {summary.get('format')!r}, expected {FORMAT!r}; "
            "run dataset prepare again"
        )
    summary["labeled_pixels"] = {
        split: {int(k): int(v) for k, v in counts.items()}
        for split, counts in summary["labeled_pixels"].items()
    }
    with np.load(chips_path) as z:
        if str(z["dataset_id"]) != summary["dataset_id"]:
            raise FailedPrecondition(
                f"{chips_path} and {summary_path} come from different preparations "
                "(one was interrupted); run dataset prepare again"
            )
        chips = Chips(z["image"], z["train"], z["val"], z["scene"], z["origin"])
    return chips, summary


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    return obj
