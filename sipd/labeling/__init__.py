"""ROIs: user-drawn example pixels per class and split, from files to label masks.

geometry   RoiSpec (pixel coordinates), WKT, SIP labels, coordinate changes, checks
importers  import_rois: GeoJSON, GeoPackage, Shapefile, SIP CSV/JSON, labelme JSON
export     export_geojson: a FeatureCollection that import_rois reads back unchanged
rasterize  per-split label masks, background (nodata) masks, counts, mask GeoTIFFs
"""

from sipd.labeling.geojson_export import export_geojson
from sipd.labeling.geometry import (
    SPLITS,
    RoiSpec,
    parse_wkt,
    pixel_to_scene,
    scene_to_pixel,
    split_label,
    validate_roi,
)
from sipd.labeling.importers import import_rois
from sipd.labeling.rasterize import background_mask, count_labels, rasterize_rois, write_mask

__all__ = [
    "SPLITS",
    "RoiSpec",
    "background_mask",
    "count_labels",
    "export_geojson",
    "import_rois",
    "parse_wkt",
    "pixel_to_scene",
    "rasterize_rois",
    "scene_to_pixel",
    "split_label",
    "validate_roi",
    "write_mask",
]
