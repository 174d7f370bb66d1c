"""Sparse-click quality benchmark: how well each method classifies every pixel of held-out
images from a few clicks per class on the training images (docs/quality.md).

    python -m sipd.bench.quality --dataset dubai|bbbc|generated|folder [--data DIR]
        [--clicks 150] [--methods forest-ref,instant,sparse,full] [--seed 0]
        [--work bench-data/quality] [--max-train N] [--max-test N] [--json PATH]

Methods, on the same clicks and images:
- forest-ref: ilastik-style filter bank + random forest, in this process
  (sipd.bench.quality_reference; the independent reference).
- instant: sipd's instant model through the daemon (TrainRequest.arch = "forest").
- sparse: sipd's default net through the daemon, trained with no options (`sipctl train P`).
- full: the same default training on the full masks of the same train images (upper bound).

The daemon methods run through a sipd started here (sipd.bench.quality_daemon): one
project per method, scenes added, ROIs imported, masks computed, dataset prepared, a model
trained, then every test image predicted (a predict job writing label map COGs), which is
scored against the truth. Writes a JSON file with every figure and prints a markdown
table (one row per method). `sipctl bench quality` runs this in a child process.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import signal
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from sipd.bench.quality_data import (
    DATASETS,
    SHARED_NAMES,
    Click,
    Dataset,
    clicks_geojson,
    load_dataset,
    mask_geojson,
    read_raster,
    read_truth,
    sample_clicks,
    write_json,
)
from sipd.bench.run_record import load_average, machine

METHODS = ("forest-ref", "instant", "sparse", "full")
DAEMON_METHODS = {"instant": "forest", "sparse": "", "full": ""}  # method -> TrainRequest.arch
DATASETS_ENV = "SIPD_BENCH_DATASETS"  # a folder holding dubai_aerial_hitl/, bbbc039_.../

Say = Callable[[str], None]


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# -- scoring -----------------------------------------------------------------------------


def confusion(pred: np.ndarray, truth: np.ndarray, classes: Sequence[int]) -> np.ndarray:
    """K x (K + 1) counts over the pixels with truth in `classes` (truth 0 = ignore):
    rows = truth class, columns = predicted class, the last column = predicted anything
    else (nodata 0, an unknown value): always wrong."""
    classes = [int(c) for c in classes]
    k = len(classes)
    lut = np.full(256, -1, np.int64)
    lut[classes] = np.arange(k)
    t = lut[truth.astype(np.uint8).ravel()]
    p = lut[np.clip(pred, 0, 255).astype(np.uint8).ravel()]
    keep = t >= 0
    p = np.where(p >= 0, p, k)[keep]
    return np.bincount(t[keep] * (k + 1) + p, minlength=k * (k + 1)).reshape(k, k + 1)


def scores_from_confusion(cm: np.ndarray, classes: Sequence[int]) -> dict[str, Any]:
    k = len(classes)
    n = int(cm.sum())
    tp = np.diag(cm[:, :k]).astype(np.float64)
    support = cm.sum(axis=1).astype(np.float64)  # truth pixels per class
    predicted = cm[:, :k].sum(axis=0).astype(np.float64)  # predicted pixels per class
    fp, fn = predicted - tp, support - tp
    oa = float(tp.sum() / n) if n else 0.0
    pe = float((support * predicted).sum() / n**2) if n else 0.0
    kappa = (oa - pe) / (1 - pe) if pe < 1 else (1.0 if oa == 1 else 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(2 * tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), 0.0)
        iou = np.where(tp + fp + fn > 0, tp / (tp + fp + fn), 0.0)
    # mIoU over the classes that occur in the truth or the prediction of these pixels.
    seen = (support + predicted) > 0
    return {
        "pixels": n,
        "overall_accuracy": oa,
        "kappa": float(kappa),
        "mean_iou": float(iou[seen].mean()) if seen.any() else 0.0,
        "per_class": [
            {
                "value": int(c),
                "f1": float(f1[i]),
                "iou": float(iou[i]),
                "support": int(support[i]),
                "predicted": int(predicted[i]),
            }
            for i, c in enumerate(classes)
        ],  # fmt: skip
        "unclassified": int(cm[:, k].sum()),
        "confusion_matrix": cm.astype(int).tolist(),
    }


def score(pred: np.ndarray, truth: np.ndarray, classes: Sequence[int]) -> dict[str, Any]:
    """Overall accuracy, Cohen's kappa, mean IoU and per-class F1/IoU of `pred` against
    `truth` over every pixel whose truth is one of `classes` (0 = ignore). numpy only."""
    return scores_from_confusion(confusion(pred, truth, classes), classes)


# -- clicks ------------------------------------------------------------------------------


def draw_clicks(ds: Dataset, n: int, seed: int) -> dict[str, list[Click]]:
    """Scene name -> its clicks, for every train image. Seeded by (seed, the image's
    position among the dataset's train images), so an image gets the same clicks whatever
    --max-train picks around it."""
    return {
        item.name: sample_clicks(item.truth, n, seed=seed, image_index=item.index)
        for item in ds.items
        if item.split == "train"
    }


def click_counts(clicks: dict[str, list[Click]], classes: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {"total": 0, "train": 0, "val": 0, "per_class": {}}
    for cs in clicks.values():
        for c in cs:
            out["total"] += 1
            out[c.split] += 1
            name = classes[c.value - 1]
            out["per_class"][name] = out["per_class"].get(name, 0) + 1
    return out


# -- forest-ref --------------------------------------------------------------------------


def run_forest_ref(
    ds: Dataset, clicks: dict[str, list[Click]], seed: int, say: Say
) -> dict[str, Any]:
    from sipd.bench.quality_reference import ForestReference

    ref = ForestReference(seed=seed)
    say("forest-ref: features of the train clicks and the random forest ...")
    t0 = time.perf_counter()
    samples = []
    for item in ds.side("train"):
        cs = clicks[item.name]
        samples.append((
            read_raster(item.scene),
            np.array([c.row for c in cs], np.int64),
            np.array([c.col for c in cs], np.int64),
            np.array([c.value for c in cs], np.int64),
        ))  # fmt: skip
    ref.fit(samples)
    del samples
    train_s = time.perf_counter() - t0
    say(f"  trained in {train_s:.1f} s; predicting {len(ds.side('test'))} test image(s) ...")
    preds, seconds = {}, {}
    for item in ds.side("test"):
        t1 = time.perf_counter()
        preds[item.name] = ref.predict(read_raster(item.scene))
        seconds[item.name] = time.perf_counter() - t1
    return {
        "train_seconds": train_s,
        "train_detail": {k: round(v, 3) for k, v in ref.seconds.items()},
        "predictions": preds,
        "predict_seconds_per_image": seconds,
        "predict_seconds": sum(seconds.values()),
        "describe": ref.describe(),
    }


# -- daemon methods ----------------------------------------------------------------------


class Skipped(Exception):
    """A method that cannot run here (e.g. an architecture this sipd does not have)."""


def _job_seconds(job: dict[str, Any]) -> float:
    """A job's wall time from its timestamps (as `sipctl --json jobs show` gives them)."""
    if "start_time" not in job or "end_time" not in job:
        return 0.0
    start = datetime.fromisoformat(job["start_time"].replace("Z", "+00:00"))
    end = datetime.fromisoformat(job["end_time"].replace("Z", "+00:00"))
    return (end - start).total_seconds()


def run_daemon_method(
    daemon: Any,
    method: str,
    ds: Dataset,
    clicks: dict[str, list[Click]],
    work: Path,
    say: Say,
    project: str = "",
) -> dict[str, Any]:
    """One project for `method` (named `project`, default the method's name): scenes, ROIs
    (clicks, or the full masks for `full`), masks, prepare, train, then predict every test
    image; returns the label maps' arrays. Every step is the sipctl command a user would
    type (`daemon.sipctl`)."""
    from sipd.bench.quality_daemon import SipctlError

    sipctl = daemon.sipctl
    pid = project or method.replace("-", "")
    sipctl("project", "create", pid, "--classes", ",".join(ds.classes),
           "--description", f"bench quality {ds.name} {method}")  # fmt: skip
    rois_dir = work / "rois" / ds.name / pid
    t0 = time.perf_counter()
    for item in ds.side("train"):
        sipctl("scene", "add", pid, str(item.scene), "--name", item.name)
        if method == "full":
            doc = mask_geojson(item.truth, ds.classes)
        else:
            doc = clicks_geojson(clicks[item.name], ds.classes)
        path = write_json(rois_dir / f"{item.name}.geojson", doc)
        sipctl("roi", "import", pid, str(path), "--scene", item.name, "--replace")
    import_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    counts = sipctl("mask", pid)["counts"]
    masks_s = time.perf_counter() - t0
    labeled = {
        split: sum(n for c, n in counts.get(split, {}).items() if c != "background")
        for split in ("train", "val")
    }
    say(f"  {method}: {labeled['train']} train + {labeled['val']} val labeled pixels; "
        "preparing the dataset ...")  # fmt: skip
    prepared = daemon.job("dataset", "prepare", pid)
    arch = DAEMON_METHODS[method]
    say(f"  {method}: training ({arch or 'the default net'}) ...")
    try:
        # No options but the method's architecture: what `sipctl train P` sends.
        trained = daemon.job("train", pid, *(["--arch", arch] if arch else []))
    except SipctlError as exc:
        if arch and "INVALID_ARGUMENT" in exc.message and arch in exc.message:
            raise Skipped(f"this sipd has no --arch {arch} yet ({exc.message})") from None
        raise
    result = trained["train"]
    train_s = _job_seconds(prepared) + _job_seconds(trained)
    say(f"  {method}: {result['model']} in {train_s:.1f} s (prepare + train); predicting ...")
    out = work / "out" / ds.name / pid
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    tests = ds.side("test")
    predicted = daemon.job(
        "predict", pid, *[str(i.scene) for i in tests], "-o", str(out),
        "--model", str(result["version"]), "--overwrite",
    )  # fmt: skip
    preds, seconds = {}, {}
    for item, scene in zip(tests, predicted["predict"]["scenes"], strict=True):
        preds[item.name] = read_truth(Path(scene["output"]))
        seconds[item.name] = scene["seconds"]
    return {
        "train_seconds": train_s,
        "train_detail": {
            "import_rois_s": round(import_s, 3),
            "masks_s": round(masks_s, 3),
            "prepare_job_s": round(_job_seconds(prepared), 3),
            "train_job_s": round(_job_seconds(trained), 3),
            "chips": prepared["prepare"]["chips"],
            "epochs_run": result["epochs_run"],
            "best_epoch": result["best_epoch"],
            "best_val_accuracy": round(result["best_val_accuracy"], 4),
            "model": result["model"],
            "arch": arch or "(default)",
        },
        "labeled_pixels": labeled,
        "predictions": preds,
        "predict_seconds_per_image": seconds,
        "predict_seconds": _job_seconds(predicted),
        "provider": predicted["predict"].get("provider", ""),
    }


# -- the run -----------------------------------------------------------------------------


def default_data(name: str) -> Path | None:
    if name not in SHARED_NAMES:
        return None
    env = os.environ.get(DATASETS_ENV)
    root = Path(env) if env else Path(__file__).resolve().parents[3] / "shared" / "datasets"
    return root / SHARED_NAMES[name]


def summarize(name: str, result: dict[str, Any], ds: Dataset, classes: list[int]) -> dict[str, Any]:
    tests = ds.side("test")
    total = np.zeros((len(classes), len(classes) + 1), np.int64)
    per_image = []
    for item in tests:
        cm = confusion(result["predictions"][item.name], item.truth, classes)
        total += cm
        s = scores_from_confusion(cm, classes)
        per_image.append({
            "image": item.name,
            "megapixels": round(item.megapixels, 4),
            "overall_accuracy": s["overall_accuracy"],
            "kappa": s["kappa"],
            "mean_iou": s["mean_iou"],
            "f1": {ds.classes[c["value"] - 1]: c["f1"] for c in s["per_class"]},
            "predict_seconds": round(result["predict_seconds_per_image"][item.name], 3),
        })  # fmt: skip
    overall = scores_from_confusion(total, classes)
    for c in overall["per_class"]:
        c["name"] = ds.classes[c["value"] - 1]
    mpx = sum(i.megapixels for i in tests)
    out = {
        "method": name,
        **{k: overall[k] for k in ("overall_accuracy", "kappa", "mean_iou", "pixels")},
        "per_class": overall["per_class"],
        "unclassified": overall["unclassified"],
        "confusion_matrix": overall["confusion_matrix"],
        "train_seconds": round(result["train_seconds"], 3),
        "train_detail": result["train_detail"],
        "predict_seconds": round(result["predict_seconds"], 3),
        "predict_megapixels": round(mpx, 4),
        "predict_s_per_mpx": round(result["predict_seconds"] / mpx, 4) if mpx else None,
        "per_image": per_image,
    }
    for key in ("labeled_pixels", "provider", "describe"):
        if key in result:
            out[key] = result[key]
    return out


def _suggest(d: Any, ds: Dataset, a: argparse.Namespace, work: Path, classes: list[int],
             say: Say) -> dict[str, Any]:
    from sipd.bench.quality_suggest import run_suggest_experiment

    def train_and_score(project: str, clicks: dict[str, list[Click]]) -> dict[str, Any]:
        r = run_daemon_method(d, "instant", ds, clicks, work, say, project=project)
        return summarize(project, r, ds, classes)

    return run_suggest_experiment(
        d, ds, start=a.suggest_start, regions=a.suggest_regions, per_region=a.suggest_clicks,
        size=a.suggest_size, seed=a.seed, train_and_score=train_and_score, say=say,
    )


def markdown(report: dict[str, Any]) -> str:
    ds = report["dataset"]
    lines = [
        f"Sparse-click quality on `{ds['name']}`: {ds['train_images']} train / "
        f"{ds['test_images']} test image(s) ({ds['test_megapixels']:.2f} Mpx scored), "
        f"{report['clicks_per_class']} clicks per class and train image "
        f"({report['clicks']['total']} clicks: {report['clicks']['train']} train, "
        f"{report['clicks']['val']} val); {report['machine']['cores']} core(s), load "
        f"{report['load_average_before'][0]:.2f} -> {report['load_average_after'][0]:.2f}",
        "",
        "| method | labeled px | OA | kappa | mIoU | train s | predict s | predict s/Mpx |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["methods"]:
        if "skipped" in r:
            lines.append(f"| {r['method']} | skipped: {r['skipped']} | | | | | | |")
            continue
        lp = r.get("labeled_pixels")
        labeled = lp["train"] + lp["val"] if lp else report["clicks"]["total"]
        lines.append(
            f"| {r['method']} | {labeled:,} | {r['overall_accuracy']:.4f} | {r['kappa']:.4f} | "
            f"{r['mean_iou']:.4f} | {r['train_seconds']:.1f} | {r['predict_seconds']:.1f} | "
            f"{r['predict_s_per_mpx']:.2f} |"
        )
    lines += per_image_rows([r for r in report["methods"] if "skipped" not in r])
    if report.get("suggest"):
        from sipd.bench.quality_suggest import markdown_rows

        lines += ["", *markdown_rows(report["suggest"])]
    return "\n".join(lines)


def per_image_rows(methods: list[dict[str, Any]]) -> list[str]:
    """OA of every test image by method: one image unlike the train side (BBBC's
    E05_s2, a debris streak whose nuclei are not annotated) moves the total by points."""
    if not methods:
        return []
    names = [i["image"] for i in methods[0]["per_image"]]
    oa = {m["method"]: {i["image"]: i["overall_accuracy"] for i in m["per_image"]}
          for m in methods}
    lines = ["", "| test image | " + " | ".join(oa) + " |",
             "|---|" + "---:|" * len(oa)]
    for name in names:
        lines.append(f"| {name} | " + " | ".join(f"{v[name]:.4f}" for v in oa.values()) + " |")
    return lines


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m sipd.bench.quality", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--dataset", required=True, choices=DATASETS)
    p.add_argument(
        "--data",
        default="",
        help=f"the dataset folder (default: ${DATASETS_ENV}/<name>, "
        "else ../shared/datasets/<name> beside the repo)",
    )
    p.add_argument("--split-file", default="", help="folder: stem -> train|test")
    p.add_argument("--clicks", type=int, default=150)
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work", default="bench-data/quality")
    p.add_argument("--max-train", type=int, default=0)
    p.add_argument("--max-test", type=int, default=0)
    p.add_argument("--json", default="", help="default: WORK/results/DATASET-TIME.json")
    p.add_argument("--generated-size", type=int, default=512)
    p.add_argument("--generated-scenes", type=int, default=25)
    p.add_argument("--generated-test", type=int, default=5)
    p.add_argument("--generated-classes", type=int, default=3)
    p.add_argument("--daemon-setting", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="a setting of the benchmark's daemon, e.g. training.epochs=3 (quick runs; "
                   "the train requests stay without options)")  # fmt: skip
    p.add_argument("--keep-daemon", action="store_true", help="keep the daemon's data dir")
    p.add_argument("--suggest", action="store_true",
                   help="also run the suggest experiment (sipd/bench/quality_suggest.py): "
                   "clicks where `sipctl suggest` points against as many random clicks")
    p.add_argument("--suggest-start", type=int, default=10,
                   help="start clicks per class and train image (default 10)")
    p.add_argument("--suggest-regions", type=int, default=0,
                   help="regions asked of sipctl suggest (default: 2 per train image)")
    p.add_argument("--suggest-clicks", type=int, default=3, help="clicks per region (default 3)")
    p.add_argument("--suggest-size", type=int, default=32, help="region edge in px (default 32)")
    p.add_argument("--invoked-as", default="", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    methods = [m.strip() for m in a.methods.split(",") if m.strip()]
    bad = [m for m in methods if m not in METHODS]
    if bad or not methods:
        p.error(f"--methods: unknown {', '.join(bad) or '(none)'}; accepted: {', '.join(METHODS)}")
    a.method_list = methods
    if a.clicks < 1:
        p.error("--clicks must be at least 1")
    return a


def daemon_env(settings: Sequence[str]) -> dict[str, str]:
    env = {}
    for item in settings:
        key, sep, value = item.partition("=")
        section, dot, option = key.strip().partition(".")
        if not (sep and dot and section and option):
            raise SystemExit(f"--daemon-setting {item!r}: give SECTION.KEY=VALUE")
        env[f"SIPD_{section.upper()}__{option.upper()}"] = value
    return env


def _terminate(signum: int, frame: Any) -> None:
    # Once: a second Ctrl-C or SIGTERM must not cut short stopping the daemon.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise KeyboardInterrupt(f"signal {signum}")


def run(a: argparse.Namespace, say: Say = _say) -> dict[str, Any]:
    work = Path(a.work).expanduser().resolve()
    work.mkdir(parents=True, exist_ok=True)
    data = Path(a.data).expanduser().resolve() if a.data else default_data(a.dataset)
    load_before = load_average()
    started = datetime.now(UTC)
    t_all = time.perf_counter()
    say(f"loading {a.dataset} (scenes written once into {work / 'scenes'}) ...")
    ds = load_dataset(
        a.dataset, data, work, max_train=a.max_train, max_test=a.max_test, seed=a.seed,
        split_file=Path(a.split_file).resolve() if a.split_file else None,
        generated={"size": a.generated_size, "scenes": a.generated_scenes,
                   "test": a.generated_test, "classes": a.generated_classes},
    )  # fmt: skip
    classes = list(range(1, len(ds.classes) + 1))
    clicks = draw_clicks(ds, a.clicks, a.seed)
    counts = click_counts(clicks, ds.classes)
    say(f"{len(ds.side('train'))} train, {len(ds.side('test'))} test image(s); "
        f"{counts['total']} clicks ({counts['train']} train, {counts['val']} val)")  # fmt: skip
    results: list[dict[str, Any]] = []
    if "forest-ref" in a.method_list:
        r = run_forest_ref(ds, clicks, a.seed, say)
        results.append(summarize("forest-ref", r, ds, classes))
        say(f"  forest-ref: OA {results[-1]['overall_accuracy']:.4f}")
    daemon_methods = [m for m in a.method_list if m in DAEMON_METHODS]
    daemon_info: dict[str, Any] = {}
    experiment: dict[str, Any] | None = None
    if daemon_methods or a.suggest:
        from sipd.bench.quality_daemon import BenchDaemon

        state = work / "daemon" / f"{a.dataset}-{started.strftime('%Y%m%dT%H%M%S')}"
        roots = [work] + ([data] if data is not None else [])
        env = daemon_env(a.daemon_setting)
        say(f"starting sipd (data dir {state}) ...")
        try:
            with BenchDaemon(state, roots, env=env) as d:
                daemon_info = {"address": d.address, "log": str(d.log_path), "settings": env,
                               "version": d.sipctl("status").get("version", "")}  # fmt: skip
                for m in daemon_methods:
                    try:
                        r = run_daemon_method(d, m, ds, clicks, work, say)
                    except Skipped as exc:
                        say(f"  {exc}")
                        results.append({"method": m, "skipped": str(exc)})
                        continue
                    results.append(summarize(m, r, ds, classes))
                    say(f"  {m}: OA {results[-1]['overall_accuracy']:.4f}")
                if a.suggest:
                    experiment = _suggest(d, ds, a, work, classes, say)
        finally:
            if not a.keep_daemon:
                shutil.rmtree(state, ignore_errors=True)
    order = {m: i for i, m in enumerate(METHODS)}
    results.sort(key=lambda r: order[r["method"]])
    tests = ds.side("test")
    return {
        "benchmark": "sparse-click quality",
        "command": a.invoked_as or shlex.join([sys.executable, "-m", __spec__.name, *sys.argv[1:]]),
        "started": started.isoformat(timespec="seconds"),
        "wall_seconds": round(time.perf_counter() - t_all, 1),
        "dataset": {
            "name": ds.name,
            "data": str(data) if data else None,
            "classes": [{"value": i + 1, "name": n} for i, n in enumerate(ds.classes)],
            "split": ds.notes,
            "train_images": len(ds.side("train")),
            "test_images": len(tests),
            "train": [i.name for i in ds.side("train")],
            "test": [i.name for i in tests],
            "test_megapixels": round(sum(i.megapixels for i in tests), 4),
        },
        "clicks_per_class": a.clicks,
        "seed": a.seed,
        "clicks": counts,
        "methods": results,
        "suggest": experiment,
        "daemon": daemon_info,
        "machine": machine(),
        "load_average_before": load_before,
        "load_average_after": load_average(),
    }


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGINT, _terminate)
    try:
        report = run(a)
    except KeyboardInterrupt:
        _say("interrupted; the benchmark's daemon was stopped")
        return 130
    path = Path(a.json).expanduser().resolve() if a.json else (
        Path(a.work).expanduser().resolve() / "results"
        / f"{a.dataset}-{report['started'][:19].replace(':', '')}.json"
    )  # fmt: skip
    report["json"] = str(path)
    write_json(path, report)
    print(markdown(report))
    print(f"\nJSON: {path}")
    _say(f"done in {report['wall_seconds']:.0f} s; figures in {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
