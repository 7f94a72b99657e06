"""Redispatch: queue past jobs again as new jobs, each linked to its original by ``replay_of``."""

from __future__ import annotations

import time
from collections.abc import Sequence

import msgspec

from evq.eventlog.events import JobDispatched, Limits
from evq.eventlog.sqllog import Where
from evq.projections.model import JOB_COLUMNS, JobRow
from evq.projections.store import Store
from evq.projections.tables import LINKS_INDEX


def matching(store: Store, *, states: Sequence[str] = (), name: str | None = None,
             queue: str | None = None, after: int = 0, until: int | None = None,
             since_ts: float | None = None, until_ts: float | None = None) -> list[JobRow]:
    """Jobs dispatched after position ``after`` (and up to ``until``; from ``since_ts`` up to
    ``until_ts``) matching the filters, in dispatch order."""
    where = Where("id > ?", params=[after]).given(
        ("id <= ?", until), ("dispatched_at >= ?", since_ts), ("dispatched_at <= ?", until_ts),
        ("name = ?", name), ("queue = ?", queue)).among("state", states)
    return [JobRow(*t) for t in store.log.read_rows(
        f"SELECT {', '.join(JOB_COLUMNS)} FROM jobs WHERE {where} ORDER BY id", where.params)]


def again(row: JobRow, now: float) -> JobDispatched:
    """A new job with the original's name, queue, arguments and settings (its limits too, not
    its unique key: an operator asked for it), ready now."""
    limits = None if row.limit_key is None else Limits(
        key=row.limit_key, rate=row.rate_limit or 0, per=row.rate_per or 0.0,
        concurrency=row.concurrency_limit or 0)
    return JobDispatched(
        ts=now, name=row.name, queue=row.queue, payload=msgspec.Raw(row.payload.encode()),
        priority=row.priority, run_at=now, tries=row.tries,
        backoff=msgspec.json.decode(row.backoff), timeout=row.timeout,
        replay_of=str(row.id), limits=limits)


def redispatch(store: Store, rows: Sequence[JobRow], *, now: float | None = None) -> list[int]:
    """Dispatch ``rows`` again in one transaction; returns the new jobs' ids."""
    now = time.time() if now is None else now
    if not rows:
        return []
    return [r.seq for r in store.append([again(r, now) for r in rows])]


def copies(store: Store, job_id: int) -> list[int]:
    """The jobs dispatched again from ``job_id`` by :func:`redispatch`."""
    return [i for (i,) in store.log.read_rows(
        f"SELECT id FROM jobs{store.log.index_hint(LINKS_INDEX)} WHERE replay_of = ? "
        "ORDER BY id", (str(job_id),))]
