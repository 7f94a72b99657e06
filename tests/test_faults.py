"""Faults with real processes: kill -9, many workers on one file, a locked or full database,
hanging and crashing jobs in the process pool, signals, and the supervisor.

Every wait polls the log (or a process) for a condition with a deadline; nothing sleeps a fixed
time to synchronise. The checks read the whole log: each job must have exactly one
``JobSucceeded``, reported under a lease that was still valid when it was written.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import wait_until

import evq
from tests import test_e2e as e2e
from tests.cli_jobs import CliAdd, CliBloat, CliCrash, CliHang, CliSleep, CliWork
from tests.test_e2e import APP, ROOT, Evq, run_evq

# the end-to-end fixtures: a SQLite file, its URL, a queue on it, and evq processes
spawn = e2e.spawn  # the fixture that starts evq processes

pytestmark = pytest.mark.slow
JOBS_ON_A_SMALL_DISK = 500


def log_rows(db: Path) -> list[tuple[int, str, int, dict[str, Any]]]:
    """The whole log: (seq, type, job id, body) in order."""
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return [(seq, kind, job, json.loads(body)) for seq, kind, job, body in conn.execute(
            "SELECT seq, type, job_id, body FROM events ORDER BY seq")]


def succeeded(db: Path) -> int:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return conn.execute("SELECT count(*) FROM events WHERE type = 'JobSucceeded'"
                            ).fetchone()[0]


def check_exactly_once(db: Path, ids: list[int]) -> dict[int, list[str]]:
    """Assert that each job of ``ids`` succeeded exactly once, under a lease still valid then
    (its attempt was the latest lease and no expiry, release or other outcome had ended it);
    returns each job's event types."""
    return check_log(log_rows(db), ids)


def check_log(rows: list[tuple[int, str, int, dict[str, Any]]], ids: list[int], *,
              stale_ok: bool = False) -> dict[int, list[str]]:
    """:func:`check_exactly_once` on log rows (seq, type, job id, body) read from any store;
    with ``stale_ok`` a success under a stale lease (a late report, which changes nothing) is
    left out of the count instead of failing the check."""
    valid: dict[int, tuple[int, bool]] = {}  # job -> (latest attempt, lease still valid)
    wins: Counter[int] = Counter()
    kinds: dict[int, list[str]] = {}
    for _seq, kind, job, body in rows:
        kinds.setdefault(job, []).append(kind)
        attempt = body.get("attempt")
        if kind == "JobLeased":
            valid[job] = (attempt, True)
        elif kind in ("JobSucceeded", "JobFailed", "JobTimedOut", "LeaseExpired",
                      "LeaseReleased", "JobRetryScheduled", "JobDead"):
            current, ok = valid.get(job, (None, False))
            if kind == "JobSucceeded":
                if not (ok and attempt == current):
                    assert stale_ok, f"job {job}: success under a stale lease"
                    continue
                wins[job] += 1
            if attempt == current:
                valid[job] = (current, False)
    assert sorted(wins) == sorted(ids), "some jobs never succeeded"
    assert {j: n for j, n in wins.items() if n != 1} == {}, "jobs that succeeded twice"
    return kinds


def verify(url: str, db: Path) -> None:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    with contextlib.closing(evq.connect(url)) as fresh:
        assert fresh.store.verify() == []


def python(code: str, *, preexec: Callable[[], None] | None = None) -> subprocess.Popen[str]:
    """A Python process running ``code`` from the repository root."""
    return subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=preexec)


@pytest.fixture
def reaped() -> Iterator[list[subprocess.Popen[str]]]:
    """Plain subprocesses to kill at the end of the test."""
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.communicate(timeout=10)


# -- crashes ---------------------------------------------------------------------------------


def test_kill_9_of_a_worker_loses_no_job(url: str, db: Path, q: evq.Queue,
                                         spawn: Callable[..., Evq]) -> None:
    ids = q.dispatch_many([CliWork(seconds=0.01) for _ in range(300)])
    first = spawn(url, "work", "--app", APP, "-c", "4", "--lease", "1", "--sleep", "0.1")
    wait_until(lambda: succeeded(db) >= 50, what="the first worker to get going")
    first.proc.kill()
    killed = time.monotonic()
    assert first.wait(10) == -signal.SIGKILL
    held = [j.id for j in q.jobs("running", limit=1000)]
    assert held, "the killed worker held no lease"
    second = spawn(url, "work", "--app", APP, "-c", "4", "--lease", "1", "--sleep", "0.1")
    wait_until(lambda: succeeded(db) >= len(ids), what="every job to succeed")
    recovered = time.monotonic() - killed
    second.signal(signal.SIGTERM)
    assert second.wait(15) == 0 and "Traceback" not in second.stderr
    kinds = check_exactly_once(db, ids)
    for job in held:  # the lost attempt is in the job's history
        assert "LeaseExpired" in kinds[job], kinds[job]
        assert kinds[job][-1] == "JobSucceeded"
    verify(url, db)
    print(f"\nkill -9: {len(ids)} jobs, {len(held)} held by the killed worker, 0 duplicates, "
          f"all done {recovered:.2f}s after the kill (lease 1s)")


def test_jobs_claimed_but_not_started_by_a_killed_worker_use_no_attempt(
        url: str, db: Path, q: evq.Queue, spawn: Callable[..., Evq]) -> None:
    """tries=1: the job that was running when its worker died has used its one attempt; the
    ones it had claimed but not started have not, and succeed on the next worker."""
    quick = q.dispatch_many([CliSleep(seconds=0.001) for _ in range(5)])
    long = q.dispatch(CliSleep(seconds=60))
    quick += q.dispatch_many([CliSleep(seconds=0.001) for _ in range(30)])
    first = spawn(url, "work", "--app", APP, "-c", "1", "--lease", "1", "--sleep", "0.1")
    wait_until(lambda: q.job(long).state == "running" and q.jobs("running", limit=100)[1:],
               what="the long job to run while the worker holds more")
    first.proc.kill()
    assert first.wait(10) == -signal.SIGKILL
    unstarted = [j.id for j in q.jobs("running", limit=100) if j.state == "leased"]
    assert unstarted, "the killed worker held no unstarted job"
    second = spawn(url, "work", "--app", APP, "-c", "4", "--lease", "1", "--sleep", "0.1")
    wait_until(lambda: q.job(long).state == "failed" and q.size() == 0
               and not q.jobs("running", limit=1), what="the lost leases to be settled")
    second.signal(signal.SIGTERM)
    assert second.wait(15) == 0, second.stderr
    assert q.job(long).error_type == "WorkerLost"
    for job in quick:
        row = q.job(job)
        assert (row.state, row.failures) == ("succeeded", 0), row
    for job in unstarted:
        kinds = [r.event.__struct_config__.tag for r in q.history(job)]
        assert "LeaseExpired" in kinds and "JobFailed" not in kinds and "JobDead" not in kinds
    verify(url, db)


def test_kill_9_in_a_bulk_dispatch_writes_all_or_none(url: str, db: Path, q: evq.Queue,
                                                      reaped: list[Any]) -> None:
    batch = 5000
    code = (f"import evq\nfrom tests.cli_jobs import CliAdd\nq = evq.connect({url!r})\n"
            f"while True:\n    q.dispatch_many([CliAdd(a=i, b=1) for i in range({batch})])\n"
            "    print('batch', flush=True)\n")
    proc = python(code)
    reaped.append(proc)
    assert proc.stdout is not None
    for _ in range(2):  # some batches are in; the next one is being written
        assert proc.stdout.readline() == "batch\n"
    proc.kill()
    proc.wait(10)
    with contextlib.closing(sqlite3.connect(db)) as conn:
        dispatched = conn.execute("SELECT count(*) FROM events").fetchone()[0]
    assert dispatched >= 2 * batch and dispatched % batch == 0
    verify(url, db)


def test_four_worker_processes_run_each_job_once(url: str, db: Path, q: evq.Queue,
                                                 spawn: Callable[..., Evq]) -> None:
    ids = q.dispatch_many([CliSleep(seconds=0.0005) for _ in range(4000)])
    supervisor = spawn(url, "work", "--app", APP, "--processes", "4", "-c", "2",
                       "--stop-when-empty", "--sleep", "0.1")
    assert supervisor.wait(90) == 0, supervisor.stderr
    assert "Traceback" not in supervisor.stderr
    check_exactly_once(db, ids)
    workers = q.workers(stopped=True)
    assert len(workers) == 4 and all(w.status == "stopped" for w in workers)
    assert sum(w.done for w in workers) == len(ids)
    verify(url, db)


# -- a locked or full database ----------------------------------------------------------------


def test_a_database_locked_past_the_busy_timeout(url: str, db: Path, q: evq.Queue,
                                                 spawn: Callable[..., Evq]) -> None:
    ids = q.dispatch_many([CliAdd(a=i, b=1) for i in range(20)])
    short = f"{url}?busy_timeout=0.2"
    with contextlib.closing(sqlite3.connect(db, isolation_level=None)) as locker:
        locker.execute("BEGIN IMMEDIATE")  # holds the write lock
        worker = spawn(short, "work", "--app", APP, "--sleep", "0.1", "--stop-when-empty")
        wait_until(lambda: worker.stderr.count("will retry") >= 2,
                 what="the worker to meet the lock, twice")
        refused = run_evq(short, "dispatch", "CliAdd", "--app", APP, "--json",
                          '{"a": 1, "b": 2}')
        assert refused.returncode == 1 and "Traceback" not in refused.stderr
        assert refused.stderr.count("\n") == 1 and "locked" in refused.stderr
        assert worker.proc.poll() is None, "the worker gave up on a locked database"
        locker.execute("ROLLBACK")
    assert worker.wait(30) == 0 and "Traceback" not in worker.stderr
    check_exactly_once(db, ids)


def _file_size_limit(extra: int, db: Path) -> Callable[[], None]:
    """A preexec function: files of the new process may grow by ``extra`` bytes at most
    (as on a full disk); SIGXFSZ ignored, so a write fails with an error instead."""
    limit = max(p.stat().st_size for p in db.parent.glob(db.name + "*")) + extra

    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))

    return apply


def test_a_full_disk_fails_a_dispatch_cleanly(url: str, db: Path, q: evq.Queue) -> None:
    q.dispatch_many([CliAdd(a=i, b=1) for i in range(100)])
    before = q.store.log.last_seq()
    code = (f"import evq\nfrom tests.cli_jobs import CliAdd\nq = evq.connect({url!r})\n"
            "q.dispatch_many([CliAdd(a=i, b=1) for i in range(20000)])\n")
    proc = python(code, preexec=_file_size_limit(20_000, db))
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert "evq.eventlog.errors.StoreFull" in err and "nothing was written" in err
    assert q.store.log.last_seq() == before
    verify(url, db)


def _line_with(text: str, proc: subprocess.Popen[str]) -> str:
    """Read ``proc``'s stderr up to the first line that holds ``text``; returns that line."""
    assert proc.stderr is not None
    for line in proc.stderr:
        if text in line:
            return line
    raise AssertionError(f"the process ended without saying {text!r}")


def test_a_worker_on_a_full_disk_waits_and_recovers(url: str, db: Path, q: evq.Queue) -> None:
    ids = q.dispatch_many([CliAdd(a=i, b=1) for i in range(50)])
    evq_cmd = [sys.executable, "-m", "evq.cli", "--url", url, "work", "--app", APP,
               "--sleep", "0.1"]
    proc = subprocess.Popen(evq_cmd, cwd=ROOT, text=True, stderr=subprocess.PIPE,
                            preexec_fn=_file_size_limit(0, db))
    try:
        assert "a write failed" in _line_with("will retry", proc) and proc.poll() is None
        assert succeeded(db) == 0
        unlimited = (resource.RLIM_INFINITY, resource.RLIM_INFINITY)
        resource.prlimit(proc.pid, resource.RLIMIT_FSIZE, unlimited)  # space is back
        wait_until(lambda: succeeded(db) == len(ids), what="the jobs, once writes succeed")
        proc.send_signal(signal.SIGTERM)
        _, rest = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)
    assert proc.returncode == 0 and "Traceback" not in rest
    check_exactly_once(db, ids)
    verify(url, db)


# -- the process pool -------------------------------------------------------------------------


def test_process_pool_kills_hanging_jobs_and_survives_crashes(
        url: str, db: Path, q: evq.Queue, tmp_path: Path, spawn: Callable[..., Evq]) -> None:
    marker = tmp_path / "timed_out.txt"
    hang = q.dispatch(CliHang(marker=str(marker)), priority=5)
    crash = q.dispatch(CliCrash(code=9), priority=5)
    adds = q.dispatch_many([CliAdd(a=i, b=1) for i in range(20)])
    worker = spawn(url, "work", "--app", APP, "--pool", "process", "-c", "2",
                   "--stop-when-empty", "--sleep", "0.1")
    assert worker.wait(60) == 0, worker.stderr
    assert "Traceback" not in worker.stderr
    kinds = Counter(r.event.__struct_config__.tag for r in q.history(hang))
    assert (kinds["JobTimedOut"], kinds["JobDead"], q.job(hang).state) == (2, 1, "failed")
    assert marker.read_text() == "timed out\n" * 2  # the hook ran for each attempt
    row = q.job(crash)
    assert (row.state, row.error_type, row.failures) == ("failed", "WorkerCrashed", 2)
    assert "exited with code 9" in (row.error or "")
    assert {q.job(i).state for i in adds} == {"succeeded"}
    assert [q.job(i).result for i in adds] == [str(i + 1) for i in range(20)]


# -- signals and the supervisor -----------------------------------------------------------------


def test_sigterm_during_long_jobs_releases_the_rest(url: str, db: Path, q: evq.Queue,
                                                    spawn: Callable[..., Evq]) -> None:
    ids = q.dispatch_many([CliWork(seconds=0.5) for _ in range(4)])
    first = spawn(url, "work", "--app", APP, "--grace", "5", "--sleep", "0.1")
    wait_until(lambda: any(j.state == "running" for j in q.jobs("running")), what="a job start")
    held = len(q.jobs("running"))
    first.signal(signal.SIGTERM)
    signalled = time.monotonic()
    assert first.wait(10) == 0
    assert time.monotonic() - signalled < 5, "not within the grace period"
    released = [i for i in ids if "LeaseReleased" in
                [r.event.__struct_config__.tag for r in q.history(i)]]
    assert len(released) == held - 1  # all it held but the one that ran
    spawn(url, "work", "--app", APP, "--stop-when-empty", "--sleep", "0.1").wait(30)
    kinds = check_exactly_once(db, ids)
    assert all(kinds[i].count("JobLeased") == 2 for i in released)


def test_supervisor_restarts_a_killed_worker_and_stops_cleanly(
        url: str, q: evq.Queue, spawn: Callable[..., Evq]) -> None:
    supervisor = spawn(url, "work", "--app", APP, "--processes", "2", "--sleep", "0.2")
    alive = wait_until(lambda: len(q.workers()) == 2 and q.workers(), what="two workers")
    victim = alive[0].pid
    os.kill(victim, signal.SIGKILL)
    wait_until(lambda: sum(w.status == "alive" and w.pid not in (victim,)
                         for w in q.workers()) == 2, what="a replacement")
    pids = [w.pid for w in q.workers() if w.status == "alive" and w.pid != victim]
    supervisor.signal(signal.SIGINT)
    assert supervisor.wait(15) == 0, supervisor.stderr
    assert "died (killed by SIGKILL); restarting it" in supervisor.stderr
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert {w.pid for w in q.workers(stopped=True) if w.status == "stopped"} == set(pids)


def test_supervisor_recycles_a_worker_after_max_jobs(url: str, q: evq.Queue,
                                                     spawn: Callable[..., Evq]) -> None:
    ids = q.dispatch_many([CliAdd(a=i, b=1) for i in range(40)])
    supervisor = spawn(url, "work", "--app", APP, "--processes", "2", "--max-jobs", "15",
                       "--stop-when-empty", "--sleep", "0.1")
    assert supervisor.wait(60) == 0, supervisor.stderr
    assert {q.job(i).state for i in ids} == {"succeeded"}
    workers = q.workers(stopped=True)
    assert len(workers) >= 3 and max(w.done for w in workers) <= 15


def test_supervisor_recycles_a_worker_past_max_memory(url: str, q: evq.Queue,
                                                      spawn: Callable[..., Evq]) -> None:
    job = q.dispatch(CliBloat(mb=80, seconds=0.6))
    supervisor = spawn(url, "work", "--app", APP, "--max-memory", "90", "--stop-when-empty",
                       "--sleep", "0.1")
    assert supervisor.wait(60) == 0, supervisor.stderr
    assert "recycling" in supervisor.stderr
    assert q.job(job).state == "succeeded"  # the recycled worker finished it first
    first, second = q.workers(stopped=True)  # the second started because the first was recycled
    assert (first.pid, first.done, second.done) == (int(q.job(job).result or 0), 1, 0)


def test_a_second_signal_stops_the_supervisor_at_once(url: str, q: evq.Queue,
                                                      spawn: Callable[..., Evq]) -> None:
    ids = q.dispatch_many([CliWork(seconds=30) for _ in range(2)])
    supervisor = spawn(url, "work", "--app", APP, "--processes", "2", "--grace", "60",
                       "--sleep", "0.1")
    wait_until(lambda: all(q.job(i).state == "running" for i in ids), what="both jobs to start")
    supervisor.signal(signal.SIGTERM)
    wait_until(lambda: "a second signal" in supervisor.stderr, what="the first signal")
    supervisor.signal(signal.SIGTERM)  # signals sent back to back may arrive as one
    signalled = time.monotonic()
    assert supervisor.wait(15) == 128 + signal.SIGTERM, supervisor.stderr  # not a clean stop
    assert time.monotonic() - signalled < 10 and "Traceback" not in supervisor.stderr
    # stopped at once: the jobs stay held until their leases expire, as after a crash
    assert {q.job(i).state for i in ids} <= {"leased", "running"}


# -- a small full filesystem ------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 3 MB tmpfs (needs the right to mount, as root in a container has)."""
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if done.returncode:
        pytest.skip(f"cannot mount a small tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(folder: Path, leave: int) -> Path:
    """A file that takes every free byte of ``folder``'s filesystem but ``leave``."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        with contextlib.suppress(OSError):
            while True:
                os.write(fd, b"\0" * 4096)
        os.ftruncate(fd, max(0, os.fstat(fd).st_size - leave))
    finally:
        os.close(fd)
    return filler


def test_a_worker_on_a_full_filesystem_finishes_every_job_when_space_returns(
        small_disk: Path, reaped: list[subprocess.Popen[str]]) -> None:
    db = small_disk / "evq.db"
    url = f"sqlite:///{db}"
    q = evq.connect(url)
    ids = q.dispatch_many([CliAdd(a=i, b=1) for i in range(JOBS_ON_A_SMALL_DISK)])
    q.close()
    filler = _fill(small_disk, leave=100_000)  # room to open the store, not to run the jobs
    proc = subprocess.Popen([sys.executable, "-m", "evq.cli", "--url", url, "work", "--app", APP,
                             "--sleep", "0.1", "--stop-when-empty"],
                            cwd=ROOT, text=True, stderr=subprocess.PIPE)
    reaped.append(proc)
    _line_with("will retry", proc)
    os.truncate(filler, max(0, filler.stat().st_size - 1_000_000))  # 1 MB comes back
    _, rest = proc.communicate(timeout=60)
    assert proc.returncode == 0 and "Traceback" not in rest
    check_exactly_once(db, ids)
    verify(url, db)


def test_a_write_that_finds_the_disk_full_gives_back_the_space_of_the_wal(
        small_disk: Path) -> None:
    db = small_disk / "evq.db"
    q = evq.connect(f"sqlite:///{db}")
    try:
        for i in range(100):  # one transaction each: the WAL grows (no checkpoint below 40 MB)
            q.dispatch(CliAdd(a=i, b=1))
        assert db.with_name(db.name + "-wal").stat().st_size > 500_000
        filler = _fill(small_disk, leave=200_000)
        with pytest.raises(evq.StoreFull, match="nothing was written"):
            q.dispatch_many([CliAdd(a=i, b=2) for i in range(3000)])
        os.truncate(filler, filler.stat().st_size - 300_000)  # less than 3,000 jobs need...
        q.dispatch_many([CliAdd(a=i, b=2) for i in range(3000)])  # ...but enough to checkpoint
        assert q.store.log.last_seq() == 3100
    finally:
        q.close()
