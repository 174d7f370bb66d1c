"""The Prometheus endpoint: its own registry, job and worker metrics from real events."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from sipapi.v1 import common_pb2, job_pb2, system_pb2

from tests.integration.watch_support import metric, scrape
from tests.support import Sipd, wait_for

STATE = common_pb2.Job.State


def _run(d: Sipd, seconds: float) -> common_pb2.Job:
    return d.client.system.RunDiagnostics(
        system_pb2.RunDiagnosticsRequest(seconds=seconds, matrix_size=64), timeout=10
    )


def _state(d: Sipd, name: str) -> int:
    return d.client.jobs.GetJob(job_pb2.GetJobRequest(name=name), timeout=10).state


@pytest.mark.slow  # a killed worker is restarted (~6 s)
def test_jobs_and_worker_restarts_are_counted_from_real_events(tmp_path: Path) -> None:
    d = Sipd(tmp_path / "state", roots=[tmp_path], metrics=True).start()
    try:
        assert (d.data_dir / "sipd.metrics_address").read_text().strip() == d.metrics_address
        assert d.sipctl_json("status")["metrics_listen"] == d.metrics_address
        before = scrape(d)
        assert metric(before, "sipd_info", device="cpu", version=_version()) == 1
        assert metric(before, "sipd_worker_restarts_total") == 0
        # A registry of our own: none of the client library's default process collectors.
        assert not any(k.startswith(("python_gc", "process_")) for k in before)

        ok = _run(d, 0.2)
        wait_for(lambda: _state(d, ok.name) == STATE.SUCCEEDED, 60, what="a job to succeed")
        crashed = _run(d, 120)
        wait_for(lambda: _state(d, crashed.name) == STATE.RUNNING, 60, what="a running job")
        assert metric(scrape(d), "sipd_worker_busy") == 1
        os.kill(d.sipctl_json("status")["worker"]["pid"], signal.SIGKILL)
        wait_for(lambda: _state(d, crashed.name) == STATE.FAILED, 30, what="the crash")
        d.wait_worker()

        after = scrape(d)
        assert metric(after, "sipd_worker_restarts_total") == 1
        assert metric(after, "sipd_jobs", type="diagnostics", state="SUCCEEDED") == 1
        assert metric(after, "sipd_jobs", type="diagnostics", state="FAILED") == 1
        for state in ("SUCCEEDED", "FAILED"):
            count = "sipd_job_duration_seconds_count"
            assert metric(after, count, type="diagnostics", state=state) == 1
        ran = metric(after, "sipd_job_duration_seconds_sum", type="diagnostics", state="SUCCEEDED")
        assert 0.2 <= ran < 30
        assert metric(after, "sipd_job_queue_wait_seconds_count", type="diagnostics") == 2
        assert metric(after, "sipd_watch_queue_limit") == 1000
    finally:
        d.stop()
    assert not (d.data_dir / "sipd.metrics_address").exists()


def test_metrics_off_and_a_taken_port(tmp_path: Path) -> None:
    d = Sipd(tmp_path / "off", roots=[tmp_path]).start()  # the harness default: no endpoint
    try:
        assert d.sipctl_json("status").get("metrics_listen", "") == ""
        assert not (d.data_dir / "sipd.metrics_address").exists()
    finally:
        d.stop()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if not k.startswith("SIPD_")}
        result = subprocess.run(
            [sys.executable, "-m", "sipd", "--listen", "127.0.0.1:0", "--data-dir",
             str(tmp_path / "taken"), "--metrics-listen", f"127.0.0.1:{port}",
             "--studio-listen", "", "--allowed-root", str(tmp_path)],
            capture_output=True, text=True, timeout=120, env=env,
        )  # fmt: skip
    assert result.returncode == 1
    assert f"cannot serve metrics on 127.0.0.1:{port}" in result.stderr
    assert "--metrics-listen" in result.stderr


def _version() -> str:
    from sipd import __version__

    return __version__
