"""Snapshots: the projections at one log position, so that a replay need not start at seq 0.

One row of the ``snapshots`` table per snapshot: its position ``seq``, when it was taken, how many
jobs it holds, and one zlib-compressed msgpack blob of every row of ``jobs``, ``queue_stats`` and
``job_type_stats`` as tuples in column order. A blob rather than copies of the tables: a snapshot
is written and read whole, never queried, so one decode is the fastest load, the rows compress
well together, and dropping an old snapshot is deleting one row.

The projections are read in one read transaction (a consistent view at one position, which does
not block workers); only the insert of the finished blob takes the write lock.
"""

from __future__ import annotations

import time
import zlib
from dataclasses import dataclass

import msgspec

from evq.eventlog.sqlite import SqliteLog, run_script

from .model import JOB_COLUMNS, QUEUE_COLUMNS, TYPE_COLUMNS, JobRow, JobTypeStats, QueueCounts

SNAPSHOTS_DDL = """
CREATE TABLE IF NOT EXISTS snapshots (
    seq     INTEGER PRIMARY KEY,   -- the projections after the event at this position
    ts      REAL NOT NULL,         -- when the snapshot was taken
    jobs    INTEGER NOT NULL,
    body    BLOB NOT NULL          -- zlib of msgpack [jobs rows, queue_stats rows, type rows]
)
"""

_Body = tuple[list[tuple], list[tuple], list[tuple]]
_decoder = msgspec.msgpack.Decoder(tuple[list[tuple], list[tuple], list[tuple]])


@dataclass
class Snapshot:
    """Projections as of position ``seq``."""

    seq: int
    ts: float
    jobs: dict[int, JobRow]
    queues: list[QueueCounts]
    types: list[JobTypeStats]


def has_snapshots(log: SqliteLog) -> bool:
    return bool(log.read_rows("SELECT 1 FROM sqlite_master WHERE name = 'snapshots'"))


def take(log: SqliteLog, *, now: float | None = None) -> tuple[int, int, int]:
    """Record the current projections; returns ``(seq, jobs, compressed bytes)``."""
    with log.lock:
        log.conn.execute("BEGIN")  # one read transaction: every table at the same position
        try:
            got = log.conn.execute(
                "SELECT seq FROM sqlite_sequence WHERE name = 'events'").fetchone()
            seq = got[0] if got else 0
            body: _Body = tuple(  # type: ignore[assignment]
                log.conn.execute(f"SELECT {', '.join(cols)} FROM {table} ORDER BY 1").fetchall()
                for table, cols in (("jobs", JOB_COLUMNS), ("queue_stats", QUEUE_COLUMNS),
                                    ("job_type_stats", TYPE_COLUMNS)))
        finally:
            log.conn.execute("COMMIT")
    blob = zlib.compress(msgspec.msgpack.encode(body), 1)
    with log.transaction() as conn:
        run_script(conn, SNAPSHOTS_DDL)
        conn.execute("INSERT OR REPLACE INTO snapshots(seq, ts, jobs, body) VALUES (?, ?, ?, ?)",
                     (seq, time.time() if now is None else now, len(body[0]), blob))
    return seq, len(body[0]), len(blob)


def newest(log: SqliteLog, *, at_or_before: int | None = None,
           ts_at_or_before: float | None = None) -> Snapshot | None:
    """The newest snapshot at or before a position (and taken at or before a time)."""
    if not has_snapshots(log):
        return None
    where: list[str] = ["1"]
    params: list[object] = []
    if at_or_before is not None:
        where.append("seq <= ?")
        params.append(at_or_before)
    if ts_at_or_before is not None:
        where.append("ts <= ?")
        params.append(ts_at_or_before)
    got = log.read_rows(f"SELECT seq, ts, body FROM snapshots WHERE {' AND '.join(where)} "
                        "ORDER BY seq DESC LIMIT 1", params)
    if not got:
        return None
    seq, ts, blob = got[0]
    jobs, queues, types = _decoder.decode(zlib.decompress(blob))
    return Snapshot(seq, ts, {t[0]: JobRow(*t) for t in jobs},
                    [QueueCounts(*t) for t in queues], [JobTypeStats(*t) for t in types])


def listing(log: SqliteLog) -> list[tuple[int, float, int, int]]:
    """Every snapshot: ``(seq, ts, jobs, compressed bytes)``, oldest first."""
    if not has_snapshots(log):
        return []
    return log.read_rows("SELECT seq, ts, jobs, length(body) FROM snapshots ORDER BY seq")
