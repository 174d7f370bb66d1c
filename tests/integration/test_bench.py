"""`sipctl bench` end to end, at a tiny size (speed itself is the benchmark's business)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest


def _sipctl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sipctl", *args], capture_output=True, text=True, timeout=600
    )


@pytest.mark.slow  # builds a model and runs the predictor and the baseline
def test_bench_reports_speed_memory_and_agreement(tmp_path: Path) -> None:
    result = _sipctl("--json", "bench", "--size", "256", "--dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    for key in ("mpx_per_s", "baseline_mpx_per_s", "speedup", "peak_rss_mb",
                "baseline_peak_rss_mb", "cpu_s_per_mpx", "seconds", "baseline_seconds"):
        assert data[key] > 0, key
    assert data["size"] == 256 and data["provider"] == "CPUExecutionProvider"
    assert data["agreement"] >= 0.999
    assert data["speedup"] == round(data["baseline_seconds"] / data["seconds"], 2)
    assert "preparing" in result.stderr  # progress on stderr, JSON alone on stdout
    # The scene and the model folder stay for the next run; the label maps do not.
    assert (tmp_path / "scene_256x256x4.tif").is_file()
    assert (tmp_path / "model" / "model.onnx").is_file()
    assert (tmp_path / "model" / "checkpoint.pt").is_file()
    assert not (tmp_path / "out").exists()


@pytest.mark.slow  # builds a model and runs three predictions
def test_bench_sweep_gives_one_row_per_size(tmp_path: Path) -> None:
    result = _sipctl(
        "--json", "-q", "bench", "--sizes", "128,192", "--no-baseline", "--dir", str(tmp_path)
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert [r["size"] for r in data["rows"]] == [128, 192]
    assert data["rows"][0]["rss_vs_smallest"] == 1.0
    assert all(r["seconds_per_mpx"] > 0 for r in data["rows"])
    assert "baseline_mpx_per_s" not in data and result.stderr == ""
    human = _sipctl("-q", "bench", "--size", "128", "--no-baseline", "--dir", str(tmp_path))
    assert human.returncode == 0 and "MPX/S" in human.stdout and "128x128" in human.stdout


def test_bench_help_says_it_runs_locally_and_bad_sizes_fail() -> None:
    help_text = _sipctl("bench", "--help").stdout
    assert "not through a daemon" in help_text and "child process" in help_text
    bad = _sipctl("bench", "--sizes", "5000,abc")
    assert bad.returncode == 1 and "--sizes" in bad.stderr
