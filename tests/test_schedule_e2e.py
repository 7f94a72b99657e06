"""Schedulers as real ``evq schedule`` processes: two at once dispatch each tick once; one killed
(SIGKILL) and started again catches up once with ``missed = "once"`` and not with "skip"; an idle
one uses next to no CPU.

The schedulers share a fast clock (``EVQ_SCHEDULER_CLOCK``: a schedule minute in a fraction of a
real second), so the every-minute schedules of ``tests.sched_jobs`` tick many times in seconds.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable

import pytest
from helpers import wait_until
from test_e2e import Evq, run_evq, spawn  # noqa: F401  (fixtures)

import evq
from evq.eventlog.events import ScheduleTicked
from evq.schedules import schedulers
from evq.workers.scheduler import CLOCK_ENV

pytestmark = pytest.mark.slow

APP = "tests.sched_jobs"
START = 1767225630.0  # 2026-01-01T00:00:30Z: the first tick comes half a schedule minute in
SPEED = 60.0  # a schedule minute per real second


def ticks(queue: evq.Queue, name: str) -> list[ScheduleTicked]:
    return [r.event for r in queue.events(types=["ScheduleTicked"])  # type: ignore[misc]
            if r.event.schedule == name]  # type: ignore[attr-defined]


def schedule_now() -> float:
    return START + (time.time() - float(_anchor[0])) * SPEED


_anchor: list[float] = [0.0]


@pytest.fixture
def fast_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """Schedulers started by the test share a clock that starts at ``START`` now."""
    _anchor[0] = time.time()
    monkeypatch.setenv(CLOCK_ENV, f"{START}:{SPEED}:{_anchor[0]}")


def assert_consecutive(got: list[ScheduleTicked]) -> None:
    assert [t.tick for t in got] == [got[0].tick + 60 * i for i in range(len(got))]


def test_two_schedulers_dispatch_each_tick_once(url: str, q: evq.Queue,
                                                spawn: Callable[..., Evq],  # noqa: F811
                                                fast_clock: None) -> None:
    procs = [spawn(url, "schedule", "--app", APP) for _ in range(2)]
    wait_until(lambda: len(ticks(q, "SchedOnce")) >= 8 and len(ticks(q, "SchedSkip")) >= 8,
               timeout=90, what="eight ticks of each schedule")
    for p in procs:
        p.signal(signal.SIGTERM)
    for p in procs:
        assert p.wait(30) == 0, p.stderr
        assert "Traceback" not in p.stderr
    for name in ("SchedOnce", "SchedSkip"):
        got = ticks(q, name)
        assert_consecutive(got)  # no tick twice, none left out
        assert all(t.skipped == 0 and not t.manual for t in got)
        assert sorted(t.job_id for t in got) == sorted({t.job_id for t in got})
        assert {q.job(t.job_id).name for t in got} == {name}
    listed = schedulers(q, stopped=True)
    assert len(listed) == 2 and {s.status for s in listed} == {"stopped"}
    assert sum(s.dispatched for s in listed) == len(ticks(q, "SchedOnce")) + len(
        ticks(q, "SchedSkip"))
    assert run_evq(url, "replay", "--since", "0", "--verify").returncode == 0


def test_a_killed_scheduler_restarted_catches_up_once_or_skips(
        url: str, q: evq.Queue, spawn: Callable[..., Evq],  # noqa: F811
        fast_clock: None) -> None:
    first = spawn(url, "schedule", "--app", APP, "--lease", "1")
    wait_until(lambda: len(ticks(q, "SchedOnce")) >= 3 and len(ticks(q, "SchedSkip")) >= 3,
               timeout=60, what="three ticks")
    first.signal(signal.SIGKILL)
    assert first.wait(10) == -signal.SIGKILL
    killed_at = schedule_now()
    last = {n: ticks(q, n)[-1].tick for n in ("SchedOnce", "SchedSkip")}
    wait_until(lambda: schedule_now() > killed_at + 5 * 60, what="five schedule minutes")
    listed = run_evq(url, "schedule", "status", "--json")
    assert listed.returncode == 0, listed.stderr
    assert [s["status"] for s in json.loads(listed.stdout)] == ["lost"]  # silent past its lease
    spawn(url, "schedule", "--app", APP)
    wait_until(lambda: len(schedulers(q)) == 2, what="the second scheduler's start")
    # the schedule time at which it started (it reads its clock just before it writes this)
    since = START + (schedulers(q)[-1].started_at - _anchor[0]) * SPEED
    wait_until(lambda: any(t.tick > since for t in ticks(q, "SchedOnce"))
               and any(t.tick > since for t in ticks(q, "SchedSkip")),
               timeout=60, what="a tick after the restart")

    once = [t for t in ticks(q, "SchedOnce") if t.tick > last["SchedOnce"]]
    catch_up, *on_time = once
    assert catch_up.tick < since and since - catch_up.tick <= 60  # the latest missed tick,
    assert catch_up.skipped == (catch_up.tick - last["SchedOnce"]) / 60 - 1 >= 4  # only it
    assert on_time and all(t.tick >= since and t.skipped == 0 for t in on_time)
    assert_consecutive(once)

    skip = [t for t in ticks(q, "SchedSkip") if t.tick > last["SchedSkip"]]
    assert skip[0].tick >= since  # no catch-up: the gap is counted instead
    assert skip[0].skipped == (skip[0].tick - last["SchedSkip"]) / 60 - 1 >= 5
    assert all(t.skipped == 0 for t in skip[1:])
    assert_consecutive(skip)
    assert run_evq(url, "replay", "--since", "0", "--verify").returncode == 0


def test_an_idle_scheduler_uses_next_to_no_cpu(url: str, q: evq.Queue,
                                               spawn: Callable[..., Evq]) -> None:  # noqa: F811
    from benchmarks.procstat import idle_cpu_percent

    proc = spawn(url, "schedule", "--app", APP)  # the real clock: a tick a minute
    wait_until(lambda: schedulers(q), what="the scheduler's start")
    percent = idle_cpu_percent(proc.proc.pid, 5.0)
    print(f"idle scheduler: {percent:.2f}% of a core over 5 s")
    assert percent < 0.5
    proc.signal(signal.SIGTERM)
    started = time.monotonic()
    assert proc.wait(10) == 0
    assert time.monotonic() - started < 3  # it sleeps until its next tick, but wakes for stop


def test_a_worker_with_schedule_runs_a_scheduler_and_the_jobs(
        url: str, q: evq.Queue, spawn: Callable[..., Evq],  # noqa: F811
        fast_clock: None) -> None:
    worker = spawn(url, "work", "--app", APP, "--schedule", "--sleep", "0.1")
    wait_until(lambda: sum(q.job(t.job_id).state == "succeeded"
                           for t in ticks(q, "SchedOnce")) >= 2, timeout=60,
               what="two scheduled jobs run")
    assert len(schedulers(q)) == 1 and len(q.workers()) == 1
    worker.signal(signal.SIGTERM)
    assert worker.wait(30) == 0, worker.stderr
    assert schedulers(q) == [] and q.workers() == []  # both stopped
