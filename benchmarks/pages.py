"""``python -m benchmarks.pages``: SQLite pages evq writes per job, a figure that noise cannot move.

On SQLite the cost of a transaction is mostly the pages it writes to the WAL (4 KiB each), so
this counts them, with checkpoints off, for one dispatch a transaction, for a bulk dispatch and
for a drained job (lease, start and success, in batches).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import evq

from .jobs import Noop

FRAME = 4096 + 24  # a WAL frame: one page and its header


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "pages.db"
        q = evq.connect(f"sqlite:///{db}")
        q.store.log.conn.execute("PRAGMA wal_autocheckpoint=0")
        wal = Path(f"{db}-wal")

        def pages() -> int:
            return wal.stat().st_size // FRAME

        q.dispatch(Noop(n=0))  # the schema and the first pages of every table
        n, before = 1000, pages()
        for i in range(n):
            q.dispatch(Noop(n=i))
        single = (pages() - before) / n
        before = pages()
        q.dispatch_many([Noop(n=i) for i in range(10 * n)])
        bulk = (pages() - before) / (10 * n)
        before = pages()
        done = q.worker(stop_when_empty=True).run()
        drained = (pages() - before) / done
        q.close()
    print(f"WAL pages written: {single:.2f} per single dispatch, {bulk * 1000:.0f} per 1,000 "
          f"jobs of a bulk dispatch, {drained * 1000:.0f} per 1,000 drained jobs")


if __name__ == "__main__":
    sys.exit(main())
