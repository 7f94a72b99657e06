"""``python -m benchmarks.subscriber_bench``: how fast a durable subscriber reads the log,
against how fast one worker writes it (the drain of the same jobs), in one run.

Target: the subscriber reads at least 50,000 events/s, and faster than the drain appends them.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import evq

from .evq_bench import postgres_store, sqlite_store
from .jobs import Noop


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.subscriber_bench")
    p.add_argument("--store", choices=("sqlite", "postgres"), default="sqlite")
    p.add_argument("--jobs", type=int, default=20_000)
    a = p.parse_args()
    store = sqlite_store if a.store == "sqlite" else postgres_store
    with tempfile.TemporaryDirectory() as tmp:
        q = evq.connect(store(Path(tmp), "subscriber"))
        try:
            q.dispatch_many([Noop(n=i) for i in range(a.jobs)])
            before = q.store.log.last_seq()
            t0 = time.perf_counter()
            q.worker(stop_when_empty=True, concurrency=4).run()
            drained = q.store.log.last_seq() - before
            drain_rate = drained / (time.perf_counter() - t0)
            total = q.store.log.last_seq()
            seen = 0

            def count(_record: object) -> None:
                nonlocal seen
                seen += 1

            sub = q.subscribe("bench", count, batch=5_000)
            t0 = time.perf_counter()
            while seen < total:
                time.sleep(0.001)
            read_rate = total / (time.perf_counter() - t0)
            sub.stop()
        finally:
            q.close()
    print(f"evq on {a.store}: drain appends {drain_rate:,.0f} events/s; a durable subscriber "
          f"reads {read_rate:,.0f} events/s ({read_rate / drain_rate:.1f}x; target >= 50,000/s)")


if __name__ == "__main__":
    main()
