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
    """The next tick that a scheduler running since ``since`` dispatches at ``now``, for a
    schedule whose last recorded tick is ``last_tick`` (None: never; then ticks before
    ``since`` do not count), or None.

    Ticks from ``since`` on are dispatched one by one, in order, each once (a scheduler that
    wakes late, or could not write for a while, catches up every one). Ticks before ``since``
    fell while no scheduler ran: with ``missed`` "once" the latest of them is dispatched (one
    catch-up), with "skip" none; the others are counted as ``skipped`` by the next dispatch.
    """
    begin = since if last_tick is None else last_tick
    count, last = _missed(cron, begin, min(since, now))
    if last is not None and missed == "once":
        return Due(last, count - 1)
    following = after(cron, begin if last is None else last)
    if following and following[0] <= now:
        return Due(following[0], count)
    return None


def _missed(cron: Cron, begin: float, end: float) -> tuple[int, float | None]:
    """How many ticks fall after ``begin`` and before ``end`` (counted up to
    :data:`MAX_COUNTED`), and the last of them."""
    count, last = 0, None
    for t in CronSim(cron.expr, _at(cron, begin)):
        ts = t.timestamp()
        if ts >= end:
            break
        count, last = count + 1, ts
        if count == MAX_COUNTED:  # a long gap: count no further, go to its end
            return count, latest(cron, end - 1e-6)
    return count, last
