"""Retry decisions, as pure functions of the job, the failure and ``now`` (and, for jitter, a
random source that tests replace)."""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable, Sequence

from evq.eventlog.errors import ConfigError
from evq.eventlog.events import Event, JobCancelled, JobDead, JobRetryScheduled, LeaseExpired
from evq.projections.model import RUNNING, JobRow


class Backoff:
    """A backoff with jitter: ``evq.Exponential(base=10, jitter=0.2)`` waits 10, 20, 40... s,
    each drawn from ±20% of that when the retry is decided (and recorded in its event)."""

    def __init__(self, base: float = 1.0, *, jitter: float = 0.0) -> None:
        name = type(self).__name__
        if not is_number(base) or not 0 < base < math.inf:
            raise ConfigError(f"{name}: base must be a positive number of seconds, not {base!r}")
        if not is_number(jitter) or not 0 <= jitter <= 1:
            raise ConfigError(f"{name}: jitter must be a number from 0 to 1, not {jitter!r}")
        self.base = float(base)
        self.jitter = float(jitter)

    def wait(self, retry: int) -> float:
        """The wait before retry number ``retry`` (from 0), without jitter."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base={self.base:g}, jitter={self.jitter:g})"


class Exponential(Backoff):
    """base, 2*base, 4*base... seconds."""

    def wait(self, retry: int) -> float:
        return self.base * 2**retry


class Linear(Backoff):
    """base, 2*base, 3*base... seconds."""

    def wait(self, retry: int) -> float:
        return self.base * (retry + 1)


class Fixed(Backoff):
    """base seconds before every retry."""

    def wait(self, retry: int) -> float:
        return self.base


def is_int(value: object) -> bool:
    """An int, not a bool."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: object) -> bool:
    """An int or a float, not a bool."""
    return isinstance(value, int | float) and not isinstance(value, bool)


BackoffSpec = float | Sequence[float] | str | tuple[str, float] | Backoff


def backoff_schedule(spec: BackoffSpec, tries: int, base: float = 1.0) -> list[float]:
    """The waits before retries 1..tries-1, from a job's ``backoff`` setting.

    ``spec`` is a number of seconds (fixed), a list of seconds (the last one repeats),
    ``"exponential"`` (base, 2*base, 4*base...) or ``"linear"`` (base, 2*base, 3*base...),
    optionally as ``("exponential", base)`` or ``"exponential:60"``, or a :class:`Backoff`.
    """
    n = max(tries - 1, 0)
    if isinstance(spec, Backoff):
        return [spec.wait(i) for i in range(n)]
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


def after_failure(row: JobRow, now: float, *, final: bool = False,
                  rand: Callable[[], float] = random.random
                  ) -> JobRetryScheduled | JobDead | JobCancelled:
    """What follows a failed attempt of ``row`` (as claimed): a retry after its backoff (moved
    by up to ``row.jitter`` of it either way, drawn from ``rand``), or death when its tries are
    used up or the failure is ``final``; no retry if a cancel was requested: the job is
    cancelled."""
    if row.cancel_requested is not None:
        return JobCancelled(job_id=row.id, ts=now, attempt=row.attempt,
                            reason=row.cancel_requested)
    failures = row.failures + 1
    if final or failures >= row.tries:
        return JobDead(job_id=row.id, ts=now, attempt=row.attempt)
    delays = json.loads(row.backoff)
    wait = delays[min(failures - 1, len(delays) - 1)] if delays else 0.0
    if row.jitter:
        wait *= 1 + row.jitter * (2 * rand() - 1)
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
