"""Job types and middleware of the middleware, cancel and progress tests, also run by real
worker processes (``evq work --app tests.i11_jobs``) and process-pool children.

Always import this module as ``tests.i11_jobs``: a second import under another module name would
register the same job names for different classes. Job names start with ``i11.``. What runs in
another process is observed through the log: a middleware here marks the job's result.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import evq

SEEN: defaultdict[str, list[Any]] = defaultdict(list)  # what Record saw, by job key


class Tag(evq.Middleware):
    """Wraps the result: ``{label: result, "ctx": [...], "pid": ...}``."""

    def __init__(self, label: str) -> None:
        self.label = label

    def __call__(self, job: Any, ctx: evq.JobContext, call_next: Callable[[], Any]) -> Any:
        return {self.label: call_next(), "ctx": [ctx.id, ctx.name, ctx.queue, ctx.attempt],
                "pid": os.getpid()}


class Record(evq.Middleware):
    """Records before, after (with the result) and on error, into ``SEEN[job.key]``."""

    def __init__(self, label: str) -> None:
        self.label = label

    def __call__(self, job: Any, ctx: evq.JobContext, call_next: Callable[[], Any]) -> Any:
        seen = SEEN[job.key]
        seen.append((self.label, "before", ctx.attempt))
        try:
            result = call_next()
        except BaseException as exc:
            seen.append((self.label, "error", type(exc).__name__))
            raise
        seen.append((self.label, "after", result))
        return result


class Refuse(evq.Middleware):
    """Fails every attempt before the job runs."""

    def __call__(self, job: Any, ctx: evq.JobContext, call_next: Callable[[], Any]) -> Any:
        raise PermissionError(f"refused attempt {ctx.attempt}")


GLOBAL = [Tag("global")]  # what `evq work --middleware tests.i11_jobs:GLOBAL` names


class Tagged(evq.Job):
    """Returns its process id, inside a class middleware."""

    job_name = "i11.tagged"
    middleware = [Tag("class")]

    def handle(self) -> int:
        return os.getpid()


class Recorded(evq.Job):
    job_name = "i11.recorded"
    middleware = [Record("class")]

    key: str
    fail: bool = False

    def handle(self) -> str:
        if self.fail:
            raise TypeError("the job's own error")
        return "done"


class AsyncRecorded(evq.Job):
    job_name = "i11.async_recorded"
    middleware = [Record("class")]

    key: str

    async def handle(self) -> str:
        await asyncio.sleep(0.01)
        return "awaited"


class Refused(evq.Job):
    job_name = "i11.refused"
    tries = 2
    middleware = [Refuse()]

    def handle(self) -> str:
        return "never"


class UntilCancelled(evq.Job):
    """A sync job that reports progress, then works until it is told it is cancelled."""

    job_name = "i11.until_cancelled"
    tries = 3

    def handle(self) -> str:
        self.progress(0.4, "resized 4 of 10")
        deadline = time.time() + 60
        while not self.cancelled and time.time() < deadline:
            time.sleep(0.01)
        return "stopped" if self.cancelled else "ran out"


class AsyncSleeps(evq.Job):
    job_name = "i11.async_sleeps"
    tries = 3

    async def handle(self) -> None:
        self.progress(0.5, "half")
        await asyncio.sleep(60)


class Sleeps(evq.Job):
    """Sleeps without looking: only a kill (process pool) stops it."""

    job_name = "i11.sleeps"
    tries = 3

    def handle(self) -> None:
        self.progress(0.1)
        time.sleep(60)


class Reports(evq.Job):
    """Reports progress ``n`` times as fast as it can, then 1.0 "done"."""

    job_name = "i11.reports"

    n: int

    def handle(self) -> int:
        for i in range(self.n):
            self.progress(i / self.n, f"{i} of {self.n}")
        self.progress(1.0, "done")
        return self.n


class Jittery(evq.Job):
    """Always fails; retries after 10 s, then 20 s, each ±50%."""

    job_name = "i11.jittery"
    tries = 3
    backoff = evq.Exponential(base=10, jitter=0.5)

    def handle(self) -> None:
        raise ValueError("again")
