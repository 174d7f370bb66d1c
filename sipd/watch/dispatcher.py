"""Running scenes: queued rows -> predict jobs -> outputs, retries, failed/.

A job carries up to BATCH scenes of one watch. When a batch fails for a
reason of its own input (INVALID_ARGUMENT and the like) each of its scenes
is run again alone, so one bad file fails only itself. Transient failures
(a worker crash, an interrupted daemon) are retried with exponential
backoff up to watch.retries times. The model named "latest" is resolved
when a batch is submitted.
"""

from __future__ import annotations

import logging
import queue
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sipd.config import WatchConfig
from sipd.errors import Code, InvalidArgument, NotFound, ResourceExhausted, is_transient
from sipd.jobs.engine import JobEngine
from sipd.modelrepo import ModelRepository
from sipd.projects import Projects
from sipd.store import FINAL_STATES
from sipd.watch.files import output_base
from sipd.watch.outputs import (
    delete_unit,
    free_destination,
    move_unit,
    output_paths,
    summary_of,
    write_error,
    write_summary,
)
from sipd.watch.products import raster_path
from sipd.watch.queue import WatchQueue, input_of, job_source
from sipd.watch.runtime import Runtime, WatchEvents, unit_key
from sipd.watch.spec import FAILED_DIR, PROCESSED_DIR

log = logging.getLogger("sipd.watch")

# Scenes per predict job: the predictor pipelines them, so fewer, larger jobs
# cost less than one job per scene; a bad file then costs one split.
BATCH = 8
# Predict jobs in the engine at once across watches: one running and one
# waiting keeps the worker busy without filling the queue interactive users share.
MAX_INFLIGHT = 2
# Seconds between checks for jobs that ended while no one listened.
RECONCILE_SECONDS = 5.0
# Seconds a watch waits before trying again when it has no model or project.
HOLD_SECONDS = 5.0


class Dispatcher:
    def __init__(
        self,
        *,
        queue_: WatchQueue,
        engine: JobEngine,
        models: ModelRepository,
        projects: Projects,
        config: WatchConfig,
        events: WatchEvents | None,
        runtime: Callable[[str], Runtime | None],
        wake: Callable[[], None],
    ) -> None:
        self.queue = queue_
        self.engine = engine
        self.models = models
        self.projects = projects
        self.config = config
        self.events = events
        self.runtime = runtime
        self.wake = wake
        self._finished: queue.SimpleQueue[int] = queue.SimpleQueue()
        self._last_reconcile = 0.0
        self._round_robin = 0

    def on_job(self, job: dict[str, Any]) -> None:
        """The engine's listener; called from its threads: hand over and return at once."""
        if job["state"] in FINAL_STATES and str(job.get("source", "")).startswith("watches/"):
            self._finished.put(job["id"])
            self.wake()

    def step(self) -> None:
        """Finish the scenes of ended jobs, then submit what is ready."""
        while True:
            try:
                job_id = self._finished.get_nowait()
            except queue.Empty:
                break
            self._complete(job_id)
        if time.monotonic() - self._last_reconcile > RECONCILE_SECONDS:
            self._last_reconcile = time.monotonic()
            for job_id in self.queue.finished_jobs():
                self._complete(job_id)
        self._dispatch()

    def _dispatch(self) -> None:
        inflight = self.queue.inflight_jobs()
        now_wall = time.time()
        watch_ids = self.queue.ready_watches(now_wall)
        if not watch_ids:
            return
        # Round robin: a watch with a large backlog does not starve the others.
        self._round_robin += 1
        start = self._round_robin % len(watch_ids)
        for watch_id in watch_ids[start:] + watch_ids[:start]:
            if inflight >= MAX_INFLIGHT:
                return
            rt = self.runtime(watch_id)
            if rt is None or rt.paused or rt.hold_until > time.monotonic():
                continue
            rows = self.queue.claim(watch_id, BATCH, now_wall)
            if rows and self._submit(rt, rows):
                inflight += 1

    def _submit(self, rt: Runtime, rows: list[dict[str, Any]]) -> bool:
        spec = rt.spec
        inputs, ids = [], []
        for row in rows:
            unit = Path(row["path"])
            if unit_key(unit) != (row["size"], row["mtime_ns"]):
                # Gone or rewritten since it settled: a new version is a new row.
                self.queue.drop(row["id"])
                continue
            try:
                source = raster_path(unit)
            except InvalidArgument as exc:
                self._fail(rt, row, str(exc), job_id=None)
                continue
            paths = output_paths(Path(spec.outbox), output_base(rt.layout, unit), spec.confidence)
            inputs.append(
                {
                    "path": source,
                    "output": paths["output"],
                    "confidence": paths["confidence"],
                    "probabilities": "",
                    "quicklook": paths["quicklook"],
                }
            )
            ids.append(row["id"])
        if not ids:
            return False
        try:
            self.projects.get(spec.project)
            version = self.models.resolve(spec.project, spec.model)
        except (NotFound, InvalidArgument) as exc:
            self.queue.release(ids)
            rt.hold_until = time.monotonic() + HOLD_SECONDS
            self.queue.set_last_error(spec.id, f"waiting: {exc}")
            return False
        model = f"projects/{spec.project}/models/{version}"
        params = {
            "model": model,
            "model_dir": str(self.models.path(spec.project, version)),
            "inputs": inputs,
            "background_mask": "",
            "tile_size": 0,
            "batch_size": 0,
            "overwrite": True,
        }
        try:
            job = self.engine.submit(
                "predict", params, project=spec.project, source=job_source(spec.id)
            )
        except ResourceExhausted:
            # The engine's queue is full of other work: wait, nothing is lost.
            self.queue.release(ids)
            rt.hold_until = time.monotonic() + HOLD_SECONDS
            return False
        self.queue.attach(ids, job["id"], model)
        log.info("watch %s: %d scene(s) -> job %d", spec.id, len(ids), job["id"])
        return True

    def _complete(self, job_id: int) -> None:
        rows = self.queue.rows_of_job(job_id)
        if not rows:
            return
        job = self.engine.get(job_id)
        if job["state"] not in FINAL_STATES:
            return
        rt = self.runtime(rows[0]["watch"])
        if rt is None:
            return
        if job["state"] == "SUCCEEDED":
            scenes = (job["result"] or {}).get("scenes", [])
            for row in rows:
                scene = _scene_of(row, scenes, job)
                try:
                    if scene is None:
                        reason = "the predict job returned no result for this scene"
                        self._fail(rt, row, reason, job_id)
                    else:
                        self._succeed(rt, row, scene, job)
                except OSError as exc:
                    # A full or read-only disk: the row stays RUNNING and the periodic
                    # reconcile tries these steps again.
                    message = f"cannot finish {row['path']}: {exc}; will try again"
                    log.warning("watch %s: %s", rt.spec.id, message)
                    self.queue.set_last_error(rt.spec.id, message)
            return
        ids = [r["id"] for r in rows]
        if all(r["stopping"] for r in rows):
            self.queue.release(ids)  # stopped by a daemon shutdown: not the scene's fault
            return
        error = job["error"] or job["state"].lower()
        code = Code.parse(job["error_code"])
        if job["state"] == "CANCELLED" or not is_transient(code):
            if len(rows) > 1 and job["state"] != "CANCELLED":
                log.info(
                    "watch %s: job %d failed; retrying its %d scenes one by one",
                    rt.spec.id,
                    job_id,
                    len(rows),
                )
                self.queue.split(ids)
                self.wake()
                return
            for row in rows:
                self._fail(rt, row, error, job_id)
            return
        for row in rows:
            if row["attempts"] >= self.config.retries:
                attempts = row["attempts"] + 1
                self._fail(rt, row, f"{error} (gave up after {attempts} attempts)", job_id)
                continue
            delay = self.config.retry_backoff_seconds * 2 ** row["attempts"]
            # A crash or out-of-memory may be one file's doing: isolate. An interrupted
            # daemon (ABORTED) is nobody's: keep the batch.
            split = len(rows) > 1 and code != Code.ABORTED
            self.queue.retry([row["id"]], time.time() + delay, split=split)
            if self.events is not None:
                self.events.scene_retried(rt.spec.id)
            log.warning(
                "watch %s: %s failed (%s); retry in %.1f s", rt.spec.id, row["path"], error, delay
            )

    def _succeed(self, rt: Runtime, row: dict[str, Any], scene: dict[str, Any], job: dict) -> None:
        spec = rt.spec
        unit = Path(row["path"])
        paths = output_paths(Path(spec.outbox), output_base(rt.layout, unit), spec.confidence)
        summary = summary_of(
            watch_id=spec.id, unit=str(unit), row=row, scene=scene, job=job, paths=paths
        )
        # The input's key unchanged: it is the file we classified, not a newer version
        # that arrived under the same name meanwhile (that one is a scene of its own).
        unchanged = unit_key(unit) == (row["size"], row["mtime_ns"])
        dest = row["dest"]
        if spec.on_success == "move" and unchanged and not dest:
            dest = str(free_destination(Path(spec.inbox) / PROCESSED_DIR, rt.layout.relative(unit)))
            self.queue.set_dest(row["id"], dest)
        if dest:
            summary["moved_to"] = dest
        write_summary(paths["summary"], summary)
        if unchanged and spec.on_success == "move":
            move_unit(unit, Path(dest))
        elif unchanged and spec.on_success == "delete":
            delete_unit(unit)
        done = self.queue.mark_done(row["id"], {"summary": paths["summary"], "moved_to": dest})
        if done and self.events is not None:
            self.events.scene_done(
                spec.id,
                float(scene.get("seconds") or 0.0),
                summary["timings"]["total_seconds"],
            )

    def _fail(self, rt: Runtime, row: dict[str, Any], reason: str, job_id: int | None) -> None:
        spec = rt.spec
        unit = Path(row["path"])
        dest = Path(
            row["dest"] or free_destination(Path(spec.inbox) / FAILED_DIR, rt.layout.relative(unit))
        )
        self.queue.set_dest(row["id"], str(dest))
        details = {
            "input": str(unit),
            "watch": f"watches/{spec.id}",
            "job": f"jobs/{job_id}" if job_id else "none",
            "attempts": row["attempts"] + 1,
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        try:
            # The reason first, then the input: whoever sees NAME in failed/ finds why beside it.
            write_error(dest, reason, details)
            if unit_key(unit) == (row["size"], row["mtime_ns"]):
                move_unit(unit, dest)
        except OSError as exc:
            # Still FAILED (its key keeps it from being taken again); the store has the reason.
            reason = f"{reason} (could not move it to {dest.parent}: {exc})"
        if self.queue.mark_failed(row["id"], reason):
            self.queue.set_last_error(spec.id, f"{unit.name}: {reason}")
            log.warning("watch %s: %s failed: %s", spec.id, unit, reason)
            if self.events is not None:
                self.events.scene_failed(spec.id)


def _scene_of(
    row: dict[str, Any], scenes: list[dict[str, Any]], job: dict[str, Any]
) -> dict[str, Any] | None:
    for scene in scenes:
        if input_of(str(scene.get("input", "")), row["path"]):
            return scene
    # Fall back on the position in the job's inputs (the predictor keeps the order).
    inputs = job["params"].get("inputs", [])
    for i, item in enumerate(inputs):
        if input_of(item.get("path", ""), row["path"]) and i < len(scenes):
            return scenes[i]
    return None
