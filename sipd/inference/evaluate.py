"""evaluate_model: the test report of a model on the test-labeled pixels of scenes.

Runs the same tile pipeline as prediction (same halo, padding and batching,
so the report describes exactly the labels `predict` would write), but only
over tiles whose core holds test pixels, and compares in memory instead of
writing rasters.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import rasterio

from sipd.accuracy import accuracy_report, confusion_counts
from sipd.errors import FailedPrecondition, InvalidArgument
from sipd.inference.predictor import check_background, check_scene, scene_grid
from sipd.inference.sessions import LoadedModel
from sipd.inference.tile_loop import ScenePass, run_passes
from sipd.inference.tiling import Tile
from sipd.progress import JobContext
from sipd.raster import open_raster


class ConfusionSink:
    """Tile sink accumulating [true, predicted] counts against a test mask."""

    def __init__(self, mask_path: str | os.PathLike[str], num_classes: int) -> None:
        self.mask_path = mask_path
        self.k = num_classes
        self.counts = np.zeros((num_classes, num_classes + 1), dtype=np.int64)
        self._ds: rasterio.DatasetReader | None = None

    def open(self) -> None:
        self._ds = open_raster(self.mask_path)

    def write(self, tile: Tile, outputs: dict[str, np.ndarray], invalid: np.ndarray | None) -> None:
        assert self._ds is not None
        truth = self._ds.read(1, window=tile.core)
        self.counts += confusion_counts(truth, outputs["labels"], self.k)

    def close(self) -> None:
        if self._ds is not None:
            self._ds.close()
            self._ds = None


def _test_tiles(mask_path: str, tiles: list[Tile], k: int) -> tuple[list[Tile], int]:
    """Tiles whose core holds test pixels (values 1..K), and how many such pixels."""
    chosen, pixels = [], 0
    with open_raster(mask_path) as ds:
        for tile in tiles:
            m = ds.read(1, window=tile.core)
            n = int(np.count_nonzero((m >= 1) & (m <= k)))
            if n:
                chosen.append(tile)
                pixels += n
    return chosen, pixels


def evaluate_model(
    model: LoadedModel,
    scenes: list[dict[str, Any]],
    *,
    ctx: JobContext | None = None,
    batch_size: int = 1,
    tile_size: int | None = None,
    io_threads: int = 1,
) -> dict[str, Any]:
    """The metrics.json "test" report over all scenes' test pixels.

    Each scene is {"name", "path", "test_mask", "background" (optional: bool
    array or raster, nonzero = background)}. Test masks hold 1..K for test
    pixels, 0 unlabeled and 255 background (both ignored). Labeled pixels
    the predictor leaves at 0 (input nodata, background) count as wrong and
    are totalled under "unclassified".
    """
    ctx = ctx or JobContext()
    counts = count_test_pixels(model, scenes, ctx=ctx, batch_size=batch_size, tile_size=tile_size,
                         io_threads=io_threads)  # fmt: skip
    ctx.progress("test", 1.0, "done", force=True)
    return accuracy_report(counts, model.spec.class_names, model.spec.class_values)


def count_test_pixels(
    model: LoadedModel,
    scenes: list[dict[str, Any]],
    *,
    ctx: JobContext,
    batch_size: int = 1,
    tile_size: int | None = None,
    io_threads: int = 1,
    require_pixels: bool = True,
) -> np.ndarray:
    """The [true][predicted, unclassified] counts over the scenes' test pixels, [K, K + 1]
    (evaluate_model's report is made from them; the ray executor sums them per scene).
    `require_pixels`: no test pixel in any scene is an error (else zeros come back)."""
    k = len(model.classes)
    plans = []
    for scene in scenes:
        name = scene.get("name") or str(scene.get("path"))
        if not scene.get("path") or not scene.get("test_mask"):
            raise InvalidArgument(f"scene {name}: 'path' and 'test_mask' are required")
        profile = check_scene(model, scene["path"])
        with open_raster(scene["test_mask"]) as m:
            if (m.width, m.height) != (profile["width"], profile["height"]):
                raise InvalidArgument(
                    f"scene {name}: test mask {scene['test_mask']} is {m.width}x{m.height} "
                    f"but the scene is {profile['width']}x{profile['height']}"
                )
        background = scene.get("background")
        check_background(background, profile)
        grid = scene_grid(model, profile, tile_size)
        tiles, pixels = _test_tiles(scene["test_mask"], grid.tiles(), k)
        plans.append((scene, grid, tiles, background))
        ctx.check_cancelled()

    total_tiles = sum(len(p[2]) for p in plans)
    if total_tiles == 0 and not require_pixels:
        return np.zeros((k, k + 1), dtype=np.int64)
    if total_tiles == 0:
        raise FailedPrecondition(
            "no test pixels: add ROIs with split test to the scenes (and rebuild the test "
            f"masks) before testing; scenes checked: {[s.get('name') for s in scenes]}"
        )

    # One pipeline over all scenes: the next scene is read while the current one runs.
    sinks = [ConfusionSink(scene["test_mask"], k) for scene, _, _, _ in plans]
    passes = [
        ScenePass(scene["path"], grid, tiles, sink, background)
        for (scene, grid, tiles, background), sink in zip(plans, sinks, strict=True)
        if tiles
    ]
    run_passes(
        model,
        passes,
        roles=("labels",),
        batch_size=batch_size,
        ctx=ctx,
        io_threads=io_threads,
        stage="test",
    )
    counts = np.zeros((k, k + 1), dtype=np.int64)
    for sink in sinks:
        counts += sink.counts
    return counts
