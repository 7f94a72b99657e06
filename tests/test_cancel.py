"""Cancelling a job: a pending one at once; a leased or running one through its worker, which
stops it (an async task cancelled, a process-pool child killed, a sync job told through
``self.cancelled``) and ends the attempt as cancelled, without retry. Also the decisions after a
lease lost with a cancel request outstanding, the fencing of stale cancels, and ``evq cancel``."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import pytest
from helpers import event_types, wait_until
from typer.testing import CliRunner

import evq
from evq.cli.main import app
from evq.eventlog.events import (
    JobCancelled,
    JobCancelRequested,
    JobFailed,
    JobLeased,
    JobRetryScheduled,
    JobStarted,
)
from evq.projections.model import JobRow
from evq.workers.retry import after_failure, after_lease_expired

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.i11_jobs import AsyncSleeps, Sleeps, Tagged, UntilCancelled  # noqa: E402
from tests.test_e2e import Evq  # noqa: E402


def cancelled_event(q: evq.Queue, job_id: int) -> JobCancelled:
    [event] = [r.event for r in q.history(job_id) if isinstance(r.event, JobCancelled)]
    return event


def test_a_pending_job_is_cancelled_at_once(queue: evq.Queue) -> None:
    job = queue.dispatch(Tagged())
    row = queue.cancel(job, "not needed")
    assert (row.state, row.error) == ("cancelled", "not needed")
    assert cancelled_event(queue, job).attempt == 0


@pytest.mark.parametrize(("job_type", "pool"), [(UntilCancelled, "thread"),
                                                (AsyncSleeps, "thread"), (Sleeps, "process")])
def test_the_worker_stops_a_running_job_and_records_it_cancelled(
        queue: evq.Queue, worker_thread: Any, job_type: type[evq.Job], pool: str) -> None:
    job = queue.dispatch(job_type())
    running = worker_thread(queue.worker(pool=pool, sleep=0.2))
    wait_until(lambda: queue.job(job).progress is not None, what="the job's first report")
    row = queue.cancel(job, "operator")
    assert (row.state, row.cancel_requested) == ("running", "operator")
    wait_until(lambda: queue.job(job).state == "cancelled", timeout=10)
    row = queue.job(job)
    assert (row.error, row.attempt, row.failures) == ("operator", 1, 0)
    assert event_types(queue, job)[-2:] == ["JobCancelRequested", "JobCancelled"]
    assert (cancelled_event(queue, job).attempt, cancelled_event(queue, job).reason) == (
        1, "operator")
    after = queue.dispatch(Tagged())  # the worker goes on
    wait_until(lambda: queue.job(after).state == "succeeded", timeout=30)
    running.stop()
    assert queue.store.verify() == []


def test_a_job_claimed_but_not_started_is_cancelled_without_running(
        queue: evq.Queue, worker_thread: Any) -> None:
    first = queue.dispatch(Tagged())  # once a job has finished, the worker claims ahead
    running = worker_thread(queue.worker(sleep=0.2))
    wait_until(lambda: queue.job(first).state == "succeeded")
    busy, waiting = queue.dispatch_many([UntilCancelled(), Tagged()])
    wait_until(lambda: queue.job(busy).state == "running" and queue.job(waiting).state == "leased")
    queue.cancel(waiting)
    wait_until(lambda: queue.job(waiting).state == "cancelled", timeout=10)
    assert event_types(queue, waiting) == ["JobDispatched", "JobLeased", "JobCancelRequested",
                                           "JobCancelled"]
    assert queue.job(busy).state == "running"
    queue.cancel(busy)
    wait_until(lambda: queue.job(busy).state == "cancelled", timeout=10)
    running.stop()


def test_a_job_that_failed_before_its_worker_saw_the_request_is_cancelled_when_claimed(
        queue: evq.Queue) -> None:
    job = queue.dispatch(Tagged())
    now = time.time()
    queue.append([JobLeased(job_id=job, ts=now, worker="w", attempt=1, lease_expires=now + 30),
                  JobStarted(job_id=job, ts=now, attempt=1)])
    queue.cancel(job, "late")
    queue.append([JobFailed(job_id=job, ts=now, attempt=1, error_type="E", message="m"),
                  JobRetryScheduled(job_id=job, ts=now, attempt=1, run_at=now)])
    assert queue.job(job).state == "pending"  # the failing worker did not know yet
    assert queue.worker(stop_when_empty=True).run() == 0
    assert (queue.job(job).state, queue.job(job).error) == ("cancelled", "late")
    assert event_types(queue, job).count("JobStarted") == 1


def test_a_stale_cancel_changes_nothing(queue: evq.Queue) -> None:
    job = queue.dispatch(Tagged())
    now = time.time()
    queue.append([JobLeased(job_id=job, ts=now, worker="w", attempt=1, lease_expires=now + 30),
                  JobCancelRequested(job_id=job, ts=now, attempt=2),
                  JobCancelled(job_id=job, ts=now, attempt=2)])
    row = queue.job(job)
    assert (row.state, row.cancel_requested) == ("leased", None)


def test_cancel_of_an_unknown_or_finished_job_is_refused(queue: evq.Queue) -> None:
    with pytest.raises(evq.NotFound):
        queue.cancel(999)
    job = queue.dispatch(Tagged())
    queue.cancel(job)
    with pytest.raises(evq.InvalidState, match=f"cannot cancel job {job}: it is cancelled"):
        queue.cancel(job)


# -- decisions after a lost lease --------------------------------------------------------------


def _row(state: str, cancel_requested: str | None) -> JobRow:
    return JobRow(id=7, name="n", queue="q", state=state, priority=0, run_at=0.0, payload="{}",
                  tries=3, backoff="[1]", timeout=None, dispatched_at=0.0, attempt=2,
                  worker="w", cancel_requested=cancel_requested)


def test_a_lost_lease_with_a_cancel_request_cancels_instead_of_retrying() -> None:
    assert [type(e).__name__ for e in after_lease_expired(_row("running", None), 5.0)] == [
        "LeaseExpired", "JobRetryScheduled"]
    [_, cancel] = after_lease_expired(_row("running", "r"), 5.0)
    assert cancel == JobCancelled(job_id=7, ts=5.0, attempt=2, reason="r")
    [_, cancel] = after_lease_expired(_row("leased", "r"), 5.0)  # then pending: cancelled so
    assert cancel == JobCancelled(job_id=7, ts=5.0, reason="r")
    assert after_failure(_row("running", ""), 5.0) == JobCancelled(job_id=7, ts=5.0, attempt=2)


# -- evq cancel ----------------------------------------------------------------------------------


def cli(url: str, *args: Any) -> Any:
    return CliRunner().invoke(app, ["--url", url, *map(str, args)])


def test_evq_cancel(url: str, q: evq.Queue) -> None:
    job = q.dispatch(Tagged())
    ok = cli(url, "cancel", job, "--reason", "no longer needed")
    assert (ok.exit_code, ok.stdout) == (0, f"cancelled job {job}\n")
    assert q.job(job).error == "no longer needed"
    for args, message in (((job,), f"error: cannot cancel job {job}: it is cancelled"),
                          ((999,), "error: no job 999")):
        res = cli(url, "cancel", *args)
        assert res.exit_code == 1 and res.output.splitlines() == [message]


@pytest.mark.slow
@pytest.mark.parametrize("pool", ["thread", "process"])
def test_evq_cancel_stops_a_job_in_a_worker_process(url: str, q: evq.Queue, pool: str,
                                                    spawn: Any) -> None:
    job = q.dispatch(UntilCancelled() if pool == "thread" else Sleeps())
    worker = spawn(url, "work", "--app", "tests.i11_jobs", "--pool", pool, "--sleep", "0.2")
    wait_until(lambda: q.job(job).progress is not None, timeout=30)  # running, reported
    res = cli(url, "cancel", job)
    assert res.exit_code == 0
    assert res.stdout.startswith(f"cancel requested for job {job} (running on worker ")
    wait_until(lambda: q.job(job).state == "cancelled", timeout=10)
    assert event_types(q, job)[-2:] == ["JobCancelRequested", "JobCancelled"]
    after = q.dispatch(Tagged())
    wait_until(lambda: q.job(after).state == "succeeded", timeout=30)
    worker.signal(15)
    assert worker.wait() == 0


@pytest.fixture
def spawn() -> Any:
    started: list[Evq] = []

    def start(url: str, *args: Any) -> Evq:
        started.append(Evq(url, *args))
        return started[-1]

    yield start
    for p in started:
        p.stop()
