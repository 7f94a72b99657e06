"""Running one claimed job: decode its arguments, call ``handle()``, and say what happened as
events. Nothing a job does (raise, ``sys.exit``, return garbage) escapes from here."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import threading
import time
import traceback
from collections.abc import Callable, Coroutine, Sequence
from contextvars import ContextVar
from typing import Any

import msgspec

from evq.eventlog.errors import DecodeError, UnknownJob
from evq.eventlog.events import Event, JobDead, JobFailed, JobSucceeded, JobTimedOut
from evq.projections.model import JobRow

from . import registry
from .control import Control, attached
from .middleware import JobContext, Middleware, wrapped
from .retry import after_failure

log = logging.getLogger("evq.worker")

Hook = Callable[[], None]
_encode = msgspec.json.Encoder().encode
_current: ContextVar[JobRow | None] = ContextVar("evq_current_job", default=None)


def current_job() -> JobRow | None:
    """The row of the job whose ``handle()`` is being called in this context, else None (an
    async ``handle`` reads it before its first ``await``)."""
    return _current.get()


class Outcome(msgspec.Struct):
    """The events that close one attempt, and the job's hook to call afterwards, if any; for a
    failed attempt in this process, what the job raised, and for a success, what it returned."""

    events: list[Event]
    hook: Hook | None = None
    error: BaseException | None = None
    value: Any = None


class AsyncRunner:
    """One event loop in a thread of its own, for ``async def handle``."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="evq-async",
                                       daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, Any], timeout: float | None,
            control: Control | None = None) -> Any:
        """Run ``coro`` on the loop with a timeout, here; raises what it raised. A cancel
        request to ``control`` cancels its task."""
        future = asyncio.run_coroutine_threadsafe(_guard(coro, timeout), self.loop)
        with control.stoppable(future.cancel) if control else contextlib.nullcontext():
            ok, value = future.result()
        if not ok:
            raise value
        return value

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)
        if not self.thread.is_alive():
            self.loop.close()


async def _guard(coro: Coroutine[Any, Any, Any], timeout: float | None) -> tuple[bool, Any]:
    """Await ``coro``, catching even SystemExit and KeyboardInterrupt: asyncio would let those
    stop the loop and every job on it."""
    try:
        return True, await asyncio.wait_for(coro, timeout)
    except (SystemExit, KeyboardInterrupt) as exc:
        return False, exc


def load(row: JobRow) -> Any:
    """The job instance a row describes; raises UnknownJob or DecodeError."""
    cls = registry.lookup(row.name)
    try:
        return msgspec.json.decode(row.payload, type=cls)
    except msgspec.DecodeError as exc:
        raise DecodeError(f"the arguments of {row.name} job {row.id} no longer decode: "
                          f"{exc}") from None
    except Exception as exc:  # RecursionError on deep nesting, an error in __post_init__...
        raise DecodeError(f"the arguments of {row.name} job {row.id} cannot be loaded: "
                          f"{type(exc).__name__}: {exc}") from None


def load_or_none(row: JobRow) -> Any:
    """The job instance a row describes, or None if it cannot be loaded (for its hooks)."""
    try:
        return load(row)
    except (UnknownJob, DecodeError):
        return None


def run(row: JobRow, started: float, runner: Callable[[], AsyncRunner],
        on_async: Callable[[], None], *, middleware: Sequence[Middleware] = (),
        control: Control | None = None) -> Outcome:
    """Run one attempt of ``row`` inside the worker's ``middleware`` and its class's, and
    return its outcome. An async job's timeout is enforced here (its task is cancelled);
    ``on_async`` tells the caller so. Once ``control`` has a cancel request, the attempt ends
    as cancelled, whatever ``handle()`` did."""
    control = control or Control(row)
    try:
        job = load(row)
    except (UnknownJob, DecodeError) as exc:
        return failure(row, started, exc, final=True)
    ctx = JobContext(id=row.id, name=row.name, queue=row.queue, attempt=row.attempt,
                     meta=_meta(row.meta) if row.meta else {})

    def call() -> Any:
        result = _handle(job, row)
        if inspect.isawaitable(result):
            on_async()
            result = runner().run(result, row.timeout, control)  # type: ignore[arg-type]
        return result

    try:
        with attached(job, control):
            result = wrapped([*middleware, *type(job).middleware], job, ctx, call)()
    except TimeoutError as exc:
        if row.timeout is not None and time.time() - started >= row.timeout * 0.99:
            outcome = timed_out(row, job)
        else:
            outcome = failure(row, started, exc, job=job)
    except BaseException as exc:
        outcome = failure(row, started, exc, job=job)
    else:
        now = time.time()
        outcome = Outcome([JobSucceeded(job_id=row.id, ts=now, attempt=row.attempt,
                                        duration=now - started, result=_result(result))],
                          value=result)
    if control.requested:
        outcome = Outcome([control.cancelled(time.time())])
    outcome.events[:0] = control.unsent()
    return outcome


def _meta(text: str) -> dict[str, str]:
    try:
        return msgspec.json.decode(text, type=dict[str, str])
    except msgspec.DecodeError:  # written by another program: no context is better than none
        return {}


def _handle(job: Any, row: JobRow) -> Any:
    """``job.handle()``, with ``row`` as the :func:`current_job` meanwhile."""
    token = _current.set(row)
    try:
        return job.handle()
    finally:
        _current.reset(token)


def failure(row: JobRow, started: float, exc: BaseException, *, job: Any = None,
            final: bool = False) -> Outcome:
    """The events of a failed attempt; ``failed()`` is the hook if it was the last one."""
    now = time.time()
    tb = "".join(traceback.format_exception(exc))[-8000:] if job is not None else ""
    fail = JobFailed(job_id=row.id, ts=now, attempt=row.attempt, error_type=type(exc).__name__,
                     message=_storable(str(exc) or repr(exc)), traceback=_storable(tb),
                     duration=now - started)
    after = after_failure(row, now, final=final)
    hook = _hook(job.failed, exc) if job is not None and isinstance(after, JobDead) else None
    return Outcome([fail, after], hook, exc)


def _storable(text: str) -> str:
    """Text every store can hold: PostgreSQL's text refuses NUL, so it is written as ``\\x00``
    (in the event itself, so that a rebuild gives the same rows)."""
    return text.replace("\x00", "\\x00")


def timed_out(row: JobRow, job: Any) -> Outcome:
    """The events of an attempt that ran past its timeout; ``timed_out()`` is the hook, and
    ``failed()`` too if it was the last attempt."""
    now = time.time()
    after = after_failure(row, now)
    err = TimeoutError(f"{row.name} timed out after {row.timeout:g}s")
    hooks = [_hook(job.timed_out)] if job is not None else []
    if job is not None and isinstance(after, JobDead):
        hooks.append(_hook(job.failed, err))

    def run_hooks() -> None:
        for h in hooks:
            h()

    return Outcome([JobTimedOut(job_id=row.id, ts=now, attempt=row.attempt,
                                timeout=float(row.timeout or 0)), after], run_hooks, err)


def _hook(fn: Callable[..., Any], *args: Any) -> Hook:
    def call() -> None:
        try:
            result = fn(*args)
            if inspect.isawaitable(result):
                asyncio.run(result)  # type: ignore[arg-type]
        except BaseException:
            log.exception("%s raised", getattr(fn, "__qualname__", fn))

    return call


def _result(value: Any) -> Any:
    """The job's return value as JSON-compatible data (its ``repr`` if it has no JSON form)."""
    try:
        return msgspec.to_builtins(value)
    except (TypeError, msgspec.EncodeError):
        return repr(value)
