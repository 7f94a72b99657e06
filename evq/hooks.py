"""Queue events in this process: ``evq.on("failed", fn)`` calls ``fn`` after each commit of this
process that recorded a job's failed attempt (on any connection), with a :class:`QueueEvent`.

Hooks run in the thread that committed (a worker's writer thread, a dispatching request) after
the commit, so what they see has happened; an exception in one is logged and changes nothing.
They see this process's commits only: for every process's, and for what happened while none ran,
read the log with a durable subscriber (:func:`evq.subscribe`).
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import msgspec

from evq.eventlog.codec import Record
from evq.eventlog.errors import InvalidArguments
from evq.eventlog.events import (
    JobCancelled,
    JobDead,
    JobDispatched,
    JobFailed,
    JobRetryScheduled,
    JobStarted,
    JobSucceeded,
    JobTimedOut,
    LeaseExpired,
)
from evq.projections.model import JobRow

if TYPE_CHECKING:
    from evq.projections.store import Store

log = logging.getLogger("evq.hooks")

KINDS = ("dispatched", "started", "completed", "failed", "retrying", "dead", "cancelled")


class QueueEvent(msgspec.Struct, frozen=True, kw_only=True):
    """What a hook is given: one step of one job, as recorded at log position ``seq``."""

    kind: str  # one of KINDS
    seq: int
    ts: float
    job_id: int
    name: str
    queue: str
    attempt: int = 0
    duration: float | None = None  # of a completed or failed attempt, in seconds
    error_type: str | None = None  # of a failed attempt
    error: str | None = None
    run_at: float | None = None  # of a retry: when it may run


Hook = Callable[[QueueEvent], Any]
_hooks: dict[str, list[Hook]] = {kind: [] for kind in KINDS}
# The stores of this process's connections; each observed by emit() once the first hook is added
# (until then their commits cost nothing here).
_stores: weakref.WeakSet[Store] = weakref.WeakSet()
_observed: weakref.WeakSet[Store] = weakref.WeakSet()
_lock = threading.Lock()


def attach(store: Store) -> None:
    """Let the hooks see ``store``'s commits (a new connection's)."""
    with _lock:
        _stores.add(store)
        if any(_hooks.values()):
            _observe(store)


def _observe(store: Store) -> None:
    if store not in _observed:
        _observed.add(store)
        store.observe(emit)


def on(kind: str, fn: Hook | None = None) -> Any:
    """Call ``fn(event)`` after each commit of this process that records a job's ``kind``
    ("dispatched", "started", "completed", "failed", "retrying", "dead" or "cancelled").
    Returns a function that removes the hook; without ``fn``, a decorator."""
    if kind not in _hooks:
        raise InvalidArguments(f"unknown queue event {kind!r}: use {', '.join(KINDS)}")
    if fn is None:
        def decorate(f: Hook) -> Hook:
            on(kind, f)
            return f
        return decorate
    if not callable(fn):
        raise InvalidArguments(f"on({kind!r}): {fn!r} is not callable")
    with _lock:
        _hooks[kind].append(fn)
        for store in list(_stores):
            _observe(store)
    return lambda: _hooks[kind].remove(fn)


def emit(notes: list[tuple[Record, JobRow | None]]) -> None:
    """The store's observer: the hooks of each recorded step, in log order."""
    if not any(_hooks.values()):
        return
    for i, (record, row) in enumerate(notes):
        after = notes[i + 1][0].event if i + 1 < len(notes) else None
        lost = (isinstance(record.event, LeaseExpired) and after is not None
                and after.job_id == record.event.job_id
                and isinstance(after, JobRetryScheduled | JobDead))
        event = _queue_event(record, row, lost)
        if event is None:
            continue
        for fn in list(_hooks[event.kind]):
            try:
                fn(event)
            except Exception:
                log.exception("a %r hook raised (job %d)", event.kind, event.job_id)


def _queue_event(record: Record, row: JobRow | None, lost: bool) -> QueueEvent | None:
    """The queue event of one record (``lost``: a lease expired on a started attempt, which
    failed it), or None."""
    e = record.event
    if row is None and not isinstance(e, JobDispatched):
        return None
    base: dict[str, Any] = {"seq": record.seq, "ts": e.ts, "job_id": e.job_id,
                            "attempt": getattr(e, "attempt", 0)}
    if isinstance(e, JobDispatched):
        base.update(name=e.name, queue=e.queue)
    else:
        assert row is not None
        base.update(name=row.name, queue=row.queue)
    match e:
        case JobDispatched():
            return QueueEvent(kind="dispatched", **base)
        case JobStarted():
            return QueueEvent(kind="started", **base)
        case JobSucceeded():
            return QueueEvent(kind="completed", duration=e.duration, **base)
        case JobFailed():
            return QueueEvent(kind="failed", duration=e.duration, error_type=e.error_type,
                              error=e.message, **base)
        case JobTimedOut():
            return QueueEvent(kind="failed", duration=e.timeout, error_type="TimeoutError",
                              error=f"timed out after {e.timeout:g}s", **base)
        case LeaseExpired() if lost:
            return QueueEvent(kind="failed", error_type="WorkerLost",
                              error=f"worker {e.worker} stopped renewing its lease", **base)
        case JobRetryScheduled():
            return QueueEvent(kind="retrying", run_at=e.run_at, **base)
        case JobDead():
            assert row is not None
            return QueueEvent(kind="dead", error_type=row.error_type, error=row.error, **base)
        case JobCancelled():
            return QueueEvent(kind="cancelled", error=e.reason or None, **base)
    return None
