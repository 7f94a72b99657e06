"""Middleware: code that wraps every attempt of a job, in the process that runs it.

A middleware is an :class:`Middleware` whose ``__call__(job, ctx, call_next)`` runs around the
attempt: code before ``call_next()`` runs before ``handle()``, code after it once ``handle()`` has
returned (an async job awaited), and an ``except`` around it sees what the job raised. Whatever
it returns is the job's result; what it raises fails the attempt as the job's own error would
(retries apply). The worker's middleware (``Worker(middleware=[...])``) wraps the job class's
(``middleware = [...]``), each list outermost first.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import msgspec

from evq.eventlog.errors import ConfigError


class JobContext(msgspec.Struct, frozen=True, kw_only=True):
    """What a middleware is told about the attempt it wraps."""

    id: int
    name: str
    queue: str
    attempt: int
    meta: dict[str, str] = {}  # what the dispatch carried (the dispatcher's trace context)


class Middleware:
    """Base of middleware: override ``__call__``; the default only goes on."""

    def __call__(self, job: Any, ctx: JobContext, call_next: Callable[[], Any]) -> Any:
        return call_next()


def checked(middleware: object, where: str) -> tuple[Middleware, ...]:
    """``middleware`` as a tuple, or a ``ConfigError`` if it is not a list of instances."""
    if not isinstance(middleware, list | tuple) or not all(
            isinstance(m, Middleware) for m in middleware):
        raise ConfigError(f"{where}: middleware must be a list of evq.Middleware instances, "
                          f"not {middleware!r}")
    return tuple(middleware)


def wrapped(chain: Sequence[Middleware], job: Any, ctx: JobContext,
            call: Callable[[], Any]) -> Callable[[], Any]:
    """``call`` inside ``chain``, its first middleware outermost."""
    for middleware in reversed(chain):
        call = functools.partial(middleware, job, ctx, call)
    return call
