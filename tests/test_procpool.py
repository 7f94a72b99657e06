"""The process pool in a worker: the same outcomes as on threads, decided by the same code, and
what only a child process allows (a hung job killed, a crash contained)."""

from __future__ import annotations

import msgspec
from helpers import event_types
from jobs import (
    CALLS,
    FAILED_HOOK,
    TIMED_OUT_HOOK,
    Add,
    AsyncAdd,
    Exits,
    Flaky,
    QuickWithTimeout,
    SlowSync,
)

import evq
from evq.eventlog.events import JobDispatched
from evq.projections.model import JobRow
from evq.workers.procpool import ProcessPool


def test_outcomes_match_the_thread_pool(queue: evq.Queue, key: str) -> None:
    add = queue.dispatch(Add(a=2, b=3))
    async_add = queue.dispatch(AsyncAdd(a=1, b=1))
    flaky = queue.dispatch(Flaky(key=key))
    exits = queue.dispatch(Exits(kind="exit"))
    slow = queue.dispatch(SlowSync(key=key))
    [unknown] = queue.append([JobDispatched(ts=0.0, name="core.nowhere", queue="default",
                                            payload=msgspec.Raw(b"{}"))])
    assert queue.worker(pool="process", stop_when_empty=True).run() == 7
    assert (queue.job(add).result, queue.job(async_add).result) == ("5", "2")
    assert queue.job(flaky).state == "failed" and queue.job(flaky).failures == 3
    assert CALLS[key] == []  # the attempts ran in a child, not here; so did Flaky.failed()
    assert FAILED_HOOK[key] == ["TimeoutError('core.slow_sync timed out after 0.2s')"]
    assert queue.job(exits).error_type == "SystemExit"
    assert queue.job(unknown).state == "pending"  # left to a worker that runs it
    assert event_types(queue, slow)[-2:] == ["JobTimedOut", "JobDead"]
    assert TIMED_OUT_HOOK[key] == 1  # its child was killed: its hooks ran in the worker
    assert queue.store.verify() == []


def test_the_timeout_counts_from_the_start_in_the_child(queue: evq.Queue) -> None:
    """Starting a child takes longer than this job's 0.1 s timeout: it must not count."""
    job = queue.dispatch(QuickWithTimeout())
    assert queue.worker(pool="process", stop_when_empty=True).run() == 1
    assert queue.job(job).state == "succeeded"


def test_a_closed_pool_kills_its_children() -> None:
    pool = ProcessPool()
    row = JobRow(id=1, name="core.add", queue="default", state="leased", priority=0,
                 run_at=0.0, payload='{"a": 1, "b": 1}', tries=1, backoff="[]", timeout=None,
                 dispatched_at=0.0, attempt=1)
    outcome = pool.run(row, 0.0, lambda: None)
    assert type(outcome.events[0]).__name__ == "JobSucceeded"
    [child] = pool._idle
    pool.close()
    assert not child.proc.is_alive()
