"""The daemon: gRPC server, health, reflection, job engine, signals."""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import sys
import threading
import time
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from sipapi.v1 import (
    dataset_pb2,
    dataset_pb2_grpc,
    job_pb2,
    job_pb2_grpc,
    labeling_pb2,
    labeling_pb2_grpc,
    prediction_pb2,
    prediction_pb2_grpc,
    preprocess_pb2,
    preprocess_pb2_grpc,
    project_pb2,
    project_pb2_grpc,
    system_pb2,
    system_pb2_grpc,
    training_pb2,
    training_pb2_grpc,
    watch_pb2,
    watch_pb2_grpc,
)

from sipd import __version__
from sipd.config import Config
from sipd.contracts.worker_settings import WorkerSettings
from sipd.device import resolve_device
from sipd.errors import FailedPrecondition
from sipd.job_requests import JobRequests
from sipd.jobs.engine import JobEngine
from sipd.modelrepo import ModelRepository
from sipd.paths import PathPolicy, default_roots
from sipd.projects import Projects
from sipd.prometheus import Metrics
from sipd.raster import atomic_path
from sipd.services.common import unimplemented
from sipd.store import Store
from sipd.stream_upload import StreamPredictions
from sipd.watch.manager import WatchManager

log = logging.getLogger("sipd")

# (pb2 module, service name, add_servicer function) for every sip.v1 service.
SERVICES: list[tuple[Any, str, Any]] = [
    (project_pb2, "ProjectService", project_pb2_grpc.add_ProjectServiceServicer_to_server),
    (labeling_pb2, "LabelingService", labeling_pb2_grpc.add_LabelingServiceServicer_to_server),
    (dataset_pb2, "DatasetService", dataset_pb2_grpc.add_DatasetServiceServicer_to_server),
    (training_pb2, "TrainingService", training_pb2_grpc.add_TrainingServiceServicer_to_server),
    (
        prediction_pb2,
        "PredictionService",
        prediction_pb2_grpc.add_PredictionServiceServicer_to_server,
    ),
    (
        preprocess_pb2,
        "PreprocessService",
        preprocess_pb2_grpc.add_PreprocessServiceServicer_to_server,
    ),
    (watch_pb2, "WatchService", watch_pb2_grpc.add_WatchServiceServicer_to_server),
    (job_pb2, "JobService", job_pb2_grpc.add_JobServiceServicer_to_server),
    (system_pb2, "SystemService", system_pb2_grpc.add_SystemServiceServicer_to_server),
]

# Largest gRPC message either way; bulk data goes through streaming chunks.
MAX_MESSAGE_BYTES = 64 * 1024 * 1024


class Daemon:
    """Everything one running sipd owns; servicers reach state through it."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.data_dir = Path(config.data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._lock_file = self._take_lock()
        self.start_time = time.time()
        self.policy = PathPolicy(config.allowed_roots or default_roots(config.data_dir))
        self.store = Store(self.data_dir / "sipd.db")
        self.projects = Projects(self.store, self.policy, self.data_dir)
        self.models = ModelRepository(self.data_dir / "models")
        self.device = resolve_device(config.device)
        self.engine = JobEngine(
            self.store,
            device=self.device,
            queue_limit=config.jobs.queue_limit,
            cancel_grace_seconds=config.jobs.cancel_grace_seconds,
            worker_settings=WorkerSettings(
                log_level=config.log_level,
                threads=config.jobs.threads,
                inference=config.inference,
            ),
        )
        self.requests = JobRequests(config, self.projects, self.models, self.engine, self.policy)
        self.streams = StreamPredictions(config, self.requests, self.engine)
        self.metrics = Metrics(
            self.store,
            device=self.device,
            engine_status=self.engine.status,
            watch_queue_limit=config.watch.queue_limit,
        )
        self.engine.add_listener(self.metrics.on_job)
        self.watches = WatchManager(
            store=self.store,
            engine=self.engine,
            models=self.models,
            projects=self.projects,
            policy=self.policy,
            config=config.watch,
            events=self.metrics,
        )
        self.metrics.set_watch_stats(self.watches.stats)
        self.address = ""
        self.metrics_address = ""
        self.server: grpc.Server | None = None
        self.health = health.HealthServicer()
        self._stopped = threading.Event()

    def _take_lock(self) -> Any:
        # Two daemons on one data dir would run two workers against one queue.
        handle = open(self.data_dir / "sipd.lock", "a+")  # noqa: SIM115 - held for the daemon's life
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise FailedPrecondition(
                f"another sipd is already running with data dir {self.data_dir}; stop it or "
                "start this one with another --data-dir"
            ) from None
        return handle

    def active_watch_count(self) -> int:
        return self.watches.active_count()

    def start(self) -> None:
        # Metrics first: a taken port fails the start before a worker is spawned.
        if self.config.metrics_listen:
            self.metrics_address = self.metrics.serve(self.config.metrics_listen)
            with atomic_path(self.data_dir / "sipd.metrics_address") as tmp:
                tmp.write_text(self.metrics_address + "\n")
            log.info("metrics on http://%s/metrics", self.metrics_address)
        self.engine.start()
        self.watches.start()
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=32, thread_name_prefix="rpc"),
            options=[
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ],
        )
        implemented = self._servicers()
        names = [reflection.SERVICE_NAME, health.SERVICE_NAME]
        for module, service, add in SERVICES:
            servicer = implemented.get(service) or _placeholder(module, service)
            add(servicer, server)
            names.append(module.DESCRIPTOR.services_by_name[service].full_name)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        reflection.enable_server_reflection(names, server)
        port = server.add_insecure_port(self.config.listen)
        if port == 0:
            raise FailedPrecondition(
                f"cannot listen on {self.config.listen}: address in use or not local"
            )
        host = self.config.listen.rpartition(":")[0]
        self.address = f"{host}:{port}"
        server.start()
        self.server = server
        for name in names[2:]:
            self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        self.health.set("", health_pb2.HealthCheckResponse.SERVING)
        # Scripts and tests that asked for port 0 read the real address here.
        with atomic_path(self.data_dir / "sipd.address") as tmp:
            tmp.write_text(self.address + "\n")
        log.info(
            "sipd %s listening on %s (device %s, data dir %s)",
            __version__,
            self.address,
            self.device,
            self.data_dir,
        )

    def _servicers(self) -> dict[str, Any]:
        from sipd.services.dataset import DatasetServicer
        from sipd.services.job import JobServicer
        from sipd.services.labeling import LabelingServicer
        from sipd.services.prediction import PredictionServicer
        from sipd.services.preprocess import PreprocessServicer
        from sipd.services.project import ProjectServicer
        from sipd.services.system import SystemServicer
        from sipd.services.training import TrainingServicer
        from sipd.services.watch import WatchServicer

        return {
            "ProjectService": ProjectServicer(self),
            "LabelingService": LabelingServicer(self),
            "DatasetService": DatasetServicer(self),
            "TrainingService": TrainingServicer(self),
            "PredictionService": PredictionServicer(self),
            "JobService": JobServicer(self),
            "SystemService": SystemServicer(self),
            "PreprocessService": PreprocessServicer(self),
            "WatchService": WatchServicer(self),
        }

    def stop(self) -> None:
        """Stop taking calls, end the running job within the grace period, close the store."""
        if self._stopped.is_set():
            return
        log.info("stopping")
        self.health.enter_graceful_shutdown()
        stopped = self.server.stop(grace=2.0) if self.server else None
        self.watches.stop()
        self.engine.shutdown(self.config.jobs.shutdown_grace_seconds)
        self.metrics.stop()
        if stopped is not None:
            stopped.wait(5)
        self.store.close()
        (self.data_dir / "sipd.address").unlink(missing_ok=True)
        (self.data_dir / "sipd.metrics_address").unlink(missing_ok=True)
        self._lock_file.close()
        self._stopped.set()
        log.info("stopped")

    def serve_forever(self) -> None:
        stop = threading.Event()

        def on_signal(signum: int, frame: Any) -> None:
            log.info("received %s", signal.Signals(signum).name)
            stop.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        while not stop.wait(1.0):
            pass
        self.stop()


def _placeholder(module: Any, service: str) -> Any:
    """A servicer whose methods all answer UNIMPLEMENTED with a sentence saying so."""
    methods = {
        m.name: unimplemented(service, m.name, "planned in a later release")
        for m in module.DESCRIPTOR.services_by_name[service].methods
    }
    return type(f"Unimplemented{service}", (object,), methods)()


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
        force=True,
    )
    logging.getLogger("sipd").info("pid %d", os.getpid())
