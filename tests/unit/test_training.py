"""sipd.training.train_model: real scenes -> dataset -> model folder -> onnxruntime."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import onnxruntime as ort
import pytest
import rasterio
import torch
import yaml

from sipd.dataset import prepare_dataset
from sipd.errors import FailedPrecondition, InvalidArgument
from sipd.modelrepo import read_card
from sipd.progress import JobCancelled, JobContext
from sipd.synthetic import burn_rois, make_scene, sample_rois, write_mask
from sipd.training import load_checkpoint, train_model

BANDS = ["B1", "B2", "B3", "B4"]
CLASSES = [
    {"value": 1, "name": "forest", "color": "#228b22"},
    {"value": 2, "name": "water", "color": "#1e90ff"},
    {"value": 3, "name": "urban", "color": "#808080"},
]
# A small U-Net keeps a CPU run to seconds; three separable classes need no more.
SMALL_UNET = {"base_channels": 8, "depth": 2}
FAST = {"arch": "unet", "arch_params": SMALL_UNET, "batch_size": 8}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # The machine is shared; one thread is faster than two contended ones.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def labeled_scene(folder, name, seed, splits=("train", "val", "test"), nodata=None):
    path = folder / f"{name}.tif"
    truth = make_scene(path, width=256, height=256, seed=seed, nodata=nodata)
    rois = sample_rois(truth, seed=seed, n_lines_per_class=3, n_points_per_class=5)
    masks = {}
    for split in splits:
        masks[split] = str(folder / f"{name}_{split}.tif")
        write_mask(masks[split], burn_rois(rois, truth.shape, split=split), like=path)
    return {"name": name, "path": str(path), "masks": masks}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    folder = tmp_path_factory.mktemp("data")
    scenes = [labeled_scene(folder, "a", 11), labeled_scene(folder, "b", 12)]
    summary = prepare_dataset(scenes, out_dir=folder / "ds", bands=BANDS, chip_size=64,
                              ctx=JobContext())
    total = sum(sum(summary["labeled_pixels"][s].values()) for s in ("train", "val", "test"))
    assert total < 0.005 * 2 * 256 * 256  # sparse labels, as a user would draw
    return folder


@pytest.fixture(scope="module")
def trained(dataset, tmp_path_factory):
    models = tmp_path_factory.mktemp("models")
    events = []
    started = time.time()
    result = train_model(dataset_dir=dataset / "ds", models_root=models, project="demo",
                         classes=CLASSES, bands=BANDS, epochs=8, seed=0, tile_size=256,
                         ctx=JobContext(emit=events.append), **FAST)
    print(f"\ntraining took {time.time() - started:.1f}s, "
          f"best val accuracy {result['best_val_accuracy']:.3f}")
    return result, events, models


@pytest.mark.slow  # the module's 8-epoch training run
def test_model_folder_has_all_files_and_card(trained):
    result, _, models = trained
    assert result["version"] == 1 and result["model"] == "projects/demo/models/1"
    folder = models / "1"
    assert result["model_dir"] == str(folder)
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        ["model.onnx", "model.yaml", "metrics.json", "checkpoint.pt", "train.log"])
    assert [p.name for p in models.iterdir()] == ["1"]  # no staging folder left
    card = yaml.safe_load((folder / "model.yaml").read_text())
    assert card["format"] == "sipd-model/2"
    assert "derived_from" not in card and "fp16" not in card  # unset: left out
    typed = read_card(folder)  # the one reader accepts what the one writer wrote
    assert typed.version == 1 and typed.tile.halo == 44
    assert card["name"] == "projects/demo/models/1"
    assert card["project"] == "demo" and card["version"] == 1
    assert card["created"].endswith("Z")
    assert card["classes"] == CLASSES
    assert card["bands"] == BANDS
    assert card["input"] == {"name": "input", "dtype": "float32", "layout": "NCHW"}
    assert card["outputs"] == {"labels": "labels", "confidence": "confidence",
                               "probabilities": "probabilities"}
    assert len(card["normalization"]["mean"]) == len(card["normalization"]["std"]) == 4
    # depth-2 U-Net: margin 23, plus 21 for its filter bank at sigma 3.5 -> halo 44.
    assert card["tile"] == {"size": 256, "halo": 44, "multiple": 4}
    assert card["architecture"] == {
        "name": "unet", "params": {**SMALL_UNET, "bank_sigmas": [1.0, 3.5]}}
    t = card["training"]
    assert t["epochs"] == 8 and t["epochs_run"] == result["epochs_run"]
    assert t["best_epoch"] == result["best_epoch"] and t["seed"] == 0
    assert t["batch_size"] == 8 and t["learning_rate"] == 0.002 and t["augment"] is True
    assert t["class_weights"] == [1.0, 1.0, 1.0]
    assert t["scenes"] == ["a", "b"]
    assert set(t["labeled_pixels"]) == {"train", "val"}
    assert set(t["labeled_pixels"]["train"]) == {"forest", "water", "urban"}
    assert t["patience"] == 8 and t["selection"] == "val_accuracy" and t["device"] == "cpu"
    assert card["onnx_check"]["tolerance"] == 1e-3
    assert card["onnx_check"]["max_abs_diff"] == result["onnx_max_abs_diff"] < 1e-4

    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["train"]["history"] == result["history"]
    assert metrics["train"]["best_epoch"] == result["best_epoch"]
    assert metrics["train"]["best_val_accuracy"] == result["best_val_accuracy"]
    log = (folder / "train.log").read_text().splitlines()
    epoch_lines = [line for line in log if not line.startswith("#")]
    assert len(epoch_lines) == result["epochs_run"]
    assert epoch_lines[0].startswith("epoch 1/8") and "val_acc" in epoch_lines[0]


@pytest.mark.slow  # the module's 8-epoch training run
def test_progress_reports_each_epoch_with_metrics(trained):
    result, events, _ = trained
    per_epoch = [e for e in events if e.stage == "train"]
    assert len(per_epoch) == result["epochs_run"]
    for i, e in enumerate(per_epoch, start=1):
        assert e.message == f"epoch {i}/8" and e.fraction == pytest.approx(i / 8)
        assert {"epoch", "loss", "train_accuracy", "val_accuracy"} <= set(e.metrics)
    assert result["best_val_accuracy"] == max(h["val_accuracy"] for h in result["history"])


@pytest.mark.slow  # the module's 8-epoch training run
def test_heldout_scene_is_classified_accurately_by_onnxruntime(trained, tmp_path):
    result, _, _ = trained
    truth = make_scene(tmp_path / "new.tif", width=256, height=256, seed=99)
    with rasterio.open(tmp_path / "new.tif") as ds:
        x = ds.read().astype(np.float32)[None]
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    session = ort.InferenceSession(f"{result['model_dir']}/model.onnx", opts,
                                   providers=["CPUExecutionProvider"])
    labels, confidence = session.run(["labels", "confidence"], {"input": x})
    accuracy = float((labels[0] == truth).mean())
    print(f"\nheld-out accuracy {accuracy:.4f}")
    assert accuracy >= 0.9
    assert confidence.min() >= 1 / 3 - 1e-6 and confidence.max() <= 1 + 1e-6

    # The checkpoint rebuilds the same net: torch agrees with the ONNX graph.
    net, info = load_checkpoint(result["model_dir"])
    assert info["bands"] == BANDS and info["best_epoch"] == result["best_epoch"]
    mean = torch.tensor(info["normalization"]["mean"]).view(1, -1, 1, 1)
    std = torch.tensor(info["normalization"]["std"]).view(1, -1, 1, 1)
    with torch.no_grad():
        probs = torch.softmax(net((torch.from_numpy(x) - mean) / std), 1).numpy()
    (onnx_probs,) = session.run(["probabilities"], {"input": x})
    assert np.abs(probs - onnx_probs).max() < 1e-4


def test_same_seed_repeats_exactly_and_versions_count_up(dataset, tmp_path):
    runs = []
    for _ in range(2):
        result = train_model(dataset_dir=dataset / "ds", models_root=tmp_path, project="demo",
                             classes=CLASSES, bands=BANDS, epochs=2, seed=3, tile_size=128,
                             ctx=JobContext(), **FAST)
        runs.append(result)
    assert [r["version"] for r in runs] == [1, 2]
    strip = [[{k: v for k, v in h.items() if k != "seconds"} for h in r["history"]]
             for r in runs]
    assert strip[0] == strip[1]
    a = torch.load(tmp_path / "1" / "checkpoint.pt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "2" / "checkpoint.pt", weights_only=True)["state_dict"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_cancel_after_first_epoch_leaves_no_model(dataset, tmp_path):
    cancel = threading.Event()
    seen = []

    def emit(event):
        seen.append(event)
        if event.stage == "train":
            cancel.set()

    ctx = JobContext(emit=emit, cancel_event=cancel)
    with pytest.raises(JobCancelled):
        train_model(dataset_dir=dataset / "ds", models_root=tmp_path / "models",
                    project="demo", classes=CLASSES, bands=BANDS, epochs=5, ctx=ctx, **FAST)
    assert len([e for e in seen if e.stage == "train"]) == 1
    root = tmp_path / "models"
    assert not root.exists() or list(root.iterdir()) == []


def test_without_val_labels_selection_uses_train_accuracy(tmp_path):
    scene = labeled_scene(tmp_path, "t", 21, splits=("train",))
    prepare_dataset([scene], out_dir=tmp_path / "ds", bands=BANDS, chip_size=64,
                    ctx=JobContext())
    events = []
    result = train_model(dataset_dir=tmp_path / "ds", models_root=tmp_path / "m",
                         project="demo", classes=CLASSES, bands=BANDS, arch="spectral",
                         arch_params={"hidden": 8}, epochs=2, class_weights="balanced",
                         tile_size=64, ctx=JobContext(emit=events.append))
    assert result["best_val_accuracy"] is None
    assert all(h["val_accuracy"] is None for h in result["history"])
    assert all("val_accuracy" not in e.metrics for e in events if e.stage == "train")
    log = (tmp_path / "m" / "1" / "train.log").read_text()
    assert "no val labels" in log and "train accuracy" in log
    card = yaml.safe_load((tmp_path / "m" / "1" / "model.yaml").read_text())
    assert card["tile"] == {"size": 64, "halo": 1, "multiple": 1}
    assert card["training"]["selection"] == "train_accuracy"
    assert len(card["training"]["class_weights"]) == 3


def test_no_train_pixels_is_failed_precondition(tmp_path):
    # Train labels only on nodata pixels: prepare succeeds, but nothing can train.
    scene = labeled_scene(tmp_path, "n", 31, splits=("train", "val"), nodata=0)
    with rasterio.open(scene["path"]) as ds:
        nodata = (ds.read() == 0).all(axis=0)
    write_mask(scene["masks"]["train"], np.where(nodata, 1, 0).astype(np.uint8),
               like=scene["path"])
    prepare_dataset([scene], out_dir=tmp_path / "ds", bands=BANDS, chip_size=64,
                    ctx=JobContext())
    with pytest.raises(FailedPrecondition, match="no training pixels.*split train"):
        train_model(dataset_dir=tmp_path / "ds", models_root=tmp_path / "m", project="demo",
                    classes=CLASSES, bands=BANDS, ctx=JobContext())
    assert not (tmp_path / "m").exists()


def test_unprepared_or_mismatched_dataset_and_bad_arguments(dataset, tmp_path):
    common = {"models_root": tmp_path / "m", "project": "demo", "ctx": JobContext()}
    with pytest.raises(FailedPrecondition, match="run dataset prepare first"):
        train_model(dataset_dir=tmp_path / "nothing", classes=CLASSES, bands=BANDS, **common)
    with pytest.raises(FailedPrecondition, match="prepare again"):
        train_model(dataset_dir=dataset / "ds", classes=CLASSES, bands=["B1", "B2"], **common)
    with pytest.raises(InvalidArgument, match="1..K"):
        train_model(dataset_dir=dataset / "ds", classes=CLASSES[1:], bands=BANDS, **common)
    with pytest.raises(InvalidArgument, match="class value"):
        train_model(dataset_dir=dataset / "ds", classes=CLASSES[:2], bands=BANDS, **common)
    with pytest.raises(InvalidArgument, match=r"class 'water': color: 'blue' is not '#rrggbb'"):
        bad = [CLASSES[0], {**CLASSES[1], "color": "blue"}, CLASSES[2]]
        train_model(dataset_dir=dataset / "ds", classes=bad, bands=BANDS, **common)
    with pytest.raises(InvalidArgument, match="class_weights"):
        train_model(dataset_dir=dataset / "ds", classes=CLASSES, bands=BANDS,
                    class_weights=[1.0, 2.0], **common)
    with pytest.raises(InvalidArgument, match="tile_size"):
        train_model(dataset_dir=dataset / "ds", classes=CLASSES, bands=BANDS, tile_size=64,
                    **common)
    with pytest.raises(InvalidArgument, match="epochs"):
        train_model(dataset_dir=dataset / "ds", classes=CLASSES, bands=BANDS, epochs=0,
                    **common)
    assert not (tmp_path / "m").exists()


def test_filter_bank_features_are_computed_once_and_augment_like_the_chips():
    """The default U-Net's filter bank is computed once per chip for training
    (sipd.training.loop.cached_features): that is exact only because its features
    commute with the rot90/flip augmentation, and the cached net must give the
    net's own logits."""
    from sipd.nets import build_net
    from sipd.training.data import IGNORE, TrainingData, augment
    from sipd.training.loop import cached_features

    torch.manual_seed(0)
    net = build_net("unet", 3, 4, **SMALL_UNET).eval()
    assert net.bank is not None  # the default has the bank
    x = torch.randn(6, 3, 32, 32)
    targets = torch.full((6, 32, 32), IGNORE)
    aug_x, _ = augment(x, targets, np.random.default_rng(1))
    aug_f, _ = augment(net.fixed_features(x), targets, np.random.default_rng(1))
    assert torch.allclose(net.fixed_features(aug_x), aug_f, atol=1e-5)

    data = TrainingData(images=x, train_targets=targets, val_targets=targets,
                        train_idx=np.arange(6), val_idx=np.arange(0), num_classes=4,
                        valid=torch.ones(6, 32, 32, dtype=torch.bool))
    model, cached = cached_features(net, data, JobContext())
    assert cached.images.dtype == torch.float16
    assert cached.images.shape == (6, net.bank.num_features, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model(cached.images.float()), net(x), atol=2e-2)
    # Over the memory limit, or for a net without a bank: trained on the bands as given.
    uncached, same = cached_features(net, data, JobContext(), limit=1000)
    assert same is data
    with torch.no_grad():
        assert torch.equal(uncached(x), net(x))  # the bank per batch, in float32
    plain = build_net("unet", 3, 4, base_channels=8, depth=2, bank_sigmas=())
    model, same = cached_features(plain, data, JobContext())
    assert model is plain and same is data


def test_each_epoch_is_ranked_on_one_fixed_subset_of_the_val_chips():
    """FitConfig.max_val_chips: a seeded subset drawn once, so the epochs' val
    accuracies compare the same labels; its accuracy is what evaluate() gives on it."""
    from sipd.nets import build_net
    from sipd.training.data import IGNORE, TrainingData
    from sipd.training.loop import FitConfig, evaluate, fit

    torch.manual_seed(0)
    n, size = 10, 32
    x = torch.randn(n, 3, size, size)
    targets = torch.full((n, size, size), IGNORE)
    targets[:, 4, :8] = torch.arange(8) % 2
    val = torch.full((n, size, size), IGNORE)
    val[:, 20, :8] = torch.arange(8) % 2
    data = TrainingData(images=x, train_targets=targets, val_targets=val,
                        train_idx=np.arange(n), val_idx=np.arange(n), num_classes=2,
                        valid=torch.ones(n, size, size, dtype=torch.bool))  # fmt: skip
    net = build_net("unet", 3, 2, base_channels=8, depth=2, bank_sigmas=())
    cfg = FitConfig(2, 4, 0.002, None, False, 1, max_val_chips=3)
    result = fit(net, data, torch.ones(2), cfg, device=torch.device("cpu"),
                 rng=np.random.default_rng(0), ctx=JobContext(), on_epoch=lambda r, b: None)
    model, seen = result.trained_through
    assert seen.val_idx.size == 3 and set(seen.val_idx) <= set(range(n))
    assert seen.val_idx.tolist() == sorted(seen.val_idx.tolist())
    accuracy, _ = evaluate(model, seen, torch.device("cpu"), False, JobContext())
    assert result.history[-1]["val_accuracy"] == accuracy
    everything = FitConfig(1, 4, 0.002, None, False, 1, max_val_chips=None)
    result = fit(net, data, torch.ones(2), everything, device=torch.device("cpu"),
                 rng=np.random.default_rng(0), ctx=JobContext(), on_epoch=lambda r, b: None)
    assert result.trained_through[1].val_idx.size == n
