"""Middleware around every attempt: the worker's outside the job class's, before / after / on
error, in the process that runs the job (threads and process pool), and what it raises failing
the attempt like the job's own error."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import msgspec
import pytest
from helpers import event_types

import evq

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `tests.i11_jobs` is what children and `--app` import
    sys.path.insert(0, str(ROOT))

from tests.i11_jobs import (  # noqa: E402
    SEEN,
    AsyncRecorded,
    Record,
    Recorded,
    Refused,
    Tag,
    Tagged,
)
from tests.test_e2e import work  # noqa: E402


def result(q: evq.Queue, job_id: int) -> Any:
    row = q.job(job_id)
    assert row.state == "succeeded", (row.state, row.error_type, row.error)
    return msgspec.json.decode(row.result or "null")


def test_the_workers_middleware_wraps_the_classs_before_after_and_on_error(
        queue: evq.Queue, key: str) -> None:
    ok = queue.dispatch(Recorded(key=f"{key}/ok"))
    bad = queue.dispatch(Recorded(key=f"{key}/bad", fail=True))
    assert queue.worker(middleware=[Record("worker")], stop_when_empty=True).run() == 2
    assert SEEN[f"{key}/ok"] == [("worker", "before", 1), ("class", "before", 1),
                                 ("class", "after", "done"), ("worker", "after", "done")]
    assert SEEN[f"{key}/bad"] == [("worker", "before", 1), ("class", "before", 1),
                                  ("class", "error", "TypeError"), ("worker", "error", "TypeError")]
    assert result(queue, ok) == "done"
    assert queue.job(bad).error_type == "TypeError"


def test_middleware_sees_the_awaited_result_of_an_async_job(queue: evq.Queue, key: str) -> None:
    job = queue.dispatch(AsyncRecorded(key=key))
    assert queue.worker(stop_when_empty=True).run() == 1
    assert SEEN[key] == [("class", "before", 1), ("class", "after", "awaited")]
    assert result(queue, job) == "awaited"


def test_a_middleware_that_raises_fails_the_attempt_and_retries_apply(queue: evq.Queue) -> None:
    refused = queue.dispatch(Refused())
    tagged = queue.dispatch(Tagged())
    assert queue.worker(stop_when_empty=True).run() == 3  # two attempts, then the next job
    row = queue.job(refused)
    assert (row.state, row.failures, row.error_type, row.error) == (
        "failed", 2, "PermissionError", "refused attempt 2")
    assert event_types(queue, refused).count("JobRetryScheduled") == 1
    assert queue.job(tagged).state == "succeeded"  # the worker went on


@pytest.mark.parametrize("pool", ["thread", "process"])
def test_middleware_runs_in_the_process_that_runs_the_job(queue: evq.Queue, pool: str) -> None:
    job = queue.dispatch(Tagged())
    assert queue.worker(pool=pool, middleware=[Tag("worker")], stop_when_empty=True).run() == 1
    outer = result(queue, job)
    inner = outer["worker"]
    ctx = [job, "i11.tagged", "default", 1]
    assert (outer["ctx"], inner["ctx"]) == (ctx, ctx)
    assert outer["pid"] == inner["pid"] == inner["class"]  # the job's own process id
    assert (inner["class"] == os.getpid()) == (pool == "thread")


def test_middleware_that_is_not_a_list_of_middleware_is_refused_at_once() -> None:
    with pytest.raises(evq.ConfigError, match=r"middleware must be a list of evq\.Middleware"):
        class NotAList(evq.Job):
            job_name = "i11.not_a_list"
            middleware = Tag("x")  # type: ignore[assignment]

    with pytest.raises(evq.ConfigError, match="middleware must be a list"):
        @evq.job(name="i11.not_middleware", middleware=[print])  # type: ignore[list-item]
        def not_middleware() -> None: ...

    with pytest.raises(evq.ConfigError, match="Worker: middleware must be a list"):
        evq.connect("memory://").worker(middleware=[object()])


def test_a_job_runs_without_a_worker_and_its_middleware_stays_out() -> None:
    assert Tagged().handle() == os.getpid()


def test_evq_work_takes_middleware_from_a_module(url: str, q: evq.Queue) -> None:
    job = q.dispatch(Tagged())
    work(url, "--app", "tests.i11_jobs", "--middleware", "tests.i11_jobs:GLOBAL")
    outer = result(q, job)
    assert outer["global"]["class"] == outer["pid"] != os.getpid()


@pytest.mark.parametrize(("spec", "message"), [
    ("tests.i11_jobs", "give MODULE:NAME"),
    ("tests.i11_jobs:NOWHERE", "tests.i11_jobs has no NOWHERE"),
    ("tests.i11_jobs:SEEN", "middleware must be a list of evq.Middleware"),
])
def test_evq_work_refuses_a_bad_middleware_option(url: str, spec: str, message: str) -> None:
    from tests.test_e2e import run_evq

    res = run_evq(url, "work", "--app", "tests.i11_jobs", "--middleware", spec,
                  "--stop-when-empty")
    assert res.returncode == 1 and "Traceback" not in res.stderr
    [line] = res.stderr.splitlines()
    assert line.startswith("error: --middleware") and message in line


