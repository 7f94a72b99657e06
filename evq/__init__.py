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

from typing import TYPE_CHECKING

from evq.eventlog.errors import (
    ConfigError,
    DecodeError,
    EvqError,
    InvalidArguments,
    InvalidState,
    JobFailed,
    NotFound,
    StoreBusy,
    StoreCorrupt,
    StoreError,
    StoreFull,
    StoreMissing,
    UnknownJob,
)

if TYPE_CHECKING:
    from evq.api import Queue, connect, default_queue, use
    from evq.compose import Batch, Chain, Node, Workflow, batch, chain, workflow
    from evq.hooks import QueueEvent, on
    from evq.jobs import FunctionJob, Job, job
    from evq.limits import RateLimit
    from evq.notifications import notify
    from evq.projections.model import JobRow
    from evq.schedules import Schedule, schedule, scheduler
    from evq.subscribers import Subscription, subscribe
    from evq.workers.middleware import JobContext, Middleware
    from evq.workers.retry import Exponential, Fixed, Linear
    from evq.workers.scheduler import Scheduler
    from evq.workers.worker import Worker

# The rest of the API is imported on first use, so that importing a part of evq (the event types
# in a process-pool child, say) does not load the stores, the workers and the CLI's dependencies.
_LAZY = {
    "Queue": "evq.api", "connect": "evq.api", "default_queue": "evq.api", "use": "evq.api",
    "FunctionJob": "evq.jobs", "Job": "evq.jobs", "job": "evq.jobs",
    "JobRow": "evq.projections.model", "Worker": "evq.workers.worker",
    "Middleware": "evq.workers.middleware", "JobContext": "evq.workers.middleware",
    "Exponential": "evq.workers.retry", "Linear": "evq.workers.retry",
    "Fixed": "evq.workers.retry",
    "Batch": "evq.compose", "Chain": "evq.compose", "Node": "evq.compose",
    "Workflow": "evq.compose", "batch": "evq.compose", "chain": "evq.compose",
    "workflow": "evq.compose", "Schedule": "evq.schedules", "schedule": "evq.schedules",
    "scheduler": "evq.schedules", "Scheduler": "evq.workers.scheduler",
    "QueueEvent": "evq.hooks", "on": "evq.hooks",
    "Subscription": "evq.subscribers", "subscribe": "evq.subscribers",
    "notify": "evq.notifications",
    "RateLimit": "evq.limits",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'evq' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "Batch",
    "Chain",
    "ConfigError",
    "DecodeError",
    "EvqError",
    "Exponential",
    "Fixed",
    "FunctionJob",
    "InvalidArguments",
    "InvalidState",
    "Job",
    "JobContext",
    "JobFailed",
    "JobRow",
    "Linear",
    "Middleware",
    "Node",
    "NotFound",
    "Queue",
    "QueueEvent",
    "RateLimit",
    "Schedule",
    "Scheduler",
    "StoreBusy",
    "StoreCorrupt",
    "StoreError",
    "StoreFull",
    "StoreMissing",
    "Subscription",
    "UnknownJob",
    "Worker",
    "Workflow",
    "batch",
    "chain",
    "connect",
    "default_queue",
    "job",
    "notify",
    "on",
    "schedule",
    "scheduler",
    "subscribe",
    "use",
    "workflow",
]
