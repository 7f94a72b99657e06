"""The scheduler: dispatches the jobs of cron schedules at their ticks.

Each tick is dispatched once, however many schedulers run on however many hosts: the store
records a tick only if it is later than the schedule's last one, in the transaction that appends
its job (:meth:`Store.tick`), so the scheduler that comes second appends nothing. Between ticks
the scheduler sleeps until the next one (or its next heartbeat, a third of ``lease``), waking at
once for :meth:`Scheduler.stop`. Its life is in the ``workers`` table as ``kind`` "scheduler"
(``WorkerStarted``, ``WorkerHeartbeat``, ``WorkerStopped``): silent for longer than ``lease``,
it counts as lost.

Which ticks are due is decided by :func:`.cron.due`, from ``now``: the scheduler's :class:`Clock`
is the real time, or, for tests, one that runs faster (``EVQ_SCHEDULER_CLOCK``).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import NamedTuple

import msgspec

from evq.eventlog.errors import EvqError, NotFound, StoreCorrupt, StoreError
from evq.eventlog.events import (
    JobDispatched,
    ScheduleTicked,
    WorkerEvent,
    WorkerHeartbeat,
    WorkerStarted,
    WorkerStopped,
)
from evq.projections.store import Store

from .cron import Cron, after, due

log = logging.getLogger("evq.scheduler")
CLOCK_ENV = "EVQ_SCHEDULER_CLOCK"


class Plan(NamedTuple):
    """A schedule as the scheduler needs it: its cron, its policy for missed ticks, and the
    ``JobDispatched`` of its job at a given time."""

    name: str
    cron: Cron
    missed: str
    make: Callable[[float], JobDispatched]


class Clock:
    """The time schedules follow: the real one, or one that shows ``start`` at the real time
    ``anchor`` and runs ``speed`` times faster (for tests: ``EVQ_SCHEDULER_CLOCK`` set to
    ``START:SPEED:ANCHOR``, unix times, makes every scheduler of a run share one such clock)."""

    def __init__(self, start: float | None = None, speed: float = 1.0,
                 anchor: float | None = None) -> None:
        self.speed = speed
        self.anchor = time.time() if anchor is None else anchor
        self.start = self.anchor if start is None else start

    @classmethod
    def from_env(cls) -> Clock:
        spec = os.environ.get(CLOCK_ENV)
        if not spec:
            return cls()
        try:
            start, speed, anchor = (float(x) for x in spec.split(":"))
        except ValueError:
            raise EvqError(f"{CLOCK_ENV} must be START:SPEED:ANCHOR (unix times, a "
                           f"speed), not {spec!r}") from None
        return cls(start, speed, anchor)

    def now(self) -> float:
        return self.start + (time.time() - self.anchor) * self.speed

    def real(self, seconds: float) -> float:
        """Real seconds in which this clock advances ``seconds``."""
        return seconds / self.speed


class ScheduleStatus(msgspec.Struct):
    """One schedule as ``evq schedule list`` shows it."""

    name: str
    cron: str
    timezone: str | None
    missed: str
    job: str
    next_runs: list[float]  # unix times of its next ticks
    last_tick: float | None  # the latest cron tick dispatched
    last_job: int | None  # the job of the latest dispatch (cron or manual)
    last_state: str | None  # that job's state now: its outcome once it ended
    ticks: int
    triggered: int
    skipped: int


def status(store: Store, plans: Sequence[Plan], now: float, count: int = 3
           ) -> list[ScheduleStatus]:
    """Each schedule with its next ``count`` run times after ``now`` and its last dispatch."""
    rows = {r.name: r for r in store.schedules.get_many(p.name for p in plans)}
    out = []
    for p in plans:
        row = rows.get(p.name)
        last_job = row.last_job if row else None
        job = None if last_job is None else store.tables.get(last_job)
        out.append(ScheduleStatus(
            name=p.name, cron=p.cron.expr, timezone=p.cron.timezone, missed=p.missed,
            job=p.make(now).name, next_runs=after(p.cron, now, count),
            last_tick=row.last_tick if row else None, last_job=last_job,
            last_state=None if job is None else job.state,
            ticks=row.ticks if row else 0, triggered=row.triggered if row else 0,
            skipped=row.skipped if row else 0))
    return out


def trigger(store: Store, plan: Plan, now: float, scheduler: str = "") -> int:
    """Dispatch ``plan``'s job now, outside its cron (``evq schedule run``); returns its id."""
    job_id = store.tick(ScheduleTicked(ts=now, schedule=plan.name, tick=now, manual=True,
                                       scheduler=scheduler), plan.make(now))
    assert job_id is not None  # a manual tick is always taken
    return job_id


def find(plans: Iterable[Plan], name: str) -> Plan:
    plans = list(plans)
    for p in plans:
        if p.name == name:
            return p
    raise NotFound(f"no schedule {name!r} (declared: {', '.join(p.name for p in plans) or 'none'})")


class SchedulerStatus(msgspec.Struct):
    """What :meth:`Scheduler.status` returns."""

    name: str
    running: bool
    schedules: list[ScheduleStatus]


class Scheduler:
    """Dispatches the jobs of ``plans`` at their ticks until stopped: :meth:`run` blocks,
    :meth:`start` runs it on a thread (then :meth:`stop`)."""

    def __init__(self, store: Store, plans: Sequence[Plan], *, name: str | None = None,
                 clock: Clock | None = None, lease: float = 30.0) -> None:
        names = [p.name for p in plans]
        if len(set(names)) != len(names):
            raise EvqError(f"two schedules share a name: {', '.join(names)}")
        if lease <= 0:
            raise EvqError("lease must be a positive number of seconds")
        self.store = store
        self.plans = list(plans)
        self.name = name or f"scheduler:{socket.gethostname()}:{os.getpid()}:{id(self) & 0xFFFF:x}"
        self.clock = clock or Clock.from_env()
        self.lease = lease
        self.dispatched = 0  # ticks this scheduler dispatched
        self._stop = threading.Event()
        self._running = False
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    @property
    def running(self) -> bool:
        return self._running

    def run(self) -> int:
        """Dispatch due ticks until :meth:`stop`; returns how many this scheduler dispatched."""
        self._running = True
        since = self.clock.now()
        beat = 0.0
        try:
            self._life(WorkerStarted(ts=time.time(), worker=self.name, kind="scheduler",
                                     host=socket.gethostname(), pid=os.getpid(),
                                     names=[p.name for p in self.plans], lease=self.lease))
            beat = time.time() + self.lease / 3
            failures = 0
            while not self._stop.is_set():
                now = self.clock.now()
                try:
                    self._dispatch_due(now, since)
                    if time.time() >= beat:
                        self._life(WorkerHeartbeat(ts=time.time(), worker=self.name,
                                                   done=self.dispatched))
                        beat = time.time() + self.lease / 3
                    failures = 0
                except StoreCorrupt:
                    raise
                except StoreError as exc:  # locked, full, unreachable: try again soon
                    failures += 1
                    log.warning("scheduler %s: store write failed (%d in a row): %s",
                                self.name, failures, exc)
                    self._stop.wait(min(0.05 * 2 ** min(failures, 10), 5.0))
                    continue
                wake = min((t for p in self.plans for t in after(p.cron, now)), default=None)
                wait = beat - time.time()
                if wake is not None:
                    wait = min(wait, self.clock.real(wake - now))
                self._stop.wait(max(0.0, wait))
        finally:
            self._running = False
            try:
                self._life(WorkerStopped(ts=time.time(), worker=self.name, done=self.dispatched))
            except EvqError as exc:
                log.warning("scheduler %s: cannot record its stop: %s", self.name, exc)
        return self.dispatched

    def _dispatch_due(self, now: float, since: float) -> None:
        """Dispatch every tick due at ``now``, in order (another scheduler may take some)."""
        for p in self.plans:
            while not self._stop.is_set():
                row = next(iter(self.store.schedules.get_many([p.name])), None)
                d = due(p.cron, last_tick=row.last_tick if row else None, now=now,
                        since=since, missed=p.missed)
                if d is None:
                    break
                tick = ScheduleTicked(ts=now, schedule=p.name, tick=d.tick, skipped=d.skipped,
                                      scheduler=self.name)
                if self.store.tick(tick, p.make(now)) is not None:
                    self.dispatched += 1

    def _life(self, event: WorkerEvent) -> None:
        self.store.append([event])

    def start(self) -> Scheduler:
        """Run on a thread of its own; returns this scheduler (``stop()`` it)."""
        self._thread = threading.Thread(target=self._run_thread, name=f"evq-{self.name}",
                                        daemon=True)
        self._running = True
        self._thread.start()
        return self

    def _run_thread(self) -> None:
        try:
            self.run()
        except BaseException as exc:  # re-raised by stop()
            self._error = exc

    def stop(self, timeout: float | None = 30.0) -> None:
        """Stop (at once: a tick being dispatched is written or not, whole); wait for the
        thread of :meth:`start` and raise what ended it, if anything did."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def trigger(self, name: str) -> int:
        """Dispatch schedule ``name``'s job now; returns its id."""
        return trigger(self.store, find(self.plans, name), self.clock.now(), self.name)

    def status(self, count: int = 3) -> SchedulerStatus:
        """Whether it runs, and each schedule's next ``count`` run times and last dispatch."""
        return SchedulerStatus(self.name, self._running,
                               status(self.store, self.plans, self.clock.now(), count))
