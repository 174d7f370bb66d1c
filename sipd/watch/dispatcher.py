"""Running scenes: queued rows -> predict jobs -> outputs, retries, failed/.

A job carries up to BATCH scenes of one watch. Its scenes move from QUEUED to
RUNNING in the transaction that inserts the job (WatchQueue.attach as the
engine's on_insert hook): a crash leaves either both or neither.

When a batch fails for a reason of its own input (INVALID_ARGUMENT and the
like) each of its scenes is run again alone, so one bad file fails only
itself. Transient failures (sipd.errors.is_transient: a worker crash, an
interrupted daemon) are retried with exponential backoff up to
watch.retries times (`failure_action`). The model named "latest" is
resolved when a batch is submitted.
"""

from __future__ import annotations

import logging
import queue
import time
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Any

from sipd.config import WatchConfig
from sipd.contracts.job_record import JobRecord, JobState
from sipd.contracts.jobs import PredictItem, PredictResult, ScenePrediction
from sipd.contracts.preprocessing import PreprocessStep
from sipd.errors import (
    Code,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    SipError,
    is_transient,
)
from sipd.job_requests import JobRequests, predict_params
from sipd.jobs.engine import JobEngine
from sipd.modelrepo import ModelRepository, ModelVersion
from sipd.projects import Projects
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
from sipd.watch.products import check_unit, raster_path
from sipd.watch.queue import ClaimLost, WatchQueue, input_of, job_source
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
        requests: JobRequests | None,
        events: WatchEvents | None,
        runtime: Callable[[str], Runtime | None],
        wake: Callable[[], None],
    ) -> None:
        self.queue = queue_
        self.engine = engine
        self.models = models
        self.projects = projects
        self.config = config
        # Checks a raw product the way a Predict request's is (watches with a recipe).
        self.requests = requests
        self.events = events
        self.runtime = runtime
        self.wake = wake
        self._finished: queue.SimpleQueue[int] = queue.SimpleQueue()
        self._last_reconcile = 0.0
        self._round_robin = 0

    def on_job(self, job: JobRecord) -> None:
        """The engine's listener; called from its threads: hand over and return at once."""
        if job.final and job.source.startswith("watches/"):
            self._finished.put(job.id)
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
            # Raw products one per job: each takes tens of seconds to preprocess, and a
            # failed batch is split and run again, which would preprocess the others twice.
            rows = self.queue.claim(watch_id, 1 if rt.spec.recipe else BATCH, now_wall)
            if rows and self._submit(rt, rows):
                inflight += 1

    def _submit(self, rt: Runtime, rows: list[dict[str, Any]]) -> bool:
        """One predict job for `rows` (QUEUED, as `claim` read them); True when submitted."""
        spec = rt.spec
        try:
            self.projects.get(spec.project)
            model = self.models.get(spec.project, self.models.resolve(spec.project, spec.model))
        except (NotFound, InvalidArgument, FailedPrecondition) as exc:
            # The rows never left QUEUED: they wait until the project or a usable model exists.
            rt.hold_until = time.monotonic() + HOLD_SECONDS
            self.queue.set_last_error(spec.id, f"waiting: {exc}")
            return False
        items: list[PredictItem] = []
        ids: list[int] = []
        for row in rows:
            unit = Path(row["path"])
            if unit_key(unit) != (row["size"], row["mtime_ns"]):
                # Gone or rewritten since it settled: a new version is a new row.
                self.queue.drop(row["id"])
                continue
            base = output_base(rt.layout, unit)
            warnings: list[str] = []
            try:
                if spec.recipe:
                    source, step, warnings = self._product(unit, model, spec.recipe)
                else:
                    source, step = raster_path(unit), None
            except SipError as exc:
                self._fail(rt, row, str(exc), job_id=None)
                continue
            paths = output_paths(Path(spec.outbox), base, spec.confidence)
            items.append(
                PredictItem(
                    input=source,
                    output=paths["output"],
                    confidence=paths["confidence"],
                    quicklook=paths["quicklook"],
                    preprocess=step,
                    preprocessed=f"{Path(spec.outbox) / base}_preprocessed.tif" if step else "",
                    keep_preprocessed=spec.keep_preprocessed,
                    warnings=warnings,
                )
            )
            ids.append(row["id"])
        if not ids:
            return False
        # overwrite: a retried scene replaces what an earlier attempt left in the outbox.
        params = predict_params(model, items, overwrite=True)
        try:
            job = self.engine.submit(
                params,
                project=spec.project,
                source=job_source(spec.id),
                # Runs inside the job's INSERT transaction: job and RUNNING rows, or neither.
                on_insert=lambda db, job_id: self.queue.attach(ids, job_id, model.name, db),
            )
        except ResourceExhausted:
            # The engine's queue is full of other work: wait, nothing is lost.
            rt.hold_until = time.monotonic() + HOLD_SECONDS
            return False
        except ClaimLost as exc:
            # A scene was dropped, failed or removed with its watch meanwhile; no job was
            # made, and the next round reads the queue again.
            log.info("watch %s: batch not submitted: %s", spec.id, exc)
            return False
        log.info("watch %s: %d scene(s) -> job %d", spec.id, len(ids), job.id)
        return True

    def _product(
        self, unit: Path, model: ModelVersion, recipe: str
    ) -> tuple[str, PreprocessStep, list[str]]:
        """A raw product arriving in a watch with a recipe: the unit itself (folder or
        zip: the preprocessor reads it in place), the step, and warnings; checked as a
        Predict request of a raw product is (sensor, CRS, DEM, the model's bands)."""
        check_unit(unit)
        if self.requests is None:
            raise FailedPrecondition("this daemon's watches cannot preprocess raw products")
        checked = self.requests.raw_input_step(model, unit, recipe)
        if checked is None:
            raise InvalidArgument(
                f"{unit.name} is not a product recipe {recipe} reads (see `sipctl preprocess "
                "list` for the forms each preprocessor accepts); this watch preprocesses its "
                "arrivals"
            )
        step, warnings = checked
        if step.preprocessor == "micasense" and not unit.is_dir():
            # One frame would start a run for the whole capture, once per frame.
            raise InvalidArgument(
                f"{unit.name} is one frame of a capture; a watch with a micasense recipe "
                "takes one folder per capture (move the capture's frames in as a folder)"
            )
        return str(unit), step, warnings

    def _complete(self, job_id: int) -> None:
        rows = self.queue.rows_of_job(job_id)
        if not rows:
            return
        job = self.engine.get(job_id)
        if not job.final:
            return
        rt = self.runtime(rows[0]["watch"])
        if rt is None:
            return
        if job.state == JobState.SUCCEEDED:
            scenes = job.result.scenes if isinstance(job.result, PredictResult) else []
            # All the job's scenes (finished ones too) in request order, for `_scene_of`.
            members = [r["id"] for r in self.queue.rows_of_job(job_id, running_only=False)]
            for row in rows:
                scene = _scene_of(row, members.index(row["id"]), len(members), scenes)
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
        error = job.error or job.state.lower()
        action = failure_action(job.state, job.error_code or Code.INTERNAL, len(rows))
        if action == Action.SPLIT:
            log.info(
                "watch %s: job %d failed; retrying its %d scenes one by one",
                rt.spec.id,
                job_id,
                len(rows),
            )
            self.queue.split(ids)
            self.wake()
            return
        if action == Action.FAIL:
            for row in rows:
                self._fail(rt, row, error, job_id)
            return
        for row in rows:
            if row["attempts"] >= self.config.retries:
                attempts = row["attempts"] + 1
                self._fail(rt, row, f"{error} (gave up after {attempts} attempts)", job_id)
                continue
            delay = self.config.retry_backoff_seconds * 2 ** row["attempts"]
            self.queue.retry([row["id"]], time.time() + delay, split=action == Action.RETRY_ALONE)
            if self.events is not None:
                self.events.scene_retried(rt.spec.id)
            log.warning(
                "watch %s: %s failed (%s); retry in %.1f s", rt.spec.id, row["path"], error, delay
            )

    def _succeed(
        self, rt: Runtime, row: dict[str, Any], scene: ScenePrediction, job: JobRecord
    ) -> None:
        spec = rt.spec
        unit = Path(row["path"])
        paths = output_paths(Path(spec.outbox), output_base(rt.layout, unit), spec.confidence)
        summary = summary_of(
            watch_id=spec.id,
            unit=str(unit),
            row=row,
            scene=scene,
            job=job,
            paths=paths,
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
            self.events.scene_done(spec.id, scene.seconds, summary["timings"]["total_seconds"])

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


class Action(StrEnum):
    """What becomes of the scenes of a job that did not succeed."""

    FAIL = "fail"  # each scene to failed/ with the job's error
    SPLIT = "split"  # each scene queued again alone, to find the bad one(s)
    RETRY = "retry"  # queued again after a backoff, as the same batch
    RETRY_ALONE = "retry_alone"  # queued again after a backoff, each scene alone


def failure_action(state: JobState, code: Code, scenes: int) -> Action:
    """The retry policy: retry only what is transient (sipd.errors.is_transient).

    A failure of the input's own (INVALID_ARGUMENT, INTERNAL, ...) would fail again the
    same way: a batch is split so one bad file fails only itself, a single scene fails.
    A cancelled job was stopped by someone: its scenes fail. A transient failure is
    retried (the caller counts attempts): UNAVAILABLE (the worker died: out of memory or
    a native crash) or RESOURCE_EXHAUSTED may be one file's doing, so each scene is
    retried alone; ABORTED (the daemon was interrupted) is nobody's, so the batch stays."""
    if state == JobState.CANCELLED:
        return Action.FAIL
    if not is_transient(code):
        return Action.SPLIT if scenes > 1 else Action.FAIL
    if code == Code.ABORTED or scenes == 1:
        return Action.RETRY
    return Action.RETRY_ALONE


def _scene_of(
    row: dict[str, Any], index: int, members: int, scenes: list[ScenePrediction]
) -> ScenePrediction | None:
    """The result scene of `row`, the `index`-th of the job's `members` scenes.

    Matched by the input the predictor reports; else by position, which holds when the
    result has one scene per request item (the predictor keeps the request order, and a
    job's rows in id order are its request order)."""
    for scene in scenes:
        if input_of(scene.input, row["path"]):
            return scene
    if len(scenes) == members:
        return scenes[index]
    return None
