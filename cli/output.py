"""Printing for people (rich tables) and for scripts (JSON)."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import msgspec

_encoder = msgspec.json.Encoder()


def print_json(value: Any) -> None:
    """One JSON document on stdout."""
    sys.stdout.write(_encoder.encode(msgspec.to_builtins(value)).decode() + "\n")


def console() -> Any:
    """A rich console that prints text as it is (no markup, no highlighting: stored strings
    such as ``[bold]x[/]`` stay inert); not squeezed to 80 columns when the output is not a
    terminal."""
    from rich.console import Console

    width = None if sys.stdout.isatty() else 200
    return Console(width=width, markup=False, highlight=False, emoji=False)


# Control characters (C0, DEL, C1) and the Unicode ones that reorder or split lines, as escapes
_CONTROLS = [*range(0x20), *range(0x7F, 0xA0), 0x2028, 0x2029, *range(0x202A, 0x202F),
             *range(0x2066, 0x206A), 0x200E, 0x200F, 0x061C]
_ESCAPES = {c: f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}" for c in _CONTROLS}
_ESCAPES_KEEPING_LINES = {**_ESCAPES, ord("\n"): "\n"}
CUT = 300  # characters of one value shown in a table or a line (the JSON output has all)


def inert(value: object, *, lines: bool = False, cut: int | None = CUT) -> str:
    """A stored value as text that a terminal shows as it is: control characters escaped
    (``\\x1b``; with ``lines``, newlines kept), and cut after ``cut`` characters with a note
    of how many more there are (linear time, whatever the size)."""
    text = value if isinstance(value, str) else str(value)
    more = 0
    if cut is not None and len(text) > cut:
        text, more = text[:cut], len(text) - cut
    text = text.translate(_ESCAPES_KEEPING_LINES if lines else _ESCAPES)
    return f"{text}... ({more:,} more characters)" if more else text


def print_table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """A table for people; empty cells for None, stored values inert (see :func:`inert`)."""
    from rich.table import Table

    table = Table(title=None if title is None else inert(title), title_justify="left",
                  header_style="bold")
    for c in columns:
        table.add_column(c, overflow="fold")
    for row in rows:
        table.add_row(*("" if v is None else inert(v) for v in row))
    console().print(table)


def when(ts: float | None) -> str | None:
    """A unix time as local ``YYYY-MM-DD HH:MM:SS.mmm`` (a number out of the calendar's range,
    written by another program, as the number)."""
    if ts is None:
        return None
    try:
        return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    except (OverflowError, ValueError, OSError, TypeError):
        return repr(ts)


def seconds(value: float | None) -> str | None:
    """A duration, in ms below a second."""
    if value is None:
        return None
    return f"{value * 1000:.1f}ms" if value < 1 else f"{value:.2f}s"
