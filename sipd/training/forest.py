"""The instant model kind `forest`: a random forest on a fixed filter bank, trained in seconds.

It is the model an interactive labeling loop retrains after each edit. The
prepared dataset's labeled pixels get the filter bank's features
(sipd.nets.filter_bank, ilastik's feature set), a seeded sklearn
RandomForestClassifier is fitted on a class-balanced sample of them, and the
version is published exactly like a net's (models/README.md), with the whole
model as one ONNX graph (sipd.training.forest_export) and the fitted forest
kept as forest.joblib for re-exports.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sipd.errors import FailedPrecondition, InvalidArgument
from sipd.modelrepo import (
    ModelCard,
    name_of_folder,
    publish,
    read_card,
    read_training_metrics,
    staging_folder,
    version_name,
    write_card,
)
from sipd.modelrepo.card import OnnxCheck
from sipd.modelrepo.layout import FOREST_FILE, GRAPH_FILE, METRICS_FILE, TRAIN_LOG
from sipd.nets.filter_bank import DEFAULT_SIGMAS, FilterBank, sparse_features
from sipd.progress import JobContext
from sipd.training.forest_export import check_forest_export, export_forest
from sipd.training.onnx_export import INPUT, OUTPUTS, derived_version
from sipd.training.train import check_classes, load_training_dataset

ARCH = "forest"
STAGE = "train"
# A tile's features are F float planes (116 for 4 bands): 512 px tiles keep one
# tile's working set near 200 MB; the 30 px halo costs 1.25x the pixels.
DEFAULT_TILE_SIZE = 512
# Class-balanced cap on training pixels: more adds seconds, not accuracy, for
# sparse drawn labels. Val pixels are capped the same way for the measurement.
SAMPLES_PER_CLASS = 20_000
FOREST_PARAMS: dict[str, Any] = {
    "n_estimators": 64,
    "min_samples_leaf": 1,
    "max_features": "sqrt",
    "class_weight": "balanced",
}
# TrainParams fields that only a net uses: the card says they were ignored.
NET_ONLY = ("epochs", "batch_size", "learning_rate", "augment", "patience")


def train_forest(
    *,
    dataset_dir: str | Path,
    models_root: str | Path,
    project: str,
    classes: list[dict[str, Any]],
    bands: list[str],
    seed: int = 0,
    samples_per_class: int = SAMPLES_PER_CLASS,
    sigmas: tuple[float, ...] = DEFAULT_SIGMAS,
    tile_size: int = DEFAULT_TILE_SIZE,
    preprocessing: dict[str, Any] | None = None,
    ctx: JobContext,
) -> dict[str, Any]:
    """Fit the forest on a prepared dataset and publish models_root/<version>/.

    Returns the fields train_model returns (one "epoch": the fit), plus "timing".
    """
    from sklearn.ensemble import RandomForestClassifier

    started = time.perf_counter()
    classes = check_classes(classes)
    if not isinstance(tile_size, int) or tile_size < 64:
        raise InvalidArgument(f"tile_size must be an integer >= 64, got {tile_size}")
    chips, summary = load_training_dataset(dataset_dir, bands)
    norm = summary["normalization"]
    mean, std = [float(v) for v in norm["mean"]], [float(v) for v in norm["std"]]
    num_classes = len(classes)
    bank = FilterBank(len(bands), sigmas).eval()
    rng = np.random.default_rng(seed)
    log: list[str] = []

    def line(text: str) -> None:
        log.append(text)
        ctx.log.info(text)

    line(f"# sipd train: arch forest {FOREST_PARAMS} sigmas {list(bank.sigmas)} on cpu")
    line(f"# features: {bank.num_features} per pixel ({len(bands)} band(s)); "
         f"halo {bank.seamless_margin} px")  # fmt: skip
    timing: dict[str, float] = {}
    mark = time.perf_counter()
    ctx.progress(STAGE, 0.0, "features", force=True)
    threads = torch.get_num_threads()
    # The windowed ops are small: one thread runs them fastest, and several threads
    # spinning on shared cores (a busy machine) made them ~15x slower when measured.
    torch.set_num_threads(1)
    try:
        x_train, y_train = _features(bank, chips, chips.train, mean, std, samples_per_class,
                                     rng, ctx, 0.0, 0.4)  # fmt: skip
        x_val, y_val = _features(bank, chips, chips.val, mean, std, samples_per_class,
                                 rng, ctx, 0.4, 0.2)  # fmt: skip
    finally:
        torch.set_num_threads(threads)
    timing["features_s"] = round(time.perf_counter() - mark, 3)
    if not len(y_train):
        raise FailedPrecondition("no labeled train pixels in the prepared dataset's chips")
    present = sorted(int(v) for v in np.unique(y_train))
    line(f"# data: {summary['chips']} chips from {len(summary['scenes'])} scene(s); "
         f"{len(y_train)} train and {len(y_val)} val pixels sampled "
         f"(<= {samples_per_class} per class); classes present {present}")  # fmt: skip

    ctx.check_cancelled()
    ctx.progress(STAGE, 0.6, "fitting the forest", force=True)
    mark = time.perf_counter()
    forest = RandomForestClassifier(**FOREST_PARAMS, n_jobs=-1, random_state=seed)
    forest.fit(x_train, y_train)
    forest.n_jobs = 1  # predict_proba in the check and re-exports need no pool
    timing["fit_s"] = round(time.perf_counter() - mark, 3)
    train_acc = _accuracy(forest, x_train, y_train)
    val_acc = _accuracy(forest, x_val, y_val) if len(y_val) else None
    selection = "val_accuracy" if val_acc is not None else "train_accuracy"
    text = f"fit  train_acc {train_acc:.4f}"
    if val_acc is not None:
        text += f"  val_acc {val_acc:.4f}"
    line(text + f"  {timing['fit_s']:.1f}s")

    ctx.check_cancelled()
    ctx.progress("export", 0.0, "exporting ONNX", force=True)
    mark = time.perf_counter()
    models_root = Path(models_root)
    with staging_folder(models_root) as stage:
        torch.set_num_threads(1)
        try:
            export_forest(bank, forest, mean, std, num_classes, stage / GRAPH_FILE)
            check = check_forest_export(bank, forest, mean, std, num_classes,
                                        stage / GRAPH_FILE)  # fmt: skip
        finally:
            torch.set_num_threads(threads)
        line(f"# onnx check: max |probability difference| {check['max_abs_diff']:.3g} "
             "(onnxruntime vs sklearn predict_proba on the graph's features)")  # fmt: skip
        _save_forest(stage / FOREST_FILE, forest, bank, num_classes)
        timing["export_s"] = round(time.perf_counter() - mark, 3)
        seconds = round(time.perf_counter() - started, 3)
        row = {
            "epoch": 1, "loss": _log_loss(forest, x_train, y_train),
            "train_accuracy": train_acc, "val_accuracy": val_acc, "val_loss": None,
            "lr": 0.0, "seconds": timing["fit_s"],
        }  # fmt: skip
        train_metrics = {
            "history": [row], "best_epoch": 1, "best_val_accuracy": val_acc,
            "selection": selection, "seconds": seconds, "timing": timing,
        }  # fmt: skip
        (stage / METRICS_FILE).write_text(json.dumps({"train": train_metrics}, indent=2) + "\n")
        (stage / TRAIN_LOG).write_text("\n".join(log) + "\n")
        names = {c["value"]: c["name"] for c in classes}
        labeled = summary["labeled_pixels"]
        draft = ModelCard(
            name=version_name(project, 1), project=project, version=1,
            created=dt.datetime.now(dt.UTC), classes=classes, bands=list(bands),
            input={"name": INPUT, "dtype": "float32", "layout": "NCHW"},
            outputs={name: name for name in OUTPUTS},
            normalization={"mean": mean, "std": std},
            tile={"size": max(tile_size, 2 * bank.seamless_margin + 2),
                  "halo": bank.seamless_margin, "multiple": 1},
            architecture={"name": ARCH, "params": architecture_params(bank, forest)},
            training=dict(
                seed=seed, device="cpu", selection=selection,
                scenes=[sc["name"] for sc in summary["scenes"]],
                labeled_pixels={
                    split: {names.get(int(k), str(k)): n for k, n in labeled.get(split, {}).items()}
                    for split in ("train", "val")
                },
                note=(f"instant model kind (random forest on a filter bank): "
                      f"{', '.join(NET_ONLY)} apply to nets only and were ignored; "
                      f"class_weights: the forest balances classes itself"),
            ),
            onnx_check=OnnxCheck(**check),
            preprocessing=preprocessing,
        )  # fmt: skip

        def write_versioned(folder: Path, version: int) -> None:
            created = dt.datetime.now(dt.UTC).replace(microsecond=0)
            write_card(
                folder,
                draft.model_copy(
                    update={
                        "name": version_name(project, version),
                        "version": version,
                        "created": created,
                    }
                ),
            )

        ctx.check_cancelled()
        version = publish(stage, models_root, write_versioned)
    ctx.progress("export", 1.0, f"model version {version}", force=True)
    model_dir = models_root / str(version)
    ctx.log.info("model %s written to %s", version, model_dir)
    return {
        "model": version_name(project, version),
        "version": version,
        "model_dir": str(model_dir),
        "epochs_run": 1,
        "best_epoch": 1,
        "best_val_accuracy": val_acc,
        "history": [row],
        "onnx_max_abs_diff": check["max_abs_diff"],
        "seconds": round(time.perf_counter() - started, 3),
        "timing": timing,
    }


def architecture_params(bank: FilterBank, forest: Any) -> dict[str, Any]:
    return {
        **{k: v for k, v in FOREST_PARAMS.items()},
        "sigmas": list(bank.sigmas),
        "features": bank.num_features,
        "classes_present": [int(v) for v in forest.classes_],
    }


def _features(
    bank: FilterBank,
    chips: Any,
    labels: np.ndarray,
    mean: list[float],
    std: list[float],
    cap: int,
    rng: np.random.Generator,
    ctx: JobContext,
    start: float,
    span: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Filter bank features [M, F] and labels [M] of a class-balanced sample of labeled pixels.

    Each chip is filtered on its own (the dataset keeps chips, not scenes), so
    context beyond a chip's edge is its replicated edge, as at a scene border.
    """
    n, h, w = labels.shape
    flat = labels.reshape(-1)
    picked = []
    for value in np.unique(flat):
        if value in (0, 255):  # unlabeled, ignored
            continue
        where = np.flatnonzero(flat == value)
        if len(where) > cap:
            where = rng.choice(where, cap, replace=False)
        picked.append(where)
    if not picked:
        return np.zeros((0, bank.num_features), np.float32), np.zeros(0, np.int64)
    index = np.sort(np.concatenate(picked))
    chip, rows, cols = np.unravel_index(index, (n, h, w))
    m = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)
    out = np.empty((len(index), bank.num_features), np.float32)
    bounds = np.searchsorted(chip, np.arange(n + 1))
    for i in range(n):
        a, b = bounds[i], bounds[i + 1]
        if a == b:
            continue
        ctx.check_cancelled()
        image = (torch.from_numpy(chips.image[i]) - m) / s
        out[a:b] = sparse_features(
            bank, image, torch.from_numpy(rows[a:b]), torch.from_numpy(cols[a:b])
        ).numpy()
        ctx.progress(STAGE, start + span * (i + 1) / n, f"features: chip {i + 1}/{n}")
    return out, flat[index].astype(np.int64)


def _accuracy(forest: Any, x: np.ndarray, y: np.ndarray) -> float:
    return float((forest.predict(x) == y).mean())


def _log_loss(forest: Any, x: np.ndarray, y: np.ndarray) -> float:
    proba = forest.predict_proba(x)
    col = np.searchsorted(forest.classes_, y)
    return float(-np.log(np.clip(proba[np.arange(len(y)), col], 1e-7, 1.0)).mean())


def _save_forest(path: Path, forest: Any, bank: FilterBank, num_classes: int) -> None:
    import joblib
    import sklearn

    joblib.dump(
        {"forest": forest, "sigmas": list(bank.sigmas), "in_channels": bank.in_channels,
         "num_classes": num_classes, "sklearn": sklearn.__version__},
        path,
    )  # fmt: skip


def reexport_forest(model_dir: str | Path, *, fp16: bool = False) -> dict[str, Any]:
    """A forest version's graph exported again from forest.joblib, published as a NEW version.

    Same contract as sipd.training.onnx_export.reexport_model; fp16 is refused
    (a forest graph's trees compare float32 thresholds, there is no half variant).
    """
    import joblib

    source = Path(model_dir)
    source_name = name_of_folder(source)
    if fp16:
        raise FailedPrecondition(
            f"{source_name} is a forest model: it has no fp16 variant; export it without --fp16"
        )
    if not (source / FOREST_FILE).is_file():
        raise FailedPrecondition(
            f"{source_name} has no {FOREST_FILE} in {source}; only a forest trained by sipd "
            "(which keeps its fitted forest) can be exported again"
        )
    card = read_card(source)
    saved = joblib.load(source / FOREST_FILE)
    forest = saved["forest"]
    bank = FilterBank(int(saved["in_channels"]), tuple(saved["sigmas"])).eval()
    num_classes = len(card.classes)
    mean, std = list(card.normalization.mean), list(card.normalization.std)
    project_root = source.parent
    project = project_root.name
    with staging_folder(project_root) as stage:
        export_forest(bank, forest, mean, std, num_classes, stage / GRAPH_FILE)
        check = OnnxCheck(**check_forest_export(bank, forest, mean, std, num_classes,
                                                stage / GRAPH_FILE))  # fmt: skip
        shutil.copyfile(source / FOREST_FILE, stage / FOREST_FILE)
        if (source / TRAIN_LOG).is_file():
            shutil.copyfile(source / TRAIN_LOG, stage / TRAIN_LOG)
        train = read_training_metrics(source)
        if train is not None:
            (stage / METRICS_FILE).write_text(json.dumps({"train": train}, indent=2) + "\n")

        def write_versioned(folder: Path, version: int) -> None:
            write_card(folder, card.model_copy(update={
                "name": version_name(project, version), "project": project, "version": version,
                "created": dt.datetime.now(dt.UTC).replace(microsecond=0),
                "derived_from": source_name, "onnx_check": check, "fp16": None,
            }))  # fmt: skip

        version = publish(stage, project_root, write_versioned)
    return derived_version(project_root, version, source_name, check.max_abs_diff)
