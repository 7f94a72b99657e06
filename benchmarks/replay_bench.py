"""Replay speed, and `evq stats` / `evq history` times, on a generated log.

    python -m benchmarks.replay_bench [--events 1000000] [--keep PATH] [--profile]

Writes a log of N events straight into a new SQLite store (jobs that are dispatched, leased,
started and succeed, one in ten failing once and retried), then measures: replay of the whole log
through the projections (``Store.rebuild``, events/s, best of three); the queries behind ``evq
stats`` and ``evq history ID`` (in process, median of 20); and both as whole commands (a new
``evq`` process each, median of 5).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import msgspec

import evq
from evq.eventlog.codec import encode
from evq.eventlog.events import (
    Event,
    JobDispatched,
    JobFailed,
    JobLeased,
    JobRetryScheduled,
    JobStarted,
    JobSucceeded,
)
from evq.projections.replay import replay
from evq.projections.retention import archive_finished
from evq.projections.snapshot import take

from .evq_growth import command_seconds

QUEUES = ("default", "emails", "reports")
NAMES = ("SendEmail", "BuildReport", "Resize", "Sync")


def job_events(job_id: int, t: float) -> Iterator[Event]:
    """The events of one job dispatched at ``t``."""
    name = NAMES[job_id % len(NAMES)]
    yield JobDispatched(ts=t, job_id=job_id, name=name, queue=QUEUES[job_id % len(QUEUES)],
                        payload=msgspec.Raw(b'{"n": %d}' % job_id), run_at=t, tries=3)
    attempt = 1
    if job_id % 10 == 0:
        yield JobLeased(ts=t + 0.01, job_id=job_id, worker="w1", attempt=1,
                        lease_expires=t + 30)
        yield JobStarted(ts=t + 0.011, job_id=job_id, attempt=1, worker="w1")
        yield JobFailed(ts=t + 0.02, job_id=job_id, attempt=1, error_type="OSError",
                        message="flaky", duration=0.009)
        yield JobRetryScheduled(ts=t + 0.02, job_id=job_id, attempt=1, run_at=t + 0.03)
        attempt = 2
    yield JobLeased(ts=t + 0.04, job_id=job_id, worker="w1", attempt=attempt,
                    lease_expires=t + 30)
    yield JobStarted(ts=t + 0.041, job_id=job_id, attempt=attempt, worker="w1")
    yield JobSucceeded(ts=t + 0.05, job_id=job_id, attempt=attempt, duration=0.009,
                       result=job_id)


def generate(path: Path | str, events: int) -> evq.Queue:
    """A store with about ``events`` events and their projections: a SQLite file at ``path``,
    or the store a URL names (empty)."""
    q = evq.connect(path if isinstance(path, str) else f"sqlite:///{path}")
    log = q.store.log
    start = time.time() - events / 1000  # a thousand events a second, ending now
    seq, rows = 0, []
    insert = "INSERT INTO events(seq, ts, type, job_id, queue, body) VALUES (?, ?, ?, ?, ?, ?)"
    with log.transaction():
        while seq < events:
            job_id = seq + 1
            for e in job_events(job_id, start + seq / 1000):
                seq += 1
                rows.append((seq, e.ts, e.__struct_config__.tag, job_id,
                             QUEUES[job_id % len(QUEUES)], encode(e).decode()))
            if len(rows) >= 50_000:
                log.executemany(insert, rows)
                rows.clear()
        log.executemany(insert, rows)
    q.store.rebuild()
    return q


def median_ms(fn: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def command_ms(url: str, *args: str, runs: int = 5) -> float:
    """A whole ``evq`` command, as a user runs it (see :func:`evq_growth.command_seconds`)."""
    return statistics.median(command_seconds(url, *args) * 1000 for _ in range(runs))


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.replay_bench")
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--keep", type=Path, help="Write the store here and keep it.")
    parser.add_argument("--profile", action="store_true", help="Profile one replay (cProfile).")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = options.keep or Path(tmp) / "bench.db"
        t = time.perf_counter()
        q = generate(path, options.events)
        n = q.store.log.last_seq()
        print(f"log: {n:,} events, {len(q.store.tables.dump()[0]):,} jobs, generated in "
              f"{time.perf_counter() - t:.1f}s, {path.stat().st_size / 1e6:.0f} MB")
        if options.profile:
            import cProfile
            import pstats

            with cProfile.Profile() as prof:
                q.store.rebuild()
            pstats.Stats(prof).sort_stats("tottime").print_stats(15)
        best = min(median_ms(q.store.rebuild, 1) for _ in range(3)) / 1000
        cpu = time.process_time()
        q.store.rebuild()
        cpu = time.process_time() - cpu
        print(f"replay in place (Store.rebuild): {n / best:,.0f} events/s ({best:.2f}s, "
              f"best of 3); {n / cpu:,.0f} events per CPU second (on a busy machine the "
              "wall-clock figure is lower)")
        into = Path(tmp) / "into.db"
        t = time.perf_counter()
        other = evq.connect(f"sqlite:///{into}")
        replay(q.store, into=other.store, copy_events=True)
        took = time.perf_counter() - t
        other.close()
        print(f"replay into a new file with the events (evq replay --into): "
              f"{n / took:,.0f} events/s ({took:.2f}s)")
        (job,), = q.store.log.read_rows("SELECT id FROM jobs WHERE id >= ? ORDER BY id LIMIT 1",
                                        (n // 2,))
        print(f"query q.stats(): {median_ms(q.stats, 20):.2f} ms (median of 20)")
        print(f"query q.history({job}): {median_ms(lambda: q.history(job), 20):.2f} ms "
              "(median of 20)")
        url = f"sqlite:///{path}"
        print(f"command evq stats --json: {command_ms(url, 'stats', '--json'):.0f} ms "
              "(median of 5)")
        print(f"command evq history {job}: {command_ms(url, 'history', str(job)):.0f} ms "
              "(median of 5)")
        cutoff = q.store.tables.get(job).finished_at  # type: ignore[union-attr]
        t = time.perf_counter()
        moved = archive_finished(q.store.log, cutoff + 1)
        print(f"archive of the older half: {moved.events:,} events of {moved.jobs:,} jobs in "
              f"{time.perf_counter() - t:.1f}s, {moved.raw_bytes / 1e6:.0f} MB of JSON in "
              f"{moved.stored_bytes / 1e6:.1f} MB")
        print(f"query q.history({job}), archived: "
              f"{median_ms(lambda: q.history(job), 20):.2f} ms (median of 20)")
        took = median_ms(q.store.rebuild, 1) / 1000
        print(f"replay in place after archiving: {n / took:,.0f} events/s ({took:.2f}s)")
        t = time.perf_counter()
        take(q.store.log)
        print(f"snapshot: {time.perf_counter() - t:.2f}s")
        q.close()


if __name__ == "__main__":
    main()
