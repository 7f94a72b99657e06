"""The queue object that ``evq.connect()`` returns: dispatch, inspect and operate on jobs."""

from __future__ import annotations

import functools
import math
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

import msgspec
from msgspec.structs import replace

from evq.eventlog import archive
from evq.eventlog.codec import Record
from evq.eventlog.errors import InvalidArguments, InvalidState, JobFailed, NotFound
from evq.eventlog.events import (
    Event,
    JobCancelled,
    JobCancelRequested,
    JobDispatched,
    JobPurged,
    JobRequeued,
    QueueCleared,
)
from evq.projections.analytics import WINDOW, recent
from evq.projections.model import (
    CANCELLED,
    FAILED,
    FINISHED,
    HELD,
    PENDING,
    SUCCEEDED,
    WAITING,
    JobRow,
)
from evq.projections.store import Store, open_store
from evq.workers import registry
from evq.workers.retry import Backoff, backoff_schedule

from . import health, hooks, limits, sync
from .jobs import LATEST_TIME, Job, check_int, check_payload, check_queue, validated_payload

if TYPE_CHECKING:
    from evq.workers.execute import Outcome
    from evq.workers.scheduler import Scheduler
    from evq.workers.worker import Worker

    from .compose import Batch, Chain, Workflow
    from .subscribers import Handler, Subscription

DEFAULT_URL = "sqlite:///evq.db"


def resolve_url(url: str | None = None) -> str:
    """The store URL to use: ``url``, else ``EVQ_URL``, else ``sqlite:///evq.db``."""
    return url or os.environ.get("EVQ_URL") or DEFAULT_URL


def connect(url: str | None = None, *, create: bool = True,
            upgrade: bool | None = None) -> Queue:
    """Open the queue at ``url`` (default: ``EVQ_URL``, else the SQLite file ``evq.db``),
    creating it if it does not exist, or with ``create=False`` raising ``StoreMissing``.
    ``upgrade``: whether an older schema is upgraded (default: SQLite files yes, PostgreSQL only
    through ``evq migrate``)."""
    return Queue(open_store(resolve_url(url), create=create, upgrade=upgrade))


_default: Queue | None = None
_recorder: Callable[[Sequence[Event]], list[int]] | None = None
_default_lock = threading.Lock()


def default_queue() -> Queue:
    """The queue ``Job.dispatch()`` uses: set by :func:`use`, else ``connect()`` on first use."""
    global _default
    with _default_lock:
        if _default is None:
            _default = connect()
        return _default


def use(queue: Any) -> Any:
    """Make ``queue`` the default connection (returns the previous one)."""
    global _default
    with _default_lock:
        previous, _default = _default, queue
    return previous


def record_dispatches(recorder: Callable[[Sequence[Event]], list[int]] | None
                      ) -> Callable[[Sequence[Event]], list[int]] | None:
    """Hand every dispatch of this process to ``recorder`` instead of the store (it returns
    the ids to give back), or with None store them again; returns the previous recorder. What
    ``evq.testing.fake()`` uses."""
    global _recorder
    previous, _recorder = _recorder, recorder
    return previous


class Queue:
    """A connection to one store: dispatch jobs, read their state and history, run workers."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._commits = threading.Condition()  # notified after each commit (see wait_for)
        self._seen_commits = 0
        self._watch: Any = None
        hooks.attach(store)

    @property
    def url(self) -> str:
        return self.store.url

    def __repr__(self) -> str:
        return f"<evq.Queue {self.url}>"

    def close(self) -> None:
        with self._commits:
            watch, self._watch = self._watch, None
        if watch is not None:
            watch.close()
        self.store.close()

    # -- dispatch ------------------------------------------------------------------------------

    def dispatch(self, job: Job, *, delay: float | timedelta | None = None,
                 at: datetime | float | None = None, queue: str | None = None,
                 priority: int | None = None) -> int:
        """Queue ``job``; returns its id. ``delay`` (seconds) or ``at`` (a time) defer it."""
        now = time.time()
        return self._append_dispatches([self._dispatched(job, now, delay, at, queue, priority)],
                                       now)[0]

    def dispatch_many(self, jobs: Iterable[Job], *, delay: float | timedelta | None = None,
                      at: datetime | float | None = None, queue: str | None = None,
                      priority: int | None = None) -> list[int]:
        """Queue many jobs in one transaction: all of them or none. Returns their ids (a unique
        job's duplicates, here or already queued, get the id of the first)."""
        now, meta = time.time(), _trace()
        events = [self._dispatched(j, now, delay, at, queue, priority, meta) for j in jobs]
        return self._append_dispatches(events, now) if events else []

    def _append_dispatches(self, events: Sequence[Event], now: float | None = None) -> list[int]:
        """Append dispatches; returns their ids. New jobs at ``now`` go through the store's
        check of unique keys (a duplicate gets the id of the first); without ``now`` the events
        are appended as they are (a group's creation and its jobs). Every dispatch goes through
        here: under ``evq.testing.fake()`` it is recorded instead."""
        recorder = _recorder
        if recorder is not None:
            return recorder(events)
        if now is None:
            return [r.seq for r in self.store.append(events)]
        return self.store.dispatch(cast(Sequence[JobDispatched], events), now)

    def dispatch_if(self, condition: Any, job: Job, **options: Any) -> int | None:
        """Dispatch only if ``condition`` is true."""
        return self.dispatch(job, **options) if condition else None

    def dispatch_unless(self, condition: Any, job: Job, **options: Any) -> int | None:
        """Dispatch only if ``condition`` is false."""
        return self.dispatch(job, **options) if not condition else None

    def dispatch_sync(self, job: Job) -> Any:
        """Run ``job`` here and now, as a worker would (as Laravel's ``dispatchSync``): its
        tries one after another (without waiting out the backoff), ``failed()`` and
        ``timed_out()``, every step in the log (see :mod:`evq.sync`). Returns its result, or
        raises what the last attempt raised (``evq.JobFailed`` for ``SystemExit`` and the like,
        which must not end the caller)."""
        row, outcome = self._dispatch_here(job)
        if row.state == SUCCEEDED:
            return outcome.value
        error = outcome.error
        if isinstance(error, Exception):
            raise error
        raise JobFailed(f"{row.name} job {row.id} failed: {row.error_type}: {row.error}",
                        error_type=row.error_type or "", message=row.error or "") from error

    def _dispatch_here(self, job: Job) -> tuple[JobRow, Outcome]:
        """Dispatch ``job`` (to the store, even under ``evq.testing.fake()``) and run it in
        this thread; returns its final row and its last attempt's outcome."""
        event = replace(self._dispatched(job, time.time(), None, None, None, None),
                        unique_key=None, limits=None)  # it runs here and now, whatever else
        with self.store.log.transaction():  # started with its dispatch: no worker can claim it
            row = sync.start(self.store, self.store.append([event])[0].seq)
        assert row is not None  # just dispatched: pending
        outcome = sync.run_attempts(self.store, row)
        return self.job(row.id), outcome

    def dispatch_json(self, name: str, arguments: bytes | str, **options: Any) -> int:
        """Dispatch the job registered as ``name`` with arguments given as a JSON object."""
        cls = registry.lookup(name)
        check_payload(name, arguments.encode() if isinstance(arguments, str) else arguments)
        try:
            data = msgspec.json.decode(arguments)
        except msgspec.DecodeError as exc:
            raise InvalidArguments(f"{name}: the arguments are not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise InvalidArguments(f"{name}: the arguments must be a JSON object")
        unknown = sorted(data.keys() - set(cls.__struct_fields__))
        if unknown:
            raise InvalidArguments(f"{name}: unknown argument {', '.join(unknown)} (it takes "
                                   f"{', '.join(cls.__struct_fields__) or 'none'})")
        try:
            job = msgspec.json.decode(arguments, type=cls)
        except msgspec.ValidationError as exc:
            raise InvalidArguments(f"{name}: invalid arguments: {exc}") from None
        return self.dispatch(job, **options)

    def _dispatched(self, job: Job, now: float, delay: float | timedelta | None,
                    at: datetime | float | None, queue: str | None,
                    priority: int | None, meta: dict[str, str] | None = None
                    ) -> JobDispatched:
        """The event that dispatches ``job``; ``meta``: what it carries (default: the
        dispatcher's trace context)."""
        if not isinstance(job, Job):
            raise InvalidArguments(f"{job!r} is not an evq.Job: call .make(...) on a function "
                                   "job, or subclass evq.Job")
        cls = type(job)
        if queue is not None:
            check_queue(queue, "dispatch")
        if priority is not None:
            check_int(priority, "dispatch: priority")
        return JobDispatched(
            ts=now, name=cls.job_name, queue=queue or cls.queue,
            payload=msgspec.Raw(validated_payload(job)),
            priority=cls.priority if priority is None else priority,
            run_at=run_at(now, delay, at), tries=cls.tries, backoff=_backoff(cls),
            jitter=cls.backoff.jitter if isinstance(cls.backoff, Backoff) else 0.0,
            timeout=cls.timeout, meta=_trace() if meta is None else meta,
            unique_key=None if cls.unique_for is None else limits.unique_key(job),
            unique_for=cls.unique_for, limits=limits.limits(job))

    # -- composing -----------------------------------------------------------------------------

    def chain(self, *jobs: Job, name: str = "") -> Chain:
        """Jobs to run one after another (see :mod:`evq.compose`); ``.dispatch()`` them."""
        from .compose import Chain

        return Chain(jobs, self, name=name)

    def workflow(self, *, name: str = "") -> Workflow:
        """An empty workflow: ``add`` jobs with what they wait for, then ``dispatch``."""
        from .compose import Workflow

        return Workflow(self, name=name)

    def batch(self, jobs: Iterable[Job], *, name: str = "") -> Batch:
        """Jobs to run in parallel as one batch, with callbacks; ``.dispatch()`` it."""
        from .compose import Batch

        return Batch(jobs, self, name=name)

    def group(self, group_id: int) -> dict[str, Any]:
        """A batch's or workflow's progress (a workflow's with each job's state)."""
        from .compose import group_status

        return group_status(self, group_id)

    def groups(self, kind: str | None = None, *, limit: int = 100) -> list[dict[str, Any]]:
        """Batches (``kind="batch"``), workflows or chains, newest first, as :meth:`group`
        without the jobs."""
        from .compose import group_status

        rows = self.store.groups.find(kind, limit)
        return [{k: v for k, v in group_status(self, r.id).items() if k != "jobs"}
                for r in rows]

    def subscribe(self, name: str, fn: Handler, *, types: Sequence[str] = (), since: int = 0,
                  batch: int = 500, lease: float = 30.0) -> Subscription:
        """A durable subscriber of this store's log, started (see :mod:`evq.subscribers`)."""
        from .subscribers import subscribe

        return subscribe(name, fn, types=types, since=since, batch=batch, lease=lease,
                         queue=self)

    # -- results -------------------------------------------------------------------------------

    def result(self, job_id: int, timeout: float | None = None) -> Any:
        """Wait for a job to end and return its result; raises ``evq.JobFailed`` (with the
        error's type and message) if it failed or was cancelled, ``TimeoutError`` after
        ``timeout`` seconds. Woken by the store's commits, not a busy loop."""
        self.job(job_id)  # an unknown id is an error at once
        self.wait_for(lambda: self.job(job_id).state in FINISHED, timeout,
                      f"job {job_id} has not finished")
        row = self.job(job_id)
        if row.state == SUCCEEDED:
            return None if row.result is None else msgspec.json.decode(row.result)
        if row.state == CANCELLED:
            raise JobFailed(f"{row.name} job {row.id} was cancelled"
                            + (f": {row.error}" if row.error else ""),
                            error_type="JobCancelled", message=row.error or "")
        raise JobFailed(f"{row.name} job {row.id} failed: {row.error_type}: {row.error}",
                        error_type=row.error_type or "", message=row.error or "")

    async def aresult(self, job_id: int, timeout: float | None = None) -> Any:
        """:meth:`result`, without blocking the event loop."""
        import asyncio

        return await asyncio.to_thread(self.result, job_id, timeout)

    def wait_for(self, done: Callable[[], bool], timeout: float | None, what: str) -> None:
        """Block until ``done()`` is true, checking after each commit to the store (and at
        least every few seconds); ``TimeoutError(what)`` after ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._commits:
            if self._watch is None:  # one watch for every waiter, for the queue's life
                self._watch = self.store.watch(None, self._committed)
        while True:
            with self._commits:
                seen = self._seen_commits
            if done():
                return
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise TimeoutError(f"{what} after {timeout:g} s")
            with self._commits:
                if self._seen_commits == seen:
                    self._commits.wait(5.0 if left is None else min(left, 5.0))

    def _committed(self) -> None:
        with self._commits:
            self._seen_commits += 1
            self._commits.notify_all()

    # -- reading -------------------------------------------------------------------------------

    def job(self, job_id: int) -> JobRow:
        """The current state of one job."""
        row = self.store.tables.get(job_id)
        if row is None:
            raise NotFound(f"no job {job_id!r}")
        return row

    def history(self, job_id: int) -> list[Record]:
        """Every event of one job, in log order: its audit trail."""
        events = list(archive.read(self.store.log, job_id=job_id))
        if not events:
            raise NotFound(f"no job {job_id!r}")
        return events

    def events(self, **filters: Any) -> Iterator[Record]:
        """The log (archived events included) in order; filters as
        :meth:`evq.eventlog.sqlite.SqliteLog.read`."""
        return archive.read(self.store.log, **filters)

    def jobs(self, state: str | None = None, *, queue: str | None = None,
             name: str | None = None, limit: int = 100) -> list[JobRow]:
        """Jobs in one state (``pending``: ready now; ``delayed``; ``running``: leased or
        running; ``succeeded``, ``failed``, ``cancelled``; ``waiting`` for other jobs of their
        workflow), oldest first."""
        return self.store.tables.find(**_job_filters(state, queue, name), limit=limit)

    def count_jobs(self, state: str | None = None, *, queue: str | None = None,
                   name: str | None = None) -> int:
        """How many jobs :meth:`jobs` would list without a limit."""
        return self.store.tables.count(**_job_filters(state, queue, name))

    def search(self, state: str | None = None, *, queue: str | None = None,
               name: str | None = None, text: str = "", since: float | None = None,
               until: float | None = None, offset: int = 0, limit: int = 50) -> list[JobRow]:
        """Jobs as :meth:`jobs` selects them, newest first from ``offset``, also by ``text``
        in their arguments or error and by dispatch time (``since`` <= it < ``until``)."""
        return self.store.tables.search(text=text, since=since, until=until, offset=offset,
                                        limit=limit, **_job_filters(state, queue, name))

    def size(self, queue: str = "default") -> int:
        """Jobs waiting in ``queue``: ready and delayed, not yet claimed."""
        return sum(c.pending for c in self.store.tables.queue_counts() if c.queue == queue)

    def stats(self, window: int = WINDOW, *, queue: str | None = None) -> dict[str, Any]:
        """Counts per queue and state; per job type the all-time totals, with percentiles of
        wait and run time over the latest jobs; and ``recent``: outcomes, retries, failure rate,
        wait and run times and throughput per queue and per job type over the latest jobs (see
        :mod:`evq.projections.analytics`). With ``queue``, all of it for that queue only."""
        now = time.time()
        latest = recent(self.store.log, now, window, queue)
        delayed = self.store.tables.delayed_counts(now)
        queues = {}
        for c in self.store.tables.queue_counts():
            if queue is not None and c.queue != queue:
                continue
            counts = msgspec.structs.asdict(c)
            del counts["queue"]
            counts["delayed"] = delayed.get(c.queue, 0)
            counts["pending"] -= counts["delayed"]
            queues[c.queue] = counts
        types = {}
        for t in self.store.tables.type_stats(queue):
            entry = msgspec.structs.asdict(t)
            del entry["name"]
            attempts = t.succeeded + t.failures
            entry["failure_rate"] = t.failures / attempts if attempts else 0.0
            entry["avg_duration"] = t.total_duration / t.succeeded if t.succeeded else None
            entry["avg_wait"] = t.total_wait / t.started if t.started else None
            by_type = latest["job_types"].get(t.name, {})
            for p in (50, 95, 99):
                entry[f"duration_p{p}"] = by_type.get(f"run_p{p}")
                entry[f"wait_p{p}"] = by_type.get(f"wait_p{p}")
            types[t.name] = entry
        return {"url": self.url, "last_seq": self.store.log.last_seq(), "queues": queues,
                "job_types": types, "recent": latest}

    # -- operating -----------------------------------------------------------------------------

    def clear(self, queue: str, *, by: str = "", reason: str = "") -> int:
        """Remove every pending (ready or delayed) job of ``queue``; returns how many. ``by``
        and ``reason`` (here and in the other operations) name the operator in the event."""
        now = time.time()
        return len(self.store.change(
            lambda r: [QueueCleared(job_id=r.id, ts=now, queue=queue, by=by, reason=reason)],
            states=[PENDING], queue=queue))

    def retry(self, job_id: int, *, by: str = "", reason: str = "") -> JobRow:
        """Queue a failed (or cancelled) job again: ``JobRequeued``, attempts start over."""
        now = time.time()
        return self._operate(job_id, (FAILED, CANCELLED), "retry",
                             lambda r: [JobRequeued(job_id=r.id, ts=now, by=by, reason=reason)])

    def retry_all(self, queue: str | None = None, *, name: str | None = None, text: str = "",
                  by: str = "", reason: str = "") -> int:
        """Queue every failed job (of ``queue``, of the type ``name``, with ``text`` in its
        arguments or error: the jobs ``search("failed", ...)`` finds) again, in dispatch order
        and one transaction; returns how many."""
        now = time.time()
        return len(self.store.change(
            lambda r: [JobRequeued(job_id=r.id, ts=now, by=by, reason=reason)],
            states=[FAILED], queue=queue, name=name, text=text))

    def cancel(self, job_id: int, reason: str = "", *, by: str = "") -> JobRow:
        """Cancel a job: a pending one (or one waiting for others of its workflow: what waits
        for it is cancelled too) at once (``JobCancelled``); for a leased or running one, ask
        the worker that holds it (``JobCancelRequested``, the row's ``cancel_requested``): it
        cancels the job within about a second. ``by``: the operator. Returns the row
        afterwards."""
        now = time.time()

        def decide(row: JobRow) -> list[Event]:
            if row.state in (PENDING, WAITING):
                return [JobCancelled(job_id=row.id, ts=now, reason=reason, by=by)]
            if row.cancel_requested is None:
                return [JobCancelRequested(job_id=row.id, ts=now, attempt=row.attempt,
                                           reason=reason, by=by)]
            return []  # asked already

        return self._operate(job_id, (PENDING, WAITING, *HELD), "cancel", decide)

    def forget(self, job_id: int, states: Sequence[str] = FINISHED, *, by: str = "",
               reason: str = "") -> None:
        """Remove a finished job (in one of ``states``) from the projections (``JobPurged``;
        its events stay in the log)."""
        now = time.time()
        self._operate(job_id, states, "delete",
                      lambda r: [JobPurged(job_id=r.id, ts=now, by=by, reason=reason)])

    def flush_failed(self, *, by: str = "", reason: str = "") -> int:
        """Remove every failed job from the projections; returns how many."""
        now = time.time()
        return len(self.store.change(
            lambda r: [JobPurged(job_id=r.id, ts=now, by=by, reason=reason)], states=[FAILED]))

    def _operate(self, job_id: int, allowed: Sequence[str], verb: str,
                 decide: Any) -> JobRow:
        rows = self.store.change(decide, job_id=job_id, states=allowed)
        if rows:
            return rows[0]
        row = self.store.tables.get(job_id)
        if row is None:
            raise NotFound(f"no job {job_id!r}")
        raise InvalidState(f"cannot {verb} job {job_id}: it is {row.state}")

    def append(self, events: Sequence[Event]) -> list[int]:
        """Append raw events (for tools and tests); returns their positions."""
        return [r.seq for r in self.store.append(events)]

    # -- workers -------------------------------------------------------------------------------

    def worker(self, **options: Any) -> Worker:
        """A worker on this queue's store; see :class:`evq.workers.worker.Worker`. To run it
        inside an application: ``with q.worker().start(): ...`` (or ``async with``)."""
        from evq.workers.worker import Worker  # lazily: commands that only read skip asyncio

        return Worker(self.store, **options)

    def scheduler(self, schedules: list[str] | None = None, **options: Any) -> Scheduler:
        """A scheduler of the declared schedules on this queue's store; see
        :func:`evq.schedules.scheduler`."""
        from .schedules import scheduler

        return scheduler(schedules, queue=self, **options)

    def workers(self, **options: Any) -> list[health.WorkerStatus]:
        """Alive and lost workers with their last heartbeat and held jobs; see
        :func:`evq.health.workers`."""
        return health.workers(self.store, **options)

    def health(self, **thresholds: Any) -> health.Health:
        """The queue's health checks and verdict; see :func:`evq.health.check`."""
        return health.check(self.store, **thresholds)


def _trace() -> dict[str, str]:
    """The dispatcher's trace context, if OpenTelemetry is in use here (an application that
    has not imported it has no span: then this costs a dict lookup)."""
    if "opentelemetry.trace" not in sys.modules:
        return {}
    try:
        from evq.contrib.otel import current_trace
    except ImportError:  # a part of OpenTelemetry without its propagators
        return {}
    return current_trace()


@functools.cache
def _backoff(cls: type[Job]) -> list[float]:
    """A job type's retry waits (class settings do not change, so computed once; the list is
    shared by its events and never mutated)."""
    return backoff_schedule(cls.backoff, cls.tries, cls.backoff_base)


def run_at(now: float, delay: float | timedelta | None, at: datetime | float | None) -> float:
    """When a job dispatched at ``now`` becomes ready: a unix time after the epoch and before
    the year 10000 (``LATEST_TIME``), or the dispatch is refused."""
    if delay is not None and at is not None:
        raise InvalidArguments("give delay or at, not both")
    if isinstance(delay, timedelta):
        delay = delay.total_seconds()
    if delay is not None:
        if not _finite(delay) or not 0 <= delay <= LATEST_TIME - now:  # type: ignore[operator]
            raise InvalidArguments(f"delay must be a number of seconds from 0 to "
                                   f"{LATEST_TIME - now:.0f} (the year 9999), not {delay!r}")
        return now + delay
    if at is None:
        return now
    when = at
    if isinstance(at, datetime):
        try:
            when = at.timestamp()
        except (OverflowError, ValueError, OSError):
            when = math.nan
    if not _finite(when) or not 0 < when <= LATEST_TIME:  # type: ignore[operator]
        raise InvalidArguments(f"at must be a datetime or a unix time after 1970-01-01 and "
                               f"before the year 10000, not {at!r}")
    return float(when)  # type: ignore[arg-type]


def _finite(value: object) -> bool:
    return (isinstance(value, int | float) and not isinstance(value, bool)
            and math.isfinite(value))


def _job_filters(state: str | None, queue: str | None, name: str | None) -> dict[str, Any]:
    """The filters of :meth:`SqlTables.find` that select the jobs of ``state``."""
    now = time.time()
    filters: dict[str, Any] = {"queue": queue, "name": name}
    match state:
        case None:
            pass
        case "pending":
            filters.update(states=[PENDING], due_before=now)
        case "delayed":
            filters.update(states=[PENDING], due_after=now)
        case "running":
            filters.update(states=["leased", "running"])
        case "succeeded" | "failed" | "cancelled" | "waiting":
            filters.update(states=[state])
        case _:
            raise InvalidArguments(f"unknown state {state!r}: use pending, delayed, "
                                   "running, succeeded, failed, cancelled or waiting")
    return filters
