"""The process pool (``--pool process``): each attempt runs in a child process.

A child runs one job at a time through :func:`execute.run`, inside the worker's middleware (sent
to it when it starts: they must pickle) and its class's, so a job's outcome is decided by the
same code as on the thread pool; the child sends back the job's progress reports as they come,
then the outcome's events, and runs the job's hook. A cancel request kills the child.
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
import time
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess

import msgspec

from evq.eventlog.events import AnyEvent
from evq.projections.model import JobRow

from . import registry
from .control import Control
from .execute import AsyncRunner, Outcome, failure, load_or_none, run, timed_out
from .middleware import Middleware

_encode = msgspec.msgpack.Encoder().encode
_decode_task = msgspec.msgpack.Decoder(tuple[JobRow, float]).decode
# a child's messages: (final, events): progress reports (False), then the outcome (True)
_decode_events = msgspec.msgpack.Decoder(tuple[bool, list[AnyEvent]]).decode


READY = b"ready"  # a new child's first message: its imports are done
START_TIMEOUT = 60.0


class WorkerCrashed(Exception):
    """The process that ran the job died before it reported an outcome."""


def _child(conn: Connection, modules: list[str], middleware: Sequence[Middleware]) -> None:
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
        control = Control(row, lambda events: conn.send_bytes(_encode((False, events))))
        outcome = run(row, started, async_runner, lambda: None, middleware=middleware,
                      control=control)
        conn.send_bytes(_encode((True, outcome.events)))
        if outcome.hook is not None:
            outcome.hook()


class _Process:
    """One child process and the parent's end of its pipe."""

    def __init__(self, middleware: Sequence[Middleware]) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.conn, child_end = ctx.Pipe()
        self.proc: BaseProcess = ctx.Process(
            target=_child, args=(child_end, registry.modules(), list(middleware)),
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
    child (or starts one), so there are at most as many as runner threads. ``middleware``
    wraps every job in them."""

    def __init__(self, middleware: Sequence[Middleware] = ()) -> None:
        self._middleware = middleware
        self._idle: list[_Process] = []
        self._all: set[_Process] = set()
        self._lock = threading.Lock()
        self._closed = False

    def run(self, row: JobRow, started: float, on_own_deadline: Callable[[], None],
            control: Control | None = None) -> Outcome:
        """Run one attempt of ``row`` in a child and return its outcome; the timeout is
        enforced here (``on_own_deadline`` tells the caller so). The child's progress reports
        go to ``control``; a cancel request to it kills the child."""
        on_own_deadline()
        control = control or Control(row)
        try:
            child = self._checkout()
        except Exception as exc:  # cannot start a process (limits, memory): fail the attempt
            return failure(row, started, WorkerCrashed(
                f"cannot start a process for {row.name} job {row.id}: {exc}"))
        deadline = None if row.timeout is None else time.monotonic() + row.timeout
        try:
            child.conn.send_bytes(_encode((row, started)))
            with control.stoppable(child.proc.kill):
                while True:
                    left = None if deadline is None else max(0.0, deadline - time.monotonic())
                    if not child.conn.poll(left):
                        self._discard(child)
                        return timed_out(row, load_or_none(row))
                    final, events = _decode_events(child.conn.recv_bytes())
                    if final:
                        break
                    if control.report is not None:
                        control.report(list(events))
        except (EOFError, OSError):
            how = ("was killed: its worker stopped" if self._closed
                   else f"died ({child.describe_end()})")
        except msgspec.DecodeError as exc:
            how = f"sent an outcome that does not decode ({exc})"
        else:
            if not control.requested:
                self._checkin(child)
                return Outcome(list(events))
        if control.requested:  # the child was killed, or is being killed
            self._discard(child)
            return Outcome([control.cancelled(time.time())])
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
        child = _Process(self._middleware)
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
