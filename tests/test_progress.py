"""Progress reports: ``self.progress()`` in ``handle()`` appends ``JobProgress`` through the
worker's group commit (from a process-pool child over its pipe), throttled to about 4 a second
with the last one always kept; ``q.job()``, ``evq jobs`` and ``--json`` show it; outside a
worker it does nothing. Also: a store of schema version 4 gets the new columns from its log."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from helpers import wait_until
from typer.testing import CliRunner

import evq
from evq.cli.main import app
from evq.eventlog.events import JobLeased, JobProgress, JobStarted
from evq.workers.control import PROGRESS_INTERVAL

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.i11_jobs import Reports, Sleeps, UntilCancelled  # noqa: E402
from tests.test_liveness import reopened_as_of  # noqa: E402


def reports(q: evq.Queue, job_id: int) -> list[JobProgress]:
    return [r.event for r in q.history(job_id) if isinstance(r.event, JobProgress)]


@pytest.mark.parametrize("pool", ["thread", "process"])
def test_reports_are_throttled_and_the_last_one_is_kept(queue: evq.Queue, pool: str) -> None:
    job = queue.dispatch(Reports(n=20_000))
    started = time.monotonic()
    assert queue.worker(pool=pool, stop_when_empty=True).run() == 1
    took = time.monotonic() - started
    got = reports(queue, job)
    assert 2 <= len(got) <= took / PROGRESS_INTERVAL + 2  # the first, the last, ~4 a second
    assert (got[0].fraction, got[0].message, got[0].attempt) == (0.0, "0 of 20000", 1)
    assert (got[-1].fraction, got[-1].message) == (1.0, "done")
    row = queue.job(job)
    assert (row.state, row.progress, row.progress_message) == ("succeeded", 1.0, "done")


@pytest.mark.parametrize(("job_type", "pool", "seen"), [
    (UntilCancelled, "thread", (0.4, "resized 4 of 10")), (Sleeps, "process", (0.1, ""))])
def test_a_running_jobs_progress_shows_while_it_runs(
        queue: evq.Queue, worker_thread: Any, job_type: type[evq.Job], pool: str,
        seen: tuple[float, str]) -> None:
    job = queue.dispatch(job_type())
    running = worker_thread(queue.worker(pool=pool, sleep=0.2))
    row = wait_until(lambda: (r := queue.job(job)).progress is not None and r)
    assert (row.state, row.progress, row.progress_message) == ("running", *seen)
    queue.cancel(job)
    wait_until(lambda: queue.job(job).state == "cancelled", timeout=10)
    running.stop()


def test_outside_a_worker_progress_and_cancelled_do_nothing() -> None:
    job = Reports(n=3)
    assert job.handle() == 3
    assert job.cancelled is False
    with pytest.raises(evq.InvalidArguments, match="progress must be a number from 0 to 1"):
        job.progress(1.5)


def test_evq_jobs_shows_progress_when_a_job_has_some(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/evq.db"
    q = evq.connect(url)
    quiet = q.dispatch(Reports(n=1))
    job = q.dispatch(Reports(n=1))
    runner = CliRunner()
    assert "progress" not in runner.invoke(app, ["--url", url, "jobs"]).stdout
    now = time.time()
    q.append([JobLeased(job_id=job, ts=now, worker="w", attempt=1, lease_expires=now + 30),
              JobStarted(job_id=job, ts=now, attempt=1),
              JobProgress(job_id=job, ts=now, attempt=1, fraction=0.25, message="1 of 4")])
    out = runner.invoke(app, ["--url", url, "jobs"]).stdout
    assert "progress" in out and "25% 1 of 4" in out
    rows = {r["id"]: r for r in json.loads(runner.invoke(app, ["--url", url, "jobs",
                                                                "--json"]).stdout)}
    assert (rows[job]["progress"], rows[job]["progress_message"]) == (0.25, "1 of 4")
    assert rows[quiet]["progress"] is None
    q.close()


def test_a_store_of_schema_version_4_gets_the_new_columns_from_its_log(tmp_path: Any) -> None:
    q = evq.connect(f"sqlite:///{tmp_path}/old.db")
    job = q.dispatch(Reports(n=1))
    now = time.time()
    q.append([JobLeased(job_id=job, ts=now, worker="w", attempt=1, lease_expires=now + 30),
              JobStarted(job_id=job, ts=now, attempt=1),
              JobProgress(job_id=job, ts=now, attempt=1, fraction=0.5, message="half")])
    q.cancel(job, "why")
    q = reopened_as_of(q, 4, *(f"ALTER TABLE jobs DROP COLUMN {c}" for c in (
        "cancel_requested", "progress", "progress_message", "jitter", "meta")))
    try:
        assert q.store.schema_was == 4
        row = q.job(job)
        assert (row.progress, row.progress_message, row.cancel_requested) == (0.5, "half", "why")
        assert q.store.verify() == []
    finally:
        q.close()


def test_evq_migrate_upgrades_a_postgresql_store_of_schema_version_4(postgres_url: str) -> None:
    q = evq.connect(postgres_url)
    job = q.dispatch(Reports(n=1))
    q.cancel(job, "why")
    with q.store.log.transaction():
        for c in ("cancel_requested", "progress", "progress_message", "jitter", "meta"):
            q.store.log.execute(f"ALTER TABLE jobs DROP COLUMN {c}")
        q.store.log.execute("UPDATE evq_schema SET version = 4")
    q.close()
    with pytest.raises(evq.StoreError, match="run evq migrate"):
        evq.connect(postgres_url)
    q = evq.connect(postgres_url, upgrade=True)
    try:
        assert (q.store.schema_was, q.job(job).cancel_requested) == (4, None)
        assert q.job(job).state == "cancelled" and q.store.verify() == []
    finally:
        q.close()
