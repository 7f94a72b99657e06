"""Unique jobs, rate limits and concurrency limits, on every store (one process; the races between
processes are in ``test_limits_e2e.py``)."""

from __future__ import annotations

import math
import time

import pytest
from helpers import event_types
from jobs import Capped, Noop, Rated, Unique, UniqueByValue, UniquePerUser

import evq
from evq.eventlog.events import (
    Event,
    JobDead,
    JobFailed,
    JobHeld,
    JobLeased,
    JobRetryScheduled,
    JobStarted,
    JobSucceeded,
)
from evq.projections.limits import Usage, decide
from evq.projections.model import JobRow


def lease_all(q: evq.Queue, now: float, limit: int = 100) -> list[JobRow]:
    """Claim for worker "w" what may be claimed at ``now``; returns the rows leased."""
    return q.store.claim(["default"], now, limit, lambda r: [JobLeased(
        job_id=r.id, ts=now, worker="w", attempt=r.attempt + 1, lease_expires=now + 30)])


def finish(q: evq.Queue, job_id: int, now: float, *events: Event) -> None:
    """Start the leased job and append ``events`` (default: its success)."""
    attempt = q.job(job_id).attempt
    q.append([JobStarted(job_id=job_id, ts=now, attempt=attempt),
              *(events or [JobSucceeded(job_id=job_id, ts=now, attempt=attempt, duration=0)])])


# -- unique jobs -------------------------------------------------------------------------------


def test_a_duplicate_dispatch_returns_the_first_id_and_appends_nothing(queue: evq.Queue) -> None:
    first = queue.dispatch(Unique(n=1))
    end = queue.store.log.last_seq()
    assert queue.dispatch(Unique(n=1)) == first
    assert queue.store.log.last_seq() == end
    other = queue.dispatch(Unique(n=2))
    assert other != first
    assert queue.dispatch_many([Unique(n=3), Unique(n=1), Unique(n=3), Noop(n=1)]) == [
        other + 1, first, other + 1, other + 2]
    assert queue.count_jobs() == 4
    assert queue.job(first).unique_key == 'core.unique:{"n":1}'
    assert queue.store.verify() == []


def test_the_key_is_held_while_the_job_is_unfinished(queue: evq.Queue) -> None:
    """``unique_for = 0``: held from the dispatch until the job ends, through its retries;
    ``unique_key()`` decides what counts as the same job."""
    first = queue.dispatch(UniquePerUser(user=7, note="a"))
    assert queue.dispatch(UniquePerUser(user=7, note="b")) == first
    now = time.time()
    assert [r.id for r in lease_all(queue, now)] == [first]
    finish(queue, first, now, JobFailed(job_id=first, ts=now, attempt=1, error_type="E",
                                        message="m"),
           JobRetryScheduled(job_id=first, ts=now, attempt=1, run_at=now))
    assert queue.dispatch(UniquePerUser(user=7)) == first  # retried: still the same job
    lease_all(queue, now)
    finish(queue, first, now, JobFailed(job_id=first, ts=now, attempt=2, error_type="E",
                                        message="m"), JobDead(job_id=first, ts=now, attempt=2))
    assert queue.job(first).state == "failed"
    second = queue.dispatch(UniquePerUser(user=7, note="c"))  # dead: the key is free
    assert second > first
    assert queue.dispatch(UniquePerUser(user=7)) == second
    assert queue.store.verify() == []


def test_the_key_stays_held_for_unique_for_seconds_after_the_dispatch(queue: evq.Queue) -> None:
    first = queue.dispatch(Unique(n=5))
    now = time.time()
    lease_all(queue, now)
    finish(queue, first, now)
    assert queue.job(first).state == "succeeded"
    event = queue.store.tables.get(first)
    assert event is not None
    dup = queue._dispatched(Unique(n=5), now, None, None, None, None)
    until = event.dispatched_at + 60
    assert queue.store.dispatch([dup], until - 0.001) == [first]
    [again] = queue.store.dispatch([dup], until)  # the window is over, and the job finished
    assert again > first
    assert [(u.key, u.job_id) for u in queue.store.tables.uniques()] == [
        ('core.unique:{"n":5}', again)]
    queue.clear("default")  # the job leaves the projections, and its key with it
    assert queue.store.tables.uniques() == []
    assert queue.store.verify() == []


def test_a_unique_key_that_is_no_string_nor_json_is_refused(queue: evq.Queue) -> None:
    assert queue.job(queue.dispatch(UniqueByValue())).unique_key == '["a",1]'
    end = queue.store.log.last_seq()
    with pytest.raises(evq.InvalidArguments, match=r"core.unique_by_value: unique_key\(\) must "
                                                   "give a string or a value that encodes as "
                                                   "JSON"):
        queue.dispatch(UniqueByValue(value="object"))
    with pytest.raises(evq.InvalidArguments):
        queue.dispatch_many([Noop(), UniqueByValue(value="object")])
    assert queue.store.log.last_seq() == end


def test_a_long_unique_key_is_kept_as_its_hash(queue: evq.Queue) -> None:
    first = queue.dispatch(UniquePerUser(user=10**250))
    key = queue.job(first).unique_key
    assert key is not None and key.startswith("sha256:") and len(key) == 71
    assert queue.dispatch(UniquePerUser(user=10**250, note="x")) == first


def test_dispatch_sync_runs_a_unique_job_whatever_is_queued(queue: evq.Queue) -> None:
    queued = queue.dispatch(UniquePerUser(user=1))
    assert queue.dispatch_sync(UniquePerUser(user=1, note="here")) == "here"
    assert queue.count_jobs() == 2 and queue.job(queued).state == "pending"
    assert queue.store.verify() == []


# -- settings refused when a job type is defined ----------------------------------------------


@pytest.mark.parametrize(("settings", "fragment"), [
    pytest.param({"rate_limit": "evq.RateLimit(0, per=1)"}, "limit must be an integer of at "
                 "least 1", id="rate-zero"),
    pytest.param({"rate_limit": "evq.RateLimit(5, per=-1)"}, "per must be a positive number",
                 id="negative-window"),
    pytest.param({"rate_limit": "evq.RateLimit(5, per=0)"}, "per must be a positive number",
                 id="zero-window"),
    pytest.param({"rate_limit": "evq.RateLimit(5, per=1, key='')"}, "key must be a non-empty",
                 id="empty-key"),
    pytest.param({"rate_limit": "(5, 1)"}, "rate_limit must be an evq.RateLimit",
                 id="not-a-rate-limit"),
    pytest.param({"concurrency_limit": "0"}, "concurrency_limit must be an integer of at "
                 "least 1", id="concurrency-zero"),
    pytest.param({"unique_for": "-1"}, "unique_for must be a number of seconds",
                 id="negative-unique-for"),
    pytest.param({"rate_limit": "evq.RateLimit(5, per=1)", "concurrency_limit": "1",
                  "concurrency_key": "'b'"}, "give one key", id="two-keys"),
    pytest.param({"concurrency_limit": "1", "concurrency_key": "3"}, "concurrency_key must be",
                 id="key-not-a-string"),
])
def test_bad_limits_are_refused_when_the_job_type_is_defined(settings: dict[str, str],
                                                              fragment: str) -> None:
    body = "".join(f"    {k} = {v}\n" for k, v in settings.items())
    with pytest.raises(evq.ConfigError, match=fragment):
        exec(f"class Bad(evq.Job):\n    job_name = 'core.bad_limits'\n{body}", {"evq": evq})


# -- rate limits -------------------------------------------------------------------------------


def test_decide_staggers_the_jobs_it_holds_back() -> None:
    row = JobRow(1, "n", "q", "pending", 0, 0.0, "{}", 1, "[]", None, 0.0, limit_key="k",
                 rate_limit=2, rate_per=10.0)
    usage = Usage(held=0, starts=[95.0])  # one start in the window at 100
    assert [decide(row, usage, 100.0) for _ in range(5)] == [None, 105.0, 110.0, 115.0, 120.0]
    capped = JobRow(2, "n", "q", "pending", 0, 0.0, "{}", 1, "[]", None, 0.0, limit_key="c",
                    concurrency_limit=1)
    usage = Usage()
    assert [decide(capped, usage, 100.0) for _ in range(2)] == [None, math.inf]


def test_a_rate_limited_job_is_held_until_its_slot_frees(queue: evq.Queue) -> None:
    a = queue.dispatch_many([Rated(tenant="a") for _ in range(5)])
    b = queue.dispatch_many([Rated(tenant="b") for _ in range(2)])
    now = time.time()
    assert sorted(r.id for r in lease_all(queue, now)) == [*a[:2], *b]
    held = [queue.job(i) for i in a[2:]]
    assert [(r.state, r.run_at - now) for r in held] == [
        ("pending", 10.0), ("pending", 10.0), ("pending", 20.0)]
    assert event_types(queue, a[2]) == ["JobDispatched", "JobHeld"]
    [hold] = [r.event for r in queue.history(a[2]) if isinstance(r.event, JobHeld)]
    assert hold.reason == "rate limit of tenant:a: 2 per 10s"
    assert queue.jobs("delayed") == held
    assert queue.store.tables.next_due(["default"]) == held[0].run_at  # a worker's next wake-up
    assert lease_all(queue, now + 9.9) == []  # nothing appended: the held jobs are not due
    assert event_types(queue, a[2]) == ["JobDispatched", "JobHeld"]
    for i in a[:2]:
        finish(queue, i, now + 1)  # the starts at now + 1 leave the window at now + 11
    assert lease_all(queue, now + 10.5) == []
    assert event_types(queue, a[2]) == ["JobDispatched", "JobHeld", "JobHeld"]
    assert [r.id for r in lease_all(queue, now + 11.01)] == a[2:4]
    assert queue.store.verify() == []


# -- concurrency limits ------------------------------------------------------------------------


def test_a_concurrency_limit_leaves_jobs_ready_behind_the_full_key(queue: evq.Queue) -> None:
    capped = queue.dispatch_many([Capped(n=i) for i in range(4)])
    free = queue.dispatch(Noop())  # behind the capped jobs in claim order
    now = time.time()
    assert [r.id for r in lease_all(queue, now, limit=3)] == [*capped[:2], free]
    end = queue.store.log.last_seq()
    assert lease_all(queue, now) == []
    assert queue.store.log.last_seq() == end  # no event: the jobs stay ready, not held
    woken: list[int] = []
    watch = queue.store.watch(["default"], lambda: woken.append(1))
    try:
        finish(queue, capped[0], now)
        assert woken  # the commit that freed a slot woke the watchers of the queue
    finally:
        watch.close()
    assert [r.id for r in lease_all(queue, now)] == [capped[2]]
    assert queue.store.verify() == []


def test_limits_are_recorded_with_the_job(queue: evq.Queue) -> None:
    row = queue.job(queue.dispatch(Rated(tenant="x")))
    assert (row.limit_key, row.rate_limit, row.rate_per, row.concurrency_limit) == (
        "tenant:x", 2, 10.0, None)
    row = queue.job(queue.dispatch(Capped()))
    assert (row.limit_key, row.rate_limit, row.rate_per, row.concurrency_limit) == (
        "core.capped", None, None, 2)


def test_a_redispatched_copy_keeps_the_limits_not_the_unique_key(queue: evq.Queue) -> None:
    from evq.redispatch import redispatch

    rows = [queue.job(queue.dispatch(Rated(tenant="r"))), queue.job(queue.dispatch(Unique()))]
    copies = [queue.job(i) for i in redispatch(queue.store, rows)]
    assert [(c.limit_key, c.rate_limit, c.rate_per) for c in copies] == [
        ("tenant:r", 2, 10.0), (None, None, None)]
    assert [c.unique_key for c in copies] == [None, None]


def test_function_jobs_take_the_same_settings(queue: evq.Queue) -> None:
    @evq.job(name="core.fn_limited", unique_for=5, concurrency_limit=3,
             concurrency_key=lambda job: f"user:{job.user}")
    def fn_limited(user: int) -> None:
        pass

    first = queue.dispatch(fn_limited.make(1))
    assert queue.dispatch(fn_limited.make(1)) == first
    row = queue.job(first)
    assert (row.unique_key, row.limit_key, row.concurrency_limit) == (
        'core.fn_limited:{"user":1}', "user:1", 3)
