"""The client distribution on its own: a fresh virtual environment gets `sipctl` with grpcio
and protobuf only (no torch, onnxruntime, rasterio or numpy), and it talks to a real sipd."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import Sipd

ROOT = Path(__file__).resolve().parents[2]
# What an analyst's laptop must not be made to download by installing the client.
HEAVY = {"torch", "onnxruntime", "onnxruntime-gpu", "rasterio", "numpy"}


def _clean_env() -> dict[str, str]:
    """No PYTHONPATH or virtual environment of the test run may leak into the fresh one: the
    client must work from what it installed, not from this checkout."""
    drop = {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "SIPCTL_ADDRESS"}
    return {k: v for k, v in os.environ.items() if k not in drop}


def _run(args: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, capture_output=True, text=True, timeout=timeout, env=_clean_env(), cwd="/"
    )


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()  # PEP 503


@pytest.mark.slow  # a virtual environment and an install from the package registry
def test_client_alone_installs_light_and_talks_to_sipd(tmp_path: Path, sipd: Sipd) -> None:
    venv = tmp_path / "client-venv"
    made = _run([sys.executable, "-m", "venv", str(venv)], timeout=120)
    assert made.returncode == 0, made.stderr
    python, sipctl = venv / "bin" / "python", venv / "bin" / "sipctl"

    install = _run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         "-c", str(ROOT / "constraints.txt"), str(ROOT / "client")],
        timeout=600,
    )  # fmt: skip
    if install.returncode != 0:
        # No network, no registry: a failure that says so, never a silent skip.
        pytest.fail(
            "pip could not install the client into a fresh virtual environment (is the "
            f"package registry reachable?); exit {install.returncode}:\n{install.stderr[-3000:]}"
        )

    listed = _run([str(python), "-m", "pip", "list", "--format=json"], timeout=120)
    assert listed.returncode == 0, listed.stderr
    installed = {_normalized(p["name"]) for p in json.loads(listed.stdout)}
    assert {"sipctl", "grpcio", "protobuf"} <= installed, installed
    assert not installed & HEAVY, f"the client pulled in {sorted(installed & HEAVY)}"

    # The fresh environment's own copy runs, not this checkout's.
    where = _run([str(python), "-c", "import sipctl, sipapi; print(sipctl.__file__)"], 60)
    assert where.returncode == 0, where.stderr
    assert Path(where.stdout.strip()).is_relative_to(venv), where.stdout

    status = _run([str(sipctl), "--address", sipd.address, "status"], timeout=60)
    assert status.returncode == 0, f"{status.stdout}\n{status.stderr}"
    assert "worker:" in status.stdout and "device:" in status.stdout
    as_json = _run([str(sipctl), "--address", sipd.address, "--json", "status"], timeout=60)
    assert as_json.returncode == 0, as_json.stderr
    assert json.loads(as_json.stdout)["version"] == sipd.sipctl_json("status")["version"]
