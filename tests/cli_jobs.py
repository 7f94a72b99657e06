"""Job types of the CLI and end-to-end tests, passed to ``evq work --app tests.cli_jobs``.

Always import this module as ``tests.cli_jobs`` (never ``cli_jobs``): a second import under
another module name would register the same job names for different classes, which the
registry refuses. Every job name starts with ``Cli`` so that it cannot clash with the job types
of other test modules.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

import evq


class CliAdd(evq.Job):
    """Succeeds with ``a + b``."""

    a: int
    b: int

    def handle(self) -> int:
        return self.a + self.b


class CliAsyncAdd(evq.Job):
    a: int
    b: int

    async def handle(self) -> int:
        await asyncio.sleep(0)
        return self.a + self.b


class CliNoop(evq.Job):
    n: int = 0

    def handle(self) -> int:
        return self.n


class CliFail(evq.Job):
    """Raises on every attempt: two tries, no wait between them, then it is failed."""

    tries = 2
    backoff = 0
    reason: str = "boom"

    def handle(self) -> None:
        raise ValueError(self.reason)


class CliExit(evq.Job):
    """Calls ``sys.exit``: must fail the job, never stop the worker."""

    code: int = 3

    def handle(self) -> None:
        sys.exit(self.code)


class CliAsyncExit(evq.Job):
    """``sys.exit`` inside a coroutine: must not stop the worker's event loop either."""

    async def handle(self) -> None:
        await asyncio.sleep(0)
        sys.exit(4)


class CliSleep(evq.Job):
    seconds: float

    def handle(self) -> float:
        time.sleep(self.seconds)
        return self.seconds


class CliPatientSleep(CliSleep):
    """Sleeps, with three tries: an attempt lost with its worker is run again."""

    tries = 3


class CliUrgent(evq.Job):
    """A job on another queue, with a priority of its own."""

    queue = "cli-high"
    priority = 5
    note: str = ""

    def handle(self) -> str:
        return self.note


class CliCrash(evq.Job):
    """Ends its process at once (``os._exit``), as a segfault or the OOM killer would."""

    tries = 2
    code: int = 9

    def handle(self) -> None:
        os._exit(self.code)


class CliHang(evq.Job):
    """Hangs past its timeout; ``timed_out()`` appends a line to ``marker``."""

    timeout = 0.5
    tries = 2
    seconds: float = 60.0
    marker: str = ""

    def handle(self) -> None:
        time.sleep(self.seconds)

    def timed_out(self) -> None:
        if self.marker:
            with Path(self.marker).open("a") as f:
                f.write("timed out\n")


_kept: list[bytes] = []


class CliBloat(evq.Job):
    """Keeps ``mb`` megabytes alive in the worker's process (for ``--max-memory``)."""

    mb: int = 50
    seconds: float = 0.0

    def handle(self) -> int:
        _kept.append(b"x" * (self.mb * 2**20))
        time.sleep(self.seconds)
        return os.getpid()


class CliWork(evq.Job):
    """Sleeps ``seconds``; three tries, so that an attempt lost with its worker is retried."""

    tries = 3
    seconds: float = 0.0

    def handle(self) -> float:
        time.sleep(self.seconds)
        return self.seconds


def job_types() -> list[type[evq.Job]]:
    """Every job type this module defines."""
    return [v for v in globals().values()
            if isinstance(v, type) and issubclass(v, evq.Job) and v.__module__ == __name__]
