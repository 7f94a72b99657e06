"""The contract every store meets, through the Queue and Store API.

Each test runs once per store (``store_url``). Time is passed in wherever evq takes it (claims
take ``now``), so nothing here sleeps.
"""

from __future__ import annotations

import itertools
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest
from helpers import event_types
from jobs import Add, Configured, Noop, Retrying

import evq
from evq import (
    ConfigError,
    EvqError,
    InvalidArguments,
    InvalidState,
    NotFound,
    StoreError,
    UnknownJob,
)
from evq.eventlog.events import (
    JobDispatched,
    JobFailed,
    JobLeased,
    JobStarted,
    JobSucceeded,
    LeaseExpired,
    WorkerHeartbeat,
)
from evq.workers.retry import after_failure

# -- helpers: drive a job through its states with explicit times -------------------------------


def claim(q: evq.Queue, now: float | None = None, limit: int = 100,
          queues: tuple[str, ...] = ("default",)) -> list[evq.JobRow]:
    """Claim ready jobs through the store's claim operation, at time ``now``, with a 30 s lease;
    returns the rows leased, in claim order."""
    at = time.time() if now is None else now
    return q.store.claim(queues, at, limit, lambda r: [JobLeased(
        job_id=r.id, ts=at, worker="claimer", attempt=r.attempt + 1, lease_expires=at + 30)])


def start(q: evq.Queue, job_id: int) -> None:
    row = q.job(job_id)
    q.append([JobStarted(job_id=job_id, ts=time.time(), attempt=row.attempt, worker="t")])


def succeed(q: evq.Queue, job_id: int, result: Any = None) -> None:
    row = q.job(job_id)
    q.append([JobSucceeded(job_id=job_id, ts=time.time(), attempt=row.attempt, duration=0.01,
                           result=result)])


def fail(q: evq.Queue, job_id: int, message: str = "boom") -> None:
    """A failed attempt of a running job, followed by the retry decision (as a worker does)."""
    row, now = q.job(job_id), time.time()
    q.append([JobFailed(job_id=job_id, ts=now, attempt=row.attempt, error_type="ValueError",
                        message=message), after_failure(row, now)])


def run_to_failure(q: evq.Queue, job_id: int) -> None:
    """Claim, start and fail a tries=1 job: it ends failed."""
    assert [r.id for r in claim(q, limit=1)] == [job_id]
    start(q, job_id)
    fail(q, job_id)
    assert q.job(job_id).state == "failed"


# -- dispatch and reading ----------------------------------------------------------------------


def test_dispatch_returns_increasing_int_ids(queue: evq.Queue) -> None:
    ids = [queue.dispatch(Add(a=i, b=1)) for i in range(5)]
    assert all(type(i) is int for i in ids)
    assert ids == sorted(set(ids))
    row = queue.job(ids[2])
    assert (row.id, row.name, row.queue, row.state) == (ids[2], "core.add", "default", "pending")
    assert msgspec.json.decode(row.payload) == {"a": 2, "b": 1}
    assert (row.attempt, row.failures, row.tries) == (0, 0, 1)


def test_dispatch_records_class_configuration(queue: evq.Queue) -> None:
    job_id = queue.dispatch(Configured(to="a@b.c"))
    row = queue.job(job_id)
    assert (row.queue, row.priority, row.tries, row.timeout) == ("emails", 10, 3, 30)
    event = queue.history(job_id)[0].event
    assert isinstance(event, JobDispatched)
    assert event.backoff == [60, 300]  # the waits before retries 1 and 2 of 3 tries


def test_dispatch_options_override_the_class(queue: evq.Queue) -> None:
    job_id = queue.dispatch(Configured(to="x"), queue="urgent", priority=-5)
    row = queue.job(job_id)
    assert (row.queue, row.priority) == ("urgent", -5)


def test_unknown_job_id_raises_not_found(queue: evq.Queue) -> None:
    with pytest.raises(NotFound):
        queue.job(12345)
    with pytest.raises(NotFound):
        queue.history(12345)
    assert issubclass(NotFound, EvqError)


def test_history_lists_every_event_in_order(queue: evq.Queue) -> None:
    job_id = queue.dispatch(Retrying(key="history"))
    queue.dispatch(Noop())  # another job's events must not show up
    claim(queue, limit=1)
    start(queue, job_id)
    fail(queue, job_id)  # tries=3: retried
    claim(queue, limit=1)
    start(queue, job_id)
    succeed(queue, job_id, result={"ok": True})
    history = queue.history(job_id)
    assert event_types(queue, job_id) == [
        "JobDispatched", "JobLeased", "JobStarted", "JobFailed", "JobRetryScheduled",
        "JobLeased", "JobStarted", "JobSucceeded"]
    seqs = [r.seq for r in history]
    assert all(a < b for a, b in itertools.pairwise(seqs))
    assert seqs[0] == job_id  # a job's id is the position of its JobDispatched event
    assert {r.event.job_id for r in history} == {job_id}
    row = queue.job(job_id)
    assert (row.state, row.attempt, row.failures, row.last_seq) == ("succeeded", 2, 1, seqs[-1])
    assert msgspec.json.decode(row.result) == {"ok": True}


def test_events_are_readable_by_position(queue: evq.Queue) -> None:
    a = queue.dispatch(Noop(n=1))
    b = queue.dispatch(Noop(n=2))
    assert [r.seq for r in queue.events()] == [a, b]
    assert [r.seq for r in queue.events(since=a)] == [b]
    assert queue.store.log.last_seq() == b


# -- dispatch_many -------------------------------------------------------------------------------


def test_dispatch_many_returns_ids_in_order(queue: evq.Queue) -> None:
    ids = queue.dispatch_many([Add(a=i, b=i) for i in range(4)])
    assert ids == sorted(ids) and len(set(ids)) == 4
    assert [queue.job(i).payload for i in ids] == [f'{{"a":{i},"b":{i}}}' for i in range(4)]
    assert queue.dispatch_many([]) == []


@pytest.mark.parametrize("bad", [Add(a="x", b=1), "not a job", Add(a=1, b=None)],  # type: ignore[arg-type]
                         ids=["wrong-type", "not-a-job", "none"])
def test_dispatch_many_is_all_or_nothing(queue: evq.Queue, bad: Any) -> None:
    queue.dispatch(Noop())
    before = queue.store.log.last_seq()
    with pytest.raises(InvalidArguments):
        queue.dispatch_many([Add(a=1, b=2), bad, Add(a=3, b=4)])
    assert queue.store.log.last_seq() == before
    assert queue.jobs() == [queue.job(before)]
    assert queue.size() == 1


# -- delays ----------------------------------------------------------------------------------


@pytest.mark.parametrize("when", ["delay", "timedelta", "at-datetime", "at-float"])
def test_delayed_job_is_not_claimable_before_its_time(queue: evq.Queue, when: str) -> None:
    now = time.time()
    options: dict[str, Any] = {
        "delay": {"delay": 60},
        "timedelta": {"delay": timedelta(minutes=1)},
        "at-datetime": {"at": datetime.fromtimestamp(now + 60, tz=UTC)},
        "at-float": {"at": now + 60},
    }[when]
    job_id = queue.dispatch(Noop(), **options)
    row = queue.job(job_id)
    assert row.state == "pending"
    assert row.run_at == pytest.approx(now + 60, abs=1)
    assert [r.id for r in queue.jobs("delayed")] == [job_id]
    assert queue.jobs("pending") == []
    assert queue.size() == 1  # waiting: ready or delayed
    assert queue.stats()["queues"]["default"]["delayed"] == 1
    assert claim(queue, now=row.run_at - 0.001) == []
    assert queue.job(job_id).state == "pending"
    assert [r.id for r in claim(queue, now=row.run_at)] == [job_id]
    assert queue.job(job_id).state == "leased"


def test_invalid_delay_is_refused(queue: evq.Queue) -> None:
    before = queue.store.log.last_seq()
    for options in ({"delay": -1}, {"delay": float("nan")}, {"delay": "10"},
                    {"delay": 1, "at": time.time()}):
        with pytest.raises(InvalidArguments):
            queue.dispatch(Noop(), **options)
    assert queue.store.log.last_seq() == before


@pytest.mark.parametrize("options", [
    {"priority": "high"}, {"priority": 1.5}, {"queue": 123}, {"at": float("nan")},
    {"delay": float("inf")}, {"at": "tomorrow"},
    # what cannot be stored and shown: times outside 1970..9999, 65-bit priorities
    {"at": datetime(1, 1, 1)}, {"at": -1e12}, {"at": 1e20}, {"at": 0}, {"delay": 1e12},
    {"delay": 1e300}, {"priority": 2**63}, {"priority": -(2**63) - 1},
    # queue names a worker could not name (evq work --queues splits on commas, strips spaces)
    {"queue": "a,b"}, {"queue": " padded "}, {"queue": "bell\x07"}, {"queue": ""},
    {"queue": "q" * 101}],
    ids=["priority-str", "priority-float", "queue-int", "at-nan", "delay-inf", "at-str",
         "at-year-1", "at-negative", "at-1e20", "at-0", "delay-1e12", "delay-1e300",
         "priority-2**63", "priority-below-int64", "queue-comma", "queue-padded",
         "queue-control", "queue-empty", "queue-long"])
def test_bad_dispatch_options_are_refused_before_the_log(queue: evq.Queue,
                                                         options: dict[str, Any]) -> None:
    queue.dispatch(Noop())
    before = queue.store.log.last_seq()
    try:
        with pytest.raises(InvalidArguments):
            queue.dispatch(Noop(), **options)
        assert queue.store.log.last_seq() == before
    finally:
        list(queue.events())  # whatever happened, the log must stay readable


class Carry(evq.Job):
    job_name = "contract.carry"

    value: Any = None


def nested(depth: int) -> Any:
    value: Any = 0
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize("depth", [65, 1000, 5000])
def test_arguments_nested_too_deeply_are_refused(queue: evq.Queue, depth: int) -> None:
    before = queue.store.log.last_seq()
    with pytest.raises(InvalidArguments, match="nested"):
        queue.dispatch(Carry(value=nested(depth)))
    text = b'{"value": ' + b"[" * depth + b"0" + b"]" * depth + b"}"
    with pytest.raises(InvalidArguments, match="nested"):
        queue.dispatch_json("contract.carry", text)
    assert queue.store.log.last_seq() == before


def test_arguments_nested_one_too_deeply_are_refused_whatever_the_brackets(
        queue: evq.Queue) -> None:
    objects: Any = "{not [a bracket"
    for _ in range(32):
        objects = {"k": [objects]}  # 64 deep, 65 with the outer {"value"}
    hiding = ["]" * 100, nested(70), "[" * 100]  # brackets in strings do not hide the depth
    for value in (nested(64), objects, [nested(63), "]]]]"], hiding, ['\\"]]', nested(64)]):
        with pytest.raises(InvalidArguments, match="nested more than 64"):
            queue.dispatch(Carry(value=value))


def test_arguments_over_10_mb_are_refused(queue: evq.Queue) -> None:
    before = queue.store.log.last_seq()
    with pytest.raises(InvalidArguments, match="bytes"):
        queue.dispatch(Carry(value="x" * (10 * 1024 * 1024)))
    assert queue.store.log.last_seq() == before


def test_arguments_at_the_bounds_are_accepted(queue: evq.Queue) -> None:
    wide = [{"a": [1, {"b": 2}]} for _ in range(1000)]  # many brackets, little depth
    quoted = ['\\"' + "[" * 100, "\\" * 3 + "{[" * 50, {"k[[[[": "]]]" * 40}]  # escapes
    deepest = [{"a": nested(61)}]  # 64 deep with the outer {"value": ...}
    for value in (nested(63), wide, "[[[[" * 100, quoted, deepest):
        job_id = queue.dispatch(Carry(value=value))
        assert msgspec.json.decode(queue.job(job_id).payload) == {"value": value}


def test_a_name_a_worker_cannot_name_is_refused_at_class_definition() -> None:
    with pytest.raises(ConfigError, match="printable"):
        class CommaQueue(evq.Job):
            job_name = "contract.comma_queue"
            queue = "a,b"
    with pytest.raises(ConfigError, match="printable"):
        class PaddedName(evq.Job):
            job_name = " contract.padded"
    with pytest.raises(ConfigError, match="printable"):
        class TabName(evq.Job):
            job_name = "contract\ttab"
    with pytest.raises(ConfigError, match="printable"):
        evq.job(name="a,b")(lambda: None)


def test_bad_class_configuration_is_refused_before_the_log(queue: evq.Queue) -> None:
    before = queue.store.log.last_seq()
    try:
        with pytest.raises(EvqError):
            class BadConfig(evq.Job):  # raising here (at class creation) would be fine too
                job_name = "core.bad_config"
                priority = "high"  # type: ignore[assignment]
                timeout = "30"  # type: ignore[assignment]

            queue.dispatch(BadConfig())
        assert queue.store.log.last_seq() == before
    finally:
        list(queue.events())


# -- claiming ----------------------------------------------------------------------------------


def test_claim_order_is_queue_then_priority_then_dispatch_order(queue: evq.Queue) -> None:
    d_low = queue.dispatch(Noop(n=1))
    d_high_1 = queue.dispatch(Noop(n=2), priority=5)
    h_low = queue.dispatch(Noop(n=3), queue="high")
    d_high_2 = queue.dispatch(Noop(n=4), priority=5)
    h_high = queue.dispatch(Noop(n=5), queue="high", priority=1)
    queue.dispatch(Noop(n=6), queue="elsewhere")  # not a queue the claimer serves
    got = [r.id for r in claim(queue, queues=("high", "default"))]
    assert got == [h_high, h_low, d_high_1, d_high_2, d_low]
    assert queue.jobs(queue="elsewhere")[0].state == "pending"


def test_claim_takes_at_most_limit_jobs_in_order(queue: evq.Queue) -> None:
    ids = [queue.dispatch(Noop(n=i)) for i in range(5)]
    assert [r.id for r in claim(queue, limit=2)] == ids[:2]
    assert [r.id for r in claim(queue, limit=2)] == ids[2:4]
    assert [r.id for r in claim(queue, limit=2)] == ids[4:]
    assert claim(queue) == []


def test_claim_leases_with_the_next_attempt(queue: evq.Queue) -> None:
    job_id = queue.dispatch(Noop())
    now = time.time()
    [row] = claim(queue, now=now)
    assert (row.state, row.attempt) == ("leased", 1)
    assert row.lease_expires is not None and row.lease_expires > now
    leased = queue.history(job_id)[-1].event
    assert isinstance(leased, JobLeased) and leased.attempt == 1
    assert queue.jobs("running") == [queue.job(job_id)]
    assert claim(queue, now=now + 1) == []  # a leased job is not claimable


def test_a_claim_hands_out_its_rows_as_leased_before_its_write_only_on_a_server(
        queue: evq.Queue, second_connection: evq.Queue) -> None:
    """``decided`` gets the rows as leased: on PostgreSQL before the claim's write (another
    connection still sees the job pending; a worker starts it meanwhile), elsewhere once the
    lease is committed. The claim returns the same jobs either way."""
    job = queue.dispatch(Noop())
    seen: list[tuple[list[tuple[int, str, int]], str]] = []

    def decided(rows: list[evq.JobRow]) -> None:
        stored = second_connection.job(job).state if queue.store.shared else "unseen"
        seen.append(([(r.id, r.state, r.attempt) for r in rows], stored))

    now = time.time()
    got = queue.store.claim(["default"], now, 10, lambda r: [JobLeased(
        job_id=r.id, ts=now, worker="w", attempt=r.attempt + 1, lease_expires=now + 30)],
        decided=decided)
    assert [(r.id, r.state, r.attempt) for r in got] == [(job, "leased", 1)]
    expected = {"postgresql": "pending", "sqlite": "leased"}.get(queue.url.split(":")[0], "unseen")
    assert seen == [([(job, "leased", 1)], expected)]
    assert queue.job(job).state == "leased"


def test_two_claimers_never_get_the_same_job(queue: evq.Queue) -> None:
    ids = set(queue.dispatch_many([Noop(n=i) for i in range(200)]))
    if not queue.store.shared:  # one in-memory store: claimers can only take turns
        first = claim(queue, limit=70)
        second = claim(queue, limit=1000)
        claimed = [r.id for r in first + second]
    else:
        claimed = _claim_concurrently(queue.url, claimers=4)
    assert len(claimed) == len(set(claimed)), "a job was claimed twice"
    assert set(claimed) == ids
    for job_id in ids:
        assert event_types(queue, job_id).count("JobLeased") == 1
        assert queue.job(job_id).attempt == 1


def _claim_concurrently(url: str, claimers: int) -> list[int]:
    """Several threads, each with its own connection, claim small batches until none is left;
    each waits after its first claim until all have made one, so that all of them take part."""
    barrier = threading.Barrier(claimers)
    first_claims = threading.Barrier(claimers)
    got: list[list[int]] = [[] for _ in range(claimers)]
    errors: list[BaseException] = []

    def claimer(i: int) -> None:
        q = evq.connect(url)
        try:
            barrier.wait(10)
            while True:
                rows = claim(q, limit=3)
                if not got[i]:
                    first_claims.wait(10)
                got[i].extend(r.id for r in rows)
                if not rows and not q.store.tables.ready("default", time.time(), 1):
                    return
        except BaseException as exc:
            errors.append(exc)
        finally:
            q.close()

    threads = [threading.Thread(target=claimer, args=(i,)) for i in range(claimers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors
    assert sum(1 for g in got if g) > 1, "only one claimer got jobs: no concurrency was tested"
    return [i for g in got for i in g]


# -- fencing -----------------------------------------------------------------------------------


def test_stale_outcome_is_recorded_but_changes_nothing(queue: evq.Queue) -> None:
    job_id = queue.dispatch(Retrying(key="stale"))
    now = time.time()
    [row] = claim(queue, now=now)
    start(queue, job_id)
    # the worker of attempt 1 is presumed dead: its lease is settled, the job claimed again
    row = queue.job(job_id)
    queue.append([LeaseExpired(job_id=job_id, ts=now + 60, attempt=1, worker=row.worker or ""),
                  after_failure(row, now + 60)])
    [again] = claim(queue, now=now + 61)
    assert again.attempt == 2
    before = queue.job(job_id)
    stats_before = queue.stats()
    # ...then attempt 1 reports after all
    queue.append([JobSucceeded(job_id=job_id, ts=now + 62, attempt=1, duration=2.0)])
    queue.append([JobFailed(job_id=job_id, ts=now + 62, attempt=1, error_type="E",
                            message="late")])
    assert event_types(queue, job_id)[-2:] == ["JobSucceeded", "JobFailed"]  # recorded
    assert queue.job(job_id) == before  # ...but the row did not move, not even its last_seq
    after_stats = queue.stats()
    assert after_stats["queues"] == stats_before["queues"]
    assert after_stats["job_types"] == stats_before["job_types"]
    assert queue.store.verify() == []


def test_append_with_held_rows_updates_them_and_the_store(queue: evq.Queue) -> None:
    ids = queue.dispatch_many([Noop() for _ in range(3)])
    rows = claim(queue)
    held = {r.id: r for r in rows}
    now = time.time()
    queue.store.append([e for r in rows for e in (
        JobStarted(job_id=r.id, ts=now, attempt=r.attempt, worker="t"),
        JobSucceeded(job_id=r.id, ts=now + 1, attempt=r.attempt, duration=1.0))], held)
    assert [queue.job(i) for i in ids] == [held[i] for i in ids]  # copies kept current
    assert {held[i].state for i in ids} == {"succeeded"}
    assert held[ids[-1]].last_seq == queue.store.log.last_seq()
    assert queue.store.verify() == []


def test_append_with_stale_held_rows_applies_to_the_stored_ones(queue: evq.Queue) -> None:
    job_id = queue.dispatch(Retrying(key="held"))
    now = time.time()
    [mine] = claim(queue, now=now)
    held = {job_id: mine}
    # meanwhile the lease is settled by someone else and the job claimed again
    queue.append([LeaseExpired(job_id=job_id, ts=now + 60, attempt=1, worker=mine.worker or ""),
                  after_failure(mine, now + 60)])
    [again] = claim(queue, now=now + 61)
    before = queue.job(job_id)
    queue.store.append([JobStarted(job_id=job_id, ts=now + 62, attempt=1, worker="t")], held)
    assert queue.job(job_id) == before == held[job_id]  # fenced, and the copy corrected
    assert again.attempt == 2
    assert queue.store.verify() == []


# -- operating on jobs ------------------------------------------------------------------------


def test_clear_removes_pending_jobs_of_one_queue(queue: evq.Queue) -> None:
    leased = queue.dispatch(Noop(n=1))
    ready = queue.dispatch(Noop(n=2))
    delayed = queue.dispatch(Noop(n=3), delay=3600)
    other = queue.dispatch(Noop(n=4), queue="other")
    claim(queue, limit=1)
    assert queue.clear("default") == 2
    for job_id in (ready, delayed):
        with pytest.raises(NotFound):
            queue.job(job_id)
    assert queue.job(leased).state == "leased"
    assert queue.job(other).state == "pending"
    assert queue.size("default") == 0
    assert queue.size("other") == 1
    before = queue.store.log.last_seq()
    assert queue.clear("default") == 0
    assert queue.clear("no-such-queue") == 0
    assert queue.store.log.last_seq() == before  # nothing to clear: nothing appended
    assert queue.store.verify() == []


def test_cleared_job_history_shows_the_clear(queue: evq.Queue) -> None:
    job_id = queue.dispatch(Noop())
    assert queue.clear("default") == 1
    clear_seq = queue.store.log.last_seq()
    with pytest.raises(NotFound):
        queue.history(clear_seq)  # no job was dispatched at that position
    assert event_types(queue, job_id) == ["JobDispatched", "QueueCleared"]


def test_retry_requeues_a_failed_job_with_failures_reset(queue: evq.Queue) -> None:
    job_id = queue.dispatch(Add(a=1, b=1))
    run_to_failure(queue, job_id)
    failed = queue.job(job_id)
    assert (failed.failures, failed.error_type, failed.error) == (1, "ValueError", "boom")
    row = queue.retry(job_id)
    assert (row.state, row.failures, row.finished_at) == ("pending", 0, None)
    assert event_types(queue, job_id)[-1] == "JobRequeued"
    assert queue.job(job_id) == row
    [again] = claim(queue)
    assert again.id == job_id and again.attempt == 2  # the fencing token keeps counting
    with pytest.raises(InvalidState):
        queue.retry(job_id)  # leased: nothing to retry
    with pytest.raises(NotFound):
        queue.retry(98765)


def test_retry_all_requeues_every_failed_job(queue: evq.Queue) -> None:
    a = queue.dispatch(Add(a=1, b=1))
    run_to_failure(queue, a)
    b = queue.dispatch(Add(a=2, b=2))
    run_to_failure(queue, b)
    c = queue.dispatch(Add(a=3, b=3))
    assert queue.retry_all() == 2
    assert [queue.job(i).state for i in (a, b, c)] == ["pending"] * 3
    assert queue.retry_all() == 0


def test_cancel_a_pending_job(queue: evq.Queue) -> None:
    job_id = queue.dispatch(Noop())
    row = queue.cancel(job_id, reason="not needed")
    assert (row.state, row.error) == ("cancelled", "not needed")
    assert [r.id for r in queue.jobs("cancelled")] == [job_id]
    assert claim(queue) == []
    assert event_types(queue, job_id)[-1] == "JobCancelled"
    with pytest.raises(InvalidState):
        queue.cancel(job_id)
    assert queue.retry(job_id).state == "pending"  # a cancelled job can be requeued
    with pytest.raises(NotFound):
        queue.cancel(424242)


def test_cancel_of_a_claimed_job_asks_its_worker_once(queue: evq.Queue) -> None:
    job_id = queue.dispatch(Noop())
    claim(queue)
    row = queue.cancel(job_id, "why")
    assert (row.state, row.cancel_requested) == ("leased", "why")
    assert event_types(queue, job_id)[-1] == "JobCancelRequested"
    before = queue.store.log.last_seq()
    assert queue.cancel(job_id).state == "leased"  # asked already: nothing more to append
    assert queue.store.log.last_seq() == before


def test_forget_removes_a_finished_job_but_keeps_its_events(queue: evq.Queue) -> None:
    job_id = queue.dispatch(Noop())
    with pytest.raises(InvalidState):
        queue.forget(job_id)  # pending: not finished
    claim(queue)
    start(queue, job_id)
    succeed(queue, job_id)
    queue.forget(job_id)
    with pytest.raises(NotFound):
        queue.job(job_id)
    assert event_types(queue, job_id)[-1] == "JobPurged"
    with pytest.raises(NotFound):
        queue.forget(job_id)
    assert queue.store.verify() == []


def test_flush_failed_removes_every_failed_job(queue: evq.Queue) -> None:
    failed = [queue.dispatch(Add(a=i, b=i)) for i in range(2)]
    for job_id in failed:
        run_to_failure(queue, job_id)
    kept = queue.dispatch(Noop())
    assert queue.flush_failed() == 2
    assert queue.jobs("failed") == []
    assert queue.job(kept).state == "pending"
    assert queue.flush_failed() == 0
    assert queue.stats()["queues"]["default"]["failed"] == 0


# -- counts ------------------------------------------------------------------------------------


def test_stats_and_size_count_every_state(queue: evq.Queue) -> None:
    succeeded = queue.dispatch(Add(a=1, b=2))
    failed = queue.dispatch(Add(a=2, b=2))
    running = queue.dispatch(Add(a=3, b=2))
    leased = queue.dispatch(Add(a=4, b=2))
    pending = queue.dispatch(Add(a=5, b=2))
    cancelled = queue.dispatch(Add(a=6, b=2))
    queue.dispatch(Add(a=7, b=2), delay=3600)
    queue.dispatch(Noop(), queue="other")
    queue.cancel(cancelled)
    assert [r.id for r in claim(queue, limit=4)] == [succeeded, failed, running, leased]
    for job_id in (succeeded, failed, running):
        start(queue, job_id)
    succeed(queue, succeeded, result=3)
    fail(queue, failed)
    stats = queue.stats()
    assert stats["last_seq"] == queue.store.log.last_seq()
    assert stats["queues"]["default"] == {
        "pending": 1, "delayed": 1, "leased": 1, "running": 1, "succeeded": 1, "failed": 1,
        "cancelled": 1, "waiting": 0}
    assert stats["queues"]["other"]["pending"] == 1
    add = stats["job_types"]["core.add"]
    assert (add["dispatched"], add["started"], add["succeeded"], add["failures"],
            add["dead"], add["retried"]) == (7, 3, 1, 1, 1, 0)
    assert add["failure_rate"] == pytest.approx(0.5)
    assert add["avg_duration"] == pytest.approx(0.01)
    assert add["duration_p50"] == pytest.approx(0.01)
    assert stats["job_types"]["core.noop"]["dispatched"] == 1
    assert queue.size() == 2  # pending and delayed
    assert queue.size("other") == 1
    assert queue.size("nothing-here") == 0
    assert [r.id for r in queue.jobs("pending", queue="default")] == [pending]
    assert [r.id for r in queue.jobs("running")] == [running, leased]
    assert [r.id for r in queue.jobs("succeeded")] == [succeeded]
    assert [r.id for r in queue.jobs("failed")] == [failed]
    assert len(queue.jobs(name="core.add")) == 7
    assert len(queue.jobs(limit=3)) == 3
    with pytest.raises(InvalidArguments):
        queue.jobs("sleeping")
    assert queue.store.verify() == []


def test_rebuild_into_another_store_matches(queue: evq.Queue, tmp_path: Any) -> None:
    a = queue.dispatch(Add(a=1, b=2))
    queue.dispatch(Noop(), delay=60)
    claim(queue)
    start(queue, a)
    succeed(queue, a, result=3)
    other = evq.connect(f"sqlite:///{tmp_path}/rebuilt.db")
    try:
        assert queue.store.rebuild(into=other.store) == queue.store.log.last_seq()
        assert queue.store.differences(other.store) == []
        assert other.job(a) == queue.job(a)
    finally:
        other.close()


# -- raw appends -------------------------------------------------------------------------------


def test_append_returns_positions(queue: evq.Queue) -> None:
    got = queue.append([JobDispatched(ts=time.time(), name="core.noop", queue="default",
                                      payload=msgspec.Raw(b"{}"))])
    assert got == [queue.store.log.last_seq()]


# -- opening stores ----------------------------------------------------------------------------


def test_connect_refuses_bad_urls(tmp_path: Any) -> None:
    with pytest.raises(ConfigError):
        evq.connect("redis://localhost")
    with pytest.raises(ConfigError):
        evq.connect("sqlite:///")
    with pytest.raises(ConfigError):
        evq.connect(f"sqlite:///{tmp_path}/x.db?colour=blue")
    with pytest.raises(StoreError, match="does not exist"):
        evq.connect(f"sqlite:///{tmp_path}/missing/dir/evq.db")


def test_sqlite_store_is_shared_between_connections(tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path}/shared.db"
    first, second = evq.connect(url), evq.connect(url)
    try:
        job_id = first.dispatch(Add(a=1, b=2))
        assert second.job(job_id).state == "pending"
        [row] = claim(second)
        assert first.job(job_id) == row
    finally:
        first.close()
        second.close()


def test_unknown_job_name_is_refused_at_dispatch_json(queue: evq.Queue) -> None:
    with pytest.raises(UnknownJob, match=r"core\.nope"):
        queue.dispatch_json("core.nope", "{}")


def test_watchers_are_woken_when_work_appears_in_their_queues_only(
        queue: evq.Queue, second_connection: evq.Queue) -> None:
    """Idle workers are woken by work in their queues, from this process or another; commits
    that make nothing ready (claims, heartbeats, outcomes) and work in other queues wake none."""
    woken = threading.Event()
    watch = second_connection.store.watch(["default"], woken.set)
    try:
        queue.dispatch(Noop(), queue="other")
        queue.append([WorkerHeartbeat(ts=time.time(), worker="w", done=0)])
        [row] = claim(queue, queues=("other",))
        assert not woken.wait(0.3)
        queue.dispatch(Noop())
        assert woken.wait(5.0)
        woken.clear()
        [row] = claim(queue)
        start(queue, row.id)
        succeed(queue, row.id)
        assert not woken.wait(0.3)
        queue.dispatch(Noop(), delay=60)  # due later: an idle worker sets its timer by it
        assert woken.wait(5.0)
    finally:
        watch.close()
