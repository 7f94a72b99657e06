"""Rate and concurrency limits: which ready jobs a claim may lease, and until when it holds back
the others.

The jobs that share a limit key share its slots: at most ``concurrency_limit`` of them leased or
running, and at most ``rate_limit`` starts in any ``rate_per`` seconds (a job leased and not
started yet counts as starting now). Both are read from the ``jobs`` rows of the key, under a lock
of the key (:meth:`SqlLog.lock_keys`) held until the claim commits, so that two claims cannot both
take the last slot. A job held back by its rate limit is put off (``JobHeld``) until the time its
slot frees; one held back by its concurrency limit stays ready, and the commit that ends a job of
the key wakes the workers of its queue. :func:`decide` is pure; :class:`Gate` reads and locks.
"""

from __future__ import annotations

import math
from bisect import insort
from collections.abc import Sequence
from dataclasses import dataclass, field

from evq.eventlog.events import JobHeld

from .model import LEASED, JobRow
from .tables import SqlTables


@dataclass
class Usage:
    """The slots of one limit key, as a claim sees them and takes them."""

    held: int = 0  # jobs leased or running
    starts: list[float] = field(default_factory=list)  # ascending: starts in the window, ``now``
    # for each job leased and not started yet, and the times promised to held jobs


def decide(row: JobRow, usage: Usage, now: float) -> float | None:
    """None if ``row`` may be leased at ``now`` (``usage`` then counts it); else the time from
    which its rate limit lets it start (``usage`` then counts it as starting then; a job leased
counts as starting at ``now``), or ``inf``
    while its concurrency limit is reached."""
    if row.concurrency_limit and usage.held >= row.concurrency_limit:
        return math.inf
    if row.rate_limit and row.rate_per:
        window = [t for t in usage.starts if t > now - row.rate_per]
        over = len(window) - row.rate_limit  # how many must leave the window before it starts
        if over >= 0:
            until = window[over] + row.rate_per
            insort(usage.starts, until)
            return until
    usage.held += 1
    insort(usage.starts, now)
    return None


def reason(row: JobRow) -> str:
    return f"rate limit of {row.limit_key}: {row.rate_limit} per {row.rate_per:g}s"


class Gate:
    """The limits as one claim applies them, batch after batch of ready rows."""

    def __init__(self, tables: SqlTables, now: float) -> None:
        self.tables = tables
        self.now = now
        self.usage: dict[str, Usage] = {}
        self.full: set[str] = set()  # keys of which this claim leases no more jobs
        self.holds: list[JobHeld] = []
        self.held: list[JobRow] = []  # the rows of the jobs held back by ``holds``

    def admit(self, rows: Sequence[JobRow]) -> list[JobRow]:
        """The rows that may be leased now, in order; holds back the others."""
        keys = {r.limit_key for r in rows if r.limit_key is not None} - self.full
        new = keys - self.usage.keys()
        self.full |= self.tables.log.lock_keys(new)  # taken by another claim: left to it
        for key in sorted(new - self.full):
            per = max((r.rate_per or 0.0) for r in rows if r.limit_key == key)
            states, starts = self.tables.limit_usage(key, self.now - per if per else None)
            self.usage[key] = Usage(len(states), sorted([*starts,
                                                         *[self.now] * states.count(LEASED)]))
        admitted = []
        stopped = set()
        for r in rows:
            if r.limit_key is None:
                admitted.append(r)
                continue
            key = r.limit_key
            if key in self.full:
                continue
            until = decide(r, self.usage[key], self.now)
            if until is None:
                admitted.append(r)
            elif until == math.inf:
                self.full.add(key)
            else:
                stopped.add(key)
                self.held.append(r)
                self.holds.append(JobHeld(job_id=r.id, ts=self.now, run_at=until,
                                          reason=reason(r)))
        self.full |= stopped
        return admitted
