"""predict_scene: a scene in, a label map COG (and optional confidence/probabilities) out."""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from sipd.errors import FailedPrecondition, InvalidArgument
from sipd.inference.engine import LoadedModel
from sipd.inference.pipeline import run_tiles
from sipd.inference.tiling import TileGrid, make_grid
from sipd.inference.writers import SceneWriter
from sipd.jobs.context import JobContext
from sipd.raster import atomic_path, copy_to_cog, open_raster, scratch_path

# Share of the progress bar for the tile loop; the COG copies take the rest.
_TILE_SHARE = 0.95


def check_scene(model: LoadedModel, src: str | os.PathLike[str]) -> dict[str, Any]:
    """Open the scene once to check it fits the model; return its grid as a profile."""
    with open_raster(src) as ds:
        if ds.count != len(model.bands):
            raise InvalidArgument(
                f"scene {src} has {ds.count} bands but model {model.spec.name} expects "
                f"{len(model.bands)}: {list(model.bands)} (in this order)"
            )
        if np.issubdtype(np.dtype(ds.dtypes[0]), np.complexfloating):
            raise InvalidArgument(
                f"scene {src} has complex pixels ({ds.dtypes[0]}); convert to intensity first"
            )
        return {"width": ds.width, "height": ds.height, "crs": ds.crs, "transform": ds.transform}


def check_background(background: Any, profile: dict[str, Any]) -> None:
    if isinstance(background, np.ndarray):
        shape = (profile["height"], profile["width"])
        if background.shape != shape:
            raise InvalidArgument(
                f"background mask is {background.shape[0]}x{background.shape[1]} (rows x cols) "
                f"but the scene is {shape[0]}x{shape[1]}"
            )
    elif background is not None:
        with open_raster(background) as bg:
            if (bg.height, bg.width) != (profile["height"], profile["width"]):
                raise InvalidArgument(
                    f"background mask {background} is {bg.width}x{bg.height} but the scene is "
                    f"{profile['width']}x{profile['height']}"
                )


def scene_grid(model: LoadedModel, profile: dict[str, Any], tile_size: int | None) -> TileGrid:
    size = model.tile.size if tile_size is None else int(tile_size)
    if size < 1:
        raise InvalidArgument(f"tile_size must be positive, got {tile_size}")
    tile = model.tile
    return make_grid(profile["width"], profile["height"], size, tile.halo, tile.multiple)


def pixel_area_m2(profile: dict[str, Any]) -> float | None:
    """Area of one pixel in m², or None when the CRS is not projected (or absent)."""
    crs = profile.get("crs")
    if crs is None or not crs.is_projected:
        return None
    t = profile["transform"]
    try:
        _, metres = crs.linear_units_factor
    except Exception:  # a CRS without usable linear units: report counts only
        return None
    return abs(t.a * t.e - t.b * t.d) * float(metres) ** 2


def _scratch_blocksize(grid: TileGrid) -> int:
    # Core windows that coincide with whole blocks are written without GDAL
    # having to merge partial blocks in its cache.
    for b in (512, 256):
        if grid.core_h % b == 0 and grid.core_w % b == 0:
            return b
    return 512


def predict_scene(
    model: LoadedModel,
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    *,
    confidence_path: str | os.PathLike[str] | None = None,
    probabilities_path: str | os.PathLike[str] | None = None,
    background: np.ndarray | str | os.PathLike[str] | None = None,
    tile_size: int | None = None,
    batch_size: int = 4,
    ctx: JobContext | None = None,
    io_threads: int = 1,
) -> dict[str, Any]:
    """Classify every pixel of `src` into a label-map COG at `dst`.

    `background` (bool array of the scene's shape, or a raster whose nonzero
    pixels are background) marks pixels never to classify; they and input
    nodata are written as 0. Each output appears atomically, all of them
    only once the whole scene is done; on error or cancel none is left behind.
    `io_threads` is the number of reader threads (each with its own handle).
    """
    ctx = ctx or JobContext()
    start = time.perf_counter()
    profile = check_scene(model, src)
    check_background(background, profile)
    grid = scene_grid(model, profile, tile_size)

    finals: dict[str, Path] = {"labels": Path(dst)}
    if confidence_path is not None:
        finals["confidence"] = Path(confidence_path)
    if probabilities_path is not None:
        finals["probabilities"] = Path(probabilities_path)
    if len({p.resolve() for p in finals.values()}) != len(finals):
        raise InvalidArgument("label, confidence and probability outputs must be different files")
    missing = [r for r in finals if r not in model.outputs]
    if missing:
        raise FailedPrecondition(
            f"model {model.spec.name} has no {', '.join(missing)} output in model.yaml"
        )

    with contextlib.ExitStack() as stack:
        # Entered first so they exit last: temporaries are renamed only after
        # every COG copy succeeded, and removed on any error.
        final_tmps = {r: stack.enter_context(atomic_path(p)) for r, p in finals.items()}
        scratch = {r: stack.enter_context(scratch_path(p)) for r, p in finals.items()}
        sink = SceneWriter(
            profile,
            model.classes,
            model.spec.name,
            scratch["labels"],
            scratch.get("confidence"),
            scratch.get("probabilities"),
            blocksize=_scratch_blocksize(grid),
        )
        stats = run_tiles(
            model,
            src,
            grid,
            grid.tiles(),
            sink,
            roles=tuple(finals),
            background=background,
            batch_size=batch_size,
            ctx=ctx,
            io_threads=io_threads,
            stage="predict",
            progress_span=_TILE_SHARE,
        )
        cog_start = time.perf_counter()
        for role in finals:
            ctx.check_cancelled()
            if role == "labels":
                copy_to_cog(scratch[role], final_tmps[role], resampling="NEAREST")
            elif role == "confidence":
                copy_to_cog(scratch[role], final_tmps[role], resampling="AVERAGE", predictor="YES")
            else:
                copy_to_cog(
                    scratch[role],
                    final_tmps[role],
                    resampling="AVERAGE",
                    predictor="FLOATING_POINT",
                )
        cog_seconds = time.perf_counter() - cog_start

    seconds = time.perf_counter() - start
    ctx.progress("predict", 1.0, "done", force=True)
    counts = sink.counts
    area = pixel_area_m2(profile)
    names = [c.name for c in model.classes]
    pixels_total = profile["width"] * profile["height"]
    timing = stats.as_dict()
    timing["cog_s"] = round(cog_seconds, 3)
    timing["loop_s"] = round(stats.seconds, 3)
    return {
        "width": profile["width"],
        "height": profile["height"],
        "pixels": int(counts[1:].sum()),
        "class_pixels": {n: int(counts[i + 1]) for i, n in enumerate(names)},
        # Unknown area (geographic CRS or none) is reported as 0.0 with
        # pixel_area_m2 None, so consumers can tell "0 m²" from "unknown".
        "class_area_m2": {
            n: (float(counts[i + 1]) * area if area is not None else 0.0)
            for i, n in enumerate(names)
        },
        "pixel_area_m2": area,
        "seconds": round(seconds, 3),
        "mpx_per_s": round(pixels_total / 1e6 / seconds, 3) if seconds > 0 else 0.0,
        "tiles": stats.tiles,
        "tile_shape": list(grid.tile_shape),
        "provider": model.provider,
        "timing": timing,
    }
