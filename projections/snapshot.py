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

import sqlite3
import time
import zlib
from dataclasses import dataclass

import msgspec

from evq.eventlog.sqlite import SqliteLog, Where, run_script

from .model import JobRow

SNAPSHOTS_DDL = """
CREATE TABLE IF NOT EXISTS snapshots (
    seq     INTEGER PRIMARY KEY,   -- the projections after the event at this position
    ts      REAL NOT NULL,         -- when the snapshot was taken
    jobs    INTEGER NOT NULL,
    body    BLOB NOT NULL          -- zlib of msgpack {table: [columns, rows]}
)
"""

# Tables that are not counters of the projections: the log, the job rows, and what this package
# and the archive keep beside them. Every other table is a counter table (``bump`` adds to it).
_NOT_COUNTERS = ("events", "jobs", "snapshots", "archive_segments", "archive_jobs")

Table = tuple[list[str], list[tuple]]  # column names, rows
_decoder = msgspec.msgpack.Decoder(dict[str, tuple[list[str], list[tuple]]])


@dataclass
class Snapshot:
    """Projections as of position ``seq``: the job rows, and the rows of each counter table."""

    seq: int
    ts: float
    jobs: dict[int, JobRow]
    counters: dict[str, Table]


def counter_tables(conn: sqlite3.Connection) -> list[str]:
    """The tables that hold counters of the projections (not views, not the log or job rows)."""
    return [n for (n,) in conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
        f"AND name NOT IN ({', '.join('?' * len(_NOT_COUNTERS))}) ORDER BY name",
        _NOT_COUNTERS)]


def _table(conn: sqlite3.Connection, name: str) -> Table:
    cur = conn.execute(f"SELECT * FROM {name} ORDER BY 1")
    return [d[0] for d in cur.description], cur.fetchall()


def take(log: SqliteLog, *, now: float | None = None) -> tuple[int, int, int]:
    """Record the current projections; returns ``(seq, jobs, compressed bytes)``."""
    with log.reading() as conn:  # every table at the same position
        seq = conn.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()[0]
        body = {name: _table(conn, name) for name in ("jobs", *counter_tables(conn))}
    blob = zlib.compress(msgspec.msgpack.encode(body), 1)
    jobs = len(body["jobs"][1])
    with log.transaction() as conn:
        run_script(conn, SNAPSHOTS_DDL)
        conn.execute("INSERT OR REPLACE INTO snapshots(seq, ts, jobs, body) VALUES (?, ?, ?, ?)",
                     (seq, time.time() if now is None else now, jobs, blob))
    return seq, jobs, len(blob)


def has_snapshots(log: SqliteLog) -> bool:
    return bool(log.read_rows("SELECT 1 FROM sqlite_master WHERE name = 'snapshots'"))


def newest(log: SqliteLog, *, at_or_before: int | None = None,
           ts_at_or_before: float | None = None) -> Snapshot | None:
    """The newest snapshot at or before a position (and taken at or before a time)."""
    if not has_snapshots(log):
        return None
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


def restore_counters(conn: sqlite3.Connection, counters: dict[str, Table]) -> None:
    """Empty every counter table and put a snapshot's rows back (inside a transaction)."""
    for name in counter_tables(conn):
        conn.execute(f"DELETE FROM {name}")
        columns, rows = counters.get(name, ([], []))
        if rows:
            conn.executemany(f"INSERT INTO {name}({', '.join(columns)}) "
                             f"VALUES ({', '.join('?' * len(columns))})", rows)


def listing(log: SqliteLog) -> list[tuple[int, float, int, int]]:
    """Every snapshot: ``(seq, ts, jobs, compressed bytes)``, oldest first."""
    if not has_snapshots(log):
        return []
    return log.read_rows("SELECT seq, ts, jobs, length(body) FROM snapshots ORDER BY seq")
