"""Unique jobs and limits as a job type declares them, and the keys they give each job."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import msgspec

from evq.eventlog.errors import ConfigError, InvalidArguments
from evq.eventlog.events import Limits
from evq.workers.retry import is_int, is_number

if TYPE_CHECKING:
    from .jobs import Job

Key = str | Callable[[Any], object] | None
"""A limit key: a string, a function of the job that gives one, or None for the job's name."""

MAX_KEY = 200  # characters; a longer key is kept as its hash


class RateLimit:
    """At most ``limit`` jobs of ``key`` start in any window of ``per`` seconds, across every
    worker. ``key``: a string shared by the job types that share the limit, or a function of the
    job (``lambda job: f"tenant:{job.tenant}"``) for a limit per value; default: the job's name.
    """

    def __init__(self, limit: int, *, per: float, key: Key = None) -> None:
        if not is_int(limit) or limit < 1:
            raise ConfigError(f"RateLimit: limit must be an integer of at least 1, not {limit!r}")
        if not is_number(per) or not 0 < per < math.inf:
            raise ConfigError(f"RateLimit: per must be a positive number of seconds, not {per!r}")
        _check_key(key, "RateLimit: key")
        self.limit, self.per, self.key = limit, float(per), key

    def __repr__(self) -> str:
        return f"RateLimit({self.limit}, per={self.per:g}, key={self.key!r})"


def check(cls: type[Job], where: str) -> None:
    """Refuse unusable unique and limit settings of a job type, when it is defined."""
    if cls.unique_for is not None and not (is_number(cls.unique_for)
                                           and 0 <= cls.unique_for < math.inf):
        raise ConfigError(f"{where}: unique_for must be a number of seconds (0 or more) or "
                          f"None, not {cls.unique_for!r}")
    if cls.rate_limit is not None and not isinstance(cls.rate_limit, RateLimit):
        raise ConfigError(f"{where}: rate_limit must be an evq.RateLimit or None, not "
                          f"{cls.rate_limit!r}")
    conc = cls.concurrency_limit
    if conc is not None and (not is_int(conc) or conc < 1):
        raise ConfigError(f"{where}: concurrency_limit must be an integer of at least 1 or "
                          f"None, not {conc!r}")
    _check_key(cls.concurrency_key, f"{where}: concurrency_key")
    if cls.rate_limit is not None and cls.concurrency_key is not None:
        raise ConfigError(f"{where}: give one key: with a rate limit, its key is the "
                          "concurrency limit's too")


def unique_key(job: Job) -> str:
    """The unique key ``job.unique_key()`` gives, as stored; :class:`InvalidArguments` if it is
    neither a string nor a value that encodes as JSON."""
    return key_text(job.unique_key(), f"{job.job_name}: unique_key()")


def limits(job: Job) -> Limits | None:
    """The limits of ``job``'s type, with the key of this job (None if it has none)."""
    cls = type(job)
    rate, conc = cls.rate_limit, cls.concurrency_limit
    if rate is None and conc is None:
        return None
    spec = rate.key if rate is not None else cls.concurrency_key
    if spec is None:
        key = cls.job_name
    elif isinstance(spec, str):
        key = spec
    else:
        key = key_text(spec(job), f"{cls.job_name}: the limit key")
    return Limits(key=key, rate=rate.limit if rate else 0, per=rate.per if rate else 0.0,
                  concurrency=conc or 0)


def key_text(value: object, what: str) -> str:
    """A key as stored: a string as it is, another value as its canonical JSON; one longer than
    ``MAX_KEY`` characters as ``sha256:`` and its hash."""
    if not isinstance(value, str):
        try:
            value = msgspec.json.encode(value, order="sorted").decode()
        except (TypeError, ValueError, RecursionError) as exc:
            raise InvalidArguments(f"{what} must give a string or a value that encodes as "
                                   f"JSON, not {value!r} ({exc})") from None
    if not value:
        raise InvalidArguments(f"{what} gave an empty key")
    if len(value) > MAX_KEY:
        return "sha256:" + hashlib.sha256(value.encode()).hexdigest()
    return value


def _check_key(key: object, what: str) -> None:
    if key is not None and not callable(key) and not (isinstance(key, str) and key):
        raise ConfigError(f"{what} must be a non-empty string, a function of the job or None, "
                          f"not {key!r}")
    if isinstance(key, str) and len(key) > MAX_KEY:
        raise ConfigError(f"{what} is longer than {MAX_KEY} characters")
