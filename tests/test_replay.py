# ruff: noqa: F811  (the fixtures of test_cli, imported by name, are parameters here)
"""Replay, snapshots and the archive, through the ``evq`` command and the API.

Each option of ``evq replay`` (``--until``, ``--into``, ``--redispatch``, ``--verify``), ``evq
snapshot`` and ``evq archive``; that nothing a user can ask about is lost by archiving; and every
bad input: one ``error:`` line, a non-zero exit code, and the store unchanged.
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from helpers import wait_until

import evq
from evq.eventlog import archive
from evq.projections import replay as replay_module
from evq.projections.replay import replay
from tests.cli_jobs import CliAdd, CliFail, CliUrgent
from tests.test_cli import (  # noqa: F401  (fixtures)
    Cli,
    _cli_environment,
    as_json,
    assert_error,
    cli,
    invoke,
    json_lines,
    ok,
    snapshot,
    sql,
    work,
)


def dump(queue: evq.Queue) -> Any:
    """The projections, as a rebuild must reproduce them."""
    tables = queue.store.tables
    jobs, queues, types = tables.dump()[0], tables.queue_counts(), tables.type_stats()
    return jobs, [c for c in queues if any(getattr(c, f) for f in c.__struct_fields__[1:])], types


def busy_log(cli: Cli, q: evq.Queue) -> dict[str, Any]:
    """Succeeded (1-5, 7), failed after a retry (6), cancelled, purged (1) and pending jobs."""
    ids: dict[str, Any] = {"done": [q.dispatch(CliAdd(a=i, b=i)) for i in range(5)]}
    ids["failed"] = q.dispatch(CliFail())
    ids["done"].append(q.dispatch(CliUrgent()))
    work(cli, "--queues", "cli-high,default")
    ids["cancelled"] = q.dispatch(CliAdd(a=9, b=9))
    q.cancel(ids["cancelled"])
    q.forget(1)
    ids["pending"] = q.dispatch(CliAdd(a=7, b=7))
    ids["all"] = [*ids["done"], ids["failed"], ids["cancelled"], ids["pending"]]
    return ids


def test_replay_starts_from_the_newest_snapshot_at_or_before_since(cli: Cli,
                                                                   q: evq.Queue) -> None:
    busy_log(cli, q)
    taken = as_json(cli("snapshot", "--json"))
    assert taken["seq"] == q.store.log.last_seq() and taken["jobs"] == len(dump(q)[0])
    q.dispatch(CliAdd(a=1, b=2))
    work(cli)
    expected = dump(q)
    listed = as_json(cli("snapshot", "--list", "--json"))
    assert [s["seq"] for s in listed] == [taken["seq"]]

    out = ok(cli("replay", "--since", str(taken["seq"]))).stdout
    assert f"from the snapshot at seq {taken['seq']}" in out
    assert dump(q) == expected
    out = ok(cli("replay", "--since", str(taken["seq"] - 1))).stdout
    assert "from the start of the log" in out
    assert dump(q) == expected
    summary = as_json(cli("replay", "--since", "0s", "--json"))  # now: the snapshot is older
    assert summary["snapshot"] and summary["from_seq"] == taken["seq"]
    assert summary["events"] == q.store.log.last_seq() - taken["seq"]
    assert "0 differences" in ok(cli("replay", "--since", "0s", "--verify")).stdout
    assert dump(q) == expected


def test_replay_until_into_a_file_gives_the_state_as_of_then(cli: Cli, q: evq.Queue,
                                                             tmp_path: Path) -> None:
    ids = busy_log(cli, q)
    then_seq, then = q.store.log.last_seq(), dump(q)
    then_stats = q.stats()
    time.sleep(0.05)
    cut = time.time()
    time.sleep(0.05)
    q.retry(ids["failed"])
    q.dispatch(CliAdd(a=3, b=3))
    work(cli)
    now = dump(q)

    into = tmp_path / "then.db"
    out = ok(cli("replay", "--since", "0", "--until", str(then_seq), "--into", into)).stdout
    assert f"up to seq {then_seq}" in out and str(into) in out
    past = evq.connect(f"sqlite:///{into}")
    try:
        assert dump(past) == then
        assert past.store.log.last_seq() == then_seq
        assert [r.seq for r in past.events()] == [r.seq for r in q.events(until=then_seq)]
        assert past.stats()["queues"] == then_stats["queues"]
    finally:
        past.close()
    assert dump(q) == now  # the live projections are untouched

    by_time = tmp_path / "by-time.db"
    ok(cli("replay", "--since", "0", "--until", datetime.fromtimestamp(cut).isoformat(),
           "--into", by_time))
    past = evq.connect(f"sqlite:///{by_time}")
    try:
        assert dump(past) == then
    finally:
        past.close()
    assert not list(tmp_path.glob("*.partial*"))


def test_the_into_file_opens_in_every_read_command(cli: Cli, q: evq.Queue,
                                                   tmp_path: Path) -> None:
    busy_log(cli, q)
    into = tmp_path / "copy.db"
    ok(cli("replay", "--since", "0", "--into", into))
    copy_url = f"sqlite:///{into}"

    def copy(*args: Any) -> Any:
        return invoke(["--url", copy_url, *args])

    assert as_json(copy("stats", "--json"))["queues"] == q.stats()["queues"]
    assert [j["id"] for j in as_json(copy("jobs", "--json"))] == [r.id for r in q.jobs()]
    assert as_json(copy("query", "SELECT count(*) AS n FROM events", "--json")) == [
        {"n": q.store.log.last_seq()}]
    assert as_json(copy("history", 2, "--json")) == as_json(cli("history", 2, "--json"))


def test_into_an_existing_file_needs_force(cli: Cli, q: evq.Queue, tmp_path: Path) -> None:
    q.dispatch(CliAdd(a=1, b=1))
    into = tmp_path / "exists.db"
    into.write_text("keep me")
    assert_error(cli("replay", "--since", "0", "--into", into), str(into), "--force")
    assert into.read_text() == "keep me"
    ok(cli("replay", "--since", "0", "--into", into, "--force"))
    assert as_json(invoke(["--url", f"sqlite:///{into}", "jobs", "--json"]))[0]["id"] == 1


def test_redispatch_dry_run_then_for_real(cli: Cli, q: evq.Queue) -> None:
    busy_log(cli, q)
    other = q.dispatch(CliFail(reason="other"), queue="cli-other")
    work(cli, "--queues", "cli-other")
    failed = [r.id for r in q.jobs("failed")]
    assert len(failed) == 2
    before = q.store.log.last_seq()

    listed = as_json(cli("replay", "--since", "0", "--redispatch", "--state", "failed",
                         "--dry-run", "--json"))
    assert [j["job_id"] for j in listed] == failed
    assert all(j["new_job_id"] is None for j in listed)
    assert "would dispatch again: 2 jobs" in ok(cli(
        "replay", "--since", "0", "--redispatch", "--state", "failed", "--dry-run")).stdout
    assert q.store.log.last_seq() == before

    only = as_json(cli("replay", "--since", "0", "--redispatch", "--state", "failed",
                       "--queue", "cli-other", "--json"))
    assert [j["job_id"] for j in only] == [other]
    new = q.job(only[0]["new_job_id"])
    original = q.job(other)
    assert (new.name, new.queue, new.payload, new.tries, new.state) == (
        original.name, original.queue, original.payload, original.tries, "pending")
    assert new.replay_of == str(other)
    dispatched = q.history(new.id)[0].event
    assert dispatched.replay_of == str(other)  # type: ignore[attr-defined]
    assert f"dispatched again as job {new.id}" in ok(cli("history", other)).stdout
    assert f"replay_of {other}" in ok(cli("history", new.id)).stdout
    assert "dispatched again" not in ok(cli("history", failed[0])).stdout
    later = as_json(cli("replay", "--since", str(other), "--redispatch", "--name", "CliFail",
                        "--dry-run", "--json"))
    assert [j["job_id"] for j in later] == [new.id]
    assert "0 differences" in ok(cli("replay", "--since", "0", "--verify")).stdout


def test_an_unknown_event_type_stops_replay_and_changes_nothing(cli: Cli, q: evq.Queue,
                                                                db: Path,
                                                                tmp_path: Path) -> None:
    busy_log(cli, q)
    sql(db, "INSERT INTO events(ts, type, job_id, queue, body) VALUES (?, ?, ?, ?, ?)",
        (time.time(), "JobFromTheFuture", 2, "default",
         json.dumps({"type": "JobFromTheFuture", "ts": time.time(), "job_id": 2})))
    sql(db, "UPDATE jobs SET state = 'cancelled' WHERE id = 2")  # a damage a replay would fix
    before = snapshot(db)
    into = tmp_path / "into.db"
    for args in (["--since", "0"], ["--since", "0", "--verify"], ["--since", "0", "--into", into]):
        assert_error(cli("replay", *args), "'JobFromTheFuture'", "upgrade evq")
        assert snapshot(db) == before
    assert not list(tmp_path.glob("into.db*"))
    ok(cli("replay", "--since", "0", "--until", "3", "--into", into))  # before it: fine


@pytest.mark.parametrize(("args", "fragments"), [
    pytest.param([], ["--since"], id="no-since"),
    pytest.param(["--since", "garbage"], ["'garbage'"], id="garbage"),
    pytest.param(["--since", "garbage", "--verify"], ["'garbage'"], id="garbage-verify"),
    pytest.param(["--since", "99999", "--verify"], ["beyond the end"], id="beyond-the-end"),
    pytest.param(["--since", "0", "--until", "1"], ["--into"], id="until-without-into"),
    pytest.param(["--since", "0", "--until", "soon", "--into", "x.db"], ["'soon'"],
                 id="bad-until"),
    pytest.param(["--since", "0", "--until", "99999", "--into", "x.db"], ["beyond the end"],
                 id="until-beyond-the-end"),
    pytest.param(["--since", "0", "--verify", "--into", "x.db"], ["do not go together"],
                 id="verify-and-into"),
    pytest.param(["--since", "0", "--into", "no/such/dir/x.db"], ["directory does not exist"],
                 id="into-a-missing-directory"),
    pytest.param(["--since", "0", "--state", "failed"], ["--redispatch"],
                 id="filter-without-redispatch"),
    pytest.param(["--since", "0", "--redispatch", "--state", "broken"], ["'broken'"],
                 id="unknown-state"),
])
def test_replay_bad_options(cli: Cli, q: evq.Queue, db: Path, args: list[str],
                            fragments: list[str]) -> None:
    q.dispatch(CliAdd(a=1, b=1))
    before = snapshot(db)
    assert_error(cli("replay", *args), *fragments)
    assert snapshot(db) == before
    assert not Path("x.db").exists()


def test_archive_loses_nothing(cli: Cli, q: evq.Queue, db: Path,
                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(archive, "SEGMENT_JOBS", 2)  # several segments, interleaved positions
    ids = busy_log(cli, q)
    projections, events = dump(q), json_lines(cli("events", "--json"))
    histories = {i: as_json(cli("history", i, "--json")) for i in ids["all"]}
    live_before = sql(db, "SELECT count(*) FROM events")[0][0]

    assert as_json(cli("archive", "--before", "1h", "--json"))["jobs"] == 0  # nothing that old
    assert "would archive 8 jobs" in ok(cli("archive", "--before", "0s", "--dry-run")).stdout
    moved = as_json(cli("archive", "--before", "0s", "--json"))
    assert moved["jobs"] == 8 and moved["segments"] == 4  # 7 finished, 1 purged
    assert moved["stored_bytes"] < moved["raw_bytes"]
    live_after = sql(db, "SELECT count(*) FROM events")[0][0]
    assert live_after == live_before - moved["events"]
    # left: the pending job's events, and the workers' own (job id 0), which are not archived
    assert sql(db, "SELECT DISTINCT job_id FROM events") == [(0,), (ids["pending"],)]
    assert "archived 0 events" in ok(cli("archive", "--before", "0s")).stdout

    assert dump(q) == projections
    assert json_lines(cli("events", "--json")) == events
    assert {i: as_json(cli("history", i, "--json")) for i in histories} == histories
    assert [e["seq"] for e in json_lines(cli("events", "--json", "--since", "5",
                                             "--until", "20"))] == [
        e["seq"] for e in events if 5 < e["seq"] <= 20]
    assert [e["seq"] for e in json_lines(cli("events", "--json", "--type", "JobDead"))] == [
        e["seq"] for e in events if e["type"] == "JobDead"]
    assert len(json_lines(cli("events", "--json", "--limit", "3"))) == 3
    assert json_lines(cli("events", "--json", "--since", "1h")) == events
    assert json_lines(cli("events", "--json", "--until", "2000-01-01T00:00")) == []

    assert "0 differences" in ok(cli("replay", "--since", "0", "--verify")).stdout
    ok(cli("replay", "--since", "0"))
    assert dump(q) == projections

    failed = ids["failed"]
    q.retry(failed)  # an archived failed job queued again: its history spans archive and log
    work(cli)
    steps = [e["type"] for e in as_json(cli("history", failed, "--json"))]
    assert steps[:len(histories[failed])] == [e["type"] for e in histories[failed]]
    assert steps[len(histories[failed])] == "JobRequeued"
    assert "0 differences" in ok(cli("replay", "--since", "0", "--verify")).stdout


def test_archive_then_snapshot_replay(cli: Cli, q: evq.Queue) -> None:
    busy_log(cli, q)
    ok(cli("archive", "--before", "0s"))
    ok(cli("snapshot"))
    q.dispatch(CliAdd(a=5, b=5))
    work(cli)
    expected = dump(q)
    assert "from the snapshot" in ok(cli("replay", "--since", "0s")).stdout
    assert dump(q) == expected


def test_archive_bad_time(cli: Cli, q: evq.Queue, db: Path) -> None:
    q.dispatch(CliAdd(a=1, b=1))
    before = snapshot(db)
    assert_error(cli("archive", "--before", "last tuesday"), "'last tuesday'")
    assert_error(cli("archive"), "--before")
    assert snapshot(db) == before


def test_replay_reports_progress(q: evq.Queue, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(replay_module, "PROGRESS_EVERY", 2)
    for i in range(5):
        q.dispatch(CliAdd(a=i, b=i))
    seen: list[tuple[int, int]] = []
    done = replay(q.store, progress=lambda n, total: seen.append((n, total)))
    assert done.events == 5
    assert seen == [(2, 5), (4, 5), (5, 5)]


def test_a_worker_with_archive_after_archives_finished_jobs(cli: Cli, q: evq.Queue, db: Path,
                                                            url: str) -> None:
    ids = busy_log(cli, q)
    assert_error(cli("work", "--app", "tests.cli_jobs", "--archive-after", "soon"), "'soon'")
    work(cli, "--archive-after", "0s")  # archives at start, then hourly
    # what had finished is archived; the job the worker ran waits for the next round
    # left: the pending job's events, and the workers' own (job id 0), which are not archived
    assert sql(db, "SELECT DISTINCT job_id FROM events") == [(0,), (ids["pending"],)]
    assert q.job(ids["pending"]).state == "succeeded"
    assert "0 differences" in ok(cli("replay", "--since", "0", "--verify")).stdout


def test_keep_archiving_runs_periodically(cli: Cli, q: evq.Queue, db: Path, url: str) -> None:
    from evq.projections.retention import keep_archiving

    stop = keep_archiving(url, 0.0, every=0.02)
    try:
        done = q.dispatch(CliAdd(a=1, b=1))
        work(cli)
        q.dispatch(CliAdd(a=2, b=2), delay=3600)  # the newest event always stays in the log
        wait_until(lambda: not sql(db, "SELECT count(*) FROM events WHERE job_id = ?",
                                   (done,))[0][0], what="the finished job to be archived")
    finally:
        stop()
    assert [e["type"] for e in as_json(cli("history", done, "--json"))][-1] == "JobSucceeded"


def test_replay_is_safe_while_a_worker_runs(q: evq.Queue, url: str) -> None:
    """Rebuilds, snapshots and archive runs from another connection while a worker drains the
    queue: every job completes once and the projections still equal a rebuild."""
    import threading

    from evq.projections.retention import archive_finished
    from evq.projections.snapshot import take

    ids = q.dispatch_many([CliAdd(a=i, b=i) for i in range(300)])
    other = evq.connect(url)
    worker = q.worker(stop_when_empty=True, sleep=0.01)
    thread = threading.Thread(target=worker.run)
    thread.start()
    try:
        while thread.is_alive():
            other.store.rebuild()
            take(other.store.log)
            archive_finished(other.store.log, time.time())
    finally:
        thread.join()
        other.close()
    assert {q.job(i).state for i in ids} == {"succeeded"}
    assert all(q.job(i).attempt == 1 for i in ids)
    assert q.store.verify() == []
    assert sum(1 for r in q.events(types=["JobSucceeded"])) == len(ids)


def test_the_progress_bar_draws_on_a_terminal_only(monkeypatch: pytest.MonkeyPatch) -> None:
    import io
    import sys

    from evq.cli.replay import _ProgressBar

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    with _ProgressBar() as update:
        assert update is None  # stderr is not a terminal under pytest
    screen = Terminal()
    monkeypatch.setattr(sys, "stderr", screen)
    with _ProgressBar() as update:
        update(5, 10)
    assert "replaying" in screen.getvalue()


def test_archive_keeps_the_newest_event_so_positions_never_repeat(cli: Cli, q: evq.Queue,
                                                                    db: Path) -> None:
    first = q.dispatch(CliAdd(a=1, b=1))
    work(cli)
    last = q.dispatch(CliAdd(a=2, b=2))
    q.cancel(last)  # finished, and the owner of the newest event
    newest = q.store.log.last_seq()
    assert sql(db, "SELECT job_id FROM events WHERE seq = ?", (newest,)) == [(last,)]
    assert as_json(cli("archive", "--before", "0s", "--json"))["jobs"] == 1
    assert {j for (j,) in sql(db, "SELECT job_id FROM events")} == {0, last}  # 0: the worker's
    assert first not in {j for (j,) in sql(db, "SELECT job_id FROM events")}
    assert q.store.log.last_seq() == newest
    assert q.dispatch(CliAdd(a=3, b=3)) == newest + 1
    assert "0 differences" in ok(cli("replay", "--since", "0", "--verify")).stdout


@pytest.mark.parametrize("command", [["events"], ["history", "1"],
                                     ["replay", "--since", "0", "--verify"]],
                         ids=lambda c: c[0])
def test_a_damaged_archive_segment_is_named_by_every_reader(cli: Cli, q: evq.Queue,
                                                            command: list[str]) -> None:
    q.dispatch_many([CliAdd(a=i, b=i) for i in range(3)])
    work(cli)
    assert as_json(cli("archive", "--before", "0s", "--json"))["segments"] == 1
    with q.store.log.transaction():  # another program's write, or a damaged disk
        q.store.log.execute("UPDATE archive_segments SET body = ?", (b"not zlib",))
    assert_error(cli(*command), "archive segment 1 (events at seq 1 to", "cannot be read")
