"""RoiSpec helpers: SIP labels, WKT, coordinate changes and validation."""

from __future__ import annotations

import pytest
from rasterio.transform import Affine
from shapely.geometry import LineString, Point, Polygon, box

from sipd.errors import InvalidArgument
from sipd.labeling import (
    RoiSpec,
    parse_wkt,
    pixel_to_scene,
    scene_to_pixel,
    split_label,
    validate_roi,
)

CLASSES = ["ice", "water", "open_water"]


@pytest.mark.parametrize(
    ("label", "expected"),
    [
        ("ice_train", ("ice", "train")),
        ("water_val", ("water", "val")),
        ("ice_test", ("ice", "test")),
        ("open_water_test", ("open_water", "test")),  # the LAST underscore splits
        ("open_water", ("open_water", "train")),  # no split suffix: default split
        ("ice", ("ice", "train")),
        ("ice_TEST", ("ice", "test")),
        ("snow_val", ("snow", "val")),  # unknown classes are validate_roi's job
    ],
)
def test_split_label(label: str, expected: tuple[str, str]) -> None:
    assert split_label(label, "train", CLASSES) == expected


def test_split_label_keeps_a_class_named_like_a_split() -> None:
    assert split_label("burn_test", "val", ["burn_test"]) == ("burn_test", "val")
    assert split_label("burn_test_train", "val", ["burn_test"]) == ("burn_test", "train")


def test_parse_wkt_accepts_the_listed_types_and_drops_z() -> None:
    assert parse_wkt("POINT Z (1 2 3)").equals(Point(1, 2))
    assert parse_wkt("LINESTRING (0 0, 5 5)").geom_type == "LineString"
    gc = parse_wkt("GEOMETRYCOLLECTION (POINT (1 1), POLYGON ((0 0, 1 0, 1 1, 0 0)))")
    assert gc.geom_type == "GeometryCollection"


@pytest.mark.parametrize("text", ["LINESTRING (0 0", "hello", "LINEARRING (0 0, 1 0, 1 1, 0 0)"])
def test_parse_wkt_refuses_with_the_accepted_types(text: str) -> None:
    with pytest.raises(InvalidArgument, match="MultiPolygon"):
        parse_wkt(text)


def test_scene_pixel_round_trip() -> None:
    t = Affine(10, 0, 500000, 0, -10, 5000000)
    line = LineString([(0, 0), (10.5, 20.25)])
    scene = pixel_to_scene(line, t)
    assert list(scene.coords) == [(500000, 5000000), (500105, 4999797.5)]
    back = scene_to_pixel(scene, t)
    assert back.equals_exact(line, 1e-9)


def _roi(geom, cls="ice", split="train", width=1.0) -> RoiSpec:
    return RoiSpec(cls, split, geom, width, source="test#1")


def test_validate_roi_accepts_a_good_roi() -> None:
    validate_roi(_roi(box(1, 1, 5, 5)), 10, 10, CLASSES)


def test_validate_roi_unknown_class_lists_known_classes() -> None:
    with pytest.raises(InvalidArgument, match=r"'snow'.*known classes: 'ice', 'water'"):
        validate_roi(_roi(Point(1, 1), cls="snow"), 10, 10, CLASSES)


def test_validate_roi_bad_split_and_width() -> None:
    with pytest.raises(InvalidArgument, match="accepted: train, val, test"):
        validate_roi(_roi(Point(1, 1), split="training"), 10, 10, CLASSES)
    with pytest.raises(InvalidArgument, match="positive"):
        validate_roi(_roi(Point(1, 1), width=0), 10, 10, CLASSES)


def test_validate_roi_invalid_and_empty_geometry() -> None:
    bowtie = Polygon([(0, 0), (4, 4), (4, 0), (0, 4)])
    with pytest.raises(InvalidArgument, match="not valid .*Self-intersection"):
        validate_roi(_roi(bowtie), 10, 10, CLASSES)
    with pytest.raises(InvalidArgument, match="empty"):
        validate_roi(_roi(Point()), 10, 10, CLASSES)


def test_validate_roi_outside_the_scene_gives_bounds() -> None:
    with pytest.raises(InvalidArgument) as err:
        validate_roi(_roi(LineString([(20, 20), (30, 25)])), 10, 8, CLASSES, "f.csv#object 3")
    msg = str(err.value)
    assert "f.csv#object 3 lies outside the scene (10 x 8 pixels)" in msg
    assert "(20.0, 20.0, 30.0, 25.0)" in msg
