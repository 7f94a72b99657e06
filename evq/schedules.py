"""Cron schedules: declared on a job class or in code, run by a scheduler.

    class DailyReport(evq.Job):
        schedule = "0 8 * * *"          # cron: minute hour day-of-month month day-of-week
        timezone = "Europe/Paris"       # default UTC
        missed = "once"                 # ticks missed while no scheduler ran: "skip" (default)
                                        #   or "once" (one catch-up)

    evq.schedule("*/5 * * * *", Cleanup(days=30), name="cleanup")

A schedule is registered when it is declared (its module imported), as job types are; a mistake
(an expression that does not parse, an unknown time zone, a class-level schedule on a job type
with required arguments) is a ``ConfigError`` at once, naming the class or schedule.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgspec

from evq.eventlog.errors import ConfigError, InvalidArguments
from evq.workers.cron import MISSED, Cron, CronError, parse

if TYPE_CHECKING:  # the rest loads the stores: job modules import this one (process children)
    from evq.workers.scheduler import Clock, Plan, Scheduler

    from .api import Queue
    from .jobs import Job


@dataclass(frozen=True)
class Schedule:
    """A declared schedule: ``job`` is dispatched at each tick of ``cron``."""

    name: str
    cron: Cron
    job: Job
    missed: str = "skip"
    queue: str | None = None
    priority: int | None = None

    def plan(self, q: Queue) -> Plan:
        """What a scheduler on ``q`` needs of this schedule."""
        from evq.workers.scheduler import Plan

        return Plan(self.name, self.cron, self.missed,
                    lambda now: q._dispatched(self.job, now, None, None, self.queue,
                                              self.priority))


_schedules: dict[str, Schedule] = {}


def schedule(cron: str, job: Job, *, name: str | None = None, timezone: str | None = None,
             missed: str = "skip", queue: str | None = None,
             priority: int | None = None) -> Schedule:
    """Dispatch ``job`` at each tick of the cron expression ``cron`` (in ``timezone``, default
    UTC), under ``name`` (default: the job's type name); ``missed``: "skip" or "once". Returns
    the schedule, registered for ``evq schedule`` and :func:`scheduler`."""
    from .jobs import Job, check_int, check_name, check_queue, validated_payload

    if not isinstance(job, Job):
        raise ConfigError(f"evq.schedule: {job!r} is not an evq.Job instance")
    name = type(job).job_name if name is None else name
    try:
        check_name(name, "schedule name")
        if queue is not None:
            check_queue(queue, f"schedule {name}")
        if priority is not None:
            check_int(priority, f"schedule {name}: priority")
        validated_payload(job)
    except InvalidArguments as exc:
        raise ConfigError(str(exc)) from None
    return register_schedule(_declared(f"schedule {name}", name, cron, timezone, missed, job,
                                       queue, priority))


def _declared(where: str, name: str, cron: object, timezone: object, missed: object,
              job: Job, queue: str | None = None, priority: int | None = None) -> Schedule:
    try:
        checked = parse(cron, timezone)
    except CronError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    if missed not in MISSED:
        raise ConfigError(f"{where}: missed must be {' or '.join(map(repr, MISSED))}, not "
                          f"{missed!r}")
    return Schedule(name, checked, job, str(missed), queue, priority)


def _free(s: Schedule) -> Schedule:
    """``s``, if its name is not taken by another schedule."""
    old = _schedules.get(s.name)
    if old is not None and old != s:
        raise ConfigError(f"schedule name {s.name!r} is taken (by {old.cron.expr!r} for "
                          f"{type(old.job).job_name}): give name=...")
    return s


def register_schedule(s: Schedule) -> Schedule:
    _schedules[_free(s).name] = s
    return s


def setting(cls: type[Job], name: str) -> Any:
    """A class-level schedule setting of ``cls`` (None where a field of that name is one of
    its arguments instead)."""
    return None if name in cls.__struct_fields__ else getattr(cls, name, None)


def class_schedule(cls: type[Job]) -> Schedule | None:
    """The class-level ``schedule`` of a job type, checked (at its definition), if it has
    one."""
    cron = setting(cls, "schedule")
    if cron is None:
        return None
    where = f"job type {cls.__qualname__}"
    required = [f.name for f in msgspec.structs.fields(cls) if f.required]
    if required:
        raise ConfigError(f"{where}: a class-level schedule dispatches it without arguments, "
                          f"but {', '.join(required)} {'has' if len(required) == 1 else 'have'}"
                          f" no default (use evq.schedule(cron, {cls.__qualname__}(...)))")
    return _free(_declared(where, cls.job_name, cron, setting(cls, "timezone"),
                           setting(cls, "missed") or "skip", cls()))


def registered(names: list[str] | None = None) -> list[Schedule]:
    """The declared schedules (those named, if ``names``), by name."""
    if names:
        unknown = sorted(set(names) - _schedules.keys())
        if unknown:
            raise ConfigError(f"no schedule {', '.join(map(repr, unknown))} (declared: "
                              f"{', '.join(sorted(_schedules)) or 'none'})")
    return [s for n, s in sorted(_schedules.items()) if not names or n in names]


def scheduler(schedules: list[str] | None = None, *, queue: Queue | None = None,
              name: str | None = None, clock: Clock | None = None,
              lease: float = 30.0) -> Scheduler:
    """A scheduler of the declared schedules (those named, if ``schedules``) on ``queue``
    (default: ``evq.connect()``): ``.start()``, ``.status()``, ``.trigger(name)``,
    ``.stop()``; or ``.run()`` to block."""
    from evq.workers.scheduler import Scheduler

    from .api import default_queue

    q = queue or default_queue()
    chosen = registered(schedules)
    if not chosen:
        raise ConfigError("no schedules are declared: import the modules that declare them "
                          "(--app MODULE)")
    return Scheduler(q.store, [s.plan(q) for s in chosen], name=name, clock=clock,
                     lease=lease)


class SchedulerRow(msgspec.Struct):
    """A scheduler as ``evq schedule status`` shows it."""

    name: str
    status: str  # alive, lost or stopped
    host: str
    pid: int
    schedules: list[str]
    started_at: float
    last_seen: float
    stopped_at: float | None
    dispatched: int  # ticks it dispatched, as of its latest heartbeat


def schedulers(q: Queue, *, now: float | None = None, stopped: bool = False
               ) -> list[SchedulerRow]:
    """Schedulers alive or lost (and with ``stopped``, stopped ones), oldest first."""
    from .health import status_of

    now = time.time() if now is None else now
    rows = q.store.workers.all() if stopped else q.store.workers.running("scheduler")
    return [SchedulerRow(r.name, status_of(r, now), r.host, r.pid,
                         [n for n in r.names.split(",") if n], r.started_at, r.last_seen,
                         r.stopped_at, r.done)
            for r in rows if r.kind == "scheduler"]
