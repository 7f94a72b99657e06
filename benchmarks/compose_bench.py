"""``python -m benchmarks.compose_bench``: what composing costs, as ratios measured in one run.

- a batch of N no-op jobs against N plain jobs: dispatch and drain by one worker (target: the
  batch takes at most 1.3x as long);
- a chain of M steps against M single jobs run one at a time (dispatch, wait for the result,
  next), both through an idle worker (target: the chain runs at least half as many steps a
  second: no polling between steps).

Each figure is the median of ``--repeat`` runs, each in a fresh store.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import evq

from .evq_bench import postgres_store, sqlite_store
from .jobs import Noop


def _drained(q: evq.Queue) -> None:
    q.worker(stop_when_empty=True, concurrency=1).run()


def plain(q: evq.Queue, n: int) -> float:
    t0 = time.perf_counter()
    q.dispatch_many([Noop(n=i) for i in range(n)])
    _drained(q)
    return time.perf_counter() - t0


def batch(q: evq.Queue, n: int) -> float:
    t0 = time.perf_counter()
    b = q.batch([Noop(n=i) for i in range(n)]).dispatch()
    _drained(q)
    assert q.group(b.id)["succeeded"] == n  # type: ignore[arg-type]
    return time.perf_counter() - t0


def singles(q: evq.Queue, m: int) -> float:
    """Steps per second of M jobs run one after another, each dispatched once the last one's
    result is in."""
    with q.worker(sleep=5).start():
        t0 = time.perf_counter()
        for i in range(m):
            q.result(q.dispatch(Noop(n=i)), timeout=30)
        return m / (time.perf_counter() - t0)


def chain(q: evq.Queue, m: int) -> float:
    with q.worker(sleep=5).start():
        t0 = time.perf_counter()
        c = q.chain(*(Noop(n=i) for i in range(m))).dispatch()
        q.result(c.job_ids[-1], timeout=300)
        return m / (time.perf_counter() - t0)


def measure(store: Callable[[Path, str], str], fn: Callable[[evq.Queue, int], float], n: int,
            repeat: int) -> float:
    got = []
    for r in range(repeat):
        with tempfile.TemporaryDirectory() as tmp:
            q = evq.connect(store(Path(tmp), f"{fn.__name__}{r}"))
            try:
                got.append(fn(q, n))
            finally:
                q.close()
    return statistics.median(got)


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.compose_bench")
    p.add_argument("--store", choices=("sqlite", "postgres"), default="sqlite")
    p.add_argument("--jobs", type=int, default=10_000, help="jobs in the batch")
    p.add_argument("--steps", type=int, default=1_000, help="steps in the chain")
    p.add_argument("--repeat", type=int, default=3)
    a = p.parse_args()
    store = sqlite_store if a.store == "sqlite" else postgres_store
    t_plain = measure(store, plain, a.jobs, a.repeat)
    t_batch = measure(store, batch, a.jobs, a.repeat)
    r_single = measure(store, singles, a.steps, a.repeat)
    r_chain = measure(store, chain, a.steps, a.repeat)
    print(f"evq on {a.store}, medians of {a.repeat} runs")
    print(f"{a.jobs:,} plain jobs: {t_plain:.2f} s; as one batch: {t_batch:.2f} s "
          f"= {t_batch / t_plain:.2f}x (target <= 1.3x)")
    print(f"single jobs one at a time: {r_single:,.0f}/s; chain of {a.steps:,}: "
          f"{r_chain:,.0f} steps/s = {r_chain / r_single:.2f}x (target >= 0.5x)")


if __name__ == "__main__":
    main()
