"""Jobs on disk: one SQLite file (standard library ``sqlite3``, WAL mode) that every server
process of a service shares.

Each state change is one SQL statement, atomic by SQLite's write lock: a queued job is claimed by
``UPDATE ... WHERE status = 'queued' ... RETURNING``, so of all the processes polling the file
exactly one gets it. ``synchronous=NORMAL`` in WAL mode keeps every committed change through a
``kill -9`` of the server (not through a power cut of the machine), and a commit costs no fsync.

Times are Unix seconds (floats). The stored arguments are a pickle of the validated call, kept
until the job ends; the result is the exact answer of the synchronous call: status, media type
and bytes.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TERMINAL = ("succeeded", "failed", "cancelled")
ACTIVE = ("queued", "running")
STATUSES = (*ACTIVE, *TERMINAL)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    notebook TEXT NOT NULL,
    route TEXT NOT NULL,
    status TEXT NOT NULL,
    created REAL NOT NULL,
    started REAL,
    finished REAL,
    progress TEXT,
    error TEXT,
    arguments BLOB,
    result BLOB,
    result_status INTEGER,
    result_type TEXT,
    webhook TEXT,
    deliveries TEXT NOT NULL DEFAULT '[]',
    attempts INTEGER NOT NULL DEFAULT 0,
    retries INTEGER NOT NULL DEFAULT 0,
    owner TEXT,
    heartbeat REAL,
    traceparent TEXT
);
CREATE INDEX IF NOT EXISTS jobs_by_status ON jobs (notebook, status, created);
CREATE INDEX IF NOT EXISTS jobs_by_created ON jobs (notebook, created);
CREATE INDEX IF NOT EXISTS jobs_by_owner ON jobs (owner, status);
CREATE INDEX IF NOT EXISTS jobs_by_finished ON jobs (finished);
-- How many jobs are queued or running, kept by triggers: --max-jobs is checked in O(1).
CREATE TABLE IF NOT EXISTS active (n INTEGER NOT NULL);
INSERT INTO active SELECT COUNT(*) FROM jobs WHERE status IN ('queued', 'running')
    AND NOT EXISTS (SELECT 1 FROM active);
CREATE TRIGGER IF NOT EXISTS active_added AFTER INSERT ON jobs
    WHEN NEW.status IN ('queued', 'running')
    BEGIN UPDATE active SET n = n + 1; END;
CREATE TRIGGER IF NOT EXISTS active_ended AFTER UPDATE OF status ON jobs
    WHEN OLD.status IN ('queued', 'running') AND NEW.status NOT IN ('queued', 'running')
    BEGIN UPDATE active SET n = n - 1; END;
CREATE TRIGGER IF NOT EXISTS active_deleted AFTER DELETE ON jobs
    WHEN OLD.status IN ('queued', 'running')
    BEGIN UPDATE active SET n = n - 1; END;
"""

_DOCUMENT = ("id, route, status, created, started, finished, progress, error, webhook, "
             "deliveries, attempts")


@dataclass(frozen=True)
class Claimed:
    """A job this process took to run."""

    id: str
    route: str
    arguments: bytes
    attempts: int
    webhook: str | None
    traceparent: str | None = None  # the submitting request's span, when tracing was on


@dataclass(frozen=True)
class Result:
    status: int
    media_type: str
    body: bytes


class JobStore:
    """The jobs of one notebook in an SQLite file (the notebooks of a folder may share one);
    every method is one short statement or transaction."""

    def __init__(self, path: Path, notebook: str) -> None:
        self.path = path
        self.notebook = notebook
        path.parent.mkdir(parents=True, exist_ok=True)
        # Autocommit: each statement commits on its own; claims need no explicit transaction.
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False,
                                  timeout=10)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(_SCHEMA)
        _add_traceparent(self.db)

    def close(self) -> None:
        self.db.close()

    # -- writes ---------------------------------------------------------------------------

    def add(self, job_id: str, route: str, arguments: bytes, *, retries: int,
            webhook: str | None, max_active: int,
            traceparent: str | None = None) -> float | None:
        """Queue a job, unless ``max_active`` jobs are queued or running already; the time it
        was created, or None."""
        created = time.time()
        cursor = self.db.execute(
            "INSERT INTO jobs (id, notebook, route, status, created, arguments, retries, "
            "webhook, traceparent) SELECT ?, ?, ?, 'queued', ?, ?, ?, ?, ? "
            "WHERE (SELECT n FROM active) < ?",
            (job_id, self.notebook, route, created, arguments, retries, webhook, traceparent,
             max_active),
        )
        return created if cursor.rowcount == 1 else None

    def claim(self, owner: str, most: int) -> list[Claimed]:
        """Take up to ``most`` of the oldest queued jobs for ``owner`` to run; of all the
        processes sharing the file, only one gets each job."""
        now = time.time()
        rows = self.db.execute(
            "UPDATE jobs SET status = 'running', owner = ?, started = ?, heartbeat = ?, "
            "attempts = attempts + 1 "
            "WHERE id IN (SELECT id FROM jobs WHERE notebook = ? AND status = 'queued' "
            "ORDER BY created LIMIT ?) "
            "AND status = 'queued' "
            "RETURNING id, route, arguments, attempts, webhook, traceparent, created",
            (owner, now, now, self.notebook, most),
        ).fetchall()
        rows.sort(key=lambda row: row[-1])  # oldest first
        return [Claimed(*row[:-1]) for row in rows]

    def finish(self, job_id: str, owner: str, status: str, result: Result,
               error: dict[str, str] | None) -> bool:
        """Store the end of a job ``owner`` runs; False when it was cancelled or taken away
        meanwhile (its result is then discarded)."""
        cursor = self.db.execute(
            "UPDATE jobs SET status = ?, finished = ?, result = ?, result_status = ?, "
            "result_type = ?, error = ?, arguments = NULL "
            "WHERE id = ? AND status = 'running' AND owner = ?",
            (status, time.time(), result.body, result.status, result.media_type,
             json.dumps(error) if error else None, job_id, owner),
        )
        return cursor.rowcount == 1

    def cancel(self, job_id: str) -> str | None:
        """Cancel a queued or running job. The status it had (a terminal one: it had ended and
        stays so), or None when there is no such job."""
        while True:
            row = self.db.execute("SELECT status FROM jobs WHERE id = ? AND notebook = ?",
                                  (job_id, self.notebook)).fetchone()
            if row is None or row[0] in TERMINAL:
                return None if row is None else row[0]
            cursor = self.db.execute(
                "UPDATE jobs SET status = 'cancelled', finished = ?, arguments = NULL "
                "WHERE id = ? AND status = ?", (time.time(), job_id, row[0]),
            )
            if cursor.rowcount == 1:
                return row[0]  # else it changed meanwhile: look again

    def set_progress(self, job_id: str, owner: str, fraction: float | None,
                     message: str) -> None:
        self.db.execute(
            "UPDATE jobs SET progress = ? WHERE id = ? AND status = 'running' AND owner = ?",
            (json.dumps({"fraction": fraction, "message": message}), job_id, owner),
        )

    def beat(self, owner: str) -> None:
        """``owner`` is alive: its running jobs are not orphans."""
        self.db.execute("UPDATE jobs SET heartbeat = ? WHERE owner = ? AND status = 'running'",
                        (time.time(), owner))

    def running_owners(self) -> list[tuple[str, float]]:
        """``(owner, last heartbeat)`` of every process with a running job."""
        return self.db.execute(
            "SELECT owner, MAX(heartbeat) FROM jobs WHERE status = 'running' GROUP BY owner"
        ).fetchall()

    def orphaned(self, owner: str, only: list[str] | None = None
                 ) -> list[tuple[str, str, str | None]]:
        """Take back the running jobs of ``owner`` (a dead process; or ``only`` these, of a
        stopping app): those with retries left are queued again; ``(id, route, webhook)`` of
        the others, for the caller to fail."""
        among = ""
        params: list[Any] = [owner]
        if only is not None:
            among = f" AND id IN ({','.join('?' * len(only))})"
            params += only
        self.db.execute(
            "UPDATE jobs SET status = 'queued', owner = NULL, progress = NULL "
            "WHERE owner = ? AND status = 'running' AND attempts <= retries" + among, params,
        )
        return self.db.execute(
            "SELECT id, route, webhook FROM jobs WHERE owner = ? AND status = 'running'"
            + among,
            params,
        ).fetchall()

    def interrupted(self, job_id: str, owner: str, result: Result,
                    error: dict[str, str]) -> bool:
        """Fail a job whose process died while it ran."""
        return self.finish(job_id, owner, "failed", result, error)

    def record_delivery(self, job_id: str, attempt: dict[str, Any]) -> None:
        self.db.execute(
            "UPDATE jobs SET deliveries = json_insert(deliveries, '$[#]', json(?)) WHERE id = ?",
            (json.dumps(attempt), job_id),
        )

    def expire(self, before: float) -> int:
        """Delete the jobs that finished before ``before``; how many."""
        return self.db.execute(
            "DELETE FROM jobs WHERE finished < ? AND status IN ('succeeded', 'failed', "
            "'cancelled')", (before,)
        ).rowcount

    # -- reads ----------------------------------------------------------------------------

    def document(self, job_id: str) -> dict[str, Any] | None:
        row = self.db.execute(f"SELECT {_DOCUMENT} FROM jobs WHERE id = ? AND notebook = ?",
                              (job_id, self.notebook)).fetchone()
        return _document(row) if row is not None else None

    def documents(self, status: str | None, limit: int, after: str | None
                  ) -> list[dict[str, Any]]:
        """Jobs newest first, optionally of one status, after the job ``after`` (a page's
        last)."""
        where, params = ["notebook = ?"], [self.notebook]
        if status is not None:
            where.append("status = ?")
            params.append(status)
        if after is not None:
            where.append("(created, id) < (SELECT created, id FROM jobs WHERE id = ?)")
            params.append(after)
        sql = f"SELECT {_DOCUMENT} FROM jobs WHERE " + " AND ".join(where)
        sql += " ORDER BY created DESC, id DESC LIMIT ?"
        rows = self.db.execute(sql, (*params, limit)).fetchall()
        return [_document(row) for row in rows]

    def result(self, job_id: str) -> tuple[str, Result | None] | None:
        row = self.db.execute(
            "SELECT status, result_status, result_type, result FROM jobs "
            "WHERE id = ? AND notebook = ?", (job_id, self.notebook),
        ).fetchone()
        if row is None:
            return None
        status, code, media_type, body = row
        return status, (Result(code, media_type, body) if code is not None else None)

    def statuses(self, job_ids: list[str]) -> dict[str, tuple[str, str | None]]:
        """``id -> (status, owner)`` of some jobs."""
        if not job_ids:
            return {}
        marks = ",".join("?" * len(job_ids))
        rows = self.db.execute(
            f"SELECT id, status, owner FROM jobs WHERE id IN ({marks})", job_ids
        ).fetchall()
        return {job_id: (status, owner) for job_id, status, owner in rows}


def _add_traceparent(db: sqlite3.Connection) -> None:
    """A file written before jobs kept their request's span context gets the column."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(jobs)")}
    if "traceparent" not in columns:
        try:
            db.execute("ALTER TABLE jobs ADD COLUMN traceparent TEXT")
        except sqlite3.OperationalError:  # another process added it meanwhile
            pass


def _document(row: tuple) -> dict[str, Any]:
    (job_id, route, status, created, started, finished, progress, error, webhook, deliveries,
     attempts) = row
    document: dict[str, Any] = {
        "id": job_id,
        "status": status,
        "route": route,
        "created": iso(created),
        "started": iso(started),
        "finished": iso(finished),
        "progress": json.loads(progress) if progress else None,
        "error": json.loads(error) if error else None,
        "attempts": attempts,
    }
    if webhook:
        document["webhook"] = {"url": webhook, "deliveries": json.loads(deliveries)}
    return document


def iso(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    millis = int(seconds * 1000) % 1000
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"
