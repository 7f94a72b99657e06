"""evq: a background-job queue for Python, event-sourced on an append-only log.

    import evq

    class SendEmail(evq.Job):
        queue = "emails"
        tries = 3
        to: str

        def handle(self) -> None: ...

    q = evq.connect()                      # EVQ_URL, else sqlite:///evq.db
    job_id = q.dispatch(SendEmail(to="a@b.c"), delay=60)
    q.history(job_id)                      # every event of the job
"""

from evq.eventlog.errors import (
    ConfigError,
    DecodeError,
    EvqError,
    InvalidArguments,
    InvalidState,
    NotFound,
    StoreBusy,
    StoreCorrupt,
    StoreError,
    StoreFull,
    StoreMissing,
    UnknownJob,
)
from evq.projections.model import JobRow

from .api import Queue, connect, default_queue, use
from .jobs import FunctionJob, Job, job


def __getattr__(name: str) -> object:
    """``evq.Worker``, imported on first use (it brings asyncio and the file watcher)."""
    if name == "Worker":
        from evq.workers.worker import Worker

        return Worker
    raise AttributeError(f"module 'evq' has no attribute {name!r}")

__all__ = [
    "ConfigError",
    "DecodeError",
    "EvqError",
    "FunctionJob",
    "InvalidArguments",
    "InvalidState",
    "Job",
    "JobRow",
    "NotFound",
    "Queue",
    "StoreBusy",
    "StoreCorrupt",
    "StoreError",
    "StoreFull",
    "StoreMissing",
    "UnknownJob",
    "Worker",
    "connect",
    "default_queue",
    "job",
    "use",
]
