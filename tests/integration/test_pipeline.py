"""SIP's first example through a real daemon: label, prepare, train, test, predict.

The flow's own training run serves the tests of training and of its accuracy; the tests that
only need *a* model (several scenes, copies, errors, re-export) use the session's trained
model instead."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
import rasterio
from sipapi.v1 import (
    common_pb2,
    dataset_pb2,
    job_pb2,
    prediction_pb2,
    training_pb2,
)

from sipd.synthetic import make_scene, sample_rois
from tests.support import (
    MODEL_BANDS,
    MODEL_CLASSES,
    MODEL_PROJECT,
    Sipd,
    assert_cog,
    file_hashes,
    import_sampled_rois,
    install_model,
    wait_for,
    write_raster,
)

SIZE = 384
CLASSES = ["water", "ice", "land"]
STATE = common_pb2.Job.State
EPOCHS = "8"
P = MODEL_PROJECT  # the project of the tests that use the session's trained model


class Flow:
    """One trained project shared by the tests of this module."""

    def __init__(self, d: Sipd) -> None:
        self.d = d
        root = d.roots[0]
        self.truth = {}
        for name, seed in (("a", 1), ("b", 2), ("c", 3)):
            self.truth[name] = make_scene(
                root / f"{name}.tif", width=SIZE, height=SIZE, bands=4, seed=seed
            )
        d.sipctl(
            "project", "create", "flow", "--classes", ",".join(CLASSES), "--bands", "B1,B2,B3,B4"
        )
        for name in ("a", "b", "c"):
            d.sipctl("scene", "add", "flow", str(root / f"{name}.tif"), "--name", name)
        # Train/val examples on two scenes; scene c carries only test examples (SIP FAQ Q3).
        for name, seed in (("a", 1), ("b", 2)):
            rois = sample_rois(
                self.truth[name],
                seed=seed,
                n_lines_per_class=2,
                n_points_per_class=4,
                splits={"train": 0.75, "val": 0.25},
            )
            import_sampled_rois(d, "flow", name, rois, CLASSES)
        test_rois = sample_rois(
            self.truth["c"], seed=3, n_lines_per_class=3, n_points_per_class=6, splits={"test": 1.0}
        )
        import_sampled_rois(d, "flow", "c", test_rois, CLASSES)
        self.mask = d.sipctl_json("mask", "flow")
        self.prepared = d.sipctl_json("dataset", "prepare", "flow")
        self.train = d.sipctl_json("train", "flow", "--epochs", EPOCHS, "--seed", "0")
        self.test = d.sipctl_json("test", "flow")


@pytest.fixture(scope="module")
def flow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flow]:
    root = tmp_path_factory.mktemp("flow")
    d = Sipd(root / "state", roots=[root]).start()
    try:
        yield Flow(d)
    finally:
        d.stop()


@pytest.fixture(scope="module")
def modelled(tmp_path_factory: pytest.TempPathFactory, trained_model: Path) -> Iterator[Sipd]:
    """For the tests that need a model but no training run of their own: a daemon whose
    project P has version 1, a copy of the session's trained model, and the flow's scenes."""
    root = tmp_path_factory.mktemp("modelled")
    install_model(trained_model, root / "state", P)
    d = Sipd(root / "state", roots=[root]).start()
    try:
        classes = ",".join(c["name"] for c in MODEL_CLASSES)
        d.sipctl("project", "create", P, "--classes", classes, "--bands", ",".join(MODEL_BANDS))
        for name, seed in (("a", 1), ("b", 2), ("c", 3)):
            make_scene(root / f"{name}.tif", width=SIZE, height=SIZE, bands=4, seed=seed)
        # One train ROI, so that a train request gets past "no train ROIs" to its arguments.
        d.sipctl("scene", "add", P, str(root / "a.tif"), "--name", "a")
        d.sipctl("roi", "add", P, "--scene", "a", "--class", MODEL_CLASSES[0]["name"],
                 "--wkt", "POINT (10 10)", "--crs", "pixel")  # fmt: skip
        yield d
    finally:
        d.stop()


@pytest.mark.slow  # the module's training run
def test_few_labels_give_an_accurate_held_out_test(flow: Flow) -> None:
    counts = flow.mask["counts"]
    labeled = sum(n for split in counts.values() for c, n in split.items() if c != "background")
    assert 0 < labeled < 0.005 * 3 * SIZE * SIZE
    assert set(flow.prepared) >= {"chips", "labeled_pixels", "normalization_mean"}
    assert flow.prepared["chips"] > 0 and len(flow.prepared["normalization_mean"]) == 4
    assert flow.train["model"] == "projects/flow/models/1"
    assert len(flow.train["history"]) == flow.train["epochs_run"] >= 1
    assert flow.train["onnx_max_abs_diff"] < 1e-3
    report = flow.test
    assert report["overall_accuracy"] >= 0.95, report
    assert report["kappa"] > 0.9
    assert report["scenes"] == ["projects/flow/scenes/c"]  # only the scene with test ROIs
    assert [c["name"] for c in report["per_class"]] == CLASSES
    cm = np.array(report["confusion_matrix"])
    assert cm.shape == (3, 3) and cm.sum() == report["pixels"]
    assert np.trace(cm) / cm.sum() == pytest.approx(report["overall_accuracy"])


@pytest.mark.slow  # the module's training run
def test_model_folder_is_self_describing(flow: Flow) -> None:
    model = flow.d.sipctl_json("models", "show", "flow")
    folder = Path(model["path"])
    for name in ("model.onnx", "model.yaml", "metrics.json", "checkpoint.pt", "train.log"):
        assert (folder / name).is_file(), name
    # The test report is a record of its own; the version's files stay as published.
    (record,) = sorted((folder / "evaluations").glob("*.json"))
    saved = json.loads(record.read_text())
    assert saved["report"]["overall_accuracy"] == pytest.approx(flow.test["overall_accuracy"])
    assert model["test"]["overall_accuracy"] == pytest.approx(flow.test["overall_accuracy"])
    assert [c["name"] for c in model["classes"]] == CLASSES and model["bands"] == [
        "B1",
        "B2",
        "B3",
        "B4",
    ]
    assert len(flow.d.sipctl_json("models", "list", "flow")["models"]) == 1


@pytest.mark.slow  # the accuracy of the module's training run
def test_predict_writes_a_georeferenced_label_map(flow: Flow) -> None:
    d = flow.d
    root = d.roots[0]
    out = root / "c_labels.tif"
    result = d.sipctl_json(
        "predict", "flow", str(root / "c.tif"), "-o", str(out), "--confidence", "--quicklook"
    )
    scene = result["scenes"][0]
    assert scene["output"] == str(out) and Path(scene["quicklook"]).is_file()
    with rasterio.open(root / "c.tif") as src, rasterio.open(out) as ds:
        labels = ds.read(1)
        assert (ds.width, ds.height, ds.crs, ds.transform) == (
            src.width,
            src.height,
            src.crs,
            src.transform,
        )
        assert ds.dtypes[0] == "uint8" and ds.nodata == 0
        assert ds.colormap(1)[1][:3] != ds.colormap(1)[2][:3]
        assert ds.tags()["CLASS_1"] == "water"
    assert_cog(out)
    assert (labels == flow.truth["c"]).mean() > 0.95
    assert sum(scene["class_pixels"].values()) == scene["pixels"] == SIZE * SIZE
    assert scene["class_pixels"]["ice"] == int((labels == 2).sum())
    assert scene["class_area_m2"]["ice"] == pytest.approx(scene["class_pixels"]["ice"] * 100.0)
    with rasterio.open(scene["confidence"]) as ds:
        assert ds.shape == (SIZE, SIZE)
    # The output exists now: a second run needs --overwrite.
    again = d.sipctl("predict", "flow", str(root / "c.tif"), "-o", str(out), check=False)
    assert again.returncode == 1 and "ALREADY_EXISTS" in again.stderr
    d.sipctl("predict", "flow", str(root / "c.tif"), "-o", str(out), "--overwrite")


def test_predict_several_scenes_nodata_and_background(modelled: Sipd) -> None:
    d = modelled
    root = d.roots[0]
    data = rasterio.open(root / "a.tif").read()
    data[:, :40, :] = 0
    holes = write_raster(root / "holes.tif", data, nodata=0)
    bg = np.zeros((1, SIZE, SIZE), np.uint8)
    bg[0, :, :50] = 1
    mask = write_raster(root / "bg.tif", bg)
    outdir = root / "many"
    outdir.mkdir()
    result = d.sipctl_json(
        "predict",
        P,
        str(holes),
        str(root / "b.tif"),
        "-o",
        str(outdir),
        "--background-mask",
        str(mask),
    )
    assert [Path(s["output"]).name for s in result["scenes"]] == [
        "holes_labels.tif",
        "b_labels.tif",
    ]
    with rasterio.open(outdir / "holes_labels.tif") as ds:
        labels = ds.read(1)
    assert (labels[:40] == 0).all() and (labels[:, :50] == 0).all()
    assert (labels[40:, 50:] > 0).all()
    assert result["scenes"][0]["pixels"] == (SIZE - 40) * (SIZE - 50)


def test_a_copied_model_folder_predicts_identical_labels_elsewhere(
    modelled: Sipd, tmp_path: Path
) -> None:
    src_model = Path(modelled.sipctl_json("models", "show", P)["path"])
    other = Sipd(tmp_path / "state", roots=[tmp_path]).start()
    try:
        dest = tmp_path / "state" / "models" / P / "1"
        shutil.copytree(src_model, dest)
        scene = tmp_path / "c.tif"
        shutil.copy(modelled.roots[0] / "c.tif", scene)
        assert (
            other.sipctl_json("models", "list", P)["models"][0]["name"]
            == f"projects/{P}/models/1"
        )
        other.sipctl("predict", P, str(scene), "-o", str(tmp_path / "there.tif"))
        modelled.sipctl(
            "predict",
            P,
            str(modelled.roots[0] / "c.tif"),
            "-o",
            str(modelled.roots[0] / "here.tif"),
        )
        with (
            rasterio.open(tmp_path / "there.tif") as a,
            rasterio.open(modelled.roots[0] / "here.tif") as b,
        ):
            assert np.array_equal(a.read(1), b.read(1))
    finally:
        other.stop()


@pytest.mark.slow  # trains
def test_training_progress_streams_per_epoch_metrics(flow: Flow) -> None:
    c = flow.d.client
    job = c.training.Train(
        training_pb2.TrainRequest(parent="projects/flow", epochs=2, seed=1), timeout=30
    )
    epochs = set()
    final = None
    for event in c.jobs.WatchJob(job_pb2.WatchJobRequest(name=job.name), timeout=600):
        metrics = event.job.progress.metrics
        if "val_accuracy" in metrics:
            epochs.add(int(metrics["epoch"]))
            assert 0.0 <= metrics["train_accuracy"] <= 1.0 and metrics["loss"] > 0
        final = event.job
    assert final is not None and final.state == STATE.SUCCEEDED, final
    assert epochs == {1, 2}
    assert final.train.model == "projects/flow/models/2" and len(final.train.history) == 2
    # The dataset was not stale, so the job did not prepare again.
    assert not any(e == "prepare" for e in [final.progress.stage])
    ds = c.datasets.GetDataset(
        dataset_pb2.GetDatasetRequest(name="projects/flow/dataset"), timeout=10
    )
    assert not ds.stale and ds.chips == flow.prepared["chips"]
    flow.d.sipctl("models", "delete", "flow", "2")
    assert [m["version"] for m in flow.d.sipctl_json("models", "list", "flow")["models"]] == [1]


@pytest.mark.slow  # trains
def test_cancel_during_training_leaves_no_model(flow: Flow) -> None:
    d = flow.d
    name = d.sipctl(
        "train", "flow", "--epochs", "500", "--patience", "0", "--detach"
    ).stdout.strip()
    wait_for(
        lambda: (
            "epoch" in d.sipctl_json("jobs", "show", name).get("progress", {}).get("metrics", {})
        ),
        300,
        what="the first epoch",
    )
    d.sipctl("jobs", "cancel", name)
    final = json.loads(d.sipctl("--json", "jobs", "wait", name, check=False).stdout)
    assert final["state"] == "CANCELLED"
    assert [m["version"] for m in d.sipctl_json("models", "list", "flow")["models"]] == [1]
    models_dir = Path(d.sipctl_json("models", "show", "flow")["path"]).parent
    # No staging folder left behind; a deleted version's tombstone (.deleted-N, which keeps
    # its number from being reused) is not one.
    left = sorted(p.name for p in models_dir.iterdir() if not p.name.startswith(".deleted-"))
    assert left == ["1"]


def test_pipeline_errors(modelled: Sipd) -> None:
    d = modelled
    c = d.client
    root = d.roots[0]
    d.sipctl("project", "create", "empty", "--classes", "x,y", "--bands", "B1,B2,B3,B4")
    for call, request in (
        (c.training.Train, training_pb2.TrainRequest(parent="projects/empty")),
        (c.datasets.PrepareDataset, dataset_pb2.PrepareDatasetRequest(parent="projects/empty")),
    ):
        with pytest.raises(grpc.RpcError) as err:
            call(request, timeout=10)
        assert (
            err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            and "train ROIs" in err.value.details()
        )
    with pytest.raises(grpc.RpcError) as err:
        c.training.Test(training_pb2.TestRequest(model="projects/empty/models/latest"), timeout=10)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND and "no model" in err.value.details()
    result = d.sipctl("train", P, "--arch", "resnet", check=False)
    assert "arch 'resnet' is not known" in result.stderr
    two = write_raster(root / "two.tif", np.ones((2, 64, 64), np.uint16))
    with pytest.raises(grpc.RpcError) as err:
        c.prediction.Predict(
            prediction_pb2.PredictRequest(
                model=f"projects/{P}/models/1", inputs=[str(two)], output=str(root / "x.tif")
            ),
            timeout=10,
        )
    assert (
        err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "expects 4" in err.value.details()
    )
    corrupt = root / "corrupt.tif"
    corrupt.write_bytes((root / "a.tif").read_bytes()[:5000])
    result = d.sipctl("predict", P, str(corrupt), "-o", str(root / "y.tif"), check=False)
    assert result.returncode == 1 and "corrupt" in result.stderr
    assert not (root / "x.tif").exists() and not (root / "y.tif").exists()
    result = d.sipctl(
        "predict",
        P,
        str(root / "c.tif"),
        "-o",
        str(root / "z.tif"),
        "--model",
        "9",
        check=False,
    )
    assert "NOT_FOUND" in result.stderr and "versions: 1" in result.stderr


def test_published_versions_never_change_test_and_reexport_add_records(modelled: Sipd) -> None:
    d = modelled
    root = d.roots[0]
    v1 = Path(d.sipctl_json("models", "show", P, "1")["path"])
    before = file_hashes(v1)
    d.sipctl("roi", "add", P, "--scene", "a", "--class", MODEL_CLASSES[0]["name"],
             "--wkt", "POINT (20 20)", "--crs", "pixel", "--split", "test")  # fmt: skip
    report = d.sipctl_json("test", P, "--model", "1")
    d.sipctl("predict", P, str(root / "c.tif"), "-o", str(root / "before.tif"))
    out = d.sipctl_json("models", "export", P, "1", "--fp16")
    # The test report is a record beside the version, the re-export a new version:
    # not one byte of version 1's published files changed.
    after = file_hashes(v1)
    evaluations = [k for k in after if k.startswith("evaluations/")]
    assert len(evaluations) == 1 and {k: after[k] for k in before} == before
    shown = d.sipctl_json("models", "show", P, "1")
    assert shown["test"]["overall_accuracy"] == pytest.approx(report["overall_accuracy"])
    assert [e["pixels"] for e in shown["evaluations"]] == [report["pixels"]]
    assert out["model"] == f"projects/{P}/models/2"
    assert out["source_model"] == f"projects/{P}/models/1"
    v2 = d.sipctl_json("models", "show", P, "2")
    assert v2["derived_from"] == f"projects/{P}/models/1"
    folder = Path(v2["path"])
    assert (folder / "model.fp16.onnx").is_file() and out["max_abs_diff"] < 1e-3
    assert "model.fp16.onnx" in v2["model_yaml"]
    d.sipctl("predict", P, str(root / "c.tif"), "-o", str(root / "after.tif"), "--model", "2")
    with rasterio.open(root / "before.tif") as a, rasterio.open(root / "after.tif") as b:
        assert np.array_equal(a.read(1), b.read(1))
    result = d.sipctl("models", "export", P, "latest", check=False)
    assert result.returncode == 1 and "explicitly" in result.stderr
