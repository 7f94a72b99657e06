"""The rows of the projection tables: one struct per table, the columns in field order."""

from __future__ import annotations

import msgspec

# Job states in the ``jobs`` table. "delayed" is not a state of its own: it is a pending job whose
# run_at lies in the future, so it becomes ready by the passing of time without an event.
PENDING = "pending"
LEASED = "leased"
RUNNING = "running"
SUCCEEDED = "succeeded"
FAILED = "failed"
CANCELLED = "cancelled"
WAITING = "waiting"  # a workflow's job whose dependencies have not finished yet
STATES = (PENDING, LEASED, RUNNING, SUCCEEDED, FAILED, CANCELLED, WAITING)
HELD = (LEASED, RUNNING)  # states in which a worker holds a lease
FINISHED = (SUCCEEDED, FAILED, CANCELLED)


class JobRow(msgspec.Struct, frozen=True):
    """One job's current state, as the ``jobs`` table stores it."""

    id: int  # the seq of the job's JobDispatched event
    name: str
    queue: str
    state: str
    priority: int
    run_at: float
    payload: str  # the job's arguments as a JSON object
    tries: int
    backoff: str  # JSON list of seconds
    timeout: float | None
    dispatched_at: float
    attempt: int = 0  # number of the latest lease: the fencing token
    failures: int = 0  # failed attempts since dispatch or the last requeue
    worker: str | None = None
    lease_expires: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    wait: float | None = None  # seconds from run_at to the start of the latest attempt
    duration: float | None = None  # seconds the latest attempt ran
    error_type: str | None = None
    error: str | None = None
    traceback: str | None = None
    result: str | None = None
    chain_id: str | None = None
    batch_id: str | None = None
    unique_key: str | None = None
    replay_of: str | None = None
    workflow_id: str | None = None
    after: str | None = None  # JSON [[job id, ignore its failure], ...]: what it waits for
    callback_of: str | None = None  # "<group id>:<on>" for a group's callback job
    limit_key: str | None = None  # the key whose limits the job shares with others
    rate_limit: int | None = None  # at most this many jobs of limit_key start...
    rate_per: float | None = None  # ...in any window of this many seconds
    concurrency_limit: int | None = None  # at most this many leased or running at once
    cancel_requested: str | None = None  # the reason of a pending cancel request ("" for none)
    progress: float | None = None  # the running attempt's latest report, 0 to 1
    progress_message: str | None = None
    jitter: float = 0.0  # of the backoff: each retry's wait moves by up to this fraction
    meta: str | None = None  # JSON object of JobDispatched.meta (the trace context), if any
    last_seq: int = 0


class QueueCounts(msgspec.Struct):
    """The ``queue_stats`` view: how many jobs of one queue are in each state."""

    queue: str
    pending: int = 0
    leased: int = 0
    running: int = 0
    succeeded: int = 0
    failed: int = 0
    cancelled: int = 0
    waiting: int = 0


class JobTypeStats(msgspec.Struct):
    """The ``job_type_stats`` view: running totals per job name."""

    name: str
    dispatched: int = 0
    started: int = 0
    succeeded: int = 0
    failures: int = 0  # failed attempts, timeouts and lost workers included
    timed_out: int = 0
    retried: int = 0
    dead: int = 0
    total_duration: float = 0.0  # of successful attempts
    total_wait: float = 0.0  # over all starts


class Counts(msgspec.Struct):
    """The ``counts`` table: for one queue and job name, how many jobs are in each state now,
    and running totals of what happened to them.

    ``queue_stats`` and ``job_type_stats`` are views that sum it by queue and by name: one row
    per pair costs a transaction one page write where a table per view cost two, and it answers
    which job types fail in which queue.
    """

    queue: str
    name: str
    pending: int = 0
    leased: int = 0
    running: int = 0
    succeeded: int = 0
    failed: int = 0
    cancelled: int = 0
    waiting: int = 0
    dispatched: int = 0
    started: int = 0
    successes: int = 0  # job_type_stats.succeeded
    failures: int = 0
    timed_out: int = 0
    retried: int = 0
    dead: int = 0
    total_duration: float = 0.0
    total_wait: float = 0.0


class MinuteCounts(msgspec.Struct):
    """The ``minutes`` table: the attempts of one queue and job name that ended in one minute,
    by outcome; what health checks and charts over recent time read (a few rows a minute,
    instead of a scan of the log)."""

    minute: int  # unix time of the minute's start
    queue: str
    name: str
    successes: int = 0
    failures: int = 0  # failed, timed out or lost their worker
    timed_out: int = 0
    total_duration: float = 0.0  # of successes


class WorkerRow(msgspec.Struct, frozen=True):
    """The ``workers`` table: one worker's life, from its start, heartbeat and stop events."""

    name: str
    host: str = ""
    pid: int = 0
    queues: str = ""  # comma-separated, in order of precedence
    concurrency: int = 1
    pool: str = "thread"
    lease: float = 30.0  # silent for longer than this, the worker counts as lost
    started_at: float = 0.0
    last_seen: float = 0.0  # its latest heartbeat
    stopped_at: float | None = None
    done: int = 0  # attempts finished, as of its latest heartbeat
    names: str = ""  # comma-separated: the job types it runs (a scheduler's: its schedules)
    kind: str = "worker"  # or "scheduler"


class ScheduleRow(msgspec.Struct, frozen=True):
    """The ``schedules`` table: one cron schedule's latest tick and dispatch, from its
    ``ScheduleTicked`` events. ``last_tick`` guards against a second dispatch of a tick: a
    scheduler records a tick only if it is later than this (see :mod:`.schedules`)."""

    name: str
    last_tick: float | None = None  # the latest cron tick dispatched (manual runs excluded)
    last_job: int | None = None  # the job of the latest dispatch, cron or manual
    last_at: float | None = None  # when that dispatch happened
    ticks: int = 0  # cron ticks dispatched
    triggered: int = 0  # manual runs (evq schedule run)
    skipped: int = 0  # ticks missed and not dispatched, over the schedule's life


class GroupRow(msgspec.Struct, frozen=True):
    """The ``groups`` table: one batch, workflow or chain, and how many of its jobs ended how.

    ``fired_*`` count the callback jobs dispatched (0 or 1 each): a callback runs once."""

    id: int  # the position of its BatchCreated or WorkflowCreated event
    kind: str  # batch, workflow or chain
    name: str
    total: int
    created_at: float
    allow_failures: int = 0
    callbacks: str = "[]"  # JSON list of evq.eventlog.events.Callback
    succeeded: int = 0
    failed: int = 0  # its jobs that ended failed (dead)
    cancelled: int = 0
    updated_at: float = 0.0  # the latest time one of its jobs ended (or was retried)
    finished_at: float | None = None  # updated_at once every job has ended, else None
    fired_success: int = 0
    fired_failure: int = 0
    fired_finally: int = 0

    @property
    def pending(self) -> int:
        """Its jobs that have not ended yet."""
        return self.total - self.succeeded - self.failed - self.cancelled

    @property
    def state(self) -> str:
        """running, succeeded, failed (a job failed or was cancelled, unless the group allows
        failures), or finished (ended, with failures allowed)."""
        if self.failed + self.cancelled and not self.allow_failures:
            return "failed"
        if self.pending > 0:
            return "running"
        return "succeeded" if not self.failed + self.cancelled else "finished"


class UniqueRow(msgspec.Struct, frozen=True):
    """The ``uniques`` table: the latest job dispatched with each unique key. The key is taken
    while that job is unfinished, and until ``until`` (its dispatch plus ``unique_for``)."""

    key: str
    job_id: int
    until: float


JOB_COLUMNS = tuple(f.name for f in msgspec.structs.fields(JobRow))
QUEUE_COLUMNS = tuple(f.name for f in msgspec.structs.fields(QueueCounts))
TYPE_COLUMNS = tuple(f.name for f in msgspec.structs.fields(JobTypeStats))
COUNT_COLUMNS = tuple(f.name for f in msgspec.structs.fields(Counts))
MINUTE_COLUMNS = tuple(f.name for f in msgspec.structs.fields(MinuteCounts))
TYPE_SOURCES = {"succeeded": "successes"}  # job_type_stats columns named otherwise in counts
WORKER_COLUMNS = tuple(f.name for f in msgspec.structs.fields(WorkerRow))
GROUP_COLUMNS = tuple(f.name for f in msgspec.structs.fields(GroupRow))
UNIQUE_COLUMNS = tuple(f.name for f in msgspec.structs.fields(UniqueRow))
SCHEDULE_COLUMNS = tuple(f.name for f in msgspec.structs.fields(ScheduleRow))


def malformed(row: JobRow) -> str | None:
    """What is wrong with a ``jobs`` row whose values do not have their columns' types (written
    by another program), or None: the fields are as declared and ``backoff`` is a JSON list of
    seconds."""
    try:
        msgspec.convert(msgspec.structs.asdict(row), JobRow)
        msgspec.json.decode(row.backoff, type=list[float])
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        return f"row {row.id} of jobs is malformed: {exc}"
    return None
