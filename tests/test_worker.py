"""In-process workers on every store: outcomes, retries, hooks, timeouts, bad jobs, stopping,
leases, precedence and concurrency.

Nothing here sleeps to synchronise: tests wait for conditions (``wait_until``), for gates that
jobs open (``jobs.GATES``), or for ``run()`` to return (``stop_when_empty``).
"""

from __future__ import annotations

import gc
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

import msgspec
import pytest
from helpers import event_types, wait_until
from jobs import (
    BARRIERS,
    CALLS,
    CANCELLED,
    FAILED_HOOK,
    GATES,
    TIMED_OUT_HOOK,
    Add,
    AsyncAdd,
    AsyncExits,
    Exits,
    Flaky,
    Held,
    Meet,
    Noop,
    Retrying,
    SlowAsync,
    SlowSync,
)

import evq
from evq.eventlog.events import (
    Event,
    JobDispatched,
    JobLeased,
    JobStarted,
    JobSucceeded,
    JobTimedOut,
    LeaseExpired,
)


def event_of(q: evq.Queue, job_id: int, kind: type[Event], index: int = -1) -> Any:
    found = [r.event for r in q.history(job_id) if isinstance(r.event, kind)]
    return found[index]


def result(q: evq.Queue, job_id: int) -> Any:
    row = q.job(job_id)
    assert row.state == "succeeded", (row.state, row.error_type, row.error)
    return None if row.result is None else msgspec.json.decode(row.result)


def append_dispatched(q: evq.Queue, name: str, payload: bytes, **fields: Any) -> int:
    """Dispatch bypassing the job classes, as another program (or an older version) might."""
    q.append([JobDispatched(ts=time.time(), name=name, queue="default",
                            payload=msgspec.Raw(payload), **fields)])
    return q.store.log.last_seq()


# -- outcomes ------------------------------------------------------------------------------------


def test_success_stores_the_result(queue: evq.Queue) -> None:
    job_id = queue.dispatch(Add(a=2, b=3))
    worker = queue.worker(stop_when_empty=True)
    assert worker.run() == 1
    assert result(queue, job_id) == 5
    assert event_types(queue, job_id) == [
        "JobDispatched", "JobLeased", "JobStarted", "JobSucceeded"]
    assert event_of(queue, job_id, JobStarted).worker == worker.name
    assert event_of(queue, job_id, JobLeased).worker == worker.name
    row = queue.job(job_id)
    assert row.duration is not None and row.duration >= 0
    assert row.lease_expires is None
    assert queue.stats()["job_types"]["core.add"]["succeeded"] == 1
    assert queue.store.verify() == []


def test_a_failing_job_is_retried_then_dies(queue: evq.Queue, key: str) -> None:
    job_id = queue.dispatch(Flaky(key=key))
    assert queue.worker(stop_when_empty=True).run() == 3
    row = queue.job(job_id)
    assert (row.state, row.attempt, row.failures) == ("failed", 3, 3)
    assert (row.error_type, row.error) == ("ValueError", "boom 3")
    assert "ValueError: boom 3" in (row.traceback or "")
    assert CALLS[key] == ["attempt"] * 3
    attempt = ["JobLeased", "JobStarted", "JobFailed"]
    assert event_types(queue, job_id) == ["JobDispatched", *attempt, "JobRetryScheduled",
                                    *attempt, "JobRetryScheduled", *attempt, "JobDead"]
    wait_until(lambda: FAILED_HOOK[key])
    assert FAILED_HOOK[key] == ["ValueError('boom 3')"]  # once, with the last error
    stats = queue.stats()["job_types"]["core.flaky"]
    assert (stats["failures"], stats["retried"], stats["dead"]) == (3, 2, 1)
    assert [r.id for r in queue.jobs("failed")] == [job_id]
    assert queue.store.verify() == []


def test_a_failed_job_retried_by_the_operator_runs_again(queue: evq.Queue, key: str) -> None:
    job_id = queue.dispatch(Flaky(key=key))
    queue.worker(stop_when_empty=True).run()
    queue.retry(job_id)
    assert queue.worker(stop_when_empty=True).run() == 3  # tries start over
    assert CALLS[key] == ["attempt"] * 6
    assert FAILED_HOOK[key] == ["ValueError('boom 3')", "ValueError('boom 6')"]
    assert queue.job(job_id).attempt == 6


@pytest.mark.parametrize(("kind", "error_type"), [
    ("exit", "SystemExit"), ("interrupt", "KeyboardInterrupt"), ("custom", "CustomBase")])
def test_base_exceptions_do_not_kill_the_worker(queue: evq.Queue, kind: str,
                                                error_type: str) -> None:
    bad = queue.dispatch(Exits(kind=kind))
    good = queue.dispatch(Add(a=1, b=1))
    assert queue.worker(stop_when_empty=True).run() == 2
    row = queue.job(bad)
    assert (row.state, row.error_type) == ("failed", error_type)
    assert result(queue, good) == 2


def test_async_handle(queue: evq.Queue) -> None:
    ids = [queue.dispatch(AsyncAdd(a=i, b=1)) for i in range(3)]
    assert queue.worker(stop_when_empty=True, concurrency=2).run() == 3
    assert [result(queue, i) for i in ids] == [1, 2, 3]


def test_async_job_calling_sys_exit_does_not_kill_the_worker(
        queue: evq.Queue, worker_thread: Callable[..., Any]) -> None:
    bad = queue.dispatch(AsyncExits())
    good = queue.dispatch(AsyncAdd(a=1, b=1))
    worker_thread(queue.worker(sleep=0.1))
    wait_until(lambda: queue.job(good).state == "succeeded", timeout=3)
    assert queue.job(bad).error_type == "SystemExit"


def test_async_runner_closes_its_event_loop(queue: evq.Queue,
                                            async_runners: list[Any]) -> None:
    queue.dispatch_sync(AsyncAdd(a=1, b=2))
    queue.dispatch(AsyncAdd(a=1, b=2))
    queue.worker(stop_when_empty=True).run()
    assert len(async_runners) == 2
    assert [r.loop.is_closed() for r in async_runners] == [True, True]


# -- timeouts ------------------------------------------------------------------------------------


def test_a_sync_job_past_its_timeout_is_abandoned(queue: evq.Queue, key: str) -> None:
    slow = queue.dispatch(SlowSync(key=key))
    quick = queue.dispatch(Add(a=1, b=2))
    assert queue.worker(stop_when_empty=True, concurrency=1).run() == 2
    row = queue.job(slow)
    assert (row.state, row.error_type, row.error) == (
        "failed", "TimeoutError", "timed out after 0.2s")
    assert event_types(queue, slow)[-2:] == ["JobTimedOut", "JobDead"]
    assert event_of(queue, slow, JobTimedOut).timeout == 0.2
    # the next job ran in a fresh slot, without waiting for the 2 s the abandoned one sleeps
    assert result(queue, quick) == 3
    slow_started = event_of(queue, slow, JobStarted).ts
    assert event_of(queue, quick, JobSucceeded).ts < slow_started + 2
    wait_until(lambda: TIMED_OUT_HOOK[key] == 1 and FAILED_HOOK[key])
    assert FAILED_HOOK[key] == ["TimeoutError('core.slow_sync timed out after 0.2s')"]
    assert queue.stats()["job_types"]["core.slow_sync"]["timed_out"] == 1


def test_an_async_job_past_its_timeout_is_cancelled(queue: evq.Queue, key: str) -> None:
    slow = queue.dispatch(SlowAsync(key=key))
    quick = queue.dispatch(AsyncAdd(a=1, b=2))
    assert queue.worker(stop_when_empty=True, concurrency=1).run() == 2
    row = queue.job(slow)
    assert (row.state, row.error_type) == ("failed", "TimeoutError")
    assert event_types(queue, slow)[-2:] == ["JobTimedOut", "JobDead"]
    assert CANCELLED[key] == 1  # the coroutine saw CancelledError
    wait_until(lambda: TIMED_OUT_HOOK[key] == 1)
    assert result(queue, quick) == 3


# -- bad jobs ----------------------------------------------------------------------------------


def test_a_worker_claims_only_the_job_types_it_has_registered(queue: evq.Queue) -> None:
    job_id = append_dispatched(queue, "core.not-registered", b"{}", tries=3)
    good = queue.dispatch(Add(a=1, b=1))
    assert queue.worker(stop_when_empty=True).run() == 1
    assert queue.job(job_id).state == "pending"
    assert event_types(queue, job_id) == ["JobDispatched"]
    assert result(queue, good) == 2
    started = [r.event for r in queue.events(types=["WorkerStarted"])]
    assert "core.add" in started[0].names and "core.not-registered" not in started[0].names


@pytest.mark.parametrize("payload", [b'{"a": "x", "b": 1}', b'{"a": 1}', b"[]"],
                         ids=["wrong-type", "missing-field", "not-an-object"])
def test_a_payload_that_no_longer_decodes_fails_clearly(queue: evq.Queue,
                                                        payload: bytes) -> None:
    job_id = append_dispatched(queue, "core.add", payload, tries=2)
    good = queue.dispatch(Add(a=1, b=1))
    assert queue.worker(stop_when_empty=True).run() == 2
    row = queue.job(job_id)
    assert (row.state, row.error_type) == ("failed", "DecodeError")
    assert f"the arguments of core.add job {job_id} no longer decode" in (row.error or "")
    assert result(queue, good) == 2


# -- how much a worker does ----------------------------------------------------------------------


def test_max_jobs(queue: evq.Queue) -> None:
    ids = queue.dispatch_many([Noop(n=i) for i in range(5)])
    assert queue.worker(max_jobs=2).run() == 2
    assert [queue.job(i).state for i in ids] == ["succeeded"] * 2 + ["pending"] * 3
    assert queue.jobs("running") == []  # nothing claimed beyond the quota


def test_stop_when_empty_leaves_delayed_jobs_pending(queue: evq.Queue) -> None:
    now_id = queue.dispatch(Noop(n=1))
    later_id = queue.dispatch(Noop(n=2), delay=3600)
    assert queue.worker(stop_when_empty=True).run() == 1
    assert queue.job(now_id).state == "succeeded"
    assert [r.id for r in queue.jobs("delayed")] == [later_id]


def test_queue_precedence(queue: evq.Queue) -> None:
    d1 = queue.dispatch(Noop(n=1))
    h1 = queue.dispatch(Noop(n=2), queue="high")
    d2 = queue.dispatch(Noop(n=3))
    low = queue.dispatch(Noop(n=4), queue="low")
    h2 = queue.dispatch(Noop(n=5), queue="high")
    assert queue.worker(queues=["high", "default"], concurrency=1, stop_when_empty=True).run() == 4
    started = [r.event.job_id for r in queue.events(types=["JobStarted"])]
    assert started == [h1, h2, d1, d2]
    assert queue.job(low).state == "pending"


def test_concurrency_runs_jobs_in_parallel(queue: evq.Queue, key: str) -> None:
    BARRIERS[key] = threading.Barrier(4)  # each job waits until all four run at once
    ids = queue.dispatch_many([Meet(key=key) for _ in range(4)])
    assert queue.worker(concurrency=4, stop_when_empty=True).run() == 4
    assert [queue.job(i).state for i in ids] == ["succeeded"] * 4
    starts = [event_of(queue, i, JobStarted).ts for i in ids]
    ends = [event_of(queue, i, JobSucceeded).ts for i in ids]
    assert max(starts) <= min(ends)  # every job started before any finished


# -- a worker in a thread ---------------------------------------------------------------------


def _idle(worker: evq.Worker) -> bool:
    # the worker exposes no idle state: look at what it holds
    return not worker._todo and not worker._running and not worker._outbox


def test_an_idle_worker_wakes_up_for_a_new_job(queue: evq.Queue, second_connection: evq.Queue,
                                               worker_thread: Callable[..., Any]) -> None:
    # the fallback poll (sleep) and lease housekeeping are far away: only a wake-up can do it
    worker = queue.worker(sleep=60, lease=600)
    running = worker_thread(worker)
    first = queue.dispatch(Noop(n=1))
    wait_until(lambda: queue.job(first).state == "succeeded")
    wait_until(lambda: _idle(worker))
    job_id = second_connection.dispatch(Add(a=20, b=22))
    wait_until(lambda: queue.job(job_id).state == "succeeded", timeout=5)
    assert result(queue, job_id) == 42
    assert running.stop() == 2


def test_graceful_stop_releases_unstarted_jobs(queue: evq.Queue, key: str,
                                               worker_thread: Callable[..., Any]) -> None:
    queue.dispatch(Noop())  # once a job has finished, the worker claims more than it runs
    ids = queue.dispatch_many([Held(key=key) for _ in range(4)])
    worker = queue.worker(concurrency=1)
    running = worker_thread(worker)
    assert GATES[key].started.wait(10)
    [first] = wait_until(lambda: [r.event.job_id for r in queue.events(types=["JobStarted"])
                                  if r.event.job_id in ids], what="the start in the log")
    worker.stop()
    GATES[key].release.set()  # the running job may finish: stop waits for it
    running.join()
    assert GATES[key].count == 1
    assert queue.job(first).state == "succeeded"
    others = [i for i in ids if i != first]
    assert [queue.job(i).state for i in others] == ["pending"] * 3
    released = [i for i in others if "LeaseReleased" in event_types(queue, i)]
    assert released, "no unstarted lease was released"
    for job_id in released:
        assert event_types(queue, job_id)[-2:] == ["JobLeased", "LeaseReleased"]
        assert queue.job(job_id).worker is None
    # nothing is lost: another worker runs the rest
    assert queue.worker(stop_when_empty=True).run() == 3
    assert GATES[key].count == 4
    assert queue.store.verify() == []


def test_a_second_stop_does_not_wait_for_running_jobs(queue: evq.Queue, key: str,
                                                      worker_thread: Callable[..., Any]) -> None:
    job_id = queue.dispatch(Held(key=key))
    worker = queue.worker(concurrency=1)
    running = worker_thread(worker)
    try:
        assert GATES[key].started.wait(10)
        worker.stop()
        worker.stop()
        running.join(5)  # although the job still runs
        assert queue.job(job_id).state in ("leased", "running")  # its lease will expire
    finally:
        GATES[key].release.set()


def test_a_running_job_keeps_its_lease_by_heartbeat(queue: evq.Queue, key: str,
                                                    worker_thread: Callable[..., Any]) -> None:
    job_id = queue.dispatch(Held(key=key))
    worker = queue.worker(lease=1.5, sleep=0.1)
    running = worker_thread(worker)
    try:
        wait_until(lambda: event_types(queue, job_id).count("LeaseExtended") >= 2)
    finally:
        GATES[key].release.set()
    wait_until(lambda: queue.job(job_id).state == "succeeded")
    running.stop()
    assert "LeaseExpired" not in event_types(queue, job_id)
    assert queue.job(job_id).attempt == 1


@pytest.mark.parametrize("started", [True, False])
def test_an_expired_lease_of_a_dead_worker_is_settled(queue: evq.Queue, key: str,
                                                      started: bool) -> None:
    job_id = queue.dispatch(Retrying(key=key))
    now = time.time()
    queue.append([JobLeased(job_id=job_id, ts=now - 100, worker="dead-worker", attempt=1,
                            lease_expires=now - 50)])
    if started:
        queue.append([JobStarted(job_id=job_id, ts=now - 99, worker="dead-worker", attempt=1)])
    assert queue.job(job_id).worker == "dead-worker"
    assert queue.worker(stop_when_empty=True).run() == 1
    # a job that had started has used an attempt; one that had not goes back as it was
    retry = ["JobRetryScheduled"] if started else []
    assert event_types(queue, job_id) == [
        "JobDispatched", "JobLeased", *(["JobStarted"] if started else []), "LeaseExpired",
        *retry, "JobLeased", "JobStarted", "JobSucceeded"]
    assert event_of(queue, job_id, LeaseExpired).worker == "dead-worker"
    row = queue.job(job_id)
    assert (row.state, row.attempt, row.failures) == ("succeeded", 2, int(started))
    assert CALLS[key] == ["ran"]
    assert queue.store.verify() == []


def test_a_finished_worker_is_not_kept_alive_by_the_store(queue: evq.Queue) -> None:
    queue.dispatch(Noop())
    worker = queue.worker(stop_when_empty=True)
    worker.run()
    ref = weakref.ref(worker)
    del worker
    gc.collect()
    assert ref() is None


def test_worker_options_are_checked(queue: evq.Queue) -> None:
    for options in ({"concurrency": 0}, {"lease": 0}, {"sleep": -1}):
        with pytest.raises(evq.EvqError):
            queue.worker(**options)


def test_a_worker_can_be_embedded_directly(queue: evq.Queue) -> None:
    job_id = queue.dispatch(Add(a=4, b=4), queue="embedded")
    worker = evq.Worker(queue.store, queues=["embedded"], stop_when_empty=True, name="embedded-1")
    assert worker.run() == 1
    assert result(queue, job_id) == 8
    assert event_of(queue, job_id, JobStarted).worker == "embedded-1"


def test_a_failure_message_with_a_nul_is_recorded_on_every_store(queue: evq.Queue) -> None:
    from jobs import RaisesNul

    job = queue.dispatch(RaisesNul())
    good = queue.dispatch(Add(a=1, b=1))
    assert queue.worker(stop_when_empty=True).run() == 2
    row = queue.job(job)
    assert (row.state, row.error) == ("failed", "before\\x00after")
    assert result(queue, good) == 2
    assert queue.store.verify() == []


def test_a_claim_that_comes_back_short_is_not_repeated_until_a_wake_up(
        queue: evq.Queue, second_connection: evq.Queue, worker_thread: Any) -> None:
    """Jobs dispatched one at a time, each awaited: the worker claims each job once, and does not
    ask again while it starts and finishes it (the claim found everything that was ready; only
    a wake-up or a time can bring more). It used to ask twice more per job, once beside each
    write of its outcomes."""
    claims: list[int] = []
    store = queue.store
    claim = store.claim

    def counted(*args: Any, **kwargs: Any) -> Any:
        got = claim(*args, **kwargs)
        claims.append(len(got))
        return got

    store.claim = counted  # type: ignore[method-assign]
    worker_thread(queue.worker(sleep=60))
    wait_until(lambda: claims, what="the worker's first claim")
    jobs = 20
    for i in range(jobs):
        assert second_connection.result(second_connection.dispatch(Add(a=i, b=1)),
                                        timeout=30) == i + 1
    assert claims.count(1) == jobs
    assert len(claims) <= jobs * 1.5, claims
