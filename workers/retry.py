"""Retry decisions, as pure functions of the job, the failure and ``now``."""

from __future__ import annotations

import json
from collections.abc import Sequence

from evq.eventlog.errors import ConfigError
from evq.eventlog.events import Event, JobCancelled, JobDead, JobRetryScheduled, LeaseExpired
from evq.projections.model import RUNNING, JobRow

BackoffSpec = float | Sequence[float] | str | tuple[str, float]


def backoff_schedule(spec: BackoffSpec, tries: int, base: float = 1.0) -> list[float]:
    """The waits before retries 1..tries-1, from a job's ``backoff`` setting.

    ``spec`` is a number of seconds (fixed), a list of seconds (the last one repeats),
    ``"exponential"`` (base, 2*base, 4*base...) or ``"linear"`` (base, 2*base, 3*base...),
    optionally as ``("exponential", base)`` or ``"exponential:60"``.
    """
    n = max(tries - 1, 0)
    if isinstance(spec, str) and ":" in spec:
        kind, _, num = spec.partition(":")
        spec = (kind, _number(num, spec))
    if isinstance(spec, tuple) and len(spec) == 2 and isinstance(spec[0], str):
        spec, base = spec[0], _number(spec[1], spec)
    if isinstance(spec, str):
        if spec == "exponential":
            return [base * 2**i for i in range(n)]
        if spec == "linear":
            return [base * (i + 1) for i in range(n)]
        raise ConfigError(f"backoff {spec!r}: use seconds, a list, 'exponential' or 'linear'")
    if isinstance(spec, int | float):
        return [_number(spec, spec)] * n
    delays = [_number(d, spec) for d in spec]
    if not delays:
        return [0.0] * n
    return [delays[min(i, len(delays) - 1)] for i in range(n)]


def _number(value: object, spec: object) -> float:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ConfigError(f"backoff {spec!r}: {value!r} is not a number of seconds") from None
    if not 0 <= number < float("inf"):
        raise ConfigError(f"backoff {spec!r}: waits must be finite and not negative")
    return number


def after_failure(row: JobRow, now: float, *, final: bool = False
                  ) -> JobRetryScheduled | JobDead | JobCancelled:
    """What follows a failed attempt of ``row`` (as claimed): a retry after its backoff, or
    death when its tries are used up or the failure is ``final``; no retry if a cancel was
    requested: the job is cancelled."""
    if row.cancel_requested is not None:
        return JobCancelled(job_id=row.id, ts=now, attempt=row.attempt,
                            reason=row.cancel_requested)
    failures = row.failures + 1
    if final or failures >= row.tries:
        return JobDead(job_id=row.id, ts=now, attempt=row.attempt)
    delays = json.loads(row.backoff)
    wait = delays[min(failures - 1, len(delays) - 1)] if delays else 0.0
    return JobRetryScheduled(job_id=row.id, ts=now, attempt=row.attempt, run_at=now + wait)


def after_lease_expired(row: JobRow, now: float) -> list[Event]:
    """What settles the expired lease of ``row``: ``LeaseExpired``, and if its job had started,
    the decision after that failed attempt (a job that never started goes back to pending, or
    is cancelled if that was requested)."""
    expired = LeaseExpired(job_id=row.id, ts=now, attempt=row.attempt, worker=row.worker or "")
    if row.state == RUNNING:
        return [expired, after_failure(row, now)]
    if row.cancel_requested is not None:
        return [expired, JobCancelled(job_id=row.id, ts=now, reason=row.cancel_requested)]
    return [expired]
