"""Read GIS vector files (GeoJSON, GeoPackage, Shapefile) into pixel-coordinate features.

Geometries are reprojected from the file's CRS to the scene's CRS with
rasterio.warp.transform_geom, then mapped to pixels through the inverse
geotransform. Class/split attributes are left to the importer, so the same
reader also serves vector background masks.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyogrio
import pyogrio.raw
import shapely
from pyogrio.errors import DataLayerError, DataSourceError
from rasterio.crs import CRS
from rasterio.errors import CRSError
from rasterio.transform import Affine
from rasterio.warp import transform_geom
from shapely.errors import ShapelyError
from shapely.geometry import mapping, shape
from shapely.geometry.base import BaseGeometry

from sipd.errors import InvalidArgument
from sipd.labeling.geometry import check_geometry_type, scene_to_pixel
from sipd.labeling.reading import FeatureProblems, RawFeature

log = logging.getLogger(__name__)

# Top-level GeoJSON member saying which coordinates the file holds. "pixel": our
# pixel (column, row) convention, so ROIs of scenes without a CRS round-trip;
# "scene": the scene's own CRS/geotransform even when no "crs" member names it.
COORDINATES_MEMBER = "sipd:coordinates"
COORDINATE_KINDS = ("pixel", "scene")

# RFC 7946: GeoJSON without a (legacy) "crs" member is longitude/latitude WGS 84.
GEOJSON_DEFAULT_CRS = "OGC:CRS84"

OGR_EXTENSIONS = (".gpkg", ".shp")
_GEOM_ERRORS = (ShapelyError, ValueError, TypeError, KeyError, AttributeError, IndexError)


def parse_crs(text: str, where: str) -> CRS:
    try:
        return CRS.from_user_input(text)
    except CRSError as exc:
        raise InvalidArgument(
            f"{where}: CRS {text!r} is not recognised ({exc}); accepted: an EPSG code "
            "('EPSG:32633', 'urn:ogc:def:crs:EPSG::32633'), OGC:CRS84, WKT or PROJ text"
        ) from exc


def scene_crs(crs: str | CRS | None) -> CRS | None:
    if crs is None or crs == "":
        return None
    return crs if isinstance(crs, CRS) else parse_crs(str(crs), "the scene")


def to_pixels(
    geom: BaseGeometry, src: CRS | None, dst: CRS | None, transform: Affine | Sequence[float]
) -> BaseGeometry:
    """Reproject `geom` from `src` to the scene CRS `dst` (when they differ), then to pixels."""
    if src is not None and dst is not None and src != dst:
        geom = shape(transform_geom(src, dst, mapping(geom)))
        if not np.isfinite(shapely.get_coordinates(geom)).all():
            raise InvalidArgument(
                f"could not be reprojected from {src.to_string()} to the scene's "
                f"{dst.to_string()} (it lies outside the area where that projection is defined)"
            )
    return scene_to_pixel(geom, transform)


def _no_scene_crs_error(path: Path, file_crs: CRS) -> InvalidArgument:
    return InvalidArgument(
        f"{path}: its geometries are in {file_crs.to_string()}, but the scene has no CRS, "
        "so they cannot be placed on it; give the ROIs in pixel coordinates instead "
        f'(GeoJSON with a top-level "{COORDINATES_MEMBER}": "pixel" member, SIP CSV/JSON '
        "or labelme JSON)"
    )


def _geojson_source_crs(path: Path, doc: dict[str, Any]) -> tuple[str, CRS | None]:
    """Which coordinates a GeoJSON document holds: ("pixel"|"scene"|crs text, CRS or None)."""
    kind = doc.get(COORDINATES_MEMBER)
    if kind is not None and kind not in COORDINATE_KINDS:
        raise InvalidArgument(
            f"{path}: {COORDINATES_MEMBER!r} is {kind!r}; accepted: "
            + ", ".join(repr(k) for k in COORDINATE_KINDS)
        )
    if kind == "pixel":
        return "pixel", None
    member = doc.get("crs")
    if member is not None:
        name = (member.get("properties") or {}).get("name") if isinstance(member, dict) else None
        if member.get("type") != "name" or not isinstance(name, str):
            raise InvalidArgument(
                f'{path}: the "crs" member must be a named CRS such as '
                '{"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::32633"}}; '
                f"got {member!r}"
            )
        return name, parse_crs(name, str(path))
    if kind == "scene":
        return "scene", None
    return GEOJSON_DEFAULT_CRS, CRS.from_user_input(GEOJSON_DEFAULT_CRS)


def read_geojson(
    path: Path,
    doc: dict[str, Any],
    *,
    transform: Affine | Sequence[float],
    crs: str | CRS | None,
    problems: FeatureProblems,
) -> list[RawFeature]:
    """Features of a GeoJSON FeatureCollection or single Feature, in pixel coordinates."""
    if doc.get("type") == "FeatureCollection":
        features = doc.get("features")
        if not isinstance(features, list):
            raise InvalidArgument(f'{path}: a FeatureCollection needs a "features" list')
    elif doc.get("type") == "Feature":
        features = [doc]
    else:
        raise InvalidArgument(
            f"{path}: GeoJSON type {doc.get('type')!r} is not accepted; accepted: "
            "FeatureCollection or Feature (a bare geometry has no class to learn)"
        )
    original, src = _geojson_source_crs(path, doc)
    lonlat = original == GEOJSON_DEFAULT_CRS and "crs" not in doc
    dst = scene_crs(crs)
    if src is not None and dst is None:
        raise _no_scene_crs_error(path, src)
    out: list[RawFeature] = []
    for i, feat in enumerate(features):
        fid = feat.get("id") if isinstance(feat, dict) else None
        source = f"{path.name}#features[{i}]" + (f" (id {fid})" if fid is not None else "")
        with problems.feature(source):
            if not isinstance(feat, dict) or feat.get("type") != "Feature":
                raise InvalidArgument('is not a GeoJSON object with "type": "Feature"')
            geom = _parse_geojson_geometry(feat.get("geometry"))
            if lonlat:
                _check_lonlat(geom)
            geom = geom if original == "pixel" else to_pixels(geom, src, dst, transform)
            props = feat.get("properties") or {}
            if not isinstance(props, dict):
                raise InvalidArgument(f'"properties" must be an object; got {props!r}')
            out.append(RawFeature(source, geom, original, props))
    return out


def _parse_geojson_geometry(obj: Any) -> BaseGeometry:
    if obj is None:
        raise InvalidArgument("has no geometry (null)")
    try:
        geom = shape(obj)
    except _GEOM_ERRORS as exc:
        raise InvalidArgument(f"its geometry is not valid GeoJSON ({exc})") from exc
    check_geometry_type(geom, "its geometry")
    if not np.isfinite(shapely.get_coordinates(geom)).all():
        raise InvalidArgument("its geometry has coordinates that are not finite numbers")
    return shapely.force_2d(geom)


def _check_lonlat(geom: BaseGeometry) -> None:
    """GeoJSON without a "crs" member is longitude/latitude; numbers out of range mean
    the file holds projected coordinates (e.g. UTM) without saying so."""
    xy = shapely.get_coordinates(geom)
    if len(xy) and ((np.abs(xy[:, 0]) > 180).any() or (np.abs(xy[:, 1]) > 90).any()):
        x, y = xy[(np.abs(xy[:, 0]) > 180) | (np.abs(xy[:, 1]) > 90)][0]
        raise InvalidArgument(
            f"has coordinate ({x:g}, {y:g}), which is not longitude/latitude; a GeoJSON file "
            'without a "crs" member holds WGS 84 longitude/latitude (RFC 7946). For projected '
            'coordinates add a "crs" member, e.g. {"type": "name", "properties": {"name": '
            f'"urn:ogc:def:crs:EPSG::32633"}}}}, or "{COORDINATES_MEMBER}": "scene"'
        )


def _pick_layer(path: Path, layer: str | None) -> str:
    try:
        layers = [str(name) for name, _ in pyogrio.list_layers(path)]
    except (DataSourceError, DataLayerError, OSError) as exc:
        raise InvalidArgument(f"cannot read {path} as a vector file: {exc}") from exc
    if layer is not None:
        if layer not in layers:
            raise InvalidArgument(
                f"{path} has no layer {layer!r}; its layers: {', '.join(layers) or 'none'}"
            )
        return layer
    if len(layers) != 1:
        raise InvalidArgument(
            f"{path} holds {len(layers)} layers ({', '.join(layers) or 'none'}); "
            "say which one to read"
        )
    return layers[0]


def _plain(value: Any) -> Any:
    """numpy scalars -> Python values; NaN (OGR's null for numbers) -> None."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and value != value:
        return None
    return value


def read_ogr(
    path: Path,
    *,
    transform: Affine | Sequence[float],
    crs: str | CRS | None,
    problems: FeatureProblems,
    layer: str | None = None,
) -> list[RawFeature]:
    """Features of one layer of a GeoPackage or Shapefile, in pixel coordinates.

    A layer without a CRS (a Shapefile without its .prj) is read as being in
    the scene's CRS: such files are nearly always digitised on top of the
    scene itself. A warning is logged, and ROIs that then miss the scene are
    refused by validation with their bounds, which shows the mistake.
    """
    name = _pick_layer(path, layer)
    try:
        meta, fids, wkbs, values = pyogrio.raw.read(
            path, layer=name, force_2d=True, return_fids=True
        )
    except (DataSourceError, DataLayerError, OSError) as exc:
        raise InvalidArgument(f"cannot read layer {name!r} of {path}: {exc}") from exc
    dst = scene_crs(crs)
    if meta.get("crs"):
        original = str(meta["crs"])
        src: CRS | None = parse_crs(original, str(path))
        if dst is None:
            raise _no_scene_crs_error(path, src)
    else:
        log.warning(
            "%s has no CRS (for a Shapefile: no .prj); reading its coordinates in the scene's CRS",
            path,
        )
        original, src = "scene", None
    fields = [str(f) for f in meta["fields"]]
    out: list[RawFeature] = []
    for i, fid in enumerate(fids):
        source = f"{path.name}#fid {int(fid)}"
        with problems.feature(source):
            wkb = wkbs[i] if wkbs is not None else None
            if wkb is None:
                raise InvalidArgument("has no geometry")
            try:
                geom = shapely.from_wkb(wkb)
            except _GEOM_ERRORS as exc:
                raise InvalidArgument(f"its geometry cannot be decoded ({exc})") from exc
            check_geometry_type(geom, "its geometry")
            props = {f: _plain(col[i]) for f, col in zip(fields, values, strict=True)}
            out.append(RawFeature(source, to_pixels(geom, src, dst, transform), original, props))
    return out
