"""Preprocessing recipes and raw products through a real daemon: recipes over gRPC and sipctl,
recipes from sipd.yaml, `scene add --recipe`, models that record their recipe, predict on a
raw product, and watched inboxes of raw products (with a restart)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import rasterio
from sipapi.v1 import prediction_pb2, preprocess_pb2, training_pb2
from sipctl.client import Client
from sipctl.render import to_plain

from sipd.bench.sar_products import make_s1_product, zip_product
from tests.support import (
    MODEL_BANDS,
    MODEL_CLASSES,
    MODEL_PROJECT,
    Sipd,
    install_model,
    shared_fixture,
    wait_for,
)

S1_TEMPLATE = "sentinel1/S1B_IW_GRDH_1SDV_20211223T051122_20211223T051147_030148_039993_5371.SAFE"
S1_NAME = Path(S1_TEMPLATE).name
SCALE = 32  # 1/32 of the real product: ~260x400 pixels, preprocessed in well under a second
READER_TOKEN = "reader-token-0123456789abcdef"
# The recipe of these tests, as sipctl flags and as the options the daemon stores.
RECIPE_FLAGS = ("--sensor", "sentinel1", "--polarisations", "VV,VH", "--multilook", "2x2",
                "--crs", "EPSG:3413", "--resolution", "800")  # fmt: skip
RECIPE_OPTIONS = {"polarisations": "VV,VH", "multilook": "2x2", "crs": "EPSG:3413",
                  "resolution": "800"}  # fmt: skip
RECIPE_BANDS = ["VV_sigma0_dB", "VH_sigma0_dB"]
CLASSES = ["ice", "water"]


def s1_product(folder: Path, product_id: str = "5371", *, zipped: bool = False) -> Path:
    """A small Sentinel-1 GRD (real metadata, generated DN) as a SAFE folder or a zip, named
    like the fixture with its last field (the product's unique id) replaced."""
    template = shared_fixture(S1_TEMPLATE)
    folder.mkdir(parents=True, exist_ok=True)
    name = S1_NAME.removesuffix("5371.SAFE") + product_id
    safe = make_s1_product(template, folder / f"{name}.SAFE", scale=SCALE)
    if not zipped:
        return safe
    archive = zip_product(safe, folder / f"{name}.zip")
    return archive


def scene_stem(product: Path) -> str:
    """The scene id sipd gives a product by default (its name without the unique id)."""
    return product.name.removesuffix(product.suffix).rpartition("_")[0]


def rpc_error(call: Any, *args: Any) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call(*args)
    return info.value


def band_names(path: str | Path) -> list[str]:
    with rasterio.open(path) as ds:
        return list(ds.descriptions)


def start(root: Path, **kwargs: Any) -> Sipd:
    return Sipd(root / "state", roots=[root], **kwargs).start()


# -- 1. recipes over gRPC and sipctl ----------------------------------------------------------


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sipd]:
    """A daemon with a read-only token besides the owner's, shared by the quick tests."""
    root = tmp_path_factory.mktemp("recipes")
    tokens = f"[{{name: dashboard, token: {READER_TOKEN}, scopes: [read]}}]"
    d = start(root, env={"SIPD_ACCESS__TOKENS": tokens})
    try:
        yield d
    finally:
        d.stop()


def test_recipe_versions_over_grpc(daemon: Sipd) -> None:
    stub = daemon.client.preprocess

    def create(options: dict[str, str], name: str = "grpc-r", pre: str = "sentinel1") -> Any:
        return stub.CreateRecipe(
            preprocess_pb2.CreateRecipeRequest(
                recipe_id=name, preprocessor=pre, options=options, description="test"
            )
        )

    r1 = create(RECIPE_OPTIONS)
    assert (r1.name, r1.version, r1.preprocessor) == ("recipes/grpc-r", 1, "sentinel1")
    # Every option, defaults filled in, in the daemon's own spelling.
    assert r1.options["polarisations"] == "VV,VH" and r1.options["multilook"] == "2x2"
    assert float(r1.options["resolution"]) == 800.0 and r1.options["speckle"] == "none"
    assert r1.options["calibration"] == "sigma0" and r1.description == "test"

    # The same options again: nothing to store.
    err = rpc_error(create, RECIPE_OPTIONS)
    assert err.code() == grpc.StatusCode.ALREADY_EXISTS and "version 1" in err.details()

    r2 = create({**RECIPE_OPTIONS, "speckle": "refined-lee:7"})
    assert r2.version == 2 and r2.options["speckle"] == "refined-lee:7"

    latest = stub.GetRecipe(preprocess_pb2.GetRecipeRequest(name="grpc-r"))
    assert latest.version == 2 and latest.options["speckle"] == "refined-lee:7"
    first = stub.GetRecipe(preprocess_pb2.GetRecipeRequest(name="recipes/grpc-r", version=1))
    assert first.version == 1 and first.options == r1.options
    at1 = stub.GetRecipe(preprocess_pb2.GetRecipeRequest(name="grpc-r@1"))
    assert at1.version == 1 and at1.options["speckle"] == "none"
    err = rpc_error(stub.GetRecipe, preprocess_pb2.GetRecipeRequest(name="grpc-r", version=9))
    assert err.code() == grpc.StatusCode.NOT_FOUND

    listed = stub.ListRecipes(preprocess_pb2.ListRecipesRequest()).recipes
    mine = [r for r in listed if r.name == "recipes/grpc-r"]
    assert [r.version for r in mine] == [2]  # the latest version only

    # Refusals, each naming what is wrong.
    for options, name, pre, word in (
        (RECIPE_OPTIONS, "bad name!", "sentinel1", "bad name!"),
        (RECIPE_OPTIONS, "x", "landsat", "landsat"),
        ({"speckle": "lee:4"}, "x", "sentinel1", "speckle"),
        ({"multilook": "two"}, "x", "sentinel1", "multilook"),
        ({"polarisations": "VV,XX"}, "x", "sentinel1", "XX"),
        ({"resolution": "-5"}, "x", "sentinel1", "resolution"),
        ({"no_such_option": "1"}, "x", "sentinel1", "no_such_option"),
    ):
        err = rpc_error(create, options, name, pre)
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, (options, name, pre)
        assert word in err.details(), (word, err.details())
    assert "recipes/x" not in [
        r.name for r in stub.ListRecipes(preprocess_pb2.ListRecipesRequest()).recipes
    ]

    err = rpc_error(stub.DeleteRecipe, preprocess_pb2.DeleteRecipeRequest(name="grpc-r@1"))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "versions go together" in str(
        err.details()
    )
    deleted = stub.DeleteRecipe(preprocess_pb2.DeleteRecipeRequest(name="grpc-r"))
    assert deleted.versions == 2
    # Gone from "latest" and the list ...
    err = rpc_error(stub.GetRecipe, preprocess_pb2.GetRecipeRequest(name="grpc-r"))
    assert err.code() == grpc.StatusCode.NOT_FOUND
    listed = stub.ListRecipes(preprocess_pb2.ListRecipesRequest()).recipes
    assert "recipes/grpc-r" not in [r.name for r in listed]
    # ... but a version is still what scenes and models made with it say it was.
    old = stub.GetRecipe(preprocess_pb2.GetRecipeRequest(name="grpc-r", version=1))
    assert old.deleted and old.version == 1 and old.options["multilook"] == "2x2"
    err = rpc_error(stub.DeleteRecipe, preprocess_pb2.DeleteRecipeRequest(name="grpc-r"))
    assert err.code() == grpc.StatusCode.NOT_FOUND
    # Created again, the name goes on from the last number: no version is given twice.
    again = create(RECIPE_OPTIONS)
    assert again.version == 3 and not again.deleted
    stub.DeleteRecipe(preprocess_pb2.DeleteRecipeRequest(name="grpc-r"))


@pytest.mark.slow  # several sipctl processes and preprocess jobs
def test_recipe_commands_of_sipctl(daemon: Sipd) -> None:
    created = daemon.sipctl_json("recipe", "create", "cli-r", *RECIPE_FLAGS)
    assert (created["name"], created["version"]) == ("recipes/cli-r", 1)
    assert created["options"]["crs"] == "EPSG:3413"
    human = daemon.sipctl("recipe", "create", "cli-r", *RECIPE_FLAGS, "--speckle", "lee:5")
    assert "cli-r@2 (sentinel1)" in human.stdout and "speckle: lee:5" in human.stdout
    again = daemon.sipctl("recipe", "create", "cli-r", *RECIPE_FLAGS, "--speckle", "lee:5",
                          check=False)  # fmt: skip
    assert again.returncode != 0 and "ALREADY_EXISTS" in again.stderr

    assert daemon.sipctl_json("recipe", "show", "cli-r")["version"] == 2
    assert daemon.sipctl_json("recipe", "show", "cli-r@1")["options"]["speckle"] == "none"
    listed = daemon.sipctl_json("recipe", "list")["recipes"]
    assert [r["version"] for r in listed if r["name"] == "recipes/cli-r"] == [2]
    table = daemon.sipctl("recipe", "list").stdout
    assert "cli-r" in table and "sentinel1" in table

    for flags, word in (
        (("--sensor", "sentinel1", "--speckle", "median"), "speckle"),
        (("--sensor", "sentinel1", "--option", "nonsense=1"), "nonsense"),
        (("--sensor", "optical"), "optical"),
    ):
        bad = daemon.sipctl("recipe", "create", "cli-bad", *flags, check=False)
        assert bad.returncode != 0 and "INVALID_ARGUMENT" in bad.stderr, bad.stderr
        assert word in bad.stderr
    bad = daemon.sipctl("recipe", "create", "bad/name", "--sensor", "sentinel1", check=False)
    assert bad.returncode != 0 and "INVALID_ARGUMENT" in bad.stderr and "bad/name" in bad.stderr

    out = daemon.sipctl("recipe", "delete", "cli-r")
    assert "deleted 2 version(s)" in out.stdout
    gone = daemon.sipctl("recipe", "show", "cli-r", check=False)
    assert gone.returncode != 0 and "NOT_FOUND" in gone.stderr


def test_read_token_lists_recipes_but_cannot_create_or_delete(daemon: Sipd) -> None:
    daemon.sipctl("recipe", "create", "scoped", *RECIPE_FLAGS)
    reader = Client(daemon.address, timeout=10, token=READER_TOKEN)
    try:
        stub = reader.preprocess
        names = [r.name for r in stub.ListRecipes(preprocess_pb2.ListRecipesRequest()).recipes]
        assert "recipes/scoped" in names
        assert stub.GetRecipe(preprocess_pb2.GetRecipeRequest(name="scoped")).version == 1
        request = preprocess_pb2.CreateRecipeRequest(
            recipe_id="sneaky", preprocessor="sentinel1", options=RECIPE_OPTIONS
        )
        err = rpc_error(stub.CreateRecipe, request)
        assert err.code() == grpc.StatusCode.PERMISSION_DENIED and "label" in err.details()
        err = rpc_error(stub.DeleteRecipe, preprocess_pb2.DeleteRecipeRequest(name="scoped"))
        assert err.code() == grpc.StatusCode.PERMISSION_DENIED and "admin" in err.details()
    finally:
        reader.close()
    assert daemon.sipctl_json("recipe", "show", "scoped")["version"] == 1
    daemon.sipctl("recipe", "delete", "scoped")


# -- 2. recipes declared in sipd.yaml ------------------------------------------------------------


def _config(path: Path, resolution: int, description: str = "from the config") -> Path:
    path.write_text(
        "recipes:\n"
        "  - name: cfg-s1\n"
        "    preprocessor: sentinel1\n"
        f"    description: {description}\n"
        "    options: {polarisations: 'VV,VH', multilook: 2x2, crs: 'EPSG:3413', "
        f"resolution: {resolution}}}\n"
    )
    return path


@pytest.mark.slow  # three daemon starts
def test_recipes_from_the_config_are_stored_at_start_and_versioned_on_change(
    tmp_path: Path,
) -> None:
    config = _config(tmp_path / "sipd.yaml", 800)
    d = start(tmp_path, extra_args=["--config", str(config)])
    try:
        r = d.sipctl_json("recipe", "show", "cfg-s1")
        assert r["version"] == 1 and r["description"] == "from the config"
        assert float(r["options"]["resolution"]) == 800.0
    finally:
        d.stop()

    # Unchanged: the same version 1.
    d = start(tmp_path, extra_args=["--config", str(config)])
    try:
        r = d.sipctl_json("recipe", "show", "cfg-s1")
        assert r["version"] == 1 and float(r["options"]["resolution"]) == 800.0
        assert len(d.sipctl_json("recipe", "list")["recipes"]) == 1
    finally:
        d.stop()

    # Changed: version 2, version 1 kept as it was.
    _config(config, 400)
    d = start(tmp_path, extra_args=["--config", str(config)])
    try:
        r = d.sipctl_json("recipe", "show", "cfg-s1")
        assert r["version"] == 2 and float(r["options"]["resolution"]) == 400.0
        assert float(d.sipctl_json("recipe", "show", "cfg-s1@1")["options"]["resolution"]) == 800
        assert r["from_config"] is True
        refused = d.sipctl("recipe", "delete", "cfg-s1", check=False)
        assert "FAILED_PRECONDITION" in refused.stderr and "sipd.yaml" in refused.stderr
    finally:
        d.stop()

    # A config entry with a bad option stops the start, naming the entry and the option.
    config.write_text(
        "recipes:\n  - {name: broken, preprocessor: sentinel1, options: {speckle: 'lee:4'}}\n"
    )
    with pytest.raises(RuntimeError) as info:
        start(tmp_path, extra_args=["--config", str(config)])
    assert "recipes[0]" in str(info.value) and "speckle" in str(info.value)


# -- 3. scene add --recipe -------------------------------------------------------------------


@pytest.mark.slow  # several sipctl processes and preprocess jobs
def test_scene_add_with_a_recipe_registers_a_preprocessed_scene(daemon: Sipd) -> None:
    root = daemon.roots[0]
    daemon.sipctl("recipe", "create", "scn", *RECIPE_FLAGS)
    daemon.sipctl("project", "create", "scn", "--classes", ",".join(CLASSES))
    folder = s1_product(root / "scn-products", "AAAA")
    archive = s1_product(root / "scn-zips", "BBBB", zipped=True)

    # A SAFE folder, the scene id from the product name, the COG under the data dir.
    result = daemon.sipctl_json("scene", "add", "scn", str(folder), "--recipe", "scn")
    stem = scene_stem(folder)
    assert result["scene"] == f"projects/scn/scenes/{stem}"
    assert (result["recipe"], result["recipe_version"]) == ("scn", 1)
    default_out = daemon.data_dir / "projects" / "scn" / "preprocessed" / f"{stem}.tif"
    assert result["outputs"] == [str(default_out)] and default_out.exists()

    # A zip, named, to an output of the caller's choice.
    out = root / "scn-out" / "zipped.tif"
    out.parent.mkdir()
    daemon.sipctl("scene", "add", "scn", str(archive), "--recipe", "scn@1", "--name", "zipped",
                  "-o", str(out))  # fmt: skip
    assert out.exists()

    scenes = {s["name"]: s for s in daemon.sipctl_json("scene", "list", "scn")["scenes"]}
    assert sorted(scenes) == sorted([f"projects/scn/scenes/{stem}", "projects/scn/scenes/zipped"])
    for scene in scenes.values():
        assert scene["recipe"] == "scn@1"
        assert scene["band_names"] == RECIPE_BANDS and scene["crs"] == "EPSG:3413"
        assert band_names(scene["path"]) == RECIPE_BANDS
    assert scenes["projects/scn/scenes/zipped"]["path"] == str(out)
    # The project took its bands from the first scene.
    project = daemon.sipctl_json("project", "show", "scn")
    assert project["bands"] == RECIPE_BANDS
    shown = daemon.sipctl("scene", "show", "scn", "zipped").stdout
    assert "made with recipe scn@1" in shown

    # The same through gRPC Preprocess(project=...), with a newer recipe version.
    daemon.sipctl("recipe", "create", "scn", *RECIPE_FLAGS, "--speckle", "boxcar:3")
    job = daemon.client.preprocess.Preprocess(
        preprocess_pb2.PreprocessRequest(
            input=str(folder), recipe="scn", project="scn", scene="over-grpc"
        )
    )
    done = _wait_job(daemon, job.name)
    assert done["state"] == "SUCCEEDED", done
    scene = daemon.sipctl_json("scene", "show", "scn", "over-grpc")
    assert scene["recipe"] == "scn@2" and scene["band_names"] == RECIPE_BANDS

    # A scene id that exists: refused before any work (no job, no file).
    jobs_before = _job_count(daemon)
    clash_out = root / "scn-out" / "clash.tif"
    err = rpc_error(
        daemon.client.preprocess.Preprocess,
        preprocess_pb2.PreprocessRequest(
            input=str(folder), recipe="scn", project="scn", scene="zipped", output=str(clash_out)
        ),
    )
    assert err.code() == grpc.StatusCode.ALREADY_EXISTS and "zipped" in err.details()
    assert not clash_out.exists()

    # The default id again (the folder's): refused too.
    again = daemon.sipctl("scene", "add", "scn", str(folder), "--recipe", "scn", check=False)
    assert again.returncode != 0 and "ALREADY_EXISTS" in again.stderr

    # A product of another sensor than the recipe's.
    daemon.sipctl("recipe", "create", "scn-rs2", "--sensor", "radarsat2")
    wrong = daemon.sipctl("scene", "add", "scn", str(folder), "--recipe", "scn-rs2",
                          "--name", "wrong", check=False)  # fmt: skip
    assert wrong.returncode != 0 and "INVALID_ARGUMENT" in wrong.stderr, wrong.stderr
    assert "radarsat2" in wrong.stderr
    names = [s["name"] for s in daemon.sipctl_json("scene", "list", "scn")["scenes"]]
    assert "projects/scn/scenes/wrong" not in names
    assert _job_count(daemon) == jobs_before  # refused before any work


def _wait_job(d: Sipd, name: str, timeout: float = 120) -> dict[str, Any]:
    from sipapi.v1 import job_pb2

    def finished() -> dict[str, Any] | None:
        job = to_plain(d.client.jobs.GetJob(job_pb2.GetJobRequest(name=name)))
        return job if job["state"] in ("SUCCEEDED", "FAILED", "CANCELLED") else None

    return wait_for(finished, timeout, interval=0.1, what=f"job {name}")


def _job_count(d: Sipd) -> int:
    with sqlite3.connect(d.data_dir / "sipd.db") as conn:
        return conn.execute("SELECT COUNT(*) FROM jobs").fetchone()[0]


# -- 4. models that record their recipe; predict on raw products --------------------------------


class Trained:
    """A daemon whose project `sea` has a model trained on two recipe-made scenes."""

    def __init__(self, d: Sipd) -> None:
        self.d = d
        root = d.roots[0]
        d.sipctl("recipe", "create", "ice", *RECIPE_FLAGS)
        d.sipctl("project", "create", "sea", "--classes", ",".join(CLASSES))
        for name, pid in (("one", "A001"), ("two", "A002")):
            product = s1_product(root / "train-products", pid, zipped=name == "two")
            d.sipctl("scene", "add", "sea", str(product), "--recipe", "ice", "--name", name)
            # Pixel-coordinate boxes: ice at the top, water at the bottom; val beside them.
            for cls, rows in (("ice", (20, 120)), ("water", (250, 350))):
                for split, cols in (("train", (20, 150)), ("val", (180, 240))):
                    r0, r1 = rows
                    c0, c1 = cols
                    wkt = f"POLYGON(({c0} {r0},{c1} {r0},{c1} {r1},{c0} {r1},{c0} {r0}))"
                    d.sipctl("roi", "add", "sea", "--scene", name, "--class", cls,
                             "--wkt", wkt, "--crs", "pixel", "--split", split)  # fmt: skip
        self.train = d.sipctl_json("train", "sea", "--epochs", "2", "--chip-size", "64",
                                   "--seed", "0")  # fmt: skip
        versions = sorted((d.data_dir / "models" / "sea").iterdir())
        self.model_dir = versions[-1]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Trained]:
    root = tmp_path_factory.mktemp("trained")
    d = start(root)
    try:
        yield Trained(d)
    finally:
        d.stop()


@pytest.mark.slow  # trains a model
def test_model_records_its_recipe_and_predict_preprocesses_raw_products(
    trained: Trained,
) -> None:
    d = trained.d
    root = d.roots[0]
    model = d.sipctl_json("models", "show", "sea")
    assert model["recipe"] == "ice@1", model
    got = d.client.training.GetModel(training_pb2.GetModelRequest(name=model["name"]))
    assert got.recipe == "ice@1"
    # (`sipctl models show` without --json does not print the recipe yet: not checked.)

    # A raw product with no --recipe: the model's recipe.
    product = s1_product(root / "predict-products", "P001")
    out = root / "pred" / "p1.tif"
    out.parent.mkdir()
    result = d.sipctl_json("predict", "sea", str(product), "-o", str(out))
    [scene] = result["scenes"]
    assert scene["recipe"] == "ice@1" and not scene.get("warnings")
    preprocessed = root / "pred" / "p1_preprocessed.tif"
    assert scene["preprocessed"] == str(preprocessed) and preprocessed.exists()
    assert band_names(preprocessed) == RECIPE_BANDS
    with rasterio.open(out) as labels, rasterio.open(preprocessed) as image:
        assert (labels.width, labels.height) == (image.width, image.height)
        assert set(int(v) for v in labels.read(1).ravel()) <= {0, 1, 2, 255}

    # Another recipe (a second version, and another name): predicted, with a warning.
    d.sipctl("recipe", "create", "ice", *RECIPE_FLAGS, "--speckle", "boxcar:3")
    d.sipctl("recipe", "create", "other", *RECIPE_FLAGS)
    archive = s1_product(root / "predict-zips", "P002", zipped=True)
    for i, recipe in enumerate(("ice@2", "other")):
        target = root / "pred" / f"warn{i}.tif"
        result = d.sipctl_json("predict", "sea", str(archive), "-o", str(target),
                               "--recipe", recipe)  # fmt: skip
        [scene] = result["scenes"]
        label = "ice@2" if recipe == "ice@2" else "other@1"
        assert scene["recipe"] == label
        assert any(label in w and "ice@1" in w for w in scene["warnings"]), scene
        assert target.exists() and (root / "pred" / f"warn{i}_preprocessed.tif").exists()
    # The same over gRPC: the warning is in ScenePrediction.warnings of the job's result.
    job = d.client.prediction.Predict(
        prediction_pb2.PredictRequest(
            model=model["name"], inputs=[str(archive)], output=str(root / "pred" / "grpc.tif"),
            recipe="other",
        )
    )  # fmt: skip
    done = _wait_job(d, job.name)
    assert done["state"] == "SUCCEEDED", done
    [scene] = done["predict"]["scenes"]
    assert scene["recipe"] == "other@1" and any("other@1" in w for w in scene["warnings"])

    # A recipe for another sensor than the product's: refused.
    d.sipctl("recipe", "create", "rs2", "--sensor", "radarsat2")
    bad = d.sipctl("predict", "sea", str(archive), "-o", str(root / "pred" / "bad.tif"),
                   "--recipe", "rs2", check=False)  # fmt: skip
    assert bad.returncode != 0 and "INVALID_ARGUMENT" in bad.stderr, bad.stderr


def test_raw_product_with_a_model_without_recipe_needs_one(
    daemon: Sipd, trained_model: Path
) -> None:
    root = daemon.roots[0]
    install_model(trained_model, daemon.data_dir, MODEL_PROJECT)
    classes = ",".join(c["name"] for c in MODEL_CLASSES)
    daemon.sipctl("project", "create", MODEL_PROJECT, "--classes", classes,
                  "--bands", ",".join(MODEL_BANDS))  # fmt: skip
    product = s1_product(root / "norecipe", "N001")
    out = root / "norecipe-out.tif"
    result = daemon.sipctl("predict", MODEL_PROJECT, str(product), "-o", str(out), check=False)
    assert result.returncode != 0 and "FAILED_PRECONDITION" in result.stderr, result.stderr
    assert "records no recipe" in result.stderr and "--recipe" in result.stderr
    assert not out.exists()


# -- 5. watched inboxes of raw products -------------------------------------------------------

WATCH_ENV = {
    "SIPD_WATCH__QUIET_SECONDS": "1.0",
    "SIPD_WATCH__RESCAN_SECONDS": "5",
    "SIPD_WATCH__RETRY_BACKOFF_SECONDS": "0.2",
}


def _watch(d: Sipd, watch_id: str) -> dict[str, Any]:
    from sipapi.v1 import watch_pb2

    w = d.client.watches.GetWatch(watch_pb2.GetWatchRequest(name=f"watches/{watch_id}"))
    return to_plain(w)


def _succeeded_inputs(db: Path) -> Counter[str]:
    """How often each input appears in a SUCCEEDED predict job: the work actually done."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT result FROM jobs WHERE type = 'predict' AND state = 'SUCCEEDED'"
        ).fetchall()
    return Counter(s["input"] for (r,) in rows for s in json.loads(r)["scenes"])


def _check_outputs(outbox: Path, stem: str, keep: bool, model: str) -> None:
    names = sorted(p.name for p in outbox.iterdir() if p.name.startswith(stem))
    expected = {f"{stem}.tif", f"{stem}.json"} | ({f"{stem}_preprocessed.tif"} if keep else set())
    assert expected <= set(names), names
    extra = set(names) - expected - {f"{stem}.png"}
    assert not extra, f"unexpected outputs {sorted(extra)} (temporaries or a second set?)"
    summary = json.loads((outbox / f"{stem}.json").read_text())
    assert summary["model"] == model and summary["attempts"] >= 1
    assert Path(summary["outputs"]["labels"]) == outbox / f"{stem}.tif"
    assert summary["recipe"] == "ice@1"  # pinned when the watch was made
    preprocessed = summary["outputs"]["preprocessed"]
    if keep:
        assert Path(preprocessed) == outbox / f"{stem}_preprocessed.tif"
    else:
        assert preprocessed is None
    with rasterio.open(outbox / f"{stem}.tif") as labels:
        assert (summary["width"], summary["height"]) == (labels.width, labels.height)
        values = labels.read(1)
    counts = {c: int((values == i + 1).sum()) for i, c in enumerate(CLASSES)}
    assert summary["class_pixels"] == counts
    if keep:
        assert band_names(outbox / f"{stem}_preprocessed.tif") == RECIPE_BANDS
        with rasterio.open(outbox / f"{stem}_preprocessed.tif") as image:
            assert (image.width, image.height) == (labels.width, labels.height)


@pytest.mark.slow  # a trained model, two daemon starts
def test_watch_with_a_recipe_classifies_raw_products_once_across_a_restart(
    trained: Trained, tmp_path: Path
) -> None:
    install_model(trained.model_dir, tmp_path / "state", "sea")
    d = start(tmp_path, env=WATCH_ENV)
    d.sipctl("recipe", "create", "ice", *RECIPE_FLAGS)
    d.sipctl("project", "create", "sea", "--classes", ",".join(CLASSES),
             "--bands", ",".join(RECIPE_BANDS))  # fmt: skip
    boxes = {}
    for name, keep in (("keep", True), ("drop", False)):
        inbox, outbox = tmp_path / f"in-{name}", tmp_path / f"out-{name}"
        inbox.mkdir()
        flags = [] if keep else ["--no-keep-preprocessed"]
        w = d.sipctl_json("watch", "add", str(inbox), "--project", "sea", "--out", str(outbox),
                          "--recipe", "ice", "--name", name, *flags)  # fmt: skip
        assert w["recipe"] == "ice@1" and bool(w.get("remove_preprocessed")) != keep
        boxes[name] = (inbox, outbox)
    # A newer version after the watches were made: they stay pinned to version 1.
    d.sipctl("recipe", "create", "ice", *RECIPE_FLAGS, "--speckle", "boxcar:3")
    assert _watch(d, "keep")["recipe"] == "ice@1"

    staging = tmp_path / "staging"
    products = {
        "keep": [s1_product(staging / "a", "W001", zipped=True), s1_product(staging / "b", "W002")],
        "drop": [s1_product(staging / "c", "W003"), s1_product(staging / "d", "W004", zipped=True)],
    }
    for name, items in products.items():
        for product in items:  # a rename: each arrives whole (a folder or a zip)
            os.rename(product, boxes[name][0] / product.name)

    def taken() -> bool:
        w = _watch(d, "keep")
        return w["queued"] + w["running"] + w["done"] >= 1

    wait_for(taken, 60, interval=0.05, what="the first product taken")
    status = d.sipctl_json("status")["worker"]
    print(f"\nstopping with keep={_watch(d, 'keep')} worker={status.get('state')}")
    assert d.stop(signal.SIGTERM) == 0

    d = start(tmp_path, env=WATCH_ENV)
    try:

        def all_done() -> bool:
            return all(_watch(d, n)["done"] + _watch(d, n)["failed"] == 2 for n in boxes)

        wait_for(all_done, 240, interval=0.3, what="every product classified")
        for name in boxes:
            w = _watch(d, name)
            assert (w["done"], w["failed"], w["queued"], w["running"]) == (2, 0, 0, 0), w
        model = d.sipctl_json("models", "show", "sea")
        assert model["recipe"] == "ice@1"
        for name, (inbox, outbox) in boxes.items():
            stems = sorted(p.name.removesuffix(p.suffix) for p in products[name])
            for stem in stems:
                _check_outputs(outbox, stem, keep=name == "keep", model=model["name"])
            # Nothing but the outputs of these two products (no temporaries, no duplicates).
            left = {p.name for p in outbox.iterdir()}
            allowed = {f"{s}{x}" for s in stems
                       for x in (".tif", ".json", ".png", "_preprocessed.tif")}  # fmt: skip
            assert left <= allowed, sorted(left - allowed)
            assert sorted(p.name for p in inbox.iterdir()) == sorted(
                p.name for p in products[name]
            )  # kept where they arrived (the default)
    finally:
        d.stop()
    done = _succeeded_inputs(d.data_dir / "sipd.db")
    inputs = [str(boxes[n][0] / p.name) for n in products for p in products[n]]
    assert sorted(done) == sorted(inputs), done
    assert set(done.values()) == {1}  # each product classified by exactly one job
