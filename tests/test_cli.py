"""The ``evq`` command, run in this process through typer's CliRunner.

Every command and option of the issue, the JSON shapes (``--json``: one document, or JSON Lines for
``events``), the tables for people, and every bad input: a non-zero exit code, exactly one line
``error: ...`` on stderr, no traceback, and nothing lost (the log and the projections are the same
before and after).
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import signal
import sqlite3
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest
from typer.testing import CliRunner, Result

import evq
from evq.cli.main import app
from evq.eventlog.events import JobDispatched
from evq.workers import registry

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `tests.cli_jobs` is what `--app` names: import it as that
    sys.path.insert(0, str(ROOT))

from tests import cli_jobs  # noqa: E402
from tests.cli_jobs import CliAdd, CliFail, CliUrgent  # noqa: E402

APP = "tests.cli_jobs"
Cli = Callable[..., Result]


# -- fixtures and helpers ----------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _cli_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Run from the repository root (so ``--app tests.cli_jobs`` imports), with no store or app
    from the environment, the job types registered, and the signal handlers that ``evq work``
    installs put back afterwards."""
    monkeypatch.chdir(ROOT)
    monkeypatch.delenv("EVQ_URL", raising=False)
    monkeypatch.delenv("EVQ_APP", raising=False)
    for cls in cli_jobs.job_types():  # in case another suite's fixture reset the registry
        registry.register(cls.job_name, cls)
    handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    known = dict(registry._types)
    yield
    registry._types.clear()  # job types a test defined are gone for the next one
    registry._types.update(known)
    for s, h in handlers.items():
        signal.signal(s, h)


def invoke(args: Sequence[Any], env: dict[str, str | None] | None = None) -> Result:
    return CliRunner().invoke(app, [str(a) for a in args], env=env)


@pytest.fixture
def cli(url: str) -> Cli:
    """``cli("jobs", "--json")``: run ``evq --url URL jobs --json``."""

    def run(*args: Any, env: dict[str, str | None] | None = None) -> Result:
        return invoke(["--url", url, *args], env)

    return run


def stderr_of(result: Result) -> str:
    try:
        return result.stderr
    except ValueError:  # a click that mixes stderr into the output
        return result.output


def ok(result: Result) -> Result:
    assert result.exit_code == 0, (f"exit code {result.exit_code}, {result.exception!r}:\n"
                                   f"{result.output}")
    return result


def assert_error(result: Result, *fragments: str) -> str:
    """A bad input's outcome: non-zero exit, one ``error:`` line on stderr, no traceback."""
    uncaught = None if isinstance(result.exception, SystemExit) else result.exception
    assert uncaught is None, (f"uncaught {type(uncaught).__name__}: {uncaught} (the user gets "
                              "a traceback)")
    assert result.exit_code != 0
    assert "Traceback" not in result.output
    err = stderr_of(result)
    assert err.startswith("error: "), f"stderr is {err!r}"
    assert err.endswith("\n") and err.count("\n") == 1, f"not one line: {err!r}"
    for fragment in fragments:
        assert fragment in err, f"{fragment!r} not in {err!r}"
    return err


def snapshot(db: Path) -> tuple[list[tuple[Any, ...]], ...]:
    """The whole store, log and projections: equal before and after a refused command."""
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return tuple(conn.execute(f"SELECT * FROM {t} ORDER BY 1").fetchall()
                     for t in ("events", "jobs", "queue_stats", "job_type_stats"))


def sql(db: Path, statement: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    """Plain sqlite3 on the store, past evq (to look, or to corrupt a projection)."""
    with contextlib.closing(sqlite3.connect(db)) as conn, conn:
        return conn.execute(statement, params).fetchall()


def as_json(result: Result) -> Any:
    return json.loads(ok(result).stdout)


def json_lines(result: Result) -> list[dict[str, Any]]:
    lines = ok(result).stdout.splitlines()
    objs = [json.loads(line) for line in lines]
    assert all(isinstance(o, dict) for o in objs)
    return objs


def work(cli: Cli, *options: Any) -> Result:
    """``evq work`` until nothing is ready."""
    return ok(cli("work", "--app", APP, "--stop-when-empty", "--sleep", "0.05", *options))


def append_dispatched(q: evq.Queue, name: str, payload: bytes, *, ts: float | None = None,
                      queue: str = "default") -> int:
    """A raw JobDispatched, as another program (or an older deploy) could have written it."""
    now = time.time() if ts is None else ts
    return q.append([JobDispatched(ts=now, run_at=now, name=name, queue=queue,
                                   payload=msgspec.Raw(payload))])[0]


# -- dispatch ----------------------------------------------------------------------------------


def test_dispatch_prints_the_new_job_id(cli: Cli, q: evq.Queue, db: Path) -> None:
    out = ok(cli("dispatch", "CliAdd", "--app", APP, "--json", '{"a": 1, "b": 2}'))
    job_id = int(out.stdout.strip())
    row = q.job(job_id)
    assert (row.name, row.queue, row.state) == ("CliAdd", "default", "pending")
    assert json.loads(row.payload) == {"a": 1, "b": 2}
    assert [r[0] for r in sql(db, "SELECT type FROM events")] == ["JobDispatched"]


def test_dispatch_options(cli: Cli, q: evq.Queue) -> None:
    before = time.time()
    out = ok(cli("dispatch", "CliAdd", "--app", APP, "--json", '{"a": 1, "b": 2}',
                 "--queue", "cli-other", "--priority", "7", "--delay", "3600"))
    row = q.job(int(out.stdout))
    assert (row.queue, row.priority) == ("cli-other", 7)
    assert before + 3600 <= row.run_at <= time.time() + 3600
    delayed = as_json(cli("jobs", "--state", "delayed", "--json"))
    assert [j["id"] for j in delayed] == [row.id]

    out = ok(cli("dispatch", "CliUrgent", "--app", APP, "--at", "2030-01-02T03:04:05+00:00"))
    row = q.job(int(out.stdout))
    assert row.run_at == datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC).timestamp()
    assert (row.queue, row.priority) == ("cli-high", 5)  # the job type's own settings


def test_dispatch_takes_app_from_evq_app(cli: Cli, q: evq.Queue) -> None:
    out = ok(cli("dispatch", "CliNoop", "--json", '{"n": 4}', env={"EVQ_APP": APP}))
    assert q.job(int(out.stdout)).name == "CliNoop"


GOOD_ARGS = '{"a": 1, "b": 2}'


@pytest.mark.parametrize(("args", "fragments"), [
    pytest.param(["CliAdd", "--json", '{"a": "one", "b": 2}'],
                 ["CliAdd", "$.a"], id="wrong-type"),
    pytest.param(["CliAdd", "--json", '{"a": 1.5, "b": 2}'], ["CliAdd", "$.a"], id="float-for-int"),
    pytest.param(["CliAdd", "--json", '{"a": 1}'], ["CliAdd", "`b`"], id="missing-field"),
    pytest.param(["CliAdd", "--json", '{"a": 1,'], ["CliAdd", "JSON"],
                 id="invalid-json"),
    pytest.param(["CliAdd", "--json", "[1, 2]"], ["CliAdd", "object"], id="not-an-object"),
    pytest.param(["CliNoSuchJob", "--json", "{}"], ["'CliNoSuchJob'", "--app"],
                 id="unknown-name"),
    pytest.param(["CliAdd", "--json", GOOD_ARGS, "--delay", "5", "--at", "2030-01-01T00:00"],
                 ["not both"], id="delay-and-at"),
    pytest.param(["CliAdd", "--json", GOOD_ARGS, "--at", "next tuesday"],
                 ["'next tuesday'", "not a time"], id="at-garbage"),
    pytest.param(["CliAdd", "--json", GOOD_ARGS, "--priority", "high"], [],
                 id="priority-not-an-int"),
    pytest.param(["CliAdd", "--json", GOOD_ARGS, "--delay", "soon"], [],
                 id="delay-not-a-number"),
    pytest.param(["CliAdd", "--json", GOOD_ARGS, "--delay", "-1"], [],
                 id="negative-delay"),
    pytest.param(["CliAdd", "--json", GOOD_ARGS, "--delay", "1e308"], ["delay", "9999"],
                 id="delay-past-9999"),
    pytest.param(["CliAdd", "--json", GOOD_ARGS, "--at", "0001-01-01"], ["out of range"],
                 id="at-year-1"),
    pytest.param(["CliAdd", "--json", GOOD_ARGS, "--at", "1970-01-01T00:00+00:00"],
                 ["after 1970"], id="at-epoch"),
    pytest.param(["CliAdd", "--json", GOOD_ARGS, "--priority", str(2**63)], ["64 bits"],
                 id="priority-over-64-bits"),
    pytest.param(["CliAdd", "--json", GOOD_ARGS, "--queue", "a,b"], ["printable", "'a,b'"],
                 id="queue-with-comma"),
    pytest.param(["CliAdd", "--json", '{"a": ' + "[" * 2000 + "]" * 2000 + ', "b": 1}'],
                 ["nested"], id="nested-2000-deep"),
])
def test_dispatch_bad_input_is_one_line_and_appends_nothing(
        cli: Cli, q: evq.Queue, db: Path, args: list[str], fragments: list[str]) -> None:
    q.dispatch(CliAdd(a=0, b=0))
    before = snapshot(db)
    assert_error(cli("dispatch", "--app", APP, *args), *fragments)
    assert snapshot(db) == before


def test_dispatch_of_wrong_types_through_the_api_is_refused(q: evq.Queue, db: Path) -> None:
    with pytest.raises(evq.InvalidArguments, match="CliAdd"):
        q.dispatch(CliAdd(a="one", b=2))  # type: ignore[arg-type]
    assert sql(db, "SELECT count(*) FROM events") == [(0,)]


def test_dispatch_refuses_unknown_argument_names(cli: Cli, q: evq.Queue, db: Path) -> None:
    before = snapshot(db)
    assert_error(cli("dispatch", "CliFail", "--app", APP, "--json", '{"reasn": "typo"}'),
                 "reasn")
    assert snapshot(db) == before


# -- work --------------------------------------------------------------------------------------


def test_work_runs_every_ready_job_and_survives_failures(cli: Cli, q: evq.Queue) -> None:
    adds = [q.dispatch(CliAdd(a=i, b=1)) for i in range(4)]
    fail_id = q.dispatch(CliFail(reason="kaput"))
    exit_id = q.dispatch(cli_jobs.CliExit(code=3))
    out = work(cli, "--concurrency", "2")
    assert "evq worker" in out.stderr and "concurrency 2" in out.stderr
    assert "stopped after 7 jobs" in out.stderr  # 4 + 2 tries + 1
    for i, job_id in enumerate(adds):
        row = q.job(job_id)
        assert (row.state, json.loads(row.result or "null")) == ("succeeded", i + 1)
    failed = q.job(fail_id)
    assert (failed.state, failed.failures, failed.error_type, failed.error) == (
        "failed", 2, "ValueError", "kaput")
    exited = q.job(exit_id)
    assert (exited.state, exited.error_type) == ("failed", "SystemExit")


def test_work_runs_async_jobs_and_closes_its_event_loop(cli: Cli, q: evq.Queue,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from evq.workers import worker as worker_module

    runners: list[Any] = []

    class RecordedRunner(worker_module.AsyncRunner):  # type: ignore[misc,name-defined]
        def __init__(self) -> None:
            super().__init__()
            runners.append(self)

    monkeypatch.setattr(worker_module, "AsyncRunner", RecordedRunner)
    job_id = q.dispatch(cli_jobs.CliAsyncAdd(a=2, b=2))
    try:
        work(cli)
        assert json.loads(q.job(job_id).result or "null") == 4
        assert len(runners) == 1
        assert runners[0].loop.is_closed(), "the worker stopped, its event loop is still open"
    finally:
        for r in runners:  # leak nothing into the tests that follow
            r.thread.join(5)
            if not r.loop.is_closed():
                r.loop.close()


@pytest.mark.parametrize("pool", ["thread", "async"])
def test_work_pools(cli: Cli, q: evq.Queue, pool: str) -> None:
    ids = [q.dispatch(CliAdd(a=1, b=2)), q.dispatch(cli_jobs.CliAsyncAdd(a=3, b=4))]
    work(cli, "--pool", pool, "--lease", "5", "--grace", "1")
    assert [q.job(i).result for i in ids] == ["3", "7"]


def test_work_queues_and_max_jobs(cli: Cli, q: evq.Queue) -> None:
    urgent = [q.dispatch(CliUrgent(note=str(i))) for i in range(2)]
    normal = q.dispatch(CliAdd(a=1, b=1))
    out = ok(cli("work", "--app", APP, "-q", "cli-high", "--max-jobs", "1", "--sleep", "0.05"))
    assert "queues cli-high" in out.stderr and "stopped after 1 jobs" in out.stderr
    assert [q.job(i).state for i in (*urgent, normal)] == ["succeeded", "pending", "pending"]
    work(cli, "--queues", "default,cli-high", "-c", "3")
    assert {q.job(i).state for i in (*urgent, normal)} == {"succeeded"}


def test_work_leaves_jobs_it_has_no_registration_for_to_a_worker_that_has(
        cli: Cli, q: evq.Queue) -> None:
    job_id = append_dispatched(q, "CliNotDeployedYet", b"{}")
    after = q.dispatch(CliAdd(a=1, b=1))
    work(cli)
    assert q.job(job_id).state == "pending" and q.job(after).state == "succeeded"
    assert [e.event.__struct_config__.tag for e in q.history(job_id)] == ["JobDispatched"]

    # after a deploy that brings the job type, a worker runs it
    class CliNotDeployedYet(evq.Job):
        def handle(self) -> str:
            return "deployed"

    work(cli)
    row = q.job(job_id)
    assert (row.state, row.result) == ("succeeded", '"deployed"')


def test_health_names_pending_job_types_no_live_worker_runs(cli: Cli, q: evq.Queue) -> None:
    from evq.eventlog.events import WorkerStarted

    append_dispatched(q, "CliNotDeployedYet", b"{}")
    q.dispatch(CliAdd(a=1, b=1), queue="elsewhere")
    q.dispatch(CliAdd(a=2, b=2))
    q.append([WorkerStarted(ts=time.time(), worker="w1", queues=["default"], names=["CliAdd"])])
    result = cli("health", "--json")
    assert result.exit_code == 1  # degraded
    checks = {c["name"]: c for c in json.loads(result.stdout)["checks"]}
    assert checks["runnable"]["status"] == "degraded"
    detail = checks["runnable"]["detail"]
    assert "CliNotDeployedYet in default (1 pending)" in detail
    assert "CliAdd in elsewhere (1 pending)" in detail and "CliAdd in default" not in detail


def test_work_without_an_app_is_one_line(cli: Cli, q: evq.Queue) -> None:
    q.dispatch(CliAdd(a=1, b=1))
    assert_error(cli("work", "--stop-when-empty"), "--app", "EVQ_APP")
    assert q.job(1).state == "pending"


def test_work_fails_a_job_whose_arguments_no_longer_decode(cli: Cli, q: evq.Queue) -> None:
    job_id = append_dispatched(q, "CliAdd", b'{"a": "one", "b": 2}')
    after = q.dispatch(CliAdd(a=1, b=1))
    work(cli)
    row = q.job(job_id)
    assert (row.state, row.error_type) == ("failed", "DecodeError")
    assert "no longer decode" in (row.error or "") and f"job {job_id}" in (row.error or "")
    assert q.job(after).state == "succeeded"
    out = ok(cli("history", job_id)).stdout
    assert "JobDead" in out and "no longer decode" in out


def test_work_bad_app_is_one_line(cli: Cli, q: evq.Queue, tmp_path: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    assert_error(cli("work", "--app", "cli_no_such_module_xyz", "--stop-when-empty"),
                 "cannot import --app cli_no_such_module_xyz")
    (tmp_path / "cli_broken_app.py").write_text("raise RuntimeError('half-deployed')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert_error(cli("work", "--app", "cli_broken_app", "--stop-when-empty"),
                 "cli_broken_app", f"{tmp_path / 'cli_broken_app.py'}:1",
                 "RuntimeError: half-deployed")
    (tmp_path / "cli_typo_app.py").write_text("import os\n\ndef f(:\n    pass\n")
    assert_error(cli("work", "--app", "cli_typo_app", "--stop-when-empty"),
                 f"{tmp_path / 'cli_typo_app.py'}:3", "SyntaxError")
    (tmp_path / "cli_missing_dep_app.py").write_text("import os\nimport cli_no_such_dep_xyz\n")
    assert_error(cli("work", "--app", "cli_missing_dep_app", "--stop-when-empty"),
                 f"{tmp_path / 'cli_missing_dep_app.py'}:2", "cli_no_such_dep_xyz")


# -- stats, jobs, history ----------------------------------------------------------------------


def test_stats_json_and_table(cli: Cli, q: evq.Queue, url: str) -> None:
    q.dispatch(CliAdd(a=1, b=1))
    q.dispatch(CliAdd(a=2, b=2), delay=3600)
    q.dispatch(CliUrgent())
    q.dispatch(CliFail(), queue="cli-high")
    work(cli, "--queues", "cli-high")
    data = as_json(cli("stats", "--json"))
    assert isinstance(data, dict)
    assert data["url"] == url and data["last_seq"] == q.store.log.last_seq()
    assert data["queues"]["default"]["pending"] == 1
    assert data["queues"]["default"]["delayed"] == 1
    assert data["queues"]["cli-high"]["succeeded"] == 1
    assert data["queues"]["cli-high"]["failed"] == 1
    assert data["job_types"]["CliAdd"]["dispatched"] == 2
    assert data["job_types"]["CliFail"]["failures"] == 2
    assert data["job_types"]["CliFail"]["dead"] == 1
    only = as_json(cli("stats", "cli-high", "--json"))
    assert list(only["queues"]) == ["cli-high"]

    table = ok(cli("stats")).stdout
    for text in ("queues", "job types", "default", "cli-high", "CliAdd",
                 "CliUrgent", "succeeded", "fail %"):
        assert text in table


def test_stats_watch_refreshes_until_ctrl_c(cli: Cli, q: evq.Queue,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from evq.cli import inspect as inspect_module

    q.dispatch(CliUrgent())
    ticks: list[float] = []

    class Clock:  # the refresh loop's sleep: two refreshes, then Ctrl-C
        @staticmethod
        def sleep(seconds: float) -> None:
            ticks.append(seconds)
            if len(ticks) == 2:
                raise KeyboardInterrupt

    monkeypatch.setattr(inspect_module, "time", Clock)
    out = ok(cli("stats", "--watch"))
    assert ticks == [1, 1]
    assert "cli-high" in out.stdout and "job types" in out.stdout


def test_jobs_filters_json_and_table(cli: Cli, q: evq.Queue) -> None:
    a1 = q.dispatch(CliAdd(a=1, b=1))
    a2 = q.dispatch(CliAdd(a=2, b=2), priority=3)
    later = q.dispatch(CliAdd(a=3, b=3), delay=3600)
    urgent = q.dispatch(CliUrgent(note="x"))
    work(cli, "--queues", "cli-high")

    def ids(*options: str) -> list[int]:
        rows = as_json(cli("jobs", *options, "--json"))
        assert isinstance(rows, list) and all(isinstance(r, dict) for r in rows)
        return [r["id"] for r in rows]

    everything = as_json(cli("jobs", "--json"))
    assert [j["id"] for j in everything] == [a1, a2, later, urgent]
    assert {"id", "name", "queue", "state", "attempt", "payload", "error"} <= everything[0].keys()
    assert ids("--state", "pending") == [a1, a2]
    assert ids("--state", "delayed") == [later]
    assert ids("--state", "succeeded") == [urgent]
    assert ids("--state", "running") == []
    assert ids("--state", "failed") == []
    assert ids("--queue", "cli-high") == [urgent]
    assert ids("--name", "CliAdd") == [a1, a2, later]
    assert ids("--name", "CliAdd", "--state", "pending", "--limit", "1") == [a1]

    table = ok(cli("jobs")).stdout
    for text in ("id", "name", "queue", "state", "CliAdd", "CliUrgent", "succeeded", "pending"):
        assert text in table
    assert_error(cli("jobs", "--state", "bogus"), "'bogus'")


def test_history_json_and_table(cli: Cli, q: evq.Queue) -> None:
    good = q.dispatch(CliAdd(a=20, b=22))
    bad = q.dispatch(CliFail(reason="broken pipe"))
    work(cli)
    events = as_json(cli("history", good, "--json"))
    assert isinstance(events, list)
    assert [e["type"] for e in events] == ["JobDispatched", "JobLeased", "JobStarted",
                                           "JobSucceeded"]
    assert {e["job_id"] for e in events} == {good}
    assert [e["seq"] for e in events] == sorted(e["seq"] for e in events)
    assert all(isinstance(e["ts"], float) for e in events)
    assert events[0]["payload"] == {"a": 20, "b": 22} and events[-1]["result"] == 42

    table = ok(cli("history", good)).stdout
    assert f"job {good}: CliAdd on default" in table
    for text in ("JobDispatched", "JobLeased", "JobStarted", "JobSucceeded"):
        assert text in table
    table = ok(cli("history", bad)).stdout
    assert "JobRetryScheduled" in table and "JobDead" in table
    assert "last traceback:" in table and "ValueError: broken pipe" in table


def test_history_of_an_unknown_job(cli: Cli, q: evq.Queue) -> None:
    q.dispatch(CliAdd(a=1, b=1))
    assert_error(cli("history", "999999"), "no job 999999")
    assert_error(cli("history", "999999", "--json"), "no job 999999")


# -- events ------------------------------------------------------------------------------------


def test_events_json_lines(cli: Cli, q: evq.Queue) -> None:
    q.dispatch(CliAdd(a=1, b=2))
    q.dispatch(CliFail())
    work(cli)
    events = json_lines(cli("events", "--json"))
    assert [e["seq"] for e in events] == list(range(1, q.store.log.last_seq() + 1))
    for e in events:
        assert {"seq", "ts", "type", "job_id"} <= e.keys()
    dispatched = [e for e in events if e["type"] == "JobDispatched"]
    assert dispatched[0]["name"] == "CliAdd" and dispatched[0]["payload"] == {"a": 1, "b": 2}
    succeeded = [e for e in events if e["type"] == "JobSucceeded"]
    assert len(succeeded) == 1 and succeeded[0]["result"] == 3 and "duration" in succeeded[0]
    failed = [e for e in events if e["type"] == "JobFailed"]
    assert len(failed) == 2 and failed[0]["error_type"] == "ValueError"
    assert failed[0]["message"] == "boom"

    text = ok(cli("events")).stdout.splitlines()
    assert len(text) == len(events)
    assert "JobDispatched" in text[0] and "job 1" in text[0]


def test_events_since_position_and_time(cli: Cli, q: evq.Queue) -> None:
    now = time.time()
    old = append_dispatched(q, "CliAdd", b'{"a": 1, "b": 1}', ts=now - 7200)
    new = [q.dispatch(CliAdd(a=2, b=2)), q.dispatch(CliUrgent())]

    def seqs(*options: str) -> list[int]:
        return [e["seq"] for e in json_lines(cli("events", "--json", *options))]

    assert seqs() == [old, *new]
    assert seqs("--since", "0") == [old, *new]
    assert seqs("--since", str(old)) == new  # after that position
    assert seqs("--since", str(new[-1])) == []
    assert seqs("--since", "1h") == new
    assert seqs("--since", "90m") == new
    assert seqs("--since", "3h") == [old, *new]
    assert seqs("--since", "1d") == [old, *new]
    an_hour_ago = datetime.fromtimestamp(now - 3600)
    assert seqs("--since", an_hour_ago.isoformat(timespec="seconds")) == new
    assert seqs("--since", an_hour_ago.astimezone(UTC).isoformat()) == new
    assert seqs("--since", "2000-01-01T00:00:00+00:00") == [old, *new]
    # the other filters
    assert seqs("--until", str(new[0])) == [old, new[0]]
    assert seqs("--until", "1h") == [old]
    assert seqs("--job", str(new[1])) == [new[1]]
    assert seqs("--queue", "cli-high") == [new[1]]
    assert seqs("--type", "JobDispatched", "--limit", "2") == [old, new[0]]
    assert ok(cli("events", "--since", "1h")).stdout.count("JobDispatched") == 2


@pytest.mark.parametrize(("since", "fragments"), [
    pytest.param("yesterday", ["'yesterday'", "neither a log position"], id="garbage"),
    pytest.param("-3", ["'-3'"], id="negative"),
    pytest.param("1x", ["'1x'"], id="bad-unit"),
    pytest.param("99999", ["99999", "beyond the end"], id="beyond-the-end"),
])
def test_events_since_bad_point(cli: Cli, q: evq.Queue, since: str,
                                fragments: list[str]) -> None:
    q.dispatch(CliAdd(a=1, b=1))
    assert_error(cli("events", "--since", since), *fragments)
    assert_error(cli("events", "--json", "--since", since), *fragments)


def test_events_with_an_undecodable_event_is_one_line(cli: Cli, q: evq.Queue,
                                                       db: Path) -> None:
    job_id = q.dispatch(CliAdd(a=1, b=1))
    sql(db, "INSERT INTO events(ts, type, job_id, queue, body) VALUES (?, ?, ?, ?, ?)",
        (time.time(), "JobFromTheFuture", job_id, "default",
         json.dumps({"type": "JobFromTheFuture", "ts": time.time(), "job_id": job_id})))
    for args in (["events"], ["events", "--json"], ["history", str(job_id)]):
        assert_error(cli(*args), "'JobFromTheFuture'", "upgrade evq")


# -- failed ------------------------------------------------------------------------------------


def test_failed_list_retry_delete_flush(cli: Cli, q: evq.Queue) -> None:
    f1 = q.dispatch(CliFail(reason="one"))
    f2 = q.dispatch(CliFail(reason="two"))
    f3 = q.dispatch(CliFail(reason="three"), queue="cli-high")
    good = q.dispatch(CliAdd(a=1, b=1))
    work(cli, "--queues", "default,cli-high")

    listed = as_json(cli("failed", "list", "--json"))
    assert isinstance(listed, list)
    assert [(j["id"], j["state"], j["error_type"], j["error"], j["failures"])
            for j in listed] == [(f1, "failed", "ValueError", "one", 2),
                                 (f2, "failed", "ValueError", "two", 2),
                                 (f3, "failed", "ValueError", "three", 2)]
    assert [j["id"] for j in as_json(cli("failed", "list", "--queue", "cli-high",
                                          "--json"))] == [f3]
    assert [j["id"] for j in as_json(cli("failed", "list", "--limit", "1", "--json"))] == [f1]
    table = ok(cli("failed", "list")).stdout
    assert "failed jobs" in table and "ValueError: two" in table and "CliFail" in table

    assert ok(cli("failed", "retry", f1)).stdout.strip() == f"requeued job {f1}"
    row = q.job(f1)
    assert (row.state, row.failures) == ("pending", 0)
    assert q.history(f1)[-1].event.__struct_config__.tag == "JobRequeued"
    assert ok(cli("failed", "retry", "--all", "--queue", "cli-high")).stdout.strip() == (
        "requeued 1 jobs")
    assert [q.job(i).state for i in (f1, f2, f3)] == ["pending", "failed", "pending"]
    work(cli, "--queues", "default,cli-high")
    assert [q.job(i).state for i in (f1, f2, f3)] == ["failed"] * 3
    assert ok(cli("failed", "retry", "--all", "--text", "tw")).stdout.strip() == (
        "requeued 1 jobs")  # "two" in its error
    assert ok(cli("failed", "retry", "--all", "--name", "CliAdd")).stdout.strip() == (
        "requeued 0 jobs")
    assert [q.job(i).state for i in (f1, f2, f3)] == ["failed", "pending", "failed"]
    assert ok(cli("failed", "retry", "--all")).stdout.strip() == "requeued 2 jobs"
    work(cli, "--queues", "default,cli-high")

    assert ok(cli("failed", "delete", f1)).stdout.strip() == f"deleted job {f1}"
    with pytest.raises(evq.NotFound):
        q.job(f1)
    assert q.history(f1)[-1].event.__struct_config__.tag == "JobPurged"  # the log keeps it
    assert ok(cli("failed", "flush")).stdout.strip() == "deleted 2 failed jobs"
    assert as_json(cli("failed", "list", "--json")) == []
    assert ok(cli("failed", "retry", "--all")).stdout.strip() == "requeued 0 jobs"
    assert q.job(good).state == "succeeded"


@pytest.mark.parametrize(("args", "fragments"), [
    pytest.param(["retry", "999999"], ["no job 999999"], id="retry-unknown-id"),
    pytest.param(["retry", "{succeeded}"], ["cannot retry", "succeeded"], id="retry-succeeded"),
    pytest.param(["retry", "{pending}"], ["cannot retry", "pending"], id="retry-pending"),
    pytest.param(["delete", "999999"], ["no job 999999"], id="delete-unknown-id"),
    pytest.param(["delete", "{pending}"], ["cannot delete", "pending"], id="delete-pending"),
    pytest.param(["retry"], [], id="retry-neither-id-nor-all"),
    pytest.param(["retry", "{failed}", "--all"], [], id="retry-id-and-all"),
    pytest.param(["retry", "abc"], [], id="retry-id-not-an-int"),
])
def test_failed_bad_input(cli: Cli, q: evq.Queue, db: Path, args: list[str],
                          fragments: list[str]) -> None:
    ids = {"succeeded": q.dispatch(CliAdd(a=1, b=1)), "failed": q.dispatch(CliFail())}
    work(cli)
    ids["pending"] = q.dispatch(CliAdd(a=2, b=2))
    before = snapshot(db)
    assert_error(cli("failed", *(a.format(**ids) for a in args)), *fragments)
    assert snapshot(db) == before


def test_failed_delete_refuses_a_job_that_did_not_fail(cli: Cli, q: evq.Queue,
                                                       db: Path) -> None:
    job_id = q.dispatch(CliAdd(a=1, b=1))
    work(cli)
    before = snapshot(db)
    assert_error(cli("failed", "delete", job_id), "succeeded")
    assert snapshot(db) == before


# -- clear -------------------------------------------------------------------------------------


def test_clear_force_removes_the_pending_jobs_of_one_queue(cli: Cli, q: evq.Queue) -> None:
    done = q.dispatch(CliAdd(a=0, b=0))
    work(cli)
    pending = [q.dispatch(CliAdd(a=i, b=i)) for i in range(2)]
    pending.append(q.dispatch(CliAdd(a=9, b=9), delay=3600))
    other = q.dispatch(CliUrgent())
    out = ok(cli("clear", "default", "--force"))
    assert out.stdout.strip() == "cleared 3 jobs from default"
    assert [j["id"] for j in as_json(cli("jobs", "--json"))] == [done, other]
    cleared = [e for e in json_lines(cli("events", "--json")) if e["type"] == "QueueCleared"]
    assert {e["queue"] for e in cleared} == {"default"}
    assert sorted(i for e in cleared for i in e.get("job_ids", [e["job_id"]])) == pending
    assert ok(cli("clear", "default", "--force")).stdout.strip() == "cleared 0 jobs from default"


def test_clear_without_force_refuses_and_keeps_the_jobs(cli: Cli, q: evq.Queue,
                                                        db: Path) -> None:
    ids = [q.dispatch(CliAdd(a=i, b=i)) for i in range(3)]
    before = snapshot(db)
    result = cli("clear", "default")
    assert result.exit_code != 0
    assert snapshot(db) == before
    assert [q.job(i).state for i in ids] == ["pending"] * 3


# -- events no reader can decode ---------------------------------------------------------------

DEEP = "[" * 100_000 + "]" * 100_000
UNREADABLE = {
    "not-json": ("JobStarted", "not json", "not valid JSON"),
    "not-an-object": ("JobStarted", "[1, 2]", "not a JSON object"),
    "unknown-type": ("JobFromTheFuture", '{"type": "JobFromTheFuture", "job_id": 1, "ts": 1}',
                     "unknown event type"),
    "wrong-field-type": ("JobStarted", '{"type": "JobStarted", "job_id": 1, "ts": "noon", '
                         '"attempt": 1, "worker": "w"}', "Expected `float`"),
    "nested-100k-deep": ("JobSucceeded", '{"type": "JobSucceeded", "job_id": 1, "ts": 1, '
                         f'"attempt": 1, "duration": 0, "result": {DEEP}}}', "nests deeper"),
}


@pytest.mark.parametrize("kind", UNREADABLE)
@pytest.mark.parametrize("command", [["events"], ["events", "--json"], ["history", "1"],
                                     ["replay", "--since", "0", "--verify"]],
                         ids=lambda c: "-".join(c[:2]))
def test_every_reader_of_the_log_names_an_event_it_cannot_decode(
        cli: Cli, q: evq.Queue, kind: str, command: list[str]) -> None:
    """A row written into the log by another program (or a newer evq): every reader stops at
    it with one line that names its position, never a traceback or a RecursionError."""
    job = q.dispatch(CliAdd(a=1, b=1))
    kind_name, body, why = UNREADABLE[kind]
    seq = q.store.log.last_seq() + 1
    with q.store.log.transaction():
        q.store.log.execute("INSERT INTO events(seq, ts, type, job_id, queue, body) "
                            "VALUES (?, ?, ?, ?, ?, ?)", (seq, time.time(), kind_name, job,
                                                          "default", body))
    assert_error(cli(*command), f"event at seq {seq}", why)


# -- query -------------------------------------------------------------------------------------


def test_query_table_json_csv(cli: Cli, q: evq.Queue) -> None:
    a = q.dispatch(CliAdd(a=1, b=1))
    b = q.dispatch(CliUrgent())
    statement = "SELECT id, name, state FROM jobs ORDER BY id"
    assert as_json(cli("query", statement, "--json")) == [
        {"id": a, "name": "CliAdd", "state": "pending"},
        {"id": b, "name": "CliUrgent", "state": "pending"}]
    rows = list(csv.reader(io.StringIO(ok(cli("query", statement, "--csv")).stdout)))
    assert rows == [["id", "name", "state"], [str(a), "CliAdd", "pending"],
                    [str(b), "CliUrgent", "pending"]]
    table = ok(cli("query", statement)).stdout
    assert "CliUrgent" in table and "state" in table
    counts = as_json(cli("query", "SELECT type, count(*) AS n FROM events GROUP BY type",
                         "--json"))
    assert counts == [{"type": "JobDispatched", "n": 2}]
    stats = as_json(cli("query", "SELECT queue, pending FROM queue_stats ORDER BY queue",
                        "--json"))
    assert stats == [{"queue": "cli-high", "pending": 1}, {"queue": "default", "pending": 1}]


@pytest.mark.parametrize("statement", [
    "DELETE FROM jobs",
    "UPDATE jobs SET state = 'failed'",
    "INSERT INTO events(ts, type, job_id, body) VALUES (0, 'JobPurged', 1, '{}')",
    "DROP TABLE events",
    "CREATE TABLE cli_extra (x)",
    "PRAGMA user_version = 7",
    "WITH doomed AS (SELECT id FROM jobs) DELETE FROM jobs WHERE id IN doomed",
    "REPLACE INTO queue_stats(queue) VALUES ('default')",
])
def test_query_refuses_statements_that_write(cli: Cli, q: evq.Queue, db: Path,
                                             statement: str) -> None:
    ids = [q.dispatch(CliAdd(a=i, b=i)) for i in range(2)]
    before = snapshot(db)
    version = sql(db, "PRAGMA user_version")
    assert_error(cli("query", statement), "read-only")
    assert_error(cli("query", statement, "--json"), "read-only")
    assert snapshot(db) == before and sql(db, "PRAGMA user_version") == version
    assert [q.job(i).state for i in ids] == ["pending", "pending"]


@pytest.mark.sqlite_only
@pytest.mark.parametrize("statement", [
    pytest.param("VACUUM INTO '{file}'", id="vacuum-into"),
    pytest.param("ATTACH DATABASE '{file}' AS other", id="attach"),
])
def test_query_creates_no_file(cli: Cli, q: evq.Queue, tmp_path: Path, statement: str) -> None:
    """Statements that would write a file next to the store are refused as well."""
    q.dispatch(CliAdd(a=1, b=1))
    target = tmp_path / "copy.db"
    result = cli("query", statement.format(file=target))
    assert not target.exists()
    assert_error(result, "read-only")


@pytest.mark.parametrize(("statement", "fragments"), [
    ("SELECT * FROM no_such_table", ["no_such_table"]),
    ("SELECT 1; SELECT 2", ["one statement"]),
    ("SELEKT 1", ["syntax error"]),
])
def test_query_bad_sql_is_one_line(cli: Cli, q: evq.Queue, statement: str,
                                   fragments: list[str]) -> None:
    assert_error(cli("query", statement), *fragments)


def test_query_needs_an_existing_sqlite_file(tmp_path: Path) -> None:
    missing = tmp_path / "missing.db"
    assert_error(invoke(["--url", f"sqlite:///{missing}", "query", "SELECT 1"]), "does not exist")
    assert not missing.exists()
    assert_error(invoke(["--url", "memory://", "query", "SELECT 1"]), "memory://")


def test_several_worker_processes_need_a_sqlite_file() -> None:
    assert_error(invoke(["--url", "memory://", "work", "--app", APP, "--processes", "2"]),
                 "need a SQLite file")


# -- replay ------------------------------------------------------------------------------------


def test_replay_verify_then_corrupt_then_rebuild(cli: Cli, q: evq.Queue, db: Path) -> None:
    done = [q.dispatch(CliAdd(a=i, b=i)) for i in range(3)]
    q.dispatch(CliFail())
    work(cli)
    waiting = q.dispatch(CliAdd(a=7, b=7))
    for since in ("0", "1", "1h", "2000-01-01T00:00"):
        out = ok(cli("replay", "--since", since, "--verify"))
        assert "0 differences" in out.stdout

    sql(db, "UPDATE jobs SET state = 'failed' WHERE id = ?", (done[0],))
    sql(db, "DELETE FROM jobs WHERE id = ?", (waiting,))
    result = cli("replay", "--since", "0", "--verify")
    assert result.exit_code == 1, result.output
    assert f"job {done[0]}: state is 'failed' live, 'succeeded' rebuilt" in result.stdout
    assert f"job {waiting}: only in rebuild" in result.stdout
    assert "2 differences" in result.stdout
    assert "Traceback" not in result.output

    out = ok(cli("replay", "--since", "0")).stdout
    assert f"replayed {q.store.log.last_seq()} events" in out
    assert "0 differences" in ok(cli("replay", "--since", "0", "--verify")).stdout
    assert q.job(done[0]).state == "succeeded" and q.job(waiting).state == "pending"


# -- the store: URLs and files -----------------------------------------------------------------

EVERY_COMMAND = [
    ["stats"], ["stats", "--json"], ["jobs"], ["jobs", "--json"], ["history", "1"],
    ["events", "--json"], ["failed", "list"], ["failed", "retry", "1"],
    ["failed", "retry", "--all"], ["failed", "delete", "1"], ["failed", "flush"],
    ["clear", "default", "--force"],
    ["replay", "--since", "0", "--verify"], ["query", "SELECT 1"],
    ["dispatch", "CliAdd", "--app", APP, "--json", GOOD_ARGS],
    ["work", "--app", APP, "--stop-when-empty"],
]


@pytest.mark.parametrize("args", EVERY_COMMAND, ids=" ".join)
def test_unknown_url_scheme_is_one_line(args: list[str], tmp_path: Path) -> None:
    assert_error(invoke(args, env={"EVQ_URL": "redis://localhost:6379/0"}), "redis")
    assert_error(invoke(["--url", "postgresql://evq@localhost/evq", *args]), "postgresql")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("args", EVERY_COMMAND, ids=" ".join)
def test_a_file_that_is_not_a_sqlite_database(args: list[str], tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    content = b"these are my notes, not a database\n" * 50
    path.write_bytes(content)
    assert_error(invoke(["--url", f"sqlite:///{path}", *args]), str(path),
                 "not a usable SQLite database")
    assert path.read_bytes() == content
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.db"]


def test_a_directory_is_not_a_database(tmp_path: Path) -> None:
    assert_error(invoke(["--url", f"sqlite:///{tmp_path}", "stats"]), str(tmp_path))
    assert_error(invoke(["--url", f"sqlite:///{tmp_path}/no/such/dir/evq.db", "stats"]),
                 "does not exist")


def test_evq_url_from_the_environment_and_url_wins(url: str, q: evq.Queue) -> None:
    q.dispatch(CliAdd(a=1, b=1))
    assert as_json(invoke(["stats", "--json"], env={"EVQ_URL": url}))["url"] == url
    data = as_json(invoke(["--url", url, "stats", "--json"], env={"EVQ_URL": "redis://x"}))
    assert data["last_seq"] == 1


@pytest.mark.parametrize("args", [
    pytest.param(["clear", "default"], id="clear-without-force"),
    pytest.param(["nosuchcommand"], id="unknown-command"),
    pytest.param(["jobs", "--no-such-option"], id="unknown-option"),
    pytest.param(["history"], id="history-without-id"),
    pytest.param(["history", "abc"], id="history-id-not-an-int"),
    pytest.param(["dispatch"], id="dispatch-without-name"),
    pytest.param(["work", "--app", APP, "--pool", "fork"], id="work-unknown-pool"),
    pytest.param(["work", "--app", APP, "--processes", "0"], id="work-processes-0"),
    pytest.param(["work", "--app", APP, "--max-memory", "0"], id="work-max-memory-0"),
    pytest.param(["work", "--app", APP, "--concurrency", "0"], id="work-concurrency-0"),
    pytest.param(["events", "--limit", "0"], id="events-limit-0"),
])
def test_usage_mistakes_are_one_line_errors(cli: Cli, q: evq.Queue, db: Path,
                                            args: list[str]) -> None:
    q.dispatch(CliAdd(a=1, b=1))
    before = snapshot(db)
    assert_error(cli(*args))
    assert snapshot(db) == before


@pytest.mark.parametrize("args", [[], ["failed"]], ids=["evq", "evq failed"])
def test_no_arguments_shows_the_help_not_an_error(args: list[str]) -> None:
    result = invoke(args)
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Commands:" in result.output
    assert "error:" not in result.output and "--help')" not in result.output


def test_help() -> None:
    out = ok(invoke(["--help"])).stdout
    for command in ("work", "dispatch", "stats", "jobs", "history", "events", "failed", "clear",
                    "query", "replay", "demo"):
        assert command in out
    assert "EVQ_URL" in out


# -- demo --------------------------------------------------------------------------------------


def test_demo_runs_to_completion(tmp_path: Path) -> None:
    path = tmp_path / "demo.db"
    out = ok(invoke(["demo", "--path", path]))
    text = out.stdout
    assert "dispatched 259 jobs" in text  # with a chain of 3 and a batch of 3 with a callback
    for fragment in ("queues", "job types", "ResizeImage", "SendEmail", "ImportCsv",
                     "JobDispatched", "JobSucceeded", "JobDead", "photo-book", "Q3 reports",
                     "Explore it"):
        assert fragment in text, fragment
    demo_url = f"sqlite:///{path}"
    assert "0 differences" in ok(invoke(["--url", demo_url, "replay", "--since", "0",
                                         "--verify"])).stdout
    failed = as_json(invoke(["--url", demo_url, "failed", "list", "--json"]))
    assert "ImportCsv" in {j["name"] for j in failed}  # broken input; a SendEmail may die too
    stats = as_json(invoke(["--url", demo_url, "stats", "--json"]))
    assert sum(c["pending"] + c["delayed"] + c["running"] + c["leased"]
               for c in stats["queues"].values()) == 0


# -- the API underneath ------------------------------------------------------------------------


def test_queue_append_returns_positions(q: evq.Queue) -> None:
    now = time.time()
    got = q.append([JobDispatched(ts=now, name="CliNoop", queue="default",
                                  payload=msgspec.Raw(b"{}"))])
    assert got == [1]
