"""A backend for Django's tasks framework: ``django.tasks`` (Django 6) or the ``django-tasks``
backport (Django 5.2), so that ``@task`` functions are enqueued into evq and run by ``evq work``.

    TASKS = {"default": {"BACKEND": "evq.contrib.django.EvqBackend",
                         "OPTIONS": {"url": "sqlite:///evq.db"}}}     # or postgresql://...

    evq work --app evq.contrib.django.worker   # with DJANGO_SETTINGS_MODULE set: django.setup()

Each enqueued task is one evq job of the type ``django.task`` (the task's import path, its
arguments, and the backend's alias), in the task's ``queue_name``, with its ``priority`` (Django's
-100 to 100: higher first, as in evq) and ``run_after`` (``at=``); its ``TaskResult.id`` is the
job's id. ``get_result`` reads the job's row and history: status, times, the error of each
failed attempt, the workers that ran it, the return value. Django's ``task_enqueued``,
``task_started`` and ``task_finished`` signals are sent where the task is enqueued, and around
each attempt in the worker.
"""

from __future__ import annotations

import builtins
import contextvars
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import msgspec

import evq
from evq.api import resolve_url
from evq.eventlog.errors import NotFound
from evq.eventlog.events import JobFailed, JobLeased, JobTimedOut, LeaseExpired
from evq.projections.model import CANCELLED, FAILED, RUNNING, SUCCEEDED, JobRow
from evq.workers.middleware import JobContext, Middleware

try:  # Django 6
    from django.tasks import (  # type: ignore[import-not-found]
        TaskContext,
        TaskResult,
        TaskResultStatus,
        task_backends,
    )
    from django.tasks.backends.base import (  # type: ignore[import-not-found]
        BaseTaskBackend,
    )
    from django.tasks.base import TaskError  # type: ignore[import-not-found]
    from django.tasks.exceptions import TaskResultDoesNotExist  # type: ignore[import-not-found]
    from django.tasks.signals import (  # type: ignore[import-not-found]
        task_enqueued,
        task_finished,
        task_started,
    )
except ImportError:  # the backport, for Django 5.2
    from django_tasks import TaskContext, TaskResult, TaskResultStatus, task_backends
    from django_tasks.backends.base import BaseTaskBackend
    from django_tasks.base import TaskError
    from django_tasks.exceptions import TaskResultDoesNotExist
    from django_tasks.signals import task_enqueued, task_finished, task_started

from django.utils.module_loading import import_string

NAME = "django.task"  # the evq job type of every Django task
_connections: dict[str, evq.Queue] = {}
_lock = threading.Lock()
_attempt: contextvars.ContextVar[Any] = contextvars.ContextVar("evq_django_attempt",
                                                                 default=None)


class _Signals(Middleware):
    """Around each attempt of a Django task, in the worker: ``task_started``, then
    ``task_finished`` with the outcome."""

    def __call__(self, job: Any, ctx: JobContext, call_next: Callable[[], Any]) -> Any:
        backend = task_backends[job.backend]
        result = backend.result_of(backend.queue.job(ctx.id), running=True)
        task_started.send(type(backend), task_result=result)
        token = _attempt.set(result)
        try:
            value = call_next()
        except BaseException as exc:
            _set(result, status=TaskResultStatus.FAILED, finished_at=_now())
            result.errors.append(_error(type(exc).__module__, type(exc).__qualname__,
                                        _traceback(exc)))
            task_finished.send(type(backend), task_result=result)
            raise
        finally:
            _attempt.reset(token)
        _set(result, status=TaskResultStatus.SUCCESSFUL, finished_at=_now(),
             _return_value=value)
        task_finished.send(type(backend), task_result=result)
        return value


class DjangoTask(evq.Job):
    """One Django task: the function at ``path`` (a ``@task``), called with ``args`` and
    ``kwargs``."""

    job_name = NAME
    middleware = [_Signals()]

    path: str
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    backend: str = "default"

    def handle(self) -> Any:
        task = import_string(self.path)
        if task.takes_context:
            return task.call(TaskContext(task_result=_attempt.get()), *self.args, **self.kwargs)
        return task.call(*self.args, **self.kwargs)


class EvqBackend(BaseTaskBackend):
    """Django's task backend on an evq store (``OPTIONS``: ``url``, default ``EVQ_URL`` or
    ``sqlite:///evq.db``)."""

    supports_defer = True
    supports_async_task = True
    supports_get_result = True
    supports_priority = True

    @property
    def queue(self) -> evq.Queue:
        """The evq connection of this backend's URL, opened on first use and shared by every
        thread (Django makes a backend per thread)."""
        url = resolve_url(self.options.get("url"))
        with _lock:
            if url not in _connections:
                _connections[url] = evq.connect(url)
            return _connections[url]

    def enqueue(self, task: Any, args: Any, kwargs: Any) -> TaskResult:
        self.validate_task(task)
        job = DjangoTask(path=task.module_path, args=list(args), kwargs=dict(kwargs),
                         backend=self.alias)
        job_id = self.queue.dispatch(job, queue=task.queue_name, priority=task.priority,
                                     at=task.run_after)
        result = self.result_of(self.queue.job(job_id), task=task)
        task_enqueued.send(type(self), task_result=result)
        return result

    def get_result(self, result_id: str) -> TaskResult:
        try:
            row = self.queue.job(int(result_id))
        except (ValueError, NotFound):
            raise TaskResultDoesNotExist(result_id) from None
        if row.name != NAME:
            raise TaskResultDoesNotExist(result_id)
        return self.result_of(row)

    def result_of(self, row: JobRow, *, task: Any = None, running: bool = False) -> TaskResult:
        """The ``TaskResult`` of a job, from its row and its history (``running``: as the
        worker that starts an attempt sees it)."""
        job = msgspec.json.decode(row.payload, type=DjangoTask)
        task = task or import_string(job.path)
        history = [r.event for r in self.queue.history(row.id)] if row.attempt else []
        leases = [e for e in history if isinstance(e, JobLeased)]
        errors = [_error("", e.error_type, e.traceback) for e in history
                  if isinstance(e, JobFailed)]
        errors += [_error("builtins", "TimeoutError", "") for e in history
                   if isinstance(e, JobTimedOut)]
        errors += [_error("evq", "WorkerLost", "") for e in history
                   if isinstance(e, LeaseExpired) and row.state != RUNNING]
        status = (TaskResultStatus.RUNNING if running or row.state == RUNNING else
                  TaskResultStatus.SUCCESSFUL if row.state == SUCCEEDED else
                  TaskResultStatus.FAILED if row.state in (FAILED, CANCELLED) else
                  TaskResultStatus.READY)
        started = datetime.now(UTC) if running else _when(row.started_at)
        result = TaskResult(
            task=task, id=str(row.id), status=status, enqueued_at=_when(row.dispatched_at),
            started_at=started, finished_at=_when(row.finished_at),
            last_attempted_at=started, args=job.args, kwargs=job.kwargs, backend=self.alias,
            errors=errors, worker_ids=[e.worker for e in leases])
        if row.state == SUCCEEDED and row.result is not None:
            _set(result, _return_value=msgspec.json.decode(row.result))
        return result

    def close(self) -> None:
        """Close the connection of this backend's URL (the next use opens another)."""
        with _lock:
            q = _connections.pop(resolve_url(self.options.get("url")), None)
        if q is not None:
            q.close()


def enqueue_on_commit(task: Any, *args: Any, using: str | None = None, **kwargs: Any) -> None:
    """Enqueue ``task`` once the current database transaction commits (at once outside one;
    never if it rolls back): jobs that read what the transaction writes find it there."""
    from django.db import transaction

    transaction.on_commit(lambda: task.enqueue(*args, **kwargs), using=using)


def _set(result: TaskResult, **fields: Any) -> None:
    for name, value in fields.items():
        object.__setattr__(result, name, value)


def _error(module: str, name: str, traceback: str) -> TaskError:
    """A ``TaskError`` whose class path imports where it can (evq records class names)."""
    if not module:
        module = "builtins" if isinstance(getattr(builtins, name, None), type) else "evq"
    return TaskError(exception_class_path=f"{module}.{name}", traceback=traceback or "")


def _traceback(exc: BaseException) -> str:
    import traceback

    return "".join(traceback.format_exception(exc))


def _when(ts: float | None) -> datetime | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC)


def _now() -> datetime:
    return datetime.now(UTC)
