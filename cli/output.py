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
    """A rich console; not squeezed to 80 columns when the output is not a terminal."""
    from rich.console import Console

    return Console() if sys.stdout.isatty() else Console(width=200)


def print_table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """A table for people; empty cells for None."""
    from rich.table import Table

    table = Table(title=title, title_justify="left", header_style="bold")
    for c in columns:
        table.add_column(c, overflow="fold")
    for row in rows:
        table.add_row(*("" if v is None else str(v) for v in row))
    console().print(table)


def when(ts: float | None) -> str | None:
    """A unix time as local ``YYYY-MM-DD HH:MM:SS.mmm``."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def seconds(value: float | None) -> str | None:
    """A duration, in ms below a second."""
    if value is None:
        return None
    return f"{value * 1000:.1f}ms" if value < 1 else f"{value:.2f}s"
