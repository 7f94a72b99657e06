"""Cron schedules: the pure tick decisions, declarations and their mistakes, the store's guard that
makes a tick dispatch once, the in-process scheduler, the upgrade of a version-5 store, the CLI.

The scheduler runs on a fast :class:`Clock` (a minute of schedule time in a fraction of a second),
so no test waits for a real minute.
"""

from __future__ import annotations

import json
import re
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from helpers import wait_until
from test_liveness import reopened_as_of

import evq
from evq.eventlog.events import JobDispatched, ScheduleTicked, WorkerStarted
from evq.projections import snapshot
from evq.projections.replay import replay
from evq.schedules import Schedule, registered, schedulers
from evq.workers import cron, registry
from evq.workers.scheduler import Clock, Scheduler

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.sched_jobs import SchedCleanup, SchedOnce  # noqa: E402

START = datetime(2026, 1, 1, 10, 0, tzinfo=UTC).timestamp()
MINUTE = 60.0
EVERY_MINUTE = cron.parse("* * * * *")


# -- the decision: a pure function of now ------------------------------------------------------


def test_a_new_schedule_starts_with_the_first_tick_after_its_scheduler() -> None:
    due = cron.due(EVERY_MINUTE, last_tick=None, now=START + 1, since=START - 5, missed="once")
    assert due == cron.Due(START, 0)
    # ticks before the scheduler started are not owed to a schedule that never ticked
    assert cron.due(EVERY_MINUTE, last_tick=None, now=START + 1, since=START + 0.5,
                    missed="once") is None


def test_a_tick_recorded_already_is_not_due_again() -> None:
    assert cron.due(EVERY_MINUTE, last_tick=START, now=START + 59, since=START - 600,
                    missed="once") is None
    assert cron.due(EVERY_MINUTE, last_tick=START, now=START + 60, since=START - 600,
                    missed="once") == cron.Due(START + 60, 0)


def test_ticks_missed_while_no_scheduler_ran_follow_the_policy() -> None:
    # last tick 10:00, a scheduler back at 10:10:30: 10:01 to 10:10 fell while none ran
    back = START + 630
    once = cron.due(EVERY_MINUTE, last_tick=START, now=back, since=back, missed="once")
    assert once == cron.Due(START + 600, 9)  # one catch-up: the latest, the rest skipped
    assert cron.due(EVERY_MINUTE, last_tick=START + 600, now=back, since=back,
                    missed="once") is None
    assert cron.due(EVERY_MINUTE, last_tick=START, now=back, since=back, missed="skip") is None
    # the next tick is on time either way; with "skip" it counts what was not dispatched
    assert cron.due(EVERY_MINUTE, last_tick=START, now=back + 31, since=back,
                    missed="skip") == cron.Due(START + 660, 10)
    assert cron.due(EVERY_MINUTE, last_tick=START + 600, now=back + 31, since=back,
                    missed="once") == cron.Due(START + 660, 0)


def test_a_scheduler_that_woke_late_dispatches_each_tick_it_owes_in_order() -> None:
    owed = []
    last = START
    while (d := cron.due(EVERY_MINUTE, last_tick=last, now=START + 150, since=START - 10,
                         missed="skip")) is not None:
        owed.append(d)
        last = d.tick
    assert owed == [cron.Due(START + 60, 0), cron.Due(START + 120, 0)]


def test_a_gap_too_long_to_count_is_counted_up_to_a_bound() -> None:
    year = 366 * 86400
    got = cron.due(EVERY_MINUTE, last_tick=START - year, now=START + 1, since=START + 1,
                   missed="once")
    assert got == cron.Due(START, cron.MAX_COUNTED - 1)


def test_ticks_of_a_time_zone_follow_its_daylight_saving_time() -> None:
    paris = cron.parse("0 8 * * *", "Europe/Paris")
    before = datetime(2026, 3, 27, 12, 0, tzinfo=UTC).timestamp()  # DST starts on the 29th
    ticks = cron.after(paris, before, 2)
    assert [datetime.fromtimestamp(t, UTC).hour for t in ticks] == [7, 6]  # 08:00 CET, CEST
    assert cron.latest(paris, ticks[1]) == ticks[1]
    assert cron.latest(paris, ticks[1] - 1) == ticks[0]


# -- declarations and their mistakes ---------------------------------------------------------


def test_a_class_level_schedule_is_declared_with_its_class() -> None:
    [once] = [s for s in registered() if s.name == "SchedOnce"]
    assert (once.cron.expr, once.missed, type(once.job)) == ("* * * * *", "once", SchedOnce)
    [cleanup] = registered(["sched-cleanup"])
    assert cleanup.job == SchedCleanup(days=30)
    assert cleanup.cron.timezone == "Europe/Paris"


@pytest.mark.parametrize(("body", "message"), [
    ('schedule = "61 * * * *"', "job type Bad: cron expression '61 * * * *' does not parse"),
    ('schedule = "* * *"', "job type Bad: cron expression '* * *' must have 5 fields"),
    ('schedule = "* * * * *"\n    timezone = "Mars/Olympus"',
     "job type Bad: unknown timezone 'Mars/Olympus'"),
    ('schedule = "* * * * *"\n    missed = "twice"', "job type Bad: missed must be"),
    ('schedule = "* * * * *"\n    days: int', "job type Bad: a class-level schedule dispatches "
                                              "it without arguments, but days has no default"),
])
def test_a_bad_class_level_schedule_is_refused_at_definition(body: str, message: str) -> None:
    with pytest.raises(evq.ConfigError) as info:
        exec(f"class Bad(evq.Job):\n    {body}\n", {"evq": evq})
    assert str(info.value).startswith(message) and "\n" not in str(info.value)
    with pytest.raises(evq.UnknownJob):  # nothing registered: neither the job type...
        registry.lookup("Bad")
    assert "Bad" not in {s.name for s in registered()}  # ...nor a schedule


def test_a_job_argument_named_like_a_setting_is_an_argument() -> None:
    class Report(evq.Job):
        job_name = "sched-test.report"
        schedule: str = "0 8 * * *"  # a field: the job's argument, not its cron
        timezone: str = "Nowhere"

    assert Report().timezone == "Nowhere"
    assert "sched-test.report" not in {s.name for s in registered()}


def test_a_bad_schedule_in_code_is_refused() -> None:
    with pytest.raises(evq.ConfigError,
                       match=re.escape("schedule sched-x: cron expression '0 25 . . .'")):
        evq.schedule("0 25 . . .", SchedCleanup(days=1), name="sched-x")
    with pytest.raises(evq.ConfigError, match="unknown timezone 'Nowhere'"):
        evq.schedule("0 8 * * *", SchedCleanup(days=1), name="sched-x", timezone="Nowhere")
    with pytest.raises(evq.ConfigError, match="schedule name 'sched-cleanup' is taken"):
        evq.schedule("0 9 * * *", SchedCleanup(days=1), name="sched-cleanup")
    with pytest.raises(evq.ConfigError, match=re.escape("is not an evq.Job")):
        evq.schedule("0 9 * * *", "cleanup", name="sched-x")  # type: ignore[arg-type]
    assert "sched-x" not in {s.name for s in registered()}


# -- the store: a tick is taken once ---------------------------------------------------------


def _tick(q: evq.Queue, tick: float, *, name: str = "s", manual: bool = False,
          by: str = "a") -> int | None:
    return q.store.tick(ScheduleTicked(ts=tick, schedule=name, tick=tick, manual=manual,
                                       scheduler=by),
                        q._dispatched(SchedCleanup(days=1), tick, None, None, None, None))


def test_a_tick_is_dispatched_once_and_an_earlier_one_never(
        queue: evq.Queue, second_connection: evq.Queue) -> None:
    first = _tick(queue, START)
    assert first is not None
    assert _tick(second_connection, START, by="b") is None  # the same tick, another scheduler
    assert _tick(second_connection, START - MINUTE, by="b") is None  # a clock behind
    manual = _tick(second_connection, START + 5, manual=True)  # evq schedule run: always
    assert manual is not None
    nxt = _tick(second_connection, START + MINUTE, by="b")
    assert nxt is not None
    ticks = [r.event for r in queue.events(types=["ScheduleTicked"])]
    assert [(t.tick, t.job_id, t.manual) for t in ticks] == [
        (START, first, False), (START + 5, manual, True), (START + MINUTE, nxt, False)]
    assert [type(r.event) for r in queue.history(first)] == [JobDispatched, ScheduleTicked]
    assert len(queue.jobs("pending")) == 3
    [row] = queue.store.schedules.all()
    assert (row.last_tick, row.last_job, row.ticks, row.triggered) == (START + MINUTE, nxt, 2, 1)
    assert queue.store.verify() == []


def test_racing_schedulers_dispatch_each_tick_once(queue: evq.Queue) -> None:
    if not queue.store.shared:
        pytest.skip("one connection: nothing races")
    ticks = [START + i * MINUTE for i in range(30)]
    won: list[list[int | None]] = [[], []]
    barrier = threading.Barrier(2)

    def race(slot: int) -> None:
        q = evq.connect(queue.url)
        try:
            barrier.wait()
            for t in ticks:
                won[slot].append(_tick(q, t, by=str(slot)))
        finally:
            q.close()

    threads = [threading.Thread(target=race, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    dispatched = [r.event for r in queue.events(types=["ScheduleTicked"])]
    assert sorted(t.tick for t in dispatched) == ticks
    assert sum(j is not None for w in won for j in w) == 30
    assert queue.count_jobs() == 30 and queue.store.verify() == []


def test_ticks_replay_from_a_snapshot_to_the_same_schedules(queue: evq.Queue) -> None:
    _tick(queue, START)
    seq = snapshot.take(queue.store.log)[0]
    _tick(queue, START + 3 * MINUTE)
    _tick(queue, START + 4 * MINUTE, name="other")
    before = queue.store.schedules.all()
    replay(queue.store, since=seq)
    assert queue.store.schedules.all() == before
    assert queue.store.verify() == []


# -- the scheduler, in this process ------------------------------------------------------------


def _scheduler(q: evq.Queue, missed: str = "once", **options: Any) -> Scheduler:
    plan = Schedule("every-minute", EVERY_MINUTE, SchedCleanup(days=7), missed).plan(q)
    return Scheduler(q.store, [plan], clock=Clock(START, 600.0), lease=3.0, **options)


def test_a_scheduler_dispatches_reports_triggers_and_stops(queue: evq.Queue) -> None:
    scheduler = _scheduler(queue).start()
    try:
        wait_until(lambda: queue.store.schedules.all() and queue.store.schedules.all()[0].ticks
                   >= 3, what="three ticks")
        status = scheduler.status()
        assert status.running and status.name == scheduler.name
        [s] = status.schedules
        assert s.last_tick is not None and s.next_runs[0] > s.last_tick
        assert [b - a for a, b in zip(s.next_runs, s.next_runs[1:], strict=False)] == [60, 60]
        assert s.last_state == "pending" and s.job == "SchedCleanup"
        job_id = scheduler.trigger("every-minute")
        assert queue.job(job_id).name == "SchedCleanup"
        with pytest.raises(evq.NotFound, match="no schedule 'nope'"):
            scheduler.trigger("nope")
        [alive] = schedulers(queue)
        assert (alive.name, alive.status, alive.schedules) == (scheduler.name, "alive",
                                                               ["every-minute"])
    finally:
        scheduler.stop()
    assert not scheduler.status().running
    assert schedulers(queue) == [] and schedulers(queue, stopped=True)[0].status == "stopped"
    assert queue.workers() == []  # a scheduler is not a worker
    ticks = [r.event.tick for r in queue.events(types=["ScheduleTicked"]) if not r.event.manual]
    assert ticks == [START + MINUTE * i for i in range(1, len(ticks) + 1)]
    assert queue.store.verify() == []


def test_a_scheduler_of_no_schedules_is_refused(queue: evq.Queue) -> None:
    with pytest.raises(evq.ConfigError, match="no schedule 'nope'"):
        queue.scheduler(["nope"])


# -- upgrade -------------------------------------------------------------------------------------


def test_a_store_of_schema_version_5_gets_schedules_and_worker_kinds(tmp_path: Any) -> None:
    q = evq.connect(f"sqlite:///{tmp_path}/old.db")
    q.append([WorkerStarted(ts=START, worker="w", queues=["default"])])
    q = reopened_as_of(q, 5, "DROP TABLE schedules", "ALTER TABLE workers DROP COLUMN kind")
    try:
        assert [(w.name, w.kind) for w in q.store.workers.all()] == [("w", "worker")]
        assert _tick(q, START) is not None
        assert q.store.schedules.all()[0].last_tick == START
        assert q.store.verify() == []
    finally:
        q.close()


# -- the command -------------------------------------------------------------------------------


def test_the_schedule_commands(tmp_path: Any) -> None:
    from test_cli import invoke, stderr_of

    url = f"sqlite:///{tmp_path}/evq.db"
    app = ("--app", "tests.sched_jobs")
    ran = invoke(["--url", url, "schedule", "run", "sched-cleanup", *app, "--json"])
    assert ran.exit_code == 0, stderr_of(ran)
    job_id = json.loads(ran.stdout)["job_id"]
    listed = invoke(["--url", url, "schedule", "list", *app, "--json"])
    assert listed.exit_code == 0, stderr_of(listed)
    rows = {r["name"]: r for r in json.loads(listed.stdout)}
    assert {"SchedOnce", "SchedSkip", "sched-cleanup"} <= rows.keys()
    cleanup = rows["sched-cleanup"]
    assert (cleanup["last_job"], cleanup["last_state"], cleanup["triggered"]) == (
        job_id, "pending", 1)
    assert cleanup["timezone"] == "Europe/Paris" and len(cleanup["next_runs"]) == 3
    assert invoke(["--url", url, "schedule", "list", *app]).exit_code == 0
    status = invoke(["--url", url, "schedule", "status", "--json"])
    assert status.exit_code == 0 and json.loads(status.stdout) == []
    for args, message in (
            (["schedule"], "evq schedule needs --app MODULE"),
            (["schedule", "list"], "evq schedule list needs --app MODULE"),
            (["schedule", "run", "nope", *app], "no schedule 'nope'")):
        bad = invoke(["--url", url, *args])
        assert bad.exit_code == 1, bad.stdout
        assert stderr_of(bad).startswith(f"error: {message}")
        assert len(stderr_of(bad).strip().splitlines()) == 1


def test_a_bad_schedule_in_an_app_is_one_line(tmp_path: Any) -> None:
    from test_cli import invoke, stderr_of

    (tmp_path / "badsched.py").write_text(
        "import evq\n\nclass BadSched(evq.Job):\n    schedule = '* * * * * * *'\n")
    sys.path.insert(0, str(tmp_path))
    try:
        bad = invoke(["--url", f"sqlite:///{tmp_path}/evq.db", "schedule", "--app",
                      "badsched"])
    finally:
        sys.path.remove(str(tmp_path))
    assert bad.exit_code == 1
    line = stderr_of(bad).strip()
    assert "BadSched" in line and "'* * * * * * *'" in line and "\n" not in line
    assert not (tmp_path / "evq.db").exists()  # nothing written
