"""Streaming calls are bounded: open WatchJob streams never starve Health, GetStatus, CancelJob."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sipapi.v1 import common_pb2, job_pb2, job_pb2_grpc, system_pb2
from sipctl.client import open_channel

from tests.support import Sipd, wait_for

STATE = common_pb2.Job.State
CHANNELS = 10
STREAMS_PER_CHANNEL = 20  # 200 in all
MAX_STREAMS = 64  # limits.max_streams (default)
PER_CLIENT = 16  # limits.max_streams_per_client (default)


@pytest.fixture
def stalled_job(sipd: Sipd) -> Iterator[common_pb2.Job]:
    """A diagnostics job that stays RUNNING without using the CPU: its worker is stopped
    (SIGSTOP) once it runs, and let go again (SIGCONT) before the job is cancelled."""
    job = sipd.client.system.RunDiagnostics(
        system_pb2.RunDiagnosticsRequest(seconds=60, matrix_size=64), timeout=10
    )
    wait_for(
        lambda: (
            sipd.client.jobs.GetJob(job_pb2.GetJobRequest(name=job.name), timeout=10).state
            == STATE.RUNNING
        ),
        what="the diagnostics job to run",
    )
    status = sipd.client.system.GetStatus(system_pb2.GetStatusRequest(), timeout=10)
    worker = status.worker.pid
    os.kill(worker, signal.SIGSTOP)
    try:
        yield job
    finally:
        os.kill(worker, signal.SIGCONT)
        sipd.client.jobs.CancelJob(job_pb2.CancelJobRequest(name=job.name), timeout=10)


def _channel(address: str, token: str) -> grpc.Channel:
    # A local subchannel pool gives each channel its own connection, as separate
    # sipctl processes have: the per-client limit counts connections.
    return open_channel(address, token, options=[("grpc.use_local_subchannel_pool", 1)])


def test_200_watch_streams_leave_unary_calls_answering(
    sipd: Sipd, stalled_job: common_pb2.Job
) -> None:
    d = sipd
    channels = [_channel(d.address, d.token) for _ in range(CHANNELS)]
    calls = []
    try:
        for channel in channels:
            stub = job_pb2_grpc.JobServiceStub(channel)
            for _ in range(STREAMS_PER_CHANNEL):
                calls.append(
                    stub.WatchJob(job_pb2.WatchJobRequest(name=stalled_job.name), timeout=60)
                )
        opened, refused = 0, []
        for call in calls:
            try:
                event = next(call)
                assert event.job.state == STATE.RUNNING
                opened += 1
            except grpc.RpcError as exc:
                assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, exc
                refused.append(exc.details())
        # Every connection got at most PER_CLIENT, and all together at most MAX_STREAMS.
        assert opened == MAX_STREAMS
        assert len(refused) == CHANNELS * STREAMS_PER_CHANNEL - MAX_STREAMS
        assert any("limits.max_streams_per_client" in m for m in refused)
        assert any("limits.max_streams " in m or "limits.max_streams)" in m for m in refused)

        # With the streams still open, unary calls answer at once.
        health = health_pb2_grpc.HealthStub(d.channel())
        for _ in range(5):
            start = time.monotonic()
            status = d.client.system.GetStatus(system_pb2.GetStatusRequest(), timeout=1)
            assert health.Check(health_pb2.HealthCheckRequest(), timeout=1).status == (
                health_pb2.HealthCheckResponse.SERVING
            )
            assert status.queue_length >= 0
            assert time.monotonic() - start < 1.0
        job = d.client.jobs.GetJob(job_pb2.GetJobRequest(name=stalled_job.name), timeout=1)
        assert job.state == STATE.RUNNING
    finally:
        for call in calls:
            call.cancel()
        for channel in channels:
            channel.close()

    # Streams whose clients went away give their places back (the stream loop
    # notices within a second).
    def reopened() -> bool:
        call = job_pb2_grpc.JobServiceStub(d.channel()).WatchJob(
            job_pb2.WatchJobRequest(name=stalled_job.name), timeout=10
        )
        try:
            next(call)
            return True
        except grpc.RpcError as exc:
            assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            return False
        finally:
            call.cancel()

    wait_for(reopened, timeout=10, what="a stream slot to be free again")


def test_server_reflection_streams_count_against_the_bound(tmp_path: Path) -> None:
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    d = Sipd(
        tmp_path / "state",
        roots=[tmp_path],
        env={"SIPD_LIMITS__MAX_STREAMS": "2", "SIPD_LIMITS__MAX_STREAMS_PER_CLIENT": "2"},
    ).start()
    try:
        channel = _channel(d.address, d.token)
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        ask = reflection_pb2.ServerReflectionRequest(list_services="")
        gates = []

        def waiting(gate: list[bool]) -> Iterator[reflection_pb2.ServerReflectionRequest]:
            yield ask
            while not gate:
                time.sleep(0.05)

        # Two streams kept open by clients that have not finished asking.
        live = []
        for _ in range(2):
            gate: list[bool] = []
            gates.append(gate)
            stream = stub.ServerReflectionInfo(waiting(gate), timeout=30)
            next(stream)  # its first answer: the stream holds a slot now
            live.append(stream)
        third = stub.ServerReflectionInfo(iter([ask]), timeout=30)
        with pytest.raises(grpc.RpcError) as err:
            list(third)
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "limits.max_streams" in (err.value.details() or "")
        # Health still answers meanwhile.
        health = health_pb2_grpc.HealthStub(channel)
        assert health.Check(health_pb2.HealthCheckRequest(), timeout=5).status == 1
        for gate in gates:
            gate.append(True)
        for stream in live:
            stream.cancel()
        channel.close()
    finally:
        d.stop()
