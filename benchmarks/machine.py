"""A description of the machine and the software measured."""

from __future__ import annotations

import os
import platform
import sqlite3
import sys
from importlib import metadata
from typing import Any


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gib() -> float | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def describe(peer_versions: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Cores, memory, OS, Python, SQLite and library versions (``peer_versions``: each peer's
    runner's answer, or why there is none)."""
    libraries = {name: _version(name) for name in ("evq", "msgspec", "watchfiles", "rich",
                                                   "matplotlib")}
    for name, got in peer_versions.items():
        libraries[name] = got.get(name)
    return {
        "cores": os.cpu_count(), "cpu": _cpu_model(), "memory_gib": _memory_gib(),
        "os": platform.platform(), "python": sys.version.split()[0],
        "sqlite": sqlite3.sqlite_version,
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "libraries": {k: v for k, v in libraries.items() if v is not None},
        "peer_venvs": {name: {k: v for k, v in got.items() if k != name}
                       for name, got in peer_versions.items()},
    }


def summary(machine: dict[str, Any]) -> str:
    libs = ", ".join(f"{k} {v}" for k, v in machine["libraries"].items())
    load = " ".join(f"{x:.2f}" for x in machine["load_average_at_start"])
    end = machine.get("load_average_at_end")
    if end:
        load += " (at end " + " ".join(f"{x:.2f}" for x in end) + ")"
    return (f"{machine['cores']} cores ({machine['cpu']}), {machine['memory_gib']} GiB, "
            f"{machine['os']}; Python {machine['python']}, SQLite {machine['sqlite']}; {libs}; "
            f"load average at start {load}")


def finish(machine: dict[str, Any]) -> None:
    machine["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
