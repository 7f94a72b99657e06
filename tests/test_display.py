# ruff: noqa: F811  (the fixtures of test_cli, imported by name, are parameters here)
"""What the commands show people: stored text stays inert, long values are cut in linear time,
odd stored values never break a listing, and the options say what they do."""

from __future__ import annotations

import logging
import time
from datetime import datetime

import pytest

import evq
from evq.eventlog.events import JobDead, JobDispatched, JobFailed, JobLeased, JobStarted
from tests.cli_jobs import CliAdd, CliFail
from tests.test_cli import (  # noqa: F401  (fixtures)
    APP,
    Cli,
    _cli_environment,
    append_dispatched,
    as_json,
    assert_error,
    cli,
    ok,
    work,
)

HOSTILE = "\x1b[31m[bold red]X[/]\nsecond line\x07"


def failed_with(q: evq.Queue, message: str, queue: str = "default") -> int:
    """A job that failed with ``message``, as a worker records a handler's exception."""
    now = time.time()
    job = append_dispatched(q, "CliAdd", b'{"a": 1, "b": 1}', queue=queue)
    q.append([JobLeased(job_id=job, ts=now, worker="w", attempt=1, lease_expires=now + 30),
              JobStarted(job_id=job, ts=now, worker="w", attempt=1),
              JobFailed(job_id=job, ts=now, attempt=1, error_type="ValueError",
                        message=message, traceback=f"Traceback:\n  {message}\n"),
              JobDead(job_id=job, ts=now, attempt=1)])
    return job


@pytest.mark.parametrize("command", [["failed", "list"], ["jobs"], ["history", "{job}"],
                                     ["events"]], ids=lambda c: c[0])
def test_stored_text_is_shown_inert(cli: Cli, q: evq.Queue, command: list[str]) -> None:
    job = failed_with(q, HOSTILE)
    out = ok(cli(*(c.format(job=job) for c in command))).stdout
    out = out.split("last traceback:")[0]  # a traceback keeps its lines (escaped otherwise)
    assert "\x1b" not in out and "\x07" not in out  # no escape sequence reaches the terminal
    assert "\\x1b[31m[bold red]X[/]\\x0asecond line\\x07" in out  # markup shown, not applied
    assert "second line" not in out.replace("\\x0asecond line", "")  # no row split in two


def test_queue_names_with_markup_are_shown_as_they_are(cli: Cli, q: evq.Queue) -> None:
    q.dispatch(CliAdd(a=1, b=1), queue="[blink]q[/]")
    out = ok(cli("stats")).stdout
    assert "[blink]q[/]" in out


def test_history_of_a_huge_argument_is_cut_in_linear_time(cli: Cli, q: evq.Queue) -> None:
    job = append_dispatched(q, "CliAdd", b'{"a": "' + b"x" * 8_000_000 + b'", "b": 1}')
    t0 = time.perf_counter()
    out = ok(cli("history", job)).stdout
    took = time.perf_counter() - t0
    assert "more characters)" in out and len(out) < 20_000
    assert took < 5, f"evq history took {took:.1f}s for an 8 MB argument"
    full = as_json(cli("history", job, "--json"))
    assert len(full[0]["payload"]["a"]) == 8_000_000  # --json keeps every character


def test_listings_show_times_out_of_the_calendar_as_numbers(cli: Cli, q: evq.Queue) -> None:
    now = time.time()
    [job] = q.append([JobDispatched(ts=now, run_at=1e20, name="CliAdd", queue="default",
                                    payload=b'{"a": 1, "b": 1}')])  # type: ignore[arg-type]
    for command in (["jobs"], ["jobs", "--state", "delayed"], ["events"], ["history", job]):
        assert "1e+20" in ok(cli(*command)).stdout


def test_a_requeue_shows_no_time_of_1970(cli: Cli, q: evq.Queue) -> None:
    job = failed_with(q, "boom")
    ok(cli("failed", "retry", job))
    out = ok(cli("history", job)).stdout
    assert "JobRequeued" in out and "1970" not in out


def test_jobs_say_delayed_and_how_many_more_match(cli: Cli, q: evq.Queue) -> None:
    q.dispatch(CliAdd(a=1, b=1), delay=3600)
    assert "delayed" in ok(cli("jobs", "--state", "delayed")).stdout
    q.dispatch_many([CliAdd(a=i, b=i) for i in range(5)])
    result = cli("jobs", "--limit", "2")
    assert len([line for line in result.stdout.splitlines() if "CliAdd" in line]) == 2
    assert "the oldest 2 of 6 matching jobs" in result.stderr and "--limit" in result.stderr
    assert "matching" not in cli("jobs", "--limit", "6").stderr
    for _ in range(3):
        failed_with(q, "boom")
    assert "the oldest 2 of 3 matching jobs" in cli("failed", "list", "--limit", "2").stderr


def test_events_follow_stops_after_limit(cli: Cli, q: evq.Queue) -> None:
    q.dispatch(CliAdd(a=1, b=1))
    q.dispatch(CliAdd(a=2, b=2))
    out = ok(cli("events", "--follow", "--limit", "2", "--json")).stdout
    assert len(out.splitlines()) == 2


def test_unknown_event_types_and_empty_queue_lists_are_errors(cli: Cli, q: evq.Queue) -> None:
    assert_error(cli("events", "--type", "NoSuchType"), "NoSuchType", "JobDispatched")
    assert_error(cli("work", "--app", APP, "--queues", " , "), "--queues")


def test_replay_into_says_where_the_replay_ended(cli: Cli, q: evq.Queue,
                                                 tmp_path: object) -> None:
    hour_ago = time.time() - 3600
    for _ in range(3):  # an hour ago: seq 1-3; now: seq 4
        append_dispatched(q, "CliAdd", b'{"a": 1, "b": 1}', ts=hour_ago)
    q.dispatch(CliAdd(a=1, b=1))
    until = datetime.fromtimestamp(hour_ago + 60).isoformat()
    done = as_json(cli("replay", "--since", "0", "--until", until, "--into",
                       f"{tmp_path}/then.db", "--json"))
    assert done["to_seq"] == 3


def test_verbose_work_logs_each_failure(cli: Cli, q: evq.Queue,
                                        caplog: pytest.LogCaptureFixture) -> None:
    job = q.dispatch(CliFail())
    with caplog.at_level(logging.INFO, logger="evq.worker"):
        work(cli, "-v")
    assert any(f"job {job} failed (attempt 1)" in r.getMessage() for r in caplog.records)


def test_stats_of_one_queue_filters_every_table(cli: Cli, q: evq.Queue) -> None:
    q.dispatch(CliAdd(a=1, b=1), queue="only-here")
    q.dispatch(CliFail())
    data = as_json(cli("stats", "only-here", "--json"))
    assert list(data["queues"]) == ["only-here"]
    assert list(data["job_types"]) == ["CliAdd"]
    out = ok(cli("stats", "only-here")).stdout
    assert "CliFail" not in out
