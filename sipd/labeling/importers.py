"""Import ROI files into RoiSpecs: pick the reader, then decide class, split and width.

All or nothing: every feature is read and checked, and if any is bad the
import raises one InvalidArgument listing them; nothing is returned partially,
so a store never holds half of a file.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rasterio.transform import Affine

from sipd.errors import InvalidArgument, NotFound
from sipd.labeling.geometry import SPLITS, RoiSpec, split_label, validate_roi
from sipd.labeling.pixel_files import read_labelme, read_sip_csv, read_sip_json
from sipd.labeling.reading import FeatureProblems, RawFeature
from sipd.labeling.vector import OGR_EXTENSIONS, read_geojson, read_ogr

ACCEPTED_FORMATS = (
    "GeoJSON (.geojson/.json FeatureCollection or Feature), GeoPackage (.gpkg), "
    'Shapefile (.shp), SIP ROI CSV (.csv), SIP ROI JSON (.json with "objects"), '
    'labelme JSON (.json with "shapes")'
)


def load_json(path: Path) -> Any:
    try:
        with open(path, encoding="utf-8-sig") as fh:
            return json.load(fh)
    except json.JSONDecodeError as exc:
        raise InvalidArgument(
            f"{path} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
        ) from exc
    except UnicodeDecodeError as exc:
        raise InvalidArgument(f"{path} is not UTF-8 text: {exc}") from exc
    except RecursionError:
        # json recurses per nesting level; a hostile file must not reach the stack limit.
        raise InvalidArgument(
            f"{path} is nested too deeply to be an ROI file (arrays or objects inside each "
            "other thousands of levels deep)"
        ) from None
    except ValueError as exc:
        # e.g. an integer of more digits than Python converts
        raise InvalidArgument(f"{path} is not valid JSON ({exc})") from exc


def read_features(
    path: Path,
    *,
    width: int,
    height: int,
    transform: Affine | Sequence[float],
    crs: str,
    problems: FeatureProblems,
    layer: str | None = None,
) -> list[RawFeature]:
    """Dispatch on extension, and for .json on content, to the right reader."""
    ext = path.suffix.lower()
    if ext == ".csv":
        return read_sip_csv(path, width=width, height=height, problems=problems)
    if ext in OGR_EXTENSIONS:
        return read_ogr(path, transform=transform, crs=crs, problems=problems, layer=layer)
    if ext in (".geojson", ".json"):
        doc = load_json(path)
        if isinstance(doc, dict):
            if doc.get("type") in ("FeatureCollection", "Feature"):
                return read_geojson(path, doc, transform=transform, crs=crs, problems=problems)
            if "objects" in doc:
                return read_sip_json(path, doc, width=width, height=height, problems=problems)
            if "shapes" in doc:
                return read_labelme(path, doc, width=width, height=height, problems=problems)
        raise InvalidArgument(
            f"{path}: this JSON is none of the accepted ROI formats; accepted: {ACCEPTED_FORMATS}"
        )
    raise InvalidArgument(
        f"{path}: ROI files ending in {ext or '(no extension)'!r} are not accepted; "
        f"accepted: {ACCEPTED_FORMATS}"
    )


def _text(value: Any) -> str:
    return "" if value is None else str(value).strip()


def _brush_width(value: Any, field: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not (math.isfinite(number) and number > 0):
        raise InvalidArgument(
            f"property {field!r} is {value!r}; give a positive brush width in pixels"
        )
    return number


def import_rois(
    path: str | os.PathLike[str],
    *,
    width: int,
    height: int,
    transform: Affine | Sequence[float],
    crs: str,
    class_names: Sequence[str],
    default_split: str = "train",
    class_field: str = "class",
    split_field: str = "split",
    label_field: str = "label",
    width_field: str = "width",
    default_width: float = 1.0,
    layer: str | None = None,
) -> list[RoiSpec]:
    """Read every ROI of `path` onto a `width` x `height` scene (geotransform, CRS).

    Class and split come from the `class_field`/`split_field` attributes, or
    from a SIP label ("ice_train") in `label_field` (or in the class field
    when no split field is given); a missing split is `default_split`.
    `layer` picks the layer of a multi-layer GeoPackage.
    """
    path = Path(path)
    if not path.is_file():
        raise NotFound(f"ROI file {path} does not exist (or is not a file)")
    if default_split not in SPLITS:
        raise InvalidArgument(
            f"default split {default_split!r} is not accepted; accepted: {', '.join(SPLITS)}"
        )
    problems = FeatureProblems(path)
    raw = read_features(
        path,
        width=width,
        height=height,
        transform=transform,
        crs=crs,
        problems=problems,
        layer=layer,
    )
    rois: list[RoiSpec] = []
    for feat in raw:
        roi: RoiSpec | None = None
        with problems.feature(feat.source):
            cls, split = _class_and_split(
                feat, default_split, class_names, class_field, split_field, label_field
            )
            brush = feat.properties.get(width_field)
            brush = default_width if brush is None else _brush_width(brush, width_field)
            roi = RoiSpec(cls, split, feat.geometry, brush, feat.source, feat.original_crs)
        if roi is None:
            continue
        with problems.feature(feat.source, prefix=False):
            validate_roi(roi, width, height, class_names, feat.source)
            rois.append(roi)
    problems.raise_if_any()
    if not rois:
        raise InvalidArgument(f"{path} holds no ROIs; nothing was imported")
    return rois


def _class_and_split(
    feat: RawFeature,
    default_split: str,
    class_names: Sequence[str],
    class_field: str,
    split_field: str,
    label_field: str,
) -> tuple[str, str]:
    if feat.label is not None:
        return split_label(feat.label, default_split, class_names)
    props = feat.properties
    cls, split = _text(props.get(class_field)), _text(props.get(split_field)).lower()
    if not cls:
        label = _text(props.get(label_field))
        if not label:
            raise InvalidArgument(
                f"has neither a {class_field!r} nor a {label_field!r} property; give the class "
                f"in {class_field!r} (and the split in {split_field!r}), or a SIP label such "
                f"as 'ice_train' in {label_field!r}"
            )
        cls, label_split = split_label(label, default_split, class_names)
        return cls, split or label_split
    if not split:
        # A class attribute may itself be a SIP label ("ice_train").
        return split_label(cls, default_split, class_names)
    return cls, split
