"""CPU time of a process (from /proc) and percentiles; standard library only, so that the huey
runner can import it inside its own virtual environment."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of process ``pid`` (all its threads) so far, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()  # after "pid (comm)": state is field 3
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # fields 14, 15


def idle_cpu_percent(pid: int, seconds: float) -> float:
    """Percent of one core that process ``pid`` used over the next ``seconds``."""
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
