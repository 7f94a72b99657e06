"""The state transitions, tested without a database, and the replay invariant, with hypothesis.

``apply(row, event, seq)`` is pure: every transition and every refusal can be checked on plain
rows. The invariant of DESIGN section 4 is checked through real stores: for random valid
sequences of operations, rebuilding the projections from the log gives the live projections.
"""

from __future__ import annotations

import tempfile
from collections import Counter
from typing import Any, NamedTuple

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import evq
from evq.eventlog.events import (
    Event,
    JobCancelled,
    JobCancelRequested,
    JobDead,
    JobDispatched,
    JobFailed,
    JobLeased,
    JobProgress,
    JobPurged,
    JobRequeued,
    JobRetryScheduled,
    JobStarted,
    JobSucceeded,
    JobTimedOut,
    LeaseExpired,
    LeaseExtended,
    LeaseReleased,
    QueueCleared,
    ScheduleTicked,
    WorkerHeartbeat,
    WorkerStarted,
    WorkerStopped,
)
from evq.projections.apply import Deltas, apply, apply_worker
from evq.projections.model import JobRow
from evq.projections.store import Store, open_store
from evq.workers.retry import after_failure, after_lease_expired

T0 = 1_000.0


def dispatched(job_id: int = 7, ts: float = T0, **fields: Any) -> JobDispatched:
    options: dict[str, Any] = {"name": "n", "queue": "q", "payload": msgspec.Raw(b'{"x":1}'),
                               "tries": 3, "backoff": [1, 2]}
    options.update(fields)
    return JobDispatched(job_id=job_id, ts=ts, **options)


def through(*events: Event, row: JobRow | None = None, first_seq: int = 1) -> JobRow | None:
    """Apply events in order, at consecutive positions."""
    for i, e in enumerate(events):
        row = apply(row, e, first_seq + i)
    return row


def leased(attempt: int = 1) -> JobRow:
    row = through(dispatched(), JobLeased(job_id=7, ts=T0 + 1, worker="w", attempt=attempt,
                                          lease_expires=T0 + 31))
    assert row is not None
    return row


def running() -> JobRow:
    row = through(JobStarted(job_id=7, ts=T0 + 2, attempt=1), row=leased(), first_seq=3)
    assert row is not None
    return row


def finished(state: str) -> JobRow:
    if state == "succeeded":
        event: Event = JobSucceeded(job_id=7, ts=T0 + 3, attempt=1, duration=1.0)
    elif state == "failed":
        event = JobDead(job_id=7, ts=T0 + 3, attempt=1)
    else:
        return through(JobCancelled(job_id=7, ts=T0 + 3), row=pending(), first_seq=2)  # type: ignore[return-value]
    row = through(event, row=running(), first_seq=4)
    assert row is not None and row.state == state
    return row


def pending() -> JobRow:
    row = apply(None, dispatched(), 1)
    assert row is not None
    return row


# -- each transition ---------------------------------------------------------------------------


def test_dispatched_creates_a_pending_row() -> None:
    row = apply(None, dispatched(priority=4, timeout=2.5, run_at=T0 + 60), 1)
    assert row is not None
    assert (row.id, row.name, row.queue, row.state, row.priority) == (7, "n", "q", "pending", 4)
    assert (row.run_at, row.dispatched_at, row.timeout, row.tries) == (T0 + 60, T0, 2.5, 3)
    assert row.payload == '{"x":1}'
    assert msgspec.json.decode(row.backoff) == [1.0, 2.0]
    assert (row.attempt, row.failures, row.last_seq) == (0, 0, 1)
    assert apply(None, dispatched(), 1).run_at == T0  # type: ignore[union-attr]  # ready at once


def test_events_for_an_unknown_job_create_nothing() -> None:
    for event in (JobLeased(job_id=7, ts=T0, worker="w", attempt=1, lease_expires=T0),
                  JobCancelled(job_id=7, ts=T0), JobPurged(job_id=7, ts=T0)):
        assert apply(None, event, 1) is None


def test_a_second_dispatch_of_an_existing_id_changes_nothing() -> None:
    row = pending()
    assert apply(row, dispatched(name="other"), 2) is row


def test_leased() -> None:
    row = leased()
    assert (row.state, row.attempt, row.worker, row.lease_expires) == ("leased", 1, "w", T0 + 31)
    assert row.last_seq == 2


def test_lease_extended() -> None:
    row = apply(leased(), LeaseExtended(job_id=7, ts=T0 + 5, attempt=1, lease_expires=T0 + 90), 3)
    assert row is not None and (row.state, row.lease_expires) == ("leased", T0 + 90)
    row = apply(running(), LeaseExtended(job_id=7, ts=T0 + 5, attempt=1, lease_expires=T0 + 90), 9)
    assert row is not None and (row.state, row.lease_expires) == ("running", T0 + 90)


def test_started() -> None:
    row = running()
    assert (row.state, row.started_at, row.wait, row.last_seq) == ("running", T0 + 2, 2.0, 3)


def test_started_wait_is_never_negative() -> None:
    row = through(dispatched(run_at=T0 + 10), JobLeased(job_id=7, ts=T0, worker="w", attempt=1,
                                                         lease_expires=T0 + 30),
                  JobStarted(job_id=7, ts=T0 + 1, attempt=1))
    assert row is not None and row.wait == 0.0


def test_succeeded() -> None:
    row = apply(running(), JobSucceeded(job_id=7, ts=T0 + 3, attempt=1, duration=0.5,
                                        result={"n": [1, 2]}), 4)
    assert row is not None
    assert (row.state, row.finished_at, row.duration, row.lease_expires) == (
        "succeeded", T0 + 3, 0.5, None)
    assert msgspec.json.decode(row.result) == {"n": [1, 2]}
    none = apply(running(), JobSucceeded(job_id=7, ts=T0 + 3, attempt=1, duration=0.5), 4)
    assert none is not None and none.result is None


def test_failed_records_the_error_and_keeps_the_state() -> None:
    row = apply(running(), JobFailed(job_id=7, ts=T0 + 3, attempt=1, error_type="ValueError",
                                     message="bad", traceback="tb", duration=0.25), 4)
    assert row is not None
    assert (row.state, row.failures, row.error_type, row.error, row.traceback, row.duration) == (
        "running", 1, "ValueError", "bad", "tb", 0.25)


def test_timed_out() -> None:
    row = apply(running(), JobTimedOut(job_id=7, ts=T0 + 3, attempt=1, timeout=0.2), 4)
    assert row is not None
    assert (row.failures, row.error_type, row.error, row.duration) == (
        1, "TimeoutError", "timed out after 0.2s", 0.2)


def test_lease_expired_names_the_lost_worker() -> None:
    row = apply(running(), LeaseExpired(job_id=7, ts=T0 + 40, attempt=1, worker="w"), 4)
    assert row is not None
    assert (row.failures, row.error_type) == (1, "WorkerLost")
    assert "w" in (row.error or "")


def test_a_lease_that_expired_before_its_job_started_uses_no_attempt() -> None:
    expired = LeaseExpired(job_id=7, ts=T0 + 40, attempt=1, worker="w")
    row = apply(leased(), expired, 3)
    assert row is not None
    assert (row.state, row.failures, row.worker, row.lease_expires, row.error_type) == (
        "pending", 0, None, None, None)
    assert after_lease_expired(leased(), T0 + 40) == [expired]  # no retry decision follows
    deltas = Deltas()
    deltas.add(leased(), row, expired)
    assert deltas.counts["q", "n"] == {"leased": -1, "pending": 1}
    assert not deltas.minutes  # not an attempt that ended


def test_started_wait_counts_from_dispatch_when_run_at_lies_before_it() -> None:
    row = through(dispatched(run_at=T0 - 10**6), JobLeased(job_id=7, ts=T0, worker="w",
                                                           attempt=1, lease_expires=T0 + 30),
                  JobStarted(job_id=7, ts=T0 + 1, attempt=1))
    assert row is not None and row.wait == 1.0


def test_retry_scheduled_makes_the_job_pending_again() -> None:
    failed = apply(running(), JobFailed(job_id=7, ts=T0 + 3, attempt=1, error_type="E",
                                        message="m"), 4)
    row = apply(failed, JobRetryScheduled(job_id=7, ts=T0 + 3, attempt=1, run_at=T0 + 4), 5)
    assert row is not None
    assert (row.state, row.run_at, row.worker, row.lease_expires, row.attempt, row.failures) == (
        "pending", T0 + 4, None, None, 1, 1)
    # the next lease is attempt 2
    again = apply(row, JobLeased(job_id=7, ts=T0 + 5, worker="v", attempt=2,
                                 lease_expires=T0 + 35), 6)
    assert again is not None and (again.state, again.attempt) == ("leased", 2)


def test_dead() -> None:
    row = apply(running(), JobDead(job_id=7, ts=T0 + 3, attempt=1), 4)
    assert row is not None
    assert (row.state, row.finished_at, row.lease_expires) == ("failed", T0 + 3, None)


def test_lease_released() -> None:
    row = apply(leased(), LeaseReleased(job_id=7, ts=T0 + 2, attempt=1), 3)
    assert row is not None
    assert (row.state, row.worker, row.lease_expires, row.attempt) == ("pending", None, None, 1)
    started = running()
    assert apply(started, LeaseReleased(job_id=7, ts=T0 + 3, attempt=1), 4) is started


def test_cancelled() -> None:
    row = apply(pending(), JobCancelled(job_id=7, ts=T0 + 1, reason="why"), 2)
    assert row is not None and (row.state, row.error, row.finished_at) == (
        "cancelled", "why", T0 + 1)
    for held in (leased(), running()):
        assert apply(held, JobCancelled(job_id=7, ts=T0 + 9), 9) is held


def test_a_cancel_request_marks_the_held_row_and_the_holder_cancels_it() -> None:
    for held in (leased(), running()):
        asked = apply(held, JobCancelRequested(job_id=7, ts=T0 + 5, attempt=1, reason="r"), 8)
        assert asked is not None and (asked.state, asked.cancel_requested) == (held.state, "r")
        done = apply(asked, JobCancelled(job_id=7, ts=T0 + 6, attempt=1, reason="r"), 9)
        assert done is not None and (done.state, done.error, done.finished_at,
                                     done.lease_expires) == ("cancelled", "r", T0 + 6, None)
    assert apply(pending(), JobCancelRequested(job_id=7, ts=T0, attempt=0), 2) == pending()


def test_progress_is_kept_while_running_and_cleared_by_the_next_start() -> None:
    row = apply(running(), JobProgress(job_id=7, ts=T0 + 3, attempt=1, fraction=0.4,
                                       message="4 of 10"), 5)
    assert row is not None and (row.progress, row.progress_message) == (0.4, "4 of 10")
    assert apply(leased(), JobProgress(job_id=7, ts=T0 + 3, attempt=1, fraction=0.4), 5) == (
        leased())  # not started: no progress yet
    again = through(JobFailed(job_id=7, ts=T0 + 4, attempt=1, error_type="E", message="m"),
                    JobRetryScheduled(job_id=7, ts=T0 + 4, attempt=1, run_at=T0 + 4),
                    JobLeased(job_id=7, ts=T0 + 5, worker="w", attempt=2, lease_expires=T0 + 9),
                    JobStarted(job_id=7, ts=T0 + 5, attempt=2), row=row, first_seq=6)
    assert again is not None and (again.progress, again.progress_message) == (None, None)


def test_a_requeue_forgets_the_cancel_request() -> None:
    row = through(JobCancelRequested(job_id=7, ts=T0 + 5, attempt=1, reason="r"),
                  JobCancelled(job_id=7, ts=T0 + 6, attempt=1),
                  JobRequeued(job_id=7, ts=T0 + 7), row=leased(), first_seq=3)
    assert row is not None and (row.state, row.cancel_requested) == ("pending", None)


@pytest.mark.parametrize("state", ["failed", "cancelled"])
def test_requeued(state: str) -> None:
    row = apply(finished(state), JobRequeued(job_id=7, ts=T0 + 50), 10)
    assert row is not None
    assert (row.state, row.failures, row.run_at, row.finished_at, row.worker) == (
        "pending", 0, T0 + 50, None, None)
    later = apply(finished(state), JobRequeued(job_id=7, ts=T0 + 50, run_at=T0 + 70), 10)
    assert later is not None and later.run_at == T0 + 70


def test_requeue_of_a_live_job_changes_nothing() -> None:
    for row in (pending(), leased(), running(), finished("succeeded")):
        assert apply(row, JobRequeued(job_id=7, ts=T0 + 50), 10) is row


@pytest.mark.parametrize("state", ["succeeded", "failed", "cancelled"])
def test_purged_removes_a_finished_row(state: str) -> None:
    assert apply(finished(state), JobPurged(job_id=7, ts=T0 + 60), 11) is None


def test_purge_of_a_live_job_changes_nothing() -> None:
    for row in (pending(), leased(), running()):
        assert apply(row, JobPurged(job_id=7, ts=T0 + 60), 11) is row


def test_queue_cleared_removes_a_pending_row_only() -> None:
    event = QueueCleared(job_id=7, ts=T0 + 5, queue="q")
    assert apply(pending(), event, 12) is None
    for row in (leased(), running(), finished("succeeded")):
        assert apply(row, event, 12) is row


# -- fencing: events of another attempt change nothing ----------------------------------------


def _attempt_events(attempt: int) -> list[Event]:
    return [
        LeaseExtended(job_id=7, ts=T0 + 9, attempt=attempt, lease_expires=T0 + 99),
        JobStarted(job_id=7, ts=T0 + 9, attempt=attempt),
        JobSucceeded(job_id=7, ts=T0 + 9, attempt=attempt, duration=1.0),
        JobFailed(job_id=7, ts=T0 + 9, attempt=attempt, error_type="E", message="m"),
        JobTimedOut(job_id=7, ts=T0 + 9, attempt=attempt, timeout=1.0),
        LeaseExpired(job_id=7, ts=T0 + 9, attempt=attempt),
        JobRetryScheduled(job_id=7, ts=T0 + 9, attempt=attempt, run_at=T0 + 10),
        JobDead(job_id=7, ts=T0 + 9, attempt=attempt),
        LeaseReleased(job_id=7, ts=T0 + 9, attempt=attempt),
        JobProgress(job_id=7, ts=T0 + 9, attempt=attempt, fraction=0.5, message="half"),
        JobCancelRequested(job_id=7, ts=T0 + 9, attempt=attempt, reason="stop"),
        JobCancelled(job_id=7, ts=T0 + 9, attempt=attempt, reason="stop"),
    ]


@pytest.mark.parametrize("event", _attempt_events(1) + _attempt_events(3),
                         ids=lambda e: f"{type(e).__name__}-{e.attempt}")
def test_an_outcome_of_another_attempt_changes_nothing(event: Event) -> None:
    row = through(LeaseExpired(job_id=7, ts=T0 + 40, attempt=1),
                  JobRetryScheduled(job_id=7, ts=T0 + 40, attempt=1, run_at=T0 + 40),
                  JobLeased(job_id=7, ts=T0 + 41, worker="v", attempt=2, lease_expires=T0 + 70),
                  row=leased(), first_seq=3)
    assert row is not None and (row.state, row.attempt) == ("leased", 2)
    assert apply(row, event, 20) is row
    started = apply(row, JobStarted(job_id=7, ts=T0 + 42, attempt=2), 6)
    assert started is not None and started.state == "running"
    assert apply(started, event, 20) is started


@pytest.mark.parametrize("event", _attempt_events(1), ids=lambda e: type(e).__name__)
def test_an_outcome_for_a_job_no_longer_held_changes_nothing(event: Event) -> None:
    # attempt 1's lease expired and the job waits for a retry: its late outcome is stale too
    row = through(LeaseExpired(job_id=7, ts=T0 + 40, attempt=1),
                  JobRetryScheduled(job_id=7, ts=T0 + 40, attempt=1, run_at=T0 + 60),
                  row=leased(), first_seq=3)
    assert row is not None and (row.state, row.attempt) == ("pending", 1)
    assert apply(row, event, 20) is row
    for state in ("succeeded", "failed", "cancelled"):
        done = finished(state)
        assert apply(done, event, 20) is done


@pytest.mark.parametrize("attempt", [0, 2, 5])
def test_a_lease_must_be_the_next_attempt(attempt: int) -> None:
    row = pending()
    event = JobLeased(job_id=7, ts=T0 + 1, worker="w", attempt=attempt, lease_expires=T0 + 9)
    assert apply(row, event, 2) is row
    held = leased()
    assert apply(held, JobLeased(job_id=7, ts=T0 + 1, worker="x", attempt=2,
                                 lease_expires=T0 + 9), 3) is held


def test_started_twice_changes_nothing() -> None:
    row = running()
    assert apply(row, JobStarted(job_id=7, ts=T0 + 5, attempt=1), 9) is row


def test_succeeded_without_start_changes_nothing() -> None:
    row = leased()
    assert apply(row, JobSucceeded(job_id=7, ts=T0 + 5, attempt=1, duration=1.0), 9) is row


# -- stat increments ---------------------------------------------------------------------------


def test_worker_life() -> None:
    row = apply_worker(None, WorkerStarted(ts=T0, worker="w", pid=3, queues=["a", "b"],
                                           lease=9.0))
    assert (row.name, row.pid, row.queues, row.lease, row.last_seen) == ("w", 3, "a,b", 9.0, T0)
    row = apply_worker(row, WorkerHeartbeat(ts=T0 + 3, worker="w", done=5))
    assert (row.last_seen, row.done, row.stopped_at) == (T0 + 3, 5, None)
    row = apply_worker(row, WorkerStopped(ts=T0 + 4, worker="w", done=6))
    assert (row.last_seen, row.done, row.stopped_at) == (T0 + 4, 6, T0 + 4)
    assert apply_worker(row, WorkerHeartbeat(ts=T0 + 5, worker="w", done=7)) == row


def test_worker_events_change_no_job() -> None:
    assert apply(None, WorkerStarted(ts=T0, worker="w"), 1) is None
    assert through(dispatched(job_id=1), WorkerHeartbeat(ts=T0, worker="w")) == through(
        dispatched(job_id=1))


def test_deltas_count_state_changes_and_outcomes() -> None:
    deltas = Deltas()
    row: JobRow | None = None
    events: list[Event] = [
        dispatched(),
        JobLeased(job_id=7, ts=T0 + 1, worker="w", attempt=1, lease_expires=T0 + 30),
        JobStarted(job_id=7, ts=T0 + 3, attempt=1),
        JobFailed(job_id=7, ts=T0 + 4, attempt=1, error_type="E", message="m"),
        JobRetryScheduled(job_id=7, ts=T0 + 4, attempt=1, run_at=T0 + 5),
        JobSucceeded(job_id=7, ts=T0 + 4, attempt=1, duration=9.0),  # stale: not counted
        JobLeased(job_id=7, ts=T0 + 6, worker="w", attempt=2, lease_expires=T0 + 30),
        JobStarted(job_id=7, ts=T0 + 7, attempt=2),
        JobSucceeded(job_id=7, ts=T0 + 8, attempt=2, duration=1.0),
    ]
    for seq, event in enumerate(events, 1):
        new = apply(row, event, seq)
        deltas.add(row, new, event)
        row = new
    t = deltas.counts["q", "n"]
    assert {s: t[s] for s in ("pending", "leased", "running", "succeeded")} == {
        "pending": 0, "leased": 0, "running": 0, "succeeded": 1}
    assert (t["dispatched"], t["started"], t["successes"], t["failures"], t["retried"]) == (
        1, 2, 1, 1, 1)
    assert t["total_duration"] == 1.0
    assert t["total_wait"] == pytest.approx(3.0 + 2.0)


def test_deltas_ignore_an_event_that_changed_nothing() -> None:
    deltas = Deltas()
    row = running()
    deltas.add(row, row, JobSucceeded(job_id=7, ts=T0, attempt=9, duration=1.0))
    assert not deltas


# -- the invariant: rebuilding from the log gives the live projections ------------------------

QUEUES = ("a", "b")
LEASE = 30.0

# operation kinds, repeated to weight them: workers' steps are the most frequent
KINDS = (["dispatch"] * 4 + ["claim"] * 4 + ["start"] * 4 + ["succeed"] * 2 + ["fail"] * 2
         + ["timeout", "release", "extend", "expire", "expire", "stale", "stale", "late",
            "cancel", "requeue", "purge", "clear", "retry_all", "flush_failed", "life", "life",
            "schedule", "schedule", "progress", "cancel_held", "cancel_held"])


class Op(NamedTuple):
    """One operation; each kind uses the arguments it needs."""

    kind: str
    index: int = 0  # which job (among those in the state the operation needs)
    queue: str = "a"
    tries: int = 1
    limit: int = 1  # claim: how many jobs at most
    priority: int = 0
    delay: float = 0.0  # dispatch: run_at - ts
    backoff: tuple[float, ...] = ()
    ahead: float = 0.0  # claim, expire: how far the clock moves first
    which: int = 0  # stale, late: which outcome event
    offset: int = -1  # stale: attempt offset from the row's


def _op(kind: str) -> st.SearchStrategy[Op]:
    return st.builds(Op, kind=st.just(kind), index=st.integers(0, 50),
                     queue=st.sampled_from(QUEUES), tries=st.integers(1, 3),
                     limit=st.integers(1, 3),
                     priority=st.integers(-1, 2), delay=st.sampled_from([0.0, 0.0, 5.0, 50.0]),
                     backoff=st.sampled_from([(), (0.0,), (1.0, 10.0)]),
                     ahead=st.floats(0, 100), which=st.integers(0, 11),
                     offset=st.sampled_from([-1, 1]))


ops = st.sampled_from(KINDS).flatmap(_op)
operations = st.tuples(st.lists(_op("dispatch"), min_size=1, max_size=6),
                       st.lists(ops, min_size=20, max_size=60)).map(lambda t: t[0] + t[1])


class Driver:
    """Applies operations to a store as workers and operators would, on a logical clock."""

    def __init__(self, queue: evq.Queue) -> None:
        self.q = queue
        self.store = queue.store
        self.now = T0
        self.workers = 0

    def tick(self, seconds: float = 0.5) -> float:
        self.now += seconds
        return self.now

    def do(self, op: Op) -> None:
        getattr(self, "op_" + op.kind)(op)

    def op_dispatch(self, op: Op) -> None:
        now = self.tick()
        self.store.append([JobDispatched(
            ts=now, name=f"job-{op.queue}", queue=op.queue, payload=msgspec.Raw(b"{}"),
            priority=op.priority, run_at=now + op.delay, tries=op.tries,
            backoff=list(op.backoff))])

    def op_claim(self, op: Op) -> None:
        now = self.tick(op.ahead)
        self.workers += 1
        worker = f"w{self.workers}"
        self.store.claim([op.queue], now, op.limit, lambda r: [JobLeased(
            job_id=r.id, ts=now, worker=worker, attempt=r.attempt + 1,
            lease_expires=now + LEASE)])

    def _held(self, index: int, *states: str) -> JobRow | None:
        """One of the jobs in ``states``, chosen by ``index`` (None if there is none)."""
        rows = self.store.tables.find(states=states, limit=10_000)
        return rows[index % len(rows)] if rows else None

    def op_start(self, op: Op) -> None:
        if row := self._held(op.index, "leased"):
            self.store.append([JobStarted(job_id=row.id, ts=self.tick(), attempt=row.attempt,
                                          worker=row.worker or "")])

    def op_succeed(self, op: Op) -> None:
        if row := self._held(op.index, "running"):
            now = self.tick()
            self.store.append([JobSucceeded(job_id=row.id, ts=now, attempt=row.attempt,
                                            duration=now - (row.started_at or now),
                                            result={"id": row.id})])

    def op_fail(self, op: Op) -> None:
        if row := self._held(op.index, "running"):
            now = self.tick()
            self.store.append([JobFailed(job_id=row.id, ts=now, attempt=row.attempt,
                                         error_type="ValueError", message="no", duration=0.1),
                               after_failure(row, now)])

    def op_timeout(self, op: Op) -> None:
        if row := self._held(op.index, "running"):
            now = self.tick()
            self.store.append([JobTimedOut(job_id=row.id, ts=now, attempt=row.attempt,
                                           timeout=0.5), after_failure(row, now)])

    def op_release(self, op: Op) -> None:
        if row := self._held(op.index, "leased"):
            self.store.append([LeaseReleased(job_id=row.id, ts=self.tick(),
                                             attempt=row.attempt)])

    def op_extend(self, op: Op) -> None:
        if row := self._held(op.index, "leased", "running"):
            now = self.tick()
            self.store.append([LeaseExtended(job_id=row.id, ts=now, attempt=row.attempt,
                                             lease_expires=now + LEASE)])

    def op_expire(self, op: Op) -> None:
        now = self.tick(op.ahead)
        self.store.settle_expired(now, lambda row: after_lease_expired(row, now))

    def op_cancel(self, op: Op) -> None:
        if row := self._held(op.index, "pending"):
            self.q.cancel(row.id, reason="hypothesis")

    def op_progress(self, op: Op) -> None:
        if row := self._held(op.index, "running"):
            self.store.append([JobProgress(job_id=row.id, ts=self.tick(), attempt=row.attempt,
                                           fraction=0.5, message=f"{op.index}")])

    def op_cancel_held(self, op: Op) -> None:
        """A cancel request, and the holder's stop (which may come or not)."""
        if row := self._held(op.index, "leased", "running"):
            self.q.cancel(row.id, reason="stop")
            if op.which % 2:
                self.store.append([JobCancelled(job_id=row.id, ts=self.tick(),
                                                attempt=row.attempt, reason="stop")])

    def op_requeue(self, op: Op) -> None:
        if row := self._held(op.index, "failed", "cancelled"):
            self.q.retry(row.id)

    def op_purge(self, op: Op) -> None:
        if row := self._held(op.index, "succeeded", "failed", "cancelled"):
            self.q.forget(row.id)

    def op_clear(self, op: Op) -> None:
        self.q.clear(op.queue)

    def op_retry_all(self, op: Op) -> None:
        self.q.retry_all()

    def op_flush_failed(self, op: Op) -> None:
        self.q.flush_failed()

    def op_life(self, op: Op) -> None:
        """A worker's start, heartbeat or stop (in any order: a heartbeat may come first)."""
        name, now = f"w{op.index % 3}", self.tick()
        event = (WorkerStarted(ts=now, worker=name, pid=op.index, queues=[op.queue]),
                 WorkerHeartbeat(ts=now, worker=name, done=op.index),
                 WorkerStopped(ts=now, worker=name, done=op.index))[op.which % 3]
        self.store.append([event])

    def op_schedule(self, op: Op) -> None:
        """A schedule's tick (a tick not later than the schedule's last is refused), or a
        manual run."""
        now = self.tick()
        tick = ScheduleTicked(ts=now, schedule=f"s{op.index % 2}", tick=60.0 * (op.index % 7),
                              skipped=op.which, manual=op.offset > 0 and op.which % 3 == 0)
        self.store.tick(tick, JobDispatched(ts=now, name="job-s", queue=op.queue,
                                            payload=msgspec.Raw(b"{}")))

    def _outcome(self, row: JobRow, which: int, attempt: int) -> Event:
        event = _attempt_events(attempt)[which]
        return msgspec.structs.replace(event, job_id=row.id, ts=self.tick())

    def op_stale(self, op: Op) -> None:
        """An outcome reported under another lease than the row's (older or newer)."""
        row = self._held(op.index, "leased", "running", "pending", "succeeded", "failed")
        if row is not None:
            self.store.append([self._outcome(row, op.which, row.attempt + op.offset)])

    def op_late(self, op: Op) -> None:
        """An outcome of the current attempt arriving after the lease was settled."""
        row = self._held(op.index, "pending", "succeeded", "failed", "cancelled")
        if row is not None and row.attempt:
            self.store.append([self._outcome(row, op.which, row.attempt)])


def _counts_by_state(store: Store) -> dict[tuple[str, str], int]:
    rows = store.log.read_rows("SELECT queue, state, count(*) FROM jobs GROUP BY queue, state")
    return {(q, s): n for q, s, n in rows}


def _stat_counts(store: Store) -> dict[tuple[str, str], int]:
    out = {}
    for c in store.tables.queue_counts():
        for state, n in msgspec.structs.asdict(c).items():
            if state != "queue" and n:
                out[(c.queue, state)] = n
    return out


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
@settings(max_examples=60, deadline=None)
@given(steps=operations)
def test_rebuild_gives_the_live_projections(kind: str, steps: list[Op]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        url = "memory://" if kind == "memory" else f"sqlite:///{folder}/evq.db"
        q = evq.connect(url)
        aside = open_store("memory://")
        try:
            driver = Driver(q)
            for step in steps:
                driver.do(step)
            store = q.store
            assert store.verify() == []
            assert store.rebuild(into=aside) == store.log.last_seq()
            assert store.differences(aside) == []
            assert aside.tables.dump()[0] == store.tables.dump()[0]  # job rows: exactly
            assert aside.workers.all() == store.workers.all()
            assert aside.schedules.all() == store.schedules.all()
            # the per-queue counters agree with the rows they count
            assert _stat_counts(store) == _counts_by_state(store)
            dispatched_per_name = Counter(
                r.event.name for r in store.log.read(types=["JobDispatched"]))
            assert {t.name: t.dispatched for t in store.tables.type_stats()} == dict(
                dispatched_per_name)
        finally:
            aside.close()
            q.close()
