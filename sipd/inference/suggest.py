"""Where a new label would help most: uncertain regions, spread out, not labeled yet.

A scene is cut into square regions of `size` pixels on a grid from its
top-left corner (a remainder strip narrower than `size` at the right or
bottom is never suggested: a suggestion is always a whole square inside the
scene). The predictor's streaming tile loop (sipd.inference.tile_loop) runs
the graph over the scene and hands each tile's labels and uncertainty
(normalized entropy H(p) / ln K) to a RegionSink, which keeps per region only
sums: memory is a few numbers per region, never a whole-scene array, and no
file is written.

A region is a candidate when at least half of its pixels were classified (not
nodata or background) and no ROI of the project on that scene (any split)
touches it. rank_regions, a pure function of the grid of region means and the
labeled mask, picks greedily by mean uncertainty with a least centre distance
between picks (default 2 * size: neighbours, diagonal ones too, are never both
picked), then, when that leaves fewer than n, fills up with the best remaining
candidates. Over several scenes the spread picks of every scene come first,
best first, then the fill-ups.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from sipd.errors import InvalidArgument
from sipd.inference.predictor import check_background, check_scene, scene_grid
from sipd.inference.sessions import LoadedModel
from sipd.inference.tile_loop import Background, ScenePass, run_passes
from sipd.inference.tiling import Tile
from sipd.progress import JobContext

# A region counts as a candidate when this share of its pixels was classified.
MIN_VALID_SHARE = 0.5


class Pick(NamedTuple):
    row: int  # region grid row (pixels: row * size)
    col: int
    uncertainty: float
    spread: bool  # picked under the distance rule (False: a fill-up)


def rank_regions(
    uncertainty: np.ndarray,
    labeled: np.ndarray,
    n: int,
    min_distance: float,
) -> list[Pick]:
    """The regions to suggest, best first.

    `uncertainty`: 2-D grid of region mean uncertainties, NaN for regions that
    are no candidates (too few valid pixels, outside the scene); `labeled`:
    bool grid of the same shape, True where an existing ROI touches the region.
    `min_distance`: least distance between the centres of two picks in region
    units (Euclidean; 0 or less: no spreading). Greedy by uncertainty (ties: the
    upper, then the left one first, so the result is deterministic); when fewer
    than `n` regions are that far apart, the best remaining candidates fill up
    to `n` (with spread False).
    """
    u = np.asarray(uncertainty, dtype=np.float64)
    mask = np.asarray(labeled, dtype=bool)
    if u.ndim != 2 or u.shape != mask.shape:
        raise ValueError(f"uncertainty {u.shape} and labeled {mask.shape} must be one 2-D shape")
    if n < 1:
        return []
    ok = np.isfinite(u) & ~mask
    rows, cols = np.nonzero(ok)
    values = u[rows, cols]
    # lexsort: last key first -> by -value, then row, then col.
    order = np.lexsort((cols, rows, -values))
    picks: list[Pick] = []
    taken = np.zeros(order.size, dtype=bool)
    limit2 = float(min_distance) ** 2
    for idx, k in enumerate(order):
        if len(picks) >= n:
            break
        r, c = int(rows[k]), int(cols[k])
        if limit2 > 0 and any((r - p.row) ** 2 + (c - p.col) ** 2 < limit2 for p in picks):
            continue
        picks.append(Pick(r, c, float(values[k]), True))
        taken[idx] = True
    for idx, k in enumerate(order):
        if len(picks) >= n:
            break
        if not taken[idx]:
            picks.append(Pick(int(rows[k]), int(cols[k]), float(values[k]), False))
    return picks


class RegionSink:
    """Tile sink reducing labels and uncertainty to sums per square region.

    Used in the tile loop's writer thread only. Regions are `size` pixels on a
    grid from (0, 0); the grid covers the whole scene (partial regions at the
    right and bottom edge are counted but never candidates).
    """

    def __init__(self, height: int, width: int, size: int, n_classes: int) -> None:
        self.height, self.width, self.size = height, width, size
        self.rows = -(-height // size)
        self.cols = -(-width // size)
        self.k = n_classes
        self.sum = np.zeros((self.rows, self.cols), dtype=np.float64)
        self.valid = np.zeros((self.rows, self.cols), dtype=np.int64)
        # [region row, region col, label value (0: unclassified)]; int32: a region
        # has at most 4096^2 pixels.
        self.class_counts = np.zeros((self.rows, self.cols, n_classes + 1), dtype=np.int32)

    def open(self) -> None:
        pass

    def write(self, tile: Tile, outputs: dict[str, np.ndarray], invalid: np.ndarray | None) -> None:
        labels = outputs["labels"]
        u = outputs.get("uncertainty")
        if u is None:
            raise RuntimeError("the tile loop gave no uncertainty: probabilities were not computed")
        # Only the regions this tile touches: the work per tile does not grow with the scene.
        rr = (tile.row + np.arange(tile.height)) // self.size
        cc = (tile.col + np.arange(tile.width)) // self.size
        r0, c0 = int(rr[0]), int(cc[0])
        nr, nc = int(rr[-1]) - r0 + 1, int(cc[-1]) - c0 + 1
        cell = ((rr - r0)[:, None] * nc + (cc - c0)[None, :]).ravel()
        lab = np.minimum(labels.ravel().astype(np.int64), self.k)  # no value beyond K
        valid = lab != 0
        n = nr * nc
        window = (slice(r0, r0 + nr), slice(c0, c0 + nc))
        self.sum[window] += np.bincount(
            cell[valid], weights=u.ravel()[valid].astype(np.float64), minlength=n
        ).reshape(nr, nc)
        self.valid[window] += np.bincount(cell[valid], minlength=n).reshape(nr, nc)
        k1 = self.k + 1
        self.class_counts[window] += (
            np.bincount(cell * k1 + lab, minlength=n * k1).reshape(nr, nc, k1).astype(np.int32)
        )

    def close(self) -> None:
        pass

    def grid(self) -> np.ndarray:
        """Mean uncertainty per region; NaN where the region is no candidate by its pixels."""
        full_r, full_c = self.height // self.size, self.width // self.size
        valid = self.valid
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = self.sum / valid
        ok = valid >= MIN_VALID_SHARE * self.size * self.size
        ok[full_r:, :] = False
        ok[:, full_c:] = False
        return np.where(ok, mean, np.nan)

    def classes(self, row: int, col: int) -> np.ndarray:
        """Pixels per label value (index 0: unclassified) in one region."""
        return self.class_counts[row, col]


def labeled_regions(
    rois: Sequence[tuple[str, float]], shape: tuple[int, int], size: int
) -> np.ndarray:
    """Bool grid (regions of `size` px): True where an ROI (pixel WKT, brush width) touches.

    Generous on purpose, as a suggestion on top of a label is wasted: every
    geometry is grown by half its brush width (at least half a pixel) before
    it is tested against the region squares.
    """
    import shapely
    from shapely.geometry import box

    from sipd.labeling.geometry import parse_wkt

    rows, cols = shape
    out = np.zeros(shape, dtype=bool)
    for wkt, width in rois:
        geom = parse_wkt(wkt).buffer(max(float(width) / 2.0, 0.5))
        if geom.is_empty:
            continue
        x0, y0, x1, y1 = geom.bounds
        r0, r1 = max(0, int(y0 // size)), min(rows - 1, int(y1 // size))
        c0, c1 = max(0, int(x0 // size)), min(cols - 1, int(x1 // size))
        if r0 > r1 or c0 > c1:
            continue
        rr, cc = np.mgrid[r0 : r1 + 1, c0 : c1 + 1]
        boxes = [box(c * size, r * size, (c + 1) * size, (r + 1) * size)
                 for r, c in zip(rr.ravel(), cc.ravel(), strict=True)]  # fmt: skip
        hit = shapely.intersects(np.array(boxes, dtype=object), geom)
        out[rr.ravel()[hit], cc.ravel()[hit]] = True
    return out


@dataclass
class SuggestScene:
    """One scene to search: its raster, grid and the ROIs it already has."""

    name: str
    src: str | os.PathLike[str]
    crs: str = ""
    transform: Sequence[float] = ()
    # (pixel WKT, brush width) of every ROI on the scene, any split.
    rois: list[tuple[str, float]] = field(default_factory=list)
    background: Background | Callable[[], Background] = None


@dataclass
class Region:
    scene: str
    row: int  # pixels
    col: int
    size: int
    uncertainty: float
    class_mix: dict[str, float]
    majority_class: str
    spread: bool
    rank: int = 0


def suggest_regions(
    model: LoadedModel,
    scenes: Sequence[SuggestScene],
    *,
    n: int,
    size: int,
    min_distance: float = 0.0,
    tile_size: int | None = None,
    batch_size: int = 1,
    ctx: JobContext | None = None,
) -> tuple[list[Region], int]:
    """The best `n` regions over `scenes` (ranked 1..), and how many regions qualified.

    Runs the model through the streaming tile loop, one pass per scene, into
    RegionSinks; `min_distance` in pixels between region centres (0: 2 * size).
    """
    ctx = ctx or JobContext()
    if "probabilities" not in model.outputs:
        from sipd.errors import FailedPrecondition

        raise FailedPrecondition(
            f"model {model.spec.name} has no probabilities output in model.yaml: "
            "its uncertainty cannot be computed"
        )
    passes, sinks = [], []
    for scene in scenes:
        profile = check_scene(model, scene.src)
        check_background(scene.background, profile)
        if size > profile["width"] or size > profile["height"]:
            raise InvalidArgument(
                f"region size {size} does not fit in scene {scene.name} "
                f"({profile['width']} x {profile['height']} pixels); give a smaller size"
            )
        grid = scene_grid(model, profile, tile_size)
        sink = RegionSink(profile["height"], profile["width"], size, len(model.classes))
        sinks.append(sink)
        passes.append(ScenePass(scene.src, grid, grid.tiles(), sink, scene.background))
    run_passes(
        model,
        passes,
        roles=("labels", "uncertainty"),
        batch_size=batch_size,
        ctx=ctx,
        stage="suggest",
        progress_span=0.98,
    )
    distance_cells = (min_distance if min_distance > 0 else 2.0 * size) / size
    names = [c.name for c in model.classes]
    regions: list[Region] = []
    candidates = 0
    for scene, sink in zip(scenes, sinks, strict=True):
        grid = sink.grid()
        labeled = labeled_regions(scene.rois, grid.shape, size)
        candidates += int(np.count_nonzero(np.isfinite(grid) & ~labeled))
        for pick in rank_regions(grid, labeled, n, distance_cells):
            counts = sink.classes(pick.row, pick.col)[1:]
            total = max(1, int(counts.sum()))
            regions.append(
                Region(
                    scene=scene.name,
                    row=pick.row * size,
                    col=pick.col * size,
                    size=size,
                    uncertainty=round(pick.uncertainty, 6),
                    class_mix={
                        nm: round(int(c) / total, 4) for nm, c in zip(names, counts, strict=True)
                    },
                    majority_class=names[int(np.argmax(counts))],
                    spread=pick.spread,
                )
            )
    order = {s.name: i for i, s in enumerate(scenes)}
    regions.sort(key=lambda r: (not r.spread, -r.uncertainty, order[r.scene], r.row, r.col))
    best = regions[:n]
    for i, region in enumerate(best):
        region.rank = i + 1
    ctx.progress("suggest", 1.0, f"{len(best)} region(s)", force=True)
    return best, candidates


def regions_geojson(regions: Sequence[Region], scenes: Sequence[SuggestScene]) -> dict[str, Any]:
    """The regions as a FeatureCollection of squares, the way ROIs are exported
    (sipd.labeling.geojson_export): in the scenes' CRS with a "crs" member when
    every region's scene has one and the same CRS, else in pixel (column, row)
    coordinates, flagged by the top-level "sipd:coordinates" member."""
    from shapely.geometry import box, mapping

    from sipd.labeling.geojson_export import _crs_member
    from sipd.labeling.geometry import pixel_to_scene
    from sipd.labeling.vector import COORDINATES_MEMBER

    by_name = {s.name: s for s in scenes}
    crss = {by_name[r.scene].crs for r in regions} or {s.crs for s in scenes}
    kind = "scene" if len(crss) == 1 and "" not in crss else "pixel"
    features = []
    for r in regions:
        geom = box(r.col, r.row, r.col + r.size, r.row + r.size)
        if kind == "scene":
            geom = pixel_to_scene(geom, by_name[r.scene].transform)
        features.append(
            {
                "type": "Feature",
                "id": r.rank,
                "geometry": mapping(geom),
                "properties": {
                    "rank": r.rank,
                    "scene": r.scene,
                    "uncertainty": r.uncertainty,
                    "majority_class": r.majority_class,
                    "class_mix": r.class_mix,
                    "row": r.row,
                    "col": r.col,
                    "size": r.size,
                    "coordinates": kind,
                },
            }
        )
    doc: dict[str, Any] = {"type": "FeatureCollection", COORDINATES_MEMBER: kind}
    if kind == "scene":
        doc["crs"] = _crs_member(next(iter(crss)))
    doc["features"] = features
    # A round trip through JSON: tuples become lists, as a reader sees them.
    return json.loads(json.dumps(doc))
