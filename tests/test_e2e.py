"""End to end: real ``evq`` processes on a temporary SQLite file, checked through the log.

Jobs are dispatched through the Python API, ``evq work`` runs in a subprocess (from the repository
root, so that ``--app tests.cli_jobs`` imports), and the outcome is read back from the ``events``
table, by ``evq events --json`` or the API. Nothing here waits a fixed time: every wait polls for
a condition, with a deadline.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import msgspec
import pytest
from helpers import event_types, wait_until

import evq
from evq.eventlog.events import JobDispatched

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `tests.cli_jobs` is what `--app` names: import it as that
    sys.path.insert(0, str(ROOT))

from tests.cli_jobs import (  # noqa: E402
    CliAdd,
    CliAsyncAdd,
    CliAsyncExit,
    CliExit,
    CliFail,
    CliPatientSleep,
    CliSleep,
)

pytestmark = pytest.mark.slow

APP = "tests.cli_jobs"


def evq_command() -> list[str]:
    """The installed console script of this interpreter, else the same entry point via -c."""
    script = Path(sys.executable).with_name("evq")
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-c", "from evq.cli.main import main; main()"]


EVQ = evq_command()


def evq_env(url: str | None, pythonpath: Path | None = None,
            **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("EVQ_URL", "EVQ_APP")}
    if url is not None:
        env["EVQ_URL"] = url
    if pythonpath is not None:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(pythonpath),
                                                       env.get("PYTHONPATH")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def run_evq(url: str | None, *args: Any, timeout: float = 60, pythonpath: Path | None = None,
            **extra_env: str) -> subprocess.CompletedProcess[str]:
    """Run ``evq ARGS`` to completion."""
    return subprocess.run([*EVQ, *map(str, args)], cwd=ROOT, env=evq_env(url, pythonpath,
                                                                          **extra_env),
                          capture_output=True, text=True, timeout=timeout, check=False)


class Evq:
    """A running ``evq`` process whose stdout and stderr lines are collected as they come."""

    def __init__(self, url: str, *args: Any, pythonpath: Path | None = None) -> None:
        self.args = [str(a) for a in args]
        self.proc = subprocess.Popen([*EVQ, *self.args], cwd=ROOT, env=evq_env(url, pythonpath),
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.out: list[str] = []
        self.err: list[str] = []
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self._pumps = [threading.Thread(target=self._pump, args=(s, lines), daemon=True)
                       for s, lines in ((self.proc.stdout, self.out),
                                        (self.proc.stderr, self.err))]
        for t in self._pumps:
            t.start()

    @staticmethod
    def _pump(stream: IO[str], lines: list[str]) -> None:
        with stream:
            for line in stream:
                lines.append(line)

    @property
    def stderr(self) -> str:
        return "".join(self.err)

    @property
    def stdout(self) -> str:
        return "".join(self.out)

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def wait(self, timeout: float = 60) -> int:
        """The exit code, once the process has ended and its output is read."""
        code = self.proc.wait(timeout)
        for t in self._pumps:
            t.join(timeout)
        return code

    def stop(self) -> None:
        """Kill this process if it is still running (cleanup after a failed test)."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.wait(10)


@pytest.fixture
def spawn() -> Iterator[Callable[..., Evq]]:
    """Start ``evq`` processes; any still running at the end of the test is killed."""
    started: list[Evq] = []

    def start(url: str, *args: Any, pythonpath: Path | None = None) -> Evq:
        started.append(Evq(url, *args, pythonpath=pythonpath))
        return started[-1]

    yield start
    for p in started:
        p.stop()


def log_json(url: str) -> list[dict[str, Any]]:
    """The whole log, as ``evq events --json`` prints it."""
    res = run_evq(url, "events", "--json")
    assert res.returncode == 0, res.stderr
    return [json.loads(line) for line in res.stdout.splitlines()]


def by_job(events: list[dict[str, Any]]) -> dict[int, list[dict[str, Any]]]:
    """The events of each job (a worker's own events, with job id 0, are left out)."""
    jobs: dict[int, list[dict[str, Any]]] = {}
    for e in events:
        if e["job_id"]:
            jobs.setdefault(e["job_id"], []).append(e)
    return jobs


def work(url: str, *options: Any, pythonpath: Path | None = None,
         timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``evq work --stop-when-empty`` in a subprocess: it must end by itself with exit code 0."""
    res = run_evq(url, "work", "--stop-when-empty", "--sleep", "0.1", *options,
                  pythonpath=pythonpath, timeout=timeout)
    assert res.returncode == 0, f"exit {res.returncode}:\n{res.stderr}"
    assert "Traceback" not in res.stderr, res.stderr
    return res


def stopped_after(stderr: str) -> int:
    """The job count of the worker's last line: ``evq worker NAME stopped after N jobs``."""
    line = next(s for s in stderr.splitlines() if " stopped after " in s)
    return int(line.rsplit(" stopped after ", 1)[1].split()[0])


# -- a worker runs everything, once ------------------------------------------------------------


def test_worker_runs_every_job_exactly_once(url: str, q: evq.Queue) -> None:
    adds = q.dispatch_many([CliAdd(a=i, b=i) for i in range(40)])
    asyncs = q.dispatch_many([CliAsyncAdd(a=i, b=1) for i in range(5)])
    fails = q.dispatch_many([CliFail(reason=f"bad {i}") for i in range(3)])
    exits = q.dispatch_many([CliExit(code=3) for _ in range(2)])
    res = work(url, "--app", APP, "--concurrency", "2")
    assert "concurrency 2" in res.stderr
    assert stopped_after(res.stderr) == 40 + 5 + 3 * 2 + 2

    events = log_json(url)
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert all({"seq", "ts", "type", "job_id"} <= e.keys() for e in events)
    jobs = by_job(events)
    assert set(jobs) == {*adds, *asyncs, *fails, *exits}
    for ids, expected in ((adds, [2 * i for i in range(40)]), (asyncs, [i + 1 for i in range(5)])):
        for job_id, value in zip(ids, expected, strict=True):
            kinds = Counter(e["type"] for e in jobs[job_id])
            assert kinds["JobSucceeded"] == 1 and kinds["JobFailed"] == 0, kinds
            assert next(e["result"] for e in jobs[job_id]
                        if e["type"] == "JobSucceeded") == value
    for job_id in fails:
        kinds = Counter(e["type"] for e in jobs[job_id])
        assert (kinds["JobFailed"], kinds["JobRetryScheduled"], kinds["JobDead"],
                kinds["JobSucceeded"]) == (2, 1, 1, 0), kinds
        assert [e["type"] for e in jobs[job_id]][-1] == "JobDead"
    for job_id in exits:
        failed = [e for e in jobs[job_id] if e["type"] == "JobFailed"]
        assert [e["error_type"] for e in failed] == ["SystemExit"]
        assert jobs[job_id][-1]["type"] == "JobDead"

    listed = run_evq(url, "jobs", "--state", "failed", "--json")
    assert sorted(j["id"] for j in json.loads(listed.stdout)) == sorted([*fails, *exits])
    assert run_evq(url, "replay", "--since", "0", "--verify").returncode == 0


def test_sys_exit_and_exceptions_do_not_take_the_worker_down(url: str, q: evq.Queue) -> None:
    """One runner thread: the bad jobs run first, and everything after them still runs."""
    bad = [q.dispatch(CliExit(code=3), priority=10), q.dispatch(CliExit(code=0), priority=10),
           q.dispatch(CliAsyncExit(), priority=10), q.dispatch(CliFail(), priority=10)]
    good = [*q.dispatch_many([CliAdd(a=1, b=i) for i in range(5)]),
            q.dispatch(CliAsyncAdd(a=1, b=1))]
    work(url, "--app", APP)  # exit code 0, no traceback
    for job_id in bad:
        assert q.job(job_id).state == "failed"
    assert [q.job(i).error_type for i in bad] == ["SystemExit", "SystemExit", "SystemExit",
                                                  "ValueError"]
    assert {q.job(i).state for i in good} == {"succeeded"}
    first_good = min(r.seq for i in good for r in q.history(i)
                     if r.event.__struct_config__.tag == "JobStarted")
    for job_id in bad:  # each bad job failed before the first good one started: same worker
        assert min(r.seq for r in q.history(job_id)
                   if r.event.__struct_config__.tag == "JobFailed") < first_good


# -- a job name the worker does not know -------------------------------------------------------


def test_a_job_type_no_worker_runs_waits_for_a_deploy(url: str, q: evq.Queue,
                                                     tmp_path: Path) -> None:
    now = time.time()
    [job_id] = q.append([JobDispatched(ts=now, run_at=now, name="CliShippedLater",
                                       queue="default", payload=msgspec.Raw(b"{}"))])
    work(url, "--app", APP)
    assert q.job(job_id).state == "pending" and event_types(q, job_id) == ["JobDispatched"]
    (tmp_path / "cli_deploy_v2.py").write_text(
        "import evq\n\n\n"
        "class CliShippedLater(evq.Job):\n"
        "    def handle(self) -> str:\n"
        "        return 'shipped'\n")
    work(url, "--app", f"{APP},cli_deploy_v2", pythonpath=tmp_path)
    assert event_types(q, job_id) == ["JobDispatched", "JobLeased", "JobStarted", "JobSucceeded"]
    row = q.job(job_id)
    assert (row.state, row.result) == ("succeeded", '"shipped"')


# -- signals -----------------------------------------------------------------------------------


def test_sigterm_stops_an_idle_worker_promptly(url: str, q: evq.Queue,
                                               spawn: Callable[..., Evq]) -> None:
    worker = spawn(url, "work", "--app", APP, "--sleep", "30")
    wait_until(lambda: "evq worker" in worker.stderr, what="the worker's start line")
    started = time.monotonic()
    worker.signal(signal.SIGTERM)
    assert worker.wait(10) == 0
    assert time.monotonic() - started < 3, "an idle worker took long to stop on SIGTERM"
    assert "stopped after 0 jobs" in worker.stderr and "Traceback" not in worker.stderr


def test_each_job_dispatched_as_the_previous_one_ends_starts_at_once(
        url: str, q: evq.Queue, spawn: Callable[..., Evq]) -> None:
    """Dispatch, wait for the result, dispatch again: the next job often arrives while the
    worker is still writing the previous outcome, with its wake-up disarmed. It must start at
    once, not at the fallback poll (60 s here: one missed wake-up fails the test). The worker
    used to sleep on a wake-up it had been handed as it re-armed (1 in ~50 here, on PostgreSQL)."""
    worker = spawn(url, "work", "--app", APP, "--sleep", "60")
    wait_until(lambda: "evq worker" in worker.stderr, what="the worker's start line")
    started = time.monotonic()
    for i in range(200):
        assert q.result(q.dispatch(CliAdd(a=i, b=1)), timeout=30) == i + 1
    elapsed = time.monotonic() - started
    worker.signal(signal.SIGTERM)
    assert worker.wait(30) == 0, worker.stderr
    assert elapsed < 30, f"200 jobs one after another took {elapsed:.1f} s"


def test_sigterm_lets_the_running_job_finish(url: str, q: evq.Queue,
                                             spawn: Callable[..., Evq]) -> None:
    job_id = q.dispatch(CliSleep(seconds=1.0))
    worker = spawn(url, "work", "--app", APP, "--sleep", "30")
    wait_until(lambda: "JobStarted" in event_types(q, job_id), what="the job to start")
    worker.signal(signal.SIGTERM)
    assert worker.wait(15) == 0
    assert event_types(q, job_id)[-1] == "JobSucceeded"
    assert "stopped after 1 jobs" in worker.stderr


def test_events_follow_prints_new_events_until_interrupted(url: str, q: evq.Queue,
                                                           spawn: Callable[..., Evq]) -> None:
    first = q.dispatch(CliAdd(a=1, b=1))
    follower = spawn(url, "events", "--follow", "--json")
    wait_until(lambda: len(follower.out) == 1, what="the existing event")
    assert json.loads(follower.out[0])["job_id"] == first
    second = q.dispatch(CliAdd(a=2, b=2))
    wait_until(lambda: len(follower.out) == 2, what="the new event")
    new = json.loads(follower.out[1])
    assert (new["seq"], new["job_id"], new["type"]) == (second, second, "JobDispatched")
    follower.signal(signal.SIGINT)
    assert follower.wait(10) == 0
    assert "Traceback" not in follower.stderr


# -- two workers, one file ---------------------------------------------------------------------


def test_two_workers_share_2000_jobs_and_run_each_once(url: str, db: Path, q: evq.Queue,
                                                      spawn: Callable[..., Evq]) -> None:
    # 2 ms of work each: a no-op job is so fast that one worker drains all 2,000 while the other
    # is still opening the store, and nothing would be shared
    ids = q.dispatch_many([CliSleep(seconds=0.002) for _ in range(2000)])
    workers = [spawn(url, "work", "--app", APP, "--stop-when-empty", "--concurrency", "2",
                     "--sleep", "0.1") for _ in range(2)]
    for w in workers:
        assert w.wait(60) == 0, w.stderr
        assert "Traceback" not in w.stderr, w.stderr
    done = [stopped_after(w.stderr) for w in workers]
    assert sum(done) == 2000 and min(done) > 0, f"jobs run per worker: {done}"

    with contextlib.closing(sqlite3.connect(db)) as conn:
        succeeded = dict(conn.execute(
            "SELECT job_id, count(*) FROM events WHERE type = 'JobSucceeded' GROUP BY job_id"))
        leased = dict(conn.execute(
            "SELECT job_id, count(*) FROM events WHERE type = 'JobLeased' GROUP BY job_id"))
    assert sorted(succeeded) == sorted(ids)
    twice = {k: v for k, v in succeeded.items() if v != 1}
    assert twice == {}, f"jobs that succeeded more than once: {twice}"
    assert set(leased.values()) == {1}
    assert {q.job(i).state for i in ids} == {"succeeded"}
    assert run_evq(url, "replay", "--since", "0", "--verify").returncode == 0


# -- bad input, in a real process: exactly one line on the real stderr -------------------------

@pytest.mark.parametrize(("args", "env", "fragment"), [
    pytest.param(["stats"], {"EVQ_URL": "redis://localhost:6379/0"}, "'redis'",
                 id="unknown-scheme"),
    pytest.param(["--url", "sqlite:///{notes}", "jobs"], {}, "not a usable SQLite database",
                 id="not-a-database"),
    pytest.param(["query", "DELETE FROM jobs"], {}, "read-only", id="query-that-writes"),
    pytest.param(["failed", "retry", "999999"], {}, "no job 999999", id="retry-unknown-id"),
    pytest.param(["history", "999999"], {}, "no job 999999", id="history-unknown-id"),
    pytest.param(["dispatch", "CliNope", "--json", "{}"], {}, "--app", id="unknown-job-name"),
    pytest.param(["dispatch", "CliAdd", "--app", APP, "--json", '{"a": "x", "b": 1}'], {},
                 "$.a", id="wrong-argument-type"),
    pytest.param(["dispatch", "CliAdd", "--app", APP, "--json", "{nope"], {},
                 "JSON", id="invalid-json"),
    pytest.param(["events", "--since", "whenever"], {}, "'whenever'", id="since-garbage"),
    pytest.param(["clear", "default"], {}, "--force", id="clear-without-force"),
    pytest.param(["history", "abc"], {}, "job_id", id="history-id-not-an-int"),
])
def test_bad_input_in_a_real_process(url: str, db: Path, q: evq.Queue, tmp_path: Path,
                                     args: list[str], env: dict[str, str],
                                     fragment: str) -> None:
    kept = q.dispatch(CliAdd(a=1, b=1))
    notes = tmp_path / "notes.txt"
    notes.write_text("not a database\n" * 100)
    res = run_evq(env.get("EVQ_URL", url), *(a.replace("{notes}", str(notes)) for a in args))
    assert res.returncode != 0
    assert "Traceback" not in res.stderr
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    assert fragment in lines[0]
    assert res.stdout == ""
    assert q.job(kept).state == "pending" and q.store.log.last_seq() == 1
    assert notes.read_text() == "not a database\n" * 100


# -- composed work survives workers killed with SIGKILL ----------------------------------------

def _callbacks_dispatched(q: evq.Queue, group_id: int) -> list[str]:
    return sorted(r.event.callback_of for r in q.events(types=["JobDispatched"])
                  if r.event.callback_of and r.event.callback_of.startswith(f"{group_id}:"))


def test_a_batch_runs_its_callbacks_once_with_a_worker_killed_mid_batch(
        url: str, q: evq.Queue, spawn: Callable[..., Evq]) -> None:
    batch = q.batch([CliPatientSleep(seconds=0.005) for _ in range(300)]).on_success(
        CliAdd(a=1, b=1)).on_finally(CliAdd(a=2, b=2)).dispatch()
    assert batch.id is not None
    workers = [spawn(url, "work", "--app", APP, "--lease", "1", "--sleep", "0.1")
               for _ in range(2)]
    wait_until(lambda: q.group(batch.id)["succeeded"] >= 30, timeout=60,  # type: ignore[arg-type]
               what="some of the batch done")
    workers[0].signal(signal.SIGKILL)
    assert workers[0].wait(10) == -signal.SIGKILL
    status = batch.wait(timeout=90)
    assert (status["succeeded"], status["pending"], status["state"]) == (300, 0, "succeeded")
    wait_until(lambda: len(_callbacks_dispatched(q, batch.id)) == 2  # type: ignore[arg-type]
               and all(q.job(i).state == "succeeded" for i in _callback_ids(q, batch.id)),
               timeout=30, what="both callbacks run")
    assert _callbacks_dispatched(q, batch.id) == [f"{batch.id}:finally", f"{batch.id}:success"]
    workers[1].signal(signal.SIGTERM)
    assert workers[1].wait(30) == 0
    assert run_evq(url, "replay", "--since", "0", "--verify").returncode == 0


def _callback_ids(q: evq.Queue, group_id: int) -> list[int]:
    return [r.seq for r in q.events(types=["JobDispatched"])
            if (r.event.callback_of or "").startswith(f"{group_id}:")]


def test_a_chain_goes_on_after_its_worker_is_killed_between_steps(
        url: str, q: evq.Queue, spawn: Callable[..., Evq]) -> None:
    chain = q.chain(*(CliPatientSleep(seconds=0.05) for _ in range(8))).dispatch()
    first = spawn(url, "work", "--app", APP, "--lease", "1", "--sleep", "0.1")
    wait_until(lambda: q.job(chain.job_ids[2]).state in ("leased", "running", "succeeded"),
               timeout=60, what="the third step started")
    first.signal(signal.SIGKILL)
    assert first.wait(10) == -signal.SIGKILL
    assert q.job(chain.job_ids[-1]).state == "waiting"
    held = [q.job(i) for i in chain.job_ids if q.job(i).state in ("leased", "running")]
    wait_until(lambda: all(time.time() > (r.lease_expires or 0) for r in held), timeout=10,
               what="the killed worker's lease to run out")
    work(url, "--app", APP, "--lease", "1")
    assert [q.job(i).state for i in chain.job_ids] == ["succeeded"] * 8
    starts = [next(r.seq for r in q.history(i) if type(r.event).__name__ == "JobStarted")
              for i in chain.job_ids]
    assert starts == sorted(starts)
    assert q.group(chain.id)["state"] == "succeeded"  # type: ignore[arg-type]
    assert run_evq(url, "replay", "--since", "0", "--verify").returncode == 0
