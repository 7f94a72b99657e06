"""A worker against what should not happen: payloads that cannot be loaded, errors of evq's own
making, malformed rows written by other programs; and its timing: due jobs while others run,
the grace period of a stop, claims shared between processes, the exit code of a hard stop.
"""

from __future__ import annotations

import contextlib
import signal
import sqlite3
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest
from helpers import wait_until
from jobs import GATES, Add, Held

import evq
from evq.eventlog.events import JobDispatched
from tests import test_e2e as e2e
from tests.cli_jobs import CliAdd, CliSleep, CliWork
from tests.test_e2e import APP, Evq

spawn = e2e.spawn  # the fixture that starts evq processes

DEPTH = 1000  # nesting that makes msgspec raise RecursionError while it decodes


class Anything(evq.Job):
    job_name = "wf.anything"

    data: Any = None

    def handle(self) -> int:
        return 1


class Unprintable:
    def __repr__(self) -> str:
        raise RuntimeError("no repr")


class BadResult(evq.Job):
    """Returns what evq can neither encode nor describe: an error outside the job's own code."""

    job_name = "wf.bad_result"

    def handle(self) -> Unprintable:
        return Unprintable()


def deep_payload() -> bytes:
    return b'{"data":' + b"[" * DEPTH + b"]" * DEPTH + b"}"


def append_poison(queue: evq.Queue) -> int:
    """A job whose arguments nest too deep to decode, appended as another program might."""
    [job_id] = queue.append([JobDispatched(ts=time.time(), name="wf.anything", queue="default",
                                           payload=msgspec.Raw(deep_payload()))])
    return job_id


def states(queue: evq.Queue, ids: list[int]) -> list[str]:
    return [queue.job(i).state for i in ids]


# -- any error while loading or running a job fails that attempt --------------------------------


def test_a_payload_too_deep_to_decode_fails_its_job_and_the_rest_run(
        queue: evq.Queue, worker_thread: Callable[..., Any]) -> None:
    poison = append_poison(queue)
    others = queue.dispatch_many([Add(a=i, b=1) for i in range(3)])
    running = worker_thread(queue.worker(concurrency=1, stop_when_empty=True, sleep=0.1))
    assert running.join() == 4  # the only runner thread lived on, and the worker ended by itself
    row = queue.job(poison)
    assert (row.state, row.error_type) == ("failed", "DecodeError")
    assert "cannot be loaded: RecursionError" in (row.error or "")
    assert states(queue, others) == ["succeeded"] * 3
    assert queue.jobs("running") == []


def test_an_error_outside_the_jobs_code_fails_the_attempt_not_the_thread(
        queue: evq.Queue, worker_thread: Callable[..., Any]) -> None:
    bad = queue.dispatch(BadResult())
    good = queue.dispatch(Add(a=1, b=1))
    worker = queue.worker(concurrency=1, sleep=0.1)
    worker_thread(worker)
    wait_until(lambda: queue.job(good).state == "succeeded", timeout=5)
    row = queue.job(bad)
    assert (row.state, row.error_type, row.error) == ("failed", "RuntimeError", "no repr")
    assert queue.jobs("running") == []


def test_a_malformed_row_fails_its_job_and_the_worker_goes_on(tmp_path: Path) -> None:
    path = tmp_path / "evq.db"
    queue = evq.connect(f"sqlite:///{path}")
    try:
        bad, *others = queue.dispatch_many([Add(a=i, b=1) for i in range(4)])
        with contextlib.closing(sqlite3.connect(path)) as conn, conn:  # another program
            conn.execute("UPDATE jobs SET timeout = 'abc' WHERE id = ?", (bad,))
        assert queue.worker(stop_when_empty=True).run() == 3
        row = queue.job(bad)
        assert (row.state, row.error_type) == ("failed", "MalformedRow")
        assert row.error == (f"row {bad} of jobs is malformed: Expected `float | null`, got "
                             "`str` - at `$.timeout`")
        assert states(queue, others) == ["succeeded"] * 3
    finally:
        queue.close()


# -- timing ------------------------------------------------------------------------------------


def test_a_due_job_starts_on_time_while_another_runs(
        queue: evq.Queue, key: str, worker_thread: Callable[..., Any]) -> None:
    held = queue.dispatch(Held(key=key))
    worker_thread(queue.worker(concurrency=2, sleep=10))
    assert GATES[key].started.wait(10)
    delayed = queue.dispatch(Add(a=1, b=2), delay=0.5)
    due = queue.job(delayed).run_at
    row = wait_until(lambda: (r := queue.job(delayed)).state == "succeeded" and r, timeout=5)
    assert row.started_at - due < 0.3, f"started {row.started_at - due:.2f}s after it was due"
    assert queue.job(held).state == "running"
    GATES[key].release.set()


# -- stopping ----------------------------------------------------------------------------------


@pytest.mark.slow
def test_grace_ends_the_stop_and_unstarted_jobs_are_released_at_once(
        url: str, q: evq.Queue, spawn: Callable[..., Evq]) -> None:
    q.dispatch_many([CliAdd(a=i, b=1) for i in range(2)])  # once they are done, it prefetches
    long = q.dispatch_many([CliSleep(seconds=30) for _ in range(6)])
    worker = spawn(url, "work", "--app", APP, "-c", "2", "--grace", "1", "--sleep", "0.1")
    wait_until(lambda: sorted(states(q, long)) == ["leased"] * 4 + ["running"] * 2,
               what="two long jobs running, four claimed")
    worker.signal(signal.SIGTERM)
    signalled = time.time()
    assert worker.wait(10) == 0, worker.stderr
    took = time.time() - signalled
    assert 1 <= took < 2.5, f"exited {took:.2f}s after SIGTERM with --grace 1"
    released = [r.event for i in long for r in q.history(i)
                if r.event.__struct_config__.tag == "LeaseReleased"]
    assert len(released) == 4
    assert all(e.ts - signalled < 0.5 for e in released), "not released when the stop began"
    # the running ones are left to their leases' expiry, as after a crash
    assert sorted(states(q, long)) == ["pending"] * 4 + ["running"] * 2


@pytest.mark.slow
def test_grace_ends_process_pool_jobs_by_killing_them(
        url: str, q: evq.Queue, spawn: Callable[..., Evq]) -> None:
    long = q.dispatch_many([CliWork(seconds=30) for _ in range(2)])
    worker = spawn(url, "work", "--app", APP, "-c", "2", "--pool", "process", "--grace", "1",
                   "--sleep", "0.1")
    wait_until(lambda: states(q, long) == ["running"] * 2, what="two long jobs running")
    worker.signal(signal.SIGTERM)
    signalled = time.time()
    assert worker.wait(10) == 0, worker.stderr
    assert time.time() - signalled < 2.5
    for job_id in long:
        row = q.job(job_id)
        assert (row.state, row.error_type) == ("pending", "WorkerCrashed")  # retried later
        assert "was killed: its worker stopped" in (row.error or "")


@pytest.mark.slow
@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_second_signal_exits_non_zero(url: str, q: evq.Queue, spawn: Callable[..., Evq],
                                        signum: int, code: int) -> None:
    q.dispatch(CliSleep(seconds=30))
    worker = spawn(url, "work", "--app", APP, "--grace", "60", "--sleep", "0.1")
    wait_until(lambda: q.jobs("running"), what="the job to start")
    worker.signal(signum)
    wait_until(lambda: "a second signal stops at once" in worker.stderr, what="the first stop")
    worker.signal(signum)
    assert worker.wait(10) == code, worker.stderr
    assert "Traceback" not in worker.stderr


# -- sharing work between processes --------------------------------------------------------


@pytest.mark.slow
def test_two_processes_share_jobs_evenly(url: str, q: evq.Queue,
                                         spawn: Callable[..., Evq]) -> None:
    supervisor = spawn(url, "work", "--app", APP, "--processes", "2", "-c", "1",
                       "--sleep", "0.1")
    wait_until(lambda: len(q.workers()) == 2, what="two worker processes")
    ids = q.dispatch_many([CliSleep(seconds=0.3) for _ in range(8)])
    wait_until(lambda: states(q, ids) == ["succeeded"] * 8, what="every job")
    supervisor.signal(signal.SIGTERM)
    assert supervisor.wait(15) == 0, supervisor.stderr
    leased = Counter(r.event.worker for i in ids for r in q.history(i)
                     if r.event.__struct_config__.tag == "JobLeased")
    assert sorted(leased.values()) in ([4, 4], [3, 5]), leased
