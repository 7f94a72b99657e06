"""CPU time of a process (from /proc) and percentiles; standard library only, so that the peers'
runners can import it inside their own virtual environments."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence


def _stat(pid: int) -> list[str]:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()  # after "pid (comm)": state is field 3


def cpu_seconds(pid: int) -> float:
    """CPU time (user plus system, all threads) so far of process ``pid`` and of every process
    it started that is still running, with that of their children already waited for."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                parents[int(entry)] = int(_stat(int(entry))[1])  # field 4: the parent's pid
            except (OSError, IndexError, ValueError):
                continue
    tree, todo = [], [pid]
    while todo:
        p = todo.pop()
        tree.append(p)
        todo += [child for child, parent in parents.items() if parent == p]
    ticks = 0
    for p in tree:
        try:
            fields = _stat(p)
        except OSError:
            continue
        ticks += sum(int(x) for x in fields[11:15])  # fields 14-17: utime stime cutime cstime
    return ticks / os.sysconf("SC_CLK_TCK")


def idle_cpu_percent(pid: int, seconds: float) -> float:
    """Percent of one core that process ``pid`` and its children used over ``seconds``."""
    before, t0 = cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)
    after, t1 = cpu_seconds(pid), time.monotonic()
    return 100.0 * (after - before) / (t1 - t0)


def percentile(values: Sequence[float], p: float) -> float:
    """The ``p``-th percentile (nearest rank) of ``values``."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("no values")
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def latency_figures(samples_ms: Sequence[float], cpu_percent: float) -> dict[str, float]:
    """The figures of one latency repetition."""
    return {"p50": percentile(samples_ms, 50), "p95": percentile(samples_ms, 95),
            "p99": percentile(samples_ms, 99), "idle CPU": cpu_percent}
