"""A watch's submit is one SQLite transaction: crash points, the migration of SUBMITTING rows,
and the retry policy, on a real store file, a real JobEngine (its worker not started: the test
plays the worker through the store) and the real Dispatcher.

The crash points are every SQL statement one dispatcher step runs. For each, a forked copy of
the daemon is killed (os._exit: no rollback, no close, as SIGKILL would) just before that
statement; the store is then reopened from the same file, as a restarted daemon does, and
must hold either a scene's job with its rows RUNNING or neither; the restarted daemon then
classifies every scene exactly once.
"""

from __future__ import annotations

import json
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from sipd.config import WatchConfig
from sipd.contracts.job_record import JobState
from sipd.contracts.jobs import PredictItem, PredictParams, PredictResult, ScenePrediction
from sipd.contracts.worker_settings import WorkerSettings
from sipd.errors import Code, InvalidArgument
from sipd.job_requests import predict_params
from sipd.jobs.engine import JobEngine
from sipd.modelrepo import ModelRepository
from sipd.paths import PathPolicy
from sipd.projects import Projects
from sipd.store import MIGRATIONS, Store
from sipd.watch.dispatcher import Action, Dispatcher, failure_action
from sipd.watch.files import Layout
from sipd.watch.queue import ClaimLost, WatchQueue
from sipd.watch.runtime import Runtime, unit_key
from sipd.watch.settle import Settler
from sipd.watch.spec import PROCESSED_DIR, WatchSpec
from tests.support import install_model

# Two watches so that one step makes two jobs: a crash may fall between them.
SCENES = {"w1": ("a", "b", "c"), "w2": ("d", "e")}
CRASHED = 86  # the exit status of a forked daemon killed at its crash point


@dataclass
class Daemon:
    """What a (re)started daemon holds: the store, the engine, the queue, the dispatcher."""

    store: Store
    engine: JobEngine
    queue: WatchQueue
    dispatcher: Dispatcher


def _world(root: Path, model: Path) -> None:
    """Inboxes with scenes queued, a project and a model version: the state before a step."""
    store = Store(root / "sipd.db")
    Projects(store, PathPolicy([str(root)]), root).create("p", "", [("water", "")], ["b1"])
    install_model(model, root, "p")
    queue = WatchQueue(store)
    for watch_id, names in SCENES.items():
        queue.create_watch(_spec(root, watch_id))
        for name in names:
            unit = root / watch_id / "in" / f"{name}.tif"
            unit.parent.mkdir(parents=True, exist_ok=True)
            unit.write_bytes(name.encode() * 10)
            size, mtime = unit_key(unit) or (0, 0)
            assert queue.offer(watch_id, str(unit), size, mtime, limit=100) == "queued"
    store.close()


def _spec(root: Path, watch_id: str) -> WatchSpec:
    return WatchSpec(
        id=watch_id,
        inbox=str(root / watch_id / "in"),
        outbox=str(root / watch_id / "out"),
        project="p",
        on_success="move",
    )


def _start(root: Path, retries: int = 3) -> Daemon:
    store = Store(root / "sipd.db")
    engine = JobEngine(
        store,
        device="cpu",
        queue_limit=100,
        cancel_grace_seconds=1,
        worker_settings=WorkerSettings(),
    )
    queue = WatchQueue(store)
    runtimes = {
        w["id"]: Runtime(
            spec=w["spec"],
            layout=Layout(Path(w["spec"].inbox), False, "*"),
            settler=Settler(0.0, False),
            paused=False,
        )
        for w in queue.list_watches()
    }
    dispatcher = Dispatcher(
        queue_=queue,
        engine=engine,
        models=ModelRepository(root / "models"),
        projects=Projects(store, PathPolicy([str(root)]), root),
        config=WatchConfig(retries=retries, retry_backoff_seconds=0.0),
        requests=None,
        events=None,
        runtime=runtimes.get,
        wake=lambda: None,
    )
    engine.add_listener(dispatcher.on_job)
    return Daemon(store, engine, queue, dispatcher)


def _step_in_child(root: Path, crash_before: int | None, trace: Path | None = None) -> int:
    """One dispatcher step in a forked daemon, killed just before its `crash_before`-th SQL
    statement (None: after the step, still without closing anything). Returns its exit status."""
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        status = 1
        try:
            d = _start(root)
            seen: list[str] = []

            def on_statement(sql: str) -> None:
                if len(seen) == crash_before:
                    os._exit(CRASHED)
                seen.append(sql)

            d.store._db.set_trace_callback(on_statement)
            d.dispatcher.step()
            d.store._db.set_trace_callback(None)
            if trace is not None:
                trace.write_text(json.dumps(seen))
            status = 0
        finally:
            os._exit(status)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def _check_invariant(store: Store) -> None:
    """Either the rows QUEUED and no job, or the job and its rows RUNNING with its id; no
    scene lost or doubled."""
    paths = sorted(str(p) for p in _units(store.path.parent))
    rows = [dict(r) for r in store.query("SELECT * FROM watch_files ORDER BY id")]
    assert sorted(r["path"] for r in rows) == paths, "a scene row was lost or doubled"
    jobs = {j["id"]: j for j in map(dict, store.query("SELECT * FROM jobs"))}
    for row in rows:
        assert row["state"] in ("QUEUED", "RUNNING"), row
        if row["state"] == "QUEUED":
            assert row["job"] is None, row
        else:
            assert row["job"] in jobs, f"RUNNING without its job: {row}"
    for job_id, job in jobs.items():
        items = [i["input"] for i in json.loads(job["params"])["items"]]
        mine = [r["path"] for r in rows if r["job"] == job_id]
        assert mine == items, f"job {job_id} without exactly its rows RUNNING"


def _units(root: Path) -> list[Path]:
    return [root / w / "in" / f"{n}.tif" for w, names in SCENES.items() for n in names]


def _run_worker(d: Daemon, report_inputs: bool = True) -> None:
    """Play the worker: run each queued job to SUCCEEDED, one result scene per item in
    request order, and tell the listeners as the engine does."""
    for row in d.store.query("SELECT id FROM jobs WHERE state = 'QUEUED' ORDER BY id"):
        job = d.engine.get(row["id"])
        assert isinstance(job.params, PredictParams)
        scenes = [
            ScenePrediction(
                input=item.input if report_inputs else f"/vsimem/{i}.tif",
                output=item.output,
                width=4,
                height=4,
                pixels=16,
                class_pixels={"water": 16},
                class_area_m2={},
                seconds=0.01,
                mpx_per_s=1.0,
            )
            for i, item in enumerate(job.params.items)
        ]
        result = PredictResult(
            project="p", version=1, scenes=scenes, provider="CPUExecutionProvider", seconds=0.1
        )
        assert d.store.mark_running(job.id)
        d.store.finish_job(job.id, JobState.SUCCEEDED, result=result.model_dump(mode="json"))
        d.dispatcher.on_job(d.engine.get(job.id))


def _run_to_the_end(d: Daemon, report_inputs: bool = True) -> None:
    for _ in range(10):
        d.dispatcher.step()
        _run_worker(d, report_inputs)
        d.dispatcher.step()
        if not d.store.query("SELECT 1 FROM watch_files WHERE state != 'DONE'"):
            return
    raise AssertionError("scenes still not DONE after 10 rounds")


def _check_each_scene_once(root: Path, d: Daemon) -> None:
    jobs = [d.engine.get(r["id"]) for r in d.store.query("SELECT id FROM jobs ORDER BY id")]
    submitted: list[str] = []
    for job in jobs:
        assert isinstance(job.params, PredictParams)
        submitted += [item.input for item in job.params.items]
    units = [str(u) for u in _units(root)]
    assert sorted(submitted) == sorted(units), "a scene was submitted twice or never"
    assert all(job.state == JobState.SUCCEEDED for job in jobs)
    for watch_id, names in SCENES.items():
        inbox, outbox = root / watch_id / "in", root / watch_id / "out"
        assert sorted(p.name for p in (inbox / PROCESSED_DIR).iterdir()) == [
            f"{n}.tif" for n in names
        ]
        assert sorted(p.name for p in inbox.iterdir()) == [PROCESSED_DIR]
        assert sorted(p.name for p in outbox.iterdir()) == [f"{n}.json" for n in names]
        for name in names:
            summary = json.loads((outbox / f"{name}.json").read_text())
            row = d.store.query_one(
                "SELECT job FROM watch_files WHERE path = ?", (str(inbox / f"{name}.tif"),)
            )
            assert row is not None and summary["job"] == f"jobs/{row['job']}"
            assert summary["model"] == "projects/p/models/1"
            assert summary["moved_to"] == str(inbox / PROCESSED_DIR / f"{name}.tif")


def test_a_crash_at_any_statement_of_a_submit_leaves_job_and_rows_together(
    tmp_path: Path, trained_model: Path
) -> None:
    # A dry run lists the statements of one step: the crash points.
    _world(tmp_path / "dry", trained_model)
    trace = tmp_path / "trace.json"
    assert _step_in_child(tmp_path / "dry", None, trace) == 0
    statements: list[str] = json.loads(trace.read_text())
    inserts = [i for i, sql in enumerate(statements) if sql.startswith("INSERT INTO jobs")]
    assert len(inserts) == 2, statements  # one job per watch, each its own transaction
    for i in inserts:
        assert statements[i - 1] == "BEGIN IMMEDIATE"
        assert statements[i + 1].startswith("UPDATE watch_files SET state = 'RUNNING'")
        assert statements[i + 2] == "COMMIT"
    # Before every statement, and after the last one (the step done, the process killed).
    outcomes = {"none": 0, "one": 0, "both": 0}
    for k in [*range(len(statements)), None]:
        root = tmp_path / f"crash{k}"
        _world(root, trained_model)
        where = statements[k][:60] if k is not None else "after the step"
        assert _step_in_child(root, k) == (CRASHED if k is not None else 0), where
        d = _start(root)  # the restart: the same file, reopened
        try:
            _check_invariant(d.store)
            outcomes[("none", "one", "both")[d.store.count_jobs("QUEUED")]] += 1
            d.store.fail_interrupted_jobs()  # what the engine does first at start
            _run_to_the_end(d)
            _check_each_scene_once(root, d)
        except AssertionError as exc:
            raise AssertionError(f"crash before statement {k} ({where}): {exc}") from exc
        finally:
            d.store.close()
    # Crash points fell before, between and after the two commits.
    assert all(outcomes.values()), outcomes


def test_a_raising_hook_leaves_no_job_and_no_row_change(
    tmp_path: Path, trained_model: Path
) -> None:
    _world(tmp_path, trained_model)
    d = _start(tmp_path)
    rows = d.queue.claim("w1", 8, 1e12)
    ids = [r["id"] for r in rows]

    def attach_then_fail(db: sqlite3.Connection, job_id: int) -> None:
        d.queue.attach(ids, job_id, "m", db)
        raise RuntimeError("crash point: after the rows update, before COMMIT")

    with pytest.raises(RuntimeError, match="crash point"):
        d.store.insert_job("predict", "p", {}, "watches/w1", on_insert=attach_then_fail)
    assert d.store.count_jobs("QUEUED") == 0
    assert {r["state"] for r in d.queue.scene_rows(ids)} == {"QUEUED"}
    _check_invariant(d.store)


def test_predict_params_refuses_an_empty_batch(tmp_path: Path, trained_model: Path) -> None:
    _world(tmp_path, trained_model)
    model = ModelRepository(tmp_path / "models").get("p", 1)
    with pytest.raises(InvalidArgument, match="items"):
        predict_params(model, [])


def test_a_scene_that_changed_before_its_job_was_made_is_not_submitted(
    tmp_path: Path, trained_model: Path
) -> None:
    _world(tmp_path, trained_model)
    d = _start(tmp_path)
    rows = d.queue.claim("w1", 8, 1e12)
    ids = [r["id"] for r in rows]
    # Between the read and the submit, one scene ends (e.g. its watch's API call failed it).
    assert d.queue.mark_failed(ids[0], "removed meanwhile")
    items = [PredictItem(input=r["path"], output=f"{r['path']}.out.tif") for r in rows]
    with pytest.raises(ClaimLost):
        d.engine.submit(
            predict_params(ModelRepository(tmp_path / "models").get("p", 1), items),
            project="p",
            source="watches/w1",
            on_insert=lambda db, job_id: d.queue.attach(ids, job_id, "m", db),
        )
    assert d.store.count_jobs("QUEUED") == 0
    assert [r["state"] for r in d.queue.scene_rows(ids)] == ["FAILED", "QUEUED", "QUEUED"]
    # The dispatcher reads the queue again and submits what still waits.
    d.dispatcher.step()
    assert [r["state"] for r in d.queue.scene_rows(ids)] == ["FAILED", "RUNNING", "RUNNING"]


def test_scenes_are_matched_to_the_result_by_position_when_inputs_differ(
    tmp_path: Path, trained_model: Path
) -> None:
    # The result's `input` is the only link besides the order; a predictor that reports
    # another spelling of the path still lines up with the rows in request order.
    _world(tmp_path, trained_model)
    d = _start(tmp_path)
    _run_to_the_end(d, report_inputs=False)
    _check_each_scene_once(tmp_path, d)


@pytest.mark.parametrize(
    ("code", "solo", "attempts"),
    [
        (Code.UNAVAILABLE, 1, 1),  # the worker died: maybe one file's doing, retried alone
        (Code.ABORTED, 0, 1),  # the daemon was interrupted: nobody's, retried as the batch
        (Code.INTERNAL, 1, 0),  # a bug: would fail again; split to find the scene, no attempt
        (Code.INVALID_ARGUMENT, 1, 0),
    ],
)
def test_a_failed_batch_is_retried_only_when_transient(
    tmp_path: Path, trained_model: Path, code: Code, solo: int, attempts: int
) -> None:
    _world(tmp_path, trained_model)
    d = _start(tmp_path)
    d.dispatcher.step()
    (job_id,) = d.queue.running_ids_of_watch("w1")
    d.store.mark_running(job_id)
    d.store.finish_job(job_id, JobState.FAILED, error="boom", error_code=code)
    d.dispatcher.on_job(d.engine.get(job_id))
    d.dispatcher.step()
    rows = [dict(r) for r in d.store.query("SELECT * FROM watch_files WHERE watch = 'w1'")]
    assert len(rows) == 3 and all(r["job"] != job_id for r in rows)
    assert {(r["solo"], r["attempts"]) for r in rows} == {(solo, attempts)}
    # The same step submitted the next job (backoff 0): one scene alone, or the batch again.
    running = [r for r in rows if r["state"] == "RUNNING"]
    assert len(running) == (1 if solo else 3) and len({r["job"] for r in running}) == 1


def test_the_retry_policy() -> None:
    failed, cancelled = JobState.FAILED, JobState.CANCELLED
    assert failure_action(failed, Code.UNAVAILABLE, 3) == Action.RETRY_ALONE
    assert failure_action(failed, Code.RESOURCE_EXHAUSTED, 3) == Action.RETRY_ALONE
    assert failure_action(failed, Code.ABORTED, 3) == Action.RETRY
    assert failure_action(failed, Code.UNAVAILABLE, 1) == Action.RETRY
    for lasting in (Code.INTERNAL, Code.INVALID_ARGUMENT, Code.FAILED_PRECONDITION,
                    Code.NOT_FOUND, Code.PERMISSION_DENIED):  # fmt: skip
        assert failure_action(failed, lasting, 3) == Action.SPLIT, lasting
        assert failure_action(failed, lasting, 1) == Action.FAIL, lasting
    assert failure_action(cancelled, Code.CANCELLED, 3) == Action.FAIL
    assert failure_action(cancelled, Code.ABORTED, 1) == Action.FAIL  # someone stopped it


# -- migration 3: rows an older daemon left SUBMITTING ------------------------------------


def _store_v2(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None)
    for migration in MIGRATIONS[:2]:
        assert isinstance(migration, str)
        db.executescript(migration)
    db.execute("PRAGMA user_version=2")
    db.execute("INSERT INTO watches (id, spec, create_time) VALUES ('w', '{}', 0), ('v', '{}', 0)")
    return db


def _old_row(db: sqlite3.Connection, watch: str, path: str, floor: int) -> None:
    db.execute(
        "INSERT INTO watch_files (watch, path, size, mtime_ns, state, job_floor, detect_time) "
        "VALUES (?, ?, 1, 1, 'SUBMITTING', ?, 0)",
        (watch, path, floor),
    )


def _old_job(db: sqlite3.Connection, source: str, params: dict[str, Any]) -> int:
    cur = db.execute(
        "INSERT INTO jobs (type, state, params, source, create_time) "
        "VALUES ('predict', 'QUEUED', ?, ?, 0)",
        (json.dumps(params), source),
    )
    return int(cur.lastrowid or 0)


def test_migration_adopts_the_job_an_old_daemon_made_or_requeues(tmp_path: Path) -> None:
    db = _store_v2(tmp_path / "sipd.db")
    before = _old_job(db, "watches/w", {"inputs": [{"path": "/in/a.tif"}]})  # an old attempt
    for name in ("a", "b", "c"):
        _old_row(db, "w", f"/in/{name}.zip", before)
    _old_row(db, "v", "/v/x.tif", before)
    # The old daemon made the job of a and b, then died before the rows recorded it (c was
    # dropped from the batch); another watch's job names the same files, and is not theirs.
    legacy = {
        "model": "projects/p/models/4",
        "inputs": [{"path": "/vsizip//in/a.zip/a.tif"}, {"path": "/vsizip//in/b.zip/b.tif"}],
    }
    job_id = _old_job(db, "watches/w", legacy)
    _old_job(db, "watches/v", {"inputs": [{"path": "/v/y.tif"}]})
    db.close()
    store = Store(tmp_path / "sipd.db")
    version = store.query_one("PRAGMA user_version")
    assert version is not None and version[0] == len(MIGRATIONS) >= 3
    rows = {r["path"]: dict(r) for r in store.query("SELECT * FROM watch_files")}
    for name in ("a", "b"):
        row = rows[f"/in/{name}.zip"]
        assert (row["state"], row["job"], row["model"]) == (
            "RUNNING", job_id, "projects/p/models/4")  # fmt: skip
    for path in ("/in/c.zip", "/v/x.tif"):
        assert (rows[path]["state"], rows[path]["job"]) == ("QUEUED", None)
    assert all(r["job_floor"] is None for r in rows.values())
    # The adopted scenes finish with their job like any other.
    assert [r["path"] for r in WatchQueue(store).rows_of_job(job_id)] == ["/in/a.zip", "/in/b.zip"]


def test_migration_reads_typed_params_too(tmp_path: Path) -> None:
    db = _store_v2(tmp_path / "sipd.db")
    _old_row(db, "w", "/in/S1.SAFE", 0)
    typed = {
        "schema_version": 1,
        "model": {"project": "p", "version": 2, "path": "/m/p/2"},
        "items": [{"input": "/in/S1.SAFE/manifest.safe", "output": "/out/S1.tif"}],
    }
    job_id = _old_job(db, "watches/w", typed)
    db.close()
    row = Store(tmp_path / "sipd.db").query_one("SELECT state, job, model FROM watch_files")
    assert row is not None and tuple(row) == ("RUNNING", job_id, "projects/p/models/2")
