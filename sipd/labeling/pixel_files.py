"""Read pixel-coordinate ROI files: SIP's CSV and JSON, and labelme JSON.

These formats store (column, row) positions on the image they were drawn on,
so the image size they record must match the scene: the same numbers on a
differently sized image would label the wrong pixels.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from shapely.geometry import LineString, MultiPoint, Point, Polygon, box
from shapely.geometry.base import BaseGeometry

from sipd.errors import InvalidArgument
from sipd.labeling.reading import FeatureProblems, RawFeature

SIP_TYPES = ("Point", "Line", "Polygon")
LABELME_TYPES = ("polygon", "rectangle", "line", "linestrip", "point", "points", "circle")


def check_image_size(path: Path, drawn: tuple[int, int], width: int, height: int) -> None:
    if drawn != (width, height):
        raise InvalidArgument(
            f"{path}: its ROIs were drawn on a {drawn[0]} x {drawn[1]} pixel image, but the "
            f"scene is {width} x {height} pixels; pixel ROIs only fit the image they were "
            "drawn on: draw them on this scene, or export them in map coordinates (GeoJSON)"
        )


def _size(value: Any, what: str, path: Path) -> int:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not (math.isfinite(number) and number > 0 and number == int(number)):
        raise InvalidArgument(f"{path}: {what} {value!r} is not a positive whole number of pixels")
    return int(number)


def _vertices(points: Any) -> list[tuple[float, float]]:
    """[[x, y], ...] as floats, refusing anything that is not finite numbers."""
    if not isinstance(points, list | tuple):
        raise InvalidArgument(f"vertices must be a list of [x, y] pairs; got {points!r}")
    out = []
    for p in points:
        try:
            x, y = (float(v) for v in p)
        except (TypeError, ValueError) as exc:
            raise InvalidArgument(f"vertex {p!r} is not an [x, y] pair of numbers") from exc
        if not (math.isfinite(x) and math.isfinite(y)):
            raise InvalidArgument(f"vertex {p!r} is not finite")
        out.append((x, y))
    return out


def _need(kind: str, xy: Sequence[tuple[float, float]], least: int) -> None:
    if len(xy) < least:
        raise InvalidArgument(f"a {kind} needs at least {least} vertices; got {len(xy)}")


def sip_geometry(kind: str, xy: Sequence[tuple[float, float]]) -> BaseGeometry:
    """A SIP object (Type Point/Line/Polygon + vertices) as a shapely geometry."""
    kind = kind.strip().capitalize()
    if kind == "Point":
        _need("Point", xy, 1)
        return Point(xy[0]) if len(xy) == 1 else MultiPoint(xy)
    if kind == "Line":
        _need("Line", xy, 2)
        return LineString(xy)
    if kind == "Polygon":
        _need("Polygon", xy, 3)
        return Polygon(xy)
    raise InvalidArgument(f"type {kind!r} is not accepted; accepted: {', '.join(SIP_TYPES)}")


def read_sip_csv(
    path: Path, *, width: int, height: int, problems: FeatureProblems
) -> list[RawFeature]:
    """SIP CSV: one row per vertex (`,width,height,Object,X,Y,Type,Label`), grouped by Object."""
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        columns = {(c or "").strip().lower(): c for c in reader.fieldnames or []}
        missing = [c for c in ("object", "x", "y", "type", "label") if c not in columns]
        if missing:
            raise InvalidArgument(
                f"{path}: not a SIP ROI CSV: missing column(s) {', '.join(missing)}; expected "
                "the header ',width,height,Object,X,Y,Type,Label' (one row per vertex)"
            )
        col = columns
        objects: dict[str, list[dict[str, str]]] = {}
        sizes: set[tuple[int, int]] = set()
        for row in reader:
            short = [c for c in ("object", "x", "y", "type", "label") if row[col[c]] is None]
            if short:
                # DictReader fills the fields a short row lacks with None.
                raise InvalidArgument(
                    f"{path}: line {reader.line_num} has too few fields (no "
                    f"{', '.join(short)}); every row needs ',width,height,Object,X,Y,Type,Label'"
                )
            objects.setdefault(row[col["object"]].strip(), []).append(row)
            if "width" in col and "height" in col:
                sizes.add(
                    (
                        _size(row[col["width"]], "width", path),
                        _size(row[col["height"]], "height", path),
                    )
                )
    for drawn in sizes:
        check_image_size(path, drawn, width, height)
    out = []
    for obj, rows in objects.items():
        source = f"{path.name}#object {obj}"
        with problems.feature(source):
            kinds = {r[col["type"]].strip() for r in rows}
            labels = {r[col["label"]].strip() for r in rows}
            if len(kinds) != 1 or len(labels) != 1:
                raise InvalidArgument(
                    "its rows disagree on Type or Label (every vertex row of one Object must "
                    f"carry the same ones); got types {sorted(kinds)}, labels {sorted(labels)}"
                )
            xy = _vertices([(r[col["x"]], r[col["y"]]) for r in rows])
            geom = sip_geometry(kinds.pop(), xy)
            out.append(RawFeature(source, geom, "pixel", label=labels.pop()))
    return out


def read_sip_json(
    path: Path, doc: dict[str, Any], *, width: int, height: int, problems: FeatureProblems
) -> list[RawFeature]:
    """SIP JSON: parallel lists "objects" (vertex lists), "type" and "label"."""
    objects, kinds, labels = doc.get("objects"), doc.get("type"), doc.get("label")
    if not all(isinstance(v, list) for v in (objects, kinds, labels)) or not (
        len(objects) == len(kinds) == len(labels)
    ):
        raise InvalidArgument(
            f'{path}: a SIP ROI JSON needs lists "objects", "type" and "label" of equal length'
        )
    size = doc.get("width/height")
    if size is not None:
        if not isinstance(size, list) or len(size) != 2:
            raise InvalidArgument(f'{path}: "width/height" must be [width, height]; got {size!r}')
        drawn = (_size(size[0], "width", path), _size(size[1], "height", path))
        check_image_size(path, drawn, width, height)
    out = []
    for i, (points, kind, label) in enumerate(zip(objects, kinds, labels, strict=True)):
        # Numbered from 1 like the Object column of the CSV SIP saves beside it.
        source = f"{path.name}#object {i + 1}"
        with problems.feature(source):
            if not isinstance(kind, str) or not isinstance(label, str):
                raise InvalidArgument(f"type {kind!r} and label {label!r} must be text")
            geom = sip_geometry(kind, _vertices(points))
            out.append(RawFeature(source, geom, "pixel", label=label.strip()))
    return out


def labelme_geometry(kind: str, xy: Sequence[tuple[float, float]]) -> BaseGeometry:
    if kind == "polygon":
        _need("polygon", xy, 3)
        return Polygon(xy)
    if kind == "rectangle":
        _need("rectangle", xy, 2)
        (x0, y0), (x1, y1) = xy[0], xy[1]
        return box(min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))
    if kind in ("line", "linestrip"):
        _need(kind, xy, 2)
        return LineString(xy)
    if kind in ("point", "points"):
        _need(kind, xy, 1)
        return Point(xy[0]) if len(xy) == 1 else MultiPoint(xy)
    if kind == "circle":
        # labelme stores the centre and one point on the rim.
        _need("circle", xy, 2)
        centre = Point(xy[0])
        return centre.buffer(centre.distance(Point(xy[1])))
    raise InvalidArgument(
        f"shape_type {kind!r} is not accepted; accepted: {', '.join(LABELME_TYPES)}"
    )


def read_labelme(
    path: Path, doc: dict[str, Any], *, width: int, height: int, problems: FeatureProblems
) -> list[RawFeature]:
    shapes = doc.get("shapes")
    if not isinstance(shapes, list):
        raise InvalidArgument(f'{path}: a labelme file needs a "shapes" list')
    if "imageWidth" in doc and "imageHeight" in doc:
        drawn = (
            _size(doc["imageWidth"], "imageWidth", path),
            _size(doc["imageHeight"], "imageHeight", path),
        )
        check_image_size(path, drawn, width, height)
    out = []
    for i, shp in enumerate(shapes):
        label = shp.get("label") if isinstance(shp, dict) else None
        source = f"{path.name}#shapes[{i}]" + (f" ({label!r})" if label else "")
        with problems.feature(source):
            if not isinstance(label, str) or not label.strip():
                raise InvalidArgument("has no label; give it a class name such as 'ice_train'")
            # Old labelme files omit shape_type; they only knew polygons.
            kind = shp.get("shape_type") or "polygon"
            geom = labelme_geometry(str(kind), _vertices(shp.get("points")))
            out.append(RawFeature(source, geom, "pixel", label=label.strip()))
    return out
