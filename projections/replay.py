"""Replay: derive the projections again from the log (and its archive), through the same
apply-functions as the live path, starting from the newest usable snapshot.

Replaying into the live store holds its write lock from the first read to the last write, so
workers wait (up to their busy timeout) instead of appending events that the rebuild would miss.
Replaying into another store reads the source in one read transaction (a consistent view that
does not block workers). Either way an event this version cannot decode stops the replay before
anything is written: the transaction rolls back and the projections stay as they were.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import msgspec

from evq.eventlog import archive
from evq.eventlog.archive import Row, decode_row
from evq.eventlog.codec import Record
from evq.eventlog.errors import InvalidArguments
from evq.eventlog.sqllog import SqlLog

from . import snapshot
from .apply import Deltas
from .groups import group_events
from .model import JOB_COLUMNS, JobRow
from .tables import row_writes
from .workers import worker_events

if TYPE_CHECKING:
    from .store import Store

Progress = Callable[[int, int], None]  # (events replayed, events expected)
PROGRESS_EVERY = 20_000


@dataclass
class Replayed:
    """What a replay did."""

    events: int  # events applied (after the snapshot)
    start: int  # the position it started after: the snapshot's, or 0
    end: int  # the position of the last event it replayed (``start`` if none)
    snapshot_ts: float | None = None


def replay(source: Store, *, into: Store | None = None, since: int | None = None,
           since_ts: float | None = None, until: int | None = None,
           until_ts: float | None = None, copy_events: bool = False,
           progress: Progress | None = None) -> Replayed:
    """Rebuild the projections of ``into`` (default: ``source`` itself) from ``source``'s log,
    up to position ``until`` and time ``until_ts``; with ``since``/``since_ts``, from the newest
    snapshot at or before that point. ``copy_events`` also writes the events replayed (the
    snapshot's too) to ``into``'s log."""
    target = into or source
    if target is source and (until is not None or until_ts is not None):
        raise InvalidArguments("the live projections follow the whole log: a replay up to a past "
                               "point needs another store to write to (--into FILE)")
    with _reading(source.log, write=target is source), target.log.transaction():
        end = source.log.last_seq() if until is None else until
        start = None
        if since is not None or since_ts is not None:
            bound = None if since is None else since if until is None else min(since, until)
            start = snapshot.newest(source.log, at_or_before=bound,
                                    ts_at_or_before=_min(since_ts, until_ts))
        rows: dict[int, JobRow] = dict(start.jobs) if start else {}
        deltas = Deltas()
        first = start.seq if start else 0
        copied: list[Row] = []
        unattached: list[Record] = []  # events of no job: workers' and groups' beginnings
        count = 0
        last = first  # the position of the last event replayed

        def records() -> Iterator[Record]:
            nonlocal count, last
            reader = archive.rows(source.log, since=0 if copy_events else first, until=end,
                                  brief=not copy_events)
            for row in reader:
                if until_ts is not None and row[1] > until_ts:
                    continue
                if copy_events:
                    copied.append(row)
                    if len(copied) >= 10_000:
                        _copy(target.log, copied)
                    if row[0] <= first:
                        continue
                count += 1
                last = row[0]
                if progress and count % PROGRESS_EVERY == 0:
                    progress(count, end - first)
                record = decode_row(row)
                if not record.event.job_id:
                    unattached.append(record)
                yield record

        from .store import _apply_all

        _apply_all(records(), rows, deltas)
        _copy(target.log, copied)
        _write(target, rows, deltas, start.counters if start else {})
        target.workers.record(worker_events(unattached))
        target.groups.record(group_events(unattached), deltas.groups)
        target.groups.reindex_deps(rows.values())
    if progress:
        progress(count, count)
    return Replayed(count, first, last, start.ts if start else None)


def _write(target: Store, rows: dict[int, JobRow], deltas: Deltas,
           counters: dict[str, snapshot.Table]) -> None:
    """Make the projection tables of ``target`` hold ``rows``, and the snapshot's ``counters``
    plus ``deltas``; only the job rows that differ are written (a repair rewrites what was
    wrong, not every row)."""
    stored = {t[0]: t for t in target.log.execute(f"SELECT {', '.join(JOB_COLUMNS)} FROM jobs")}
    changed = [r for r in rows.values() if stored.get(r.id) != msgspec.structs.astuple(r)]
    before = {r.id: JobRow(*stored[r.id]) for r in changed if r.id in stored}
    target.tables.save(row_writes(changed, stored.keys() - rows.keys(), before))
    snapshot.restore_counters(target.log, counters)
    target.tables.bump(deltas)


def _min(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else min(a, b)


def _copy(log: SqlLog, rows: list[Row]) -> None:
    """Write stored rows as they are into ``log`` (inside its transaction), and empty ``rows``."""
    log.executemany("INSERT INTO events(seq, ts, type, job_id, queue, body) "
                    "VALUES (?, ?, ?, ?, ?, ?)", rows)
    rows.clear()


@contextlib.contextmanager
def _reading(log: SqlLog, *, write: bool) -> Iterator[None]:
    """An exclusive transaction (for a replay into the same store), or one read
    transaction."""
    if write:
        with log.exclusive():
            yield
        return
    with log.reading():  # joins the exclusive transaction that ``Store.verify`` holds
        yield
