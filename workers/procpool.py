"""The process pool (``--pool process``): each attempt runs in a child process.

A child runs one job at a time through :func:`execute.run`, so a job's outcome is decided by
the same code as on the thread pool; the child sends back the events and runs the job's hook.
The worker's runner thread that handed the job over waits for the answer until the job's
timeout: past it, the child is killed (SIGKILL) and the attempt is recorded as timed out. A
child that dies while it runs a job (``os._exit``, a signal, the OOM killer) fails the attempt
with ``WorkerCrashed``. Either way a fresh child takes the next job, and retries apply as usual.
Children are started with ``spawn`` (no copy of the worker's threads and locks) and import the
modules of the registered job types; a child dies with its worker process (Linux).
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import multiprocessing
import signal
import sys
import threading
from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess

import msgspec

from evq.eventlog.events import AnyEvent
from evq.projections.model import JobRow

from . import registry
from .execute import AsyncRunner, Outcome, failure, load_or_none, run, timed_out

_encode = msgspec.msgpack.Encoder().encode
_decode_task = msgspec.msgpack.Decoder(tuple[JobRow, float]).decode
_decode_events = msgspec.msgpack.Decoder(list[AnyEvent]).decode


READY = b"ready"  # a new child's first message: its imports are done
START_TIMEOUT = 60.0


class WorkerCrashed(Exception):
    """The process that ran the job died before it reported an outcome."""


def _child(conn: Connection, modules: list[str]) -> None:
    """A child's life: import the job modules, then run each job it is sent until EOF."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the worker, which decides
    if sys.platform == "linux":
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: die with the worker
    for name in modules:
        with contextlib.suppress(Exception):  # its jobs then fail as unknown, clearly
            importlib.import_module(name)
    conn.send_bytes(READY)
    runner: AsyncRunner | None = None

    def async_runner() -> AsyncRunner:
        nonlocal runner
        runner = runner or AsyncRunner()
        return runner

    while True:
        try:
            row, started = _decode_task(conn.recv_bytes())
        except (EOFError, OSError):
            return
        outcome = run(row, started, async_runner, lambda: None)
        conn.send_bytes(_encode(outcome.events))
        if outcome.hook is not None:
            outcome.hook()


class _Process:
    """One child process and the parent's end of its pipe."""

    def __init__(self) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.conn, child_end = ctx.Pipe()
        self.proc: BaseProcess = ctx.Process(target=_child, args=(child_end, registry.modules()),
                                             name="evq-job", daemon=True)
        self.proc.start()
        child_end.close()
        # wait for it to be ready, so that no job's timeout runs while it starts
        if not self.conn.poll(START_TIMEOUT) or self.conn.recv_bytes() != READY:
            self.kill()
            raise OSError(f"the process did not start within {START_TIMEOUT:g}s")

    def kill(self) -> None:
        self.proc.kill()
        self.proc.join(5)
        self.conn.close()

    def describe_end(self) -> str:
        self.proc.join(5)
        code = self.proc.exitcode
        if code is not None and code < 0:
            try:
                return f"killed by {signal.Signals(-code).name}"
            except ValueError:
                return f"killed by signal {-code}"
        return f"exited with code {code}"


class ProcessPool:
    """Child processes for a worker's runner threads: each call of :meth:`run` uses an idle
    child (or starts one), so there are at most as many as runner threads."""

    def __init__(self) -> None:
        self._idle: list[_Process] = []
        self._all: set[_Process] = set()
        self._lock = threading.Lock()
        self._closed = False

    def run(self, row: JobRow, started: float, on_own_deadline: Callable[[], None]) -> Outcome:
        """Run one attempt of ``row`` in a child and return its outcome; the timeout is
        enforced here (``on_own_deadline`` tells the caller so)."""
        on_own_deadline()
        try:
            child = self._checkout()
        except Exception as exc:  # cannot start a process (limits, memory): fail the attempt
            return failure(row, started, WorkerCrashed(
                f"cannot start a process for {row.name} job {row.id}: {exc}"))
        try:
            child.conn.send_bytes(_encode((row, started)))
            if not child.conn.poll(row.timeout):
                self._discard(child)
                return timed_out(row, load_or_none(row))
            events = _decode_events(child.conn.recv_bytes())
        except (EOFError, OSError):
            how = ("was killed: its worker stopped" if self._closed
                   else f"died ({child.describe_end()})")
        except msgspec.DecodeError as exc:
            how = f"sent an outcome that does not decode ({exc})"
        else:
            self._checkin(child)
            return Outcome(list(events))
        self._discard(child)
        return failure(row, started, WorkerCrashed(
            f"the process running {row.name} job {row.id} {how} before it reported an "
            "outcome"), job=load_or_none(row))

    def close(self) -> None:
        """Kill every child: a job running in one fails (``WorkerCrashed``) if its runner
        thread can still report it, or is lost, as after a crash."""
        with self._lock:
            self._closed = True
            children, self._all, self._idle = list(self._all), set(), []
        for child in children:
            child.kill()

    def _checkout(self) -> _Process:
        with self._lock:
            if self._idle:
                return self._idle.pop()
        child = _Process()
        with self._lock:
            self._all.add(child)
            closed = self._closed
        if closed:
            self._discard(child)
        return child

    def _checkin(self, child: _Process) -> None:
        with self._lock:
            if not self._closed:
                self._idle.append(child)
                return
        self._discard(child)

    def _discard(self, child: _Process) -> None:
        with self._lock:  # close() may have taken it already: kill each child once
            mine = child in self._all
            self._all.discard(child)
        if mine:
            child.kill()
