"""Small helpers the test modules share."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import evq


def event_types(q: evq.Queue, job_id: int) -> list[str]:
    """The type names of a job's events, in log order."""
    return [r.event.__struct_config__.tag for r in q.history(job_id)]


def wait_until(predicate: Callable[[], Any], timeout: float = 20.0, interval: float = 0.005,
               what: str = "") -> Any:
    """Poll ``predicate`` until it returns something true (and return that); fail after
    ``timeout`` seconds. This awaits a condition: it is not a fixed sleep."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for "
                                 f"{what or getattr(predicate, '__name__', predicate)}")
        time.sleep(interval)
