"""Parsing the positions and times that ``--since``, ``--until`` and ``--at`` take."""

from __future__ import annotations

import re
import time
from datetime import datetime

from evq.eventlog.errors import InvalidArguments

_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_time(text: str, *, now: float | None = None) -> float:
    """An ISO 8601 time (local time when it has no offset), or a relative one such as ``2h``
    (that long ago), as unix seconds."""
    now = time.time() if now is None else now
    m = _RELATIVE.match(text.strip())
    if m:
        return now - float(m.group(1)) * _UNIT[m.group(2)]
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise InvalidArguments(f"{text!r} is not a time: use ISO 8601 (2026-11-25T10:00, "
                               "with or without an offset) or a relative time such as 30m, 2h, "
                               "1d") from None
    try:
        return when.timestamp()
    except (ValueError, OverflowError, OSError):  # local time near year 1 or 9999
        raise InvalidArguments(f"{text!r} is out of range: use a time after 1970-01-01 and "
                               "before the year 10000") from None


def parse_point(text: str, *, now: float | None = None) -> tuple[int | None, float | None]:
    """A ``POS|TIME`` argument: ``(seq, None)`` for a log position, ``(None, ts)`` for a time."""
    if text.strip().isdigit():
        return int(text), None
    try:
        return None, parse_time(text, now=now)
    except InvalidArguments:
        raise InvalidArguments(f"{text!r} is neither a log position (an integer seq) nor a time "
                               "(ISO 8601, or relative such as 30m, 2h, 1d)") from None


def parse_age(text: str) -> float:
    """A duration such as ``7d`` or ``12h``, in seconds."""
    m = _RELATIVE.match(text.strip())
    if not m:
        raise InvalidArguments(f"{text!r} is not an age: use a number and a unit, such as 7d, "
                               "12h or 30m")
    return float(m.group(1)) * _UNIT[m.group(2)]
