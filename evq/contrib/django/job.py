"""The evq job type that runs Django tasks, and the worker's Django setup."""

from __future__ import annotations

import os
import sys
import time
import traceback
from inspect import iscoroutinefunction
from typing import Any, ClassVar

from django.apps import apps
from django.db import close_old_connections

from evq.eventlog.errors import ConfigError, UnknownJob
from evq.jobs import Job
from evq.workers.execute import current_job

from .compat import Task, TaskContext, TaskError, TaskResultStatus, task_finished, task_started
from .results import as_datetime, attempt_result, task_result


class DjangoTask(Job):
    """A call of the Django task at ``module_path`` (a ``@task`` function), run by a worker
    as Django's workers do: ``task_started`` before, ``task_finished`` after (failed or not)."""

    job_name: ClassVar[str] = "django.task"

    module_path: str
    args: list[Any] = []
    kwargs: dict[str, Any] = {}

    def handle(self) -> Any:
        if not apps.ready:  # a child of the process pool imports this module, not the --app
            setup()
        close_old_connections()  # as Django does per request: a worker thread lives long
        task = imported_task(self.module_path)
        row = current_job()
        if row is None:
            raise RuntimeError("DjangoTask.handle() runs under an evq worker only")
        now = as_datetime(time.time())
        result = attempt_result(task_result(task, task.backend, row, []),
                                status=TaskResultStatus.RUNNING, started_at=now,
                                last_attempted_at=now, worker_ids=[row.worker or ""])
        task_started.send(type(task.get_backend()), task_result=result)
        args = [TaskContext(task_result=result), *self.args] if task.takes_context else self.args
        if iscoroutinefunction(task.func):
            return _finishing_async(task, result, task.func(*args, **self.kwargs))
        try:
            value = task.func(*args, **self.kwargs)
        except BaseException as exc:
            _finished(task, result, error=exc)
            raise
        _finished(task, result, value=value)
        return value


async def _finishing_async(task: Any, result: Any, call: Any) -> Any:
    try:
        value = await call
    except BaseException as exc:
        _finished(task, result, error=exc)
        raise
    _finished(task, result, value=value)
    return value


def _finished(task: Any, result: Any, *, value: Any = None,
              error: BaseException | None = None) -> None:
    """Send ``task_finished`` with the attempt's outcome."""
    now = as_datetime(time.time())
    if error is None:
        done = attempt_result(result, status=TaskResultStatus.SUCCESSFUL, finished_at=now,
                              return_value=value)
    else:
        kind = type(error)
        failure = TaskError(exception_class_path=f"{kind.__module__}.{kind.__qualname__}",
                            traceback="".join(traceback.format_exception(error)))
        done = attempt_result(result, status=TaskResultStatus.FAILED, finished_at=now,
                              errors=[*result.errors, failure])
    task_finished.send(type(task.get_backend()), task_result=done)


def imported_task(module_path: str) -> Any:
    """The ``@task`` at ``module_path``, from a module imported already (by :func:`setup` or
    ``--app``): a worker does not import whatever a job names."""
    module_name, _, name = module_path.rpartition(".")
    task = getattr(sys.modules.get(module_name), name, None)
    if not isinstance(task, Task):
        raise UnknownJob(f"no Django task {module_path!r} is imported: define it in a tasks "
                         "module of an installed app, or name its module with evq work --app")
    return task


def setup(settings: str | None = None) -> None:
    """Set Django up in a worker process: ``settings`` (default: ``DJANGO_SETTINGS_MODULE``),
    ``django.setup()``, and the ``tasks`` module of every installed app imported."""
    import django
    from django.conf import settings as configured
    from django.utils.module_loading import autodiscover_modules

    if settings is not None:
        os.environ["DJANGO_SETTINGS_MODULE"] = settings
    elif not os.environ.get("DJANGO_SETTINGS_MODULE") and not configured.configured:
        raise ConfigError("set DJANGO_SETTINGS_MODULE to the Django settings module (e.g. "
                          "mysite.settings) for the worker to set Django up")
    django.setup()
    autodiscover_modules("tasks")
