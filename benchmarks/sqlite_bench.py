"""The ceiling: plain sqlite3 on the same disk, WAL and ``synchronous=NORMAL`` as evq opens its
store, inserting rows shaped like evq's events (seq, ts, type, job_id, queue, body)."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

DDL = ("CREATE TABLE events (seq INTEGER PRIMARY KEY, ts REAL NOT NULL, type TEXT NOT NULL, "
       "job_id INTEGER NOT NULL, queue TEXT, body TEXT NOT NULL)")
INSERT = "INSERT INTO events(ts, type, job_id, queue, body) VALUES (?, ?, ?, ?, ?)"
BATCH = 10_000


def _open(db: Path) -> sqlite3.Connection:
    db.unlink(missing_ok=True)
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute(DDL)
    return conn


def _row(i: int) -> tuple[float, str, int, str, str]:
    return (time.time(), "JobDispatched", i, "default",
            f'{{"name":"Noop","payload":{{"n":{i}}}}}')


def one_per_transaction(n: int, tmp: Path) -> dict[str, float]:
    conn = _open(tmp / "ceiling-single.db")
    try:
        t0 = time.perf_counter()
        for i in range(n):
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(INSERT, _row(i))
            conn.execute("COMMIT")
        return {"1 row/tx": n / (time.perf_counter() - t0)}
    finally:
        conn.close()


def batched(n: int, tmp: Path) -> dict[str, float]:
    conn = _open(tmp / "ceiling-batched.db")
    try:
        t0 = time.perf_counter()
        for start in range(0, n, BATCH):
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(INSERT, [_row(i) for i in range(start, min(n, start + BATCH))])
            conn.execute("COMMIT")
        return {"10k rows/tx": n / (time.perf_counter() - t0)}
    finally:
        conn.close()
