"""ROIs -> per-split label masks; background (nodata) masks; label counts; mask GeoTIFFs.

Mask values: 0 = unlabeled, k = class value k (1..254), 255 = background.
Background overrides labels because background pixels must never be trained.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import rasterio
from rasterio.features import rasterize
from rasterio.transform import Affine
from rasterio.windows import Window
from shapely.geometry.base import BaseGeometry

from sipd.errors import InvalidArgument
from sipd.labeling.geometry import SPLITS, RoiSpec, as_affine
from sipd.labeling.importers import load_json
from sipd.labeling.reading import FeatureProblems, RawFeature
from sipd.labeling.vector import OGR_EXTENSIONS, read_geojson, read_ogr
from sipd.raster import atomic_path, open_raster
from sipd.validity import Validity

UNLABELED = 0
BACKGROUND = 255
VECTOR_MASK_EXTENSIONS = (".geojson", ".json", *OGR_EXTENSIONS)
_PIXELS = Affine.identity()  # ROI geometries are already in pixel coordinates
_STRIP_BYTES = 64 * 2**20  # per-read budget when scanning a scene for nodata

# Colours for class values without a project colour (distinct, colour-blind friendly).
_PALETTE = [
    (0, 114, 178),
    (230, 159, 0),
    (0, 158, 115),
    (204, 121, 167),
    (86, 180, 233),
    (213, 94, 0),
    (240, 228, 66),
    (120, 120, 120),
    (153, 0, 0),
    (0, 0, 128),
]


def _parts(geom: BaseGeometry) -> Iterator[BaseGeometry]:
    if hasattr(geom, "geoms"):
        for part in geom.geoms:
            yield from _parts(part)
    elif not geom.is_empty:
        yield geom


def footprint(rois: Sequence[RoiSpec], shape: tuple[int, int]) -> np.ndarray:
    """Boolean footprint of `rois`.

    Polygons fill by the pixel-centre rule. Points and lines burn every pixel
    they touch (all_touched), so even a width-1 diagonal stroke labels each
    pixel it crosses; wider brushes add their width/2 buffer, centre rule.
    """
    fills, thin = [], []
    for roi in rois:
        for part in _parts(roi.geometry):
            if part.geom_type == "Polygon":
                fills.append(part)
                continue
            thin.append(part)
            if roi.width > 1:
                fills.append(part.buffer(roi.width / 2))
    out = np.zeros(shape, dtype=np.uint8)
    if fills:
        rasterize(fills, out=out, transform=_PIXELS, default_value=1, all_touched=False)
    if thin:
        rasterize(thin, out=out, transform=_PIXELS, default_value=1, all_touched=True)
    return out.view(bool)


def _check_class_values(class_values: Mapping[str, int]) -> None:
    for name, value in class_values.items():
        if not (isinstance(value, int | np.integer) and 1 <= value <= 254):
            raise InvalidArgument(
                f"class {name!r} has mask value {value!r}; accepted: 1..254 "
                "(0 is unlabeled, 255 is background)"
            )
    if len(set(class_values.values())) != len(class_values):
        raise InvalidArgument(f"two classes share a mask value: {dict(class_values)}")


def rasterize_rois(
    rois: Sequence[RoiSpec],
    *,
    width: int,
    height: int,
    class_values: Mapping[str, int],
    background: np.ndarray | None = None,
) -> tuple[dict[str, np.ndarray], dict]:
    """Per split a uint8 (height, width) mask, plus a report of label problems.

    Every split in SPLITS gets a mask, empty ones too, so callers need not
    special-case a project without test ROIs. A pixel two classes claim in one
    split is ambiguous and left unlabeled (0); a pixel drawn in several splits
    leaks between training and evaluation and is counted, not changed.
    Report: {"conflicting_pixels", "pixels_in_several_splits", "split_overlaps"}.
    """
    _check_class_values(class_values)
    shape = (height, width)
    if background is not None and background.shape != shape:
        raise InvalidArgument(
            f"the background mask is {background.shape[1]} x {background.shape[0]} pixels "
            f"but the scene is {width} x {height}"
        )
    groups: dict[str, dict[str, list[RoiSpec]]] = {s: {} for s in SPLITS}
    for roi in rois:
        if roi.class_name not in class_values:
            raise InvalidArgument(
                f"ROI {roi.source or '(unnamed)'}: class {roi.class_name!r} has no mask value; "
                f"known classes: {', '.join(class_values)}"
            )
        if roi.split not in groups:
            raise InvalidArgument(
                f"ROI {roi.source or '(unnamed)'}: split {roi.split!r} is not accepted; "
                f"accepted: {', '.join(SPLITS)}"
            )
        groups[roi.split].setdefault(roi.class_name, []).append(roi)
    keep = None if background is None else ~background.astype(bool, copy=False)
    masks: dict[str, np.ndarray] = {}
    drawn: dict[str, np.ndarray] = {}
    conflicting = 0
    for split in SPLITS:
        label = np.zeros(shape, dtype=np.uint8)
        claimed = np.zeros(shape, dtype=bool)
        conflict = np.zeros(shape, dtype=bool)
        for cls, group in groups[split].items():
            burned = footprint(group, shape)
            # Each class is burned once, so overlap with earlier claims means another class.
            conflict |= burned & claimed
            claimed |= burned
            label[burned] = class_values[cls]
        label[conflict] = UNLABELED
        if keep is not None:
            label[~keep] = BACKGROUND
            conflict &= keep
            claimed &= keep
        conflicting += int(conflict.sum())
        masks[split] = label
        drawn[split] = claimed
    overlaps = {
        f"{a}+{b}": int((drawn[a] & drawn[b]).sum())
        for i, a in enumerate(SPLITS)
        for b in SPLITS[i + 1 :]
    }
    several = sum(drawn[s].astype(np.uint8) for s in SPLITS) >= 2
    report = {
        "conflicting_pixels": conflicting,
        "pixels_in_several_splits": int(several.sum()),
        "split_overlaps": overlaps,
    }
    return masks, report


def count_labels(
    masks: Mapping[str, np.ndarray], class_values: Mapping[str, int]
) -> dict[str, dict[str, int]]:
    """Pixels per class (and "background") in each split's mask."""
    counts: dict[str, dict[str, int]] = {}
    for split, mask in masks.items():
        hist = np.bincount(mask.ravel(), minlength=256)
        counts[split] = {name: int(hist[value]) for name, value in class_values.items()}
        counts[split]["background"] = int(hist[BACKGROUND])
    return counts


def _strips(ds: rasterio.DatasetReader, bytes_per_pixel: int) -> Iterator[Window]:
    rows = max(1, _STRIP_BYTES // max(1, ds.width * bytes_per_pixel))
    for row in range(0, ds.height, rows):
        yield Window(0, row, ds.width, min(rows, ds.height - row))


def _nodata(ds: rasterio.DatasetReader) -> np.ndarray:
    """True where the pixel is invalid by GDAL's dataset mask (sipd.validity).

    All bands nodata, alpha 0 or mask 0 (and all-NaN float pixels): the same
    rule the dataset preparation and the predictor use, so a label is never
    dropped from a pixel that is classified, nor kept on one that is not.
    """
    out = np.zeros((ds.height, ds.width), dtype=bool)
    validity = Validity(ds)
    if validity.all_valid:
        return out  # nothing to read the scene for
    per_pixel = ds.count * max(np.dtype(d).itemsize for d in ds.dtypes)
    for win in _strips(ds, per_pixel):
        rows = slice(win.row_off, win.row_off + win.height)
        invalid = validity.invalid(ds.read(window=win), win)
        if invalid is not None:
            out[rows] = invalid
    return out


def _raster_background(path: str, width: int, height: int) -> np.ndarray:
    """Non-zero valid pixels of band 1; the mask's own nodata pixels say nothing."""
    with open_raster(path) as ds:
        if (ds.width, ds.height) != (width, height):
            raise InvalidArgument(
                f"background mask {path} is {ds.width} x {ds.height} pixels but the scene is "
                f"{width} x {height}; give a mask raster of the scene's size (non-zero = "
                "background) or a vector file (.geojson, .gpkg, .shp) of background polygons"
            )
        out = np.zeros((height, width), dtype=bool)
        for win in _strips(ds, 2 * np.dtype(ds.dtypes[0]).itemsize):
            rows = slice(win.row_off, win.row_off + win.height)
            out[rows] = (ds.read(1, window=win) != 0) & (ds.read_masks(1, window=win) != 0)
        return out


def _vector_background(
    path: Path, width: int, height: int, transform: Affine, crs: str
) -> np.ndarray:
    problems = FeatureProblems(path, "background mask not used:")
    if path.suffix.lower() in OGR_EXTENSIONS:
        feats = read_ogr(path, transform=transform, crs=crs, problems=problems)
    else:
        doc = load_json(path)
        if not isinstance(doc, dict):
            raise InvalidArgument(f"{path}: a background mask must be a GeoJSON FeatureCollection")
        feats = read_geojson(path, doc, transform=transform, crs=crs, problems=problems)
    polygons = []
    for feat in feats:
        with problems.feature(feat.source):
            polygons.extend(_polygon_parts(feat))
    problems.raise_if_any()
    out = np.zeros((height, width), dtype=np.uint8)
    if polygons:
        rasterize(polygons, out=out, transform=_PIXELS, default_value=1, all_touched=False)
    return out.view(bool)


def _polygon_parts(feat: RawFeature) -> list[BaseGeometry]:
    parts = list(_parts(feat.geometry))
    other = sorted({p.geom_type for p in parts if p.geom_type != "Polygon"})
    if other:
        raise InvalidArgument(
            f"background masks take polygons (or multipolygons); got {', '.join(other)}"
        )
    return parts


def background_mask(
    scene_path: str | os.PathLike[str], mask_path: str | os.PathLike[str] | None = None
) -> np.ndarray:
    """Boolean (height, width): True where the scene is nodata or `mask_path` says background.

    `mask_path` is a raster of the scene's size (non-zero = background) or a
    vector file of background polygons (.geojson/.json, .gpkg, .shp), which is
    reprojected to the scene's CRS.
    """
    with open_raster(scene_path) as ds:
        out = _nodata(ds)
        width, height, transform = ds.width, ds.height, ds.transform
        crs = ds.crs.to_string() if ds.crs else ""
    if mask_path:
        mask_path = Path(mask_path)
        if mask_path.suffix.lower() in VECTOR_MASK_EXTENSIONS:
            out |= _vector_background(mask_path, width, height, transform, crs)
        else:
            out |= _raster_background(str(mask_path), width, height)
    return out


def write_mask(
    path: str | os.PathLike[str],
    mask: np.ndarray,
    *,
    transform: Affine | Sequence[float],
    crs: str,
    colors: Mapping[int, tuple[int, int, int]] | None = None,
) -> None:
    """Write a label mask as a tiled, deflated, single-band uint8 GeoTIFF, atomically.

    No nodata value is set: 0 (unlabeled) and 255 (background) are both
    meaningful to training. A colour table (`colors` by class value, a default
    palette otherwise) makes the mask readable in any viewer.
    """
    if mask.ndim != 2 or mask.dtype != np.uint8:
        raise InvalidArgument(
            f"a label mask must be a 2-D uint8 array; got {mask.dtype} {mask.shape}"
        )
    profile = {
        "driver": "GTiff",
        "width": mask.shape[1],
        "height": mask.shape[0],
        "count": 1,
        "dtype": "uint8",
        "crs": crs or None,
        "transform": as_affine(transform),
        "tiled": True,
        "blockxsize": 256,
        "blockysize": 256,
        "compress": "deflate",
    }
    colormap = {v: (*_PALETTE[(v - 1) % len(_PALETTE)], 255) for v in range(1, 255)}
    for value, rgb in (colors or {}).items():
        colormap[int(value)] = (*rgb[:3], 255)
    colormap[UNLABELED] = (0, 0, 0, 0)
    colormap[BACKGROUND] = (64, 64, 64, 255)
    with atomic_path(path) as tmp, rasterio.open(tmp, "w", **profile) as ds:
        ds.write(mask, 1)
        ds.write_colormap(1, colormap)
        ds.update_tags(1, sipd_mask_values="0=unlabeled; 1..254=class value; 255=background")
