"""The worker process: the only process that touches the device.

It receives ("run", job_id, type, params JSON) over a pipe, parses the params
into their contract (sipd.contracts.jobs), runs the handler for `type`, and
sends back progress events and one final message: ("done", id, type, result
JSON) | ("cancelled", id, reason) | ("failed", id, code, message).
State that should stay warm between jobs (inference sessions) lives in
module globals of sipd.jobs.handlers, which only this process imports.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
import select
import signal
import sys
import threading
import time
import traceback
from typing import Any

from sipd.contracts.jobs import parse_params
from sipd.contracts.worker_settings import WorkerSettings
from sipd.errors import Code, SipError, disk_full
from sipd.progress import JobCancelled, JobContext, ProgressEvent


def worker_main(conn: Any, cancel_event: Any, device: str, settings: WorkerSettings) -> None:
    # Ctrl-C in a terminal reaches the whole process group; the daemon decides
    # how the running job ends, so the worker ignores SIGINT.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s worker[%(process)d] %(name)s: %(message)s",
        stream=sys.stderr,
    )
    threads = settings.threads
    if threads:
        os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    # GDAL's block cache defaults to 5% of RAM, and reading a large scene tile
    # by tile fills whatever it may: bounded, the worker's memory stays flat
    # with scene size. GDAL takes the setting when it first caches a block,
    # which no code in this process has done yet.
    cache_mb = settings.inference.gdal_cache_mb
    if cache_mb > 0:
        os.environ["GDAL_CACHEMAX"] = str(cache_mb)
    from sipd.jobs import handlers  # after the environment is set for torch/onnxruntime

    if settings.allowed_roots:
        from sipd.paths import PathPolicy
        from sipd.raster import check_opened_files_everywhere

        policy = PathPolicy(settings.allowed_roots)
        check_opened_files_everywhere(
            functools.partial(policy.check_opened, what="a raster this job opened")
        )

    if threads:
        import torch

        torch.set_num_threads(threads)

    send_lock = threading.Lock()

    def send(message: tuple[Any, ...]) -> None:
        with send_lock:
            conn.send(message)

    _exit_with_parent()
    send(("ready", os.getpid(), device))
    log = logging.getLogger("sipd.worker")
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return  # the daemon is gone
        if message[0] == "stop":
            return
        _, job_id, job_type, params_json = message

        def emit(event: ProgressEvent, job_id: int = job_id) -> None:
            send(("progress", job_id, dataclasses.asdict(event)))

        ctx = JobContext(
            device, emit, cancel_event, logging.getLogger(f"sipd.job.{job_id}"), settings
        )
        try:
            params = parse_params(job_type, json.loads(params_json))
            result = handlers.run(params, ctx)
        except JobCancelled as exc:
            send(("cancelled", job_id, str(exc)))
        except SipError as exc:
            send(("failed", job_id, exc.code, str(exc)))
        except MemoryError:
            send(
                (
                    "failed",
                    job_id,
                    Code.RESOURCE_EXHAUSTED,
                    "out of memory; try a smaller tile or batch size",
                )
            )
        except Exception as exc:
            full = disk_full(exc)
            if full is not None:  # not a bug: transient, a watch retries once space is freed
                send(("failed", job_id, full.code, str(full)))
                continue
            # A bug: keep the worker alive, report it, log the trace.
            log.error("job %s (%s) failed:\n%s", job_id, job_type, traceback.format_exc())
            send(("failed", job_id, Code.INTERNAL, f"internal error: {type(exc).__name__}: {exc}"))
        else:
            send(("done", job_id, job_type, result.model_dump_json()))


def _exit_with_parent() -> None:
    """If the daemon dies (even by SIGKILL), end this process at once.

    Nobody would record the running job's end: the next daemon marks it FAILED
    "interrupted", so the worker must not go on to publish its outputs (an
    orphan that finished would leave complete outputs under a failed job). A
    pidfd wakes this thread the moment the parent exits; polling every 0.5 s
    left an orphan time to finish a job's last step. The window that remains
    (the parent killed between a rename and reading "done") is a few ms.
    """
    parent = os.getppid()
    try:
        pidfd = os.pidfd_open(parent)
    except (AttributeError, OSError):  # not Linux >= 5.3: poll instead
        pidfd = None
    if os.getppid() != parent:  # died before the pidfd was open
        os._exit(1)

    def watch() -> None:
        if pidfd is not None:
            select.select([pidfd], [], [])  # readable when the parent has exited
        else:
            while os.getppid() == parent:
                time.sleep(0.05)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()
