"""evq only: replay speed of a large log, and what dispatch, a worker's claim-run-complete and
``evq history`` / ``evq stats`` cost as the log grows. Only public functions are used
(``Queue.dispatch``, ``Queue.dispatch_many``, ``Queue.worker``, ``Store.rebuild``, the ``evq``
command), so that this keeps working when evq's insides change.

A log is built with ``dispatch_many`` in batches of 10,000 jobs, each batch drained by a worker
in this process (``q.worker(stop_when_empty=True).run()``): 4 events a job (JobDispatched,
JobLeased, JobStarted, JobSucceeded), as a real queue's log looks. Each function does all its
repetitions itself (a log is built once) and returns every sample.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import evq

from .evq_bench import BenchError
from .jobs import Noop

BATCH = 10_000  # jobs per dispatch_many
EVENTS_PER_JOB = 4


def label(events: int) -> str:
    return f"{events // 1_000_000}M" if events >= 1_000_000 else f"{events // 1_000}k"


def grow(q: evq.Queue, events: int, say: Callable[[str], None]) -> float:
    """Add drained jobs until the log holds at least ``events`` events; returns the seconds."""
    t0 = time.perf_counter()
    have = _count(q)
    while have < events:
        jobs = min(BATCH, max(1, (events - have) // EVENTS_PER_JOB))
        q.dispatch_many([Noop(n=i) for i in range(jobs)])
        q.worker(stop_when_empty=True).run()
        have = _count(q)
        if have // 500_000 != (have - jobs * EVENTS_PER_JOB) // 500_000:
            say(f"  log at {have:,} events ({time.perf_counter() - t0:.0f} s)")
    return time.perf_counter() - t0


def _count(q: evq.Queue) -> int:
    return q.store.log.read_rows("SELECT coalesce(max(seq), 0) FROM events")[0][0]


def replay(events: int, repeat: int, tmp: Path,
           say: Callable[[str], None]) -> dict[str, list[float]]:
    """Build a log of ``events`` events, then ``Store.rebuild`` it ``repeat`` times."""
    q = evq.connect(f"sqlite:///{tmp / 'replay.db'}")
    try:
        built = grow(q, events, say)
        say(f"  replay: log of {_count(q):,} events built in {built:.0f} s")
        rates = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            applied = q.store.rebuild()
            rates.append(applied / (time.perf_counter() - t0))
        problems = q.store.verify()
        if problems:
            raise BenchError(f"rebuilt projections differ from the live ones: {problems[0]}")
    finally:
        q.close()
    return {"events/s": rates, "build": [built]}


def command_seconds(store_url: str, *args: str) -> float:
    """Seconds of one whole ``evq`` command (a new Python process), as a user runs it: with
    Python's compiled modules cached (when this environment says not to write them, a first run
    with that allowed writes them, untimed)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["EVQ_URL"] = store_url
    command = [str(Path(sys.executable).with_name("evq")), *args]
    if "PYTHONDONTWRITEBYTECODE" in os.environ and not _warm:
        subprocess.run(command, env=env, capture_output=True)
        _warm.append(True)
    t0 = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    if done.returncode != 0:
        raise BenchError(f"evq {' '.join(args)}: {(done.stderr or done.stdout).strip()[-200:]}")
    return elapsed


_warm: list[bool] = []


def costs(sizes: tuple[int, ...], calls: int, repeat: int, tmp: Path,
          say: Callable[[str], None]) -> dict[str, list[float]]:
    """One log grown to each of ``sizes`` events in turn; at each, ``repeat`` times: ``calls``
    single dispatches (µs a call), a worker draining ``calls`` jobs (µs a job: claim, run,
    complete), ``evq history`` of the log's first job and ``evq stats`` (ms, whole commands)."""
    db = tmp / "growth.db"
    q = evq.connect(f"sqlite:///{db}")
    out: dict[str, list[float]] = {}
    try:
        for size in sizes:
            built = grow(q, size, say)
            at = label(size)
            say(f"  growth: log at {_count(q):,} events ({built:.0f} s to grow)")
            out[f"build {at}"] = [built]
            for _ in range(repeat):
                t0 = time.perf_counter()
                for i in range(calls):
                    q.dispatch(Noop(n=i))
                out.setdefault(f"dispatch {at}", []).append(
                    (time.perf_counter() - t0) / calls * 1e6)
                t0 = time.perf_counter()
                done = q.worker(stop_when_empty=True).run()
                if done != calls:
                    raise BenchError(f"the worker ran {done} of {calls} jobs")
                out.setdefault(f"claim+run {at}", []).append(
                    (time.perf_counter() - t0) / calls * 1e6)
                for name, args in (("history", ("history", "1")), ("stats", ("stats",))):
                    out.setdefault(f"{name} {at}", []).append(
                        command_seconds(f"sqlite:///{db}", *args) * 1e3)
    finally:
        q.close()
    return out
