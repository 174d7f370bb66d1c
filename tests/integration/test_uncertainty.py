"""Uncertainty that guides labeling, through a real daemon: `sipctl predict --uncertainty`
(a per-pixel normalized-entropy map and per-scene figures) and `sipctl suggest` (where a new
label would help most, as GeoJSON in the scene's CRS)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
import rasterio
from rasterio.crs import CRS
from shapely.geometry import box, shape
from sipapi.v1 import common_pb2, prediction_pb2

from sipd.synthetic import make_scene
from tests.support import (
    MODEL_BANDS,
    MODEL_CLASSES,
    MODEL_PROJECT,
    Sipd,
    assert_cog,
    install_model,
    wait_job,
)

P = MODEL_PROJECT
SIZE = 192
# Existing ROIs on scene a, in pixel coordinates (column, row).
ROIS = ["POINT (20 20)", "LINESTRING (100 150, 170 150)", "POINT (130 40)"]


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory, trained_model: Path) -> Iterator[Sipd]:
    root = tmp_path_factory.mktemp("uncertainty")
    install_model(trained_model, root / "state", P)
    d = Sipd(root / "state", roots=[root]).start()
    try:
        classes = ",".join(c["name"] for c in MODEL_CLASSES)
        bands = ",".join(MODEL_BANDS)
        d.sipctl("project", "create", P, "--classes", classes, "--bands", bands)
        d.sipctl("project", "create", "nomodel", "--classes", classes, "--bands", bands)
        # A nodata corner: the maps must keep it apart from "certain".
        make_scene(root / "a.tif", width=SIZE, height=SIZE, bands=4, seed=5, nodata=0)
        make_scene(root / "b.tif", width=SIZE, height=SIZE, bands=4, seed=6)
        for name in ("a", "b"):
            d.sipctl("scene", "add", P, str(root / f"{name}.tif"), "--name", name)
        d.sipctl("scene", "add", "nomodel", str(root / "b.tif"), "--name", "b")
        for i, wkt in enumerate(ROIS):
            cls = MODEL_CLASSES[i % len(MODEL_CLASSES)]["name"]
            split = "test" if i == 2 else "train"  # any split keeps a region out
            d.sipctl("roi", "add", P, "--scene", "a", "--class", cls, "--wkt", wkt,
                     "--crs", "pixel", "--split", split, "--width", "3")  # fmt: skip
        yield d
    finally:
        d.stop()


def _entropy(probs: np.ndarray) -> np.ndarray:
    """Independent normalized entropy of a probabilities raster [K, H, W] (NaN = nodata)."""
    k = probs.shape[0]
    p = np.nan_to_num(probs.astype(np.float64), nan=0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * np.log(p), 0.0)
    return -terms.sum(axis=0) / np.log(k)


def test_predict_writes_an_uncertainty_map_equal_to_the_entropy_of_the_probabilities(
    daemon: Sipd,
) -> None:
    d = daemon
    root = d.roots[0]
    plain = d.sipctl_json("predict", P, str(root / "a.tif"), "-o", str(root / "plain.tif"))
    assert "mean_uncertainty" not in plain["scenes"][0]  # no probabilities computed
    r = d.sipctl_json(
        "predict", P, str(root / "a.tif"), "-o", str(root / "u.tif"), "--probabilities",
        "--uncertainty",
    )  # fmt: skip
    scene = r["scenes"][0]
    upath = Path(scene["uncertainty"])
    assert upath == root / "u_uncertainty.tif"
    assert_cog(upath)
    with rasterio.open(root / "plain.tif") as ds:
        plain_labels = ds.read(1)
    with rasterio.open(root / "u.tif") as ds:
        labels = ds.read(1)
    with rasterio.open(scene["probabilities"]) as ds:
        probs = ds.read()
    with rasterio.open(upath) as ds:
        enc = ds.read(1)
        assert ds.dtypes[0] == "uint8" and ds.nodata == 0
        assert ds.scales[0] == pytest.approx(1 / 255)
        assert ds.descriptions[0] == "uncertainty"
    # The labels are the same whether or not the uncertainty was asked for, to the byte.
    assert np.array_equal(labels, plain_labels)
    assert (root / "u.tif").read_bytes() == (root / "plain.tif").read_bytes()
    valid = labels != 0
    assert 0 < valid.sum() < labels.size  # the nodata corner
    assert (enc[~valid] == 0).all() and (enc[valid] >= 1).all()
    expected = np.clip(np.rint(_entropy(probs) * 255), 1, 255)
    diff = np.abs(enc.astype(int) - expected.astype(int))[valid]
    assert diff.max() <= 1 and (diff == 0).mean() > 0.99
    u = _entropy(probs)[valid]
    assert scene["mean_uncertainty"] == pytest.approx(u.mean(), abs=1e-4)
    assert scene["uncertain_share"] == pytest.approx((u > 0.5).mean(), abs=1e-3)
    assert 0.0 <= scene["mean_uncertainty"] <= 1.0
    # sipctl's human output shows the figures.
    out = d.sipctl(
        "predict", P, str(root / "b.tif"), "-o", str(root / "b_out.tif"),
        "--uncertainty", str(root / "b_unc.tif"),
    ).stdout  # fmt: skip
    assert "b_unc.tif" in out and "uncertainty: mean" in out
    assert (root / "b_unc.tif").is_file()


def _roi_boxes() -> list:
    from shapely import wkt as shapely_wkt

    return [shapely_wkt.loads(w).buffer(1.5) for w in ROIS]


def test_suggest_returns_spread_unlabeled_squares_in_the_scene_crs(daemon: Sipd) -> None:
    d = daemon
    root = d.roots[0]
    out = root / "suggest.geojson"
    result = d.sipctl_json("suggest", P, "--scene", "a", "--n", "5", "--size", "32", "-o",
                           str(out))  # fmt: skip
    assert result["output"] == str(out) and result["model"] == f"projects/{P}/models/1"
    doc = json.loads(out.read_text())
    assert doc["type"] == "FeatureCollection" and len(doc["features"]) == 5
    with rasterio.open(root / "a.tif") as ds:
        crs, transform, bounds = ds.crs, ds.transform, ds.bounds
    assert CRS.from_user_input(doc["crs"]["properties"]["name"]) == crs
    scene_box = box(*bounds)
    rois = _roi_boxes()
    ranks = []
    for f in doc["features"]:
        props = f["properties"]
        ranks.append(props["rank"])
        geom = shape(f["geometry"])
        assert geom.geom_type == "Polygon"
        assert scene_box.buffer(1e-6).contains(geom)
        row, col, size = props["row"], props["col"], props["size"]
        assert size == 32 and props["scene"] == "a"
        # The polygon is the region's square, mapped by the scene's transform.
        x0, y0 = rasterio.transform.xy(transform, row, col, offset="ul")
        x1, y1 = rasterio.transform.xy(transform, row + size, col + size, offset="ul")
        assert geom.equals(box(min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)))
        square = box(col, row, col + size, row + size)
        assert not any(square.intersects(r) for r in rois), props
        assert 0.0 <= props["uncertainty"] <= 1.0
        assert props["majority_class"] in {c["name"] for c in MODEL_CLASSES}
        assert sum(props["class_mix"].values()) == pytest.approx(1.0, abs=1e-3)
    assert ranks == [1, 2, 3, 4, 5]
    regions = result["regions"]
    assert [g["rank"] for g in regions] == ranks
    # Spread: no two picks are neighbours (default least distance 2 x size).
    for i, a in enumerate(regions):
        for b in regions[i + 1 :]:
            assert np.hypot(a["row"] - b["row"], a["col"] - b["col"]) >= 64
    # The best region's mean uncertainty is the highest of the picks.
    assert regions[0]["uncertainty"] == max(g["uncertainty"] for g in regions)


def test_suggest_over_every_scene_through_the_api(daemon: Sipd) -> None:
    d = daemon
    job = d.client.prediction.Suggest(
        prediction_pb2.SuggestRequest(model=f"projects/{P}/models/latest", n=4, size=48)
    )
    done = wait_job(d, job.name)
    assert done.state == common_pb2.Job.SUCCEEDED, done.error
    r = done.suggest
    assert list(r.scenes) == [f"projects/{P}/scenes/a", f"projects/{P}/scenes/b"]
    assert len(r.regions) == 4 and r.candidates >= 4
    values = [g.uncertainty for g in r.regions]
    assert values == sorted(values, reverse=True)
    assert json.loads(r.geojson)["features"][0]["properties"]["rank"] == 1


@pytest.mark.parametrize(
    ("request_fields", "code", "words"),
    [
        ({"model": f"projects/{P}/models/latest", "n": 0}, "INVALID_ARGUMENT", "n must be"),
        ({"model": f"projects/{P}/models/latest", "n": -3}, "INVALID_ARGUMENT", "n must be"),
        ({"model": f"projects/{P}/models/latest", "size": 4}, "INVALID_ARGUMENT", "size must"),
        ({"model": f"projects/{P}/models/latest", "size": 1000}, "INVALID_ARGUMENT", "fit"),
        ({"model": f"projects/{P}/models/latest", "scenes": ["zz"]}, "NOT_FOUND", "zz"),
        ({"model": "projects/nomodel/models/latest"}, "FAILED_PRECONDITION", "no model"),
        ({"model": f"projects/{P}/models/7"}, "NOT_FOUND", "does not exist"),
        ({"model": "projects/ghost/models/latest"}, "NOT_FOUND", "ghost"),
    ],
)
def test_bad_suggest_requests_are_refused_with_a_clear_status(
    daemon: Sipd, request_fields: dict, code: str, words: str
) -> None:
    with pytest.raises(grpc.RpcError) as err:
        daemon.client.prediction.Suggest(prediction_pb2.SuggestRequest(**request_fields))
    assert err.value.code().name == code, err.value.details()
    assert words in (err.value.details() or "")


def test_sipctl_suggest_reports_a_refusal(daemon: Sipd) -> None:
    res = daemon.sipctl("suggest", "nomodel", check=False)
    assert res.returncode != 0 and "no model" in res.stderr


def test_sipctl_suggest_prints_the_geojson_or_a_table_beside_the_file(daemon: Sipd) -> None:
    d = daemon
    doc = json.loads(d.sipctl("-q", "suggest", P, "--scene", "b", "--n", "2").stdout)
    assert len(doc["features"]) == 2 and doc["sipd:coordinates"] == "scene"
    out = d.roots[0] / "b_suggest.geojson"
    text = d.sipctl("-q", "suggest", P, "--scene", "b", "--n", "2", "-o", str(out)).stdout
    assert "RANK" in text and "UNCERTAINTY" in text and str(out) in text
    assert json.loads(out.read_text()) == doc  # the same model and scene: the same answer
