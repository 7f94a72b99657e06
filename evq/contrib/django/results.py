"""A Django ``TaskResult`` from an evq job's row and history."""

from __future__ import annotations

import builtins
import re
from collections.abc import Iterable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import msgspec
from django.conf import settings
from django.utils import timezone

from evq.eventlog.codec import Record
from evq.eventlog.events import JobFailed, JobStarted, JobTimedOut
from evq.projections.model import (
    CANCELLED,
    FAILED,
    FINISHED,
    LEASED,
    PENDING,
    RUNNING,
    SUCCEEDED,
    WAITING,
    JobRow,
)

from .compat import TaskError, TaskResult, TaskResultStatus

STATUS = {PENDING: TaskResultStatus.READY, WAITING: TaskResultStatus.READY,
          LEASED: TaskResultStatus.READY, RUNNING: TaskResultStatus.RUNNING,
          SUCCEEDED: TaskResultStatus.SUCCESSFUL, FAILED: TaskResultStatus.FAILED,
          CANCELLED: TaskResultStatus.FAILED}


def task_result(task: Any, alias: str, row: JobRow, history: Iterable[Record]) -> Any:
    """The ``TaskResult`` of the evq job ``row`` running ``task``: its status, times, errors
    (one per failed or timed-out attempt in ``history``), workers and return value."""
    arguments = msgspec.json.decode(row.payload)
    errors, workers = [], []
    for record in history:
        match record.event:
            case JobStarted(worker=worker):
                workers.append(worker)
            case JobFailed(error_type=name, traceback=tb):
                errors.append(TaskError(exception_class_path=exception_path(name, tb),
                                        traceback=tb))
            case JobTimedOut(timeout=seconds):
                errors.append(TaskError(exception_class_path="builtins.TimeoutError",
                                        traceback=f"TimeoutError: timed out after {seconds:g}s"))
    result = TaskResult(
        task=task, id=str(row.id), status=STATUS[row.state],
        enqueued_at=as_datetime(row.dispatched_at), started_at=as_datetime(row.started_at),
        finished_at=as_datetime(row.finished_at) if row.state in FINISHED else None,
        last_attempted_at=as_datetime(row.started_at), args=arguments.get("args", []),
        kwargs=arguments.get("kwargs", {}), backend=alias, errors=errors, worker_ids=workers)
    if row.state == SUCCEEDED and row.result is not None:
        set_return_value(result, msgspec.json.decode(row.result))
    return result


def attempt_result(result: Any, **changes: Any) -> Any:
    """``result`` with ``changes`` (a worker's view of the attempt it runs, for the signals)."""
    value = changes.pop("return_value", None)
    changed = replace(result, **changes)
    set_return_value(changed, value)
    return changed


def set_return_value(result: Any, value: Any) -> None:
    object.__setattr__(result, "_return_value", value)  # TaskResult is frozen


def as_datetime(ts: float | None) -> datetime | None:
    """A unix time as Django gives times: aware in UTC, or naive in TIME_ZONE without USE_TZ."""
    if ts is None:
        return None
    when = datetime.fromtimestamp(ts, UTC)
    return when if settings.USE_TZ else timezone.make_naive(when)


def exception_path(name: str, traceback: str) -> str:
    """The dotted path of an exception class that evq recorded by its ``name``: a builtin, or
    the module-qualified name on the traceback's line that names it."""
    if isinstance(getattr(builtins, name, None), type):
        return f"builtins.{name}"
    found = re.findall(rf"^((?:[\w.]+\.)?{re.escape(name)})(?::|$)", traceback, re.MULTILINE)
    return found[-1] if found else name
