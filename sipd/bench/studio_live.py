"""How fast the studio's live update answers (`sipctl bench live`).

It plays an analyst at the page against a real sipd of its own (127.0.0.1,
ephemeral ports): on a generated scene it draws strokes one at a time
(lines and points inside one class each, cycling through the classes) and
after each one asks for the live update of a VIEW x VIEW window at full
resolution, as the page does; then it pans to other windows. Each round trip
is timed at the client (HTTP, the model, both PNGs, base64), with the
daemon's own split (features, fit, predict). Prints a table and writes JSON
with the machine and load average.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import statistics
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from sipd.bench.quality_daemon import BenchDaemon
from sipd.bench.run_record import load_average, machine, write_report

CLASSES = ["water", "ice", "land"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m sipd.bench.studio_live", description=__doc__)
    p.add_argument("--work", default="bench-data/live", help="scene and daemon state")
    p.add_argument("--size", type=int, default=2048, help="scene edge in pixels (default 2048)")
    p.add_argument("--bands", type=int, default=4, help="scene bands (default 4)")
    p.add_argument("--view", type=int, default=1024, help="view edge in pixels (default 1024)")
    p.add_argument("--strokes", type=int, default=12, help="strokes drawn (default 12)")
    p.add_argument("--pans", type=int, default=4, help="other views asked for, 1-4 (default 4)")
    p.add_argument("--json", dest="json_path", default="", help="where to write the figures")
    a = p.parse_args(argv)
    if a.view >= a.size:
        p.error("--view must be smaller than --size (the pans move the view)")
    if not 1 <= a.pans <= 4:
        p.error("--pans must be 1-4 (the scene's corners)")
    work = Path(a.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    scene = work / f"scene-{a.size}-{a.bands}.tif"
    truth = _scene(scene, a.size, a.bands)
    load_before = load_average()
    edits: list[dict[str, Any]] = []
    pans: list[dict[str, Any]] = []
    # A fresh daemon state per run: the project and its ROIs are the run's own.
    shutil.rmtree(work / "state", ignore_errors=True)
    with BenchDaemon(work / "state", [work], studio=True) as d:
        d.sipctl("project", "create", "live", "--classes", ",".join(CLASSES),
                 "--bands", ",".join(f"B{i + 1}" for i in range(a.bands)))  # fmt: skip
        d.sipctl("scene", "add", "live", str(scene), "--name", "s")
        http = _Http(f"http://{d.studio_address}", d.token)
        start = (a.size - a.view) // 2
        view = {"x": start, "y": start, "width": a.view, "height": a.view, "level": 0}
        for i, roi in enumerate(_strokes(truth, view, a.strokes)):
            http.post("/api/projects/live/scenes/s/rois", roi)
            if i == 0:
                continue  # one class drawn: nothing to learn yet
            edits.append(http.timed("/api/projects/live/scenes/s/live", view))
            print(f"edit {i}: {edits[-1]['round_trip_s']:.2f} s", file=sys.stderr)
        far = a.size - a.view
        corners = [(0, 0), (far, 0), (0, far), (far, far)]
        for k, (px, py) in enumerate(corners[: a.pans]):
            moved = {**view, "x": px, "y": py}  # a view not seen before: its features anew
            pans.append(http.timed("/api/projects/live/scenes/s/live", moved))
            print(f"pan {k + 1}: {pans[-1]['round_trip_s']:.2f} s", file=sys.stderr)
    report = {
        "command": shlex.join(["python -m sipd.bench.studio_live", *(argv or sys.argv[1:])]),
        "scene": {"size": a.size, "bands": a.bands, "dtype": "uint16"},
        "view": a.view,
        "machine": machine(),
        "load_average_before": load_before,
        "load_average_after": load_average(),
        "edit": _summary(edits[1:]),  # the first answer also warms the view's features
        "first_answer": edits[0] if edits else None,
        "pan": _summary(pans),
        "edits": edits,
        "pans": pans,
    }
    path = write_report(report, a.json_path, work, "live")
    _print(report)
    print(f"JSON: {path}")
    return 0


def _scene(path: Path, size: int, bands: int) -> Any:
    import numpy as np

    from sipd.synthetic import make_scene

    truth_file = path.with_suffix(".truth.npy")
    if path.exists() and truth_file.exists():
        return np.load(truth_file)
    truth = np.asarray(make_scene(path, width=size, height=size, bands=bands, seed=11))
    np.save(truth_file, truth)
    return truth


def _strokes(truth: Any, view: dict[str, int], n: int) -> list[dict[str, Any]]:
    """Lines and points inside one class each, within the view, the classes in turn."""
    from sipd.synthetic import sample_rois

    x, y, w = view["x"], view["y"], view["width"]
    part = truth[y : y + w, x : x + w]
    rois = sample_rois(part, seed=3, n_lines_per_class=n, n_points_per_class=n)
    by_class: dict[int, list[dict[str, Any]]] = {}
    for r in rois:
        by_class.setdefault(r["class_value"], []).append(r)
    order = []
    for i in range(n):
        cls = sorted(by_class)[i % len(by_class)]
        if by_class[cls]:
            order.append(by_class[cls].pop(0))
    strokes = []
    for r in order:
        coords = ", ".join(f"{cx + x:.2f} {cy + y:.2f}" for cx, cy in r["coords"])
        kind = "POINT" if r["kind"] == "point" else "LINESTRING"
        strokes.append({"class_name": CLASSES[r["class_value"] - 1], "split": "train",
                        "wkt": f"{kind} ({coords})", "width": 3})  # fmt: skip
    return strokes


class _Http:
    def __init__(self, base: str, token: str) -> None:
        self.base = base
        self.headers = {"Authorization": f"Bearer {token}", "X-Sipd-Studio": "1",
                        "Content-Type": "application/json"}  # fmt: skip

    def post(self, path: str, body: dict[str, Any]) -> tuple[dict[str, Any], int]:
        request = urllib.request.Request(self.base + path, data=json.dumps(body).encode(),
                                         method="POST", headers=self.headers)  # fmt: skip
        try:
            with urllib.request.urlopen(request, timeout=600) as answer:
                data = answer.read()
        except urllib.error.HTTPError as exc:
            raise RuntimeError(f"POST {path}: {exc.code} {exc.read()[:300]!r}") from None
        return json.loads(data), len(data)

    def timed(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        started = time.perf_counter()
        answer, size = self.post(path, body)
        return {"round_trip_s": round(time.perf_counter() - started, 3), "bytes": size,
                **answer["timing"]}  # fmt: skip


def _summary(rows: list[dict[str, Any]]) -> dict[str, float] | None:
    if not rows:
        return None
    times = sorted(r["round_trip_s"] for r in rows)
    return {
        "count": len(times),
        "median_s": round(statistics.median(times), 3),
        "p90_s": round(times[min(len(times) - 1, int(0.9 * len(times)))], 3),
        "max_s": times[-1],
        "median_fit_s": round(statistics.median(r["fit_s"] for r in rows), 3),
        "median_predict_s": round(statistics.median(r["predict_s"] for r in rows), 3),
        "median_features_s": round(statistics.median(r["features_s"] for r in rows), 3),
    }


def _print(report: dict[str, Any]) -> None:
    print("| live update | answers | median s | p90 s | max s | features s | fit s | predict s |")
    print("|---|---|---|---|---|---|---|---|")
    for name, key in (("after an edit (same view)", "edit"), ("a new view (pan)", "pan")):
        s = report[key]
        if s:
            print(f"| {name} | {s['count']} | {s['median_s']} | {s['p90_s']} | {s['max_s']} | "
                  f"{s['median_features_s']} | {s['median_fit_s']} | {s['median_predict_s']} |")
    first = report["first_answer"]
    if first:
        print(f"\nfirst answer (cold view): {first['round_trip_s']} s")
    m = report["machine"]
    print(f"{report['view']} x {report['view']} view of a {report['scene']['size']}^2 "
          f"{report['scene']['bands']}-band scene; {m['cores']} core(s) {m['cpu_model']}, load "
          f"{report['load_average_before'][0]:.2f} -> {report['load_average_after'][0]:.2f}")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
