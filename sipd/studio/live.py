"""Live update: the instant model retrained on a scene's ROIs, predicting the visible view.

The studio calls this after each edit, so it must answer in seconds for a
1024 x 1024 view on two cores. It is the `forest` model kind's recipe (a
random forest on the filter bank of sipd.nets.filter_bank, ilastik's feature
set) with fewer scales and trees, run in the daemon's process, not as a job:
it publishes nothing, it must not queue behind a training job, and it touches
no GPU. What makes it fast:
- it works at the zoom level shown (level L = 1/2^L), read from overviews;
- the view's features are computed once per view and kept while the user
  draws; an ROI's sampled pixels and their features are computed once per ROI
  (an ROI never changes: an edit is a delete and a new ROI);
- only the forest is refitted per edit (a few thousand pixels).
"""

from __future__ import annotations

import base64
import math
import os
import threading
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.windows import Window
from shapely import affinity

from sipd.errors import FailedPrecondition, InvalidArgument
from sipd.labeling.geometry import RoiSpec, parse_wkt
from sipd.labeling.rasterize import footprint
from sipd.projects import Projects
from sipd.studio.png import encode_png
from sipd.studio.tiles import SceneTiles, max_level
from sipd.validity import Validity

# Two scales keep the view's features near 1.5 s per megapixel (RGB, two cores).
LIVE_SIGMAS = (1.0, 3.5)
# A band's normalized value where it alone is nodata: the middle of its p2..p98 stretch.
BAND_FILL = 0.5
TREES = 32
# Feature values of one view at most (float32: 4 bytes each, 400 MB): a larger view
# (more pixels or more bands) is computed one level coarser. An RGB megapixel is 45M.
MAX_VIEW_VALUES = 100_000_000
# Bytes of ROI features kept across edits (least recently used dropped first).
MAX_ROI_BYTES = 256 * 2**20
# Labeled pixels kept per ROI (a random sample of its footprint) and per class.
PER_ROI = 1500
PER_CLASS = 8000
# Footprints are burned on a grid of at most this many cells, a stride sample beyond.
MAX_BURN_CELLS = 4_000_000
# Labeled pixels are read in blocks of this side (plus the bank's halo).
BLOCK = 512
SUGGEST_REGION = 64
SUGGESTIONS = 5
TRAIN_SPLITS = ("train", "val")


@dataclass
class _RoiSamples:
    rows: np.ndarray  # level pixels
    cols: np.ndarray
    features: np.ndarray  # [M, F] float32


@dataclass
class _View:
    key: tuple[Any, ...]
    # [valid pixels, F] float32, row-major over the view: what the forest reads, as it
    # reads it (no copy per edit). 240 MB for a 4-band megapixel view; one view is kept.
    # Invalid (nodata) pixels are left out.
    rows: np.ndarray
    invalid: np.ndarray  # [h, w] bool


class LiveModels:
    """One live computation at a time; caches views, ROI samples and the last forest."""

    def __init__(self, projects: Projects, tiles: SceneTiles, threads: int = 0) -> None:
        self.projects = projects
        self.tiles = tiles
        self.threads = threads
        self._lock = threading.Lock()
        self._views: OrderedDict[tuple[Any, ...], _View] = OrderedDict()
        self._rois: OrderedDict[tuple[Any, ...], _RoiSamples] = OrderedDict()
        self._roi_bytes = 0
        self._bank: Any = None

    def run(self, project_id: str, scene_id: str, view: dict[str, Any]) -> dict[str, Any]:
        project = self.projects.get(project_id)
        scene = self.projects.get_scene(project_id, scene_id)
        info = scene["info"]
        x, y, w, h, level = _view(view, info["width"], info["height"], info["band_count"])
        rois = [r for r in self.projects.list_rois(project_id, scene_id)
                if r["split"] in TRAIN_SPLITS]  # fmt: skip
        classes = {c["name"]: c for c in project["classes"]}
        drawn = {r["class_name"] for r in rois}
        if len(drawn) < 2:
            raise FailedPrecondition(
                "live update needs train or val examples of at least two classes on this "
                f"scene; drawn so far: {', '.join(sorted(drawn)) or 'none'}"
            )
        with self._lock:
            return self._run(scene, classes, rois, (x, y, w, h, level))

    def _run(
        self,
        scene: dict[str, Any],
        classes: dict[str, dict[str, Any]],
        rois: list[dict[str, Any]],
        window: tuple[int, int, int, int, int],
    ) -> dict[str, Any]:
        import torch
        from sklearn.ensemble import RandomForestClassifier

        from sipd.nets.filter_bank import FilterBank

        started = time.perf_counter()
        x, y, w, h, level = window
        info = scene["info"]
        bands = info["band_count"]
        if self._bank is None or self._bank.in_channels != bands:
            self._bank = FilterBank(bands, LIVE_SIGMAS).eval()
        if self.threads:
            torch.set_num_threads(self.threads)
        stats = self.tiles.stats(scene["path"], info["band_names"])
        low = np.array([s.p2 for s in stats], dtype=np.float32)
        span = np.array([s.p98 - s.p2 for s in stats], dtype=np.float32)
        span[span == 0] = 1.0
        reader = _LevelReader(self.tiles, scene["path"], level, info, low, span)

        mark = time.perf_counter()
        samples = [self._roi_samples(reader, r) for r in rois]
        view, reused = self._view_features(reader, (x, y, w, h))
        features_s = time.perf_counter() - mark

        mark = time.perf_counter()
        x_train, y_train, counts = _training_set(samples, rois, classes)
        forest = RandomForestClassifier(
            n_estimators=TREES, max_features="sqrt", class_weight="balanced",
            n_jobs=self.threads or -1, random_state=0,
        )  # fmt: skip
        forest.fit(x_train, y_train)
        fit_s = time.perf_counter() - mark

        mark = time.perf_counter()
        vh, vw = view.invalid.shape
        valid = ~view.invalid.reshape(-1)
        rows = view.rows
        proba = forest.predict_proba(rows) if len(rows) else np.zeros((0, len(forest.classes_)))
        predict_s = time.perf_counter() - mark

        values = np.asarray(forest.classes_, dtype=np.int64)
        labels = np.zeros(vh * vw, dtype=np.int64)
        uncertainty = np.zeros(vh * vw, dtype=np.float32)
        if len(rows):
            labels[valid] = values[proba.argmax(axis=1)]
            uncertainty[valid] = _normalized_entropy(proba, len(classes))
        labels = labels.reshape(vh, vw)
        uncertainty = uncertainty.reshape(vh, vw)
        by_value = {c["value"]: c for c in classes.values()}
        origin = (y // reader.factor, x // reader.factor)
        suggestions = _suggestions(uncertainty, labels, view.invalid, samples, origin,
                                   reader.factor, by_value)  # fmt: skip
        total = time.perf_counter() - started
        return {
            "x": x, "y": y, "width": w, "height": h, "level": level,
            "labels": _data_url(_colour(labels, by_value)),
            "uncertainty": _data_url(_heat(uncertainty, view.invalid)),
            "classes": sorted(int(v) for v in np.unique(labels[~view.invalid])),
            "train_pixels": counts,
            "mean_uncertainty": float(uncertainty[~view.invalid].mean()) if valid.any() else 0.0,
            "suggestions": suggestions,
            "timing": {"features_s": round(features_s, 3), "fit_s": round(fit_s, 3),
                       "predict_s": round(predict_s, 3), "total_s": round(total, 3),
                       "view_features_reused": reused},
        }  # fmt: skip

    def _view_features(
        self, reader: _LevelReader, window: tuple[int, int, int, int]
    ) -> tuple[_View, bool]:
        """The view's features, and whether they were already computed (reused)."""
        key = (reader.key, window)
        if key in self._views:
            return self._views[key], True
        x, y, w, h = window
        f = 2**reader.level
        box = (x // f, y // f, math.ceil(w / f), math.ceil(h / f))
        self._views.clear()  # the old view's memory goes before the new one is built
        image, invalid, (r0, c0) = reader.read(box, self._bank.seamless_margin)
        invalid = invalid[r0 : r0 + box[3], c0 : c0 + box[2]]
        inner = (r0, c0, box[3], box[2])
        rows = bank_rows(self._bank, image, inner, self.threads or os.cpu_count() or 1)
        valid = ~invalid.reshape(-1)
        view = _View(key, rows if valid.all() else rows[valid], invalid)
        self._views[key] = view
        return view, False

    def _roi_samples(self, reader: _LevelReader, roi: dict[str, Any]) -> _RoiSamples:
        key = (reader.key, roi["id"])
        if key in self._rois:
            self._rois.move_to_end(key)
            return self._rois[key]
        rows, cols = _sample_footprint(roi, reader.level, reader.size, roi["id"])
        features = self._features_at(reader, rows, cols)
        found = _RoiSamples(rows, cols, features)
        self._rois[key] = found
        self._roi_bytes += features.nbytes
        while self._roi_bytes > MAX_ROI_BYTES and len(self._rois) > 1:
            self._roi_bytes -= self._rois.popitem(last=False)[1].features.nbytes
        return found

    def _features_at(self, reader: _LevelReader, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        import torch

        from sipd.nets.filter_bank import sparse_features

        out = np.zeros((len(rows), self._bank.num_features), dtype=np.float32)
        if not len(rows):
            return out
        blocks = (rows // BLOCK) * 1_000_000 + cols // BLOCK
        for block in np.unique(blocks):
            pick = np.nonzero(blocks == block)[0]
            br, bc = int(block // 1_000_000) * BLOCK, int(block % 1_000_000) * BLOCK
            bh = min(BLOCK, reader.size[0] - br)
            bw = min(BLOCK, reader.size[1] - bc)
            image, _, (r0, c0) = reader.read((bc, br, bw, bh), self._bank.seamless_margin)
            found = sparse_features(
                self._bank,
                torch.from_numpy(image),
                torch.from_numpy(rows[pick] - br + r0),
                torch.from_numpy(cols[pick] - bc + c0),
            )
            out[pick] = found.numpy()
        return out


def bank_rows(
    bank: Any, image: np.ndarray, inner: tuple[int, int, int, int], threads: int
) -> np.ndarray:
    """The bank's features of image[:, r0:r0+h, c0:c0+w] as [h*w, F] float32, row-major.

    The rows are cut into one strip per thread, each with the bank's halo, run
    on threads at once (torch's depthwise convolutions hardly use a second
    core by themselves); inside the image a strip sees the same pixels as the
    whole, at its edges the same replicate padding, so the result is the same.
    """
    import torch

    r0, c0, h, w = inner
    margin = bank.seamless_margin
    cuts = np.linspace(0, h, min(threads, max(1, h // 64)) + 1).astype(int)

    def strip(a: int, b: int) -> np.ndarray:
        top, bottom = max(0, r0 + a - margin), min(image.shape[1], r0 + b + margin)
        with torch.no_grad():
            out = bank(torch.from_numpy(image[None, :, top:bottom]))[0]
        part = out[:, r0 + a - top : r0 + b - top, c0 : c0 + w]
        return part.permute(1, 2, 0).reshape(-1, part.shape[0]).numpy()

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with ThreadPoolExecutor(len(cuts) - 1) as pool:
            parts = list(pool.map(strip, cuts[:-1], cuts[1:]))
    finally:
        torch.set_num_threads(before)
    return np.concatenate(parts)


class _LevelReader:
    """Reads boxes of a scene at one level (1/2^level), normalized, with a halo."""

    def __init__(
        self,
        tiles: SceneTiles,
        path: str,
        level: int,
        info: dict[str, Any],
        low: np.ndarray,
        span: np.ndarray,
    ) -> None:
        self.level = level
        self.factor = 2**level
        self.width, self.height = info["width"], info["height"]
        # The level's size in pixels, as the tiles count it.
        self.size = (math.ceil(self.height / self.factor), math.ceil(self.width / self.factor))
        self.source = tiles.source(path, level)
        self.key = (path, level, tuple(low.tolist()), tuple(span.tolist()))
        self.low, self.span = low[:, None, None], span[:, None, None]

    def read(
        self, box: tuple[int, int, int, int], halo: int
    ) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
        """(image [C, H, W] float32, invalid [H, W], (row, col) of the box in it).

        The halo is clamped to the scene: beyond it the bank pads by replication,
        as it does for a whole scene.
        """
        c, r, w, h = box
        r0, c0 = max(0, r - halo), max(0, c - halo)
        r1, c1 = min(self.size[0], r + h + halo), min(self.size[1], c + w + halo)
        f = self.factor
        window = Window(c0 * f, r0 * f, min((c1 - c0) * f, self.width - c0 * f),
                        min((r1 - r0) * f, self.height - r0 * f))  # fmt: skip
        with rasterio.open(self.source) as ds:
            data = ds.read(window=window, out_shape=(ds.count, r1 - r0, c1 - c0),
                           resampling=Resampling.nearest)  # fmt: skip
            validity = Validity(ds)
            band_bad = validity.band_invalid(data, window)
            invalid = validity.invalid(data, window, band_bad)
        image = (data.astype(np.float32) - self.low) / self.span
        if band_bad is not None:
            # As the predictor does (sipd.inference.tiling): a valid pixel with one band
            # at nodata is classified from its other bands. That band gets the middle of
            # its stretch, so a fill value like -9999 never reaches the features.
            image[band_bad] = BAND_FILL
        if invalid is None:
            invalid = np.zeros(data.shape[1:], dtype=bool)
        return image, invalid, (r - r0, c - c0)


def _view(
    view: dict[str, Any], width: int, height: int, bands: int
) -> tuple[int, int, int, int, int]:
    """The requested view clamped to the scene, aligned to its level, within MAX_VIEW_VALUES."""
    features_per_band = _features_per_band()
    needs = ("the live view needs numbers x, y, width, height (full-resolution scene pixels) "
             "and a whole number level (the tile level shown, 0 = full resolution)")  # fmt: skip
    try:
        x, y = float(view["x"]), float(view["y"])
        w, h = float(view["width"]), float(view["height"])
    except (KeyError, TypeError, ValueError, OverflowError):
        raise InvalidArgument(needs) from None
    level = view.get("level", 0)
    if isinstance(level, bool) or not isinstance(level, int):
        raise InvalidArgument(needs)
    if not all(math.isfinite(v) for v in (x, y, w, h)) or w <= 0 or h <= 0:
        raise InvalidArgument(f"the live view {view} needs finite x, y and positive width, height")
    top = max_level(width, height)
    if not 0 <= level <= top:
        raise InvalidArgument(f"level {level} is not in 0..{top} for this scene")
    x0, y0 = max(0, math.floor(x)), max(0, math.floor(y))
    x1, y1 = min(width, math.ceil(x + w)), min(height, math.ceil(y + h))
    if x1 <= x0 or y1 <= y0:
        raise InvalidArgument(f"the live view {view} does not overlap the {width} x {height} scene")
    # Features cost bands x FEATURES_PER_BAND floats per pixel: a coarser level past the budget.
    while (x1 - x0) * (y1 - y0) / 4**level * bands * features_per_band > MAX_VIEW_VALUES:
        level += 1
    f = 2**level
    # Aligned to the level's pixels at both ends (or the scene's edge), so the view, the
    # ROI reads and the returned PNG cover exactly the same pixels.
    x0, y0 = x0 // f * f, y0 // f * f
    x1, y1 = min(width, -(-x1 // f) * f), min(height, -(-y1 // f) * f)
    return x0, y0, x1 - x0, y1 - y0, level


def _features_per_band() -> int:
    from sipd.nets.filter_bank import features_per_band

    return features_per_band(LIVE_SIGMAS)


def _sample_footprint(
    roi: dict[str, Any], level: int, size: tuple[int, int], seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Level pixels (rows, cols) of an ROI's footprint: all of them, or a sample of PER_ROI."""
    f = 2**level
    geometry = affinity.scale(parse_wkt(roi["wkt"]), 1 / f, 1 / f, origin=(0, 0))
    minx, miny, maxx, maxy = geometry.bounds
    width = max(float(roi["width"]) / f, 1.0)
    pad = math.ceil(width / 2) + 1
    c0, r0 = max(0, math.floor(minx) - pad), max(0, math.floor(miny) - pad)
    c1, r1 = min(size[1], math.ceil(maxx) + pad), min(size[0], math.ceil(maxy) + pad)
    if c1 <= c0 or r1 <= r0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    stride = max(1, math.ceil(math.sqrt((c1 - c0) * (r1 - r0) / MAX_BURN_CELLS)))
    local = affinity.affine_transform(geometry, [1 / stride, 0, 0, 1 / stride,
                                                 -c0 / stride, -r0 / stride])  # fmt: skip
    shape = (math.ceil((r1 - r0) / stride), math.ceil((c1 - c0) / stride))
    burned = footprint([RoiSpec(roi["class_name"], roi["split"], local, width / stride)], shape)
    rows, cols = np.nonzero(burned)
    rows = np.minimum(rows * stride + stride // 2 + r0, size[0] - 1)
    cols = np.minimum(cols * stride + stride // 2 + c0, size[1] - 1)
    if len(rows) > PER_ROI:
        pick = np.random.default_rng(seed).choice(len(rows), PER_ROI, replace=False)
        rows, cols = rows[pick], cols[pick]
    return rows.astype(np.int64), cols.astype(np.int64)


def _training_set(
    samples: list[_RoiSamples], rois: list[dict[str, Any]], classes: dict[str, dict[str, Any]]
) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    by_class: dict[str, list[np.ndarray]] = {}
    for s, roi in zip(samples, rois, strict=True):
        by_class.setdefault(roi["class_name"], []).append(s.features)
    xs, ys, counts = [], [], {}
    rng = np.random.default_rng(0)
    for name, parts in sorted(by_class.items()):
        rows = np.concatenate(parts)
        if len(rows) > PER_CLASS:
            rows = rows[rng.choice(len(rows), PER_CLASS, replace=False)]
        counts[name] = len(rows)
        xs.append(rows)
        ys.append(np.full(len(rows), classes[name]["value"], dtype=np.int64))
    if sum(1 for n in counts.values() if n) < 2:
        raise FailedPrecondition(
            "live update needs labeled pixels of at least two classes inside the scene; "
            f"found {counts}"
        )
    return np.concatenate(xs), np.concatenate(ys), counts


def _normalized_entropy(proba: np.ndarray, n_classes: int) -> np.ndarray:
    """H(p) / ln K, as `sipctl predict --uncertainty` writes it (K = the project's classes)."""
    p = np.clip(proba, 1e-12, 1.0)
    h = -(proba * np.log(p)).sum(axis=1)
    return (h / math.log(max(n_classes, 2))).astype(np.float32)


def _suggestions(
    uncertainty: np.ndarray,
    labels: np.ndarray,
    invalid: np.ndarray,
    samples: list[_RoiSamples],
    origin: tuple[int, int],
    f: int,
    by_value: dict[int, dict[str, Any]],
) -> list[dict[str, Any]]:
    """The view's most uncertain squares away from drawn ROIs, as scene-pixel boxes."""
    from sipd.inference.suggest import MIN_VALID_SHARE, rank_regions

    size = SUGGEST_REGION
    h, w = uncertainty.shape
    gh, gw = h // size, w // size
    if not gh or not gw:
        return []
    cut = (slice(0, gh * size), slice(0, gw * size))
    u = uncertainty[cut].reshape(gh, size, gw, size)
    ok = (~invalid[cut]).reshape(gh, size, gw, size)
    count = ok.sum(axis=(1, 3))
    grid = np.where(count >= MIN_VALID_SHARE * size * size,
                    (u * ok).sum(axis=(1, 3)) / np.maximum(count, 1), np.nan)  # fmt: skip
    # origin: where this view starts at its level, to place ROI samples on the grid.
    labeled = np.zeros((gh, gw), dtype=bool)
    boxes = []
    for s in samples:
        gr, gc = (s.rows - origin[0]) // size, (s.cols - origin[1]) // size
        keep = (gr >= 0) & (gr < gh) & (gc >= 0) & (gc < gw)
        labeled[gr[keep], gc[keep]] = True
    for pick in rank_regions(grid, labeled, SUGGESTIONS, min_distance=2):
        block = labels[pick.row * size : (pick.row + 1) * size,
                       pick.col * size : (pick.col + 1) * size]  # fmt: skip
        values, counts = np.unique(block, return_counts=True)
        major = int(values[counts.argmax()])
        boxes.append({
            "x": (origin[1] + pick.col * size) * f, "y": (origin[0] + pick.row * size) * f,
            "width": size * f, "height": size * f,
            "uncertainty": round(pick.uncertainty, 4),
            "class_name": by_value.get(major, {}).get("name", ""),
        })  # fmt: skip
    return boxes


def _colour(labels: np.ndarray, by_value: dict[int, dict[str, Any]]) -> np.ndarray:
    lut = np.zeros((256, 4), dtype=np.uint8)
    for value, c in by_value.items():
        colour = c["color"].lstrip("#")
        lut[value] = [int(colour[i : i + 2], 16) for i in (0, 2, 4)] + [255]
    return lut[np.clip(labels, 0, 255)]


def _heat(uncertainty: np.ndarray, invalid: np.ndarray) -> np.ndarray:
    """Yellow (unsure) to red (most unsure); alpha grows with the uncertainty."""
    u = np.clip(uncertainty, 0.0, 1.0)
    rgba = np.empty((*u.shape, 4), dtype=np.uint8)
    rgba[..., 0] = 255
    rgba[..., 1] = (255 * (1 - u)).astype(np.uint8)
    rgba[..., 2] = 0
    rgba[..., 3] = np.where(invalid, 0, (255 * np.sqrt(u)).astype(np.uint8))
    return rgba


def _data_url(pixels: np.ndarray) -> str:
    return "data:image/png;base64," + base64.b64encode(encode_png(pixels)).decode("ascii")
