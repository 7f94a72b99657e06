"""Snapshots: the projections at one log position, so that a replay need not start at seq 0.

One row of the ``snapshots`` table per snapshot: its position ``seq``, when it was taken, how many
jobs it holds, and one zlib-compressed msgpack blob holding, for ``jobs`` and every counter table,
its column names and all its rows. A blob rather than copies of the tables: a snapshot is written
and read whole, never queried, so one decode is the fastest load, the rows compress well together,
and dropping an old snapshot is deleting one row. Rows are restored by column name, so a snapshot
stays loadable after a later version adds columns (with defaults).

The projections are read in one read transaction (a consistent view at one position, which does
not block workers); only the insert of the finished blob takes the write lock.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import msgspec

from evq.eventlog.sqllog import SqlLog, Where

from .model import (
    COUNT_COLUMNS,
    GROUP_COLUMNS,
    JOB_COLUMNS,
    MINUTE_COLUMNS,
    WORKER_COLUMNS,
    JobRow,
)

SNAPSHOTS_DDL = """
CREATE TABLE IF NOT EXISTS snapshots (
    seq     INTEGER PRIMARY KEY,   -- the projections after the event at this position
    ts      REAL NOT NULL,         -- when the snapshot was taken
    jobs    INTEGER NOT NULL,
    body    BLOB NOT NULL          -- zlib of msgpack {table: [columns, rows]}
)
"""

# The projection tables beside ``jobs`` (counters and the workers), with their columns: what a
# snapshot holds and a replay rebuilds. A new projection table is added here.
COUNTER_TABLES = {"counts": COUNT_COLUMNS, "minutes": MINUTE_COLUMNS, "workers": WORKER_COLUMNS,
                  "groups": GROUP_COLUMNS}
# Counters a version added after some snapshots were taken: restored as 0 from those.
_ADDED = {"counts": {"waiting": 0}}

Table = tuple[list[str], list[tuple]]  # column names, rows
_decoder = msgspec.msgpack.Decoder(dict[str, tuple[list[str], list[tuple]]])


@dataclass
class Snapshot:
    """Projections as of position ``seq``: the job rows, and the rows of each counter table."""

    seq: int
    ts: float
    jobs: dict[int, JobRow]
    counters: dict[str, Table]


def _table(log: SqlLog, name: str, columns: Sequence[str]) -> Table:
    return list(columns), log.read_rows(f"SELECT {', '.join(columns)} FROM {name} ORDER BY 1")


def take(log: SqlLog, *, now: float | None = None) -> tuple[int, int, int]:
    """Record the current projections; returns ``(seq, jobs, compressed bytes)``."""
    with log.reading():  # every table at the same position
        seq = log.last_seq()
        body = {name: _table(log, name, columns)
                for name, columns in {"jobs": JOB_COLUMNS, **COUNTER_TABLES}.items()}
    blob = zlib.compress(msgspec.msgpack.encode(body), 1)
    jobs = len(body["jobs"][1])
    with log.transaction():
        log.execute("INSERT INTO snapshots(seq, ts, jobs, body) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT(seq) DO UPDATE SET ts = excluded.ts, jobs = excluded.jobs, "
                    "body = excluded.body", (seq, time.time() if now is None else now, jobs, blob))
    return seq, jobs, len(blob)


def newest(log: SqlLog, *, at_or_before: int | None = None,
           ts_at_or_before: float | None = None) -> Snapshot | None:
    """The newest snapshot at or before a position (and taken at or before a time)."""
    where = Where().given(("seq <= ?", at_or_before), ("ts <= ?", ts_at_or_before))
    got = log.read_rows(f"SELECT seq, ts, body FROM snapshots WHERE {where} "
                        "ORDER BY seq DESC LIMIT 1", where.params)
    if not got:
        return None
    seq, ts, blob = got[0]
    tables = _decoder.decode(zlib.decompress(blob))
    columns, rows = tables.pop("jobs")
    jobs = {}
    for r in rows:
        job = JobRow(**dict(zip(columns, r, strict=True)))
        jobs[job.id] = job
    return Snapshot(seq, ts, jobs, tables)


def restore_counters(log: SqlLog, counters: dict[str, Table]) -> None:
    """Empty every counter table and put a snapshot's rows back (inside a transaction)."""
    for name in COUNTER_TABLES:
        log.execute(f"DELETE FROM {name}")
        columns, rows = counters.get(name, ([], []))
        added = {c: v for c, v in _ADDED.get(name, {}).items() if c not in columns}
        if rows and added:
            columns = [*columns, *added]
            rows = [(*r, *added.values()) for r in rows]
        if rows:
            log.executemany(f"INSERT INTO {name}({', '.join(columns)}) "
                            f"VALUES ({', '.join('?' * len(columns))})", rows)


def listing(log: SqlLog) -> list[tuple[int, float, int, int]]:
    """Every snapshot: ``(seq, ts, jobs, compressed bytes)``, oldest first."""
    return log.read_rows("SELECT seq, ts, jobs, length(body) FROM snapshots ORDER BY seq")
