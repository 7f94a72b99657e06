"""The Django tasks backend (``evq.contrib.django``) in a real Django project
(``tests/django_project``): enqueue, run by an in-process worker and by ``evq work``, results,
priority and deferral, ``transaction.on_commit``, and Django's task signals."""

from __future__ import annotations

import contextlib
import functools
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from helpers import postgres_schema

import evq

pytest.importorskip("django", reason="django is not installed (pip install -e '.[django]')")
compat = pytest.importorskip("evq.contrib.django.compat",
                             reason="no tasks framework: neither django.tasks (Django 6) nor "
                                    "the django-tasks backport is installed")

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # the project is importable as tests.django_project
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.django_project.settings")

import django  # noqa: E402

django.setup()

from django.db import transaction  # noqa: E402
from django.test import override_settings  # noqa: E402

from evq.contrib.django import EvqBackend  # noqa: E402
from evq.contrib.django.backend import _connect  # noqa: E402
from tests.cli_jobs import CliAdd  # noqa: E402
from tests.django_project import tasks  # noqa: E402
from tests.test_e2e import run_evq  # noqa: E402

Status = compat.TaskResultStatus


@contextlib.contextmanager
def tasks_on(url: str) -> Iterator[evq.Queue]:
    """Django's ``TASKS`` set to an evq backend at ``url``; yields the backend's queue."""
    backend = {"BACKEND": "evq.contrib.django.EvqBackend", "QUEUES": ["default", "high"],
               "OPTIONS": {"url": url}}
    with override_settings(TASKS={"default": backend}):
        try:
            yield _connect(url)
        finally:
            _connect(url).close()
            _connect.cache_clear()


@pytest.fixture(params=["sqlite", "postgres"])
def queue(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[evq.Queue]:
    with contextlib.ExitStack() as stack:
        url = (stack.enter_context(postgres_schema()) if request.param == "postgres"
               else f"sqlite:///{tmp_path / 'evq.db'}")
        yield stack.enter_context(tasks_on(url))


def work(q: evq.Queue) -> int:
    return q.worker(queues=["high", "default"], stop_when_empty=True).run()


def test_the_backend_supports_what_evq_does() -> None:
    assert (EvqBackend.supports_defer and EvqBackend.supports_priority
            and EvqBackend.supports_get_result and EvqBackend.supports_async_task)


def test_a_task_is_an_evq_job_and_its_result_comes_from_the_projections(
        queue: evq.Queue) -> None:
    enqueued = tasks.add.enqueue(2, b=3)
    row = queue.job(int(enqueued.id))
    assert (row.name, row.queue, row.state) == ("django.task", "default", "pending")
    assert enqueued.status == Status.READY and enqueued.enqueued_at is not None
    assert (enqueued.args, enqueued.kwargs) == ([2], {"b": 3})
    with pytest.raises(ValueError, match="not finished"):
        _ = enqueued.return_value

    assert work(queue) == 1
    result = tasks.add.get_result(enqueued.id)
    assert result.status == Status.SUCCESSFUL and result.return_value == 5
    assert result.enqueued_at <= result.started_at <= result.finished_at
    assert result.last_attempted_at == result.started_at
    assert result.errors == [] and len(result.worker_ids) == 1
    enqueued.refresh()
    assert enqueued.status == Status.SUCCESSFUL and enqueued.return_value == 5


def test_an_async_task_runs_as_an_async_job(queue: evq.Queue) -> None:
    enqueued = tasks.async_add.enqueue(4, 5)
    assert queue.job(int(enqueued.id)).queue == "high"
    work(queue)
    assert tasks.async_add.get_result(enqueued.id).return_value == 9


def test_a_failed_task_has_its_error_class_and_traceback(queue: evq.Queue) -> None:
    enqueued = tasks.broken.enqueue("no luck")
    work(queue)
    result = tasks.broken.get_result(enqueued.id)
    assert result.status == Status.FAILED and result.finished_at is not None
    [error] = result.errors
    assert error.exception_class is tasks.TaskBroke
    assert "no luck" in error.traceback and "raise TaskBroke" in error.traceback
    with pytest.raises(ValueError, match="failed"):
        _ = result.return_value


def test_a_task_with_context_sees_its_attempt(queue: evq.Queue) -> None:
    enqueued = tasks.attempts.enqueue("first")
    work(queue)
    assert tasks.attempts.get_result(enqueued.id).return_value == "first:1"


def test_priority_orders_the_queue_and_run_after_defers(queue: evq.Queue) -> None:
    later = datetime.now(UTC) + timedelta(hours=1)
    low = tasks.add.using(priority=-100).enqueue(1, 1)
    high = tasks.add.using(priority=100).enqueue(2, 2)
    deferred = tasks.add.using(run_after=later).enqueue(3, 3)
    assert [queue.job(int(r.id)).priority for r in (low, high)] == [-100, 100]
    assert queue.job(int(deferred.id)).run_at == pytest.approx(later.timestamp())

    assert work(queue) == 2
    low_result, high_result = (tasks.add.get_result(r.id) for r in (low, high))
    assert high_result.started_at < low_result.started_at
    assert tasks.add.get_result(deferred.id).status == Status.READY


def test_get_result_of_an_unknown_id_raises_result_does_not_exist(queue: evq.Queue) -> None:
    other = queue.dispatch(CliAdd(a=1, b=2))  # an evq job, not a Django task
    for result_id in ("123456789", "not-a-number", str(other)):
        with pytest.raises(compat.ResultDoesNotExist):
            tasks.add.get_result(result_id)


def test_enqueue_on_commit_follows_the_transaction(queue: evq.Queue) -> None:
    with contextlib.suppress(RuntimeError), transaction.atomic():
        transaction.on_commit(functools.partial(tasks.add.enqueue, 1, 2))
        raise RuntimeError("roll back")
    assert queue.count_jobs() == 0
    with transaction.atomic():
        transaction.on_commit(functools.partial(tasks.add.enqueue, 3, 4))
        assert queue.count_jobs() == 0
    [row] = queue.jobs()
    assert row.name == "django.task" and '"args":[3,4]' in row.payload


def test_signals_are_sent_on_enqueue_start_and_finish(queue: evq.Queue) -> None:
    received: list[tuple[str, Any, str, Any]] = []

    def receiver(name: str) -> Any:
        def receive(sender: Any, task_result: Any, **_: Any) -> None:
            received.append((name, sender, task_result.id, task_result.status))
        return receive

    receivers = {s: receiver(n) for n, s in (("enqueued", compat.task_enqueued),
                                             ("started", compat.task_started),
                                             ("finished", compat.task_finished))}
    for signal, receive in receivers.items():
        signal.connect(receive)
    try:
        ok, bad = tasks.add.enqueue(1, 2), tasks.broken.enqueue("x")
        work(queue)
    finally:
        for signal, receive in receivers.items():
            signal.disconnect(receive)
    assert [(n, s, i, st) for n, s, i, st in received if i == ok.id] == [
        ("enqueued", EvqBackend, ok.id, Status.READY),
        ("started", EvqBackend, ok.id, Status.RUNNING),
        ("finished", EvqBackend, ok.id, Status.SUCCESSFUL)]
    assert [st for _, _, i, st in received if i == bad.id] == [
        Status.READY, Status.RUNNING, Status.FAILED]


@pytest.mark.slow
@pytest.mark.parametrize("pool", ["thread", "process"])
def test_evq_work_runs_django_tasks_with_the_worker_app(tmp_path: Path, pool: str) -> None:
    url = f"sqlite:///{tmp_path / 'evq.db'}"
    with tasks_on(url):
        ok, bad = tasks.add.enqueue(20, 22), tasks.async_add.enqueue(1, 1)
        done = run_evq(url, "work", "--app", "evq.contrib.django.worker", "--queues",
                       "high,default", "--stop-when-empty", "--pool", pool,
                       DJANGO_SETTINGS_MODULE="tests.django_project.settings")
        assert done.returncode == 0, done.stderr
        assert tasks.add.get_result(ok.id).return_value == 42
        assert tasks.async_add.get_result(bad.id).return_value == 2


@pytest.mark.slow
def test_the_worker_app_without_settings_is_a_clear_error(tmp_path: Path) -> None:
    done = run_evq(f"sqlite:///{tmp_path / 'evq.db'}", "work", "--app",
                   "evq.contrib.django.worker", "--stop-when-empty", DJANGO_SETTINGS_MODULE="")
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert "set DJANGO_SETTINGS_MODULE" in done.stderr


def test_importing_evq_imports_no_django() -> None:
    code = ("import sys, evq, evq.api, evq.workers.worker, evq.contrib; "
            "print('django' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"
