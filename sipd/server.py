"""The daemon: gRPC server, health, reflection, job engine, signals."""

from __future__ import annotations

import fcntl
import ipaddress
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
from sipctl import runtime

from sipd import __version__
from sipd.access import Access, load_owner_token, required_scope
from sipd.config import Config
from sipd.contracts.jobs import JobType, PredictParams
from sipd.contracts.worker_settings import WorkerSettings
from sipd.device import resolve_device
from sipd.errors import FailedPrecondition, SipError
from sipd.job_requests import JobRequests
from sipd.jobs.engine import JobEngine
from sipd.modelrepo import ModelRepository
from sipd.paths import PathPolicy, default_roots
from sipd.projects import Projects
from sipd.prometheus import Metrics
from sipd.raster import atomic_path, remove_stale_scratch
from sipd.recipes import RecipeBook
from sipd.services.common import StreamLimiter, unimplemented
from sipd.store import Store
from sipd.stream_upload import StreamPredictions
from sipd.studio.server import StudioServer
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

# RPC threads beyond limits.max_streams: streams can never take them, so unary
# calls (Health, GetStatus, CancelJob, a waiting ComputeMasks) always find one.
UNARY_THREADS = 32


class Daemon:
    """Everything one running sipd owns; servicers reach state through it."""

    def __init__(self, config: Config) -> None:
        self.config = config
        # First: an exposed listen address fails before anything is opened or spawned.
        _check_exposure(config)
        self.data_dir = Path(config.data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._lock_file = self._take_lock()
        # Before anything listens: a bad token entry fails the start, not the first call.
        self.owner_token = load_owner_token(self.data_dir)
        self.access = Access.from_config(self.owner_token, config.access.tokens)
        self._records: list[Path] = []
        self.start_time = time.time()
        self.policy = PathPolicy(config.allowed_roots or default_roots(config.data_dir))
        self.store = Store(self.data_dir / "sipd.db")
        self.projects = Projects(
            self.store, self.policy, self.data_dir, config.limits.max_scene_pixels
        )
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
                allowed_roots=[str(r) for r in self.policy.roots] + [str(self.data_dir)],
                executor=config.executor,
                ray=config.ray,
            ),
        )
        self.recipes = RecipeBook(self.store)
        self.recipes.load_config(config.recipes)
        self.requests = JobRequests(
            config, self.projects, self.models, self.engine, self.policy, self.recipes
        )
        self.engine.add_finisher(JobType.PREPROCESS, self.requests.register_preprocessed)
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
            recipes=self.recipes,
            requests=self.requests,
            events=self.metrics,
        )
        self.metrics.set_watch_stats(self.watches.stats)
        self.address = ""
        self.metrics_address = ""
        self.studio_address = ""
        self.studio: StudioServer | None = None
        self.server: grpc.Server | None = None
        self.health = health.HealthServicer()
        self.stream_limits = StreamLimiter(
            config.limits.max_streams, config.limits.max_streams_per_client
        )
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
        if self.config.studio_listen:
            self.studio = StudioServer(self)
            self.studio_address = self.studio.serve(self.config.studio_listen)
            with atomic_path(self.data_dir / "sipd.studio_address") as tmp:
                tmp.write_text(self.studio_address + "\n")
            scheme = "https" if self.config.tls.cert else "http"
            log.info("studio on %s://%s/ (open it with `sipctl studio`)", scheme,
                     self.studio_address)  # fmt: skip
        for job in self.engine.start():
            # A predict job killed mid-write left scratch files beside its outputs;
            # nobody else would remove them unless the same outputs are written again.
            if isinstance(job.params, PredictParams):
                for item in job.params.items:
                    for output in (item.output, item.confidence, item.probabilities):
                        if output:
                            remove_stale_scratch(output)
        self.watches.start()
        server = grpc.server(
            futures.ThreadPoolExecutor(
                max_workers=self.config.limits.max_streams + UNARY_THREADS,
                thread_name_prefix="rpc",
            ),
            options=[
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ],
            interceptors=[AccessInterceptor(self.access, self.stream_limits)],
        )
        implemented = self._servicers()
        names = [reflection.SERVICE_NAME, health.SERVICE_NAME]
        for module, service, add in SERVICES:
            servicer = implemented.get(service) or _placeholder(module, service)
            add(servicer, server)
            names.append(module.DESCRIPTOR.services_by_name[service].full_name)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        reflection.enable_server_reflection(names, server)
        credentials = _server_credentials(self.config)
        if credentials is None:
            port = server.add_insecure_port(self.config.listen)
        else:
            port = server.add_secure_port(self.config.listen, credentials)
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
        # The owner's sipctl finds the token for this address here (per-user, 0600);
        # written before sipd.address, so whoever waits for that finds it too.
        try:
            self._records = runtime.write_records(
                self.address,
                {"pid": os.getpid(), "token": self.owner_token, "data_dir": str(self.data_dir),
                 "tls": credentials is not None},
            )  # fmt: skip
        except OSError as exc:
            log.warning("cannot write the runtime record for sipctl (%s); pass --token", exc)
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
        if self.studio is not None:
            self.studio.stop()
        if stopped is not None:
            stopped.wait(5)
        self.store.close()
        (self.data_dir / "sipd.address").unlink(missing_ok=True)
        for record in self._records:
            record.unlink(missing_ok=True)
        (self.data_dir / "sipd.metrics_address").unlink(missing_ok=True)
        (self.data_dir / "sipd.studio_address").unlink(missing_ok=True)
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


class AccessInterceptor(grpc.ServerInterceptor):
    """Every call but health needs a bearer token with the method's scope (sipd.access)."""

    def __init__(self, access: Access, stream_limits: StreamLimiter) -> None:
        self.access = access
        self.stream_limits = stream_limits

    def intercept_service(self, continuation: Any, details: Any) -> Any:
        method = details.method
        authorization = next(
            (v for k, v in details.invocation_metadata or () if k == "authorization"), None
        )
        if isinstance(authorization, bytes):
            authorization = authorization.decode(errors="replace")
        decision = self.access.check(method, required_scope(method), authorization)
        handler = continuation(details)
        if handler is not None and decision.allowed and method in _BOUNDED_FOREIGN_STREAMS:
            return _bounded(handler, self.stream_limits, method.rsplit("/", 1)[-1])
        if decision.allowed or handler is None:
            return handler
        log.info("refused %s: %s", method, decision.message)
        return _refusal(handler, getattr(grpc.StatusCode, decision.code), decision.message)


# Streams served by grpc's own servicers (ours hold the limiter themselves): server
# reflection is bidirectional and lives as long as its client keeps it open.
_BOUNDED_FOREIGN_STREAMS = frozenset(
    {
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    }
)


def _bounded(handler: Any, limits: StreamLimiter, name: str) -> Any:
    """`handler` (a stream-stream handler) counted against the long-call bound."""
    inner = handler.stream_stream

    def behaviour(request_iterator: Any, context: grpc.ServicerContext) -> Any:
        try:
            with limits.hold(context, name):
                yield from inner(request_iterator, context)
        except SipError as exc:
            context.abort(grpc.StatusCode[exc.code.value], str(exc))

    return grpc.stream_stream_rpc_method_handler(
        behaviour,
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )


def _refusal(handler: Any, code: grpc.StatusCode, message: str) -> Any:
    """A handler of the same shape as `handler` that aborts with `code` and `message`."""

    def deny(request: Any, context: grpc.ServicerContext) -> Any:
        context.abort(code, message)

    def deny_stream(request: Any, context: grpc.ServicerContext) -> Any:
        context.abort(code, message)
        yield  # pragma: no cover - abort raises; this makes it a generator

    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(deny_stream)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(deny)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(deny_stream)
    return grpc.unary_unary_rpc_method_handler(deny)


def _is_loopback(listen: str) -> bool:
    host = listen.rpartition(":")[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name other than localhost may resolve to anything


def _check_exposure(config: Config) -> None:
    _check_listener(config, "listen", config.listen)
    if config.studio_listen:
        _check_listener(config, "studio_listen", config.studio_listen)


def _check_listener(config: Config, option: str, listen: str) -> None:
    if _is_loopback(listen) or config.tls.cert:
        return
    if config.insecure_allow_remote_without_tls:
        log.warning(
            "listening on %s without TLS: tokens and data cross the network in clear "
            "(--insecure-allow-remote-without-tls)",
            listen,
        )
        return
    raise FailedPrecondition(
        f"refusing to listen on {listen} ({option}) without TLS: tokens would cross the network "
        "in clear; set tls.cert and tls.key (--tls-cert, --tls-key), listen on 127.0.0.1, or "
        "override with --insecure-allow-remote-without-tls (see docs/security.md)"
    )


def _server_credentials(config: Config) -> grpc.ServerCredentials | None:
    tls = config.tls
    if not tls.cert:
        return None

    def read(option: str, path: str) -> bytes:
        try:
            return Path(path).expanduser().read_bytes()
        except OSError as exc:
            raise FailedPrecondition(f"cannot read {option} {path}: {exc.strerror}") from None

    pair = (read("tls.key", tls.key), read("tls.cert", tls.cert))
    client_ca = read("tls.client_ca", tls.client_ca) if tls.client_ca else None
    return grpc.ssl_server_credentials(
        [pair], root_certificates=client_ca, require_client_auth=client_ca is not None
    )


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
