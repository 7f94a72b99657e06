"""evq as the backend of Django's tasks (the django-tasks backport on Django 5.2), with a real
Django project (tests/django_project): enqueue, run by a worker in this process and by a real
``evq work`` process, results, errors, defer, priority, on-commit enqueue, and the signals."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from helpers import store_of, wait_until

pytest.importorskip("django_tasks", reason="django: pip install -e '.[test]' (django-tasks)")

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.django_project.settings")

import django  # noqa: E402

django.setup()

from django.db import transaction  # noqa: E402
from django.test import override_settings  # noqa: E402
from django_tasks import TaskResultStatus, task_backends  # noqa: E402
from django_tasks.exceptions import TaskResultDoesNotExist  # noqa: E402
from django_tasks.signals import task_enqueued, task_finished, task_started  # noqa: E402

import evq  # noqa: E402
from evq.contrib.django import NAME, enqueue_on_commit  # noqa: E402
from tests.django_project import tasks  # noqa: E402


@pytest.fixture(params=["sqlite", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The project's TASKS on a fresh evq store of each kind."""
    store = store_of(request, tmp_path / "evq.db")
    settings = {"default": {"BACKEND": "evq.contrib.django.EvqBackend",
                            "QUEUES": ["default", "reports"], "OPTIONS": {"url": store}}}
    with override_settings(TASKS=settings):
        yield store
        task_backends["default"].close()


@pytest.fixture
def signals() -> Iterator[list[tuple[str, str, str]]]:
    """(signal, result id, status) of each task signal sent meanwhile."""
    got: list[tuple[str, str, str]] = []
    receivers = {}
    for name, signal in (("enqueued", task_enqueued), ("started", task_started),
                         ("finished", task_finished)):
        def receive(sender: Any, task_result: Any, name: str = name, **_: Any) -> None:
            got.append((name, task_result.id, str(task_result.status)))
        receivers[signal] = receive
        signal.connect(receive)
    yield got
    for signal, receive in receivers.items():
        signal.disconnect(receive)


def work(url: str) -> None:
    q = evq.connect(url)
    try:
        q.worker(stop_when_empty=True, queues=["default", "reports"]).run()
    finally:
        q.close()


def test_a_task_is_enqueued_into_evq_and_run_by_a_worker(url: str, signals: list[Any]) -> None:
    backend = task_backends["default"]
    assert (backend.supports_defer, backend.supports_priority, backend.supports_get_result,
            backend.supports_async_task) == (True, True, True, True)
    result = tasks.add.enqueue(2, 3)
    assert result.status == TaskResultStatus.READY and result.enqueued_at is not None
    job = backend.queue.job(int(result.id))
    assert (job.name, job.queue, job.state) == (NAME, "default", "pending")
    work(url)
    result.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL and result.return_value == 5
    assert result.started_at is not None and result.finished_at >= result.started_at
    assert result.attempts == 1 and result.errors == []
    assert signals == [("enqueued", result.id, "READY"), ("started", result.id, "RUNNING"),
                       ("finished", result.id, "SUCCESSFUL")]


def test_a_failing_task_gives_its_errors(url: str, signals: list[Any]) -> None:
    result = tasks.fail.enqueue("no such account")
    work(url)
    got = tasks.fail.get_result(result.id)
    assert got.status == TaskResultStatus.FAILED and got.finished_at is not None
    [error] = got.errors
    assert error.exception_class is ValueError and "no such account" in error.traceback
    with pytest.raises(ValueError, match="Task failed"):
        _ = got.return_value
    assert signals[-1] == ("finished", result.id, "FAILED")


def test_async_tasks_priority_queues_and_context(url: str) -> None:
    greeting = tasks.greet.enqueue("ada")
    report = tasks.report.enqueue("2026-11")
    urgent = tasks.add.using(priority=80).enqueue(1, 1)
    noted = tasks.attempt.enqueue("first")
    q = task_backends["default"].queue
    assert (q.job(int(report.id)).queue, q.job(int(report.id)).priority) == ("reports", 50)
    assert q.job(int(urgent.id)).priority == 80
    work(url)
    assert tasks.greet.get_result(greeting.id).return_value == "hello ada"
    assert tasks.report.get_result(report.id).return_value == {"month": "2026-11",
                                                              "status": "done"}
    assert tasks.attempt.get_result(noted.id).return_value == [1, noted.id, "first"]


def test_run_after_defers_the_task(url: str) -> None:
    later = datetime.now(UTC) + timedelta(hours=1)
    result = tasks.add.using(run_after=later).enqueue(1, 2)
    q = task_backends["default"].queue
    assert q.job(int(result.id)).run_at == pytest.approx(later.timestamp())
    work(url)
    assert tasks.add.get_result(result.id).status == TaskResultStatus.READY


def test_unknown_results_do_not_exist(url: str) -> None:
    from jobs import Add

    backend = task_backends["default"]
    not_a_task = backend.queue.dispatch(Add(a=1, b=1))  # an evq job, not a Django task's
    for missing in ("999999", "not-a-number", str(not_a_task)):
        with pytest.raises(TaskResultDoesNotExist):
            backend.get_result(missing)


def test_enqueue_on_commit_follows_the_transaction(url: str) -> None:
    q = task_backends["default"].queue
    with pytest.raises(RuntimeError), transaction.atomic():
        enqueue_on_commit(tasks.add, 1, 1)
        raise RuntimeError("rolled back")
    assert q.count_jobs() == 0
    with transaction.atomic():
        enqueue_on_commit(tasks.add, 2, 2)
        assert q.count_jobs() == 0  # not before the commit
    assert q.count_jobs() == 1


@pytest.mark.slow
def test_evq_work_runs_django_tasks(url: str) -> None:
    result = tasks.add.enqueue(20, 22)
    env = {**os.environ, "EVQ_URL": url, "PYTHONPATH": str(ROOT),
           "DJANGO_SETTINGS_MODULE": "tests.django_project.settings"}
    done = subprocess.run([sys.executable, "-m", "evq.cli", "work", "--app",
                           "evq.contrib.django.worker", "--stop-when-empty", "--sleep", "0.1"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    wait_until(lambda: tasks.add.get_result(result.id).is_finished, what="the task's end")
    assert tasks.add.get_result(result.id).return_value == 42
    bad = subprocess.run([sys.executable, "-m", "evq.cli", "work", "--app",
                          "evq.contrib.django.worker"], cwd=ROOT,
                         env={k: v for k, v in env.items() if k != "DJANGO_SETTINGS_MODULE"},
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1 and "DJANGO_SETTINGS_MODULE" in bad.stderr
    assert "Traceback" not in bad.stderr
