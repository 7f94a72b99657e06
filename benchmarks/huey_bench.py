"""huey's side of each scenario: huey_runner.py run inside huey's own virtual environment."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import peers

RUNNER = "huey_runner.py"
log: Callable[[str], None] | None = None  # where to report the venv's making (set by the CLI)


def exe() -> Path:
    return peers.python("huey", "huey", "huey", log)


def dispatch_single(n: int, tmp: Path) -> dict[str, float]:
    return peers.run(exe(), RUNNER, ["dispatch", n, tmp], timeout=600)


def drain(n: int, workers: int, tmp: Path) -> dict[str, float]:
    return peers.run(exe(), RUNNER, ["drain", n, workers, tmp], timeout=1200)


def latency(n: int, gap: float, idle_wait: float, cpu_window: float,
            tmp: Path) -> tuple[dict[str, float], list[float]]:
    got = peers.run(exe(), RUNNER, ["latency", n, gap, idle_wait, cpu_window, tmp], timeout=600)
    samples = got.pop("samples")
    return got, samples


def versions() -> dict[str, Any]:
    """huey's version and the Python and SQLite of its venv, or why there are none."""
    try:
        return peers.run(exe(), RUNNER, ["version"], timeout=60)
    except peers.PeerError as exc:
        return {"huey": f"failed: {exc}"}
