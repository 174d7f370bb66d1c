"""Durable state in SQLite (WAL): projects, scenes, ROIs, jobs, watches.

One connection guarded by a lock: the daemon's writes are small and few, and
a single connection keeps transactions simple. The worker process never
opens the store; it receives resolved parameters and returns results.
Schema changes are numbered migrations, applied in order at open and
recorded in PRAGMA user_version.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sipd.errors import FailedPrecondition


def _settle_submitting_scenes(db: sqlite3.Connection) -> None:
    """Migration 3: a watch's submit became one transaction (sipd/watch/queue.py), so no row
    is SUBMITTING any more. Rows an older daemon left SUBMITTING when it died are settled
    here, once, the way that daemon's own recovery would have settled them at its next start.

    Adopt, not requeue: such a row may already have its job (the daemon died between the
    job's INSERT and the row update). Requeueing it would run the scene twice, since the
    orphan job is still QUEUED and the engine runs it, and would leave a watch job that no
    scene claims. The only link an older daemon left is the job's params naming the raster,
    so they are parsed here, frozen as that daemon wrote them, and nowhere else any more.
    The match is safe: a SUBMITTING row belongs to the last submit of its watch before the
    crash, and only that submit made a job of this watch after the row's job_floor.
    job_floor stays as an unused column: DROP COLUMN needs SQLite 3.35.
    """
    rows = db.execute(
        "SELECT id, watch, path, job_floor FROM watch_files WHERE state = 'SUBMITTING'"
    ).fetchall()
    for row_id, watch, path, floor in rows:
        adopted = None
        jobs = db.execute(
            "SELECT id, params FROM jobs WHERE source = ? AND id > ? ORDER BY id",
            (f"watches/{watch}", floor or 0),
        ).fetchall()
        for job_id, params in jobs:
            data = json.loads(params or "{}")
            # Legacy dict params: inputs[].path and model "projects/P/models/V"; typed
            # params (sipd.contracts.jobs.PredictParams): items[].input and model {project,
            # version}. Either may be in a store an older daemon left behind.
            rasters = [i.get("path", "") for i in data.get("inputs", [])]
            rasters += [i.get("input", "") for i in data.get("items", [])]
            if any(_made_from(raster, path) for raster in rasters):
                model = data.get("model", "")
                if isinstance(model, dict):
                    model = f"projects/{model.get('project')}/models/{model.get('version')}"
                adopted = (job_id, str(model))
                break
        if adopted is not None:
            db.execute(
                "UPDATE watch_files SET state = 'RUNNING', job = ?, model = ?, start_time = ?, "
                "job_floor = NULL WHERE id = ?",
                (adopted[0], adopted[1], time.time(), row_id),
            )
        else:
            db.execute(
                "UPDATE watch_files SET state = 'QUEUED', job = NULL, job_floor = NULL "
                "WHERE id = ?",
                (row_id,),
            )


def _made_from(raster: str, unit: str) -> bool:
    """Whether predictor input `raster` was made from inbox unit `unit` (a file, a product
    folder, an archive opened through GDAL's /vsizip/ or /vsitar/): the rule of the daemon
    that wrote the rows, kept here as it was."""
    return raster == unit or any(
        raster.startswith(f"{prefix}{unit}/") for prefix in ("", "/vsizip/", "/vsitar/")
    )


# Each migration is SQL (statements separated by ';') or, where rows must be rewritten
# by rules SQL cannot state, a function run on the connection; both inside the
# migration's transaction.
MIGRATIONS: list[str | Callable[[sqlite3.Connection], None]] = [
    # 1: projects, scenes, ROIs, jobs
    """
    CREATE TABLE projects (
        id TEXT PRIMARY KEY,
        description TEXT NOT NULL DEFAULT '',
        classes TEXT NOT NULL,          -- JSON [{value, name, color}]
        bands TEXT NOT NULL,            -- JSON [name]
        revision INTEGER NOT NULL DEFAULT 0,  -- bumped on every scene/ROI change
        create_time REAL NOT NULL
    );
    CREATE TABLE scenes (
        project TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
        id TEXT NOT NULL,
        path TEXT NOT NULL,
        background_mask TEXT NOT NULL DEFAULT '',
        info TEXT NOT NULL,             -- JSON raster metadata (sipd.raster.raster_info)
        create_time REAL NOT NULL,
        PRIMARY KEY (project, id)
    );
    CREATE TABLE rois (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        project TEXT NOT NULL,
        scene TEXT NOT NULL,
        class_name TEXT NOT NULL,
        split TEXT NOT NULL,            -- train | val | test
        wkt TEXT NOT NULL,              -- pixel coordinates (column, row)
        width REAL NOT NULL,
        source TEXT NOT NULL DEFAULT '',
        create_time REAL NOT NULL,
        FOREIGN KEY (project, scene) REFERENCES scenes(project, id) ON DELETE CASCADE
    );
    CREATE INDEX rois_scene ON rois(project, scene);
    CREATE TABLE jobs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        type TEXT NOT NULL,
        state TEXT NOT NULL,            -- QUEUED RUNNING SUCCEEDED FAILED CANCELLED
        project TEXT NOT NULL DEFAULT '',
        params TEXT NOT NULL,           -- JSON
        result TEXT,                    -- JSON, set when SUCCEEDED
        progress TEXT,                  -- JSON of the latest progress event
        error TEXT NOT NULL DEFAULT '',
        error_code TEXT NOT NULL DEFAULT '',
        source TEXT NOT NULL DEFAULT 'api',
        create_time REAL NOT NULL,
        start_time REAL,
        end_time REAL
    );
    CREATE INDEX jobs_state ON jobs(state, id);
    """,
    # 2: watched inbox folders and their durable queue of scenes (sipd/watch/queue.py)
    """
    CREATE TABLE watches (
        id TEXT PRIMARY KEY,
        spec TEXT NOT NULL,             -- JSON sipd.watch.spec.WatchSpec
        state TEXT NOT NULL DEFAULT 'ACTIVE',  -- ACTIVE | PAUSED
        from_config INTEGER NOT NULL DEFAULT 0,
        last_error TEXT NOT NULL DEFAULT '',
        last_error_time REAL,
        create_time REAL NOT NULL
    );
    CREATE TABLE watch_files (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        watch TEXT NOT NULL REFERENCES watches(id) ON DELETE CASCADE,
        path TEXT NOT NULL,             -- the unit: a file or a product folder
        size INTEGER NOT NULL,
        mtime_ns INTEGER NOT NULL,
        state TEXT NOT NULL,            -- QUEUED SUBMITTING RUNNING DONE FAILED
        attempts INTEGER NOT NULL DEFAULT 0,   -- transient failures so far
        solo INTEGER NOT NULL DEFAULT 0,       -- 1: never batched with others again
        not_before REAL NOT NULL DEFAULT 0,    -- retry backoff
        job INTEGER,                    -- the predict job while SUBMITTING/RUNNING
        job_floor INTEGER,              -- highest job id before the submit (recovery)
        stopping INTEGER NOT NULL DEFAULT 0,   -- its job was stopped by a daemon shutdown
        model TEXT NOT NULL DEFAULT '',
        dest TEXT NOT NULL DEFAULT '',  -- where the input is being moved (processed/, failed/)
        error TEXT NOT NULL DEFAULT '',
        result TEXT,                    -- JSON summary, set when DONE
        detect_time REAL NOT NULL,
        start_time REAL,
        end_time REAL,
        UNIQUE (watch, path, size, mtime_ns)
    );
    CREATE INDEX watch_files_state ON watch_files(state, watch, id);
    CREATE INDEX watch_files_job ON watch_files(job);
    """,
    # 3: no more SUBMITTING scenes (QUEUED -> RUNNING in the job's own transaction)
    _settle_submitting_scenes,
    # 4: preprocessing recipes (sipd/recipes.py); the recipe a scene was made with
    """
    CREATE TABLE recipes (
        name TEXT NOT NULL,
        version INTEGER NOT NULL,
        step TEXT NOT NULL,             -- JSON sipd.contracts.preprocessing.PreprocessStep
        description TEXT NOT NULL DEFAULT '',
        from_config INTEGER NOT NULL DEFAULT 0,
        -- 1 once deleted: the row stays, so a version number is never reused and the
        -- scenes and models that name it still say what it was
        deleted INTEGER NOT NULL DEFAULT 0,
        create_time REAL NOT NULL,
        PRIMARY KEY (name, version)
    );
    ALTER TABLE scenes ADD COLUMN recipe TEXT NOT NULL DEFAULT '';
    """,
]

FINAL_STATES = ("SUCCEEDED", "FAILED", "CANCELLED")


class Store:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        try:
            self._db = sqlite3.connect(
                str(self.path), check_same_thread=False, isolation_level=None, timeout=30
            )
        except sqlite3.Error as exc:
            raise FailedPrecondition(
                f"cannot open the store {self.path}: {exc}; check that the data dir is "
                "writable by the user sipd runs as"
            ) from exc
        try:
            self._db.row_factory = sqlite3.Row
            self._db.execute("PRAGMA journal_mode=WAL")
            # NORMAL in WAL mode loses nothing when the process is killed; only an
            # OS crash can drop the last transactions.
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._migrate()
        except sqlite3.DatabaseError as exc:
            # A file that is not SQLite, or a damaged one: one line saying what to do
            # (main.py prints SipErrors), not a traceback.
            self._db.close()
            if "locked" in str(exc):
                raise FailedPrecondition(
                    f"the store {self.path} is locked by another process ({exc}); stop it "
                    "and start sipd again"
                ) from exc
            raise FailedPrecondition(
                f"the store {self.path} is damaged or not a sipd database ({exc}); restore it "
                "from a backup, or move it aside to start with an empty store"
            ) from exc
        except BaseException:
            self._db.close()
            raise

    # -- plumbing -----------------------------------------------------------------

    def _migrate(self) -> None:
        with self._lock:
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version > len(MIGRATIONS):
                raise FailedPrecondition(
                    f"the store {self.path} has schema version {version}, newer than this "
                    f"sipd knows ({len(MIGRATIONS)}): it was written by a newer sipd; upgrade "
                    "sipd, or start this one with another --data-dir"
                )
            for number in range(version, len(MIGRATIONS)):
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    migration = MIGRATIONS[number]
                    if callable(migration):
                        migration(self._db)
                    else:
                        for statement in migration.split(";"):
                            if statement.strip():
                                self._db.execute(statement)
                    self._db.execute(f"PRAGMA user_version={number + 1}")
                    self._db.execute("COMMIT")
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def query(self, sql: str, args: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def query_one(self, sql: str, args: tuple[Any, ...] = ()) -> sqlite3.Row | None:
        with self._lock:
            return self._db.execute(sql, args).fetchone()

    def execute(self, sql: str, args: tuple[Any, ...] = ()) -> sqlite3.Cursor:
        with self._lock:
            return self._db.execute(sql, args)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- projects -----------------------------------------------------------------

    def bump_revision(self, db: sqlite3.Connection, project: str) -> None:
        db.execute("UPDATE projects SET revision = revision + 1 WHERE id = ?", (project,))

    # -- jobs ---------------------------------------------------------------------

    def insert_job(
        self,
        type_: str,
        project: str,
        params: dict[str, Any],
        source: str,
        on_insert: Callable[[sqlite3.Connection, int], None] | None = None,
    ) -> int:
        """Queue a job; `on_insert(db, job_id)` runs in the same transaction, so the
        job and what the caller records about it exist together or not at all."""
        with self.transaction() as db:
            cur = db.execute(
                "INSERT INTO jobs (type, state, project, params, source, create_time) "
                "VALUES (?, 'QUEUED', ?, ?, ?, ?)",
                (type_, project, json.dumps(params), source, time.time()),
            )
            job_id = int(cur.lastrowid or 0)
            if on_insert is not None:
                on_insert(db, job_id)
        return job_id

    def get_job(self, job_id: int) -> dict[str, Any] | None:
        row = self.query_one("SELECT * FROM jobs WHERE id = ?", (job_id,))
        return job_row(row) if row else None

    def next_queued_job(self) -> dict[str, Any] | None:
        row = self.query_one("SELECT * FROM jobs WHERE state = 'QUEUED' ORDER BY id LIMIT 1")
        return job_row(row) if row else None

    def count_jobs(self, state: str) -> int:
        row = self.query_one("SELECT COUNT(*) FROM jobs WHERE state = ?", (state,))
        return int(row[0]) if row else 0

    def mark_running(self, job_id: int) -> bool:
        cur = self.execute(
            "UPDATE jobs SET state = 'RUNNING', start_time = ? WHERE id = ? AND state = 'QUEUED'",
            (time.time(), job_id),
        )
        return cur.rowcount == 1

    def set_progress(self, job_id: int, progress: dict[str, Any]) -> None:
        self.execute(
            "UPDATE jobs SET progress = ? WHERE id = ? AND state = 'RUNNING'",
            (json.dumps(progress), job_id),
        )

    def finish_job(
        self,
        job_id: int,
        state: str,
        *,
        result: dict[str, Any] | None = None,
        error: str = "",
        error_code: str = "",
    ) -> bool:
        """Move a job to a final state; False when it already was in one."""
        cur = self.execute(
            "UPDATE jobs SET state = ?, result = ?, error = ?, error_code = ?, end_time = ? "
            "WHERE id = ? AND state IN ('QUEUED', 'RUNNING')",
            (
                state,
                json.dumps(result) if result is not None else None,
                error,
                error_code,
                time.time(),
                job_id,
            ),
        )
        return cur.rowcount == 1

    def fail_interrupted_jobs(self) -> list[int]:
        """At start: jobs a killed daemon left RUNNING can't be resumed mid-way."""
        with self.transaction() as db:
            ids = [r[0] for r in db.execute("SELECT id FROM jobs WHERE state = 'RUNNING'")]
            db.execute(
                "UPDATE jobs SET state = 'FAILED', error_code = 'ABORTED', end_time = ?, "
                "error = 'interrupted: the daemon stopped while this job was running; "
                "submit it again' WHERE state = 'RUNNING'",
                (time.time(),),
            )
        return ids

    def list_jobs(
        self,
        *,
        state: str = "",
        type_: str = "",
        project: str = "",
        before_id: int | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        where, args = ["1=1"], []
        for column, value in (("state", state), ("type", type_), ("project", project)):
            if value:
                where.append(f"{column} = ?")
                args.append(value)
        if before_id is not None:
            where.append("id < ?")
            args.append(before_id)
        rows = self.query(
            f"SELECT * FROM jobs WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT ?",
            (*args, limit),
        )
        return [job_row(r) for r in rows]


def job_row(row: sqlite3.Row) -> dict[str, Any]:
    job = dict(row)
    job["params"] = json.loads(job["params"]) if job["params"] else {}
    job["result"] = json.loads(job["result"]) if job["result"] else None
    job["progress"] = json.loads(job["progress"]) if job["progress"] else None
    return job
