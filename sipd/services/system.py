"""SystemService: version, device, queue, worker; device diagnostics."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import grpc
from sipapi.v1 import common_pb2, system_pb2, system_pb2_grpc

from sipd import __version__
from sipd.contracts.jobs import DiagnosticsParams
from sipd.errors import InvalidArgument
from sipd.services.common import rpc, timestamp
from sipd.services.job_results import job_to_proto

if TYPE_CHECKING:
    from sipd.server import Daemon


class SystemServicer(system_pb2_grpc.SystemServiceServicer):
    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon

    @rpc
    def GetStatus(
        self, request: system_pb2.GetStatusRequest, context: grpc.ServicerContext
    ) -> system_pb2.Status:
        d = self.daemon
        engine = d.engine.status()
        worker = engine["worker"]
        status = system_pb2.Status(
            version=__version__,
            device=engine["device"],
            queue_length=engine["queue_length"],
            worker=system_pb2.WorkerStatus(
                state=system_pb2.WorkerStatus.State.Value(worker["state"]),
                pid=worker["pid"],
                current_job=worker["current_job"],
                restarts=worker["restarts"],
            ),
            uptime_seconds=time.time() - d.start_time,
            data_dir=d.config.data_dir,
            listen=d.address,
            metrics_listen=d.metrics_address,
            studio_listen=d.studio_address,
            allowed_roots=[str(r) for r in d.policy.roots],
            active_watches=d.active_watch_count(),
        )
        status.start_time.CopyFrom(timestamp(d.start_time))
        return status

    @rpc
    def RunDiagnostics(
        self, request: system_pb2.RunDiagnosticsRequest, context: grpc.ServicerContext
    ) -> common_pb2.Job:
        seconds = request.seconds or 2.0
        size = request.matrix_size or 1024
        if not 0 < seconds <= 600:
            raise InvalidArgument(f"seconds must be in (0, 600], got {seconds}")
        if not 64 <= size <= 16384:
            raise InvalidArgument(f"matrix_size must be in 64..16384, got {size}")
        job = self.daemon.engine.submit(DiagnosticsParams(seconds=seconds, matrix_size=size))
        return job_to_proto(job)
