"""Cron ticks and the decision of which one is due: pure functions of the expression, the
schedule's last recorded tick and ``now`` (no clock, no store), so that tests need no waiting.

Expressions have the five fields of cron (minute, hour, day of month, month, day of week) and are
read by cronsim (Debian cron's rules, daylight saving time included) in the schedule's time zone.
"""

from __future__ import annotations

from datetime import UTC, datetime, tzinfo
from typing import NamedTuple
from zoneinfo import ZoneInfo

from cronsim import CronSim, CronSimError

MISSED = ("skip", "once")  # what to do about ticks that fell while no scheduler ran
MAX_COUNTED = 100_000  # skipped ticks are counted up to this many (a minute's cron: 69 days)


class CronError(ValueError):
    """A cron expression or time zone that cannot be used (the message says why)."""


class Cron(NamedTuple):
    """A checked cron expression in a time zone (None: UTC)."""

    expr: str
    timezone: str | None = None

    @property
    def zone(self) -> tzinfo:
        return UTC if self.timezone is None else ZoneInfo(self.timezone)


def parse(expr: object, timezone: object = None) -> Cron:
    """``expr`` and ``timezone`` checked; :class:`CronError` says what is wrong."""
    if not isinstance(expr, str) or len(expr.split()) != 5:
        raise CronError(f"cron expression {expr!r} must have 5 fields: minute hour "
                        "day-of-month month day-of-week")
    if timezone is not None:
        try:
            if not isinstance(timezone, str):
                raise ValueError
            ZoneInfo(timezone)
        except (ValueError, KeyError):  # ZoneInfoNotFoundError is a KeyError
            raise CronError(f"unknown timezone {timezone!r} (an IANA name such as "
                            "'Europe/Paris')") from None
    cron = Cron(" ".join(expr.split()), timezone)
    try:
        CronSim(cron.expr, datetime.now(cron.zone))
    except CronSimError as exc:
        raise CronError(f"cron expression {expr!r} does not parse: {exc}") from None
    return cron


def _at(cron: Cron, ts: float) -> datetime:
    return datetime.fromtimestamp(ts, cron.zone)


def after(cron: Cron, ts: float, count: int = 1) -> list[float]:
    """The next ``count`` ticks after ``ts`` (fewer if the expression has no more)."""
    it = CronSim(cron.expr, _at(cron, ts))
    out: list[float] = []
    for t in it:
        if len(out) == count:
            break
        out.append(t.timestamp())
    return out


def latest(cron: Cron, now: float) -> float | None:
    """The latest tick at or before ``now`` (None if there is none within 50 years)."""
    start = _at(cron, now).replace(microsecond=1)  # cronsim then counts a tick at ``now``
    return next((t.timestamp() for t in CronSim(cron.expr, start, reverse=True)), None)


class Due(NamedTuple):
    """A tick to dispatch now, and how many ticks between the previous one and it are not."""

    tick: float
    skipped: int


def due(cron: Cron, *, last_tick: float | None, now: float, since: float,
        missed: str) -> Due | None:
    """What a scheduler running since ``since`` dispatches at ``now`` for a schedule whose last
    recorded tick is ``last_tick`` (None: never; then ticks before ``since`` do not count).

    Only the latest tick at or before ``now`` is ever dispatched; the earlier ones after
    ``last_tick`` are counted as ``skipped``. If the latest fell before ``since``, no scheduler
    ran at its time: with ``missed`` "once" it is dispatched late (one catch-up), with "skip"
    not at all (the next tick will be, counting these as skipped).
    """
    begin = since if last_tick is None else last_tick
    tick = latest(cron, now)
    if tick is None or tick <= begin or (tick < since and missed == "skip"):
        return None
    return Due(tick, _count(cron, begin, tick))


def _count(cron: Cron, begin: float, end: float) -> int:
    """Ticks strictly between ``begin`` and ``end`` (up to :data:`MAX_COUNTED`)."""
    n = 0
    for t in CronSim(cron.expr, _at(cron, begin)):
        if t.timestamp() >= end or n >= MAX_COUNTED:
            break
        n += 1
    return n
