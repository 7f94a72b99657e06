"""Job types of the core test suite, defined once in one module so that they register once.

Every job name starts with ``core.`` so that it cannot clash with the job types of other test
modules (the registry refuses a second class under a taken name). Jobs that tests observe from
outside record into the module-level dicts below, keyed by a ``key`` argument unique to the test.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from collections import defaultdict
from typing import Any

import evq

# What jobs did, keyed by the ``key`` argument the test gave them.
CALLS: defaultdict[str, list[Any]] = defaultdict(list)
FAILED_HOOK: defaultdict[str, list[str]] = defaultdict(list)
TIMED_OUT_HOOK: defaultdict[str, int] = defaultdict(int)
CANCELLED: defaultdict[str, int] = defaultdict(int)


class Gate:
    """Lets a test hold a job in ``handle()`` until it opens the gate."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.release = threading.Event()
        self.count = 0


GATES: defaultdict[str, Gate] = defaultdict(Gate)
BARRIERS: dict[str, threading.Barrier] = {}


class Noop(evq.Job):
    job_name = "core.noop"

    n: int = 0

    def handle(self) -> int:
        return self.n


class Add(evq.Job):
    job_name = "core.add"

    a: int
    b: int

    def handle(self) -> int:
        return self.a + self.b


class Broken(evq.Job):
    job_name = "core.broken"

    def handle(self) -> None:
        raise TypeError("the job's own error")


class AsyncAdd(evq.Job):
    job_name = "core.async_add"

    a: int
    b: int

    async def handle(self) -> int:
        await asyncio.sleep(0)
        return self.a + self.b


class Configured(evq.Job):
    """Every class-level setting at once."""

    job_name = "core.configured"
    queue = "emails"
    tries = 3
    backoff = [60, 300, 900]
    timeout = 30
    priority = 10

    to: str
    subject: str = "hi"

    def handle(self) -> None:
        return None


class Retrying(evq.Job):
    """Succeeds; may be retried (for lease expiry)."""

    job_name = "core.retrying"
    tries = 3

    key: str = ""

    def handle(self) -> str:
        CALLS[self.key].append("ran")
        return "done"


class Flaky(evq.Job):
    """Always fails; three tries without waiting between them."""

    job_name = "core.flaky"
    tries = 3
    backoff = 0

    key: str

    def handle(self) -> None:
        CALLS[self.key].append("attempt")
        raise ValueError(f"boom {len(CALLS[self.key])}")

    def failed(self, error: BaseException) -> None:
        FAILED_HOOK[self.key].append(repr(error))


class Exits(evq.Job):
    """Raises a BaseException that is not an Exception: SystemExit, KeyboardInterrupt..."""

    job_name = "core.exits"

    kind: str

    def handle(self) -> None:
        if self.kind == "exit":
            sys.exit(3)
        if self.kind == "interrupt":
            raise KeyboardInterrupt
        raise CustomBase("custom base exception")


class AsyncExits(evq.Job):
    job_name = "core.async_exits"

    async def handle(self) -> None:
        await asyncio.sleep(0)
        sys.exit(3)


class CustomBase(BaseException):
    pass


class SlowSync(evq.Job):
    job_name = "core.slow_sync"
    timeout = 0.2

    key: str

    def handle(self) -> None:
        time.sleep(2)
        CALLS[self.key].append("finished anyway")

    def timed_out(self) -> None:
        TIMED_OUT_HOOK[self.key] += 1

    def failed(self, error: BaseException) -> None:
        FAILED_HOOK[self.key].append(repr(error))


class SlowAsync(evq.Job):
    job_name = "core.slow_async"
    timeout = 0.2

    key: str

    async def handle(self) -> None:
        try:
            await asyncio.sleep(2)
        except asyncio.CancelledError:
            CANCELLED[self.key] += 1
            raise

    def timed_out(self) -> None:
        TIMED_OUT_HOOK[self.key] += 1


class Held(evq.Job):
    """Runs until the test opens its gate (at most 10 s)."""

    job_name = "core.held"

    key: str

    def handle(self) -> None:
        gate = GATES[self.key]
        gate.count += 1
        gate.started.set()
        gate.release.wait(10)


class Meet(evq.Job):
    """Waits at a barrier: succeeds only if all parties run at the same time."""

    job_name = "core.meet"

    key: str

    def handle(self) -> None:
        BARRIERS[self.key].wait(timeout=10)


class ExpBackoff(evq.Job):
    job_name = "core.exp_backoff"
    tries = 4
    backoff = "exponential"


class ExpBackoffBase(evq.Job):
    job_name = "core.exp_backoff_base"
    tries = 4
    backoff = ("exponential", 60)


class LinearBackoffString(evq.Job):
    job_name = "core.linear_backoff_string"
    tries = 4
    backoff = "linear:10"


class ExpBackoffClassBase(evq.Job):
    job_name = "core.exp_backoff_class_base"
    tries = 3
    backoff = "exponential"
    backoff_base = 5


@evq.job(name="core.multiply", queue="math", tries=2)
def multiply(a: int, b: int = 2) -> int:
    return a * b


@evq.job(name="core.greet")
async def greet(name: str) -> str:
    await asyncio.sleep(0)
    return f"hello {name}"


@evq.job
def core_plain(x: int) -> int:
    """A bare ``@evq.job``: named after the function."""
    return x + 1


class QuickWithTimeout(evq.Job):
    """Well within its short timeout, once it runs (in a child that may first have to start)."""

    job_name = "core.quick_timeout"
    timeout = 0.1

    def handle(self) -> str:
        return "quick"


class RaisesNul(evq.Job):
    """Fails with a message that holds a NUL character (which PostgreSQL's text refuses)."""

    job_name = "core.raises_nul"

    def handle(self) -> None:
        raise ValueError("before\x00after")


class Step(evq.Job):
    """Records ``label`` under ``key``; fails (for good: one try) if ``fail``."""

    job_name = "core.step"

    key: str
    label: str
    fail: bool = False

    def handle(self) -> str:
        CALLS[self.key].append(self.label)
        if self.fail:
            raise ValueError(f"step {self.label} failed")
        return self.label
