"""Unique jobs and limits across real processes, on SQLite and PostgreSQL, checked in the log."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Callable

import pytest
import test_e2e
from helpers import wait_until
from test_e2e import ROOT, Evq, evq_env

import evq
from evq.eventlog.events import JobDispatched, JobHeld, JobStarted, JobSucceeded

pytestmark = pytest.mark.slow
spawn = test_e2e.spawn  # its fixture

APP = "tests.cli_jobs"

DISPATCHER = """
import json, sys
import evq
from tests.cli_jobs import CliUnique
q = evq.connect()
print("ready", flush=True)
sys.stdin.readline()  # the go: every dispatcher has its connection open
ids = [q.dispatch(CliUnique(n=i % 10)) for i in range(30)]
ids += q.dispatch_many([CliUnique(n=i) for i in range(10)])
print(json.dumps(ids), flush=True)
"""


def test_six_processes_dispatching_the_same_unique_jobs_make_one_job_each(
        url: str, q: evq.Queue) -> None:
    procs = [subprocess.Popen([sys.executable, "-c", DISPATCHER], cwd=ROOT, env=evq_env(url),
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
             for _ in range(6)]
    try:
        for p in procs:
            assert p.stdout is not None and p.stdout.readline() == "ready\n"
        for p in procs:
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.flush()
        outputs = [json.loads(p.communicate(timeout=60)[0]) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert all(p.returncode == 0 for p in procs)
    dispatched = [r.event for r in q.events(types=["JobDispatched"])]
    assert len(dispatched) == 10  # one job per key, whoever came first
    by_n = {json.loads(bytes(e.payload))["n"]: e.job_id for e in dispatched
            if isinstance(e, JobDispatched)}
    expected = [by_n[i % 10] for i in range(30)] + [by_n[i] for i in range(10)]
    assert outputs == [expected] * 6  # every process got the id of the one job
    assert q.store.verify() == []


def _workers(url: str, spawn: Callable[..., Evq], concurrency: int) -> list[Evq]:
    """Two ``evq work`` processes, once both are running. Their fallback poll is too slow to
    matter: they claim held jobs on time, and freed slots at once, or the tests time out."""
    workers = [spawn(url, "work", "--app", APP, "--concurrency", concurrency, "--sleep", "60")
               for _ in range(2)]
    for w in workers:
        wait_until(lambda w=w: "evq worker" in w.stderr, what="the worker's start line")
    q = evq.connect(url)  # the start line comes before the WorkerStarted event is written
    try:
        wait_until(lambda: len(list(q.events(types=["WorkerStarted"]))) == 2,
                   what="both workers' WorkerStarted")
    finally:
        q.close()
    return workers


def _stop(workers: list[Evq]) -> None:
    for w in workers:
        w.signal(signal.SIGTERM)
    for w in workers:
        assert w.wait(30) == 0, w.stderr
        assert "Traceback" not in w.stderr, w.stderr


def _both_competed(q: evq.Queue, first: float, last: float) -> None:
    """Both worker processes were alive and claiming from ``first`` to ``last`` (not both need
    win a job: claims of one limit key are serialised, and the worker that frees a slot, or
    whose timer fires first, may take every one)."""
    lives: dict[str, list[float]] = {}
    for r in q.events(types=["WorkerStarted", "WorkerStopped"]):
        lives.setdefault(r.event.worker, []).append(r.event.ts)  # type: ignore[attr-defined]
    assert len(lives) == 2
    assert all(ts[0] <= first and ts[-1] >= last for ts in lives.values())


def _all_succeeded(q: evq.Queue, ids: list[int]) -> Callable[[], bool]:
    return lambda: q.count_jobs("succeeded") == len(ids)


def test_a_rate_limit_holds_across_two_worker_processes(url: str, q: evq.Queue,
                                                        spawn: Callable[..., Evq]) -> None:
    from tests.cli_jobs import CliRated

    workers = _workers(url, spawn, 4)  # both up before the jobs come (a slow start on a busy
    ids = q.dispatch_many([CliRated() for _ in range(70)])  # machine could miss them all)
    wait_until(_all_succeeded(q, ids), timeout=30, what="every rated job to succeed")
    _stop(workers)
    starts = sorted((r.event.ts, r.event.worker) for r in q.events(types=["JobStarted"])
                    if isinstance(r.event, JobStarted))
    times = [t for t, _ in starts]
    assert len(times) == 70
    # no window of one second holds more than 20 starts: any 21 in a row span a second or more
    assert min(times[i + 20] - times[i] for i in range(len(times) - 20)) >= 1.0
    assert times[-1] - times[0] >= 3.0  # 70 starts at 20 a second need three seconds
    _both_competed(q, times[0], times[-1])
    holds = [r.event for r in q.events(types=["JobHeld"]) if isinstance(r.event, JobHeld)]
    assert holds and all(h.reason == "rate limit of cli-rated: 20 per 1s" for h in holds)
    assert q.store.verify() == []


def test_a_concurrency_limit_holds_across_two_worker_processes(
        url: str, q: evq.Queue, spawn: Callable[..., Evq]) -> None:
    from tests.cli_jobs import CliCapped

    workers = _workers(url, spawn, 3)  # room for six at once without the limit
    ids = q.dispatch_many([CliCapped(seconds=0.05) for _ in range(30)])
    wait_until(_all_succeeded(q, ids), timeout=30, what="every capped job to succeed")
    _stop(workers)
    edges: list[tuple[float, int]] = []  # (time, +1 at a start, -1 at an end); ends first
    for r in q.events(types=["JobStarted", "JobSucceeded"]):
        if isinstance(r.event, JobStarted):
            edges.append((r.event.ts, 1))
        elif isinstance(r.event, JobSucceeded):
            edges.append((r.event.ts, -1))
    running, most = 0, 0
    for _, step in sorted(edges):
        running += step
        most = max(most, running)
    assert most == 2  # never three at once, and the two slots were used
    _both_competed(q, min(edges)[0], max(edges)[0])
    assert not list(q.events(types=["JobHeld"]))  # a concurrency limit holds nothing back
    assert q.store.verify() == []
