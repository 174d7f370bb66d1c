"""Prometheus metrics on an HTTP endpoint (`metrics_listen`), in a registry of our own.

Two kinds of sources, both real:
- events this process sees (job ends, scenes finished, retries) feed
  counters and histograms as they happen;
- totals that must survive restarts (scenes done and failed per watch, jobs
  by type and state) are read from the store at scrape time, so /metrics
  agrees with `sipctl watch show` and `sipctl jobs list` after a crash too.
"""

from __future__ import annotations

import logging
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, Counter, Histogram, make_wsgi_app
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from sipd import __version__
from sipd.contracts.job_record import JobRecord, JobState
from sipd.contracts.jobs import PredictResult
from sipd.errors import FailedPrecondition
from sipd.store import Store

log = logging.getLogger("sipd.prometheus")

# Seconds: from a sub-second small scene to a large scene or a long training run.
JOB_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 4 * 3600)
SCENE_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
LATENCY_BUCKETS = (1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)


class Metrics:
    """The daemon's metrics. `on_job` is a JobEngine listener; the scene_* methods are the
    WatchEvents the watch threads report."""

    def __init__(
        self,
        store: Store,
        *,
        device: str,
        engine_status: Callable[[], dict[str, Any]],
        watch_stats: Callable[[], dict[str, dict[str, Any]]] | None = None,
        watch_queue_limit: int = 0,
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.job_seconds = Histogram(
            "sipd_job_duration_seconds",
            "Seconds from a job's start to its end, by type and final state.",
            ["type", "state"],
            buckets=JOB_BUCKETS,
            registry=self.registry,
        )
        self.job_wait = Histogram(
            "sipd_job_queue_wait_seconds",
            "Seconds a job waited in the queue before it started, by type.",
            ["type"],
            buckets=JOB_BUCKETS,
            registry=self.registry,
        )
        self.pixels = Counter(
            "sipd_pixels_classified",
            "Pixels given a class by predict jobs (background and nodata excluded).",
            ["project"],
            registry=self.registry,
        )
        self.scene_seconds = Histogram(
            "sipd_watch_scene_processing_seconds",
            "Seconds the predictor spent on one watched scene.",
            ["watch"],
            buckets=SCENE_BUCKETS,
            registry=self.registry,
        )
        self.scene_latency = Histogram(
            "sipd_watch_scene_latency_seconds",
            "Seconds from a watched scene being complete on disk to its outputs being written.",
            ["watch"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.retries = Counter(
            "sipd_watch_scene_retries",
            "Watched scenes queued again after a transient failure.",
            ["watch"],
            registry=self.registry,
        )
        self._state = _StateCollector(
            store, device, engine_status, watch_stats or (lambda: {}), watch_queue_limit
        )
        self.registry.register(self._state)
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    def set_watch_stats(self, watch_stats: Callable[[], dict[str, dict[str, Any]]]) -> None:
        self._state.watch_stats = watch_stats

    # -- event sources ------------------------------------------------------------

    def on_job(self, job: JobRecord) -> None:
        state, type_ = str(job.state), str(job.type)
        if job.state == JobState.RUNNING and job.start_time and job.create_time:
            self.job_wait.labels(type_).observe(max(0.0, job.start_time - job.create_time))
        if not job.final:
            return
        if job.start_time and job.end_time:
            self.job_seconds.labels(type_, state).observe(max(0.0, job.end_time - job.start_time))
        if isinstance(job.result, PredictResult):
            pixels = sum(s.pixels for s in job.result.scenes)
            self.pixels.labels(job.project).inc(pixels)

    def scene_done(self, watch_id: str, predict_seconds: float, latency_seconds: float) -> None:
        self.scene_seconds.labels(watch_id).observe(predict_seconds)
        self.scene_latency.labels(watch_id).observe(latency_seconds)

    def scene_failed(self, watch_id: str) -> None:
        pass  # counted from the store (sipd_watch_scenes_total), which survives restarts

    def scene_retried(self, watch_id: str) -> None:
        self.retries.labels(watch_id).inc()

    # -- HTTP ---------------------------------------------------------------------

    def serve(self, address: str) -> str:
        """Serve /metrics on HOST:PORT (port 0: any free one); return the bound address."""
        host, _, port = address.rpartition(":")
        host = host.strip("[]")
        server_class = _Server6 if ":" in host else _Server
        try:
            server = make_server(
                host,
                int(port),
                make_wsgi_app(self.registry),
                server_class=server_class,
                handler_class=_QuietHandler,
            )
        except OSError as exc:
            raise FailedPrecondition(
                f"cannot serve metrics on {address}: {exc.strerror or exc}; choose another "
                "address with --metrics-listen / SIPD_METRICS_LISTEN, or '' to turn it off"
            ) from exc
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="metrics", daemon=True)
        self._thread.start()
        bound = server.server_address
        shown = f"[{bound[0]}]" if ":" in str(bound[0]) else str(bound[0])
        return f"{shown}:{bound[1]}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _Server6(_Server):
    address_family = socket.AF_INET6


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - base signature
        pass  # a scrape every few seconds would drown the daemon log


class _StateCollector(Collector):
    """Metrics read at scrape time from the store, the engine and the watch threads."""

    def __init__(
        self,
        store: Store,
        device: str,
        engine_status: Callable[[], dict[str, Any]],
        watch_stats: Callable[[], dict[str, dict[str, Any]]],
        watch_queue_limit: int,
    ) -> None:
        self.store = store
        self.device = device
        self.engine_status = engine_status
        self.watch_stats = watch_stats
        self.watch_queue_limit = watch_queue_limit
        self._gpu = _GpuMemory(device)

    def describe(self) -> list[Any]:
        return []  # values depend on the store; nothing to check at registration

    def collect(self) -> Iterator[Any]:
        info = GaugeMetricFamily(
            "sipd_info", "This sipd: version and device.", labels=["version", "device"]
        )
        info.add_metric([__version__, self.device], 1)
        yield info
        yield from self._jobs()
        yield from self._watches()
        yield from self._worker()

    def _jobs(self) -> Iterator[Any]:
        jobs = GaugeMetricFamily(
            "sipd_jobs",
            "Jobs in the store by type and state (queued and running now; final states "
            "since the data dir was created).",
            labels=["type", "state"],
        )
        for row in self.store.query("SELECT type, state, COUNT(*) FROM jobs GROUP BY type, state"):
            jobs.add_metric([row[0], row[1]], row[2])
        yield jobs

    def _watches(self) -> Iterator[Any]:
        scenes = CounterMetricFamily(
            "sipd_watch_scenes",
            "Watched scenes finished, by watch and outcome (done: outputs written; failed: "
            "moved to failed/). Kept in the store: does not reset on restart.",
            labels=["watch", "outcome"],
        )
        depth = GaugeMetricFamily(
            "sipd_watch_queue_depth", "Watched scenes queued, waiting for a job.", labels=["watch"]
        )
        running = GaugeMetricFamily(
            "sipd_watch_scenes_running", "Watched scenes in a job now.", labels=["watch"]
        )
        pending = GaugeMetricFamily(
            "sipd_watch_files_pending",
            "Units seen in an inbox but not queued: settling, or held back by a full queue.",
            labels=["watch"],
        )
        awaiting = GaugeMetricFamily(
            "sipd_watch_files_awaiting_sentinel",
            "Units of a watch that requires sentinels, unchanged for the quiet period but "
            "without a NAME.done/NAME.ready as new as their data: held, not lost.",
            labels=["watch"],
        )
        paused = GaugeMetricFamily(
            "sipd_watch_paused", "1 when a watch is paused.", labels=["watch"]
        )
        passes = CounterMetricFamily(
            "sipd_watch_scanner_passes",
            "Scanner passes over a watch since sipd started (paused ones included); one "
            "that stops rising means a stuck scanner.",
            labels=["watch"],
        )
        rescans = CounterMetricFamily(
            "sipd_watch_rescans",
            "Full rescans of a watch's inbox since sipd started (at start, on resume and "
            "every watch.rescan_seconds).",
            labels=["watch"],
        )
        for watch_id, s in sorted(self.watch_stats().items()):
            scenes.add_metric([watch_id, "done"], s.get("DONE", 0))
            scenes.add_metric([watch_id, "failed"], s.get("FAILED", 0))
            depth.add_metric([watch_id], s.get("QUEUED", 0))
            running.add_metric([watch_id], s.get("RUNNING", 0))
            pending.add_metric([watch_id], s.get("PENDING", 0))
            awaiting.add_metric([watch_id], s.get("AWAITING_SENTINEL", 0))
            paused.add_metric([watch_id], 1 if s.get("paused") else 0)
            passes.add_metric([watch_id], s.get("PASSES", 0))
            rescans.add_metric([watch_id], s.get("RESCANS", 0))
        yield from (scenes, depth, running, pending, awaiting, paused, passes, rescans)
        limit = GaugeMetricFamily(
            "sipd_watch_queue_limit", "Most watched scenes queued at once (watch.queue_limit)."
        )
        limit.add_metric([], self.watch_queue_limit)
        yield limit

    def _worker(self) -> Iterator[Any]:
        status = self.engine_status()
        restarts = CounterMetricFamily(
            "sipd_worker_restarts",
            "Times the worker process died and was started again since sipd started.",
        )
        restarts.add_metric([], status["worker"]["restarts"])
        yield restarts
        busy = GaugeMetricFamily("sipd_worker_busy", "1 while the worker runs a job.")
        busy.add_metric([], 1 if status["worker"]["state"] == "BUSY" else 0)
        yield busy
        used = self._gpu.used_bytes(status["worker"]["pid"])
        if used is not None:
            gpu = GaugeMetricFamily(
                "sipd_device_memory_used_bytes",
                "Device memory the worker process holds (CUDA only).",
                labels=["device"],
            )
            gpu.add_metric([self.device], used)
            yield gpu


class _GpuMemory:
    """Memory the worker holds on the GPU, from nvidia-smi (the daemon itself never
    initialises CUDA: only the worker touches the device). Cached for a few seconds."""

    def __init__(self, device: str) -> None:
        self.enabled = device.startswith("cuda") and shutil.which("nvidia-smi") is not None
        self._cached: tuple[float, int | None] = (0.0, None)

    def used_bytes(self, pid: int) -> int | None:
        if not self.enabled or not pid:
            return None
        at, value = self._cached
        if time.monotonic() - at < 5.0:
            return value
        value = None
        try:
            out = subprocess.run(
                [
                    "nvidia-smi",
                    "--query-compute-apps=pid,used_memory",
                    "--format=csv,noheader,nounits",
                ],
                capture_output=True,
                text=True,
                timeout=3,
                check=True,
            ).stdout
            value = 0
            for line in out.splitlines():
                parts = [p.strip() for p in line.split(",")]
                if len(parts) == 2 and parts[0] == str(pid) and parts[1].isdigit():
                    value += int(parts[1]) * 1024 * 1024  # MiB
        except (OSError, subprocess.SubprocessError) as exc:
            log.debug("nvidia-smi failed: %s", exc)
        self._cached = (time.monotonic(), value)
        return value
