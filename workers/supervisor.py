"""The supervisor of ``evq work --processes N``: starts N worker processes and keeps them running.

Each worker process is a command of its own (``evq work`` with the same options), so it has its
own store connection, threads and leases. The supervisor restarts a process that dies (after a
pause that grows while processes keep dying young), recycles one whose memory (RSS) passes
``max_memory_mb`` (it is asked to stop gracefully, then replaced), and replaces one that exits
with :data:`EXIT_RECYCLE` (its ``--max-jobs`` quota is used). A process that exits 0 is done
(``--stop-when-empty``) and is not replaced. The first SIGTERM/SIGINT is passed on to every
process (each stops gracefully); a second one is passed on too (each stops at once).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

log = logging.getLogger("evq.supervisor")

EXIT_RECYCLE = 75  # a worker process asks to be replaced (EX_TEMPFAIL)
YOUNG = 5.0  # a process that dies sooner than this after its start makes the next start wait
MAX_PAUSE = 10.0
CHECK_EVERY = 0.5  # seconds between memory checks


def rss_mb(pid: int) -> float | None:
    """The resident memory of process ``pid`` in MB (None if it cannot be read)."""
    try:
        pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


class _Child:
    __slots__ = ("proc", "recycling", "slot", "started")

    def __init__(self, slot: int, proc: subprocess.Popen[bytes]) -> None:
        self.slot = slot
        self.proc = proc
        self.started = time.monotonic()
        self.recycling = False


class Supervisor:
    """Runs ``processes`` copies of ``command`` until they are done or it is stopped."""

    def __init__(self, command: Sequence[str], processes: int, *,
                 max_memory_mb: float | None = None, env: dict[str, str] | None = None) -> None:
        self.command = list(command)
        self.processes = processes
        self.max_memory_mb = max_memory_mb
        self.env = env
        self.restarts = 0
        self.failed = 0  # processes that ended with an error (or a signal) and were replaced
        self._wake = threading.Event()
        self.stopping = 0  # how many times stop() was called
        self._children: dict[int, _Child] = {}  # slot -> running process
        self._pause = 0.0

    def stop(self) -> None:
        """Stop every process gracefully; a second call stops them at once."""
        self.stopping += 1
        for child in list(self._children.values()):
            _terminate(child.proc)
        self._wake.set()

    def run(self) -> int:
        """Start the processes and watch them; returns 0 once all have ended cleanly."""
        previous = signal.signal(signal.SIGCHLD, lambda *_: self._wake.set())
        clean = True
        try:
            for slot in range(self.processes):
                self._start(slot)
            while self._children:
                self._wake.wait(CHECK_EVERY)
                self._wake.clear()
                clean = self._reap() and clean
                if not self.stopping:
                    self._check_memory()
        finally:
            signal.signal(signal.SIGCHLD, previous)
        return 0 if clean else 1

    def _start(self, slot: int) -> None:
        proc = subprocess.Popen(self.command, env=self.env,
                                preexec_fn=_die_with_parent if sys.platform == "linux" else None)
        self._children[slot] = _Child(slot, proc)
        if self.stopping:  # a stop came while it started
            _terminate(proc)
        log.info("worker process %d started (pid %d)", slot, proc.pid)

    def _reap(self) -> bool:
        """Handle every process that ended; False if one ended badly while stopping."""
        clean = True
        for slot, child in list(self._children.items()):
            code = child.proc.poll()
            if code is None:
                continue
            del self._children[slot]
            if self.stopping:
                clean = clean and code in (0, EXIT_RECYCLE, -signal.SIGTERM)
                continue
            if code == 0 and not child.recycling:
                continue  # done: nothing left to do for it
            if code not in (0, EXIT_RECYCLE):
                self.failed += 1
                log.warning("worker process %d (pid %d) died (%s); restarting it", slot,
                            child.proc.pid, _describe(code))
            self._restart_pause(child, code)
            if not self.stopping:
                self.restarts += 1
                self._start(slot)
        return clean

    def _restart_pause(self, child: _Child, code: int) -> None:
        """Wait before a restart while processes keep dying (or blowing the memory limit)
        young: a crash loop, or a limit below what a fresh worker needs."""
        planned = code == EXIT_RECYCLE or (code == 0 and not child.recycling)
        if planned or time.monotonic() - child.started >= YOUNG:
            self._pause = 0.0
            return
        self._pause = min(MAX_PAUSE, max(0.1, self._pause * 2))
        self._wake.wait(self._pause)  # a signal cuts it short

    def _check_memory(self) -> None:
        if self.max_memory_mb is None:
            return
        for child in self._children.values():
            used = rss_mb(child.proc.pid)
            if not child.recycling and used is not None and used > self.max_memory_mb:
                log.warning("worker process %d (pid %d) uses %.0f MB (limit %g MB): recycling",
                            child.slot, child.proc.pid, used, self.max_memory_mb)
                child.recycling = True
                _terminate(child.proc)


def _die_with_parent() -> None:
    """In a new worker process (Linux): get SIGTERM when the supervisor dies, even by kill -9,
    so that no worker outlives it unsupervised."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _terminate(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)


def _describe(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"
