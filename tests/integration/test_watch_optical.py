"""Optical products dropped into watched inboxes with recipes become label maps, exactly
once, with the recipe's cloud and shadow classes as background (0) in the label map.

- Landsat: the real Collection 2 L2SP folder of ../shared/fixtures (real QA_PIXEL with
  fill, cloud, dilated cloud and shadow), as the folder is delivered.
- Sentinel-2: an L2A .zip made with the real MTD files of ../shared/fixtures (JP2 bands
  and an SCL with clouds and shadows written here, sipd.bench.sentinel2_products).

The expected background is computed here from the QA bits (USGS LSDS-1619, QA_PIXEL) and
the SCL classes (ESA S2 L2A product specification), independently of the readers.
"""

from __future__ import annotations

import json
import os
import shutil
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import rasterio

from tests.integration.test_recipes import WATCH_ENV, _succeeded_inputs, _watch
from tests.support import Sipd, shared_fixture, wait_for

pytestmark = pytest.mark.slow  # two models trained, two watches

LANDSAT = "landsat/LC08_L2SP_008059_20191201_20200825_02_T1"
LANDSAT_OPTIONS = ("--option", "bands=blue,green,red,nir08",
                   "--option", "mask=fill,dilated_cloud,cloud,shadow")  # fmt: skip
# QA_PIXEL bits of those classes (Collection 2: 0 fill, 1 dilated cloud, 3 cloud, 4 shadow).
LANDSAT_QA_BITS = (1 << 0) | (1 << 1) | (1 << 3) | (1 << 4)
CLASSES = ["a", "b"]
S2_L2A = "sentinel2/S2B_MSIL2A_20220413T150759_N0400_R025_T33XWJ_20220414T082126.SAFE"
S2_OPTIONS = ("--option", "bands=blue,green,red,nir", "--option", "resolution=10",
              "--option", "mask=cloud_shadow,cloud_medium,cloud_high,thin_cirrus")  # fmt: skip
# SCL classes of that mask (the product's Scene_Classification_List): 3 cloud shadows,
# 8 cloud medium probability, 9 cloud high probability, 10 thin cirrus.
S2_SCL_MASKED = (3, 8, 9, 10)
S2_SIZE = 240  # px at 10 m; the SCL is 120 px at 20 m


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sipd]:
    root = tmp_path_factory.mktemp("watch-optical")
    d = Sipd(root / "state", roots=[root], env=WATCH_ENV).start()
    try:
        yield d
    finally:
        d.stop()


def _train(d: Sipd, project: str, product: Path, recipe: str, boxes: dict[str, list]) -> str:
    """A project of one recipe-made scene with pixel boxes per class; a model trained on it."""
    d.sipctl("project", "create", project, "--classes", ",".join(CLASSES))
    d.sipctl("scene", "add", project, str(product), "--recipe", recipe, "--name", "train")
    for cls, items in boxes.items():
        for split, (r0, r1, c0, c1) in items:
            wkt = f"POLYGON(({c0} {r0},{c1} {r0},{c1} {r1},{c0} {r1},{c0} {r0}))"
            d.sipctl("roi", "add", project, "--scene", "train", "--class", cls,
                     "--wkt", wkt, "--crs", "pixel", "--split", split)  # fmt: skip
    d.sipctl("train", project, "--epochs", "2", "--chip-size", "64", "--seed", "0")
    model = d.sipctl_json("models", "show", project)
    assert model["recipe"] == f"{recipe}@1", model
    return model["name"]


def _watch_one(d: Sipd, name: str, project: str, recipe: str, product: Path, model: str) -> Path:
    """Drop `product` (renamed in whole) into a new watch's inbox; the label map's path
    once the watch says it is done (by `model`, with `recipe`)."""
    root = Path(d.roots[0])
    inbox, outbox = root / f"in-{name}", root / f"out-{name}"
    inbox.mkdir()
    w = d.sipctl_json("watch", "add", str(inbox), "--project", project, "--out", str(outbox),
                      "--recipe", recipe, "--name", name)  # fmt: skip
    assert w["recipe"] == f"{recipe}@1"
    os.rename(product, inbox / product.name)

    def finished() -> bool:
        w = _watch(d, name)
        return w["done"] + w["failed"] >= 1

    wait_for(finished, 300, interval=0.3, what=f"{product.name} classified")
    w = _watch(d, name)
    assert (w["done"], w["failed"], w["queued"], w["running"]) == (1, 0, 0, 0), w
    stem = product.name.removesuffix(product.suffix)
    labels = outbox / f"{stem}.tif"
    summary = json.loads((outbox / f"{stem}.json").read_text())
    assert summary["model"] == model and summary["recipe"] == f"{recipe}@1", summary
    assert Path(summary["outputs"]["labels"]) == labels and labels.exists()
    return labels


def test_landsat_folder_in_a_watched_inbox_masks_clouds_and_shadows(daemon: Sipd) -> None:
    d = daemon
    root = Path(d.roots[0])
    source = shared_fixture(LANDSAT)
    train = shutil.copytree(source, root / "ls-train" / source.name)
    d.sipctl("recipe", "create", "ls-clear", "--sensor", "landsat", *LANDSAT_OPTIONS)
    # Boxes over the scene's clear patch (rows 160-250) and around it.
    model = _train(d, "land", train, "ls-clear", {
        "a": [("train", (150, 250, 150, 300)), ("val", (250, 300, 150, 300))],
        "b": [("train", (150, 250, 300, 450)), ("val", (250, 300, 300, 450))],
    })  # fmt: skip
    arriving = shutil.copytree(source, root / "ls-staging" / source.name)
    labels = _watch_one(d, "landsat", "land", "ls-clear", arriving, model)

    qa_file = next(source.glob("*_QA_PIXEL.TIF"))
    with rasterio.open(qa_file) as qa_ds, rasterio.open(labels) as out:
        qa = qa_ds.read(1)
        values = out.read(1)
        assert out.transform == qa_ds.transform and out.crs == qa_ds.crs
    bands = []
    for name in ("B2", "B3", "B4", "B5"):
        with rasterio.open(next(source.glob(f"*_SR_{name}.TIF"))) as ds:
            bands.append(ds.read(1))
    masked = (qa & LANDSAT_QA_BITS) != 0
    all_valid = np.all(np.stack(bands) != 0, axis=0) & ~masked
    assert masked.any() and all_valid.any()
    assert (values[masked] == 0).all(), "a cloud, shadow or fill pixel was classified"
    assert np.isin(values[all_valid], [1, 2]).all(), "a clear pixel was left unclassified"
    done = _succeeded_inputs(d.data_dir / "sipd.db")
    assert done[str(root / "in-landsat" / source.name)] == 1  # exactly once

    # A drone capture is several frames: one frame dropped alone is refused (it would
    # start a run of the whole capture once per frame), and says how to drop it.
    d.sipctl("recipe", "create", "drone", "--sensor", "micasense", "--option",
             "reflectance=radiance")  # fmt: skip
    inbox = root / "in-drone"
    inbox.mkdir()
    d.sipctl("watch", "add", str(inbox), "--project", "land", "--out", str(root / "out-drone"),
             "--recipe", "drone", "--name", "drone")  # fmt: skip
    shutil.copy(shared_fixture("drone_micasense/IMG_0001_3.tif"), inbox / "IMG_0001_3.tif")
    wait_for(lambda: _watch(d, "drone")["failed"] == 1, 60, what="the lone frame refused")
    [error] = (inbox / "failed").glob("*.error.txt")
    assert "one folder per capture" in error.read_text()


def test_sentinel2_zip_in_a_watched_inbox_masks_clouds_and_shadows(daemon: Sipd) -> None:
    from sipd.bench.sentinel2_products import product_from_template, scene_dn

    d = daemon
    root = Path(d.roots[0])
    template = shared_fixture(S2_L2A)
    train = product_from_template(template, root / "s2-train", S2_SIZE, zip=True)
    d.sipctl("recipe", "create", "s2-clear", "--sensor", "sentinel2", *S2_OPTIONS)
    model = _train(d, "s2land", train, "s2-clear", {
        "a": [("train", (0, 110, 0, 110)), ("val", (110, 130, 0, 110))],
        "b": [("train", (130, 240, 130, 240)), ("val", (110, 130, 130, 240))],
    })  # fmt: skip
    # Another date: the same tile with other DN (seed), zipped as downloaded.
    dn = scene_dn(seed=1, scale=S2_SIZE / 10980)
    arriving = product_from_template(template, root / "s2-staging", S2_SIZE, dn=dn, zip=True)
    labels = _watch_one(d, "sentinel2", "s2land", "s2-clear", arriving, model)

    # The expected background from the product's own SCL, read here (20 m -> 10 m: each
    # SCL pixel covers 2 x 2 output pixels).
    with zipfile.ZipFile(root / "in-sentinel2" / arriving.name) as zf:
        [scl_member] = [n for n in zf.namelist() if n.endswith("_SCL_20m.jp2")]
    with rasterio.open(f"/vsizip/{root / 'in-sentinel2' / arriving.name}/{scl_member}") as ds:
        scl = ds.read(1)
    masked = np.isin(scl, S2_SCL_MASKED).repeat(2, axis=0).repeat(2, axis=1)
    with rasterio.open(labels) as out:
        values = out.read(1)
    assert values.shape == masked.shape and masked.any() and (~masked).any()
    assert (values[masked] == 0).all(), "a cloud or shadow pixel was classified"
    assert np.isin(values[~masked], [1, 2]).all(), "a clear pixel was left unclassified"
    done = _succeeded_inputs(d.data_dir / "sipd.db")
    assert done[str(root / "in-sentinel2" / arriving.name)] == 1  # exactly once
