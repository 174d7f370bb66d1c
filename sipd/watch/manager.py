"""WatchManager: inbox folders -> durable queue -> predict jobs -> outbox.

Threads:
- watchdog's observer turns file events into "look at this unit" notes;
- the scanner (sipd/watch/scanner.py) settles units (quiet period,
  sentinels), rescans every inbox at start and every `rescan_seconds`
  (files that arrived while sipd was down, events a network filesystem
  never sends), and queues complete ones, up to watch.queue_limit;
- the dispatcher (sipd/watch/dispatcher.py) submits queued scenes as
  predict jobs and finishes those whose job ended.

Exactly once: a scene is a row keyed by path, size and mtime; every step
after its job ends is repeatable and the row is marked DONE/FAILED last, so
a crash at any point leads at the next start either to the same steps
again (same outputs, same names) or to the job being run again, never to a
second row or a second output set. sipd/watch/queue.py covers the submit.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from watchdog.observers import Observer

from sipd.config import WatchConfig
from sipd.errors import FailedPrecondition, InvalidArgument, NotFound, SipError
from sipd.job_requests import JobRequests
from sipd.jobs.engine import JobEngine
from sipd.modelrepo import ModelRepository
from sipd.paths import PathPolicy, refuse_data_dir
from sipd.projects import Projects
from sipd.recipes import RecipeBook
from sipd.store import Store
from sipd.watch.dispatcher import Dispatcher
from sipd.watch.files import Layout
from sipd.watch.queue import ACTIVE, PAUSED, WatchQueue
from sipd.watch.runtime import Runtime, WatchEvents
from sipd.watch.scanner import EventSink, Scanner
from sipd.watch.settle import Settler
from sipd.watch.spec import WatchSpec, check_folders, spec_from_dict

log = logging.getLogger("sipd.watch")

# Seconds between scanner passes over the units waiting to settle.
TICK = 0.25


class WatchManager:
    def __init__(
        self,
        *,
        store: Store,
        engine: JobEngine,
        models: ModelRepository,
        projects: Projects,
        policy: PathPolicy,
        config: WatchConfig,
        recipes: RecipeBook,
        requests: JobRequests | None = None,
        events: WatchEvents | None = None,
    ) -> None:
        self.queue = WatchQueue(store)
        self.recipes = recipes
        self.engine = engine
        self.models = models
        self.projects = projects
        self.policy = policy
        self.config = config
        self._runtimes: dict[str, Runtime] = {}
        self._lock = threading.RLock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._observer: Any = None
        self._threads: list[threading.Thread] = []
        self.scanner = Scanner(self.queue, config, self._all, self._schedule, self._wake.set)
        self.dispatcher = Dispatcher(
            queue_=self.queue,
            engine=engine,
            models=models,
            projects=projects,
            config=config,
            requests=requests,
            events=events,
            runtime=self._one,
            wake=self._wake.set,
        )
        # Registered now, before the engine starts, so no job end is missed.
        engine.add_listener(self.dispatcher.on_job)

    # -- lifecycle ----------------------------------------------------------------

    def sync_config(self) -> None:
        """Make the watches declared in sipd.yaml exist; drop those no longer declared."""
        declared = {}
        for i, entry in enumerate(self.config.watches):
            if not isinstance(entry, dict):
                raise InvalidArgument(f"watch.watches[{i}] must be a mapping of watch fields")
            spec = self._checked(spec_from_dict(entry, f"watch.watches[{i}]"), strict=False)
            declared[spec.id] = spec
        existing = {w["id"]: w for w in self.queue.list_watches()}
        for spec in declared.values():
            if spec.id in existing:
                self.queue.update_spec(spec, from_config=True)
            else:
                self.queue.create_watch(spec, from_config=True)
            self._make_folders(spec)
        for watch_id, row in existing.items():
            if row["from_config"] and watch_id not in declared:
                log.info("watch %s is no longer in the config: removed", watch_id)
                self.queue.delete_watch(watch_id)

    def start(self) -> None:
        self.sync_config()
        self.queue.clear_stopping_of_live_jobs()
        logging.getLogger("watchdog.observers.inotify").addFilter(_StopRace(self._stop))
        self._observer = Observer()
        self._observer.daemon = True
        self._observer.start()
        for row in self.queue.list_watches():
            spec: WatchSpec = row["spec"]
            try:
                self._check_data_dir(
                    Path(os.path.realpath(spec.inbox)),
                    Path(os.path.realpath(spec.outbox)),
                    f"watch {spec.id}",
                )
            except SipError as exc:
                # A watch stored before this check existed: it would move the
                # daemon's own files away. It stays paused with the reason.
                log.error("%s; watch %s paused", exc, spec.id)
                self.queue.set_state(spec.id, PAUSED)
                self.queue.set_last_error(spec.id, str(exc))
                self._add_runtime(spec, True)
                continue
            self._add_runtime(spec, row["state"] == PAUSED)
        loops: list[tuple[Callable[[], None], str]] = [
            (self._scan_loop, "watch-scan"),
            (self._dispatch_loop, "watch-dispatch"),
        ]
        for target, name in loops:
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        self._wake.set()
        log.info("watching %d folder(s)", len(self._runtimes))

    def stop(self) -> None:
        """Stop taking and dispatching. Scenes whose jobs the engine is about to stop go back
        to the queue at the next start without counting as an attempt."""
        self._stop.set()
        self._wake.set()
        for thread in self._threads:
            thread.join(timeout=10)
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=5)
        self.queue.mark_stopping()

    def _scan_loop(self) -> None:
        while not self._stop.wait(TICK):
            try:
                self.scanner.tick()
            except Exception:
                log.exception("watch scanner failed; going on")

    def _dispatch_loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(timeout=2 * TICK)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self.dispatcher.step()
            except Exception:
                log.exception("watch dispatcher failed; going on")

    # -- the API ------------------------------------------------------------------

    def create(self, data: dict[str, Any]) -> dict[str, Any]:
        spec = self._checked(spec_from_dict(data, "watch"), strict=True)
        self._make_folders(spec)
        self.queue.create_watch(spec)
        self._add_runtime(spec, paused=False)
        log.info("watch %s: %s -> %s (project %s)", spec.id, spec.inbox, spec.outbox, spec.project)
        return self.get(spec.id)

    def get(self, watch_id: str) -> dict[str, Any]:
        row = self.queue.get_watch(watch_id)
        return self._view(row, self.queue.counts().get(watch_id, {}))

    def list(self) -> list[dict[str, Any]]:
        counts = self.queue.counts()
        return [self._view(r, counts.get(r["id"], {})) for r in self.queue.list_watches()]

    def pause(self, watch_id: str) -> dict[str, Any]:
        self.queue.get_watch(watch_id)
        self.queue.set_state(watch_id, PAUSED)
        with self._lock:
            rt = self._runtimes.get(watch_id)
            if rt is not None:
                rt.paused = True
        return self.get(watch_id)

    def resume(self, watch_id: str) -> dict[str, Any]:
        spec: WatchSpec = self.queue.get_watch(watch_id)["spec"]
        # A watch paused at start for pointing into the data dir stays paused.
        self._check_data_dir(
            Path(os.path.realpath(spec.inbox)),
            Path(os.path.realpath(spec.outbox)),
            f"watch {spec.id}",
        )
        self.queue.set_state(watch_id, ACTIVE)
        with self._lock:
            rt = self._runtimes.get(watch_id)
            if rt is not None:
                rt.paused = False
                rt.rescan_requested = True  # files that arrived while paused
        self._wake.set()
        return self.get(watch_id)

    def delete(self, watch_id: str) -> None:
        row = self.queue.get_watch(watch_id)
        if row["from_config"]:
            raise FailedPrecondition(
                f"watch watches/{watch_id} is declared in the config file (watch.watches); "
                "remove it there and restart sipd, or pause it"
            )
        jobs = self.queue.running_ids_of_watch(watch_id)
        with self._lock:
            rt = self._runtimes.pop(watch_id, None)
        if rt is not None and rt.handle is not None and self._observer is not None:
            self._observer.unschedule(rt.handle)
        self.queue.delete_watch(watch_id)
        for job_id in jobs:
            try:
                self.engine.cancel(job_id, f"cancelled: watch {watch_id} was removed")
            except SipError:
                pass
        log.info("watch %s removed", watch_id)

    def active_count(self) -> int:
        return sum(1 for w in self.queue.list_watches() if w["state"] == ACTIVE)

    def stats(self) -> dict[str, dict[str, Any]]:
        """Per watch: scenes by state, units seen but not queued (and of those, the ones held
        for their sentinel), paused, and the scanner's passes and rescans (for metrics)."""
        counts = self.queue.counts()
        with self._lock:
            runtimes = dict(self._runtimes)
        out = {}
        for watch_id, by_state in counts.items():
            rt = runtimes.get(watch_id)
            out[watch_id] = {
                **by_state,
                "PENDING": len(rt.settler) if rt is not None else 0,
                "paused": rt.paused if rt is not None else False,
                "AWAITING_SENTINEL": rt.settler.awaiting_sentinel if rt is not None else 0,
                "PASSES": rt.passes if rt is not None else 0,
                "RESCANS": rt.rescans if rt is not None else 0,
            }
        return out

    def _view(self, row: dict[str, Any], counts: dict[str, int]) -> dict[str, Any]:
        spec: WatchSpec = row["spec"]
        return {
            **spec.as_dict(),
            "quiet_seconds": self._quiet(spec),
            "state": row["state"],
            "from_config": row["from_config"],
            "last_error": row["last_error"],
            "create_time": row["create_time"],
            "done": counts.get("DONE", 0),
            "failed": counts.get("FAILED", 0),
            "queued": counts.get("QUEUED", 0),
            "running": counts.get("RUNNING", 0),
        }

    def _checked(self, spec: WatchSpec, strict: bool) -> WatchSpec:
        """Resolve and check folders; with `strict`, the project and model must exist too
        (a watch in sipd.yaml may precede its project: its scenes wait)."""
        where = f"watch {spec.id}"
        inbox = self.policy.check(spec.inbox, f"{where}: inbox")
        outbox = self.policy.check(spec.outbox, f"{where}: outbox")
        check_folders(inbox, outbox, where)
        self._check_data_dir(inbox, outbox, where)
        spec = spec.model_copy(update={"inbox": str(inbox), "outbox": str(outbox)})
        if spec.recipe:
            try:
                # Pinned: a later version of the recipe never changes what this watch makes.
                recipe = self.recipes.get(spec.recipe)
                spec = spec.model_copy(update={"recipe": f"{recipe.name}@{recipe.version}"})
            except NotFound as exc:
                # Not pinned, a name would follow whatever version is latest later on:
                # a watch names a recipe that exists (sipd.yaml recipes are stored first).
                raise InvalidArgument(f"{where}: {exc}") from None
        for other in self.queue.list_watches():
            o: WatchSpec = other["spec"]
            if o.id == spec.id:
                continue
            oin = Path(o.inbox)
            nested = inbox == oin or inbox.is_relative_to(oin) or oin.is_relative_to(inbox)
            if nested and (o.pattern == spec.pattern or "*" in (o.pattern, spec.pattern)):
                raise InvalidArgument(
                    f"{where}: inbox {inbox} overlaps watch {o.id}'s inbox {oin} with an "
                    "overlapping pattern; scenes would be taken twice. Use distinct folders "
                    "or distinct --pattern values"
                )
        try:
            self.projects.get(spec.project)
            self.models.resolve(spec.project, spec.model)
        except NotFound:
            if strict:
                raise
            log.warning("%s: project or model not found yet; its scenes wait for it", where)
        return spec

    def _check_data_dir(self, inbox: Path, outbox: Path, where: str) -> None:
        """The daemon's data dir (sipd.db, sipd.lock, models, projects) is never an inbox
        (its files would be taken as scenes and moved to failed/) nor an outbox, whatever
        the roots say; an inbox or outbox that holds the data dir is refused as well (an
        outbox mirrors the inbox's sub-folders, so one above the data dir could write into it)."""
        data_dir = self.projects.data_dir
        refuse_data_dir(inbox, f"{where}: inbox", data_dir, containing=True)
        refuse_data_dir(outbox, f"{where}: outbox", data_dir, containing=True)

    def _make_folders(self, spec: WatchSpec) -> None:
        for folder in (spec.inbox, spec.outbox):
            try:
                Path(folder).mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise FailedPrecondition(f"watch {spec.id}: cannot create {folder}: {exc}") from exc

    def _quiet(self, spec: WatchSpec) -> float:
        return spec.quiet_seconds or self.config.quiet_seconds

    def _all(self) -> dict[str, Runtime]:
        with self._lock:
            return dict(self._runtimes)

    def _one(self, watch_id: str) -> Runtime | None:
        with self._lock:
            return self._runtimes.get(watch_id)

    def _add_runtime(self, spec: WatchSpec, paused: bool) -> None:
        rt = Runtime(
            spec=spec,
            layout=Layout(Path(spec.inbox), spec.recursive, spec.pattern),
            settler=Settler(self._quiet(spec), spec.require_sentinel),
            paused=paused,
        )
        with self._lock:
            self._runtimes[spec.id] = rt
        self._schedule(rt)

    def _schedule(self, rt: Runtime) -> None:
        if self._observer is None or rt.handle is not None:
            return
        try:
            rt.handle = self._observer.schedule(
                EventSink(rt.spec.id, self.scanner.events),
                rt.spec.inbox,
                recursive=rt.spec.recursive,
            )
        except OSError as exc:
            # inotify limits, a vanished inbox: rescans still find everything, later.
            message = (
                f"no file events for {rt.spec.inbox} ({exc}); relying on rescans every "
                f"{self.config.rescan_seconds:g} s"
            )
            log.warning("watch %s: %s", rt.spec.id, message)
            self.queue.set_last_error(rt.spec.id, message)


class _StopRace(logging.Filter):
    """watchdog 7 logs an ERROR when its inotify thread reads once more while the observer
    stops; nothing is lost then (we are stopping), so that one message is dropped."""

    def __init__(self, stopping: threading.Event) -> None:
        super().__init__()
        self.stopping = stopping

    def filter(self, record: logging.LogRecord) -> bool:
        benign = "called when the thread is inactive" in record.getMessage()
        return not (benign and self.stopping.is_set())
