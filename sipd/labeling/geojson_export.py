"""Export ROIs as a GeoJSON FeatureCollection that import_rois reads back unchanged."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rasterio.transform import Affine
from shapely.geometry import mapping

from sipd.errors import InvalidArgument
from sipd.labeling.geometry import RoiSpec, pixel_to_scene
from sipd.labeling.vector import COORDINATE_KINDS, COORDINATES_MEMBER, parse_crs


def _crs_member(crs: str) -> dict[str, Any]:
    # The legacy named-CRS member (GeoJSON 2008) is what GDAL/QGIS read; an EPSG
    # URN is its usual spelling, and WKT still works for CRSs without a code.
    parsed = parse_crs(crs, "the scene")
    epsg = parsed.to_epsg()
    name = f"urn:ogc:def:crs:EPSG::{epsg}" if epsg else parsed.to_wkt()
    return {"type": "name", "properties": {"name": name}}


def export_geojson(
    rois: Sequence[tuple[int, RoiSpec]],
    *,
    transform: Affine | Sequence[float],
    crs: str,
    coordinates: str = "scene",
) -> dict[str, Any]:
    """A FeatureCollection of (id, ROI) pairs with properties id, class, split, width.

    "scene": coordinates in the scene's CRS, named by a "crs" member (GIS tools
    then place them); "pixel": (column, row) coordinates, flagged by a
    top-level "sipd:coordinates" member, for scenes without a CRS. Both carry
    the flag, so import_rois never mistakes them for longitude/latitude.
    """
    if coordinates not in COORDINATE_KINDS:
        raise InvalidArgument(
            f"coordinates {coordinates!r} is not accepted; accepted: "
            + ", ".join(repr(k) for k in COORDINATE_KINDS)
        )
    features = []
    for roi_id, roi in rois:
        geom = roi.geometry if coordinates == "pixel" else pixel_to_scene(roi.geometry, transform)
        features.append(
            {
                "type": "Feature",
                "id": roi_id,
                "geometry": mapping(geom),
                "properties": {
                    "id": roi_id,
                    "class": roi.class_name,
                    "split": roi.split,
                    "width": roi.width,
                },
            }
        )
    doc: dict[str, Any] = {"type": "FeatureCollection", COORDINATES_MEMBER: coordinates}
    if coordinates == "scene" and crs:
        doc["crs"] = _crs_member(crs)
    doc["features"] = features
    return doc
