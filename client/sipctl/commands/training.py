"""sipctl dataset | train | test | predict | models."""

from __future__ import annotations

import argparse
from typing import Any

from sipapi.v1 import dataset_pb2, prediction_pb2, training_pb2

from sipctl.app import App, absolute
from sipctl.client import CliError
from sipctl.commands.labeling import counts_by_split
from sipctl.render import table, to_plain


def register(sub: Any, job_options: argparse.ArgumentParser) -> None:
    dataset = sub.add_parser("dataset", help="prepare training chips and normalization statistics")
    dsub = dataset.add_subparsers(dest="dataset_command", required=True, metavar="COMMAND")
    p = dsub.add_parser(
        "prepare", parents=[job_options], help="rasterize ROIs and cut chips (a job)"
    )
    p.add_argument("project")
    p.add_argument("--chip-size", type=int, default=0, help="chip edge in pixels (default 128)")
    p.set_defaults(func=dataset_prepare)
    p = dsub.add_parser("show", help="the prepared dataset")
    p.add_argument("project")
    p.set_defaults(func=dataset_show)

    p = sub.add_parser(
        "train",
        parents=[job_options],
        help="train a net; per-epoch loss and accuracy; the result is a model version",
    )
    p.add_argument("project")
    p.add_argument(
        "--arch",
        default="",
        help="unet (default), patchcnn, spectral, or forest (a random forest on a filter "
        "bank, trained in seconds; ignores epochs, batch size, lr, augment, patience)",
    )
    p.add_argument("--epochs", type=int, default=0, help="maximum epochs (default 15)")
    p.add_argument(
        "--steps-per-epoch",
        type=int,
        default=None,
        help="optimizer steps per epoch at most (default 12; 0 = one pass over the chips)",
    )
    p.add_argument(
        "--no-prior-correction",
        action="store_true",
        help="keep the labels' class mix instead of shifting the output to the scenes' "
        "class priors (estimated after training)",
    )
    p.add_argument("--batch-size", type=int, default=0, help="chips per batch (default 16)")
    p.add_argument("--lr", type=float, default=0.0, help="learning rate (default 0.002)")
    p.add_argument(
        "--seed", type=int, default=None, help="random seed: the same seed repeats a run"
    )
    p.add_argument(
        "--class-weights", default="", help="loss weight per class, comma-separated, or 'balanced'"
    )
    p.add_argument("--no-augment", action="store_true", help="no flip/rot90 augmentation")
    p.add_argument(
        "--patience",
        type=int,
        default=None,
        help="epochs without val improvement before stopping (default 8; 0 = never)",
    )
    p.add_argument(
        "--chip-size", type=int, default=0, help="chip edge when (re)preparing (default 128)"
    )
    p.set_defaults(func=train)

    p = sub.add_parser(
        "test",
        parents=[job_options],
        help="accuracy on the test ROIs: OA, kappa, per-class figures, confusion matrix",
    )
    p.add_argument("project")
    p.add_argument("--model", default="latest", help="model version (default latest)")
    p.add_argument("--scene", action="append", default=[], help="only this scene (repeatable)")
    p.set_defaults(func=test)

    p = sub.add_parser("predict", parents=[job_options], help="label maps of whole scenes")
    p.add_argument("project")
    p.add_argument("inputs", nargs="+", help="rasters to classify")
    p.add_argument(
        "-o",
        "--output",
        required=True,
        help="label map file (one input) or an existing folder (several)",
    )
    p.add_argument("--model", default="latest", help="model version (default latest)")
    p.add_argument(
        "--confidence",
        nargs="?",
        const="-",
        default="",
        help="also write a confidence map (optionally to this file)",
    )
    p.add_argument(
        "--probabilities", action="store_true", help="also write per-class probabilities"
    )
    p.add_argument(
        "--uncertainty",
        nargs="?",
        const="-",
        default="",
        metavar="PATH",
        help="also write an uncertainty map, normalized entropy H(p)/ln K as uint8 0..255 "
        "(optionally to this file; default {output stem}_uncertainty.tif)",
    )
    p.add_argument("--quicklook", action="store_true", help="also write a PNG quicklook")
    p.add_argument(
        "--background-mask", default="", help="raster or vector file of pixels never to classify"
    )
    p.add_argument("--tile-size", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=0)
    p.add_argument(
        "--recipe",
        default="",
        help="raw products among the inputs are preprocessed with this recipe "
        "(default: the one the model's training scenes were made with)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.set_defaults(func=predict)

    models = sub.add_parser("models", help="list, show and delete model versions")
    msub = models.add_subparsers(dest="models_command", required=True, metavar="COMMAND")
    p = msub.add_parser("list", help="a project's model versions, newest first")
    p.add_argument("project")
    p.set_defaults(func=models_list)
    p = msub.add_parser("show", help="one model version")
    p.add_argument("project")
    p.add_argument("version", nargs="?", default="latest")
    p.set_defaults(func=models_show)
    p = msub.add_parser("export", parents=[job_options],
                        help="re-export a version's checkpoint to ONNX as a new version (a job)")
    p.add_argument("project")
    p.add_argument("version")
    p.add_argument("--fp16", action="store_true", help="also write model.fp16.onnx (for CUDA)")
    p.set_defaults(func=models_export)
    p = msub.add_parser("delete", help="delete one model version folder")
    p.add_argument("project")
    p.add_argument("version")
    p.set_defaults(func=models_delete)


def _model(project: str, version: str) -> str:
    return f"projects/{project}/models/{version or 'latest'}"


def dataset_prepare(app: App) -> int:
    req = dataset_pb2.PrepareDatasetRequest(
        parent=f"projects/{app.args.project}", chip_size=app.args.chip_size
    )
    job = app.client.call(app.client.datasets.PrepareDataset, req)

    def human(r: Any) -> None:
        print(f"{r.chips} chip(s) of {r.chip_size} px from {len(r.scenes)} scene(s)")
        _print_counts(counts_by_split(r.labeled_pixels))
        print(
            "normalization mean "
            + ", ".join(f"{m:.4g}" for m in r.normalization_mean)
            + "; std "
            + ", ".join(f"{s:.4g}" for s in r.normalization_std)
        )

    return app.run_job(job, human)


def _print_counts(counts: dict[str, dict[str, int]]) -> None:
    splits = [s for s in ("train", "val", "test") if s in counts]
    classes = sorted({c for per in counts.values() for c in per})
    table([[c, *[counts[s].get(c, 0) for s in splits]] for c in classes], ["CLASS", *splits])


def dataset_show(app: App) -> int:
    d = app.client.call(
        app.client.datasets.GetDataset,
        dataset_pb2.GetDatasetRequest(name=f"projects/{app.args.project}/dataset"),
    )

    def human() -> None:
        print(
            f"{d.name}: {d.chips} chip(s) of {d.chip_size} px"
            + (" (STALE: ROIs changed since)" if d.stale else "")
        )
        _print_counts(counts_by_split(d.labeled_pixels))

    app.emit(to_plain(d), human)
    return 0


def train(app: App) -> int:
    a = app.args
    req = training_pb2.TrainRequest(
        parent=f"projects/{a.project}",
        arch=a.arch,
        epochs=a.epochs,
        batch_size=a.batch_size,
        learning_rate=a.lr,
        no_augment=a.no_augment,
        chip_size=a.chip_size,
    )
    if a.seed is not None:
        req.seed = a.seed
    if a.patience is not None:
        req.patience = a.patience
    if a.steps_per_epoch is not None:
        req.steps_per_epoch = a.steps_per_epoch
    req.no_prior_correction = a.no_prior_correction
    if a.class_weights == "balanced":
        req.balanced_class_weights = True
    elif a.class_weights:
        try:
            req.class_weights.extend(float(w) for w in a.class_weights.split(","))
        except ValueError:
            raise CliError(
                f"--class-weights {a.class_weights!r}: give numbers like 1,2.5 or 'balanced'"
            ) from None
    job = app.client.call(app.client.training.Train, req)

    def human(r: training_pb2.TrainResult) -> None:
        table(
            [
                [h.epoch, f"{h.loss:.4f}", f"{h.train_accuracy:.4f}", f"{h.val_accuracy:.4f}"]
                for h in r.history
            ],
            ["EPOCH", "LOSS", "TRAIN_ACC", "VAL_ACC"],
        )
        print(
            f"\n{r.model}: best epoch {r.best_epoch} (val accuracy {r.best_val_accuracy:.4f}), "
            f"{r.epochs_run} epoch(s) in {r.seconds:.1f} s; "
            f"ONNX check max |diff| {r.onnx_max_abs_diff:.2e}"
        )

    return app.run_job(job, human)


def print_report(r: training_pb2.Model | Any) -> None:
    print(f"{r.model}: {r.pixels} test pixel(s) on {len(r.scenes)} scene(s)")
    print(f"overall accuracy {r.overall_accuracy:.4f}   kappa {r.kappa:.4f}\n")
    table(
        [
            [
                c.name,
                f"{c.precision:.4f}",
                f"{c.recall:.4f}",
                f"{c.f1:.4f}",
                f"{c.iou:.4f}",
                c.support,
            ]
            for c in r.per_class
        ],
        ["CLASS", "PRECISION", "RECALL", "F1", "IOU", "SUPPORT"],
    )
    print("\nconfusion matrix (rows: reference, columns: predicted)")
    table(
        [[name, *row.counts] for name, row in zip(r.class_names, r.confusion_matrix, strict=False)],
        ["", *r.class_names],
    )


def test(app: App) -> int:
    req = training_pb2.TestRequest(
        model=_model(app.args.project, app.args.model), scenes=app.args.scene
    )
    job = app.client.call(app.client.training.Test, req)
    return app.run_job(job, print_report)


def predict(app: App) -> int:
    a = app.args
    req = prediction_pb2.PredictRequest(
        model=_model(a.project, a.model),
        inputs=[absolute(p) for p in a.inputs],
        output=absolute(a.output),
        confidence=bool(a.confidence),
        confidence_path=absolute(a.confidence) if a.confidence not in ("", "-") else "",
        probabilities=a.probabilities,
        quicklook=a.quicklook,
        background_mask=absolute(a.background_mask),
        tile_size=a.tile_size,
        batch_size=a.batch_size,
        overwrite=a.overwrite,
        recipe=a.recipe,
        uncertainty=bool(a.uncertainty),
        uncertainty_path=absolute(a.uncertainty) if a.uncertainty not in ("", "-") else "",
    )
    job = app.client.call(app.client.prediction.Predict, req)

    def human(r: Any) -> None:
        for s in r.scenes:
            print(
                f"{s.output}: {s.width} x {s.height} in {s.seconds:.1f} s ({s.mpx_per_s:.2f} Mpx/s)"
            )
            for extra in (
                s.confidence, s.probabilities, s.uncertainty, s.quicklook, s.preprocessed
            ):
                if extra:
                    print(f"  {extra}")
            if s.HasField("mean_uncertainty"):
                print(
                    f"  uncertainty: mean {s.mean_uncertainty:.3f}, "
                    f"{100 * s.uncertain_share:.1f}% of pixels above 0.5"
                )
            if s.recipe:
                print(f"  preprocessed with recipe {s.recipe}")
            for warning in s.warnings:
                print(f"  warning: {warning}")
            rows = [
                [name, n, f"{s.class_area_m2.get(name, 0.0) / 1e6:.3f}"]
                for name, n in sorted(s.class_pixels.items())
            ]
            table(rows, ["CLASS", "PIXELS", "AREA_KM2"])
        print(f"model {r.model} on {r.provider}")

    return app.run_job(job, human)


def models_list(app: App) -> int:
    resp = app.client.call(
        app.client.training.ListModels,
        training_pb2.ListModelsRequest(parent=f"projects/{app.args.project}", page_size=1000),
    )
    app.emit(
        {"models": [to_plain(m) for m in resp.models]},
        lambda: table(
            [
                [
                    m.version,
                    m.arch,
                    f"{m.training.best_val_accuracy:.4f}",
                    f"{m.test.overall_accuracy:.4f}" if m.HasField("test") else "-",
                    m.create_time.ToJsonString()[:19],
                    m.path,
                ]
                for m in resp.models
            ],
            ["VERSION", "ARCH", "VAL_ACC", "TEST_OA", "CREATED", "PATH"],
        ),
    )
    return 0


def models_show(app: App) -> int:
    m = app.client.call(
        app.client.training.GetModel,
        training_pb2.GetModelRequest(name=_model(app.args.project, app.args.version)),
    )

    def human() -> None:
        print(f"{m.name} ({m.arch}) at {m.path}")
        print(
            f"classes: {', '.join(c.name for c in m.classes)}; bands: {', '.join(m.bands)}; "
            f"tile {m.tile_size} px, halo {m.tile_halo} px"
        )
        if m.recipe:
            print(f"scenes made with recipe {m.recipe} (raw products given to predict are too)")
        print(
            f"training: {m.training.epochs_run} epoch(s), best {m.training.best_epoch} "
            f"(val accuracy {m.training.best_val_accuracy:.4f})"
        )
        if m.HasField("test"):
            print()
            print_report(m.test)

    app.emit(to_plain(m), human)
    return 0


def models_export(app: App) -> int:
    req = training_pb2.ExportModelRequest(
        name=_model(app.args.project, app.args.version), fp16=app.args.fp16
    )
    job = app.client.call(app.client.training.ExportModel, req)

    def human(r: Any) -> None:
        print(
            f"{r.source_model} re-exported as {r.model} (the source version is unchanged): "
            f"wrote {', '.join(r.files)}; max |diff| vs torch {r.max_abs_diff:.2e}"
        )

    return app.run_job(job, human)


def models_delete(app: App) -> int:
    name = _model(app.args.project, app.args.version)
    app.client.call(app.client.training.DeleteModel, training_pb2.DeleteModelRequest(name=name))
    app.emit({"deleted": name}, lambda: print(f"deleted {name}"))
    return 0
