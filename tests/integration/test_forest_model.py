"""The instant `forest` model kind through a real daemon: train, predict, tile, re-export."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import rasterio
import yaml

from sipd.synthetic import make_scene, sample_rois
from tests.support import Sipd, file_hashes, import_sampled_rois

SIZE = 256
CLASSES = ["water", "ice", "land"]
BANDS = ["B1", "B2", "B3", "B4"]


class Forest:
    """One project trained with --arch forest on two generated scenes; scene c is held out."""

    def __init__(self, d: Sipd) -> None:
        self.d = d
        root = d.roots[0]
        self.truth = {
            name: make_scene(root / f"{name}.tif", width=SIZE, height=SIZE, bands=4, seed=seed)
            for name, seed in (("a", 21), ("b", 22), ("c", 23))
        }
        d.sipctl("project", "create", "fr", "--classes", ",".join(CLASSES),
                 "--bands", ",".join(BANDS))  # fmt: skip
        for name, seed in (("a", 21), ("b", 22)):
            d.sipctl("scene", "add", "fr", str(root / f"{name}.tif"), "--name", name)
            rois = sample_rois(
                self.truth[name], seed=seed, n_lines_per_class=2, n_points_per_class=30,
                splits={"train": 0.75, "val": 0.25},
            )  # fmt: skip
            import_sampled_rois(d, "fr", name, rois, CLASSES)
        # Net-only flags are accepted and ignored (the card says so).
        self.train = d.sipctl_json(
            "train", "fr", "--arch", "forest", "--epochs", "3", "--seed", "0"
        )
        self.model_dir = Path(d.sipctl_json("models", "show", "fr")["path"])


@pytest.fixture(scope="module")
def forest(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Forest]:
    root = tmp_path_factory.mktemp("forest")
    d = Sipd(root / "state", roots=[root]).start()
    try:
        yield Forest(d)
    finally:
        d.stop()


def _read(path: Path) -> np.ndarray:
    with rasterio.open(path) as ds:
        return ds.read(1)


@pytest.mark.slow  # the module's daemon, training and predictions
def test_forest_trains_in_seconds_and_publishes_a_version(forest: Forest) -> None:
    train = forest.train
    assert train["model"] == "projects/fr/models/1"
    assert train["seconds"] < 20, train["seconds"]  # the instant kind's promise
    assert train["best_val_accuracy"] > 0.95
    folder = forest.model_dir
    for name in ("model.onnx", "model.yaml", "metrics.json", "train.log", "forest.joblib"):
        assert (folder / name).is_file(), name
    card = yaml.safe_load((folder / "model.yaml").read_text())
    assert card["architecture"]["name"] == "forest"
    assert card["architecture"]["params"]["n_estimators"] == 64
    assert card["tile"] == {"size": 512, "halo": 30, "multiple": 1}
    assert "epochs" in card["training"]["note"] and "ignored" in card["training"]["note"]
    assert card["onnx_check"]["max_abs_diff"] <= card["onnx_check"]["tolerance"]
    metrics = json.loads((folder / "metrics.json").read_text())["train"]
    assert set(metrics["timing"]) == {"features_s", "fit_s", "export_s"}
    shown = forest.d.sipctl_json("models", "list", "fr")["models"][0]
    assert shown["arch"] == "forest"


@pytest.mark.slow
def test_forest_predicts_the_held_out_scene_and_tiles_are_seamless(
    forest: Forest, tmp_path: Path
) -> None:
    d, root = forest.d, forest.d.roots[0]
    scene = root / "c.tif"
    whole, tiled = root / "c_whole.tif", root / "c_tiled.tif"
    d.sipctl("predict", "fr", str(scene), "-o", str(whole), "--tile-size", "512")
    d.sipctl("predict", "fr", str(scene), "-o", str(tiled), "--tile-size", "80")
    labels = _read(whole)
    # Tiles of 80 px with the card's 30 px halo give the whole-image labels exactly.
    np.testing.assert_array_equal(_read(tiled), labels)
    accuracy = float((labels == forest.truth["c"]).mean())
    assert accuracy > 0.95, accuracy


@pytest.mark.slow
def test_graph_labels_equal_sklearn_on_the_features(forest: Forest) -> None:
    import joblib
    import torch

    from sipd.modelrepo import read_card
    from sipd.nets.filter_bank import FilterBank, sparse_features

    card = read_card(forest.model_dir)
    saved = joblib.load(forest.model_dir / "forest.joblib")
    with rasterio.open(forest.d.roots[0] / "c.tif") as ds:
        raw = ds.read().astype(np.float32)
    mean = np.asarray(card.normalization.mean, np.float32)[:, None, None]
    std = np.asarray(card.normalization.std, np.float32)[:, None, None]
    bank = FilterBank(len(BANDS), tuple(saved["sigmas"])).eval()
    rng = np.random.default_rng(0)
    rows, cols = rng.integers(0, SIZE, 2000), rng.integers(0, SIZE, 2000)
    # Features at the sampled pixels (equal to the dense bank's: tests/unit/test_filter_bank.py).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small ops: more threads only spin on the shared cores
    try:
        feats = sparse_features(
            bank, torch.from_numpy((raw - mean) / std), torch.from_numpy(rows),
            torch.from_numpy(cols),
        ).numpy()  # fmt: skip
    finally:
        torch.set_num_threads(threads)
    rf = saved["forest"]
    proba = rf.predict_proba(feats)
    expected = rf.classes_[proba.argmax(1)]
    top2 = np.sort(proba, axis=1)[:, -2:]
    # A feature within float rounding of a split threshold may flip one tree's vote
    # (1/64 of probability): compare where the forest is not that close to a tie.
    clear = top2[:, 1] - top2[:, 0] > 0.1
    graph = _read(forest.d.roots[0] / "c_whole.tif")[rows, cols]
    assert clear.mean() > 0.9
    np.testing.assert_array_equal(graph[clear], expected[clear])


@pytest.mark.slow
def test_forest_reexport_is_a_new_version_and_fp16_is_refused(forest: Forest) -> None:
    d = forest.d
    before = file_hashes(forest.model_dir)
    out = d.sipctl_json("models", "export", "fr", "1")
    v = Path(d.sipctl_json("models", "show", "fr", out["model"].rsplit("/", 1)[-1])["path"])
    assert file_hashes(forest.model_dir) == before
    card = yaml.safe_load((v / "model.yaml").read_text())
    assert card["derived_from"] == "projects/fr/models/1"
    assert card["architecture"]["name"] == "forest"
    assert (v / "forest.joblib").read_bytes() == (forest.model_dir / "forest.joblib").read_bytes()
    refused = d.sipctl("models", "export", "fr", "1", "--fp16", check=False)
    assert refused.returncode != 0 and "fp16" in refused.stderr, refused.stderr


@pytest.mark.slow
def test_the_default_net_corrects_class_priors_unless_told_not_to(forest: Forest) -> None:
    """The net's training options through the API: the steps cap and the prior shift."""
    d = forest.d
    shifted = d.sipctl_json("train", "fr", "--epochs", "2", "--steps-per-epoch", "3")
    kept = d.sipctl_json("train", "fr", "--epochs", "2", "--steps-per-epoch", "3",
                         "--no-prior-correction")  # fmt: skip
    cards = {}
    for name, result in (("shifted", shifted), ("kept", kept)):
        folder = Path(d.sipctl_json("models", "show", "fr", str(result["version"]))["path"])
        cards[name] = yaml.safe_load((folder / "model.yaml").read_text())["training"]
        assert cards[name]["steps_per_epoch"] == 3 and cards[name]["epochs_run"] == 2
    record = cards["shifted"].get("prior_correction")
    shown = d.sipctl_json("models", "show", "fr", str(shifted["version"]))
    log = (Path(shown["path"]) / "train.log").read_text()
    # The shift is applied, or refused by its check on the labeled pixels: either way logged.
    assert "# class priors:" in log
    if record is not None:
        assert len(record["logit_shift"]) == len(CLASSES)
        assert abs(sum(record["scene_prior"]) - 1) < 1e-3
        before, after = record["check_accuracy"]
        assert after >= before - 0.005
    assert cards["kept"].get("prior_correction") is None
    refused = d.sipctl("train", "fr", "--steps-per-epoch", "-2", check=False)
    assert refused.returncode != 0 and "INVALID_ARGUMENT" in refused.stderr
    assert "steps_per_epoch" in refused.stderr, refused.stderr


@pytest.mark.slow  # the TorchScript export
def test_graph_maps_absent_classes_to_zero_with_dynamic_shapes(tmp_path: Path) -> None:
    """Trees that saw classes 1 and 3 of K = 4: the graph still has K probability planes."""
    import onnxruntime as ort
    from sklearn.ensemble import RandomForestClassifier

    from sipd.nets.filter_bank import FilterBank
    from sipd.training.forest_export import check_forest_export, export_forest

    bank = FilterBank(2, (1.0,)).eval()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((200, bank.num_features)).astype(np.float32)
    y = np.where(x[:, 0] > 0, 3, 1)
    rf = RandomForestClassifier(n_estimators=8, random_state=0).fit(x, y)
    path = export_forest(bank, rf, [10.0, 20.0], [2.0, 4.0], 4, tmp_path / "model.onnx")
    check = check_forest_export(bank, rf, [10.0, 20.0], [2.0, 4.0], 4, path)
    assert check["max_abs_diff"] <= check["tolerance"]
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for shape in ((1, 2, 7, 5), (3, 2, 33, 40)):
        raw = (np.array([10.0, 20.0])[None, :, None, None]
               + rng.standard_normal(shape) * 3).astype(np.float32)  # fmt: skip
        labels, confidence, probs = session.run(
            ["labels", "confidence", "probabilities"], {"input": raw}
        )
        n, _, h, w = shape
        assert labels.shape == confidence.shape == (n, h, w) and labels.dtype == np.uint8
        assert probs.shape == (n, 4, h, w)
        assert set(np.unique(labels)) <= {1, 3}
        assert not probs[:, [1, 3]].any()  # classes 2 and 4 never seen
        np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
        np.testing.assert_array_equal(confidence, probs.max(1))
        np.testing.assert_array_equal(labels, probs.argmax(1) + 1)
