"""Projects, scenes, ROIs and masks through a real daemon."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import grpc
import numpy as np
import pyogrio.raw
import pytest
import rasterio
from shapely import wkt as shapely_wkt
from sipapi.v1 import common_pb2, labeling_pb2, project_pb2

from tests.support import Sipd, write_raster

DATA = Path(__file__).resolve().parents[1] / "data"


def _scene(
    d: Sipd,
    name: str = "a.tif",
    size: tuple[int, int] = (2674, 2610),
    bands: int = 2,
    dtype: str = "uint16",
    **kwargs: object,
) -> Path:
    rng = np.random.default_rng(0)
    data = rng.integers(1, 1000, (bands, *size)).astype(dtype)
    return write_raster(d.roots[0] / name, data, **kwargs)  # type: ignore[arg-type]


def _project(d: Sipd, name: str = "seaice", bands: str = "HH,HV") -> None:
    d.sipctl(
        "project",
        "create",
        name,
        "--classes",
        "ice,water",
        "--colors",
        "orange,indigo",
        "--bands",
        bands,
    )


def test_sip_reference_rois_import_as_25_objects(sipd: Sipd) -> None:
    d = sipd
    _project(d)
    d.sipctl("scene", "add", "seaice", str(_scene(d)), "--name", "a")
    for f in ("s1_20150915_hv.csv", "s1_20150915_hv.json"):
        shutil.copy(DATA / "sip_rois" / f, d.roots[0] / f)
    out = d.sipctl_json("roi", "import", "seaice", str(d.roots[0] / "s1_20150915_hv.csv"))
    assert out["imported"] == 25 and out["format"] == "sip-csv"
    dry = d.sipctl_json(
        "roi", "import", "seaice", str(d.roots[0] / "s1_20150915_hv.json"), "--dry-run"
    )
    assert dry["imported"] == 25 and dry["format"] == "sip-json"
    rois = d.sipctl_json("roi", "list", "seaice")["rois"]
    assert len(rois) == 25  # the dry run stored nothing
    labels = json.loads((DATA / "sip_rois" / "s1_20150915_hv.json").read_text())["label"]
    got = [f"{r['class_name']}_{r['split'].removeprefix('SPLIT_').lower()}" for r in rois]
    assert got == labels
    counts = d.sipctl_json("mask", "seaice")["counts"]
    assert counts["train"]["ice"] > 0 and counts["test"]["water"] > 0 and counts["val"]["ice"] > 0
    mask_path = d.sipctl_json("mask", "seaice")["scenes"][0]["paths"]["train"]
    with rasterio.open(mask_path) as ds:
        train = ds.read(1)
        assert ds.crs.to_string() == "EPSG:32633" and ds.shape == (2674, 2610)
    assert (train == 1).sum() == counts["train"]["ice"] and (train == 2).sum() == counts["train"][
        "water"
    ]


def test_roi_add_list_export_import_round_trip(sipd: Sipd) -> None:
    d = sipd
    _project(d)
    d.sipctl("scene", "add", "seaice", str(_scene(d, size=(300, 400))), "--name", "a")
    d.sipctl(
        "roi",
        "add",
        "seaice",
        "--class",
        "ice",
        "--wkt",
        "LINESTRING (10 10, 200 40)",
        "--width",
        "3",
    )
    d.sipctl(
        "roi",
        "add",
        "seaice",
        "--class",
        "water",
        "--split",
        "test",
        "--wkt",
        "POLYGON ((300 100, 350 100, 350 150, 300 150, 300 100))",
    )
    # Scene coordinates: pixel (20, 30) of a 10 m grid with origin (500000, 7000000).
    d.sipctl(
        "roi",
        "add",
        "seaice",
        "--class",
        "water",
        "--split",
        "val",
        "--crs",
        "scene",
        "--wkt",
        "POINT (500205 6999695)",
    )
    rois = d.sipctl_json("roi", "list", "seaice")["rois"]
    assert len(rois) == 3
    point = shapely_wkt.loads(rois[2]["wkt"])
    assert (point.x, point.y) == pytest.approx((20.5, 30.5))
    out = d.roots[0] / "rois.geojson"
    d.sipctl("roi", "export", "seaice", "-o", str(out))
    doc = json.loads(out.read_text())
    assert len(doc["features"]) == 3
    d.sipctl("project", "create", "copy", "--classes", "ice,water", "--bands", "HH,HV")
    d.sipctl("scene", "add", "copy", str(d.roots[0] / "a.tif"))
    assert d.sipctl_json("roi", "import", "copy", str(out))["imported"] == 3
    copied = d.sipctl_json("roi", "list", "copy")["rois"]
    for a, b in zip(rois, copied, strict=True):
        assert shapely_wkt.loads(a["wkt"]).equals_exact(shapely_wkt.loads(b["wkt"]), 1e-6)
        assert (a["class_name"], a["split"]) == (b["class_name"], b["split"])
    # Filters.
    assert len(d.sipctl_json("roi", "list", "seaice", "--split", "test")["rois"]) == 1
    assert len(d.sipctl_json("roi", "list", "seaice", "--class", "water")["rois"]) == 2
    # Delete one.
    rid = rois[0]["name"].rsplit("/", 1)[-1]
    d.sipctl("roi", "delete", "seaice", rid)
    assert len(d.sipctl_json("roi", "list", "seaice")["rois"]) == 2


def test_geopackage_and_shapefile_import_reprojected(sipd: Sipd) -> None:
    d = sipd
    _project(d)
    d.sipctl("scene", "add", "seaice", str(_scene(d, size=(300, 400))), "--name", "a")
    # Two points in EPSG:3857 far from the scene's UTM zone would be outside; use the scene CRS
    # for the GeoPackage and a geographic CRS for the Shapefile.
    from rasterio.warp import transform as warp

    xs, ys = [500105.0, 500305.0], [6999895.0, 6999695.0]
    lon, lat = warp("EPSG:32633", "EPSG:4326", xs, ys)
    for name, crs, (px, py) in (
        ("r.gpkg", "EPSG:32633", (xs, ys)),
        ("r.shp", "EPSG:4326", (lon, lat)),
    ):
        from shapely.geometry import Point

        geoms = np.array([Point(x, y).wkb for x, y in zip(px, py, strict=True)], dtype=object)
        driver = "GPKG" if name.endswith("gpkg") else "ESRI Shapefile"
        pyogrio.raw.write(
            d.roots[0] / name,
            geometry=geoms,
            field_data=[
                np.array(["ice", "water"], dtype=object),
                np.array(["train", "test"], dtype=object),
            ],
            fields=["class", "split"],
            geometry_type="Point",
            crs=crs,
            driver=driver,
        )
        out = d.sipctl_json("roi", "import", "seaice", str(d.roots[0] / name), "--replace")
        assert out["imported"] == 2
        rois = d.sipctl_json("roi", "list", "seaice")["rois"]
        assert len(rois) == 2
        p = shapely_wkt.loads(rois[0]["wkt"])
        assert (p.x, p.y) == pytest.approx((10.5, 10.5), abs=1e-3)
        assert rois[1]["class_name"] == "water" and rois[1]["split"] == "SPLIT_TEST"


def test_labelme_import(sipd: Sipd) -> None:
    d = sipd
    _project(d)
    d.sipctl("scene", "add", "seaice", str(_scene(d, size=(300, 400), crs=None)), "--name", "a")
    doc = {
        "imageWidth": 400,
        "imageHeight": 300,
        "shapes": [
            {
                "label": "ice_train",
                "shape_type": "polygon",
                "points": [[10, 10], [50, 10], [50, 50]],
            },
            {"label": "water", "shape_type": "line", "points": [[100, 100], [200, 120]]},
        ],
    }
    path = d.roots[0] / "labelme.json"
    path.write_text(json.dumps(doc))
    out = d.sipctl_json("roi", "import", "seaice", str(path))
    assert out["imported"] == 2 and out["format"] == "labelme"


def test_bad_inputs_are_refused_and_nothing_is_half_imported(sipd: Sipd) -> None:
    d = sipd
    c = d.client
    _project(d)
    scene = _scene(d, size=(300, 400))
    d.sipctl("scene", "add", "seaice", str(scene), "--name", "a")
    # A GeoJSON whose second feature names an unknown class: nothing is imported.
    doc = {
        "type": "FeatureCollection",
        "sipd:coordinates": "pixel",
        "features": [
            {
                "type": "Feature",
                "properties": {"class": "ice"},
                "geometry": {"type": "Point", "coordinates": [5, 5]},
            },
            {
                "type": "Feature",
                "properties": {"class": "snow"},
                "geometry": {"type": "Point", "coordinates": [6, 6]},
            },
        ],
    }
    bad = d.roots[0] / "bad.geojson"
    bad.write_text(json.dumps(doc))
    result = d.sipctl("roi", "import", "seaice", str(bad), check=False)
    assert result.returncode == 1 and "bad.geojson" in result.stderr and "snow" in result.stderr
    assert d.sipctl_json("roi", "list", "seaice")["rois"] == []
    # Outside the scene, unknown class, bad WKT.
    for wkt, cls, needle in (
        ("POINT (1000 1000)", "ice", "outside the scene"),
        ("POINT (1 1)", "snow", "known classes"),
        ("LINESTRING (1 1", "ice", "WKT"),
    ):
        with pytest.raises(grpc.RpcError) as err:
            c.labeling.CreateRoi(
                labeling_pb2.CreateRoiRequest(
                    parent="projects/seaice/scenes/a", roi=labeling_pb2.Roi(class_name=cls, wkt=wkt)
                ),
                timeout=10,
            )
        assert (
            err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and needle in err.value.details()
        )
    # Wrong band count, wrong pixel type, corrupt raster, duplicate scene, unknown project.
    three = _scene(d, "three.tif", size=(50, 50), bands=3)
    result = d.sipctl("scene", "add", "seaice", str(three), check=False)
    assert "3 band(s)" in result.stderr and "expects 2: HH, HV" in result.stderr
    f64 = _scene(d, "f64.tif", size=(50, 50), dtype="float64")
    assert "float64" in d.sipctl("scene", "add", "seaice", str(f64), check=False).stderr
    corrupt = d.roots[0] / "corrupt.tif"
    corrupt.write_bytes(scene.read_bytes()[:2000])
    assert "corrupt.tif" in d.sipctl("scene", "add", "seaice", str(corrupt), check=False).stderr
    assert (
        "ALREADY_EXISTS"
        in d.sipctl("scene", "add", "seaice", str(scene), "--name", "a", check=False).stderr
    )
    assert "NOT_FOUND" in d.sipctl("scene", "list", "nope", check=False).stderr
    named = write_raster(
        d.roots[0] / "named.tif", np.ones((2, 20, 20), np.uint16), descriptions=["VV", "VH"]
    )
    assert (
        "expects HH, HV in that order"
        in d.sipctl("scene", "add", "seaice", str(named), check=False).stderr
    )
    # Bad project definitions.
    for args, needle in (
        (["Bad Name", "--classes", "a"], "project id"),
        (["p1", "--classes", "a,a"], "twice"),
        (["p2", "--classes", "ice_train"], "split suffix"),
        (["p3", "--classes", "a", "--colors", "nocolour"], "colour"),
    ):
        assert needle in d.sipctl("project", "create", *args, check=False).stderr
    assert (
        "ALREADY_EXISTS"
        in d.sipctl("project", "create", "seaice", "--classes", "x", check=False).stderr
    )
    # Still one scene, no ROIs, daemon up.
    assert len(d.sipctl_json("scene", "list", "seaice")["scenes"]) == 1
    assert (
        c.projects.GetProject(
            project_pb2.GetProjectRequest(name="projects/seaice"), timeout=10
        ).roi_count
        == 0
    )


def test_background_mask_and_nodata_are_never_labels(sipd: Sipd) -> None:
    d = sipd
    _project(d)
    data = np.full((2, 100, 100), 500, np.uint16)
    data[:, :, :10] = 0  # nodata strip
    scene = write_raster(d.roots[0] / "s.tif", data, nodata=0)
    land = np.zeros((1, 100, 100), np.uint8)
    land[0, 50:, :] = 1
    mask = write_raster(d.roots[0] / "land.tif", land)
    d.sipctl("scene", "add", "seaice", str(scene), "--background-mask", str(mask))
    d.sipctl(
        "roi",
        "add",
        "seaice",
        "--class",
        "ice",
        "--wkt",
        "POLYGON ((0 0, 100 0, 100 100, 0 100, 0 0))",
    )
    out = d.sipctl_json("mask", "seaice")
    assert out["counts"]["train"]["ice"] == 50 * 90
    assert out["counts"]["train"]["background"] == 100 * 100 - 50 * 90
    with rasterio.open(out["scenes"][0]["paths"]["train"]) as ds:
        m = ds.read(1)
    assert (m[:, :10] == 255).all() and (m[50:, :] == 255).all() and (m[:50, 10:] == 1).all()


def test_project_listing_and_delete(sipd: Sipd) -> None:
    d = sipd
    _project(d, "one")
    _project(d, "two")
    listed = d.sipctl_json("project", "list")["projects"]
    assert [p["name"] for p in listed] == ["projects/one", "projects/two"]
    resp = d.client.projects.ListProjects(project_pb2.ListProjectsRequest(page_size=1), timeout=10)
    assert len(resp.projects) == 1 and resp.next_page_token
    d.sipctl("project", "delete", "one")
    assert [p["name"] for p in d.sipctl_json("project", "list")["projects"]] == ["projects/two"]
    p = d.sipctl_json("project", "show", "two")
    assert [c["name"] for c in p["classes"]] == ["ice", "water"] and p["classes"][0][
        "color"
    ] == "#ffa500"
    assert common_pb2.Split.Value("SPLIT_TRAIN") == 1
