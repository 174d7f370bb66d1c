"""import_rois on real files of every accepted format, and export -> import round trips."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyogrio.raw
import pytest
import shapely
from rasterio.transform import Affine
from shapely.geometry import LineString, MultiPoint, Point, Polygon, box, mapping

from sipd.errors import InvalidArgument, NotFound
from sipd.labeling import RoiSpec, export_geojson, import_rois, pixel_to_scene

# A real SIP ROI pair drawn on a 2610 x 2674 Sentinel-1 HV scene (from shared/reference).
SIP_DIR = Path(__file__).resolve().parents[1] / "data" / "sip_rois"
CLASSES = ["ice", "water"]
# A UTM 33N scene of 100 x 80 ten-metre pixels whose column 50 lies on the zone's
# central meridian (15 E, easting 500000), so lon/lat positions are known exactly.
UTM = "EPSG:32633"
T = Affine(10, 0, 499500, 0, -10, 4983000)
W, H = 100, 80


def _import(path: Path, **kw) -> list[RoiSpec]:
    args = {"width": W, "height": H, "transform": T, "crs": UTM, "class_names": CLASSES}
    return import_rois(path, **(args | kw))


def _same(a, b, tol: float = 1e-6) -> bool:
    return shapely.equals_exact(shapely.normalize(a), shapely.normalize(b), tol)


def _geojson(path: Path, features: list[dict], **members) -> Path:
    path.write_text(json.dumps({"type": "FeatureCollection", **members, "features": features}))
    return path


def _feature(geom, **props) -> dict:
    return {"type": "Feature", "geometry": mapping(geom), "properties": props}


# --- SIP reference files -------------------------------------------------------------------

EXPECTED_SIP_LABELS = (
    "ice_train ice_train ice_val ice_test water_train water_train water_val water_test "
    + "water_train " * 8
    + "ice_train ice_val ice_test water_train water_val water_test ice_train ice_train ice_train"
).split()


@pytest.mark.parametrize("name", ["s1_20150915_hv.csv", "s1_20150915_hv.json"])
def test_sip_reference_files(name: str) -> None:
    rois = import_rois(
        SIP_DIR / name,
        width=2610,
        height=2674,
        transform=Affine.identity(),
        crs="",
        class_names=CLASSES,
    )
    assert len(rois) == 25
    assert [f"{r.class_name}_{r.split}" for r in rois] == EXPECTED_SIP_LABELS
    assert (rois[2].class_name, rois[2].split) == ("ice", "val")  # object 3
    assert (rois[3].class_name, rois[3].split) == ("ice", "test")  # object 4
    assert (rois[4].class_name, rois[4].split) == ("water", "train")  # object 5
    assert rois[2].source == f"{name}#object 3"
    assert all(r.geometry.geom_type == "LineString" and r.original_crs == "pixel" for r in rois)
    assert rois[0].geometry.coords[0] == pytest.approx((384.78324225865214, 363.6769884638737))


def test_sip_csv_and_json_agree() -> None:
    kw = {
        "width": 2610,
        "height": 2674,
        "transform": Affine.identity(),
        "crs": "",
        "class_names": CLASSES,
    }
    csv_rois = import_rois(SIP_DIR / "s1_20150915_hv.csv", **kw)
    json_rois = import_rois(SIP_DIR / "s1_20150915_hv.json", **kw)
    for a, b in zip(csv_rois, json_rois, strict=True):
        assert (a.class_name, a.split) == (b.class_name, b.split)
        assert a.geometry.equals_exact(b.geometry, 0)


@pytest.mark.parametrize("name", ["s1_20150915_hv.csv", "s1_20150915_hv.json"])
def test_sip_size_mismatch(name: str) -> None:
    with pytest.raises(InvalidArgument, match=r"drawn on a 2610 x 2674 .* scene is 2600 x 2674"):
        import_rois(
            SIP_DIR / name,
            width=2600,
            height=2674,
            transform=Affine.identity(),
            crs="",
            class_names=CLASSES,
        )


def test_sip_csv_bad_object_is_named(tmp_path: Path) -> None:
    p = tmp_path / "rois.csv"
    p.write_text(
        ",width,height,Object,X,Y,Type,Label\n"
        "0,100,80,1,1,1,Polygon,ice_train\n1,100,80,1,9,1,Polygon,ice_train\n"
        "2,100,80,1,9,9,Polygon,ice_train\n3,100,80,2,5,5,Line,water_val\n"
        "4,100,80,3,5,5,Point,water_test\n"
    )
    with pytest.raises(InvalidArgument) as err:
        _import(p)
    assert "rois.csv#object 2: a Line needs at least 2 vertices; got 1" in str(err.value)
    assert "1 of 3 features" in str(err.value)


# --- labelme ---------------------------------------------------------------------------------


def test_labelme_shapes(tmp_path: Path) -> None:
    shapes = [
        {"label": "ice_train", "shape_type": "polygon", "points": [[1, 1], [9, 1], [9, 9]]},
        {"label": "water", "shape_type": "rectangle", "points": [[20, 30], [10, 10]]},
        {"label": "ice_val", "shape_type": "line", "points": [[1, 1], [5, 5]]},
        {"label": "ice_val", "shape_type": "linestrip", "points": [[1, 1], [5, 5], [9, 1]]},
        {"label": "water_test", "shape_type": "point", "points": [[3, 4]]},
        {"label": "water_test", "shape_type": "circle", "points": [[50, 40], [53, 44]]},
    ]
    p = tmp_path / "labelme.json"
    p.write_text(json.dumps({"shapes": shapes, "imageWidth": W, "imageHeight": H}))
    rois = _import(p, default_split="val")
    assert [(r.class_name, r.split) for r in rois] == [
        ("ice", "train"),
        ("water", "val"),
        ("ice", "val"),
        ("ice", "val"),
        ("water", "test"),
        ("water", "test"),
    ]
    assert rois[1].geometry.equals(box(10, 10, 20, 30))
    assert rois[4].geometry.equals(Point(3, 4))
    assert rois[5].geometry.area == pytest.approx(np.pi * 25, rel=0.01)


def test_labelme_size_and_type_errors(tmp_path: Path) -> None:
    p = tmp_path / "labelme.json"
    shape = {"label": "ice", "shape_type": "mask", "points": [[1, 1], [2, 2]]}
    p.write_text(json.dumps({"shapes": [shape], "imageWidth": W, "imageHeight": 81}))
    with pytest.raises(InvalidArgument, match="100 x 81 pixel image"):
        _import(p)
    p.write_text(json.dumps({"shapes": [shape], "imageWidth": W, "imageHeight": H}))
    with pytest.raises(InvalidArgument, match=r"shapes\[0\] \('ice'\): shape_type 'mask'"):
        _import(p)


# --- GeoJSON ---------------------------------------------------------------------------------


def test_geojson_lonlat_lands_on_the_right_pixels(tmp_path: Path) -> None:
    # 15 E 45 N is easting 500000, northing 4982950.40 in UTM 33N (a standard test value):
    # column (500000 - 499500) / 10 = 50, row (4983000 - 4982950.40) / 10 = 4.96.
    p = _geojson(tmp_path / "lonlat.geojson", [_feature(Point(15.0, 45.0), label="ice_test")])
    (roi,) = _import(p)
    assert (roi.class_name, roi.split, roi.original_crs) == ("ice", "test", "OGC:CRS84")
    assert roi.geometry.x == pytest.approx(50.0, abs=1e-4)
    assert roi.geometry.y == pytest.approx(4.96, abs=1e-3)


def test_geojson_fields_width_and_named_crs(tmp_path: Path) -> None:
    line = LineString([(499600, 4982900), (499700, 4982800)])
    crs = {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::32633"}}
    feats = [
        _feature(line, **{"class": "water", "split": "val", "width": 3}),
        _feature(line, **{"class": "ice_test"}),  # a SIP label in the class field
    ]
    rois = _import(_geojson(tmp_path / "utm.geojson", feats, crs=crs))
    assert [(r.class_name, r.split, r.width) for r in rois] == [
        ("water", "val", 3.0),
        ("ice", "test", 1.0),
    ]
    assert rois[0].geometry.equals_exact(LineString([(10, 10), (20, 20)]), 1e-9)


def test_geojson_all_or_nothing_names_every_bad_feature(tmp_path: Path) -> None:
    feats = [
        _feature(Point(50, 40), label="ice_train"),
        _feature(Point(50, 40), label="snow_train"),
        _feature(Polygon([(0, 0), (4, 4), (4, 0), (0, 4)]), label="water"),
        {"type": "Feature", "id": 7, "geometry": None, "properties": {"label": "ice"}},
        _feature(Point(50, 40)),
    ]
    p = _geojson(tmp_path / "bad.geojson", feats, **{"sipd:coordinates": "pixel"})
    with pytest.raises(InvalidArgument) as err:
        _import(p)
    msg = str(err.value)
    assert f"nothing was imported from {p}: 4 of 5 features are invalid" in msg
    assert "bad.geojson#features[1]: class 'snow'" in msg
    assert "bad.geojson#features[2]: the geometry is not valid" in msg
    assert "bad.geojson#features[3] (id 7): has no geometry" in msg
    assert "bad.geojson#features[4]: has neither a 'class' nor a 'label' property" in msg
    assert "features[0]" not in msg


def test_roi_outside_the_scene_is_refused(tmp_path: Path) -> None:
    p = _geojson(tmp_path / "far.geojson", [_feature(Point(16.5, 45.0), label="ice")])
    with pytest.raises(InvalidArgument, match=r"features\[0\] lies outside the scene \(100 x 80"):
        _import(p)


def test_lonlat_on_a_scene_without_crs_is_refused(tmp_path: Path) -> None:
    p = _geojson(tmp_path / "lonlat.geojson", [_feature(Point(15, 45), label="ice")])
    with pytest.raises(InvalidArgument, match="scene has no CRS"):
        _import(p, crs="")


def test_unaccepted_formats(tmp_path: Path) -> None:
    (tmp_path / "x.kml").write_text("<kml/>")
    with pytest.raises(InvalidArgument, match=r"'\.kml' are not accepted; accepted: GeoJSON"):
        _import(tmp_path / "x.kml")
    (tmp_path / "x.json").write_text('{"foo": 1}')
    with pytest.raises(InvalidArgument, match="none of the accepted ROI formats"):
        _import(tmp_path / "x.json")
    with pytest.raises(NotFound):
        _import(tmp_path / "missing.geojson")


# --- GeoPackage and Shapefile ------------------------------------------------------------------


def _write_ogr(path: Path, geoms: list, fields: dict[str, list], crs: str | None, gtype: str):
    wkb = np.array([shapely.to_wkb(g) for g in geoms], dtype=object)
    data = [np.array(v, dtype=object if isinstance(v[0], str) else float) for v in fields.values()]
    pyogrio.raw.write(path, wkb, data, list(fields), geometry_type=gtype, crs=crs)


PIXEL_SHAPES = [box(10, 10, 30, 20), LineString([(40, 40), (60, 70)]), Point(5.5, 6.5)]


def test_gpkg_round_trip(tmp_path: Path) -> None:
    p = tmp_path / "rois.gpkg"
    scene_geoms = [pixel_to_scene(g, T) for g in PIXEL_SHAPES]
    fields = {
        "class": ["ice", "water", "ice"],
        "split": ["train", "test", "val"],
        "width": [1.0, 5.0, 3.0],
    }
    _write_ogr(p, scene_geoms, fields, UTM, "Unknown")
    rois = _import(p)
    assert [(r.class_name, r.split, r.width) for r in rois] == [
        ("ice", "train", 1.0),
        ("water", "test", 5.0),
        ("ice", "val", 3.0),
    ]
    for roi, expected in zip(rois, PIXEL_SHAPES, strict=True):
        assert _same(roi.geometry, expected)
    assert rois[1].source == "rois.gpkg#fid 2"


def test_shp_in_lonlat_is_reprojected(tmp_path: Path) -> None:
    p = tmp_path / "rois.shp"
    _write_ogr(p, [MultiPoint([(15.0, 45.0)])], {"label": ["water_val"]}, "EPSG:4326", "MultiPoint")
    (roi,) = _import(p)
    assert (roi.class_name, roi.split) == ("water", "val")
    assert roi.geometry.geoms[0].x == pytest.approx(50.0, abs=1e-4)
    assert roi.geometry.geoms[0].y == pytest.approx(4.96, abs=1e-3)


def test_shp_without_prj_is_read_in_the_scene_crs(tmp_path: Path) -> None:
    p = tmp_path / "noprj.shp"
    polys = [pixel_to_scene(box(1, 1, 4, 4), T), pixel_to_scene(box(200, 1, 210, 4), T)]
    with pytest.warns(UserWarning):  # pyogrio's own warning about a missing CRS
        _write_ogr(p, polys, {"class": ["ice", "water"]}, None, "Polygon")
    assert not p.with_suffix(".prj").exists()
    with pytest.raises(InvalidArgument, match=r"noprj.shp#fid 1 lies outside the scene"):
        _import(p)
    with pytest.warns(UserWarning):
        _write_ogr(p, polys[:1], {"class": ["ice"]}, None, "Polygon")
    (roi,) = _import(p)
    assert _same(roi.geometry, box(1, 1, 4, 4)) and roi.original_crs == "scene"


# --- export -> import --------------------------------------------------------------------------


def _rois() -> list[tuple[int, RoiSpec]]:
    gc = shapely.GeometryCollection([Point(70.25, 70.75), box(80, 60, 90, 70)])
    specs = [
        RoiSpec("ice", "train", box(10.125, 10.5, 30, 20.75)),
        RoiSpec("water", "val", LineString([(40.3, 40.1), (60.7, 70.9), (61, 5)]), 4.0),
        RoiSpec("water", "test", MultiPoint([(5.5, 6.5), (7.25, 1.125)]), 2.5),
        RoiSpec("ice", "test", gc),
    ]
    return [(i + 11, s) for i, s in enumerate(specs)]


@pytest.mark.parametrize(
    ("coordinates", "crs"), [("scene", UTM), ("pixel", UTM), ("pixel", ""), ("scene", "")]
)
def test_export_import_round_trip(tmp_path: Path, coordinates: str, crs: str) -> None:
    doc = export_geojson(_rois(), transform=T, crs=crs, coordinates=coordinates)
    assert [f["properties"]["id"] for f in doc["features"]] == [11, 12, 13, 14]
    assert ("crs" in doc) == (coordinates == "scene" and bool(crs))
    p = tmp_path / "export.geojson"
    p.write_text(json.dumps(doc))
    back = _import(p, crs=crs)
    for (_, a), b in zip(_rois(), back, strict=True):
        assert (a.class_name, a.split, a.width) == (b.class_name, b.split, b.width)
        assert _same(a.geometry, b.geometry, 1e-6)
