"""The ``schedules`` projection: per cron schedule, its latest tick and dispatch.

A row is also the guard that makes each tick dispatch once, whatever the number of schedulers:
the transaction that records a tick first upserts the schedule's row, changing it only if the
tick is later than the row's ``last_tick`` (:meth:`ScheduleTable.take`). Of two schedulers that
race for one tick, the second waits for the first to commit (SQLite: its write lock; PostgreSQL:
the row, or the first one's insert of it) and then finds the tick taken: it appends nothing.

On PostgreSQL the row is locked before the append lock, as the rows of ``jobs`` are (see
:mod:`evq.eventlog.postgres`): every transaction that writes a ``schedules`` row takes it first,
so none waits for it while it holds the append lock, and the write of the row's other columns
after the append (:meth:`ScheduleTable.record`) is to a row it holds.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import msgspec

from evq.eventlog.codec import Record
from evq.eventlog.events import ScheduleTicked
from evq.eventlog.sqllog import SqlLog

from .apply import apply_schedule
from .model import SCHEDULE_COLUMNS, ScheduleRow
from .tables import column_types, replace_sql

_COLS = ", ".join(SCHEDULE_COLUMNS)
_UPSERT = replace_sql("schedules", SCHEDULE_COLUMNS)
_NEW = f"INSERT INTO schedules({_COLS}) VALUES ({', '.join('?' * len(SCHEDULE_COLUMNS))}) "
# a later tick takes the row; an earlier or equal one changes nothing and gets no row back
_TAKE = _NEW + ("ON CONFLICT(name) DO UPDATE SET last_tick = excluded.last_tick "
                "WHERE schedules.last_tick IS NULL OR schedules.last_tick < excluded.last_tick "
                "RETURNING name")
_LOCK = _NEW + "ON CONFLICT(name) DO UPDATE SET name = excluded.name RETURNING name"


def ticked(records: Iterable[Record]) -> list[ScheduleTicked]:
    return [r.event for r in records if isinstance(r.event, ScheduleTicked)]


class ScheduleTable:
    """Reads and writes of ``schedules``, on the log's connection."""

    def __init__(self, log: SqlLog) -> None:
        self.log = log

    @staticmethod
    def create(log: SqlLog) -> None:
        log.create_table("schedules", column_types(ScheduleRow), ("name",))

    def take(self, name: str, tick: float | None) -> bool:
        """Inside a write transaction, before anything is appended: lock the row of schedule
        ``name`` (made if missing) and, with a ``tick``, make it the row's last tick if it is
        later. Returns False if the tick was taken already (by this or another scheduler)."""
        new = msgspec.structs.astuple(ScheduleRow(name=name, last_tick=tick))
        return bool(self.log.execute(_LOCK if tick is None else _TAKE, new))

    def record(self, events: list[ScheduleTicked]) -> None:
        """Apply ticks (inside the append's transaction, to rows :meth:`take` locked)."""
        if not events:
            return
        rows = {r.name: r for r in self.get_many({e.schedule for e in events})}
        for e in events:
            rows[e.schedule] = apply_schedule(rows.get(e.schedule), e)
        self.log.executemany(_UPSERT, [msgspec.structs.astuple(r) for r in rows.values()])

    def get_many(self, names: Iterable[str]) -> list[ScheduleRow]:
        names = sorted(names)
        if not names:
            return []
        return self._rows(*self.log.among("name", names))

    def all(self) -> list[ScheduleRow]:
        return self._rows("1 = 1", [])

    def _rows(self, where: str, params: Sequence[object]) -> list[ScheduleRow]:
        return [ScheduleRow(*t) for t in self.log.read_rows(
            f"SELECT {_COLS} FROM schedules WHERE {where} ORDER BY name", params)]
