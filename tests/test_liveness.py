"""Worker liveness (``workers`` projection), health checks, and the embedded worker."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any

import pytest
from helpers import wait_until
from jobs import GATES, Add, Held, Rated, Unique

import evq
from evq import health
from evq.eventlog.events import (
    JobFailed,
    JobLeased,
    JobStarted,
    JobSucceeded,
    WorkerHeartbeat,
    WorkerStarted,
    WorkerStopped,
)


def test_a_worker_writes_its_start_heartbeat_and_stop(queue: evq.Queue) -> None:
    queue.dispatch_many([Add(a=i, b=1) for i in range(3)])
    worker = queue.worker(lease=0.3, sleep=0.05)
    with worker.start() as running:
        wait_until(lambda: [w for w in queue.workers() if w.done >= 3], what="a heartbeat")
        [status] = queue.workers()
        assert (status.name, status.status, status.pool) == (worker.name, "alive", "thread")
    assert running.done == 3 and not running.alive
    assert queue.workers() == []
    [stopped] = queue.workers(stopped=True)
    assert stopped.status == "stopped" and stopped.done == 3
    kinds = [r.event.__struct_config__.tag for r in queue.events(
        types=["WorkerStarted", "WorkerHeartbeat", "WorkerStopped"])]
    assert kinds[0] == "WorkerStarted" and kinds[-1] == "WorkerStopped"
    assert {r.event.job_id for r in queue.events(types=["WorkerHeartbeat"])} == {0}
    assert queue.store.verify() == []


def test_heartbeats_are_per_interval_not_per_job(queue: evq.Queue) -> None:
    queue.dispatch_many([Add(a=i, b=1) for i in range(300)])
    queue.worker(stop_when_empty=True, lease=30).run()
    beats = list(queue.events(types=["WorkerStarted", "WorkerHeartbeat", "WorkerStopped"]))
    assert len(beats) <= 3


def test_a_silent_worker_is_lost_and_its_jobs_are_listed(queue: evq.Queue) -> None:
    now = time.time()
    [job] = queue.dispatch_many([Add(a=1, b=1)])
    queue.append([WorkerStarted(ts=now - 60, worker="gone", lease=10.0),
                  JobLeased(job_id=job, ts=now - 59, worker="gone", attempt=1,
                            lease_expires=now + 5),
                  WorkerStarted(ts=now - 60, worker="here", lease=10.0),
                  WorkerHeartbeat(ts=now - 1, worker="here")])
    listed = {w.name: (w.status, w.held) for w in queue.workers(now=now)}
    assert listed == {"gone": ("lost", [job]), "here": ("alive", [])}
    report = queue.health(now=now)
    assert report.status == "degraded" and report.code == 1
    assert "1 lost still holding 1 jobs" in report.checks[1].detail


def test_health_thresholds(queue: evq.Queue) -> None:
    now = time.time()
    assert queue.health(now=now).status == "unhealthy"  # no worker
    queue.append([WorkerStarted(ts=now, worker="w", queues=["default"])])
    assert queue.health(now=now).status == "ok"
    ids = queue.dispatch_many([Add(a=i, b=1) for i in range(4)])
    assert queue.health(now=now + 1, max_backlog=3).status == "degraded"
    assert queue.health(now=now + 1, max_backlog=4).status == "ok"
    events: list[Any] = []
    for n, i in enumerate(ids):
        events.append(JobLeased(job_id=i, ts=now, worker="w", attempt=1, lease_expires=now))
        events.append(JobStarted(job_id=i, ts=now, worker="w", attempt=1))
        events.append(JobSucceeded(job_id=i, ts=now, attempt=1, duration=0.0) if n else
                      JobFailed(job_id=i, ts=now, attempt=1, error_type="E", message="m"))
    # outcomes under a stale lease are in the log but change nothing: health ignores them too
    events += [JobFailed(job_id=i, ts=now, attempt=7, error_type="E", message="m") for i in ids]
    queue.append(events)
    report = queue.health(now=now + 1, max_failure_rate=0.2)
    assert report.status == "degraded" and "25.0% of 4 attempts" in report.checks[3].detail
    assert queue.health(now=now + 1, max_failure_rate=0.3).status == "ok"
    assert queue.health(now=now + 400, window=300).checks[3].detail.startswith("0.0% of 0")


def test_health_of_an_unreachable_store() -> None:
    report = health.unreachable("cannot open x")
    assert (report.status, report.code) == ("unhealthy", 2)


def test_a_stopped_worker_is_not_revived_by_a_late_heartbeat(queue: evq.Queue) -> None:
    now = time.time()
    queue.append([WorkerStarted(ts=now, worker="w"), WorkerStopped(ts=now + 1, worker="w"),
                  WorkerHeartbeat(ts=now + 2, worker="w")])
    assert queue.workers(now=now + 3) == []


# -- the embedded worker -------------------------------------------------------------------------


def test_embedded_worker_in_a_thread(queue: evq.Queue) -> None:
    running = queue.worker(sleep=0.05).start()
    job = queue.dispatch(Add(a=2, b=3))
    wait_until(lambda: queue.job(job).state == "succeeded", what="the job")
    assert running.alive
    assert running.stop(10) == 1
    assert not running.alive


def test_embedded_worker_stops_at_once_without_waiting(queue: evq.Queue) -> None:
    queue.dispatch(Held(key="embedded-hard-stop"))
    gate = GATES["embedded-hard-stop"]
    running = queue.worker(sleep=0.05, grace=30).start()
    assert gate.started.wait(10)
    started = time.monotonic()
    try:
        running.stop(10, wait=False)
        assert time.monotonic() - started < 3 and not running.alive
    finally:
        gate.release.set()


def test_embedded_worker_as_an_asyncio_context(queue: evq.Queue) -> None:
    async def app() -> int | None:
        async with queue.worker(sleep=0.05).start() as running:
            job = queue.dispatch(Add(a=1, b=1))
            while queue.job(job).state != "succeeded":
                await asyncio.sleep(0.01)  # the app's loop keeps running meanwhile
        return running.done

    assert asyncio.run(asyncio.wait_for(app(), 20)) == 1


def test_embedded_worker_reports_its_error(queue: evq.Queue,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    worker = queue.worker(sleep=0.05)

    def broken() -> None:
        raise RuntimeError("the loop broke")

    monkeypatch.setattr(worker, "_loop", broken)
    running = worker.start()
    with pytest.raises(RuntimeError, match="the loop broke"):
        running.join(10)


# -- the commands ------------------------------------------------------------------------------


def evq_cli(*args: Any) -> Any:
    from typer.testing import CliRunner

    from evq.cli.main import app

    return CliRunner().invoke(app, [str(a) for a in args])


def test_evq_workers_and_health_commands(tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path}/evq.db"
    with contextlib.closing(evq.connect(url)) as q:
        now = time.time()
        q.append([WorkerStarted(ts=now, worker="w1", pid=11, queues=["a", "b", "default"]),
                  WorkerStarted(ts=now - 100, worker="w0", lease=10.0)])
        q.dispatch_many([Add(a=i, b=1) for i in range(3)])
    listed = evq_cli("--url", url, "workers", "--json")
    assert listed.exit_code == 0
    assert [(w["name"], w["status"], w["queues"]) for w in json.loads(listed.stdout)] == [
        ("w0", "lost", ""), ("w1", "alive", "a,b,default")]
    table = evq_cli("--url", url, "workers")
    assert table.exit_code == 0 and "w1" in table.stdout and "alive" in table.stdout

    healthy = evq_cli("--url", url, "health", "--json")
    assert healthy.exit_code == 0, healthy.output
    report = json.loads(healthy.stdout)
    assert report["status"] == "ok"
    assert [c["name"] for c in report["checks"]] == ["store", "workers", "backlog",
                                                     "failure_rate", "runnable"]
    degraded = evq_cli("--url", url, "health", "--max-backlog", "2")
    assert degraded.exit_code == 1 and degraded.stdout.splitlines()[-1] == "degraded"
    assert evq_cli("--url", url, "health", "--min-workers", "2").exit_code == 2
    gone = evq_cli("--url", f"sqlite:///{tmp_path}/nowhere/evq.db", "health", "--json")
    assert gone.exit_code == 2 and json.loads(gone.stdout)["status"] == "unhealthy"
    bad = evq_cli("--url", url, "health", "--max-failure-rate", "2")
    assert bad.exit_code == 2 and "Traceback" not in bad.output


def reopened_as_of(q: evq.Queue, version: int, *statements: str) -> evq.Queue:
    """``q``'s store turned back into one of schema ``version`` (by ``statements``), closed and
    opened again: what an older evq left."""
    with q.store.log.transaction() as conn:
        for statement in statements:
            conn.execute(statement)
        conn.execute(f"PRAGMA user_version={version}")
    q.close()
    return evq.connect(q.url)


def test_a_store_of_schema_version_2_gets_its_minutes_derived_from_the_log(
        tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path}/old.db"
    q = evq.connect(url)
    now = time.time()
    [i] = q.dispatch_many([Add(a=1, b=1)])
    q.append([JobLeased(job_id=i, ts=now, worker="w", attempt=1, lease_expires=now + 30),
              JobStarted(job_id=i, ts=now, worker="w", attempt=1),
              JobFailed(job_id=i, ts=now, attempt=1, error_type="E", message="m")])
    q = reopened_as_of(q, 2, "DROP TABLE minutes")
    try:
        assert [(m.failures, m.successes) for m in q.store.tables.minutes(now - 60)] == [(1, 0)]
        assert q.store.verify() == []
    finally:
        q.close()


def test_a_store_of_schema_version_3_gets_the_names_its_workers_run(tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path}/old.db"
    q = evq.connect(url)
    q.append([WorkerStarted(ts=time.time(), worker="w", queues=["default"], names=["core.add"])])
    q = reopened_as_of(q, 3, "ALTER TABLE workers DROP COLUMN names")
    try:
        assert [w.names for w in q.store.workers.all()] == ["core.add"]
        assert q.store.verify() == []
    finally:
        q.close()


def test_a_store_of_schema_version_4_gets_its_uniques_and_the_limits_of_its_jobs(
        tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path}/old.db"
    q = evq.connect(url)
    unique, rated = q.dispatch(Unique(n=1)), q.dispatch(Rated(tenant="t"))
    q = reopened_as_of(q, 4, "DROP TABLE uniques", "DROP INDEX jobs_limits_held",
                       "DROP INDEX jobs_limits_starts",
                       *(f"ALTER TABLE jobs DROP COLUMN {c}" for c in (
                           "limit_key", "rate_limit", "rate_per", "concurrency_limit")))
    try:
        assert [(u.key, u.job_id) for u in q.store.tables.uniques()] == [
            ('core.unique:{"n":1}', unique)]
        assert (q.job(rated).limit_key, q.job(rated).rate_limit) == ("tenant:t", 2)
        assert q.dispatch(Unique(n=1)) == unique
        assert q.store.verify() == []
    finally:
        q.close()
