"""`sipctl bench live` and `sipctl bench ray` end to end: daemons of their own, real timings."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.slow  # a daemon and a dozen live updates: ~20 s on 2 cores
def test_bench_live_times_edits_and_pans(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("SIPCTL_ADDRESS", "SIPCTL_TOKEN")}
    proc = subprocess.run(
        [sys.executable, "-m", "sipctl", "--json", "bench", "live", "--view", "256",
         "--scene-size", "512", "--strokes", "5"],
        capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    # Five strokes: the first has one class only, the second answer is the cold one.
    assert report["first_answer"]["round_trip_s"] > 0
    assert report["edit"]["count"] == 3 and report["pan"]["count"] == 4
    for row in report["edits"] + report["pans"]:
        assert row["round_trip_s"] >= row["total_s"] > 0 and row["bytes"] > 0
    # A pan computes the new view's features; an edit of the same view reuses them (it
    # still samples its new ROI, so its time alone does not show the reuse on a loaded
    # machine).
    assert all(p["features_s"] > 0 and not p["view_features_reused"] for p in report["pans"])
    assert all(e["view_features_reused"] for e in report["edits"][1:])
    assert not report["first_answer"]["view_features_reused"]
    assert report["machine"]["cores"] >= 1 and len(report["load_average_after"]) == 3
    assert (tmp_path / "bench-data" / "live").is_dir()


@pytest.mark.slow  # a Ray cluster and four daemons: ~40 s on 2 cores
def test_bench_ray_compares_the_executors_side_by_side(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("SIPCTL_ADDRESS", "SIPCTL_TOKEN")}
    proc = subprocess.run(
        [sys.executable, "-m", "sipctl", "--json", "bench", "ray", "--ray-scenes", "2",
         "--ray-size", "256"],
        capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    runs = report["runs"]
    assert list(runs) == ["local, 1 thread", "ray, 1 actor", "ray, 2 actors", "local, 2 threads"]
    for r in runs.values():
        assert r["seconds"] > 0 and r["scenes_per_minute"] > 0
    one, two = runs["ray, 1 actor"]["seconds"], runs["ray, 2 actors"]["seconds"]
    assert report["scaling_efficiency"] == round(one / (2 * two), 3)
    local = runs["local, 1 thread"]["seconds"]
    assert report["overhead_pct"] == round(100 * (one - local) / local, 1)
    # The bench's cluster is gone with it: no process of it is left.
    left = subprocess.run(["pgrep", "-f", "sipd-ray-"], capture_output=True, text=True)
    assert not left.stdout.strip(), left.stdout
