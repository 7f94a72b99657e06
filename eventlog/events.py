"""The event types: one frozen msgspec Struct per state change, in one tagged union.

Each type's tag is its stable public name (``"JobDispatched"``...), never an import path, so a
rename of a class cannot orphan stored events. Fields added later must have defaults, so that
every event ever written stays decodable.

The comment on each type names the transition it makes in the ``jobs`` projection.
"""

from __future__ import annotations

from typing import Any

import msgspec


class Event(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    """Base of every event: which job it concerns and when it happened (unix seconds).

    A job's id is the position (``seq``) of its ``JobDispatched`` event: ids are integers in
    dispatch order. A ``JobDispatched`` appended with ``job_id`` 0 takes its own position.
    """

    ts: float
    job_id: int = 0


class Limits(msgspec.Struct, frozen=True, kw_only=True):
    """The limits of a job's key: at most ``rate`` jobs of ``key`` start in any ``per``
    seconds, and at most ``concurrency`` are leased or running at once (0: no such limit)."""

    key: str
    rate: int = 0
    per: float = 0.0
    concurrency: int = 0


class JobDispatched(Event, frozen=True, tag="JobDispatched"):
    """(none) -> pending: a new job; ``run_at`` later than ``ts`` makes it delayed.

    ``unique_key`` (with ``unique_for``): no other job of that key is dispatched while this one
    is unfinished, nor within ``unique_for`` seconds of ``ts``. ``limits``: see :class:`Limits`.
    """

    name: str
    queue: str
    payload: msgspec.Raw
    priority: int = 0
    run_at: float = 0.0
    tries: int = 1
    backoff: list[float] = []
    jitter: float = 0.0  # each retry's wait moves by up to this fraction of it, either way
    timeout: float | None = None
    chain_id: str | None = None
    batch_id: str | None = None
    unique_key: str | None = None
    replay_of: str | None = None
    unique_for: float | None = None
    limits: Limits | None = None
    meta: dict[str, str] = {}  # e.g. the dispatcher's trace context (W3C traceparent)
    workflow_id: str | None = None  # a workflow's (or chain's) job: the group's id
    after: list[int] = []  # jobs that must succeed first: until then it waits (state waiting)
    after_finished: list[int] = []  # jobs that must finish first, whatever their outcome
    callback_of: str | None = None  # a group's callback job: "<group id>:<success|failure|finally>"


class JobReleased(Event, frozen=True, tag="JobReleased"):
    """waiting -> pending: every job it waited for has finished as it needed."""


class JobLeased(Event, frozen=True, tag="JobLeased"):
    """pending -> leased: ``worker`` holds lease number ``attempt`` until ``lease_expires``."""

    worker: str
    attempt: int
    lease_expires: float


class LeaseExtended(Event, frozen=True, tag="LeaseExtended"):
    """leased/running -> same: a live worker's heartbeat moves the lease expiry."""

    attempt: int
    lease_expires: float


class JobStarted(Event, frozen=True, tag="JobStarted"):
    """leased -> running."""

    attempt: int
    worker: str = ""


class JobSucceeded(Event, frozen=True, tag="JobSucceeded"):
    """running -> succeeded; ``duration`` in seconds."""

    attempt: int
    duration: float
    result: Any = None


class JobFailed(Event, frozen=True, tag="JobFailed"):
    """running -> running (error recorded); a retry or dead event follows in the same commit."""

    attempt: int
    error_type: str
    message: str
    traceback: str = ""
    duration: float = 0.0


class JobTimedOut(Event, frozen=True, tag="JobTimedOut"):
    """running -> running (timeout recorded); a retry or dead event follows in the same commit."""

    attempt: int
    timeout: float


class LeaseExpired(Event, frozen=True, tag="LeaseExpired"):
    """leased/running -> (lost attempt recorded): the holder stopped extending its lease;
    a retry or dead event follows in the same commit."""

    attempt: int
    worker: str = ""


class JobRetryScheduled(Event, frozen=True, tag="JobRetryScheduled"):
    """(failed attempt) -> pending, claimable from ``run_at``."""

    attempt: int
    run_at: float


class JobDead(Event, frozen=True, tag="JobDead"):
    """(failed attempt) -> failed: retries exhausted, ``failed()`` ran."""

    attempt: int


class LeaseReleased(Event, frozen=True, tag="LeaseReleased"):
    """leased -> pending: a stopping worker gives back a job it had not started."""

    attempt: int


class JobHeld(Event, frozen=True, tag="JobHeld"):
    """pending -> pending, claimable from ``run_at``: a claim found the job's rate limit used
    up (``reason``) and put it off until a slot frees."""

    run_at: float
    reason: str = ""


class JobCancelled(Event, frozen=True, tag="JobCancelled"):
    """pending/waiting -> cancelled (``attempt`` 0; a waiting job: a job it waited for failed);
    leased/running -> cancelled: the holder of lease ``attempt`` stopped the job on a cancel
    request (a stale attempt changes nothing)."""

    reason: str = ""
    attempt: int = 0
    by: str = ""  # the operator who cancelled it, if one did


class JobCancelRequested(Event, frozen=True, tag="JobCancelRequested"):
    """leased/running -> same, ``cancel_requested`` set: an operator asked the holder of lease
    ``attempt`` to stop the job; the holder ends it with ``JobCancelled``."""

    attempt: int
    reason: str = ""
    by: str = ""  # the operator who asked, if one did


class JobProgress(Event, frozen=True, tag="JobProgress"):
    """running -> running, ``progress`` and ``progress_message`` set: the job's own report
    (``self.progress()``) during attempt ``attempt``; ``fraction`` from 0 to 1."""

    attempt: int
    fraction: float
    message: str = ""


class JobRequeued(Event, frozen=True, tag="JobRequeued"):
    """failed/cancelled -> pending: an operator's retry; the failure count starts again."""

    run_at: float = 0.0
    by: str = ""  # the operator, and why
    reason: str = ""


class JobPurged(Event, frozen=True, tag="JobPurged"):
    """any finished state -> (row removed); the events stay in the log."""

    by: str = ""  # the operator, and why
    reason: str = ""


class QueueCleared(Event, frozen=True, tag="QueueCleared"):
    """pending -> (row removed): the job went with ``evq clear`` of its queue."""

    queue: str
    by: str = ""  # the operator, and why
    reason: str = ""


class Callback(msgspec.Struct, frozen=True, kw_only=True):
    """A job that a group dispatches when it ends: ``on`` success, failure or finally."""

    on: str
    name: str
    queue: str
    payload: msgspec.Raw
    priority: int = 0
    tries: int = 1
    backoff: list[float] = []
    timeout: float | None = None
    limits: Limits | None = None


class GroupCreated(Event, frozen=True):
    """Base of the events that start a group of jobs (a batch, a workflow or a chain); they
    concern no job (``job_id`` stays 0): the group's id is the event's position. Its jobs are
    dispatched after it, in the same commit, naming it."""

    total: int
    name: str = ""
    callbacks: list[Callback] = []


class BatchCreated(GroupCreated, frozen=True, tag="BatchCreated"):
    """(none) -> batch running: ``total`` jobs run in parallel; without ``allow_failures`` the
    first failed job fails the batch (the others still run)."""

    allow_failures: bool = False


class WorkflowCreated(GroupCreated, frozen=True, tag="WorkflowCreated"):
    """(none) -> workflow running: ``total`` jobs, each waiting for the jobs it depends on
    (``kind`` "chain": one after another)."""

    kind: str = "workflow"


class WorkerEvent(Event, frozen=True):
    """Base of the events of a worker's life; they concern no job (``job_id`` stays 0) and
    change only the ``workers`` projection."""

    worker: str


class WorkerStarted(WorkerEvent, frozen=True, tag="WorkerStarted"):
    """(none) -> alive: a worker began; silent for longer than ``lease``, it counts as lost."""

    host: str = ""
    pid: int = 0
    queues: list[str] = []
    concurrency: int = 1
    pool: str = "thread"
    lease: float = 30.0
    names: list[str] = []  # the job types it runs (it claims no other); a scheduler's: its
    # schedules
    kind: str = "worker"  # or "scheduler" (``evq schedule``): listed apart, not a worker


class WorkerHeartbeat(WorkerEvent, frozen=True, tag="WorkerHeartbeat"):
    """alive -> alive: the worker is still there (one per heartbeat interval, not per job);
    ``done``: attempts it finished so far."""

    done: int = 0


class WorkerStopped(WorkerEvent, frozen=True, tag="WorkerStopped"):
    """alive -> stopped: the worker stopped gracefully (a worker that dies writes nothing)."""

    done: int = 0


class ScheduleTicked(Event, frozen=True, tag="ScheduleTicked"):
    """schedule: last tick -> ``tick``: the schedule dispatched the job ``job_id`` (its
    ``JobDispatched`` comes first, in the same commit) for its cron tick at ``tick`` (unix
    seconds), ``skipped`` ticks after the previous one having gone undispatched (missed while no
    scheduler ran). ``manual``: ``evq schedule run`` (``tick`` is then the time of the request,
    and the schedule's last tick stays as it was)."""

    schedule: str
    tick: float
    skipped: int = 0
    manual: bool = False
    scheduler: str = ""


AnyEvent = (
    JobDispatched
    | JobLeased
    | LeaseExtended
    | JobStarted
    | JobSucceeded
    | JobFailed
    | JobTimedOut
    | LeaseExpired
    | JobRetryScheduled
    | JobDead
    | LeaseReleased
    | JobHeld
    | JobCancelled
    | JobCancelRequested
    | JobProgress
    | JobReleased
    | JobRequeued
    | JobPurged
    | QueueCleared
    | BatchCreated
    | WorkflowCreated
    | WorkerStarted
    | WorkerHeartbeat
    | WorkerStopped
    | ScheduleTicked
)

EVENT_TYPES: dict[str, type[Event]] = {
    t.__struct_config__.tag: t  # type: ignore[misc]
    for t in AnyEvent.__args__  # type: ignore[attr-defined]
}
