"""Liveness and health: which workers are alive or lost, and whether the queue is healthy.

A worker writes ``WorkerHeartbeat`` once per heartbeat interval (a third of its lease); one that
has been silent for longer than its lease, without having written ``WorkerStopped``, is lost.
Health is a list of checks, each ``ok``, ``degraded`` or ``unhealthy``; the worst one is the
verdict (exit codes 0, 1, 2 of ``evq health``).
"""

from __future__ import annotations

import time

import msgspec

from evq.eventlog.errors import StoreError
from evq.projections.model import WorkerRow
from evq.projections.store import Store

ALIVE, LOST, STOPPED = "alive", "lost", "stopped"
OK, DEGRADED, UNHEALTHY = "ok", "degraded", "unhealthy"
LEVELS = (OK, DEGRADED, UNHEALTHY)  # the exit code of each is its index


class WorkerStatus(msgspec.Struct):
    """One worker as ``evq workers`` shows it."""

    name: str
    status: str  # alive, lost or stopped
    host: str
    pid: int
    queues: str
    pool: str
    concurrency: int
    started_at: float
    last_seen: float
    stopped_at: float | None
    done: int
    held: list[int]  # ids of the jobs it holds a lease on


class Check(msgspec.Struct):
    name: str
    status: str
    detail: str


class Health(msgspec.Struct):
    status: str
    checks: list[Check]

    @property
    def code(self) -> int:
        return LEVELS.index(self.status)


def status_of(row: WorkerRow, now: float) -> str:
    if row.stopped_at is not None:
        return STOPPED
    return LOST if now - row.last_seen > row.lease else ALIVE


def workers(store: Store, *, now: float | None = None, stopped: bool = False,
            lost_within: float | None = 86400.0) -> list[WorkerStatus]:
    """Alive and lost workers (lost ones seen within ``lost_within`` seconds, or all of them
    with None; and with ``stopped``, the stopped ones too), oldest first; schedulers are
    listed by :func:`evq.schedules.schedulers`."""
    now = time.time() if now is None else now
    held = store.workers.held()
    rows = store.workers.all() if stopped else store.workers.running()
    out = []
    for r in rows:
        if r.kind != "worker":
            continue
        status = status_of(r, now)
        if (status == LOST and lost_within is not None and now - r.last_seen > lost_within
                and not held.get(r.name)):
            continue
        out.append(WorkerStatus(
            name=r.name, status=status, host=r.host, pid=r.pid, queues=r.queues, pool=r.pool,
            concurrency=r.concurrency, started_at=r.started_at, last_seen=r.last_seen,
            stopped_at=r.stopped_at, done=r.done, held=held.get(r.name, [])))
    return out


def check(store: Store, *, max_backlog: int = 1000, max_failure_rate: float = 0.1,
          window: float = 300.0, min_workers: int = 1, now: float | None = None) -> Health:
    """The queue's health: the store answers, at least ``min_workers`` workers are alive and no
    lost worker still holds jobs, at most ``max_backlog`` jobs are ready but unclaimed, at
    most ``max_failure_rate`` of the attempts that ended in the last ``window`` seconds (the
    minutes it reaches into, from the ``minutes`` projection) failed; and, while a worker is
    alive, some live worker runs the job type of each pending job in its queue."""
    now = time.time() if now is None else now
    try:
        return _checks(store, max_backlog, max_failure_rate, window, min_workers, now)
    except StoreError as exc:
        return unreachable(str(exc))


def unreachable(why: str) -> Health:
    return Health(UNHEALTHY, [Check("store", UNHEALTHY, why)])


def _runnable(store: Store, now: float) -> Check:
    """Whether some live worker watches the queue and runs the job type of every pending job
    (a worker claims only the types it has registered; one that recorded none, from before
    evq recorded them, counts as running every type)."""
    live = [r for r in store.workers.running() if status_of(r, now) == ALIVE]
    served = {(q, n) for r in live for q in r.queues.split(",") for n in r.names.split(",")}
    anything = {q for r in live if not r.names for q in r.queues.split(",")}
    stuck = [c for c in store.tables.counts() if c.pending and c.queue not in anything
             and (c.queue, c.name) not in served]
    if not stuck:
        return Check("runnable", OK, "a live worker runs every pending job type")
    return Check("runnable", DEGRADED, "no live worker runs " + ", ".join(
        f"{c.name} in {c.queue} ({c.pending} pending)" for c in stuck))


def _checks(store: Store, max_backlog: int, max_failure_rate: float, window: float,
            min_workers: int, now: float) -> Health:
    checks = [Check("store", OK, f"{store.url}: log at seq {store.log.last_seq()}")]

    listed = workers(store, now=now)
    alive = sum(w.status == ALIVE for w in listed)
    lost = [w for w in listed if w.status == LOST and w.held]
    level = UNHEALTHY if alive < min_workers else DEGRADED if lost else OK
    detail = f"{alive} alive (at least {min_workers} wanted)"
    if lost:
        detail += (f"; {len(lost)} lost still holding {sum(len(w.held) for w in lost)} jobs "
                   "until their leases expire")
    checks.append(Check("workers", level, detail))

    delayed = store.tables.delayed_counts(now)
    backlog = sum(c.pending - delayed.get(c.queue, 0) for c in store.tables.queue_counts())
    checks.append(Check("backlog", DEGRADED if backlog > max_backlog else OK,
                        f"{backlog} jobs ready and unclaimed (at most {max_backlog})"))

    minutes = store.tables.minutes(now - window)
    failures = sum(m.failures for m in minutes)
    attempts = failures + sum(m.successes for m in minutes)
    rate = failures / attempts if attempts else 0.0
    checks.append(Check("failure_rate", DEGRADED if rate > max_failure_rate else OK,
                        f"{rate:.1%} of {attempts} attempts in the last {window:g}s failed "
                        f"(at most {max_failure_rate:.1%})"))
    if alive:
        checks.append(_runnable(store, now))
    return Health(max((c.status for c in checks), key=LEVELS.index), checks)
