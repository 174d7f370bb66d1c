"""Generated scenes and example ROIs for the demo, tests and benchmarks.

A synthetic scene is a georeferenced, tiled GeoTIFF whose pixels belong to a
few classes laid out as smooth random blobs (a jittered-grid Voronoi
partition with warped coordinates). Every class has its own spectral
signature (per-band mean), and texture plus pixel noise sit on top, so the
classes are separable but not trivially constant. `make_scene` returns the
ground truth, so accuracy can be measured exactly.

Scenes are generated and written one strip of rows at a time: a 10000 x
10000 scene never exists as a whole float array in memory (only the uint8
truth does, because it is returned).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from affine import Affine

from sipd.errors import InvalidArgument
from sipd.raster import SCENE_DTYPES, atomic_path

# Value range the class signatures are spread over, per pixel type: plausible
# for the sensors that produce such data (8-bit RGB, 16-bit reflectance x 1e4,
# signed 16-bit backscatter-like values, float reflectance).
_DTYPE_RANGE: dict[str, tuple[float, float]] = {
    "uint8": (20.0, 235.0),
    "uint16": (500.0, 4500.0),
    "int16": (-1500.0, 1500.0),
    "float32": (0.0, 1.0),
}
# Pixel noise and texture amplitude as fractions of that range. Signatures are
# spaced >= 0.35 of the range apart in every band (for 3 classes), so noise of
# 0.05 keeps classes separable while still making per-pixel values vary.
_NOISE = 0.05
_TEXTURE = 0.04

DEFAULT_SPLITS: dict[str, float] = {"train": 0.6, "val": 0.2, "test": 0.2}


def class_signatures(classes: int, bands: int, dtype: str, palette_seed: int = 0) -> np.ndarray:
    """Per-class, per-band mean values, shape (classes, bands).

    In every band the classes sit on evenly spaced levels in a random order,
    so any two classes differ in every band by at least one level step.
    Depends only on (classes, bands, dtype, palette_seed): scenes made with
    different layout seeds but the same palette are "the same land cover"
    seen twice, so a model trained on one applies to the other.
    """
    lo, hi = _DTYPE_RANGE[dtype]
    span = hi - lo
    rng = np.random.default_rng([palette_seed, classes, bands, 7919])
    levels = np.linspace(0.0, 1.0, classes) if classes > 1 else np.array([0.5])
    means = np.empty((classes, bands), dtype=np.float64)
    for b in range(bands):
        means[:, b] = lo + span * (0.15 + 0.7 * levels[rng.permutation(classes)])
    return means


def make_scene(
    path: str | Path,
    *,
    width: int,
    height: int,
    bands: int = 4,
    dtype: str = "uint16",
    seed: int = 0,
    crs: str = "EPSG:32633",
    origin: tuple[float, float] = (500000.0, 7000000.0),
    pixel_size: float = 10.0,
    nodata: float | None = None,
    classes: int = 3,
    blocksize: int = 256,
    blob_size: int | None = None,
    palette_seed: int = 0,
    compress: str | None = None,
) -> np.ndarray:
    """Write a synthetic scene to `path` and return its ground truth.

    The truth is uint8 of shape (height, width) with values 1..classes. When
    `nodata` is given, a corner triangle (a swath edge, ~2% of the scene) is
    written as nodata in every band and is 0 in the truth.

    `blob_size` is the Voronoi cell edge in pixels (default: a quarter of
    the shorter side, clamped to 24..128). `palette_seed` fixes the class
    signatures independently of `seed`, which drives layout and noise.
    """
    if dtype not in SCENE_DTYPES:
        raise InvalidArgument(f"dtype {dtype!r} not supported; accepted: {', '.join(SCENE_DTYPES)}")
    if width < 1 or height < 1 or bands < 1:
        raise InvalidArgument("width, height and bands must be >= 1")
    if not 1 <= classes <= 254:
        raise InvalidArgument(f"classes must be 1..254, got {classes}")
    if blocksize % 16:
        raise InvalidArgument(
            f"blocksize must be a multiple of 16 (GeoTIFF tiles), got {blocksize}"
        )

    cell = blob_size or int(min(128, max(24, min(width, height) // 4)))
    layout = _Layout(width, height, cell, classes, seed)
    means = class_signatures(classes, bands, dtype, palette_seed).astype(np.float32)
    lo, hi = _DTYPE_RANGE[dtype]
    span = hi - lo
    limits = _dtype_limits(dtype)

    truth = np.empty((height, width), dtype=np.uint8)
    profile: dict[str, Any] = {
        "driver": "GTiff",
        "width": width,
        "height": height,
        "count": bands,
        "dtype": dtype,
        "crs": crs,
        "transform": Affine(pixel_size, 0.0, origin[0], 0.0, -pixel_size, origin[1]),
        "nodata": nodata,
        "tiled": True,
        "blockxsize": blocksize,
        "blockysize": blocksize,
        "interleave": "band",
        # Large scenes exceed 4 GiB uncompressed; IF_SAFER switches to BigTIFF then.
        "BIGTIFF": "IF_SAFER",
    }
    if compress:
        profile["compress"] = compress

    with atomic_path(path) as tmp, rasterio.open(tmp, "w", **profile) as ds:
        ds.descriptions = tuple(f"B{i + 1}" for i in range(bands))
        for r0 in range(0, height, blocksize):
            r1 = min(height, r0 + blocksize)
            labels = layout.labels(r0, r1)
            # Own generator per strip: output does not depend on strip order.
            rng = np.random.default_rng([seed, r0, 104729])
            texture = layout.texture(r0, r1)
            edge = _swath_edge(r0, r1, width, height) if nodata is not None else None
            if edge is not None:
                labels[edge] = 0
            truth[r0:r1] = labels
            idx = np.maximum(labels.astype(np.intp) - 1, 0)
            for b in range(bands):
                band = means[idx, b]
                band += span * _TEXTURE * texture
                band += rng.standard_normal(band.shape, dtype=np.float32) * (span * _NOISE)
                out = _to_dtype(band, dtype, limits, nodata)
                if edge is not None:
                    out[edge] = nodata
                ds.write(out, b + 1, window=((r0, r1), (0, width)))
    return truth


class _Layout:
    """Jittered-grid Voronoi cells with warped coordinates, evaluated per strip."""

    def __init__(self, width: int, height: int, cell: int, classes: int, seed: int) -> None:
        rng = np.random.default_rng([seed, 15485863])
        self.cell = float(cell)
        # Warped coordinates may leave the scene by up to the warp amplitude;
        # a border of 2 extra cells keeps every candidate index inside the grid.
        self.pad = 2
        rows = math.ceil(height / cell) + 2 * self.pad
        cols = math.ceil(width / cell) + 2 * self.pad
        jitter = rng.uniform(0.15, 0.85, size=(2, rows, cols)).astype(np.float32)
        grid_r, grid_c = np.mgrid[0:rows, 0:cols].astype(np.float32)
        self.seed_r = (grid_r - self.pad + jitter[0]) * self.cell
        self.seed_c = (grid_c - self.pad + jitter[1]) * self.cell
        cls = rng.integers(1, classes + 1, size=(rows, cols))
        # Every class appears at least once inside the scene (if it has room).
        inner_r = np.arange(self.pad, rows - self.pad)
        inner_c = np.arange(self.pad, cols - self.pad)
        inner = [(r, c) for r in inner_r for c in inner_c]
        order = rng.permutation(len(inner))[:classes]
        for k, i in enumerate(order):
            cls[inner[i]] = k + 1
        self.cls = cls.astype(np.uint8)
        self.width = width
        # Low-frequency sinusoids: smooth, cheap to evaluate anywhere.
        self.warp = _waves(rng, 3, cell * 2.5, amplitude=cell * 0.35)
        self.warp2 = _waves(rng, 3, cell * 2.5, amplitude=cell * 0.35)
        self.tex = _waves(rng, 4, cell * 0.8, amplitude=1.0 / 2.0)

    def _coords(self, r0: int, r1: int) -> tuple[np.ndarray, np.ndarray]:
        rr = np.arange(r0, r1, dtype=np.float32)[:, None] + 0.5
        cc = np.arange(self.width, dtype=np.float32)[None, :] + 0.5
        shape = (r1 - r0, self.width)
        return np.broadcast_to(rr, shape), np.broadcast_to(cc, shape)

    def labels(self, r0: int, r1: int) -> np.ndarray:
        rr, cc = self._coords(r0, r1)
        wr = rr + _eval_waves(self.warp, rr, cc)
        wc = cc + _eval_waves(self.warp2, rr, cc)
        ci = np.floor(wr / self.cell).astype(np.intp) + self.pad
        cj = np.floor(wc / self.cell).astype(np.intp) + self.pad
        best = np.full(wr.shape, np.inf, dtype=np.float32)
        label = np.zeros(wr.shape, dtype=np.uint8)
        last_r, last_c = self.cls.shape[0] - 1, self.cls.shape[1] - 1
        for di in (-1, 0, 1):
            ni = np.clip(ci + di, 0, last_r)
            for dj in (-1, 0, 1):
                nj = np.clip(cj + dj, 0, last_c)
                d = (wr - self.seed_r[ni, nj]) ** 2 + (wc - self.seed_c[ni, nj]) ** 2
                closer = d < best
                best = np.where(closer, d, best)
                label = np.where(closer, self.cls[ni, nj], label)
        return label

    def texture(self, r0: int, r1: int) -> np.ndarray:
        rr, cc = self._coords(r0, r1)
        return _eval_waves(self.tex, rr, cc)


def _waves(rng: np.random.Generator, n: int, wavelength: float, amplitude: float) -> np.ndarray:
    """n random plane waves as rows (k_r, k_c, phase, amplitude)."""
    theta = rng.uniform(0, 2 * np.pi, n)
    k = 2 * np.pi / (wavelength * rng.uniform(0.7, 1.4, n))
    phase = rng.uniform(0, 2 * np.pi, n)
    amp = np.full(n, amplitude / math.sqrt(n))
    return np.stack([k * np.sin(theta), k * np.cos(theta), phase, amp], axis=1).astype(np.float32)


def _eval_waves(waves: np.ndarray, rr: np.ndarray, cc: np.ndarray) -> np.ndarray:
    out = np.zeros(rr.shape, dtype=np.float32)
    for kr, kc, phase, amp in waves:
        out += amp * np.sin(kr * rr + kc * cc + phase)
    return out


def _swath_edge(r0: int, r1: int, width: int, height: int) -> np.ndarray:
    """Boolean mask of the nodata corner triangle within rows r0..r1."""
    leg = 0.2 * min(width, height)
    rr = np.arange(r0, r1)[:, None]
    cc = np.arange(width)[None, :]
    return (rr + cc) < leg


def _dtype_limits(dtype: str) -> tuple[float, float]:
    if dtype == "float32":
        return (-np.inf, np.inf)
    info = np.iinfo(dtype)
    return (float(info.min), float(info.max))


def _to_dtype(
    band: np.ndarray, dtype: str, limits: tuple[float, float], nodata: float | None
) -> np.ndarray:
    if dtype != "float32":
        band = np.rint(band, out=band)
    np.clip(band, limits[0], limits[1], out=band)
    out = band.astype(dtype)
    if nodata is not None:
        # A valid pixel must never read back as nodata; nudge it by one step.
        hit = out == np.asarray(nodata, dtype=dtype)
        if hit.any():
            step = 1 if nodata < limits[1] else -1
            out[hit] = np.asarray(nodata + step, dtype=dtype)
    return out


# --------------------------------------------------------------------- ROIs


def sample_rois(
    truth: np.ndarray,
    *,
    seed: int = 0,
    n_lines_per_class: int = 3,
    n_points_per_class: int = 5,
    splits: Mapping[str, float] | None = None,
    line_length: int | None = None,
    margin: int = 2,
) -> list[dict[str, Any]]:
    """Sparse LINE and POINT ROIs that lie entirely inside one class of `truth`.

    Coordinates are pixel coordinates (col, row) with pixel (c, r) covering
    [c, c+1) x [r, r+1); points sit on pixel centres. Every ROI keeps
    `margin` pixels away from class boundaries and the scene edge, so a
    rasterizer using either centre or corner conventions (or a small brush)
    still labels only correct pixels. `splits` maps split name to the share
    of ROIs (default train 0.6, val 0.2, test 0.2), allocated per class and
    per kind so each split gets one when there are enough ROIs.

    Each ROI: {"id", "class_value", "split", "kind" ("line"|"point"), "wkt",
    "coords": [(col, row), ...]}. Deterministic by `seed`.
    """
    splits = dict(splits or DEFAULT_SPLITS)
    if not splits or any(v < 0 for v in splits.values()) or sum(splits.values()) <= 0:
        raise InvalidArgument("splits must map split names to non-negative shares, e.g. "
                              "{'train': 0.6, 'val': 0.2, 'test': 0.2}")
    height, width = truth.shape
    length = line_length or int(min(60, max(6, min(width, height) // 10)))
    interior = _interior(truth, margin)
    rng = np.random.default_rng([seed, 32452843])
    rois: list[dict[str, Any]] = []
    for k in sorted(int(v) for v in np.unique(truth) if v != 0):
        for kind, n in (("line", n_lines_per_class), ("point", n_points_per_class)):
            names = _allocate(splits, n)
            rng.shuffle(names)
            for split in names:
                start = _random_pixel(interior, truth, k, rng)
                if start is None:
                    break  # the class has no interior pixels left to sample
                if kind == "point":
                    coords = [(start[1] + 0.5, start[0] + 0.5)]
                else:
                    coords = _line_from(start, k, truth, interior, length, rng)
                rois.append(
                    {
                        "id": len(rois) + 1,
                        "class_value": k,
                        "split": split,
                        "kind": kind,
                        "wkt": _wkt(kind, coords),
                        "coords": coords,
                    }
                )
    return rois


def burn_rois(
    rois: list[dict[str, Any]], shape: tuple[int, int], *, split: str
) -> np.ndarray:
    """A minimal rasterizer for ROIs from `sample_rois`: a uint8 mask of one split.

    Labels the pixel under every point and every pixel a line passes through
    (sampled every 0.25 px). Meant for generated data in tests and demos;
    the daemon's real rasterizer lives in sipd.labeling.
    """
    mask = np.zeros(shape, dtype=np.uint8)
    for roi in rois:
        if roi["split"] != split:
            continue
        rows, cols = _trace(roi["coords"])
        ok = (rows >= 0) & (rows < shape[0]) & (cols >= 0) & (cols < shape[1])
        mask[rows[ok], cols[ok]] = roi["class_value"]
    return mask


def write_mask(path: str | Path, mask: np.ndarray, *, like: str | Path) -> None:
    """Write `mask` as a single-band uint8 GeoTIFF with the grid of raster `like`."""
    with rasterio.open(like) as ref:
        profile = {
            "driver": "GTiff",
            "width": ref.width,
            "height": ref.height,
            "count": 1,
            "dtype": "uint8",
            "crs": ref.crs,
            "transform": ref.transform,
            "tiled": True,
            "blockxsize": 256,
            "blockysize": 256,
            "compress": "deflate",
        }
    if mask.shape != (profile["height"], profile["width"]):
        raise InvalidArgument(f"mask shape {mask.shape} differs from the raster {like}")
    with atomic_path(path) as tmp, rasterio.open(tmp, "w", **profile) as ds:
        ds.write(mask.astype(np.uint8, copy=False), 1)


def _trace(coords: list[tuple[float, float]]) -> tuple[np.ndarray, np.ndarray]:
    pts = np.asarray(coords, dtype=np.float64)
    if len(pts) == 1:
        return np.floor(pts[:, 1]).astype(np.intp), np.floor(pts[:, 0]).astype(np.intp)
    samples = []
    for a, b in zip(pts[:-1], pts[1:], strict=True):
        n = max(2, int(np.ceil(np.hypot(*(b - a)) * 4)) + 1)
        t = np.linspace(0.0, 1.0, n)[:, None]
        samples.append(a + t * (b - a))
    s = np.concatenate(samples)
    return np.floor(s[:, 1]).astype(np.intp), np.floor(s[:, 0]).astype(np.intp)


def _interior(truth: np.ndarray, margin: int) -> np.ndarray:
    """Pixels whose (2*margin+1)^2 neighbourhood is one labelled class, inside the scene."""
    boundary = np.zeros(truth.shape, dtype=bool)
    boundary[:, :-1] |= truth[:, :-1] != truth[:, 1:]
    boundary[:, 1:] |= truth[:, :-1] != truth[:, 1:]
    boundary[:-1, :] |= truth[:-1, :] != truth[1:, :]
    boundary[1:, :] |= truth[:-1, :] != truth[1:, :]
    # Grow the boundary by margin pixels (separable max filter).
    grown = boundary.copy()
    for _ in range(max(0, margin - 1)):
        g = grown.copy()
        g[:, 1:] |= grown[:, :-1]
        g[:, :-1] |= grown[:, 1:]
        g[1:, :] |= grown[:-1, :]
        g[:-1, :] |= grown[1:, :]
        grown = g
    interior = ~grown & (truth != 0)
    m = max(margin, 1)
    interior[:m, :] = False
    interior[-m:, :] = False
    interior[:, :m] = False
    interior[:, -m:] = False
    return interior


def _random_pixel(
    interior: np.ndarray, truth: np.ndarray, k: int, rng: np.random.Generator
) -> tuple[int, int] | None:
    h, w = truth.shape
    # Rejection sampling avoids building index arrays of whole classes
    # (hundreds of MB on a 10000 x 10000 truth).
    for _ in range(64):
        r = rng.integers(0, h, 2048)
        c = rng.integers(0, w, 2048)
        hit = np.flatnonzero(interior[r, c] & (truth[r, c] == k))
        if hit.size:
            return int(r[hit[0]]), int(c[hit[0]])
    candidates = np.flatnonzero(interior & (truth == k))
    if candidates.size == 0:
        return None
    i = int(candidates[rng.integers(0, candidates.size)])
    return i // w, i % w


def _line_from(
    start: tuple[int, int],
    k: int,
    truth: np.ndarray,
    interior: np.ndarray,
    length: int,
    rng: np.random.Generator,
) -> list[tuple[float, float]]:
    r0, c0 = start[0] + 0.5, start[1] + 0.5
    h, w = truth.shape
    for attempt in range(40):
        # Shorten the line on repeated failures (narrow blobs).
        max_len = max(2.0, length * (1.0 - attempt / 40))
        n = rng.uniform(max_len / 2, max_len)
        theta = rng.uniform(0, 2 * np.pi)
        r1, c1 = r0 + n * np.sin(theta), c0 + n * np.cos(theta)
        t = np.linspace(0.0, 1.0, int(n * 4) + 2)
        rr = np.floor(r0 + t * (r1 - r0)).astype(np.intp)
        cc = np.floor(c0 + t * (c1 - c0)).astype(np.intp)
        if rr.min() < 0 or cc.min() < 0 or rr.max() >= h or cc.max() >= w:
            continue
        if interior[rr, cc].all() and (truth[rr, cc] == k).all():
            return [(round(c0, 3), round(r0, 3)), (round(float(c1), 3), round(float(r1), 3))]
    # Fall back to a one-pixel line: still inside the class.
    return [(c0, r0), (c0 + 0.25, r0)]


def _wkt(kind: str, coords: list[tuple[float, float]]) -> str:
    if kind == "point":
        x, y = coords[0]
        return f"POINT ({x:g} {y:g})"
    return "LINESTRING (" + ", ".join(f"{x:g} {y:g}" for x, y in coords) + ")"


def _allocate(splits: dict[str, float], n: int) -> list[str]:
    """n split names in proportion to the shares (largest remainder)."""
    names = [s for s, v in splits.items() if v > 0]
    total = sum(splits[s] for s in names)
    exact = {s: n * splits[s] / total for s in names}
    counts = {s: int(exact[s]) for s in names}
    rest = sorted(names, key=lambda s: exact[s] - counts[s], reverse=True)
    for s in rest[: n - sum(counts.values())]:
        counts[s] += 1
    # With enough ROIs, no split stays empty: borrow from the largest.
    if n >= len(names):
        for s in names:
            if counts[s] == 0:
                donor = max(names, key=lambda x: counts[x])
                counts[donor] -= 1
                counts[s] += 1
    return [s for s in names for _ in range(counts[s])]
