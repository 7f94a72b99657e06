"""evq's side of each scenario, on SQLite (system ``evq``) and on PostgreSQL (``evq-pg``);
every function is one repetition and returns its figures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import evq

from .jobs import Noop
from .procstat import idle_cpu_percent, latency_figures

ROOT = Path(__file__).resolve().parent.parent  # the directory that holds benchmarks/
POSTGRES_URL = os.environ.get("EVQ_BENCH_POSTGRES_URL",
                              "postgresql://postgres@127.0.0.1:5432/test")

Store = Callable[[Path, str], str]  # (the repetition's folder, a name) -> a fresh store's URL


class BenchError(Exception):
    """A repetition that could not be measured; its message goes in the table."""


def sqlite_store(tmp: Path, name: str) -> str:
    return f"sqlite:///{tmp / name}.db"


def postgres_store(tmp: Path, name: str) -> str:
    """A new empty schema on the benchmark's server (dropped first if an earlier run left it)."""
    import psycopg

    schema = f"evq_bench_{name}"
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    return f"{POSTGRES_URL}{'&' if '?' in POSTGRES_URL else '?'}schema={schema}"


def dispatch_single(n: int, tmp: Path, store: Store = sqlite_store) -> dict[str, float]:
    q = evq.connect(store(tmp, "single"))
    try:
        t0 = time.perf_counter()
        for i in range(n):
            q.dispatch(Noop(n=i))
        return {"single": n / (time.perf_counter() - t0)}
    finally:
        q.close()


def dispatch_bulk(n: int, tmp: Path, store: Store = sqlite_store) -> dict[str, float]:
    q = evq.connect(store(tmp, "bulk"))
    try:
        t0 = time.perf_counter()
        ids = q.dispatch_many([Noop(n=i) for i in range(n)])
        elapsed = time.perf_counter() - t0
    finally:
        q.close()
    if len(ids) != n:
        raise BenchError(f"dispatch_many returned {len(ids)} ids for {n} jobs")
    return {"bulk": n / elapsed}


class Runner:
    """A worker process (benchmarks.evq_runner) and its JSON-lines conversation; its stderr goes
    to a file (a pipe nobody reads could fill up and block it)."""

    def __init__(self, url: str, tmp: Path, idle: bool = False) -> None:
        args = [sys.executable, "-m", "benchmarks.evq_runner", url, *(["--idle"] if idle
                                                                      else [])]
        self.errors = tmp / f"worker.{id(self):x}.stderr"
        with open(self.errors, "w") as err:
            self.proc = subprocess.Popen(args, cwd=ROOT, stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, stderr=err, text=True)
        self.pid: int = self.read("ready")

    def read(self, key: str) -> Any:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait(10)
            raise BenchError(f"worker exited ({self.proc.returncode}): {self.last_error()}")
        return json.loads(line)[key]

    def go(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()

    def started(self) -> float:
        return self.read("start")

    def finish(self, timeout: float) -> dict[str, Any]:
        """Close stdin (an idle worker stops then) and wait for the final line."""
        try:
            out, _ = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise BenchError(f"worker still running after {timeout:.0f} s") from None
        if self.proc.returncode != 0 or not out.strip():
            raise BenchError(f"worker exited ({self.proc.returncode}): {self.last_error()}")
        return json.loads(out.strip().splitlines()[-1])

    def last_error(self) -> str:
        lines = self.errors.read_text().strip().splitlines()
        return lines[-1] if lines else "no output"

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def drain(n: int, workers: int, tmp: Path, store: Store = sqlite_store) -> dict[str, float]:
    url = store(tmp, f"drain{workers}")
    q = evq.connect(url)
    q.dispatch_many([Noop(n=i) for i in range(n)])
    runners: list[Runner] = []
    try:
        runners = [Runner(url, tmp) for _ in range(workers)]
        for r in runners:
            r.go()
        start = min(r.started() for r in runners)
        for r in runners:
            r.finish(timeout=600)
        [(count, distinct, last)] = q.store.log.read_rows(
            "SELECT count(*), count(DISTINCT job_id), max(ts) FROM events "
            "WHERE type = 'JobSucceeded'")
    finally:
        for r in runners:
            r.kill()
        q.close()
    if distinct != n:
        raise BenchError(f"{distinct} of {n} jobs have a JobSucceeded event")
    if count != n:
        raise BenchError(f"{count} JobSucceeded events for {n} jobs (some ran twice)")
    return {f"{workers} worker{'s' if workers > 1 else ''}": n / (last - start)}


def latency(n: int, gap: float, idle_wait: float, cpu_window: float, tmp: Path,
            store: Store = sqlite_store) -> tuple[dict[str, float], list[float]]:
    url = store(tmp, "latency")
    q = evq.connect(url)
    runner = Runner(url, tmp, idle=True)
    try:
        runner.go()
        runner.started()
        time.sleep(idle_wait)
        cpu = idle_cpu_percent(runner.pid, cpu_window)
        due = time.monotonic()
        for i in range(n):
            q.dispatch(Noop(n=i))
            due += gap
            time.sleep(max(0.0, due - time.monotonic()))
        deadline = time.monotonic() + 60
        while q.store.log.read_rows(
                "SELECT count(*) FROM events WHERE type = 'JobStarted'")[0][0] < n:
            if time.monotonic() > deadline:
                raise BenchError("not every job started within 60 s")
            time.sleep(0.05)
        runner.finish(timeout=60)
        rows = q.store.log.read_rows("SELECT job_id, type, ts FROM events WHERE type IN "
                                     "('JobDispatched', 'JobStarted') ORDER BY seq")
    finally:
        runner.kill()
        q.close()
    dispatched = {job: ts for job, kind, ts in rows if kind == "JobDispatched"}
    started = {job: ts for job, kind, ts in rows if kind == "JobStarted"}
    samples = [(started[j] - dispatched[j]) * 1000 for j in dispatched]
    return latency_figures(samples, cpu), samples
