"""`sipctl bench quality` end to end: generated scenes, its own daemon, real training."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.slow  # a daemon and a (3-epoch) training run: ~30-60 s on 2 cores
def test_bench_quality_on_generated_scenes(tmp_path: Path) -> None:
    out = tmp_path / "quality.json"
    env = {k: v for k, v in os.environ.items() if k not in ("SIPCTL_ADDRESS", "SIPCTL_TOKEN")}
    proc = subprocess.run(
        [sys.executable, "-m", "sipctl", "bench", "quality", "--dataset", "generated",
         "--generated-size", "128", "--generated-scenes", "4", "--generated-test", "1",
         "--clicks", "20", "--methods", "forest-ref,sparse", "--work", str(tmp_path / "work"),
         "--daemon-setting", "training.epochs=3", "--json", str(out)],
        capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = proc.stdout
    assert "| method | labeled px | OA | kappa | mIoU |" in table
    assert "| forest-ref |" in table and "| sparse |" in table
    report = json.loads(out.read_text())
    assert report["command"].startswith("sipctl bench quality --dataset generated")
    assert report["dataset"]["train_images"] == 3 and report["dataset"]["test_images"] == 1
    assert report["clicks"] == {
        "total": 180, "train": 144, "val": 36,
        "per_class": {"class1": 60, "class2": 60, "class3": 60},
    }  # fmt: skip
    assert report["machine"]["cores"] >= 1 and len(report["load_average_after"]) == 3
    methods = {m["method"]: m for m in report["methods"]}
    assert list(methods) == ["forest-ref", "sparse"]
    ref, sparse = methods["forest-ref"], methods["sparse"]
    assert ref["overall_accuracy"] > 0.8
    assert ref["pixels"] == sparse["pixels"] == 128 * 128
    assert sparse["labeled_pixels"] == {"train": 144, "val": 36}  # one pixel per click
    assert sparse["train_detail"]["epochs_run"] <= 3 and sparse["train_seconds"] > 0
    for m in (ref, sparse):
        assert 0 <= m["kappa"] <= 1 and 0 <= m["mean_iou"] <= 1
        assert m["predict_seconds"] > 0 and m["predict_s_per_mpx"] > 0
        assert len(m["per_class"]) == 3 and len(m["per_image"]) == 1
    # The per-image table: the one test image, each method's OA of it.
    image = ref["per_image"][0]["image"]
    row = next(line for line in table.splitlines() if line.startswith(f"| {image} |"))
    assert row == (f"| {image} | {ref['per_image'][0]['overall_accuracy']:.4f} | "
                   f"{sparse['per_image'][0]['overall_accuracy']:.4f} |")
    assert "| test image | forest-ref | sparse |" in table
    # The daemon is gone and its data dir removed; the log stays beside it.
    daemon = tmp_path / "work" / "daemon"
    assert [p.suffix for p in daemon.iterdir()] == [".log"]
