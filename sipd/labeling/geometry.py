"""ROI geometry: the RoiSpec record, WKT parsing, labels, coordinate changes, checks.

Every RoiSpec holds its geometry in pixel coordinates: (column, row) with the
origin at the top-left corner of the image, x to the right and y down (SIP's
convention). Keeping one coordinate system inside the daemon means masks never
depend on which CRS a user happened to draw in; the CRS only matters at the
edges (import, export).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import shapely
from rasterio.transform import Affine
from shapely.errors import ShapelyError
from shapely.geometry import box
from shapely.geometry.base import BaseGeometry

from sipd.errors import InvalidArgument

SPLITS = ("train", "val", "test")

ACCEPTED_TYPES = (
    "Point",
    "LineString",
    "Polygon",
    "MultiPoint",
    "MultiLineString",
    "MultiPolygon",
    "GeometryCollection",
)
ACCEPTED_TYPES_TEXT = ", ".join(ACCEPTED_TYPES[:-1]) + " or a GeometryCollection of those"


@dataclass
class RoiSpec:
    """One user-drawn example region of one class, in pixel coordinates."""

    class_name: str
    split: str
    geometry: BaseGeometry
    width: float = 1.0  # brush width in pixels for points and lines; polygons fill
    source: str = ""  # where it came from, e.g. "rois.csv#object 3"
    original_crs: str = "pixel"  # "pixel", "scene", or the CRS of the file it came from


def as_affine(transform: Affine | Sequence[float]) -> Affine:
    """Accept an Affine or its 6 (or 9) coefficients, as raster_info() reports them."""
    if isinstance(transform, Affine):
        return transform
    values = [float(v) for v in transform]
    if len(values) not in (6, 9):
        raise InvalidArgument(
            f"a geotransform needs 6 affine coefficients (a, b, c, d, e, f); got {len(values)}"
        )
    return Affine(*values[:6])


def check_geometry_type(geom: BaseGeometry, where: str) -> None:
    """Refuse geometry types that cannot be rasterized as example pixels (e.g. LinearRing)."""
    if geom.geom_type not in ACCEPTED_TYPES:
        raise InvalidArgument(
            f"{where}: geometry type {geom.geom_type} is not accepted; "
            f"accepted: {ACCEPTED_TYPES_TEXT}"
        )
    if geom.geom_type == "GeometryCollection":
        for part in geom.geoms:
            check_geometry_type(part, where)


# Deepest parenthesis nesting parse_wkt accepts: a MULTIPOLYGON is 3, a collection
# of them 4. GEOS's WKT reader recurses per level and crashes the process (SIGSEGV)
# near 100000 levels, so deeper text never reaches it.
MAX_WKT_DEPTH = 16


def _wkt_depth(text: str) -> int:
    depth = deepest = 0
    for char in text:
        if char == "(":
            depth += 1
            deepest = max(deepest, depth)
        elif char == ")":
            depth -= 1
    return deepest


def parse_wkt(text: str) -> BaseGeometry:
    """Parse a WKT geometry (Z values are dropped: masks are 2-D)."""
    if _wkt_depth(text or "") > MAX_WKT_DEPTH:
        raise InvalidArgument(
            f"geometry WKT is nested more than {MAX_WKT_DEPTH} levels deep; accepted: "
            f"{ACCEPTED_TYPES_TEXT}, e.g. 'LINESTRING (10 20, 30 40)'"
        )
    try:
        geom = shapely.from_wkt(text)
    except (ShapelyError, TypeError, ValueError) as exc:
        shown = text if len(text) <= 80 else text[:77] + "..."
        raise InvalidArgument(
            f"geometry {shown!r} is not valid WKT ({exc}); accepted: {ACCEPTED_TYPES_TEXT}, "
            "e.g. 'LINESTRING (10 20, 30 40)'"
        ) from exc
    if geom is None:
        raise InvalidArgument(f"geometry is empty text; accepted WKT of {ACCEPTED_TYPES_TEXT}")
    check_geometry_type(geom, "WKT geometry")
    if not np.isfinite(shapely.get_coordinates(geom)).all():
        # WKT reads "inf", "nan" and 1e999 as numbers; no pixel is there.
        raise InvalidArgument("WKT geometry has coordinates that are not finite numbers")
    return shapely.force_2d(geom)


def split_label(label: str, default_split: str, class_names: Sequence[str]) -> tuple[str, str]:
    """Map a SIP label such as "ice_train" to ("ice", "train").

    The text after the LAST underscore is the split when it is one of SPLITS
    (any case). A known class name wins over that reading, so a project with
    a class literally called "burn_test" keeps it whole; a label without a
    split suffix is a plain class name in `default_split`.
    """
    label = label.strip()
    head, sep, tail = label.rpartition("_")
    has_suffix = bool(sep and head) and tail.lower() in SPLITS
    if has_suffix and (head in class_names or label not in class_names):
        return head, tail.lower()
    return label, default_split


def _apply_affine(geom: BaseGeometry, t: Affine) -> BaseGeometry:
    def fn(xy: np.ndarray) -> np.ndarray:
        x, y = xy[:, 0], xy[:, 1]
        return np.column_stack((t.a * x + t.b * y + t.c, t.d * x + t.e * y + t.f))

    return shapely.transform(geom, fn)


def scene_to_pixel(geom: BaseGeometry, transform: Affine | Sequence[float]) -> BaseGeometry:
    """Scene CRS coordinates -> pixel (column, row) through the inverse geotransform."""
    t = as_affine(transform)
    if t.is_degenerate:
        raise InvalidArgument(
            f"the scene's geotransform {tuple(t)[:6]} cannot be inverted; "
            "scene coordinates cannot be turned into pixels"
        )
    return _apply_affine(geom, ~t)


def pixel_to_scene(geom: BaseGeometry, transform: Affine | Sequence[float]) -> BaseGeometry:
    """Pixel (column, row) -> scene CRS coordinates: x, y = transform * (col, row)."""
    return _apply_affine(geom, as_affine(transform))


def _fmt_bounds(geom: BaseGeometry) -> str:
    return "({:.1f}, {:.1f}, {:.1f}, {:.1f})".format(*geom.bounds)


def validate_roi(
    roi: RoiSpec, width: int, height: int, class_names: Sequence[str], source: str = ""
) -> None:
    """Check that `roi` can become example pixels of a `width` x `height` scene.

    Raises InvalidArgument naming the ROI (`source`, else roi.source), what is
    wrong and what is accepted.
    """
    name = f"ROI {source or roi.source or '(unnamed)'}"
    if roi.class_name not in class_names:
        known = ", ".join(repr(c) for c in class_names) or "none defined"
        raise InvalidArgument(
            f"{name}: class {roi.class_name!r} is not a class of this project; known classes: "
            f"{known} (SIP labels look like 'ice_train': class, underscore, split)"
        )
    if roi.split not in SPLITS:
        raise InvalidArgument(
            f"{name}: split {roi.split!r} is not accepted; accepted: {', '.join(SPLITS)}"
        )
    if not (isinstance(roi.width, int | float) and math.isfinite(roi.width) and roi.width > 0):
        raise InvalidArgument(
            f"{name}: brush width {roi.width!r} is not accepted; give a positive number of pixels"
        )
    geom = roi.geometry
    if not isinstance(geom, BaseGeometry):
        raise InvalidArgument(f"{name}: has no geometry; accepted: {ACCEPTED_TYPES_TEXT}")
    check_geometry_type(geom, name)
    if geom.is_empty:
        raise InvalidArgument(f"{name}: the geometry is empty; draw at least one point")
    if not np.isfinite(shapely.get_coordinates(geom)).all():
        raise InvalidArgument(
            f"{name}: the geometry has infinite or NaN coordinates (a failed reprojection?)"
        )
    if not geom.is_valid:
        raise InvalidArgument(
            f"{name}: the geometry is not valid ({shapely.is_valid_reason(geom)}); "
            "polygons must not cross themselves and need at least 3 distinct corners"
        )
    if not geom.intersects(box(0, 0, width, height)):
        raise InvalidArgument(
            f"{name} lies outside the scene ({width} x {height} pixels); its bounds are "
            f"{_fmt_bounds(geom)} in pixel (column, row) coordinates, the scene spans "
            f"(0, 0, {width}, {height}); check that it was drawn on this scene and in "
            "the coordinate system it is declared in"
        )
