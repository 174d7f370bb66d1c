"""The job engine: a durable queue in the store, one worker process, progress, cancel.

Threads in the daemon:
- the dispatcher hands the oldest QUEUED job to the worker when it is idle;
- a reader per worker process receives its messages; end-of-file on the
  pipe means the worker died: the running job fails with the reason and a
  new worker is spawned.
Cancel is cooperative (a shared event the job checks per batch/tile); when
the job has not stopped after the grace period its worker is killed.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import queue
import signal
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from sipd.contracts.job_record import JobRecord, JobState
from sipd.contracts.jobs import (
    JobParams,
    JobResult,
    JobType,
    describe,
    job_type_of,
    parse_result,
)
from sipd.contracts.worker_settings import WorkerSettings
from sipd.errors import Code, NotFound, ResourceExhausted, SipError
from sipd.jobs.worker import worker_main
from sipd.store import Store

log = logging.getLogger("sipd.jobs")

JobListener = Callable[[JobRecord], None]
# (params, result) -> the result to store; raises SipError to fail the job.
Finisher = Callable[[Any, JobResult], JobResult]
# Runs inside the transaction that inserts the job: (connection, new job id).
OnInsert = Callable[[sqlite3.Connection, int], None]


class JobEngine:
    def __init__(
        self,
        store: Store,
        *,
        device: str,
        queue_limit: int,
        cancel_grace_seconds: float,
        worker_settings: WorkerSettings,
    ) -> None:
        self.store = store
        self.device = device
        self.queue_limit = queue_limit
        self.cancel_grace = cancel_grace_seconds
        self._settings = worker_settings
        self._mp = multiprocessing.get_context("spawn")  # fork is unsafe with gRPC threads and CUDA
        self._cancel_event = self._mp.Event()
        self._cond = threading.Condition()
        self._send_lock = threading.Lock()
        self._process: Any = None
        self._conn: Any = None
        self._worker_state = "DOWN"
        self._current: int | None = None
        self._cancel_reason: dict[int, str] = {}
        self._hard_killed: set[int] = set()
        self._restarts = 0
        self._stopping = False
        self._subscribers: dict[int, list[queue.Queue[JobRecord]]] = {}
        self._listeners: list[JobListener] = []
        self._finishers: dict[JobType, Finisher] = {}
        self._dispatcher: threading.Thread | None = None

    # -- lifecycle ----------------------------------------------------------------

    def start(self) -> list[JobRecord]:
        """Mark jobs a killed daemon left RUNNING as FAILED, start the worker; return
        those jobs so their owners can clean what they left half-written."""
        interrupted = self.store.fail_interrupted_jobs()
        for job_id in interrupted:
            log.warning("job %d was running when the daemon stopped: marked FAILED", job_id)
        self._spawn_worker()
        self._dispatcher = threading.Thread(
            target=self._dispatch_loop, name="dispatcher", daemon=True
        )
        self._dispatcher.start()
        return [self.get(job_id) for job_id in interrupted]

    def shutdown(self, grace_seconds: float) -> None:
        """Stop dispatching; give the running job `grace_seconds` to stop; stop the worker."""
        with self._cond:
            self._stopping = True
            running = self._current
            self._cond.notify_all()
        if running is not None:
            log.info("stopping: cancelling running job %d", running)
            self._cancel_reason[running] = "cancelled: the daemon was stopped"
            self._cancel_event.set()
            deadline = time.monotonic() + grace_seconds
            with self._cond:
                while self._current is not None and time.monotonic() < deadline:
                    self._cond.wait(0.1)
                still = self._current
            if still is not None:
                log.warning(
                    "job %d did not stop within %.0f s: killing the worker", still, grace_seconds
                )
                self._hard_killed.add(still)
                self._kill_worker()
                with self._cond:
                    while self._current is not None and time.monotonic() < deadline + 5:
                        self._cond.wait(0.1)
        self._stop_worker()
        if self._dispatcher is not None:
            self._dispatcher.join(timeout=5)

    # -- public API ---------------------------------------------------------------

    def add_finisher(self, job_type: JobType, finisher: Finisher) -> None:
        """Run `finisher` in the daemon on a job's result before the job is final:
        what only the daemon may do (register a scene in the store) is part of the
        job, and its failure fails the job with the reason."""
        self._finishers[job_type] = finisher

    def add_listener(self, listener: JobListener) -> None:
        """Called with the job after every state change (not for progress)."""
        self._listeners.append(listener)

    def submit(
        self,
        params: JobParams,
        *,
        project: str = "",
        source: str = "api",
        on_insert: OnInsert | None = None,
    ) -> JobRecord:
        """Queue a job; its type follows from the type of `params`."""
        job_type = job_type_of(params)
        queued = self.store.count_jobs("QUEUED")
        if queued >= self.queue_limit:
            raise ResourceExhausted(
                f"the job queue is full ({queued} queued, "
                f"limit jobs.queue_limit={self.queue_limit}); "
                "wait for jobs to finish or raise the limit"
            )
        job_id = self.store.insert_job(
            job_type, project, params.model_dump(mode="json"), source, on_insert
        )
        job = self.get(job_id)
        log.info("job %d (%s) queued", job_id, job_type)
        self._notify_listeners(job)
        with self._cond:
            self._cond.notify_all()
        return job

    def get(self, job_id: int) -> JobRecord:
        row = self.store.get_job(job_id)
        if row is None:
            raise NotFound(f"job jobs/{job_id} does not exist")
        return JobRecord.from_row(row)

    def list(
        self,
        *,
        state: str = "",
        type_: str = "",
        project: str = "",
        before_id: int | None = None,
        limit: int = 100,
    ) -> list[JobRecord]:
        rows = self.store.list_jobs(
            state=state, type_=type_, project=project, before_id=before_id, limit=limit
        )
        return [JobRecord.from_row(r) for r in rows]

    def cancel(self, job_id: int, reason: str = "cancelled by request") -> JobRecord:
        job = self.get(job_id)
        if job.state == JobState.QUEUED:
            cancelled = self.store.finish_job(
                job_id, JobState.CANCELLED, error=reason, error_code=Code.CANCELLED
            )
            if cancelled:
                self._job_changed(job_id, final=True)
            return self.get(job_id)
        with self._cond:
            running_here = self._current == job_id
        if job.state == JobState.RUNNING and running_here:
            self._cancel_reason[job_id] = reason
            self._cancel_event.set()
            timer = threading.Timer(self.cancel_grace, self._hard_cancel, args=(job_id,))
            timer.daemon = True
            timer.start()
        return self.get(job_id)

    def wait(self, job_id: int, timeout: float | None = None) -> JobRecord:
        """Block until the job is final (used by in-process callers such as watches)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        events = self.subscribe(job_id)
        try:
            while True:
                job = self.get(job_id)
                if job.final:
                    return job
                remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
                if remaining == 0.0:
                    return job
                try:
                    events.get(timeout=min(remaining or 1.0, 1.0))
                except queue.Empty:
                    pass
        finally:
            self.unsubscribe(job_id, events)

    def subscribe(self, job_id: int) -> queue.Queue[JobRecord]:
        q: queue.Queue[JobRecord] = queue.Queue(maxsize=1000)
        with self._cond:
            self._subscribers.setdefault(job_id, []).append(q)
        return q

    def unsubscribe(self, job_id: int, q: queue.Queue[JobRecord]) -> None:
        with self._cond:
            subs = self._subscribers.get(job_id, [])
            if q in subs:
                subs.remove(q)
            if not subs:
                self._subscribers.pop(job_id, None)

    def status(self) -> dict[str, Any]:
        with self._cond:
            return {
                "device": self.device,
                "queue_length": self.store.count_jobs("QUEUED"),
                "worker": {
                    "state": self._worker_state,
                    "pid": self._process.pid
                    if self._process is not None and self._worker_state != "DOWN"
                    else 0,
                    "current_job": f"jobs/{self._current}" if self._current is not None else "",
                    "restarts": self._restarts,
                },
            }

    # -- worker process -----------------------------------------------------------

    def _spawn_worker(self) -> None:
        parent, child = self._mp.Pipe(duplex=True)
        process = self._mp.Process(
            target=worker_main,
            args=(child, self._cancel_event, self.device, self._settings),
            name="sipd-worker",
            daemon=True,
        )
        process.start()
        child.close()  # so that the worker's death reads as EOF here
        with self._cond:
            self._process, self._conn = process, parent
            self._worker_state = "STARTING"
        reader = threading.Thread(
            target=self._read_loop, args=(process, parent), name="worker-reader", daemon=True
        )
        reader.start()
        log.info("worker process %d started (device %s)", process.pid, self.device)

    def _send(self, message: tuple[Any, ...]) -> None:
        with self._send_lock:
            self._conn.send(message)

    def _kill_worker(self) -> None:
        process = self._process
        if process is not None and process.is_alive():
            process.kill()

    def _stop_worker(self) -> None:
        process = self._process
        if process is None:
            return
        try:
            self._send(("stop",))
        except (OSError, ValueError):
            pass
        process.join(timeout=5)
        if process.is_alive():
            process.kill()
            process.join(timeout=5)
        with self._cond:
            self._worker_state = "DOWN"

    def _hard_cancel(self, job_id: int) -> None:
        with self._cond:
            if self._current != job_id:
                return
        log.warning(
            "job %d did not stop within %.1f s of its cancel: killing the worker",
            job_id,
            self.cancel_grace,
        )
        self._hard_killed.add(job_id)
        self._kill_worker()

    def _read_loop(self, process: Any, conn: Any) -> None:
        while True:
            try:
                message = conn.recv()
            except (EOFError, OSError):
                break
            kind = message[0]
            if kind == "ready":
                with self._cond:
                    self._worker_state = "IDLE"
                    self._cond.notify_all()
                log.info("worker process %d ready", message[1])
            elif kind == "progress":
                self._on_progress(message[1], message[2])
            elif kind == "done":
                self._on_done(message[1], message[2], message[3])
            elif kind == "cancelled":
                reason = self._cancel_reason.pop(message[1], message[2])
                self._on_final(
                    message[1], JobState.CANCELLED, error=reason, error_code=Code.CANCELLED
                )
            elif kind == "failed":
                self._on_final(message[1], JobState.FAILED, error=message[3], error_code=message[2])
        self._on_worker_exit(process)

    def _on_worker_exit(self, process: Any) -> None:
        process.join(timeout=5)
        code = process.exitcode
        if code is not None and code < 0:
            try:
                how = f"killed by signal {signal.Signals(-code).name}"
            except ValueError:
                how = f"killed by signal {-code}"
        else:
            how = f"exited with code {code}"
        with self._cond:
            job_id = self._current
            stopping = self._stopping
            self._worker_state = "DOWN"
        if job_id is not None:
            if job_id in self._hard_killed:
                reason = self._cancel_reason.pop(job_id, "cancelled by request")
                self._on_final(
                    job_id,
                    JobState.CANCELLED,
                    error=f"{reason} (the worker was stopped after the grace period)",
                    error_code=Code.CANCELLED,
                )
            else:
                log.error("worker process %d %s while running job %d", process.pid, how, job_id)
                self._on_final(
                    job_id,
                    JobState.FAILED,
                    error=f"the worker process {how} while running this job "
                    "(out of memory or a crash "
                    "in native code are the usual causes); the daemon restarted the worker",
                    # Maybe one input's doing, maybe a passing shortage: worth
                    # another try, alone (the watch dispatcher splits batches).
                    error_code=Code.UNAVAILABLE,
                )
        elif not stopping:
            log.error("worker process %d %s while idle", process.pid, how)
        if not stopping:
            self._restarts += 1
            self._spawn_worker()

    # -- dispatch and bookkeeping -------------------------------------------------

    def _dispatch_loop(self) -> None:
        while True:
            with self._cond:
                while not self._stopping and not (
                    self._worker_state == "IDLE" and self._current is None
                ):
                    self._cond.wait(0.5)
                if self._stopping:
                    return
            row = self.store.next_queued_job()
            if row is None:
                with self._cond:
                    self._cond.wait(0.5)
                continue
            job = JobRecord.from_row(row)
            if job.params is None:
                # Written by another sipd version in a shape this one cannot read.
                self._on_final(
                    job.id,
                    JobState.FAILED,
                    error=f"the params of this {job.type} job, queued by another version of "
                    "sipd, are not understood by this one; submit the job again",
                    error_code=Code.FAILED_PRECONDITION,
                )
                continue
            if not self.store.mark_running(job.id):
                continue  # cancelled meanwhile
            with self._cond:
                self._current = job.id
                self._worker_state = "BUSY"
                self._cancel_event.clear()
            log.info("job %d (%s) running", job.id, job.type)
            self._job_changed(job.id)
            try:
                self._send(("run", job.id, str(job.type), job.params.model_dump_json()))
            except (OSError, ValueError):
                pass  # the worker died; the reader thread fails the job and respawns

    def _on_progress(self, job_id: int, event: dict[str, Any]) -> None:
        row = self.store.get_job(job_id)
        if row is None:
            return
        fraction = float(event.get("fraction", 0.0))
        elapsed = time.time() - (row["start_time"] or time.time())
        event["eta_seconds"] = elapsed * (1 - fraction) / fraction if 0.01 < fraction < 1 else 0.0
        self.store.set_progress(job_id, event)
        self._job_changed(job_id, job=JobRecord.from_row({**row, "progress": event}))

    def _on_done(self, job_id: int, job_type: str, data: str) -> None:
        """The worker's result, checked against its contract before it is stored."""
        try:
            result = parse_result(job_type, json.loads(data))
        except (ValidationError, ValueError) as exc:
            detail = describe(exc) if isinstance(exc, ValidationError) else str(exc)
            log.error("job %d (%s) returned a malformed result: %s", job_id, job_type, detail)
            self._on_final(
                job_id,
                JobState.FAILED,
                error=f"internal error: the {job_type} job returned a malformed result ({detail})",
                error_code=Code.INTERNAL,
            )
            return
        finisher = self._finishers.get(JobType(job_type))
        if finisher is not None:
            try:
                result = finisher(self.get(job_id).params, result)
            except SipError as exc:
                self._on_final(job_id, JobState.FAILED, error=str(exc), error_code=exc.code)
                return
            except Exception as exc:
                log.exception("job %d (%s): finishing failed", job_id, job_type)
                self._on_final(
                    job_id,
                    JobState.FAILED,
                    error=f"internal error finishing the {job_type} job: {exc}",
                    error_code=Code.INTERNAL,
                )
                return
        self._on_final(job_id, JobState.SUCCEEDED, result=result.model_dump(mode="json"))

    def _on_final(self, job_id: int, state: JobState, **fields: Any) -> None:
        changed = self.store.finish_job(job_id, state, **fields)
        with self._cond:
            if self._current == job_id:
                self._current = None
                if self._worker_state == "BUSY":
                    self._worker_state = "IDLE"
            self._cond.notify_all()
        self._hard_killed.discard(job_id)
        if changed:
            job = self.get(job_id)
            level = logging.INFO if state == JobState.SUCCEEDED else logging.WARNING
            log.log(
                level,
                "job %d (%s) %s%s",
                job_id,
                job.type,
                state,
                f": {job.error}" if job.error else "",
            )
            self._job_changed(job_id, final=True, job=job)

    def _job_changed(self, job_id: int, final: bool = False, job: JobRecord | None = None) -> None:
        """Publish the job to its streams (and listeners on state changes); callers
        that just read or built the row pass it so it is not read again."""
        if job is None:
            row = self.store.get_job(job_id)
            if row is None:
                return
            job = JobRecord.from_row(row)
        with self._cond:
            subscribers = list(self._subscribers.get(job_id, []))
        for q in subscribers:
            try:
                q.put_nowait(job)
            except queue.Full:
                pass  # a stalled stream loses intermediate progress, never the final event
        if final or job.state == JobState.RUNNING and job.progress is None:
            self._notify_listeners(job)

    def _notify_listeners(self, job: JobRecord) -> None:
        for listener in self._listeners:
            try:
                listener(job)
            except Exception:
                log.exception("job listener failed")
