"""Peers in their own virtual environments (never dependencies of evq): made on first use under
``benchmarks/.venvs/NAME`` with ``python -m venv`` and pip, then run as subprocesses that print
their figures as JSON."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
VENVS = Path(os.environ.get("EVQ_BENCH_VENVS") or HERE / ".venvs")


class PeerError(Exception):
    """The peer could not be set up or run; the message is the table's reason."""


_ready: dict[str, Path | PeerError] = {}


def python(name: str, requirements: tuple[str, ...], module: str, log: Any = None,
           minimum: tuple[int, int] | None = None) -> Path:
    """The Python of venv ``name``, made (with a Python of at least ``minimum``, see
    :func:`interpreter`) and ``requirements`` installed on first use, such that ``import module``
    works. Raises PeerError (the same one for the rest of the run) if not."""
    if name not in _ready:
        try:
            _ready[name] = _make(VENVS / name, requirements, module, log, minimum)
        except PeerError as exc:
            _ready[name] = exc
    got = _ready[name]
    if isinstance(got, PeerError):
        raise got
    return got


def interpreter(minimum: tuple[int, int] | None) -> str:
    """The Python a venv is made with: this one, unless it is older than ``minimum``; then the
    first of ``python3.X`` on the PATH and pyenv's versions that runs and is new enough."""
    if minimum is None or sys.version_info[:2] >= minimum:
        return sys.executable
    for exe in _candidates(minimum):
        if _version(exe) >= minimum:
            return exe
    wanted = f"{minimum[0]}.{minimum[1]}"
    raise PeerError(f"needs Python >= {wanted}: none found (no python{wanted} or newer on the "
                    "PATH or among pyenv's versions)")


def _candidates(minimum: tuple[int, int]) -> list[str]:
    """Pythons that may be at least ``minimum``: on the PATH (which may be pyenv shims that do
    not run), then pyenv's installed versions, oldest first."""
    found = [exe for minor in range(minimum[1], minimum[1] + 10)
             if (exe := shutil.which(f"python{minimum[0]}.{minor}"))]
    root = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    versions = sorted(Path(root, "versions").glob(f"{minimum[0]}.*/bin/python"),
                      key=lambda exe: _numbers(exe.parent.parent.name))
    return found + [str(exe) for exe in versions]


def _numbers(version: str) -> tuple[int, ...]:
    return tuple(int(part) if part.isdigit() else 0 for part in version.split("."))


def _version(exe: str) -> tuple[int, int]:
    """(major, minor) of the Python ``exe``, (0, 0) if it does not run."""
    try:
        done = subprocess.run([exe, "-c", "import sys; print(*sys.version_info[:2])"],
                              capture_output=True, text=True, timeout=30)
        major, minor = map(int, done.stdout.split())
        return major, minor
    except (OSError, subprocess.SubprocessError, ValueError):
        return 0, 0


def _make(venv: Path, requirements: tuple[str, ...], module: str, log: Any,
          minimum: tuple[int, int] | None) -> Path:
    exe = venv / "bin" / "python"
    if exe.exists() and _imports(exe, module):
        return exe
    base = interpreter(minimum)
    wanted = " ".join(requirements)
    if log:
        log(f"making {venv} with {base} and installing {wanted} (first use)")
    _run([base, "-m", "venv", "--clear", str(venv)], "python -m venv", 300)
    _run([str(exe), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
          *requirements], f"pip install {wanted}", 900)
    if not _imports(exe, module):
        raise PeerError(f"{module} does not import in {venv}")
    return exe


def _imports(exe: Path, module: str) -> bool:
    try:
        return subprocess.run([str(exe), "-c", f"import {module}"], capture_output=True,
                              timeout=60).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def _run(args: list[str], what: str, timeout: float) -> None:
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise PeerError(f"{what}: timed out after {timeout:.0f} s") from None
    except OSError as exc:
        raise PeerError(f"{what}: {exc}") from None
    if done.returncode != 0:
        raise PeerError(f"{what}: {_last_line(done.stderr or done.stdout)}")


def run(exe: Path, script: str, args: list[object], timeout: float) -> dict[str, Any]:
    """Run ``script`` (beside this file) with ``exe``; its last stdout line as JSON."""
    what = f"{Path(script).stem} {args[0]}"
    try:
        done = subprocess.run([str(exe), str(HERE / script), *map(str, args)],
                              capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise PeerError(f"{what}: timed out after {timeout:.0f} s") from None
    except OSError as exc:
        raise PeerError(f"{what}: {exc}") from None
    if done.returncode != 0 or not done.stdout.strip():
        raise PeerError(_last_line(done.stderr) or f"{what}: exit code {done.returncode}")
    try:
        return json.loads(done.stdout.strip().splitlines()[-1])
    except json.JSONDecodeError:
        raise PeerError(f"{what}: not JSON: {_last_line(done.stdout)}") from None


def _last_line(text: str) -> str:
    lines = [line for line in (text or "").strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""
