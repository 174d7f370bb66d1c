"""The ray executor: a predict or test job's scenes run on a pool of Ray actors.

The worker process stays the job's owner: it keeps the job record, progress,
cancel and the result, exactly as with the local executor, and only hands
each scene to an actor (`executor: ray`, docs/ray.md). An actor is a process
on any node of the cluster that holds warm onnxruntime sessions (the same
SessionCache as the worker) and runs the same predictor code on one scene at
a time, so its label map is the local one, pixel for pixel; for a test job it
counts the scene's test pixels and the worker sums the counts into the report.

- Scenes and outputs are on storage both sides see; `ray.path_map` rewrites
  the daemon's paths into the nodes' ones. An actor checks every file GDAL
  opens against the (mapped) allowed roots, as the worker does.
- An output appears atomically (the predictor's temp file and rename). A scene
  whose actor died (a lost node, a killed process) goes to the next free actor
  (`ray.scene_retries` times at most); the dead actor is killed for good and a
  new one made. A scene whose call returned is never run again, so each output
  is written once. Temp files a dead attempt left are removed.
- Cancel: the job's cancel flag is checked while waiting; the pool's actors are
  killed (the next job makes new ones). If the worker itself is killed, Ray
  ends the actors it owns.
- The cluster not reachable: the job fails at once with UNAVAILABLE and the
  address it tried.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from sipd.contracts.jobs import PredictItem
from sipd.errors import Code, SipError, Unavailable, disk_full
from sipd.progress import JobCancelled, JobContext

log = logging.getLogger("sipd.ray")

# Seconds between looks at finished scenes and the cancel flag.
POLL_SECONDS = 0.2


@dataclass(frozen=True)
class PathMap:
    """Daemon path prefixes -> node path prefixes (`ray.path_map`), and back."""

    pairs: tuple[tuple[str, str], ...] = ()

    @classmethod
    def parse(cls, entries: Sequence[str]) -> PathMap:
        pairs = []
        for entry in entries:
            left, _, right = str(entry).partition("=")
            pairs.append((left.rstrip("/") or "/", right.rstrip("/") or "/"))
        # Longest prefix first: /data/x=/a wins over /data=/b.
        return cls(tuple(sorted(pairs, key=lambda p: -len(p[0]))))

    def to_node(self, path: str) -> str:
        return _swap(path, self.pairs)

    def to_daemon(self, path: str) -> str:
        back = sorted(((b, a) for a, b in self.pairs), key=lambda p: -len(p[0]))
        return _swap(path, tuple(back))


# GDAL's virtual file systems sipd itself uses (archives in an inbox): the path inside.
_VSI = ("/vsizip/", "/vsitar/", "/vsigzip/")


def _swap(path: str, pairs: tuple[tuple[str, str], ...]) -> str:
    if not path:
        return path
    for prefix in _VSI:
        if path.startswith(prefix + "/"):
            return prefix + _swap(path[len(prefix) :], pairs)
    for old, new in pairs:
        if old == "/":
            rest = path
        elif path == old or path.startswith(old + "/"):
            rest = path[len(old) :]  # "" or "/..."
        else:
            continue
        if new == "/":
            return rest or "/"
        return new + rest
    return path


class _Pool:
    """The actors of this worker process, made on first use and kept warm across jobs.

    Actors are never restarted in place (max_restarts 0): one that dies is dropped and a
    new one is made, which Ray places wherever there is room. A dead actor's calls then
    fail at once instead of waiting for a restart that may never come (a lost node).
    """

    def __init__(self, settings: Any) -> None:
        self.settings = settings
        self.conf = settings.ray
        self.paths = PathMap.parse(self.conf.path_map)
        self.actors: list[Any] = []

    def connect(self) -> None:
        import ray

        if not ray.is_initialized():
            _check_reachable(self.conf.address, self.conf.connect_timeout_seconds)
            ray.init(address=self.conf.address, namespace="sipd", log_to_driver=False,
                     logging_level=logging.WARNING)  # fmt: skip

    def spawn(self) -> Any:
        """A new actor (not yet ready: call its ready())."""
        roots = [self.paths.to_node(r) for r in self.settings.allowed_roots]
        actor = _actor_class().options(
            num_cpus=self.conf.cpus_per_actor,
            num_gpus=self.conf.gpus_per_actor,
            max_restarts=0,
            max_task_retries=0,
        ).remote(self.settings.model_dump(mode="json"), roots)
        self.actors.append(actor)
        return actor

    def ensure(self, ctx: JobContext) -> None:
        """Top the pool up to ray.actors, waiting (cancellable) until the new ones answer."""
        import ray

        self.connect()
        new = [self.spawn() for _ in range(self.conf.actors - len(self.actors))]
        if not new:
            return
        # An actor the cluster has no room for would wait for ever: fail the job instead.
        waiting = {a.ready.remote(): a for a in new}
        deadline = time.monotonic() + self.conf.connect_timeout_seconds
        while waiting and time.monotonic() < deadline:
            ctx.check_cancelled()
            done, _ = ray.wait(list(waiting), num_returns=len(waiting), timeout=POLL_SECONDS)
            for ref in done:
                waiting.pop(ref)
                try:
                    ray.get(ref)
                except Exception as exc:  # the actor could not start (sipd missing, ...)
                    self.discard()
                    raise Unavailable(
                        f"a Ray actor could not start on the cluster at {self.conf.address}: "
                        f"{exc}"
                    ) from None
        if waiting:
            started = len(new) - len(waiting)
            self.discard()
            raise Unavailable(
                f"only {started} of {len(new)} Ray actor(s) started within "
                f"{self.conf.connect_timeout_seconds:g} s on the cluster at "
                f"{self.conf.address}; each needs {self.conf.cpus_per_actor:g} CPU(s) and "
                f"{self.conf.gpus_per_actor:g} GPU(s) free (ray.actors, ray.cpus_per_actor)"
            )

    def drop(self, actor: Any) -> None:
        """Kill an actor that failed (it must not run anything more) and forget it."""
        import ray

        try:
            ray.kill(actor, no_restart=True)
        except Exception:  # already gone
            pass
        if actor in self.actors:
            self.actors.remove(actor)

    def discard(self) -> None:
        """Kill every actor (a cancelled or failed job): their running scenes stop now."""
        for actor in list(self.actors):
            self.drop(actor)


_pool: _Pool | None = None


def _ready_pool(ctx: JobContext) -> _Pool:
    global _pool
    if _pool is None or _pool.settings != ctx.settings:
        _pool = _Pool(ctx.settings)
    try:
        _pool.ensure(ctx)
    except (Unavailable, JobCancelled):
        raise
    except Exception as exc:
        _pool.discard()
        raise Unavailable(
            f"cannot use the Ray cluster at {_pool.conf.address}: {type(exc).__name__}: {exc}"
        ) from exc
    return _pool


def ray_predict(
    model_path: str,
    items: Sequence[PredictItem],
    *,
    background_mask: str,
    tile_size: int | None,
    batch_size: int,
    ctx: JobContext,
) -> list[dict[str, Any]]:
    """Every item's scene on an actor of the pool; results in the items' order."""
    pool = _ready_pool(ctx)
    paths = pool.paths

    def submit(actor: Any, index: int) -> Any:
        return actor.predict.remote(
            model_path=paths.to_node(model_path), item=_node_item(items[index], paths),
            background_mask=paths.to_node(background_mask), tile_size=tile_size,
            batch_size=batch_size,
        )  # fmt: skip

    try:
        outcomes = _dispatch(pool, [item.input for item in items], submit, ctx, "predict")
    finally:
        from sipd.raster import remove_stale_scratch

        # An attempt on an actor that died leaves its temp files beside the output.
        for item in items:
            for output in (item.output, item.confidence, item.probabilities, item.uncertainty,
                           item.quicklook):
                if output:
                    remove_stale_scratch(output)
    # Results carry no paths (the job's items name the outputs): nothing to map back.
    return [dict(o) for o in outcomes]


def ray_test_counts(
    model_path: str, scenes: Sequence[dict[str, Any]], *, batch_size: int, ctx: JobContext
) -> np.ndarray:
    """A test job's [true][predicted, unclassified] counts, one scene per actor call."""
    pool = _ready_pool(ctx)
    paths = pool.paths

    def submit(actor: Any, index: int) -> Any:
        scene = scenes[index]
        node_scene = {**scene, "path": paths.to_node(scene["path"]),
                      "test_mask": paths.to_node(scene["test_mask"])}  # fmt: skip
        return actor.test_counts.remote(model_path=paths.to_node(model_path), scene=node_scene,
                                        batch_size=batch_size)  # fmt: skip

    outcomes = _dispatch(pool, [s["path"] for s in scenes], submit, ctx, "test")
    return np.sum(outcomes, axis=0)


def _dispatch(
    pool: _Pool, names: Sequence[str], submit: Any, ctx: JobContext, stage: str
) -> list[Any]:
    """Run task i (`submit(actor, i)`) for every name on the pool's actors; the outcomes in
    order. A task whose actor died goes back to the queue for whichever actor is free
    next; the dead actor is dropped and a new one made (Ray places it where there is
    room), which joins once it answers."""
    import ray
    from ray.exceptions import RayActorError

    n = len(names)
    outcomes: list[Any] = [None] * n
    finished = [False] * n
    attempts = [0] * n
    queue = list(range(n))
    idle = list(pool.actors)
    running: dict[Any, tuple[int, Any]] = {}  # task -> (index, actor)
    starting: dict[Any, Any] = {}  # ready call of a replacement actor -> actor
    # Replacements a job may make: a cluster that keeps killing actors ends the job.
    spare = pool.conf.actors * (pool.conf.scene_retries + 1)
    ctx.progress(stage, 0.0, f"{n} scene(s) on {len(idle)} Ray actor(s)", force=True)
    stalled = time.monotonic()  # since when no actor has been running or free
    try:
        while queue or running:
            while queue and idle:
                index, actor = queue.pop(0), idle.pop(0)
                attempts[index] += 1
                running[submit(actor, index)] = (index, actor)
            ctx.check_cancelled()
            if running or idle:
                stalled = time.monotonic()
            elif time.monotonic() - stalled > pool.conf.connect_timeout_seconds:
                raise Unavailable(
                    f"no Ray actor of the pool is left and none started within "
                    f"{pool.conf.connect_timeout_seconds:g} s; {len(queue)} scene(s) not run "
                    f"(is the cluster at {pool.conf.address} still there, with room?)"
                )
            done, _ = ray.wait([*running, *starting], num_returns=1, timeout=POLL_SECONDS)
            for ref in done:
                if ref in starting:
                    actor = starting.pop(ref)
                    try:
                        ray.get(ref)
                        idle.append(actor)
                    except Exception:  # could not start: drop it; the stall rule decides
                        pool.drop(actor)
                    continue
                index, actor = running.pop(ref)
                try:
                    outcome = _outcome(ref, names[index])
                except RayActorError as exc:
                    # Dead, or unreachable (it may still be running: kill it before the
                    # scene runs anywhere else, so that one output has one writer).
                    pool.drop(actor)
                    if attempts[index] > pool.conf.scene_retries:
                        raise Unavailable(
                            f"scene {names[index]}: its Ray actor died {attempts[index]} "
                            f"times (ray.scene_retries {pool.conf.scene_retries}): {exc}"
                        ) from None
                    ctx.log.warning("scene %s: its Ray actor died; running it again",
                                    names[index])  # fmt: skip
                    queue.insert(0, index)
                    if spare > 0:
                        spare -= 1
                        fresh = pool.spawn()
                        starting[fresh.ready.remote()] = fresh
                    continue
                idle.append(actor)
                outcomes[index], finished[index] = outcome, True
                done_count = sum(finished)
                ctx.progress(stage, done_count / n, f"{done_count}/{n} scene(s) done",
                             force=True)  # fmt: skip
    except BaseException:
        # Cancelled or failed: what is still running stops now; the next job gets new actors.
        if running or starting:
            pool.discard()
        raise
    return outcomes


def _outcome(ref: Any, name: str) -> Any:
    """The task's result; its error as the worker would have raised it (sipd.jobs.worker:
    a full disk and no memory are RESOURCE_EXHAUSTED, Ray's own failures UNAVAILABLE).
    A dead actor's RayActorError goes to the caller, which runs the task elsewhere."""
    import ray
    from ray.exceptions import RayActorError, RayError, RayTaskError

    try:
        return ray.get(ref)
    except RayTaskError as exc:
        cause = exc.cause
        if isinstance(cause, SipError):
            raise SipError(str(cause), cause.code) from None
        if isinstance(cause, MemoryError):
            raise SipError(f"scene {name}: out of memory on its Ray actor; try a smaller "
                           "tile or batch size", Code.RESOURCE_EXHAUSTED) from None  # fmt: skip
        full = disk_full(cause) if isinstance(cause, BaseException) else None
        if full is not None:
            raise SipError(f"scene {name}: {full}", full.code) from None
        raise SipError(f"scene {name} failed on its Ray actor: {cause}", Code.INTERNAL) from None
    except RayActorError:
        raise
    except RayError as exc:  # an object lost with its node, the owner gone, ...
        raise Unavailable(f"scene {name}: the Ray cluster lost its work: {exc}") from None


def _check_reachable(address: str, timeout: float) -> None:
    """Fail fast when nothing listens at the cluster's address (ray.init would wait minutes)."""
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=min(timeout, 10.0)):
            pass
    except OSError as exc:
        raise Unavailable(
            f"the Ray cluster at {address} does not answer ({exc.strerror or exc}); start it "
            "(`ray start --head`) or fix ray.address"
        ) from None


def _node_item(item: PredictItem, paths: PathMap) -> dict[str, str]:
    return {
        key: paths.to_node(getattr(item, key))
        for key in ("input", "output", "confidence", "probabilities", "quicklook", "uncertainty")
    } | {"input": paths.to_node(item.preprocessed or item.input)}


def _actor_class() -> Any:
    import ray

    return ray.remote(PredictActor)


class PredictActor:
    """One process on a node: warm sessions, the predictor, one scene per call."""

    def __init__(self, settings: dict[str, Any], allowed_roots: list[str]) -> None:
        from sipd.contracts.worker_settings import WorkerSettings

        self.settings = WorkerSettings.model_validate(settings)
        if self.settings.inference.gdal_cache_mb > 0:
            os.environ["GDAL_CACHEMAX"] = str(self.settings.inference.gdal_cache_mb)
        if allowed_roots:
            import functools

            from sipd.paths import PathPolicy
            from sipd.raster import check_opened_files_everywhere

            policy = PathPolicy(allowed_roots)
            check_opened_files_everywhere(
                functools.partial(policy.check_opened, what="a raster this job opened")
            )
        import ray

        gpus = ray.get_gpu_ids()
        # Ray sets CUDA_VISIBLE_DEVICES to the actor's GPU: it is cuda:0 in here.
        self.device = "cuda:0" if gpus else "cpu"
        # onnxruntime's threads: the configured ones, else the CPUs the actor asked Ray
        # for (its default, every core of the node, would fight the node's other actors).
        self.threads = (self.settings.inference.intra_op_threads or self.settings.threads
                        or max(1, round(self.settings.ray.cpus_per_actor)))  # fmt: skip
        self._sessions: Any = None

    def ready(self) -> int:
        return os.getpid()

    def _model(self, model_path: str) -> Any:
        from sipd.inference.sessions import SessionCache

        if self._sessions is None:
            conf = self.settings.inference
            self._sessions = SessionCache(
                max_sessions=conf.session_cache_size, device=self.device,
                intra_op_threads=self.threads, enable_tensorrt=conf.tensorrt, fp16=conf.fp16,
            )  # fmt: skip
        return self._sessions.get(model_path)

    def test_counts(
        self, *, model_path: str, scene: dict[str, Any], batch_size: int
    ) -> np.ndarray:
        from sipd.inference.evaluate import count_test_pixels

        ctx = JobContext(self.device, settings=self.settings)
        return count_test_pixels(self._model(model_path), [scene], ctx=ctx,
                                 batch_size=batch_size, require_pixels=False)  # fmt: skip

    def predict(
        self,
        *,
        model_path: str,
        item: dict[str, str],
        background_mask: str,
        tile_size: int | None,
        batch_size: int,
    ) -> dict[str, Any]:
        from sipd.inference.predictor import SceneRequest, predict_scenes
        from sipd.jobs.handlers import background_for

        model = self._model(model_path)
        request = SceneRequest(
            item["input"],
            item["output"],
            confidence=item["confidence"] or None,
            probabilities=item["probabilities"] or None,
            quicklook=item["quicklook"] or None,
            background=background_for(item["input"], background_mask),
            uncertainty=item["uncertainty"] or None,
        )
        ctx = JobContext(self.device, settings=self.settings)
        (result,) = predict_scenes(model, [request], tile_size=tile_size, batch_size=batch_size,
                                   ctx=ctx)  # fmt: skip
        result["provider"] = model.provider
        result["actor_pid"] = os.getpid()
        return result
