"""Analytics over the latest jobs: outcomes, retries, failure rate, wait and run times with
percentiles, and throughput, per queue and per job type.

The all-time counters are kept by the projections (``queue_stats``, ``job_type_stats``); the
distributions are computed here from the newest ``window`` rows of ``jobs``, read backwards along
its primary key: one query whose cost depends on the window, not on the size of the log, and no
extra write on the hot path.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from evq.eventlog.sqllog import SqlLog, Where

from .model import CANCELLED, FAILED, SUCCEEDED

WINDOW = 1_000  # jobs: reading one costs some 3 us (rows are wide: payload, traceback, result)
THROUGHPUT_SPAN = 300.0  # seconds over which finished jobs are counted for the rate per minute


def percentile(sorted_values: Sequence[float], p: float) -> float | None:
    """The ``p``-th percentile (nearest rank) of already sorted values."""
    if not sorted_values:
        return None
    k = max(0, math.ceil(p / 100 * len(sorted_values)) - 1)
    return sorted_values[k]


class _Group:
    def __init__(self) -> None:
        self.states: defaultdict[str, int] = defaultdict(int)
        self.retried = 0  # jobs that needed more than one attempt
        self.failures = 0  # failed attempts
        self.waits: list[float] = []
        self.runs: list[float] = []
        self.finished_recently = 0

    def summary(self, minutes: float) -> dict[str, Any]:
        done = self.states[SUCCEEDED] + self.states[FAILED]
        attempts = self.states[SUCCEEDED] + self.failures
        waits, runs = sorted(self.waits), sorted(self.runs)
        return {
            "jobs": sum(self.states.values()), "succeeded": self.states[SUCCEEDED],
            "failed": self.states[FAILED], "cancelled": self.states[CANCELLED],
            "unfinished": sum(self.states.values()) - done - self.states[CANCELLED],
            "retried_jobs": self.retried, "failed_attempts": self.failures,
            "failure_rate": self.failures / attempts if attempts else 0.0,
            **{f"wait_p{p}": percentile(waits, p) for p in (50, 95, 99)},
            **{f"run_p{p}": percentile(runs, p) for p in (50, 95, 99)},
            "per_minute": round(self.finished_recently / minutes, 2) if minutes else 0.0,
        }


def recent(log: SqlLog, now: float, window: int = WINDOW,
           queue: str | None = None) -> dict[str, Any]:
    """Figures per queue and per job type over the newest ``window`` jobs (of ``queue``)."""
    where = Where().given(("queue = ?", queue))
    rows = log.read_rows(
        "SELECT queue, name, state, failures, attempt, wait, duration, finished_at, "
        f"dispatched_at FROM jobs WHERE {where} ORDER BY id DESC LIMIT {int(window)}",
        where.params)
    queues: defaultdict[str, _Group] = defaultdict(_Group)
    types: defaultdict[str, _Group] = defaultdict(_Group)
    since = now - THROUGHPUT_SPAN
    for queue, name, state, failures, attempt, wait, duration, finished_at, _ in rows:
        for g in (queues[queue], types[name]):
            g.states[state] += 1
            g.failures += failures
            g.retried += attempt > 1
            if wait is not None:
                g.waits.append(wait)
            if state == SUCCEEDED and duration is not None:
                g.runs.append(duration)
            if state in (SUCCEEDED, FAILED) and finished_at is not None and finished_at >= since:
                g.finished_recently += 1
    # when the window does not reach back over the whole span, count over what it covers
    oldest = rows[-1][8] if len(rows) == window else since
    minutes = (now - max(since, oldest)) / 60
    return {"window": len(rows), "span_minutes": round(minutes, 2),
            "queues": {k: g.summary(minutes) for k, g in sorted(queues.items())},
            "job_types": {k: g.summary(minutes) for k, g in sorted(types.items())}}
