"""Retry jitter: ``evq.Exponential``, ``evq.Linear`` and ``evq.Fixed`` with ``jitter``; the
jittered wait is drawn when the retry is decided and recorded in ``JobRetryScheduled.run_at``,
so a rebuild gives the same state."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

import evq
from evq.eventlog.events import JobDispatched, JobRetryScheduled
from evq.projections.model import JobRow
from evq.workers.retry import after_failure, backoff_schedule

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.i11_jobs import Jittery  # noqa: E402


def test_the_waits_before_jitter() -> None:
    assert backoff_schedule(evq.Exponential(base=10, jitter=0.2), 4) == [10, 20, 40]
    assert backoff_schedule(evq.Linear(5), 4) == [5, 10, 15]
    assert backoff_schedule(evq.Fixed(3, jitter=1), 3) == [3, 3]


@pytest.mark.parametrize(("make", "message"), [
    (lambda: evq.Exponential(base=10, jitter=1.5), "jitter must be a number from 0 to 1"),
    (lambda: evq.Linear(base=1, jitter=-0.1), "jitter must be a number from 0 to 1"),
    (lambda: evq.Fixed(base=0), "base must be a positive number of seconds"),
    (lambda: evq.Exponential(base="10"), "base must be a positive number of seconds"),
])
def test_a_bad_backoff_is_refused_where_the_class_is_defined(make: Any, message: str) -> None:
    with pytest.raises(evq.ConfigError, match=message):
        class Bad(evq.Job):
            job_name = "i11.bad_backoff"
            tries = 2
            backoff = make()


def _row(jitter: float) -> JobRow:
    return JobRow(id=7, name="n", queue="q", state="running", priority=0, run_at=0.0,
                  payload="{}", tries=3, backoff="[10.0, 20.0]", timeout=None,
                  dispatched_at=0.0, attempt=1, jitter=jitter)


@pytest.mark.parametrize(("draw", "wait"), [(0.0, 8.0), (0.5, 10.0), (1.0, 12.0)])
def test_the_jitter_is_drawn_at_the_decision(draw: float, wait: float) -> None:
    retry = after_failure(_row(0.2), 100.0, rand=lambda: draw)
    assert isinstance(retry, JobRetryScheduled) and retry.run_at == pytest.approx(100.0 + wait)
    assert after_failure(_row(0.0), 100.0, rand=lambda: 0.0).run_at == 110.0  # type: ignore[union-attr]


def test_the_jittered_wait_is_recorded_and_replays_the_same(queue: evq.Queue) -> None:
    job = queue.dispatch(Jittery())
    [dispatched] = [r.event for r in queue.history(job) if isinstance(r.event, JobDispatched)]
    assert dispatched.jitter == 0.5 and queue.job(job).jitter == 0.5
    assert queue.worker(stop_when_empty=True).run() == 1  # then the retry waits ~10 s
    [retry] = [r.event for r in queue.history(job) if isinstance(r.event, JobRetryScheduled)]
    assert 5.0 <= retry.run_at - retry.ts <= 15.0
    assert queue.job(job).run_at == retry.run_at
    assert queue.store.verify() == []
