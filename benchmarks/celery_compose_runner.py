"""celery's side of ``compose_bench`` (run with the Python of celery's venv, see peers.py):
the same four figures as evq's, with celery's own composition primitives on Redis.

    python celery_compose_runner.py JOBS STEPS
    -> {"plain": s, "chord": s, "singles": steps/s, "chain": steps/s}

One worker process with the solo pool (one task at a time, as evq's single worker with
concurrency 1), and a Redis result backend (a chord and ``AsyncResult.get`` need one). plain:
JOBS ``noop.delay`` then the wait for the last; chord: a chord of JOBS tasks with a callback,
until the callback ran (celery's batch with ``then``); singles: STEPS tasks one at a time, each
sent once the last one's result is in; chain: a chain of STEPS tasks, until the last ran.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from celery import Celery, chain, chord

REDIS = "redis://127.0.0.1:6379/13"
app = Celery("compose", broker=REDIS, backend=REDIS)
app.conf.update(task_ignore_result=False, result_expires=600, worker_prefetch_multiplier=1)


@app.task(name="noop")
def noop(n: int) -> int:
    return n


@app.task(name="done")
def done(*_: object) -> str:
    return "done"


def _timed(start: float, result: object) -> float:
    result.get(timeout=600, disable_sync_subtasks=False)  # type: ignore[attr-defined]
    return time.perf_counter() - start


def main() -> None:
    jobs, steps = int(sys.argv[1]), int(sys.argv[2])
    with app.connection_for_write() as conn:
        conn.default_channel.client.flushdb()
    here = Path(__file__).resolve().parent
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "celery_compose_runner", "worker",
         "--pool=solo", "--loglevel=WARNING", "--without-gossip", "--without-mingle"],
        cwd=here, env={**os.environ, "PYTHONPATH": str(here)}, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        noop.delay(-1).get(timeout=120)  # the worker is up
        t0 = time.perf_counter()
        last = None
        for i in range(jobs):
            last = noop.delay(i)
        plain = _timed(t0, last)
        t0 = time.perf_counter()
        together = _timed(t0, chord(noop.si(i) for i in range(jobs))(done.si()))
        t0 = time.perf_counter()
        for i in range(steps):
            noop.delay(i).get(timeout=60)
        singles = steps / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        steps_rate = steps / _timed(t0, chain(noop.si(i) for i in range(steps)).delay())
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(30)
    print(json.dumps({"plain": plain, "chord": together, "singles": singles,
                      "chain": steps_rate}))


if __name__ == "__main__":
    main()
