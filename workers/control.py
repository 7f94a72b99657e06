"""What a running attempt and its worker share: a cancel request, and the job's progress.

The worker makes one :class:`Control` per attempt. :func:`attached` makes it the attempt's
while ``handle()`` runs (a context variable, so an async job's task sees it too), which is how
``Job.cancelled`` and ``Job.progress()`` find it; outside a worker they find none.
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from evq.eventlog.events import Event, JobCancelled, JobProgress
from evq.projections.model import JobRow

PROGRESS_INTERVAL = 0.25  # seconds: at most about 4 progress events a second per job
MAX_MESSAGE = 1000  # characters of a progress message that are kept

Report = Callable[[list[Event]], None]


class Control:
    """One attempt's cancel request and progress reports (``report``: where progress events go,
    e.g. the worker's outbox; without it progress is not recorded)."""

    def __init__(self, row: JobRow, report: Report | None = None) -> None:
        self.row = row
        self.report = report
        self.reason: str | None = None  # set once a cancel is requested
        self._lock = threading.Lock()
        self._stop: Callable[[], Any] | None = None
        self._last = float("-inf")
        self._unsent: JobProgress | None = None

    @property
    def requested(self) -> bool:
        return self.reason is not None

    def cancel(self, reason: str) -> None:
        """Ask the attempt to stop: the stopper given to :meth:`stoppable` is called now."""
        with self._lock:
            if self.reason is not None:
                return
            self.reason = reason
            stop = self._stop
        if stop is not None:
            stop()

    @contextlib.contextmanager
    def stoppable(self, stop: Callable[[], Any]) -> Iterator[None]:
        """Within: a cancel request calls ``stop`` (at once if one came already)."""
        with self._lock:
            self._stop = stop
            now = self.reason is not None
        if now:
            stop()
        try:
            yield
        finally:
            with self._lock:
                self._stop = None

    def progress(self, fraction: float, message: str) -> None:
        """Record a progress report, unless one was recorded less than ``PROGRESS_INTERVAL``
        ago: then it is kept, and written before the outcome if no later one is."""
        if self.report is None:
            return
        event = JobProgress(job_id=self.row.id, ts=time.time(), attempt=self.row.attempt,
                            fraction=fraction,
                            message=message[:MAX_MESSAGE].replace("\x00", "\\x00"))
        now = time.monotonic()
        with self._lock:
            if now - self._last < PROGRESS_INTERVAL:
                self._unsent = event
                return
            self._last, self._unsent = now, None
        self.report([event])

    def unsent(self) -> list[Event]:
        """The latest report that the throttle held back, if any (written before the outcome,
        so that the last report of an attempt is always recorded)."""
        with self._lock:
            event, self._unsent = self._unsent, None
        return [event] if event is not None else []

    def cancelled(self, now: float) -> JobCancelled:
        """The event that ends this attempt as cancelled."""
        return JobCancelled(job_id=self.row.id, ts=now, attempt=self.row.attempt,
                            reason=self.reason or "")


_current: contextvars.ContextVar[tuple[object, Control] | None] = contextvars.ContextVar(
    "evq_attempt", default=None)


@contextlib.contextmanager
def attached(job: object, control: Control) -> Iterator[None]:
    """Make ``control`` the one ``job`` finds while its attempt runs."""
    token = _current.set((job, control))
    try:
        yield
    finally:
        _current.reset(token)


def current(job: object) -> Control | None:
    """The control of the attempt of ``job`` that runs here, if any."""
    got = _current.get()
    return got[1] if got is not None and got[0] is job else None
