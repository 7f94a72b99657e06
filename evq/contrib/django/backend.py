"""``EvqBackend``: Django's task backend API over an evq queue."""

from __future__ import annotations

import functools
from datetime import datetime
from typing import Any

import msgspec
from django.utils import timezone
from django.utils.module_loading import import_string

from evq.api import Queue, connect, resolve_url
from evq.eventlog.errors import NotFound

from .compat import BaseTaskBackend, ResultDoesNotExist, task_enqueued
from .job import DjangoTask
from .results import task_result


class EvqBackend(BaseTaskBackend):  # type: ignore[misc]
    """Enqueues each task call as an evq ``DjangoTask`` job: in the task's ``queue_name``, with
    its ``priority`` (-100..100, higher first, as evq's), deferred to ``run_after``. A result's
    id is the evq job id. ``OPTIONS``: ``url``, the store (default ``EVQ_URL``, else
    ``sqlite:///evq.db``)."""

    supports_defer = True
    supports_priority = True
    supports_get_result = True
    supports_async_task = True

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        super().__init__(alias, params)
        self.url = resolve_url(self.options.get("url"))

    @property
    def queue(self) -> Queue:
        """The evq queue at ``url``, one per process (Django makes a backend per thread)."""
        return _connect(self.url)

    def enqueue(self, task: Any, args: Any, kwargs: Any) -> Any:
        self.validate_task(task)
        job = DjangoTask(module_path=task.module_path, args=list(args), kwargs=dict(kwargs))
        job_id = self.queue.dispatch(job, queue=task.queue_name, priority=task.priority,
                                     at=_aware(task.run_after))
        result = task_result(task, self.alias, self.queue.job(job_id), [])
        task_enqueued.send(type(self), task_result=result)
        return result

    def get_result(self, result_id: str) -> Any:
        try:
            row = self.queue.job(int(result_id))
        except (ValueError, NotFound):
            raise ResultDoesNotExist(result_id) from None
        if row.name != DjangoTask.job_name:
            raise ResultDoesNotExist(result_id)
        job = msgspec.json.decode(row.payload, type=DjangoTask)
        return task_result(import_string(job.module_path), self.alias, row,
                           self.queue.history(row.id))


@functools.cache
def _connect(url: str) -> Queue:
    return connect(url)


def _aware(when: datetime | None) -> datetime | None:
    """``run_after`` as an aware time (a naive one is in Django's ``TIME_ZONE``)."""
    return when if when is None or timezone.is_aware(when) else timezone.make_aware(when)
