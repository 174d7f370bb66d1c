"""The durable inbox queue: watches and their scenes in the store (tables of migration 2).

A scene row is keyed by (watch, path, size, mtime): the same bytes at the
same path are taken once; a changed file is a new row. Row states:

    QUEUED -> RUNNING -> DONE | FAILED
       ^_________|  (retry, split of a failed batch, shutdown)

QUEUED -> RUNNING happens inside the transaction that inserts the scenes'
predict job (`attach` as the engine's on_insert hook), so the store holds
either the rows QUEUED and no job, or the job and its rows RUNNING with its
id: a crash at any point leaves nothing to find again. Rows an older daemon
left SUBMITTING are settled by store migration 3.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable
from typing import Any

from sipd.errors import AlreadyExists, NotFound
from sipd.store import FINAL_STATES, Store
from sipd.watch.spec import WatchSpec

ACTIVE, PAUSED = "ACTIVE", "PAUSED"


class ClaimLost(Exception):
    """Scenes read for a batch changed before their job was created; nothing was submitted."""


def job_source(watch_id: str) -> str:
    return f"watches/{watch_id}"


class WatchQueue:
    def __init__(self, store: Store) -> None:
        self.store = store

    # -- watches ------------------------------------------------------------------

    def create_watch(self, spec: WatchSpec, from_config: bool = False) -> dict[str, Any]:
        try:
            self.store.execute(
                "INSERT INTO watches (id, spec, from_config, create_time) VALUES (?, ?, ?, ?)",
                (spec.id, json.dumps(spec.as_dict()), int(from_config), time.time()),
            )
        except sqlite3.IntegrityError:
            raise AlreadyExists(f"watch watches/{spec.id} already exists") from None
        return self.get_watch(spec.id)

    def update_spec(self, spec: WatchSpec, from_config: bool) -> None:
        self.store.execute(
            "UPDATE watches SET spec = ?, from_config = ? WHERE id = ?",
            (json.dumps(spec.as_dict()), int(from_config), spec.id),
        )

    def get_watch(self, watch_id: str) -> dict[str, Any]:
        row = self.store.query_one("SELECT * FROM watches WHERE id = ?", (watch_id,))
        if row is None:
            raise NotFound(
                f"watch watches/{watch_id} does not exist; `sipctl watch list` shows the watches"
            )
        return _watch_row(row)

    def list_watches(self) -> list[dict[str, Any]]:
        return [_watch_row(r) for r in self.store.query("SELECT * FROM watches ORDER BY id")]

    def delete_watch(self, watch_id: str) -> None:
        self.store.execute("DELETE FROM watches WHERE id = ?", (watch_id,))

    def set_state(self, watch_id: str, state: str) -> None:
        self.store.execute("UPDATE watches SET state = ? WHERE id = ?", (state, watch_id))

    def set_last_error(self, watch_id: str, error: str) -> None:
        self.store.execute(
            "UPDATE watches SET last_error = ?, last_error_time = ? WHERE id = ?",
            (error, time.time(), watch_id),
        )

    def counts(self) -> dict[str, dict[str, int]]:
        """{watch: {state: scenes}} for every watch, zeros included."""
        out = {
            r["id"]: dict.fromkeys(("QUEUED", "RUNNING", "DONE", "FAILED"), 0)
            for r in self.store.query("SELECT id FROM watches")
        }
        rows = self.store.query(
            "SELECT watch, state, COUNT(*) AS n FROM watch_files GROUP BY watch, state"
        )
        for r in rows:
            if r["watch"] in out:
                out[r["watch"]][r["state"]] += r["n"]
        return out

    # -- scenes -------------------------------------------------------------------

    def known_keys(self, watch_id: str) -> set[tuple[str, int, int]]:
        rows = self.store.query(
            "SELECT path, size, mtime_ns FROM watch_files WHERE watch = ?", (watch_id,)
        )
        return {(r[0], r[1], r[2]) for r in rows}

    def depth(self) -> int:
        """Scenes waiting across all watches (what watch.queue_limit bounds)."""
        row = self.store.query_one("SELECT COUNT(*) FROM watch_files WHERE state = 'QUEUED'")
        return int(row[0]) if row else 0

    def offer(self, watch_id: str, path: str, size: int, mtime_ns: int, limit: int) -> str:
        """Queue a complete unit: 'queued', 'known' (taken before), 'full' (backpressure)
        or 'gone' (the watch was removed)."""
        with self.store.transaction() as db:
            known = db.execute(
                "SELECT 1 FROM watch_files WHERE watch = ? AND path = ? AND size = ? "
                "AND mtime_ns = ?",
                (watch_id, path, size, mtime_ns),
            ).fetchone()
            if known:
                return "known"
            waiting = db.execute(
                "SELECT COUNT(*) FROM watch_files WHERE state = 'QUEUED'"
            ).fetchone()[0]
            if waiting >= limit:
                return "full"
            try:
                db.execute(
                    "INSERT INTO watch_files (watch, path, size, mtime_ns, state, detect_time) "
                    "VALUES (?, ?, ?, ?, 'QUEUED', ?)",
                    (watch_id, path, size, mtime_ns, time.time()),
                )
            except sqlite3.IntegrityError:
                return "gone"  # the watch was removed a moment ago
            return "queued"

    def ready_watches(self, now: float) -> list[str]:
        rows = self.store.query(
            "SELECT DISTINCT f.watch FROM watch_files f JOIN watches w ON w.id = f.watch "
            "WHERE f.state = 'QUEUED' AND f.not_before <= ? AND w.state = 'ACTIVE'",
            (now,),
        )
        return [r[0] for r in rows]

    def claim(self, watch_id: str, batch: int, now: float) -> list[dict[str, Any]]:
        """Up to `batch` ready scenes of one watch, in id order (a solo one alone).

        Only reads: the rows stay QUEUED until `attach` moves them in the transaction
        that creates their job, so a crash before that leaves them simply waiting."""
        rows = self.store.query(
            "SELECT * FROM watch_files WHERE watch = ? AND state = 'QUEUED' "
            "AND not_before <= ? ORDER BY solo DESC, id LIMIT ?",
            (watch_id, now, batch),
        )
        if rows and rows[0]["solo"]:
            rows = rows[:1]
        return [dict(r) for r in rows]

    def attach(
        self, ids: list[int], job_id: int, model: str, db: sqlite3.Connection | None = None
    ) -> None:
        """QUEUED -> RUNNING with `job_id`; on `db`, the open transaction inserting that job
        (the engine's on_insert hook), else in a transaction of its own.

        Raises ClaimLost when any of the rows is no longer QUEUED: the caller's transaction
        then rolls back, and no job exists for scenes that were not all still waiting."""
        if db is None:
            with self.store.transaction() as own:
                self.attach(ids, job_id, model, own)
            return
        cur = db.execute(
            f"UPDATE watch_files SET state = 'RUNNING', job = ?, model = ?, start_time = ? "
            f"WHERE id IN ({_marks(ids)}) AND state = 'QUEUED'",
            (job_id, model, time.time(), *ids),
        )
        if cur.rowcount != len(ids):
            raise ClaimLost(
                f"{len(ids) - cur.rowcount} of {len(ids)} scene(s) changed since they were "
                "read (dropped, failed or their watch removed); not submitted"
            )

    def release(self, ids: list[int], not_before: float = 0.0) -> None:
        """Back to QUEUED without counting an attempt (stopped by a shutdown: nothing ran)."""
        self.store.execute(
            f"UPDATE watch_files SET state = 'QUEUED', job = NULL, stopping = 0, not_before = ? "
            f"WHERE id IN ({_marks(ids)}) AND state = 'RUNNING'",
            (not_before, *ids),
        )

    def retry(self, ids: list[int], not_before: float, split: bool) -> None:
        """Back to QUEUED after a transient failure: one more attempt counted."""
        self.store.execute(
            f"UPDATE watch_files SET state = 'QUEUED', job = NULL, stopping = 0, "
            f"attempts = attempts + 1, not_before = ?, solo = MAX(solo, ?) "
            f"WHERE id IN ({_marks(ids)}) AND state = 'RUNNING'",
            (not_before, int(split), *ids),
        )

    def split(self, ids: list[int]) -> None:
        """A batch failed for good: retry each scene alone to find the bad one(s)."""
        self.store.execute(
            f"UPDATE watch_files SET state = 'QUEUED', job = NULL, stopping = 0, solo = 1, "
            f"not_before = 0 WHERE id IN ({_marks(ids)}) AND state = 'RUNNING'",
            tuple(ids),
        )

    def set_dest(self, file_id: int, dest: str) -> None:
        self.store.execute("UPDATE watch_files SET dest = ? WHERE id = ?", (dest, file_id))

    def mark_done(self, file_id: int, result: dict[str, Any]) -> bool:
        cur = self.store.execute(
            "UPDATE watch_files SET state = 'DONE', result = ?, end_time = ?, stopping = 0 "
            "WHERE id = ? AND state = 'RUNNING'",
            (json.dumps(result), time.time(), file_id),
        )
        return cur.rowcount == 1

    def mark_failed(self, file_id: int, error: str) -> bool:
        cur = self.store.execute(
            "UPDATE watch_files SET state = 'FAILED', error = ?, end_time = ?, stopping = 0 "
            "WHERE id = ? AND state IN ('QUEUED', 'RUNNING')",
            (error, time.time(), file_id),
        )
        return cur.rowcount == 1

    def drop(self, file_id: int) -> None:
        """Forget a waiting scene whose file vanished or changed before it ran."""
        self.store.execute("DELETE FROM watch_files WHERE id = ? AND state = 'QUEUED'", (file_id,))

    def rows_of_job(self, job_id: int, running_only: bool = True) -> list[dict[str, Any]]:
        """The scenes of a job in id order, which is the order of its request (`claim`).

        running_only=False adds those already finished (DONE, FAILED keep their job): all
        of them line up with the job's result scenes one to one."""
        state = "AND state = 'RUNNING'" if running_only else ""
        rows = self.store.query(
            f"SELECT * FROM watch_files WHERE job = ? {state} ORDER BY id", (job_id,)
        )
        return [dict(r) for r in rows]

    def finished_jobs(self) -> list[int]:
        """Jobs that ended while their scenes are still RUNNING here (missed or crashed)."""
        rows = self.store.query(
            "SELECT DISTINCT f.job FROM watch_files f JOIN jobs j ON j.id = f.job "
            f"WHERE f.state = 'RUNNING' AND j.state IN ({_marks(FINAL_STATES)})",
            FINAL_STATES,
        )
        return [r[0] for r in rows]

    def inflight_jobs(self) -> int:
        row = self.store.query_one(
            "SELECT COUNT(DISTINCT job) FROM watch_files WHERE state = 'RUNNING'"
        )
        return int(row[0]) if row else 0

    def running_ids_of_watch(self, watch_id: str) -> list[int]:
        rows = self.store.query(
            "SELECT DISTINCT job FROM watch_files WHERE watch = ? AND state = 'RUNNING' "
            "AND job IS NOT NULL",
            (watch_id,),
        )
        return [r[0] for r in rows]

    def mark_stopping(self) -> None:
        """At shutdown: the engine is about to cancel these scenes' jobs; requeue, don't fail."""
        self.store.execute("UPDATE watch_files SET stopping = 1 WHERE state = 'RUNNING'")

    def clear_stopping_of_live_jobs(self) -> None:
        """At start: a job a shutdown left queued runs now; its scenes are ordinary again."""
        self.store.execute(
            "UPDATE watch_files SET stopping = 0 WHERE state = 'RUNNING' AND job IN "
            "(SELECT id FROM jobs WHERE state IN ('QUEUED', 'RUNNING'))"
        )

    def scene_rows(self, ids: Iterable[int]) -> list[dict[str, Any]]:
        ids = list(ids)
        rows = self.store.query(
            f"SELECT * FROM watch_files WHERE id IN ({_marks(ids)}) ORDER BY id", tuple(ids)
        )
        return [dict(r) for r in rows]


def input_of(raster: str, unit: str) -> bool:
    """Whether the predictor input `raster` was made from `unit` (sipd.watch.products)."""
    return raster == unit or any(
        raster.startswith(f"{prefix}{unit}/") for prefix in ("", "/vsizip/", "/vsitar/")
    )


def _marks(items: Iterable[Any]) -> str:
    return ", ".join("?" for _ in items) or "NULL"


def _watch_row(row: sqlite3.Row) -> dict[str, Any]:
    data = dict(row)
    data["spec"] = WatchSpec(**json.loads(data["spec"]))
    data["from_config"] = bool(data["from_config"])
    return data
