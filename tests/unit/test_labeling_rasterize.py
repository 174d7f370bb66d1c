"""ROIs -> per-split masks, background masks from nodata/raster/vector, mask GeoTIFFs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import Affine
from shapely.geometry import LineString, MultiPoint, Point, box, mapping

from sipd.errors import InvalidArgument
from sipd.labeling import (
    RoiSpec,
    background_mask,
    count_labels,
    pixel_to_scene,
    rasterize_rois,
    write_mask,
)

VALUES = {"ice": 1, "water": 2}
UTM = "EPSG:32633"
T = Affine(10, 0, 499500, 0, -10, 4983000)
W, H = 40, 30


def _scene(path: Path, data: np.ndarray, nodata: float | None = None) -> Path:
    count, height, width = data.shape
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=width,
        height=height,
        count=count,
        dtype=data.dtype,
        crs=UTM,
        transform=T,
        nodata=nodata,
    ) as ds:
        ds.write(data)
    return path


def test_counts_for_a_known_polygon_line_and_point() -> None:
    rois = [
        RoiSpec("ice", "train", box(2, 3, 6, 8)),  # 4 x 5 pixel centres inside
        RoiSpec("water", "train", LineString([(10.5, 20.5), (19.5, 20.5)])),  # row 20, cols 10-19
        RoiSpec("water", "val", Point(30.5, 5.5)),  # one pixel
        RoiSpec("water", "test", Point(30.5, 15.5), width=3),  # a 3 x 3 brush
        RoiSpec("ice", "test", LineString([(0.5, 0.5), (9.5, 3.5)])),  # a thin diagonal
    ]
    masks, report = rasterize_rois(rois, width=W, height=H, class_values=VALUES)
    assert set(masks) == {"train", "val", "test"}
    assert all(m.dtype == np.uint8 and m.shape == (H, W) for m in masks.values())
    assert (masks["train"][3:8, 2:6] == 1).all()
    assert (masks["train"][20, 10:20] == 2).all()
    assert masks["val"][5, 30] == 2
    assert (masks["test"][14:17, 29:32] == 2).all()
    # Every pixel the width-1 diagonal passes through, row by row.
    assert np.flatnonzero(masks["test"][0] == 1).tolist() == [0, 1]
    assert np.flatnonzero(masks["test"][1] == 1).tolist() == [2, 3, 4, 5]
    assert np.flatnonzero(masks["test"][3] == 1).tolist() == [8, 9]
    counts = count_labels(masks, VALUES)
    assert counts["train"] == {"ice": 20, "water": 10, "background": 0}
    assert counts["val"] == {"ice": 0, "water": 1, "background": 0}
    assert counts["test"]["water"] == 9
    assert report == {
        "conflicting_pixels": 0,
        "pixels_in_several_splits": 0,
        "split_overlaps": {"train+val": 0, "train+test": 0, "val+test": 0},
    }


def test_conflicts_and_split_leaks_are_counted() -> None:
    rois = [
        RoiSpec("ice", "train", box(0, 0, 10, 10)),
        RoiSpec("water", "train", box(5, 5, 15, 15)),  # 25 pixels claimed by both classes
        RoiSpec("ice", "train", box(8, 0, 12, 2)),  # same class twice is no conflict
        RoiSpec("ice", "test", box(0, 0, 2, 3)),  # 6 pixels also in train: a leak
    ]
    masks, report = rasterize_rois(rois, width=W, height=H, class_values=VALUES)
    assert (masks["train"][5:10, 5:10] == 0).all()
    assert masks["train"][0, 0] == 1 and masks["train"][12, 12] == 2
    assert report["conflicting_pixels"] == 25
    assert report["pixels_in_several_splits"] == 6
    assert report["split_overlaps"]["train+test"] == 6


def test_background_overrides_labels() -> None:
    bg = np.zeros((H, W), dtype=bool)
    bg[:, :3] = True
    masks, _ = rasterize_rois(
        [RoiSpec("ice", "val", box(0, 0, 6, 6))],
        width=W,
        height=H,
        class_values=VALUES,
        background=bg,
    )
    counts = count_labels(masks, VALUES)
    assert counts["val"] == {"ice": 18, "water": 0, "background": 3 * H}
    assert counts["train"]["background"] == 3 * H


def test_unknown_class_and_bad_values() -> None:
    with pytest.raises(InvalidArgument, match="'snow' has no mask value; known classes: ice"):
        rasterize_rois(
            [RoiSpec("snow", "train", Point(1, 1), source="a#1")],
            width=W,
            height=H,
            class_values=VALUES,
        )
    with pytest.raises(InvalidArgument, match="accepted: 1..254"):
        rasterize_rois([], width=W, height=H, class_values={"ice": 255})


def test_background_where_all_bands_are_nodata(tmp_path: Path) -> None:
    # GDAL's dataset mask: a pixel is nodata only when every band is.
    data = np.ones((2, H, W), dtype=np.uint16)
    data[0, 0, :] = 0  # band 1 at the nodata value on row 0
    data[1, :, 0] = 0  # band 2 at the nodata value in column 0
    path = _scene(tmp_path / "s.tif", data, nodata=0)
    bg = background_mask(path)
    assert bg.shape == (H, W) and bg.dtype == bool
    assert np.argwhere(bg).tolist() == [[0, 0]]
    with rasterio.open(path) as ds:
        assert np.array_equal(bg, ds.dataset_mask() == 0)


def test_background_from_nan_in_a_float_scene(tmp_path: Path) -> None:
    data = np.ones((1, H, W), dtype=np.float32)
    data[0, 4, 7] = np.nan
    bg = background_mask(_scene(tmp_path / "f.tif", data))
    assert np.argwhere(bg).tolist() == [[4, 7]]


def test_background_from_a_raster_mask(tmp_path: Path) -> None:
    scene = _scene(tmp_path / "s.tif", np.ones((1, H, W), dtype=np.uint8))
    mask = np.zeros((1, H, W), dtype=np.uint8)
    mask[0, 10:12, 20:25] = 7
    bg = background_mask(scene, _scene(tmp_path / "m.tif", mask))
    assert bg.sum() == 10 and bg[10:12, 20:25].all()
    with pytest.raises(InvalidArgument, match="m2.tif is 40 x 29 pixels but the scene is 40 x 30"):
        background_mask(scene, _scene(tmp_path / "m2.tif", mask[:, :29]))


def test_background_from_a_vector_mask(tmp_path: Path) -> None:
    scene = _scene(tmp_path / "s.tif", np.ones((1, H, W), dtype=np.uint8))
    land = pixel_to_scene(box(0, 20, 10, 30), T)
    doc = {
        "type": "FeatureCollection",
        "crs": {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::32633"}},
        "features": [{"type": "Feature", "geometry": mapping(land), "properties": {}}],
    }
    (tmp_path / "land.geojson").write_text(json.dumps(doc))
    bg = background_mask(scene, tmp_path / "land.geojson")
    assert bg.sum() == 100 and bg[20:30, 0:10].all()
    doc["features"].append(
        {"type": "Feature", "geometry": mapping(MultiPoint([(1, 1)])), "properties": {}}
    )
    (tmp_path / "land.geojson").write_text(json.dumps(doc))
    with pytest.raises(InvalidArgument, match=r"features\[1\]: background masks take polygons"):
        background_mask(scene, tmp_path / "land.geojson")


def test_write_mask(tmp_path: Path) -> None:
    mask = np.zeros((H, W), dtype=np.uint8)
    mask[1:3, 1:3] = 2
    mask[-1] = 255
    out = tmp_path / "masks" / "train.tif"
    write_mask(out, mask, transform=T, crs=UTM, colors={2: (0, 0, 255)})
    with rasterio.open(out) as ds:
        assert ds.read(1).tolist() == mask.tolist()
        assert ds.crs.to_string() == UTM and ds.transform == T and ds.nodata is None
        assert ds.profile["tiled"] and ds.compression.value == "DEFLATE"
        assert ds.colormap(1)[2] == (0, 0, 255, 255)
    assert [p.name for p in out.parent.iterdir()] == ["train.tif"]  # no temporary left over
