"""The ``workers`` projection: each worker's start, latest heartbeat and stop, for liveness.

Worker events are rare (a start, one heartbeat per heartbeat interval, a stop), so they are
picked out of each appended batch here and applied through :func:`apply.apply_worker`.
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from evq.eventlog.codec import Record
from evq.eventlog.events import WorkerEvent
from evq.eventlog.sqllog import SqlLog

from .apply import apply_worker
from .model import WORKER_COLUMNS, WorkerRow
from .tables import HELD_NOW, replace_sql

_COLS = ", ".join(WORKER_COLUMNS)
_UPSERT = replace_sql("workers", WORKER_COLUMNS)

DDL = """
CREATE TABLE IF NOT EXISTS workers (
    name        TEXT PRIMARY KEY,
    host        TEXT,
    pid         INTEGER,
    queues      TEXT,
    concurrency INTEGER,
    pool        TEXT,
    lease       REAL,
    started_at  REAL,
    last_seen   REAL,
    stopped_at  REAL,
    done        INTEGER,
    names       TEXT NOT NULL DEFAULT '',
    kind        TEXT NOT NULL DEFAULT 'worker'
)
"""


def worker_events(records: Iterable[Record]) -> list[WorkerEvent]:
    return [r.event for r in records if isinstance(r.event, WorkerEvent)]


class WorkerTable:
    """Reads and writes of the ``workers`` table, on the log's connection."""

    def __init__(self, log: SqlLog) -> None:
        self.log = log

    @staticmethod
    def create(log: SqlLog) -> None:
        log.run_script(DDL)

    def record(self, events: list[WorkerEvent]) -> None:
        """Apply worker events (inside the append's transaction)."""
        if not events:
            return
        names = sorted({e.worker for e in events})
        rows = {r.name: r for r in self._rows(*self.log.among("name", names))}
        for e in events:
            rows[e.worker] = apply_worker(rows.get(e.worker), e)
        self.log.executemany(_UPSERT, [msgspec.structs.astuple(r) for r in rows.values()])

    def _rows(self, where: str, params: Iterable[object] = ()) -> list[WorkerRow]:
        return [WorkerRow(*t) for t in self.log.read_rows(
            f"SELECT {_COLS} FROM workers WHERE {where} ORDER BY started_at, name",
            list(params))]

    def all(self) -> list[WorkerRow]:
        return self._rows("1 = 1")

    def running(self, kind: str = "worker") -> list[WorkerRow]:
        """Workers (or schedulers) that have not stopped (alive, or lost if their heartbeat is
        old)."""
        return self._rows("stopped_at IS NULL AND kind = ?", (kind,))

    def held(self) -> dict[str, list[int]]:
        """The ids of the jobs each worker holds a lease on (through the partial index of held
        jobs: without the hint SQLite scans every job, 50 ms at a million)."""
        out: dict[str, list[int]] = {}
        for worker, job_id in self.log.read_rows(
                f"SELECT worker, id FROM jobs{self.log.index_hint('jobs_leases')} "
                f"WHERE {HELD_NOW} ORDER BY id"):
            out.setdefault(worker, []).append(job_id)
        return out
