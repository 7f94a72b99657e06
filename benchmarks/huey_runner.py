"""huey's side of each scenario, run with the Python of huey's own virtual environment:

    benchmarks/.venvs/huey/bin/python benchmarks/huey_runner.py SCENARIO ARGS...

    dispatch N DIR                      -> {"single": jobs/s}
    drain N WORKERS DIR                 -> {"N worker(s)": jobs/s, ...}
    latency N GAP IDLE_WAIT CPU_WINDOW DIR -> {"p50"..., "idle CPU": %, "samples": [ms...]}
    consume DB WORKERS TARGET MODE FILE (internal: the consumer process of drain and latency)

It prints one JSON object on stdout. It imports nothing of evq: only huey, the standard library
and procstat.py beside it. huey runs with its defaults: ``SqliteHuey(filename=...)`` and
``huey.consumer.Consumer(huey)`` (one worker thread, polling from 0.1 s backing off to 10 s);
two workers are ``Consumer(huey, workers=2, worker_type="process")``.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from huey import SqliteHuey
from huey.consumer import Consumer
from huey.signals import SIGNAL_COMPLETE, SIGNAL_EXECUTING
from procstat import idle_cpu_percent, latency_figures


def noop(n: int) -> None:
    pass


def make(db: str) -> tuple[SqliteHuey, Any]:
    """huey on ``db`` (its defaults) and the no-op task, named alike in every process."""
    huey = SqliteHuey(filename=db)
    return huey, huey.task(name="noop")(noop)


def say(**fields: object) -> None:
    print(json.dumps(fields), flush=True)


def dispatch(n: int, folder: str) -> dict[str, float]:
    _, task = make(os.path.join(folder, "huey-single.db"))
    t0 = time.perf_counter()
    for i in range(n):
        task(i)
    return {"single": n / (time.perf_counter() - t0)}


class ConsumerProcess:
    """A consumer process (this script's ``consume``) and its JSON-lines conversation."""

    def __init__(self, db: str, workers: int, target: int, mode: str, stamps: str) -> None:
        self.errors = open(db + ".stderr", "w")  # noqa: SIM115 (closed in finish)
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "consume", db, str(workers), str(target), mode, stamps],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.errors, text=True)
        self.pid: int = self.read()["ready"]

    def read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            self.proc.kill()
            self.proc.wait()
            sys.exit(f"huey consumer exited: {self.last_error()}")
        return json.loads(line)

    def go(self) -> float:
        assert self.proc.stdin is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()
        return self.read()["start"]

    def finish(self, timeout: float) -> dict[str, Any]:
        try:
            out, _ = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            sys.exit(f"huey consumer still running after {timeout:.0f} s")
        finally:
            self.errors.close()
        if self.proc.returncode != 0 or not out.strip():
            sys.exit(f"huey consumer exited ({self.proc.returncode}): {self.last_error()}")
        return json.loads(out.strip().splitlines()[-1])

    def last_error(self) -> str:
        lines = Path(self.errors.name).read_text().strip().splitlines()
        return lines[-1] if lines else "no output"


def drain(n: int, workers: int, folder: str) -> dict[str, float]:
    db = os.path.join(folder, f"huey-drain{workers}.db")
    _, task = make(db)
    for i in range(n):
        task(i)
    consumer = ConsumerProcess(db, workers, n, "drain", os.devnull)
    start = consumer.go()
    done = consumer.finish(timeout=600)
    if done["count"] != n or done["pending"] != 0:
        sys.exit(f"{done['count']} of {n} tasks completed, {done['pending']} still pending")
    return {f"{workers} worker{'s' if workers > 1 else ''}": n / (done["last"] - start)}


def latency(n: int, gap: float, idle_wait: float, cpu_window: float,
            folder: str) -> dict[str, Any]:
    db = os.path.join(folder, "huey-latency.db")
    stamps = os.path.join(folder, "huey-started.txt")
    _, task = make(db)
    consumer = ConsumerProcess(db, 1, n, "latency", stamps)
    consumer.go()
    time.sleep(idle_wait)
    cpu = idle_cpu_percent(consumer.pid, cpu_window)
    enqueued = {}
    due = time.monotonic()
    for i in range(n):
        enqueued[i] = time.time()
        task(i)
        due += gap
        time.sleep(max(0.0, due - time.monotonic()))
    consumer.finish(timeout=120)
    started = {}
    with open(stamps) as f:
        for line in f:
            i, ts = line.split()
            started[int(i)] = float(ts)
    if len(started) != n:
        sys.exit(f"{len(started)} of {n} tasks started")
    samples = [(started[i] - enqueued[i]) * 1000 for i in range(n)]
    return {**latency_figures(samples, cpu), "samples": samples}


def consume(db: str, workers: int, target: int, mode: str, stamps: str) -> None:
    """Run huey's consumer until ``target`` tasks completed (drain) or started (latency).

    A signal handler counts them in shared memory (the workers may be processes) and sets the
    consumer's stop flag at the last one; ``Consumer.run`` returns then."""
    huey, _ = make(db)
    kind = "process" if workers > 1 else "thread"
    consumer = Consumer(huey, workers=workers, worker_type=kind) if workers > 1 else \
        Consumer(huey)
    count = multiprocessing.Value("l", 0)
    last = multiprocessing.Value("d", 0.0)
    fd = os.open(stamps, os.O_WRONLY | os.O_APPEND | os.O_CREAT)

    @huey.signal(SIGNAL_EXECUTING if mode == "latency" else SIGNAL_COMPLETE)
    def counted(signal: str, task: Any, *args: Any) -> None:
        now = time.time()
        if mode == "latency":
            os.write(fd, f"{task.args[0]} {now}\n".encode())
        with count.get_lock():
            count.value += 1
            last.value = max(last.value, now)
            if count.value >= target:
                consumer.stop_flag.set()

    say(ready=os.getpid())
    sys.stdin.readline()
    say(start=time.time())
    consumer.run()
    os.close(fd)
    say(count=count.value, last=last.value, pending=huey.pending_count())


def main(argv: list[str]) -> None:
    scenario, args = argv[0], argv[1:]
    if scenario == "dispatch":
        say(**dispatch(int(args[0]), args[1]))
    elif scenario == "drain":
        say(**drain(int(args[0]), int(args[1]), args[2]))
    elif scenario == "latency":
        say(**latency(int(args[0]), float(args[1]), float(args[2]), float(args[3]), args[4]))
    elif scenario == "consume":
        consume(args[0], int(args[1]), int(args[2]), args[3], args[4])
    elif scenario == "version":
        import sqlite3

        import huey
        say(huey=huey.__version__, sqlite=sqlite3.sqlite_version, python=sys.version.split()[0])
    else:
        sys.exit(f"unknown scenario {scenario!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
