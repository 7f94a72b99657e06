"""The shared half of every peer's runner (``huey_runner.py``, ``rq_runner.py``, ...).

A runner is run with the Python of its peer's own virtual environment, as a script:

    benchmarks/.venvs/NAME/bin/python benchmarks/NAME_runner.py COMMAND ARGS...

    dispatch N DIR                         -> {"single": jobs/s}
    bulk N DIR                             -> {"bulk": jobs/s}  (peers with a bulk API)
    drain N WORKERS LIMIT DIR              -> {"N worker(s)": jobs/s[, "partial": [done, N,
                                               LIMIT]]}
    latency N GAP IDLE_WAIT CPU_WINDOW DIR -> {"p50"..., "idle CPU": %, "samples": [ms...]}
    version                                -> {"NAME": version, "python": ..., ...}
    consume WORKERS DIR  (internal: one worker process of drain and latency)

It prints one JSON object on stdout (or exits non-zero with the reason as the last line of
stderr). This module and ``procstat.py`` use the standard library only and import nothing of
evq; a runner defines a :class:`Peer` subclass (how to empty the queue, enqueue one job, enqueue
many, run a worker) and calls :func:`main` with it. Everything else (timing, worker processes,
start and completion detection, checks) is here, the same for every peer.

Start and completion: each worker process prints ``time.time()`` just before it starts its
worker; the start of a drain is the earliest. A job's start and completion are taken from a hook
of the peer's public API (a signal, a middleware, a worker hook) that calls :func:`stamp`, which
appends ``N TS`` to a file per kind in the run's folder (``O_APPEND``: safe from any process the
worker forks); or, where the peer records them itself (rq, procrastinate, dbos), from its own
records, by overriding :meth:`Peer.progress` and :meth:`Peer.times`. When every job has completed
(drain) or started (latency), the worker processes are stopped (SIGTERM to their process group).
A run counts only if every job completed exactly once.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

from procstat import idle_cpu_percent, latency_figures

T = TypeVar("T")
WARM_UP = -1  # the argument of the job that the latency scenario sends first, not measured
STAMPS = "BENCH_STAMPS"  # environment variable: the folder the hooks write their stamps into
REDIS_URL = "redis://127.0.0.1:6379/13"  # a database of its own, emptied before every run
POSTGRES = "postgresql://postgres@127.0.0.1:5432/"


class Peer:
    """One peer's side. Subclasses set ``name`` and define the methods that raise here."""

    name = ""
    distribution = ""  # the PyPI distribution whose version is reported (default: name)
    bulk = False  # has a bulk enqueue API (enqueue_many)
    own_processes = False  # work(workers) forks its own worker processes (else one per process)

    def __init__(self, folder: str) -> None:
        self.folder = folder

    # -- what a peer defines -------------------------------------------------------------------

    def reset(self) -> None:
        """Make an empty queue (called once per repetition, before anything else)."""

    def enqueue(self, n: int) -> None:
        raise NotImplementedError

    def enqueue_many(self, ns: list[int]) -> None:
        raise NotImplementedError

    def work(self, workers: int) -> None:
        """Run a worker in this process (``workers`` of them if ``own_processes``) until
        stopped by SIGTERM."""
        raise NotImplementedError

    def close(self) -> None:
        """Release connections (after the measurement)."""

    # -- timed loops (async peers time them inside one coroutine) ------------------------------

    def time_single(self, ns: list[int]) -> float:
        t0 = time.perf_counter()
        for n in ns:
            self.enqueue(n)
        return time.perf_counter() - t0

    def time_bulk(self, ns: list[int]) -> float:
        t0 = time.perf_counter()
        self.enqueue_many(ns)
        return time.perf_counter() - t0

    # -- start and completion, by default from the stamps the hooks write ----------------------

    def progress(self, kind: str) -> int:
        """How many jobs have ``kind`` ("start" or "end") so far."""
        try:
            with open(os.path.join(self.folder, f"{kind}.txt"), "rb") as f:
                return f.read().count(b"\n")
        except FileNotFoundError:
            return 0

    def times(self, kind: str) -> list[tuple[int, float]]:
        """Every (job argument, time) of ``kind``, duplicates included."""
        try:
            with open(os.path.join(self.folder, f"{kind}.txt")) as f:
                return [(int(n), float(ts)) for n, ts in (line.split() for line in f)]
        except FileNotFoundError:
            return []


class AsyncPeer(Peer):
    """A peer whose client is async: ``aenqueue``/``aenqueue_many``/``areset`` are awaited on
    one event loop; the timed loops run inside one coroutine."""

    def __init__(self, folder: str) -> None:
        super().__init__(folder)
        self.loop = asyncio.new_event_loop()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)

    async def aenqueue(self, n: int) -> None:
        raise NotImplementedError

    async def aenqueue_many(self, ns: list[int]) -> None:
        raise NotImplementedError

    async def areset(self) -> None:
        pass

    async def aclose(self) -> None:
        pass

    def reset(self) -> None:
        self.run(self.areset())

    def enqueue(self, n: int) -> None:
        self.run(self.aenqueue(n))

    def enqueue_many(self, ns: list[int]) -> None:
        self.run(self.aenqueue_many(ns))

    def close(self) -> None:
        self.run(self.aclose())
        self.loop.close()

    def time_single(self, ns: list[int]) -> float:
        async def timed() -> float:
            t0 = time.perf_counter()
            for n in ns:
                await self.aenqueue(n)
            return time.perf_counter() - t0

        return self.run(timed())

    def time_bulk(self, ns: list[int]) -> float:
        return self.run(_timed(self.aenqueue_many(ns)))


async def _timed(work: Awaitable[Any]) -> float:
    t0 = time.perf_counter()
    await work
    return time.perf_counter() - t0


_stamp_files: dict[tuple[int, str], int] = {}


def stamp(kind: str, n: Any) -> None:
    """Record that job ``n`` reached ``kind`` ("start" or "end") now; called by the hooks, in
    whichever worker process runs the job."""
    now = time.time()
    key = (os.getpid(), kind)
    fd = _stamp_files.get(key)
    if fd is None:
        path = os.path.join(os.environ[STAMPS], f"{kind}.txt")
        fd = _stamp_files[key] = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    os.write(fd, f"{int(n)} {now!r}\n".encode())


def fresh_database(name: str) -> str:
    """Drop and create database ``name`` on the local PostgreSQL (with ``psql``, so that no
    driver is needed); returns its URL."""
    for sql in (f"DROP DATABASE IF EXISTS {name} WITH (FORCE)", f"CREATE DATABASE {name}"):
        done = subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", POSTGRES + "test",
                               "-c", sql], capture_output=True, text=True)
        if done.returncode != 0:
            fail(f"psql: {sql}: {done.stderr.strip()}")
    return POSTGRES + name


def say(**fields: object) -> None:
    print(json.dumps(fields), flush=True)


def fail(reason: str) -> None:
    sys.exit(reason)


class WorkerProcess:
    """One worker process (the runner's ``consume``), in a process group of its own so that
    whatever it forks is stopped with it; its stderr goes to a file."""

    def __init__(self, script: str, workers: int, folder: str, index: int) -> None:
        self.errors = os.path.join(folder, f"worker{index}.stderr")
        env = {**os.environ, STAMPS: folder}
        with open(self.errors, "w") as err:
            self.proc = subprocess.Popen(
                [sys.executable, script, "consume", str(workers), folder], env=env,
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, text=True,
                start_new_session=True)
        self.pid: int = self.read()["ready"]

    def read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            self.stop()
            fail(f"worker process exited ({self.proc.returncode}): {self.last_error()}")
        return json.loads(line)

    def go(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 10.0)):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.proc.wait(wait)
                break
            except subprocess.TimeoutExpired:
                continue
        self.proc.wait()

    def last_error(self) -> str:
        lines = Path(self.errors).read_text().strip().splitlines()
        return lines[-1] if lines else "no output"


def start_workers(script: str, peer: Peer, workers: int) -> list[WorkerProcess]:
    if peer.own_processes:
        return [WorkerProcess(script, workers, peer.folder, 0)]
    return [WorkerProcess(script, 1, peer.folder, i) for i in range(workers)]


def wait_for(peer: Peer, kind: str, n: int, procs: list[WorkerProcess], timeout: float) -> bool:
    """Wait until ``n`` jobs reached ``kind``; False if ``timeout`` seconds passed first."""
    deadline = time.monotonic() + timeout
    while peer.progress(kind) < n:
        if time.monotonic() > deadline:
            return False
        dead = [p for p in procs if not p.alive()]
        if dead:
            fail(f"worker process exited ({dead[0].proc.returncode}): {dead[0].last_error()}")
        time.sleep(0.05)
    return True


def once_each(peer: Peer, kind: str, n: int, partial: bool = False) -> dict[int, float]:
    """{job argument: time} of ``kind``; fails unless every one of the n jobs (with
    ``partial``: of those that got that far) has exactly one."""
    got = [(i, ts) for i, ts in peer.times(kind) if i != WARM_UP]
    seen = dict(got)
    if not set(seen) <= set(range(n)) or (not partial and len(seen) != n) or not seen:
        fail(f"{len(seen)} of {n} jobs reached {kind}")
    if len(got) != len(seen):
        fail(f"{len(got)} {kind} records for {len(seen)} jobs (some ran twice)")
    return seen


def dispatch(peer: Peer, n: int) -> dict[str, float]:
    return {"single": n / peer.time_single(list(range(n)))}


def bulk(peer: Peer, n: int) -> dict[str, float]:
    return {"bulk": n / peer.time_bulk(list(range(n)))}


def drain(peer: Peer, script: str, n: int, workers: int, limit: float) -> dict[str, Any]:
    """Jobs/s from the workers' start to the last completion; if not all ``n`` are done after
    ``limit`` seconds, the rate of those done (and ``partial``: how many, in what time)."""
    if peer.bulk:
        for start in range(0, n, 1000):
            peer.enqueue_many(list(range(start, min(n, start + 1000))))
    else:
        for i in range(n):
            peer.enqueue(i)
    procs = start_workers(script, peer, workers)
    try:
        for p in procs:
            p.go()
        start = min(p.read()["start"] for p in procs)
        complete = wait_for(peer, "end", n, procs, timeout=limit)
    finally:
        for p in procs:
            p.stop()
    done = once_each(peer, "end", n, partial=not complete)
    last = max(done.values())
    label = f"{workers} worker{'s' if workers > 1 else ''}"
    if complete:
        return {label: n / (last - start)}
    return {label: len(done) / (last - start), "partial": [len(done), n, limit]}


def latency(peer: Peer, script: str, n: int, gap: float, idle_wait: float,
            cpu_window: float) -> dict[str, Any]:
    procs = start_workers(script, peer, 1)
    try:
        procs[0].go()
        procs[0].read()
        peer.enqueue(WARM_UP)  # so that the worker has finished starting when it is measured
        if not wait_for(peer, "start", 1, procs, timeout=120):
            fail("the worker did not start a first job within 120 s")
        time.sleep(idle_wait)
        cpu = idle_cpu_percent(procs[0].pid, cpu_window)
        enqueued = {}
        due = time.monotonic()
        for i in range(n):
            enqueued[i] = time.time()
            peer.enqueue(i)
            due += gap
            time.sleep(max(0.0, due - time.monotonic()))
        if not wait_for(peer, "start", n + 1, procs, timeout=120):
            fail(f"{peer.progress('start') - 1} of {n} jobs started within 120 s")
    finally:
        procs[0].stop()
    started = once_each(peer, "start", n)
    samples = [(started[i] - enqueued[i]) * 1000 for i in range(n)]
    return {**latency_figures(samples, cpu), "samples": samples}


def consume(peer: Peer, workers: int) -> None:
    say(ready=os.getpid())
    sys.stdin.readline()
    say(start=time.time())
    os.dup2(2, 1)  # whatever the peer logs on stdout goes to the stderr file: nobody reads stdout
    peer.work(workers)


def versions(peer: Peer) -> dict[str, Any]:
    import sqlite3
    from importlib import metadata

    dist = peer.distribution or peer.name
    return {peer.name: metadata.version(dist), "python": sys.version.split()[0],
            "sqlite": sqlite3.sqlite_version}


def main(make: Callable[[str], Peer], argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    script = os.path.abspath(sys.argv[0])
    command, args = argv[0], argv[1:]
    if command == "version":
        say(**versions(make(".")))
        return
    peer = make(args[-1])
    if command == "consume":
        consume(peer, int(args[0]))
        return
    for kind in ("start", "end"):  # stamps of an earlier run in the same folder
        Path(peer.folder, f"{kind}.txt").unlink(missing_ok=True)
    peer.reset()
    try:
        if command == "dispatch":
            result: dict[str, Any] = dispatch(peer, int(args[0]))
        elif command == "bulk":
            result = bulk(peer, int(args[0]))
        elif command == "drain":
            result = drain(peer, script, int(args[0]), int(args[1]), float(args[2]))
        elif command == "latency":
            result = latency(peer, script, int(args[0]), float(args[1]), float(args[2]),
                             float(args[3]))
        else:
            fail(f"unknown command {command!r}")
    finally:
        peer.close()
    say(**result)
