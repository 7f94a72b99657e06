"""The state transitions: the only place that says what each event does to the projections.

``apply(row, event, seq)`` is pure: the job's row before (or None) and one event give the row after
(or None when the row is removed). An event that does not fit the row's state, such as an outcome
reported under a stale lease (its ``attempt`` is not the row's), returns the row unchanged: it stays
in the log as a record, but changes nothing. The live path (append) and the replay path (rebuild)
both go through here, so they cannot disagree.
"""

from __future__ import annotations

from collections import defaultdict

import msgspec
from msgspec.structs import replace

from evq.eventlog.events import (
    BatchCreated,
    Event,
    GroupCreated,
    JobCancelled,
    JobCancelRequested,
    JobDead,
    JobDispatched,
    JobFailed,
    JobHeld,
    JobLeased,
    JobProgress,
    JobPurged,
    JobReleased,
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
    WorkerEvent,
    WorkerHeartbeat,
    WorkerStarted,
    WorkerStopped,
    WorkflowCreated,
)

from .model import (
    CANCELLED,
    FAILED,
    FINISHED,
    HELD,
    LEASED,
    PENDING,
    RUNNING,
    SUCCEEDED,
    WAITING,
    GroupRow,
    JobRow,
    ScheduleRow,
    UniqueRow,
    WorkerRow,
)


def json_text(value: object) -> str:
    return msgspec.json.encode(value).decode()


def apply(row: JobRow | None, event: Event, seq: int) -> JobRow | None:
    """The row after ``event`` (at log position ``seq``); ``row`` itself if nothing changes."""
    if row is None:
        if isinstance(event, JobDispatched):
            return _dispatched(event, seq)
        return None
    new = _transition(row, event)
    if new is None:
        return row
    return None if new is _REMOVED else replace(new, last_seq=seq)


_REMOVED = JobRow(0, "", "", "", 0, 0.0, "", 0, "", None, 0.0)


def _dispatched(e: JobDispatched, seq: int) -> JobRow:
    after = [[i, False] for i in e.after] + [[i, True] for i in e.after_finished]
    limits = e.limits
    return JobRow(
        id=e.job_id, name=e.name, queue=e.queue, state=WAITING if after else PENDING,
        priority=e.priority,
        run_at=e.run_at or e.ts, payload=bytes(e.payload).decode(), tries=e.tries,
        backoff=json_text(e.backoff), jitter=e.jitter, timeout=e.timeout, dispatched_at=e.ts,
        chain_id=e.chain_id, batch_id=e.batch_id, unique_key=e.unique_key,
        replay_of=e.replay_of, workflow_id=e.workflow_id, after=json_text(after) if after else None,
        callback_of=e.callback_of, meta=json_text(e.meta) if e.meta else None, last_seq=seq,
        **({} if limits is None else {
            "limit_key": limits.key, "rate_limit": limits.rate or None,
            "rate_per": limits.per or None, "concurrency_limit": limits.concurrency or None}),
    )


def _transition(row: JobRow, event: Event) -> JobRow | None:
    """The changed row, ``_REMOVED``, or None for no change."""
    held = row.state in HELD and getattr(event, "attempt", None) == row.attempt
    match event:
        case JobLeased() if row.state == PENDING and event.attempt == row.attempt + 1:
            return replace(row, state=LEASED, attempt=event.attempt, worker=event.worker,
                           lease_expires=event.lease_expires)
        case LeaseExtended() if held:
            return replace(row, lease_expires=event.lease_expires)
        case JobStarted() if held and row.state == LEASED:
            # ready from its run_at, or from its dispatch if it was dispatched "at" a past time
            ready = max(row.run_at, row.dispatched_at)
            return replace(row, state=RUNNING, started_at=event.ts,
                           wait=max(0.0, event.ts - ready), finished_at=None, progress=None,
                           progress_message=None)
        case JobProgress() if held and row.state == RUNNING:
            return replace(row, progress=event.fraction, progress_message=event.message)
        case JobSucceeded() if held and row.state == RUNNING:
            result = None if event.result is None else json_text(event.result)
            return replace(row, state=SUCCEEDED, finished_at=event.ts, duration=event.duration,
                           result=result, lease_expires=None)
        case JobFailed() if held:
            return replace(row, failures=row.failures + 1, error_type=event.error_type,
                           error=event.message, traceback=event.traceback,
                           duration=event.duration)
        case JobTimedOut() if held:
            return replace(row, failures=row.failures + 1, error_type="TimeoutError",
                           error=f"timed out after {event.timeout:g}s", traceback=None,
                           duration=event.timeout)
        case LeaseExpired() if held and row.state == LEASED:
            # leased but never started: no attempt was made, so none is used up (the next lease
            # still takes a new attempt number, which fences this one)
            return replace(row, state=PENDING, worker=None, lease_expires=None)
        case LeaseExpired() if held:
            return replace(row, failures=row.failures + 1, error_type="WorkerLost",
                           error=f"worker {row.worker} stopped renewing its lease",
                           traceback=None)
        case JobRetryScheduled() if held:
            return replace(row, state=PENDING, run_at=event.run_at, worker=None,
                           lease_expires=None)
        case JobDead() if held:
            return replace(row, state=FAILED, finished_at=event.ts, lease_expires=None)
        case LeaseReleased() if held and row.state == LEASED:
            return replace(row, state=PENDING, worker=None, lease_expires=None)
        case JobHeld() if row.state == PENDING:
            return replace(row, run_at=event.run_at)
        case JobCancelRequested() if held:
            return replace(row, cancel_requested=event.reason)
        case JobCancelled() if (row.state in (PENDING, WAITING) and not event.attempt) or held:
            return replace(row, state=CANCELLED, finished_at=event.ts, error=event.reason or None,
                           lease_expires=None)
        case JobReleased() if row.state == WAITING:
            return replace(row, state=PENDING, run_at=max(row.run_at, event.ts))
        case JobRequeued() if row.state in (FAILED, CANCELLED):
            return replace(row, state=PENDING, run_at=event.run_at or event.ts, failures=0,
                           worker=None, finished_at=None, cancel_requested=None)
        case JobPurged() if row.state in FINISHED:
            return _REMOVED
        case QueueCleared() if row.state == PENDING:
            return _REMOVED
    return None


def apply_worker(row: WorkerRow | None, event: WorkerEvent) -> WorkerRow:
    """The ``workers`` row of ``event.worker`` after one event of its life."""
    match event:
        case WorkerStarted():
            return WorkerRow(name=event.worker, host=event.host, pid=event.pid,
                             queues=",".join(event.queues), concurrency=event.concurrency,
                             pool=event.pool, lease=event.lease, started_at=event.ts,
                             last_seen=event.ts, names=",".join(event.names), kind=event.kind)
    row = row or WorkerRow(name=event.worker, started_at=event.ts, last_seen=event.ts)
    match event:
        case WorkerHeartbeat() if row.stopped_at is None:
            return replace(row, last_seen=max(row.last_seen, event.ts), done=event.done)
        case WorkerStopped():
            return replace(row, last_seen=max(row.last_seen, event.ts), stopped_at=event.ts,
                           done=event.done)
    return row


def apply_schedule(row: ScheduleRow | None, event: ScheduleTicked) -> ScheduleRow:
    """The ``schedules`` row of ``event.schedule`` after one of its dispatches."""
    row = row or ScheduleRow(name=event.schedule)
    if event.manual:
        return replace(row, last_job=event.job_id, last_at=event.ts,
                       triggered=row.triggered + 1)
    last = event.tick if row.last_tick is None else max(row.last_tick, event.tick)
    return replace(row, last_tick=last,
                   last_job=event.job_id, last_at=event.ts, ticks=row.ticks + 1,
                   skipped=row.skipped + event.skipped)


def group_created(event: GroupCreated, seq: int) -> GroupRow:
    """The ``groups`` row of a new batch or workflow (its id: the event's position)."""
    return GroupRow(
        id=seq, kind=event.kind if isinstance(event, WorkflowCreated) else "batch",
        name=event.name, total=event.total, created_at=event.ts, updated_at=event.ts,
        allow_failures=int(isinstance(event, BatchCreated) and event.allow_failures),
        callbacks=json_text(event.callbacks))


def apply_group(row: GroupRow, delta: dict[str, float]) -> GroupRow:
    """A group's row after its jobs' changes in ``delta`` (from :class:`Deltas`): how many
    ended how, the callbacks dispatched, and ``ts``, the latest time of those changes."""
    counts = {f: int(getattr(row, f) + delta.get(f, 0)) for f in _GROUP_TOTALS}
    new = replace(row, **counts)
    if "ts" in delta:
        updated = max(row.updated_at, delta["ts"])
        new = replace(new, updated_at=updated,
                      finished_at=updated if new.pending <= 0 else None)
    return new


_GROUP_TOTALS = ("succeeded", "failed", "cancelled", "fired_success", "fired_failure",
                 "fired_finally")


def group_of(row: JobRow) -> int | None:
    """The id of the batch or workflow ``row``'s job belongs to, if any."""
    gid = row.batch_id or row.workflow_id
    return int(gid) if gid is not None and gid.isdigit() else None


# The totals of ``counts`` that an event adds one to, when it changes its job's row.
_TOTALS: dict[type[Event], tuple[str, ...]] = {
    JobDispatched: ("dispatched",),
    JobStarted: ("started",),
    JobSucceeded: ("successes",),
    JobFailed: ("failures",),
    JobTimedOut: ("failures", "timed_out"),
    LeaseExpired: ("failures",),
    JobRetryScheduled: ("retried",),
    JobDead: ("dead",),
}


# The totals of ``counts`` that are also kept per minute (``minutes``): how attempts ended.
_PER_MINUTE = ("successes", "failures", "timed_out")


class Deltas:
    """Increments of the ``counts`` and ``minutes`` tables, and the rows of ``uniques`` set
    and removed (with the job that held the key), gathered over the events of one
    transaction."""

    def __init__(self) -> None:
        self.uniques: dict[str, UniqueRow] = {}
        self.unique_gone: list[tuple[str, int]] = []
        self.counts: defaultdict[tuple[str, str], defaultdict[str, float]] = defaultdict(
            lambda: defaultdict(int))
        self.minutes: defaultdict[tuple[int, str, str], defaultdict[str, float]] = defaultdict(
            lambda: defaultdict(int))
        self.groups: defaultdict[int, dict[str, float]] = defaultdict(dict)
        self.waiting = False  # a job began or stopped waiting for others

    def add(self, old: JobRow | None, new: JobRow | None, event: Event) -> None:
        """Count the effect of one applied event (``new is old``: it changed nothing)."""
        if new is old:
            return
        row = new or old
        assert row is not None
        self._group(old, new, event)
        if WAITING in (old and old.state, new and new.state):
            self.waiting = True
        c = self.counts[row.queue, row.name]
        if old is None or new is None or old.state != new.state:
            if old is not None:
                c[old.state] -= 1
            if new is not None:
                c[new.state] += 1
        totals = _TOTALS.get(type(event), ())
        if type(event) is LeaseExpired and old is not None and old.state != RUNNING:
            totals = ()  # a lease lost before its job started is not a failed attempt
        for total in totals:
            c[total] += 1
        if new is None and row.unique_key is not None:  # purged: its key goes with it
            self.unique_gone.append((row.unique_key, row.id))
        if isinstance(event, JobDispatched) and event.unique_key is not None:
            until = event.ts + (event.unique_for or 0.0)
            self.uniques[event.unique_key] = UniqueRow(event.unique_key, row.id, until)
        if type(event) is JobStarted:
            c["total_wait"] += row.wait or 0.0
        elif type(event) is JobSucceeded:
            c["total_duration"] += event.duration  # type: ignore[attr-defined]
        per_minute = [t for t in totals if t in _PER_MINUTE]
        if per_minute:
            m = self.minutes[int(event.ts // 60) * 60, row.queue, row.name]
            for total in per_minute:
                m[total] += 1
            if type(event) is JobSucceeded:
                m["total_duration"] += event.duration  # type: ignore[attr-defined]

    def _group(self, old: JobRow | None, new: JobRow | None, event: Event) -> None:
        """Count a job's end (or its retry after an end) in its group, and a callback job's
        dispatch in the group it is the callback of."""
        if old is None and new is not None and new.callback_of:
            of, _, on = new.callback_of.partition(":")
            if of.isdigit() and on in ("success", "failure", "finally"):
                fired = self.groups[int(of)]
                fired[f"fired_{on}"] = fired.get(f"fired_{on}", 0) + 1
        if old is None or new is None:
            return
        gid = group_of(new)
        if gid is None:
            return
        was, now = old.state in FINISHED, new.state in FINISHED
        if was == now:
            return
        g = self.groups[gid]
        state = new.state if now else old.state
        g[state] = g.get(state, 0) + (1 if now else -1)
        g["ts"] = max(g.get("ts", 0.0), event.ts)

    def __bool__(self) -> bool:
        return bool(self.counts or self.groups)
