"""sipd.modelrepo: the card and its upgrader, immutable versions, evaluation records, listing."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
import torch
import yaml

from sipd.errors import FailedPrecondition, InvalidArgument, NotFound
from sipd.inference import load_model, predict_scene
from sipd.modelrepo import (
    MODEL_FORMAT,
    ModelRepository,
    dump_card,
    parse_card,
    parse_model_name,
    publish,
    read_card,
    record_evaluation,
    staging_folder,
)
from sipd.modelrepo.layout import next_version, write_new_file
from sipd.nets import build_net
from sipd.training.checkpoint import checkpoint_payload
from sipd.training.onnx_export import check_onnx_export, export_onnx, reexport_model
from tests.support import file_hashes
from tests.unit.test_inference_support import (
    BANDS,
    CLASSES,
    MEAN,
    STD,
    scene_array,
    write_scene,
)

SMALL_UNET = {"base_channels": 4, "depth": 2}
TEST_REPORT = {
    "overall_accuracy": 0.97, "kappa": 0.95,
    "per_class": [{"value": 1, "name": "ice", "precision": 0.98, "recall": 0.96, "f1": 0.97,
                   "iou": 0.94, "support": 1000}],
    "confusion_matrix": [[960, 40], [20, 980]], "class_names": ["ice", "water"], "pixels": 2000,
}


def format1_card(project: str, version: int, check: dict[str, float]) -> dict[str, Any]:
    """model.yaml exactly as train.py wrote it before format 2 (its `_model_yaml`)."""
    return {
        "format": "sipd-model/1",
        "name": f"projects/{project}/models/{version}",
        "project": project,
        "version": version,
        "created": "2026-11-24T01:02:03Z",
        "classes": CLASSES,
        "bands": BANDS,
        "input": {"name": "input", "dtype": "float32", "layout": "NCHW"},
        "outputs": {"labels": "labels", "confidence": "confidence",
                    "probabilities": "probabilities"},
        "normalization": {"mean": MEAN, "std": STD},
        "tile": {"size": 128, "halo": 24, "multiple": 4},
        "architecture": {"name": "unet", "params": SMALL_UNET},
        "training": {
            "epochs": 8, "epochs_run": 8, "best_epoch": 6, "seed": 0, "batch_size": 8,
            "learning_rate": 0.002, "augment": True, "patience": 8, "device": "cpu",
            "selection": "val_accuracy", "class_weights": [1.0, 1.0, 1.0], "scenes": ["a", "b"],
            "labeled_pixels": {"train": {"ice": 13, "water": 10, "land": 16},
                               "val": {"ice": 12, "water": 15, "land": 13}},
        },
        "onnx_check": check,
    }


def write_format1_version(folder: Path) -> Path:
    """A version folder as today's trainer leaves it, after a test job wrote into metrics.json."""
    torch.manual_seed(0)
    # A format-1 card predates the filter bank: its params mean a net without one.
    net = build_net("unet", len(BANDS), len(CLASSES), **SMALL_UNET, bank_sigmas=())
    # BatchNorm statistics of scene-like data: a random net then draws a varied
    # map (with untouched statistics it gives one class everywhere).
    x = torch.from_numpy(scene_array(128, 128, seed=1).astype(np.float32))
    x = (x - torch.tensor(MEAN).view(-1, 1, 1)) / torch.tensor(STD).view(-1, 1, 1)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = None
    with torch.no_grad():
        net.train()(x[None])
    net.eval()
    folder.mkdir(parents=True)
    export_onnx(net, MEAN, STD, folder / "model.onnx")
    check = check_onnx_export(net, MEAN, STD, folder / "model.onnx")
    torch.save(
        checkpoint_payload(net, net.state_dict(), arch="unet", in_channels=len(BANDS),
                           num_classes=len(CLASSES), best_epoch=6,
                           normalization={"mean": MEAN, "std": STD}, bands=BANDS,
                           classes=CLASSES),
        folder / "checkpoint.pt",
    )
    card = format1_card(folder.parent.name, int(folder.name), check)
    (folder / "model.yaml").write_text(
        yaml.safe_dump(card, sort_keys=False, default_flow_style=None, width=100)
    )
    history = [{"epoch": 1, "loss": 0.9, "train_accuracy": 0.6, "val_accuracy": 0.7}]
    train = {"history": history, "best_epoch": 1, "best_val_accuracy": 0.7,
             "selection": "val_accuracy", "seconds": 4.2}
    (folder / "metrics.json").write_text(json.dumps({"train": train, "test": TEST_REPORT}))
    (folder / "train.log").write_text("# sipd train\nepoch 1/8  loss 0.9000\n")
    return folder


@pytest.fixture(scope="module")
def v1_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_format1_version(tmp_path_factory.mktemp("v1") / "demo" / "1")


@pytest.fixture
def repo(tmp_path: Path, v1_template: Path) -> ModelRepository:
    """A repository whose project "demo" holds version 1 in format 1."""
    shutil.copytree(v1_template, tmp_path / "models" / "demo" / "1")
    return ModelRepository(tmp_path / "models")


def _predict(model_dir: Path, scene: Path, out: Path) -> tuple[np.ndarray, np.ndarray]:
    predict_scene(load_model(model_dir), scene, out, confidence_path=out.with_suffix(".conf.tif"),
                  tile_size=96)
    with rasterio.open(out) as ds, rasterio.open(out.with_suffix(".conf.tif")) as conf:
        return ds.read(1), conf.read(1)


# -- format 1 keeps working ----------------------------------------------------------------


def test_format1_version_loads_lists_and_predicts_like_format2(repo, tmp_path):
    v1 = repo.path("demo", 1)
    before = file_hashes(v1)
    [listed] = repo.list("demo")
    assert (listed.name, listed.project, listed.version, listed.path) == (
        "projects/demo/models/1", "demo", 1, v1)
    card = listed.card
    assert card.format == MODEL_FORMAT  # upgraded in memory ...
    assert listed.card_yaml == (v1 / "model.yaml").read_text()  # ... shown as written
    assert card.classes[0].rgb == (0xFF, 0xA5, 0x00) and card.bands == tuple(BANDS)
    assert (card.tile.size, card.tile.halo, card.tile.multiple) == (128, 24, 4)
    assert card.architecture.params == SMALL_UNET
    assert card.training is not None and card.training.labeled_pixels["val"]["land"] == 13
    assert listed.create_time == card.created.timestamp() > 0
    assert listed.training["best_epoch"] == 1 and "test" not in listed.training
    # The test report format 1 kept in metrics.json is the version's first evaluation.
    [legacy] = listed.evaluations
    assert legacy.source == "metrics.json" and legacy.report == TEST_REPORT

    # The same graph with the card written as format 2, published as version 2.
    with staging_folder(repo.project_dir("demo")) as stage:
        shutil.copy(v1 / "model.onnx", stage / "model.onnx")

        def write(folder: Path, version: int) -> None:
            upgraded = card.model_copy(update={"name": f"projects/demo/models/{version}",
                                               "version": version})
            (folder / "model.yaml").write_text(dump_card(upgraded))

        assert publish(stage, repo.project_dir("demo"), write) == 2
    assert repo.versions("demo") == [2, 1]
    assert yaml.safe_load(repo.get("demo", 2).card_yaml)["format"] == "sipd-model/2"
    assert repo.get("demo", 2).card.model_copy(update={"name": card.name, "version": 1}) == card

    scene = write_scene(tmp_path / "scene.tif", scene_array(200, 176, seed=3))
    labels1, conf1 = _predict(v1, scene, tmp_path / "v1.tif")
    labels2, conf2 = _predict(repo.path("demo", 2), scene, tmp_path / "v2.tif")
    counts = np.bincount(labels1.ravel(), minlength=4)
    assert (counts[1:] > 0).sum() >= 2 and counts[0] == 0  # a map, not one class
    assert np.array_equal(labels1, labels2) and np.array_equal(conf1, conf2)
    assert file_hashes(v1) == before  # reading, listing and predicting wrote nothing


def test_format1_cards_written_by_hand_take_the_old_defaults(tmp_path):
    folder = tmp_path / "seaice" / "7"
    folder.mkdir(parents=True)
    # No format, name, version, created, input, normalization, tile or architecture;
    # 'rrggbb' colours and an output role format 1 ignored.
    text = yaml.safe_dump({
        "classes": [{"name": "ice", "color": "ffa500"}, {"name": "water"}],
        "bands": ["HH", "HV"],
        "outputs": {"labels": "labels", "logits": "logits", "confidence": ""},
        "training": {"note": "imported", "optimizer": "sgd"},
    })
    card = parse_card(text, folder / "model.yaml", mtime=1_700_000_000.0)
    assert (card.name, card.project, card.version) == ("projects/seaice/models/7", "seaice", 7)
    assert card.created.timestamp() == 1_700_000_000.0
    assert [(c.value, c.color) for c in card.classes] == [(1, "#ffa500"), (2, "#808080")]
    assert card.outputs.by_role() == {"labels": "labels"}
    assert card.normalization.mean == (0.0, 0.0) and card.normalization.std == (1.0, 1.0)
    assert (card.tile.size, card.tile.halo, card.tile.multiple) == (512, 0, 1)
    assert card.input.name == "input" and card.architecture.name == "unknown"
    assert card.training is not None and card.training.note == "imported"
    # Written back as format 2, it reads the same.
    assert parse_card(dump_card(card), folder / "model.yaml") == card
    # Format 1 took numbers as names and read only the input's name.
    loose = parse_card(
        "bands: [1, 2]\nclasses: [{name: 2010, color: ' #FFA500'}]\n"
        "input: {name: x, dtype: uint16}\noutputs: {labels: labels}\n",
        folder / "model.yaml",
    )
    assert loose.bands == ("1", "2") and loose.classes[0].name == "2010"
    assert loose.classes[0].color == "#ffa500" and loose.input.name == "x"
    assert loose.input.dtype == "float32"


# -- errors name the file and the field ----------------------------------------------------


@pytest.mark.parametrize(
    ("change", "field", "needle"),
    [
        ({"bands": []}, "bands", "at least 1 item"),
        ({"classes": [{"value": 1, "name": "ice", "color": "#ffa500"},
                      {"value": 3, "name": "w", "color": "#000000"}]}, "classes", "1..K"),
        ({"classes": [{"value": 1, "name": "ice", "color": "orange"}]}, "classes[0].color",
         "'#rrggbb'"),
        ({"tile": {"size": 100, "halo": 24, "multiple": 8}}, "tile", "not a multiple of 8"),
        ({"tile": {"size": 128, "halo": -1, "multiple": 4}}, "tile.halo", "greater than or equal"),
        ({"tile": {"size": 128, "halo": 24, "multiple": 4, "hallo": 3}}, "tile.hallo",
         "unknown field; accepted: size, halo, multiple"),
        ({"normalization": {"mean": [1.0], "std": [1.0]}}, "normalization", "mean has 1 value"),
        ({"outputs": {"confidence": "confidence"}}, "outputs.labels", "required field"),
        ({"version": "three"}, "version", "must be an integer"),
        ({"architecture": {"name": "unet", "params": {}, "depth": 3}}, "architecture.depth",
         "unknown field"),
        ({"onnx_check": {"max_abs_diff": "small", "tolerance": 0.001}},
         "onnx_check.max_abs_diff", "must be a number"),
    ],
)
@pytest.mark.parametrize("card_format", [1, 2])
def test_a_broken_card_names_the_file_and_the_field(repo, change, field, needle, card_format):
    folder = repo.path("demo", 1)
    path = folder / "model.yaml"
    if card_format == 2:
        path.write_text(dump_card(read_card(folder)))
    doc = yaml.safe_load(path.read_text())
    doc.update(change)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    with pytest.raises(InvalidArgument) as err:
        read_card(folder)
    message = str(err.value)
    assert message.startswith(str(path)), message
    assert f"{field}: " in message and needle in message, message
    # Listing skips the broken version; asking for it says what is wrong.
    assert repo.list("demo") == []
    with pytest.raises(InvalidArgument, match="model.yaml"):
        repo.get("demo", 1)


def test_unreadable_unknown_format_and_incomplete_folders(repo, tmp_path):
    folder = repo.path("demo", 1)
    path = folder / "model.yaml"
    path.write_text(yaml.safe_dump({**yaml.safe_load(path.read_text()), "format": "sipd-model/3"}))
    with pytest.raises(InvalidArgument, match=r"format 'sipd-model/3' is not supported; .*"
                                              r"reads sipd-model/1 and sipd-model/2"):
        read_card(folder)
    path.write_text(yaml.safe_dump({**yaml.safe_load(path.read_text()), "format": MODEL_FORMAT,
                                    "surprise": 1}))
    with pytest.raises(InvalidArgument, match="surprise: unknown field; accepted: format, name"):
        read_card(folder)
    path.write_text("classes: [unclosed\n")
    with pytest.raises(InvalidArgument, match="not readable YAML"):
        read_card(folder)
    (folder / "model.onnx").unlink()
    with pytest.raises(FailedPrecondition, match=r"missing model\.onnx"):
        repo.get("demo", 1)
    with pytest.raises(FailedPrecondition, match="does not exist"):
        read_card(tmp_path / "nowhere")
    with pytest.raises(NotFound, match="does not exist"):
        repo.get("demo", 9)


# -- published versions never change -------------------------------------------------------


def test_evaluations_are_new_files_and_the_version_stays_as_published(repo):
    folder = repo.path("demo", 1)
    before = file_hashes(folder)
    first = record_evaluation(folder, TEST_REPORT, "test", scenes=["a"])
    second = record_evaluation(folder, {"overall_accuracy": 0.5}, "test", scenes=["b", "c"])
    assert first.parent == second.parent == folder / "evaluations" and first != second
    after = file_hashes(folder)
    assert {k: after[k] for k in before} == before  # every published file as it was
    assert sorted(set(after) - set(before)) == sorted(
        [f"evaluations/{first.name}", f"evaluations/{second.name}"])
    version = repo.get("demo", 1)
    assert [e.source for e in version.evaluations] == ["metrics.json", "test", "test"]
    assert [e.id for e in version.evaluations[1:]] == [first.stem, second.stem]  # oldest first
    assert version.evaluations[1].report == TEST_REPORT
    assert version.evaluations[1].scenes == ("a",) and version.evaluations[0].scenes == ()
    latest = version.latest_evaluation
    assert latest is not None and latest.report == {"overall_accuracy": 0.5}
    assert latest.scenes == ("b", "c") and latest.created >= version.evaluations[1].created
    stored = json.loads(second.read_text())
    assert stored["format"] == "sipd-evaluation/1" and stored["source"] == "test"
    assert "id" not in stored  # the file name is the id
    # A damaged record is skipped, not fatal for the version.
    (folder / "evaluations" / "zz-broken.json").write_text("{")
    assert len(repo.get("demo", 1).evaluations) == 3


def test_an_evaluation_needs_a_version_and_plain_data(repo, tmp_path):
    with pytest.raises(FailedPrecondition, match="not a model version folder"):
        record_evaluation(tmp_path, {"overall_accuracy": 1.0})
    with pytest.raises(InvalidArgument, match="plain JSON"):
        record_evaluation(repo.path("demo", 1), {"when": object()})
    assert not (repo.path("demo", 1) / "evaluations").exists() or not any(
        (repo.path("demo", 1) / "evaluations").iterdir())


def test_reexport_of_a_format1_version_is_a_new_version(repo):
    v1 = repo.path("demo", 1)
    before = file_hashes(v1)
    record_evaluation(v1, TEST_REPORT)
    with_record = file_hashes(v1)
    result = reexport_model(v1)
    assert file_hashes(v1) == with_record and {k: with_record[k] for k in before} == before
    assert (result["version"], result["model"]) == (2, "projects/demo/models/2")
    v2 = repo.get("demo", 2)
    assert v2.card.derived_from == "projects/demo/models/1" and v2.card.format == MODEL_FORMAT
    assert v2.card.classes == repo.get("demo", 1).card.classes
    # Its own files: weights and log carried over, training metrics but no evaluations.
    assert sorted(p.name for p in v2.path.iterdir()) == [
        "checkpoint.pt", "metrics.json", "model.onnx", "model.yaml", "train.log"]
    assert (v2.path / "train.log").read_text() == (v1 / "train.log").read_text()
    assert v2.training == repo.get("demo", 1).training and v2.evaluations == ()
    assert repo.versions("demo") == [2, 1]


def test_publish_is_atomic_and_a_number_is_never_given_twice(tmp_path):
    repo = ModelRepository(tmp_path / "models")
    root = repo.project_dir("p")
    assert repo.versions("p") == [] and repo.list("p") == []
    with pytest.raises(NotFound, match="no model yet"):
        repo.resolve("p", "latest")
    minimal = {"classes": [{"name": "a"}], "bands": ["B1"], "outputs": {"labels": "labels"}}

    def write(folder: Path, version: int) -> None:
        (folder / "model.onnx").write_bytes(b"graph")
        doc = {**minimal, "project": "p", "version": version}
        (folder / "model.yaml").write_text(dump_card(parse_card(yaml.safe_dump(doc),
                                                                folder / "model.yaml")))

    for expected in (1, 2, 3):
        with staging_folder(root) as stage:
            assert stage.name.startswith(".")  # never listed while incomplete
            assert publish(stage, root, write) == expected
    with pytest.raises(RuntimeError), staging_folder(root) as stage:
        raise RuntimeError("the build failed")
    assert sorted(p.name for p in root.iterdir()) == ["1", "2", "3"]  # no staging left
    assert repo.resolve("p", "latest") == 3 and repo.resolve("p", "2") == 2
    repo.delete("p", 3)
    repo.delete("p", 2)
    assert repo.versions("p") == [1] and repo.resolve("p", "latest") == 1
    with pytest.raises(NotFound, match="versions: 1"):
        repo.resolve("p", "3")
    with pytest.raises(InvalidArgument, match="not a number or 'latest'"):
        repo.resolve("p", "three")
    # 2 and 3 were models once: the next one is 4, not a new "3".
    assert next_version(root) == 4
    with staging_folder(root) as stage:
        assert publish(stage, root, write) == 4
    assert [v.name for v in repo.list("p")] == ["projects/p/models/4", "projects/p/models/1"]
    assert repo.get("p", 4).training is None and repo.get("p", 4).evaluations == ()


def test_write_new_file_never_replaces(tmp_path):
    path = write_new_file(tmp_path / "r.json", "one")
    with pytest.raises(FileExistsError):
        write_new_file(path, "two")
    assert path.read_text() == "one" and [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_model_names():
    assert parse_model_name("projects/seaice/models/3") == ("seaice", "3")
    assert parse_model_name("projects/seaice/models/latest") == ("seaice", "latest")
    with pytest.raises(InvalidArgument, match="projects/PROJECT/models/VERSION"):
        parse_model_name("seaice/3")


def test_the_repository_imports_without_torch_or_onnxruntime():
    # The daemon lists and resolves models; it must never load either.
    code = (
        "import sys, sipd.modelrepo, sipd.device, sipd.nets.catalog; "
        "print('torch' in sys.modules, 'onnxruntime' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
