"""``evq.testing.run(job)``: run one job here and now, through a worker's execution path."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from evq.api import Queue, connect
from evq.eventlog.codec import Record
from evq.jobs import Job
from evq.projections.model import SUCCEEDED


@dataclass(frozen=True)
class Ran:
    """What :func:`run` returns: how the job ended."""

    job_id: int
    state: str  # succeeded, failed (its tries used up) or cancelled
    attempts: int
    result: Any  # what handle() returned, if it succeeded
    error: BaseException | None  # what the last attempt raised (TimeoutError: it timed out)
    events: list[Record]  # the job's history

    @property
    def succeeded(self) -> bool:
        return self.state == SUCCEEDED


def run(job: Job, *, queue: Queue | None = None) -> Ran:
    """Dispatch ``job`` and run it in this thread as a worker would (the same execution path:
    its tries one after another without the backoff waits, ``failed()``, ``timed_out()``) on
    ``queue``, by default a fresh memory store closed afterwards. Never raises what the job
    raised: that is ``.error``. What the job dispatches goes to the default connection (or,
    under :func:`~evq.testing.fake`, is recorded)."""
    q = queue if queue is not None else connect("memory://")
    try:
        row, outcome = q._dispatch_here(job)
        return Ran(job_id=row.id, state=row.state, attempts=row.attempt,
                   result=outcome.value if row.state == SUCCEEDED else None,
                   error=outcome.error, events=q.history(row.id))
    finally:
        if queue is None:
            q.close()
