"""The tasks framework's names: from ``django.tasks`` (Django 6) or the ``django_tasks``
backport (targeted: django-tasks 0.12, on Django 5.2)."""

from __future__ import annotations

import importlib
from typing import Any

try:
    _tasks: Any = importlib.import_module("django.tasks.base")
    _signals: Any = importlib.import_module("django.tasks.signals")
    _base: Any = importlib.import_module("django.tasks.backends.base")
    _exceptions: Any = importlib.import_module("django.tasks.exceptions")
except ImportError:
    _tasks = importlib.import_module("django_tasks.base")
    _signals = importlib.import_module("django_tasks.signals")
    _base = importlib.import_module("django_tasks.backends.base")
    _exceptions = importlib.import_module("django_tasks.exceptions")

BaseTaskBackend: Any = _base.BaseTaskBackend
Task: Any = _tasks.Task
TaskContext: Any = _tasks.TaskContext
TaskError: Any = _tasks.TaskError
TaskResult: Any = _tasks.TaskResult
TaskResultStatus: Any = _tasks.TaskResultStatus
ResultDoesNotExist: Any = _exceptions.TaskResultDoesNotExist
task_enqueued: Any = _signals.task_enqueued
task_started: Any = _signals.task_started
task_finished: Any = _signals.task_finished
