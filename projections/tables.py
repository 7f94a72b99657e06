"""The projection tables in SQLite (``jobs``, ``queue_stats``, ``job_type_stats``), and queries.

The tables are created from the structs in :mod:`model`, so a column and its field cannot drift.
Every write happens inside the log's transaction; the reads are what workers and commands ask.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence

import msgspec

from evq.eventlog.sqlite import SqliteLog, run_script

from .apply import Deltas
from .model import (
    HELD,
    JOB_COLUMNS,
    PENDING,
    QUEUE_COLUMNS,
    TYPE_COLUMNS,
    JobRow,
    JobTypeStats,
    QueueCounts,
)

_COLS = ", ".join(JOB_COLUMNS)
_HELD = ", ".join(f"'{s}'" for s in HELD)

INDEXES = f"""
-- claim order within a queue: priority, then dispatch order (ids are time-ordered)
CREATE INDEX IF NOT EXISTS jobs_ready ON jobs(queue, priority DESC, id) WHERE state = '{PENDING}';
CREATE INDEX IF NOT EXISTS jobs_due ON jobs(queue, run_at) WHERE state = '{PENDING}';
CREATE INDEX IF NOT EXISTS jobs_leases ON jobs(lease_expires) WHERE state IN ({_HELD});
CREATE INDEX IF NOT EXISTS jobs_state ON jobs(state);
"""

_UPSERT_JOB = (f"INSERT INTO jobs({_COLS}) VALUES ({', '.join('?' * len(JOB_COLUMNS))}) "
               f"ON CONFLICT(id) DO UPDATE SET "
               + ", ".join(f"{c} = excluded.{c}" for c in JOB_COLUMNS[1:]))


def _bump_sql(table: str, key: str, fields: Sequence[str]) -> str:
    return (f"INSERT INTO {table}({key}, {', '.join(fields)}) "
            f"VALUES ({', '.join('?' * (len(fields) + 1))}) ON CONFLICT({key}) DO UPDATE SET "
            + ", ".join(f"{f} = {f} + excluded.{f}" for f in fields))


_BUMP_QUEUE = _bump_sql("queue_stats", "queue", QUEUE_COLUMNS[1:])
_BUMP_TYPE = _bump_sql("job_type_stats", "name", TYPE_COLUMNS[1:])


def _columns(struct: type) -> dict[str, type]:
    types: dict[str, type] = {}
    for f in msgspec.structs.fields(struct):
        t = f.type
        base = next((a for a in getattr(t, "__args__", (t,)) if a is not type(None)), str)
        types[f.name] = base if base in (int, float, str) else str
    return types


class SqliteTables:
    """Reads and writes of the projection tables, on the log's connection."""

    def __init__(self, log: SqliteLog) -> None:
        self.log = log

    @staticmethod
    def create(conn: sqlite3.Connection) -> None:
        """Create the tables and indexes (inside the schema transaction)."""
        import sqlite_utils  # only when a store is created: it takes 100 ms to import

        db = sqlite_utils.Database(conn)
        db.table("jobs").create(_columns(JobRow), pk="id", if_not_exists=True)
        db.table("queue_stats").create(_columns(QueueCounts), pk="queue", if_not_exists=True)
        db.table("job_type_stats").create(_columns(JobTypeStats), pk="name", if_not_exists=True)
        run_script(conn, INDEXES)

    # -- writes (inside a transaction) ---------------------------------------------------------

    def load(self, ids: Iterable[int]) -> dict[int, JobRow]:
        ids = list(ids)
        found: dict[int, JobRow] = {}
        for i in range(0, len(ids), 500):
            part = ids[i:i + 500]
            for t in self.log.conn.execute(
                    f"SELECT {_COLS} FROM jobs WHERE id IN ({','.join('?' * len(part))})", part):
                found[t[0]] = JobRow(*t)
        return found

    def save(self, rows: Iterable[JobRow], removed: Iterable[int]) -> None:
        conn = self.log.conn
        conn.executemany(_UPSERT_JOB, [msgspec.structs.astuple(r) for r in rows])
        if removed:
            conn.executemany("DELETE FROM jobs WHERE id = ?", [(i,) for i in removed])

    def bump(self, deltas: Deltas) -> None:
        conn = self.log.conn
        if deltas.queues:
            conn.executemany(_BUMP_QUEUE, [
                (q, *(d.get(f, 0) for f in QUEUE_COLUMNS[1:])) for q, d in deltas.queues.items()])
        if deltas.types:
            conn.executemany(_BUMP_TYPE, [
                (n, *(d.get(f, 0) for f in TYPE_COLUMNS[1:])) for n, d in deltas.types.items()])

    # -- reads ---------------------------------------------------------------------------------

    def _rows(self, where: str, params: Sequence[object], tail: str = "") -> list[JobRow]:
        return [JobRow(*t) for t in self.log.read_rows(
            f"SELECT {_COLS} FROM jobs WHERE {where} {tail}", params)]

    def ready(self, queue: str, now: float, limit: int) -> list[JobRow]:
        """Jobs of ``queue`` that may be claimed now, in claim order."""
        return self._rows(f"queue = ? AND state = '{PENDING}' AND run_at <= ?", (queue, now),
                          f"ORDER BY priority DESC, id LIMIT {int(limit)}")

    def expired(self, now: float, limit: int = 1000) -> list[JobRow]:
        """Held jobs whose lease ran out before ``now``."""
        return self._rows(f"state IN ({_HELD}) AND lease_expires < ?", (now,),
                          f"ORDER BY lease_expires LIMIT {int(limit)}")

    def next_due(self, queues: Sequence[str]) -> float | None:
        """The earliest ``run_at`` of a pending job in ``queues``."""
        got = [self.log.read_rows(
            f"SELECT min(run_at) FROM jobs WHERE queue = ? AND state = '{PENDING}'", (q,))[0][0]
            for q in queues]
        return min((t for t in got if t is not None), default=None)

    def next_lease_expiry(self) -> float | None:
        return self.log.read_rows(
            f"SELECT min(lease_expires) FROM jobs WHERE state IN ({_HELD})")[0][0]

    def get(self, job_id: int) -> JobRow | None:
        rows = self._rows("id = ?", (job_id,))
        return rows[0] if rows else None

    def find(self, *, states: Sequence[str] = (), queue: str | None = None,
             name: str | None = None, due_before: float | None = None,
             due_after: float | None = None, limit: int = 100,
             newest_first: bool = False) -> list[JobRow]:
        """Jobs matching every given filter, in dispatch order."""
        where: list[str] = ["1"]
        params: list[object] = []
        if states:
            where.append(f"state IN ({','.join('?' * len(states))})")
            params.extend(states)
        for clause, value in (("queue = ?", queue), ("name = ?", name),
                              ("run_at <= ?", due_before), ("run_at > ?", due_after)):
            if value is not None:
                where.append(clause)
                params.append(value)
        order = "DESC" if newest_first else ""
        return self._rows(" AND ".join(where), params, f"ORDER BY id {order} LIMIT {int(limit)}")

    def pending_ids(self, queue: str) -> list[int]:
        return [i for (i,) in self.log.read_rows(
            f"SELECT id FROM jobs WHERE queue = ? AND state = '{PENDING}' ORDER BY id", (queue,))]

    def queue_counts(self) -> list[QueueCounts]:
        return [QueueCounts(*t) for t in self.log.read_rows(
            f"SELECT {', '.join(QUEUE_COLUMNS)} FROM queue_stats ORDER BY queue")]

    def delayed_counts(self, now: float) -> dict[str, int]:
        """Pending jobs per queue whose ``run_at`` is still ahead."""
        return dict(self.log.read_rows(
            f"SELECT queue, count(*) FROM jobs WHERE state = '{PENDING}' AND run_at > ? "
            "GROUP BY queue", (now,)))

    def type_stats(self) -> list[JobTypeStats]:
        return [JobTypeStats(*t) for t in self.log.read_rows(
            f"SELECT {', '.join(TYPE_COLUMNS)} FROM job_type_stats ORDER BY name")]

    def dump(self) -> tuple[list[JobRow], list[QueueCounts], list[JobTypeStats]]:
        """Every row of every projection table, in key order: what a rebuild must reproduce."""
        return self._rows("1", (), "ORDER BY id"), self.queue_counts(), self.type_stats()

