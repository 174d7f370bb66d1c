"""sipctl bench: speed and memory of sipd's predictor against a naive baseline."""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from sipctl.app import App
from sipctl.client import CliError
from sipctl.render import table

DESCRIPTION = """\
Measure the predictor that predict, test and watched folders run, on a
synthetic scene (uint16, 4 bands by default) and a model of the default
architecture (random weights, exported like a trained one): end to end from
reading the scene to the finished label map COG, in seconds, Mpx/s and CPU
seconds per Mpx, and its peak memory. The same scene and model then go
through a naive baseline (torch eager, whole image read into memory, a plain
loop over the same tiles, the GeoTIFF written at the end) for the speedup,
and the two label maps are compared pixel by pixel.

Runs locally, not through a daemon (no sipd needed; --address is ignored):
it benchmarks the predictor code path itself. Every measurement runs in a
child process of its own, so each peak RSS is that measurement's alone.
Scenes and the model are kept in --dir and reused by later runs.
Wall time depends on what else runs on the machine; CPU s/Mpx does not
(cores / CPU s/Mpx is the rate an idle machine reaches), and the load
average at each measurement is reported with it.

`sipctl bench quality --dataset dubai|bbbc|generated|folder` is the
sparse-click quality benchmark (docs/quality.md): on the train images of a
dataset with full ground truth, --clicks pixels per class (3x3-pure, fixed
--seed, 4 train : 1 val) become point ROIs; each method learns from them and
classifies every pixel of the test images, scored against the truth
(overall accuracy, Cohen's kappa, mean IoU, per-class F1). Methods
(--methods, default all): forest-ref (ilastik-style filter bank + random
forest, computed by the benchmark itself: the independent reference),
instant (sipd's --arch forest), sparse (sipd's default net, trained with no
options) and full (the same training on the full masks: the upper bound).
The daemon methods run through a sipd of the benchmark's own (127.0.0.1,
ephemeral port, data dir under --work; --address is ignored). Prints a
markdown table (one row per method) and writes every figure, per image too,
with the command, machine and load average, to --json PATH (default
WORK/results/DATASET-TIME.json). Scenes are written once into --work.
Example: sipctl bench quality --dataset bbbc --methods forest-ref,sparse

`sipctl bench live` times the labeling studio's live update (docs/studio.md)
through a sipd of its own: strokes drawn one at a time on a generated scene,
each followed by the live update of a --view x --view window at full
resolution, then pans to other windows; round trips timed at the client,
with the daemon's features / fit / predict split.

`sipctl bench ray` runs the same scenes (--ray-scenes of --ray-size pixels
across) through the local executor and through a local Ray cluster it starts
(--ray-cpus CPUs) with 1 and 2 actors, one thread each, side by side: seconds,
scenes per minute, the Ray path's overhead per scene and the scaling
efficiency (docs/ray.md).
"""


def register(sub: Any, job_options: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "bench",
        help="benchmark the predictor (locally) against a naive baseline",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "target",
        nargs="?",
        choices=["predict", "preprocess", "quality", "live", "ray"],
        default="predict",
        help="predict (default): the predictor against a naive baseline; preprocess: a "
        "preprocessor on a product of real size (--sensor); quality: sparse-click accuracy "
        "of sipd's models against a reference (--dataset); live: the studio's live update; "
        "ray: the ray executor against the local one",
    )
    _quality_options(p)
    live = p.add_argument_group("live (sipctl bench live; docs/studio.md)")
    live.add_argument("--view", type=int, default=1024, help="view edge in pixels (1024)")
    live.add_argument("--scene-size", type=int, default=2048, help="scene edge in pixels (2048)")
    live.add_argument("--strokes", type=int, default=12, help="strokes drawn (12)")
    ray = p.add_argument_group("ray (sipctl bench ray; docs/ray.md)")
    ray.add_argument("--ray-scenes", type=int, default=4, help="scenes per run (4)")
    ray.add_argument("--ray-size", type=int, default=2000, help="scene edge in pixels (2000)")
    ray.add_argument("--ray-cpus", type=int, default=2, help="CPUs of the local Ray node (2)")
    p.add_argument(
        "--sensor",
        default="sentinel1",
        choices=["sentinel1", "landsat", "sentinel2", "sentinel3"],
        help="preprocess: the product to make and preprocess: a Sentinel-1 IW GRD (default), "
        "a Landsat C2 L2 scene (7,800 x 7,700, 7 bands), a Sentinel-2 L2A tile "
        "(10,980 x 10,980, 4 bands at 10 m) or a Sentinel-3 OLCI EFR swath (4,091 x 4,865)",
    )
    p.add_argument(
        "--template",
        default="",
        help="preprocess: a Sentinel-1 GRD .SAFE whose metadata the benchmark product is "
        "made from (default: ../shared/fixtures beside a source checkout)",
    )
    p.add_argument(
        "--scale", type=int, default=1, help="preprocess: shrink the product (default 1)"
    )
    p.add_argument("--polarisations", default="VV,VH", help="preprocess: bands (default VV,VH)")
    p.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="preprocess: a preprocessing option over the benchmark's "
        "(multilook 4x4, refined-lee:7, dB, UTM at 40 m)",
    )
    p.add_argument("--size", type=int, default=5000, help="scene edge in pixels (default 5000)")
    p.add_argument(
        "--sizes", default="", help="sweep several edges, e.g. 2000,5000,10000 (overrides --size)"
    )
    p.add_argument("--bands", type=int, default=4, help="bands of the scene (default 4)")
    p.add_argument(
        "--dir", default="bench-data", help="scenes, model and outputs (default ./bench-data)"
    )
    p.add_argument("--tile", type=int, default=0, help="tile edge (default: the model's)")
    p.add_argument(
        "--threads", type=int, default=0, help="onnxruntime threads (default: all cores)"
    )
    p.add_argument(
        "--device", default="cpu", help="cpu (default) or cuda[:N], for sipd and the baseline"
    )
    p.add_argument("--no-baseline", action="store_true", help="measure sipd only")
    p.add_argument("--keep-outputs", action="store_true", help="keep the label maps in --dir/out")
    p.set_defaults(func=bench)


def _quality_options(p: argparse.ArgumentParser) -> None:
    q = p.add_argument_group("quality (sipctl bench quality; docs/quality.md)")
    q.add_argument(
        "--dataset",
        choices=["dubai", "bbbc", "generated", "folder"],
        default="",
        help="dubai (../shared/datasets/dubai_aerial_hitl), bbbc "
        "(../shared/datasets/bbbc039_nuclei_subset), generated (synthetic scenes) or folder "
        "(--data DIR with images/ and masks/, integer class masks, 0 = ignore)",
    )
    q.add_argument(
        "--data",
        default="",
        help="the dataset folder (default: $SIPD_BENCH_DATASETS/<name>, else "
        "../shared/datasets/<name> beside the source checkout)",
    )
    q.add_argument("--split-file", default="", help="folder: JSON {train: [...], test: [...]} "
                   "or lines 'STEM train|test' (default: sorted images alternate)")  # fmt: skip
    q.add_argument(
        "--clicks", type=int, default=150, help="clicks per class and train image (default 150)"
    )
    q.add_argument(
        "--methods",
        default="forest-ref,instant,sparse,full",
        help="comma-separated subset of forest-ref,instant,sparse,full (default all)",
    )
    q.add_argument("--seed", type=int, default=0, help="clicks and forest-ref seed (default 0)")
    q.add_argument(
        "--work", default="bench-data/quality", help="scenes, ROIs, outputs (bench-data/quality)"
    )
    q.add_argument("--max-train", type=int, default=0, help="use N train images (spread evenly)")
    q.add_argument("--max-test", type=int, default=0, help="use N test images (spread evenly)")
    q.add_argument(
        "--json",
        dest="json_path",
        default="",
        metavar="PATH",
        help="write the figures here (default WORK/results/DATASET-TIME.json)",
    )
    q.add_argument(
        "--suggest",
        action="store_true",
        help="also measure labeling where `sipctl suggest` points against as many random "
        "clicks (instant model; --suggest-start, -regions, -clicks, -size)",
    )
    q.add_argument("--suggest-start", type=int, default=10,
                   help="start clicks per class and train image (default 10)")  # fmt: skip
    q.add_argument("--suggest-regions", type=int, default=0,
                   help="regions asked of suggest (default 2 per train image)")  # fmt: skip
    q.add_argument("--suggest-clicks", type=int, default=3, help="clicks per region (default 3)")
    q.add_argument("--suggest-size", type=int, default=32, help="region edge (default 32 px)")
    q.add_argument(
        "--generated-size", type=int, default=512, help="generated: scene edge (default 512)"
    )
    q.add_argument(
        "--generated-scenes", type=int, default=25, help="generated: scenes (default 25)"
    )
    q.add_argument(
        "--generated-test", type=int, default=5, help="generated: of them test (default 5)"
    )
    q.add_argument(
        "--daemon-setting",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="a setting of the benchmark's sipd (e.g. training.epochs=3 for a quick run); "
        "train requests stay without options",
    )


def _sizes(a: argparse.Namespace) -> list[int]:
    text = a.sizes or str(a.size)
    try:
        sizes = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise CliError(f"--sizes {text!r}: give edges in pixels like 2000,5000,10000") from None
    if not sizes or min(sizes) < 16:
        raise CliError("scene edges must be at least 16 pixels")
    if a.bands < 1:
        raise CliError("--bands must be at least 1")
    return sizes


def _child(app: App, *args: str) -> dict[str, Any]:
    """One step in a fresh Python process; its last stdout line is JSON."""
    proc = subprocess.run(
        [sys.executable, "-m", "sipd.bench.throughput", *args],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["no message"])[-1]
        raise CliError(f"bench step `{args[0]}` failed: {tail}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _say(app: App, text: str) -> None:
    if not app.args.quiet:
        print(text, file=sys.stderr, flush=True)


def _row(app: App, folder: Path, size: int) -> dict[str, Any]:
    a = app.args
    _say(app, f"preparing a {size} x {size} x {a.bands} scene and the model in {folder} ...")
    prep = _child(
        app, "prepare", "--dir", str(folder), "--size", str(size), "--bands", str(a.bands)
    )
    out = folder / "out"
    out.mkdir(parents=True, exist_ok=True)
    tile = ["--tile", str(a.tile)] if a.tile else []
    common = ["--model", prep["model"], "--scene", prep["scene"], "--device", a.device, *tile]
    ours = out / f"sipd_{size}.tif"
    load = os.getloadavg()[0]
    _say(app, f"sipd predictor on {size} x {size} (load average {load:.2f}) ...")
    s = _child(app, "sipd", *common, "--out", str(ours), "--threads", str(a.threads))
    row: dict[str, Any] = {
        "size": size,
        "megapixels": round(size * size / 1e6, 3),
        "seconds": s["seconds"],
        "mpx_per_s": s["mpx_per_s"],
        "cpu_s_per_mpx": s["cpu_s_per_mpx"],
        "peak_rss_mb": s["peak_rss_mb"],
        "load_avg": round(load, 2),
        "tiles": s["detail"]["tiles"],
        "tile_shape": s["detail"]["tile_shape"],
        "provider": s["detail"]["provider"],
        "timing": s["detail"]["timing"],
    }
    _say(app, f"  {s['seconds']:.1f} s, {s['mpx_per_s']:.2f} Mpx/s, {s['peak_rss_mb']:.0f} MB")
    if not a.no_baseline:
        theirs = out / f"baseline_{size}.tif"
        load = os.getloadavg()[0]
        _say(app, f"naive baseline on {size} x {size} (load average {load:.2f}) ...")
        b = _child(app, "baseline", *common, "--out", str(theirs))
        agree = _child(app, "compare", str(ours), str(theirs))
        row.update(
            baseline_seconds=b["seconds"],
            baseline_mpx_per_s=b["mpx_per_s"],
            baseline_cpu_s_per_mpx=b["cpu_s_per_mpx"],
            baseline_peak_rss_mb=b["peak_rss_mb"],
            baseline_load_avg=round(load, 2),
            speedup=round(b["seconds"] / s["seconds"], 2),
            agreement=round(agree["agreement"], 6),
        )
        _say(app, f"  {b['seconds']:.1f} s, {b['mpx_per_s']:.2f} Mpx/s, "
                  f"{b['peak_rss_mb']:.0f} MB; labels agree on {100 * agree['agreement']:.3f}%")
    if not a.keep_outputs:
        shutil.rmtree(out, ignore_errors=True)
    return row


def bench(app: App) -> int:
    if app.args.target == "preprocess":
        return bench_preprocess(app)
    if app.args.target == "quality":
        return bench_quality(app)
    if app.args.target == "live":
        return bench_live(app)
    if app.args.target == "ray":
        return bench_ray(app)
    sizes = _sizes(app.args)
    # The measurements run sipd's engine in child processes on this machine; the
    # client distribution alone (no torch, onnxruntime, GDAL) cannot.
    if importlib.util.find_spec("sipd") is None:
        raise CliError(
            "sipctl bench measures this machine's engine and needs the sipd daemon "
            "installed here as well (pip install -c constraints.txt ./client . in the sipd "
            "repository)"
        )
    folder = Path(app.args.dir).expanduser().resolve()
    rows = [_row(app, folder, size) for size in sizes]
    main = next((r for r in rows if r["size"] == 5000), rows[-1])
    data: dict[str, Any] = {
        **main,
        "bands": app.args.bands,
        "cpus": os.cpu_count(),
        "dir": str(folder),
    }
    if len(rows) > 1:
        first = rows[0]
        for r in rows:
            # Linear time: seconds per megapixel stays put; flat memory: RSS ratio near 1.
            r["seconds_per_mpx"] = round(r["seconds"] / r["megapixels"], 3)
            r["rss_vs_smallest"] = round(r["peak_rss_mb"] / first["peak_rss_mb"], 3)
        data["rows"] = rows

    def human() -> None:
        headers = ["SIZE", "SECONDS", "MPX/S", "CPU_S/MPX", "PEAK_RSS_MB", "LOAD"]
        if not app.args.no_baseline:
            headers += ["BASELINE_S", "BASE_MPX/S", "BASE_CPU_S/MPX", "BASE_RSS_MB", "SPEEDUP",
                        "AGREEMENT"]
        lines = []
        for r in rows:
            line = [f"{r['size']}x{r['size']}", f"{r['seconds']:.1f}", f"{r['mpx_per_s']:.2f}",
                    f"{r['cpu_s_per_mpx']:.2f}", f"{r['peak_rss_mb']:.0f}", f"{r['load_avg']:.2f}"]
            if not app.args.no_baseline:
                line += [f"{r['baseline_seconds']:.1f}", f"{r['baseline_mpx_per_s']:.2f}",
                         f"{r['baseline_cpu_s_per_mpx']:.2f}", f"{r['baseline_peak_rss_mb']:.0f}",
                         f"{r['speedup']:.2f}x", f"{100 * r['agreement']:.3f}%"]
            lines.append(line)
        table(lines, headers)
        print(f"\n{app.args.bands}-band uint16 scenes, default model, {main['provider']}, "
              f"tiles {main['tile_shape'][0]} px, {os.cpu_count()} CPU(s); "
              "CPU_S/MPX: CPU seconds per megapixel (all threads)")

    app.emit(data, human)
    return 0


def bench_preprocess(app: App) -> int:
    """A preprocessor on a product of real size (python -m sipd.bench.preprocess)."""
    a = app.args
    if importlib.util.find_spec("sipd") is None:
        raise CliError("sipctl bench preprocess needs the sipd daemon installed here as well")
    args = ["--dir", str(Path(a.dir).expanduser().resolve()), "--scale", str(a.scale)]
    args += ["--sensor", a.sensor]
    args += ["--polarisations", a.polarisations]
    if a.template:
        args += ["--template", str(Path(a.template).expanduser().resolve())]
    for item in a.option:
        args += ["--option", item]
    _say(app, "making the product (first run only) and preprocessing it ...")
    proc = subprocess.run(
        [sys.executable, "-m", "sipd.bench.preprocess", *args], capture_output=True, text=True
    )
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["no message"])[-1]
        raise CliError(f"bench preprocess failed: {tail}")
    data = json.loads(proc.stdout.strip().splitlines()[-1])

    def human() -> None:
        print(
            f"{data['sensor']} {data['input']} ({data['input_megapixels']} Mpx in) -> "
            f"{' x '.join(map(str, data['output_size']))} "
            f"{data['crs']}: {data['seconds']:.1f} s wall, {data['cpu_s']:.1f} CPU s, "
            f"peak RSS {data['peak_rss_mb']:.0f} MB, {data['cpus']} CPUs, "
            f"load average {data['load_avg']:.2f}"
        )
        steps = data["step_seconds"]
        table(
            [[k, f"{v:.2f}"] for k, v in steps.items()],
            ["STEP", "SECONDS (summed over threads; total = wall)"],
        )

    app.emit(data, human)
    return 0


def bench_quality(app: App) -> int:
    """The sparse-click quality benchmark (python -m sipd.bench.quality)."""
    a = app.args
    if importlib.util.find_spec("sipd") is None:
        raise CliError("sipctl bench quality needs the sipd daemon installed here as well")
    if not a.dataset:
        raise CliError("sipctl bench quality needs --dataset dubai|bbbc|generated|folder")
    work = Path(a.work).expanduser().resolve()
    args = ["--dataset", a.dataset, "--work", str(work), "--clicks", str(a.clicks)]
    args += ["--methods", a.methods, "--seed", str(a.seed)]
    args += ["--max-train", str(a.max_train), "--max-test", str(a.max_test)]
    args += ["--generated-size", str(a.generated_size)]
    args += ["--generated-scenes", str(a.generated_scenes)]
    args += ["--generated-test", str(a.generated_test)]
    if a.data:
        args += ["--data", str(Path(a.data).expanduser().resolve())]
    if a.split_file:
        args += ["--split-file", str(Path(a.split_file).expanduser().resolve())]
    if a.json_path:
        args += ["--json", str(Path(a.json_path).expanduser().resolve())]
    for item in a.daemon_setting:
        args += ["--daemon-setting", item]
    if a.suggest:
        args += ["--suggest", "--suggest-start", str(a.suggest_start),
                 "--suggest-regions", str(a.suggest_regions),
                 "--suggest-clicks", str(a.suggest_clicks), "--suggest-size", str(a.suggest_size)]
    args += ["--invoked-as", shlex.join(["sipctl", *sys.argv[1:]])]
    # Progress on stderr as it happens (none with --quiet); the table on stdout at the end.
    child = subprocess.Popen(
        [sys.executable, "-m", "sipd.bench.quality", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL if a.quiet else None,
        text=True,
    )
    try:
        stdout, _ = child.communicate()
    except KeyboardInterrupt:
        # The child stops its daemon on SIGINT/SIGTERM; wait for it rather than kill it.
        child.terminate()
        child.wait()
        raise SystemExit(130) from None
    if child.returncode != 0:
        raise CliError(f"bench quality failed (exit {child.returncode}); see the messages above")
    lines = stdout.strip().splitlines()
    path = next((ln[len("JSON: ") :] for ln in reversed(lines) if ln.startswith("JSON: ")), "")
    data = json.loads(Path(path).read_text()) if path else {}
    app.emit(data, lambda: print(stdout, end=""))
    return 0


def bench_live(app: App) -> int:
    """The studio's live update (python -m sipd.bench.studio_live)."""
    a = app.args
    args = ["--view", str(a.view), "--size", str(a.scene_size), "--strokes", str(a.strokes)]
    return _bench_module(app, "live", "sipd.bench.studio_live", args)


def bench_ray(app: App) -> int:
    """The ray executor against the local one (python -m sipd.bench.ray_scaling)."""
    a = app.args
    args = ["--scenes", str(a.ray_scenes), "--size", str(a.ray_size), "--cpus", str(a.ray_cpus)]
    return _bench_module(app, "ray", "sipd.bench.ray_scaling", args)


def _bench_module(app: App, name: str, module: str, args: list[str]) -> int:
    """Run a benchmark module; its table on stdout, its JSON (path on a 'JSON:' line) kept."""
    a = app.args
    if importlib.util.find_spec("sipd") is None:
        raise CliError(f"sipctl bench {name} needs the sipd daemon installed here as well")
    proc = subprocess.run(
        [sys.executable, "-m", module, *args],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL if a.quiet else None, text=True,
    )  # fmt: skip
    if proc.returncode != 0:
        raise CliError(f"bench {name} failed (exit {proc.returncode}); see the messages above")
    lines = proc.stdout.strip().splitlines()
    path = next((ln[len("JSON: ") :] for ln in reversed(lines) if ln.startswith("JSON: ")), "")
    data = json.loads(Path(path).read_text()) if path else {}
    app.emit(data, lambda: print(proc.stdout, end=""))
    return 0
