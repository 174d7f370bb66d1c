"""The daemon, its contract and the job engine, through real gRPC and sipctl."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2
from sipapi.v1 import common_pb2, job_pb2, preprocess_pb2, system_pb2

from tests.support import Sipd, wait_for, write_raster

ROOT = Path(__file__).resolve().parents[2]
STATE = common_pb2.Job.State
SERVICES = {
    "sip.v1.ProjectService",
    "sip.v1.LabelingService",
    "sip.v1.DatasetService",
    "sip.v1.TrainingService",
    "sip.v1.PredictionService",
    "sip.v1.PreprocessService",
    "sip.v1.WatchService",
    "sip.v1.JobService",
    "sip.v1.SystemService",
}


def _diagnostics(d: Sipd, seconds: float = 60, size: int = 256) -> common_pb2.Job:
    return d.client.system.RunDiagnostics(
        system_pb2.RunDiagnosticsRequest(seconds=seconds, matrix_size=size), timeout=10
    )


def _job(d: Sipd, name: str) -> common_pb2.Job:
    return d.client.jobs.GetJob(job_pb2.GetJobRequest(name=name), timeout=10)


def _wait_state(d: Sipd, name: str, states: set[int], timeout: float = 60) -> common_pb2.Job:
    return wait_for(
        lambda: (j := _job(d, name)).state in states and j, timeout, what=f"{name} in {states}"
    )


def test_generated_api_is_up_to_date() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "proto" / "generate.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_health_and_status_over_grpc_and_sipctl(shared_sipd: Sipd) -> None:
    d = shared_sipd
    assert d.health() == health_pb2.HealthCheckResponse.SERVING
    assert d.health("sip.v1.JobService") == health_pb2.HealthCheckResponse.SERVING
    status = d.sipctl_json("status")
    assert status["version"]
    assert status["device"] == "cpu"
    assert status["queue_length"] == 0
    assert status["worker"]["state"] == "IDLE" and status["worker"]["pid"] > 0
    human = d.sipctl("status").stdout
    assert "device:   cpu" in human and "worker:   idle" in human


def test_reflection_lists_services_to_another_grpc_implementation(shared_sipd: Sipd) -> None:
    """grpclib (pure Python over h2) shares no code with grpcio's C core."""
    from grpclib.client import Channel

    host, port = shared_sipd.address.rsplit(":", 1)

    async def ask() -> tuple[set[str], int]:
        channel = Channel(host, int(port))
        try:
            async with channel.request(
                "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
                grpc_cardinality_stream_stream(),
                reflection_pb2.ServerReflectionRequest,
                reflection_pb2.ServerReflectionResponse,
                metadata={"authorization": f"Bearer {shared_sipd.token}"},
            ) as stream:
                await stream.send_message(
                    reflection_pb2.ServerReflectionRequest(list_services=""), end=True
                )
                reply = await stream.recv_message()
                names = {s.name for s in reply.list_services_response.service}
            async with channel.request(
                "/grpc.health.v1.Health/Check",
                grpc_cardinality_unary(),
                health_pb2.HealthCheckRequest,
                health_pb2.HealthCheckResponse,
            ) as stream:
                await stream.send_message(health_pb2.HealthCheckRequest(), end=True)
                health = await stream.recv_message()
            return names, health.status
        finally:
            channel.close()

    names, health = asyncio.run(ask())
    assert names >= SERVICES
    assert health == health_pb2.HealthCheckResponse.SERVING


def grpc_cardinality_stream_stream():  # noqa: ANN201 - grpclib's enum
    from grpclib.const import Cardinality

    return Cardinality.STREAM_STREAM


def grpc_cardinality_unary():  # noqa: ANN201
    from grpclib.const import Cardinality

    return Cardinality.UNARY_UNARY


def test_inspect_job_end_to_end(
    shared_sipd: Sipd, tmp_path_factory: pytest.TempPathFactory
) -> None:
    d = shared_sipd
    root = d.roots[0]
    data = np.arange(3 * 300 * 500, dtype=np.uint16).reshape(3, 300, 500) % 1000
    path = write_raster(root / "inspect.tif", data, nodata=0, descriptions=["HH", "HV", "ratio"])
    out = d.sipctl_json("inspect", str(path), "--stats")
    info = out["info"]
    assert (info["width"], info["height"], info["band_count"], info["dtype"]) == (
        500,
        300,
        3,
        "uint16",
    )
    assert info["crs"] == "EPSG:32633" and info["band_names"] == ["HH", "HV", "ratio"]
    assert info["nodata"] == 0
    band1 = data[0][data[0] != 0]
    stats = out["statistics"][0]
    assert stats["valid_pixels"] == band1.size
    assert stats["min"] == band1.min() and stats["max"] == band1.max()
    assert stats["mean"] == pytest.approx(band1.mean())
    # The job is listed and its result kept.
    jobs = d.sipctl_json("jobs", "list", "--type", "inspect")["jobs"]
    assert jobs[0]["state"] == "SUCCEEDED" and jobs[0]["inspect"]["info"]["width"] == 500
    # Detached: prints the job name; `jobs wait` returns its outcome.
    name = d.sipctl("inspect", str(path), "--detach").stdout.strip()
    assert name.startswith("jobs/")
    assert d.sipctl_json("jobs", "wait", name)["state"] == "SUCCEEDED"


def test_watch_job_streams_progress_to_the_end(shared_sipd: Sipd) -> None:
    d = shared_sipd
    job = _diagnostics(d, seconds=1.5)
    events = list(d.client.jobs.WatchJob(job_pb2.WatchJobRequest(name=job.name), timeout=60))
    assert [e.sequence for e in events] == list(range(1, len(events) + 1))
    assert any(e.job.state == STATE.RUNNING and e.job.progress.fraction > 0 for e in events)
    final = events[-1].job
    assert final.state == STATE.SUCCEEDED
    assert final.diagnostics.gflops > 0 and final.diagnostics.iterations > 0
    assert final.diagnostics.onnxruntime_providers == ["CPUExecutionProvider"]


def test_bad_requests_get_clear_errors(shared_sipd: Sipd, tmp_path: Path) -> None:
    d = shared_sipd
    c = d.client
    with pytest.raises(grpc.RpcError) as err:
        c.jobs.GetJob(job_pb2.GetJobRequest(name="job/1"), timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "jobs/N" in err.value.details()
    with pytest.raises(grpc.RpcError) as err:
        c.jobs.GetJob(job_pb2.GetJobRequest(name="jobs/99999"), timeout=10)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as err:
        c.system.RunDiagnostics(system_pb2.RunDiagnosticsRequest(seconds=-1), timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "seconds" in err.value.details()
    with pytest.raises(grpc.RpcError) as err:
        c.preprocess.InspectRaster(
            preprocess_pb2.InspectRasterRequest(path="relative.tif"), timeout=10
        )
    assert (
        err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "absolute" in err.value.details()
    )
    corrupt = d.roots[0] / "corrupt.tif"
    corrupt.write_bytes(b"II*\x00" + b"\x00" * 100)
    with pytest.raises(grpc.RpcError) as err:
        c.preprocess.InspectRaster(
            preprocess_pb2.InspectRasterRequest(path=str(corrupt)), timeout=10
        )
    assert (
        err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        and "corrupt.tif" in err.value.details()
    )
    with pytest.raises(grpc.RpcError) as err:
        c.jobs.ListJobs(job_pb2.ListJobsRequest(page_token="zz"), timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    # An empty preprocess request says what is missing.
    with pytest.raises(grpc.RpcError) as err:
        c.preprocess.Preprocess(preprocess_pb2.PreprocessRequest(), timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "product" in err.value.details()
    # sipctl: one line and a non-zero exit.
    result = d.sipctl("jobs", "show", "12345", check=False)
    assert (
        result.returncode == 1 and result.stderr.count("\n") == 1 and "NOT_FOUND" in result.stderr
    )
    assert d.health() == health_pb2.HealthCheckResponse.SERVING


def test_paths_outside_allowed_roots_are_refused(shared_sipd: Sipd, tmp_path: Path) -> None:
    d = shared_sipd
    outside = tmp_path / "outside.tif"  # tmp_path is not below the shared daemon's root
    write_raster(outside, np.zeros((1, 10, 10), np.uint8))
    with pytest.raises(grpc.RpcError) as err:
        d.client.preprocess.InspectRaster(
            preprocess_pb2.InspectRasterRequest(path=str(outside)), timeout=10
        )
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "allowed_roots" in err.value.details()
    # '..' and symlinks are resolved before the check.
    sneaky = f"{d.roots[0]}/../{outside.parent.name}/outside.tif"
    link = d.roots[0] / "link.tif"
    link.symlink_to(outside)
    for path in (sneaky, str(link)):
        with pytest.raises(grpc.RpcError) as err:
            d.client.preprocess.InspectRaster(
                preprocess_pb2.InspectRasterRequest(path=path), timeout=10
            )
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED, path
    result = d.sipctl("inspect", str(outside), check=False)
    assert result.returncode == 1 and "PERMISSION_DENIED" in result.stderr


def test_cancel_running_and_queued_jobs(sipd: Sipd) -> None:
    d = sipd
    running = _diagnostics(d, seconds=120)
    queued = _diagnostics(d, seconds=120)
    _wait_state(d, running.name, {STATE.RUNNING})
    assert _job(d, queued.name).state == STATE.QUEUED
    assert d.sipctl_json("status")["queue_length"] == 1
    cancelled = d.sipctl_json("jobs", "cancel", queued.name)
    assert cancelled["state"] == "CANCELLED"
    d.sipctl("jobs", "cancel", running.name)
    job = _wait_state(d, running.name, {STATE.CANCELLED}, timeout=20)
    assert job.error_code == "CANCELLED"
    # Cooperative: the worker survived and takes the next job.
    status = d.sipctl_json("status")
    assert status["worker"]["restarts"] == 0
    assert d.sipctl_json("diagnostics", "--seconds", "0.2")["iterations"] >= 1


@pytest.mark.slow  # a multiply of seconds past the grace, then a worker restart
def test_cancel_hard_kills_a_job_that_does_not_stop(tmp_path: Path) -> None:
    # One 6144^3 multiply takes seconds on two cores: longer than the grace.
    d = Sipd(
        tmp_path / "state", roots=[tmp_path], env={"SIPD_JOBS__CANCEL_GRACE_SECONDS": "0.3"}
    ).start()
    try:
        job = _diagnostics(d, seconds=300, size=6144)
        # After the first multiply's progress event the next multiply is under way,
        # and the job cannot look at its cancel flag until it ends.
        wait_for(lambda: _job(d, job.name).progress.message.endswith("multiplies"), 120)
        pid = d.sipctl_json("status")["worker"]["pid"]
        d.client.jobs.CancelJob(job_pb2.CancelJobRequest(name=job.name), timeout=10)
        final = _wait_state(d, job.name, {STATE.CANCELLED}, timeout=30)
        assert "grace" in final.error
        status = wait_for(
            lambda: (s := d.sipctl_json("status"))["worker"]["state"] == "IDLE" and s, 60
        )
        assert status["worker"]["restarts"] == 1 and status["worker"]["pid"] != pid
    finally:
        d.stop()


def test_worker_crash_fails_the_job_and_the_next_one_runs(sipd: Sipd) -> None:
    d = sipd
    job = _diagnostics(d, seconds=120)
    nxt = _diagnostics(d, seconds=0.2)
    _wait_state(d, job.name, {STATE.RUNNING})
    pid = d.sipctl_json("status")["worker"]["pid"]
    os.kill(pid, signal.SIGKILL)
    failed = _wait_state(d, job.name, {STATE.FAILED}, timeout=30)
    assert "SIGKILL" in failed.error and "worker" in failed.error
    assert _wait_state(d, nxt.name, {STATE.SUCCEEDED}, timeout=60).diagnostics.iterations >= 1
    status = d.sipctl_json("status")
    assert status["worker"]["restarts"] == 1 and status["worker"]["pid"] != pid
    assert "while running job" in d.log()


@pytest.mark.slow  # two daemon starts and an orphaned worker to wait out
def test_sigkill_of_the_daemon_then_restart(tmp_path: Path) -> None:
    d = Sipd(tmp_path / "state", roots=[tmp_path]).start()
    done = _diagnostics(d, seconds=0.1)
    _wait_state(d, done.name, {STATE.SUCCEEDED})
    running = _diagnostics(d, seconds=300)
    queued = _diagnostics(d, seconds=0.1)
    _wait_state(d, running.name, {STATE.RUNNING})
    worker = d.sipctl_json("status")["worker"]["pid"]
    assert d.stop(signal.SIGKILL) == -signal.SIGKILL
    # The orphaned worker notices and exits.
    wait_for(
        lambda: not os.path.exists(f"/proc/{worker}") or _zombie(worker), 10, what="worker exit"
    )
    d.start()
    job = _job(d, running.name)
    assert job.state == STATE.FAILED and job.error_code == "ABORTED" and "interrupted" in job.error
    assert (
        _job(d, done.name).state == STATE.SUCCEEDED
        and _job(d, done.name).diagnostics.iterations >= 1
    )
    # The queue survived: the job queued before the kill runs after the restart.
    assert _wait_state(d, queued.name, {STATE.SUCCEEDED}).diagnostics.iterations >= 1
    d.stop()
    db = sqlite3.connect(tmp_path / "state" / "sipd.db")
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except FileNotFoundError:
        return True


@pytest.mark.slow  # two daemon starts around a cancelled job
def test_sigterm_cancels_the_running_job_and_exits_zero(tmp_path: Path) -> None:
    d = Sipd(tmp_path / "state", roots=[tmp_path]).start()
    job = _diagnostics(d, seconds=300)
    _wait_state(d, job.name, {STATE.RUNNING})
    assert d.stop(signal.SIGTERM, timeout=30) == 0
    assert not (tmp_path / "state" / "sipd.address").exists()
    d.start()
    final = _job(d, job.name)
    assert final.state == STATE.CANCELLED and "daemon was stopped" in final.error
    d.stop()


def test_second_daemon_on_the_same_data_dir_refuses(sipd: Sipd) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "sipd", "--listen", "127.0.0.1:0", "--data-dir", str(sipd.data_dir)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1 and "already running" in result.stderr


def test_sipctl_without_a_daemon_says_how_to_start_one() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "sipctl", "--address", "127.0.0.1:9", "status"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr.startswith("sipctl: cannot reach sipd at 127.0.0.1:9")
    assert "start it with `sipd`" in result.stderr and result.stderr.count("\n") == 1


def test_sipctl_json_job_list_is_json(shared_sipd: Sipd) -> None:
    out = shared_sipd.sipctl("--json", "jobs", "list", "--limit", "2").stdout
    assert isinstance(json.loads(out)["jobs"], list)
