"""Masks of one scene from its stored ROIs: the step shared by ComputeMasks,
dataset preparation and testing."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sipd.labeling.geometry import RoiSpec, parse_wkt
from sipd.labeling.rasterize import background_mask, count_labels, rasterize_rois, write_mask


def roi_specs(rois: Sequence[Mapping[str, Any]]) -> list[RoiSpec]:
    """Stored ROI rows ({class_name, split, wkt (pixels), width}) -> RoiSpec."""
    return [
        RoiSpec(
            r["class_name"], r["split"], parse_wkt(r["wkt"]), float(r["width"]), r.get("source", "")
        )
        for r in rois
    ]


def scene_masks(
    scene: Mapping[str, Any],
    rois: Sequence[Mapping[str, Any]],
    classes: Sequence[Mapping[str, Any]],
    out_dir: str | Path,
    splits: Sequence[str] = ("train", "val", "test"),
) -> dict[str, Any]:
    """Rasterize `rois` on `scene`'s grid and write one mask GeoTIFF per split.

    `scene` holds path, background_mask, and its raster info (width, height,
    transform, crs). Returns {"paths": {split: path}, "counts": {split: {class: n}},
    "conflicting_pixels", "pixels_in_several_splits"}.
    """
    class_values = {c["name"]: int(c["value"]) for c in classes}
    colors = {int(c["value"]): _rgb(c["color"]) for c in classes}
    info = scene["info"]
    background = background_mask(scene["path"], scene.get("background_mask") or None)
    masks, report = rasterize_rois(
        roi_specs(rois),
        width=info["width"],
        height=info["height"],
        class_values=class_values,
        background=background,
    )
    out = Path(out_dir)
    paths: dict[str, str] = {}
    for split in splits:
        path = out / f"{split}.tif"
        write_mask(path, masks[split], transform=info["transform"], crs=info["crs"], colors=colors)
        paths[split] = str(path)
    counts = count_labels({s: masks[s] for s in splits}, class_values)
    return {
        "paths": paths,
        "counts": counts,
        "conflicting_pixels": int(report.get("conflicting_pixels", 0)),
        "pixels_in_several_splits": int(report.get("pixels_in_several_splits", 0)),
    }


def _rgb(color: str) -> tuple[int, int, int]:
    color = color.lstrip("#")
    return int(color[0:2], 16), int(color[2:4], 16), int(color[4:6], 16)
