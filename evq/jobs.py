"""Job types: ``evq.Job`` subclasses (typed arguments as msgspec fields) and ``@evq.job``."""

from __future__ import annotations

import functools
import inspect
import math
import re
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any, ClassVar, cast

import msgspec

from evq.eventlog.errors import ConfigError, InvalidArguments
from evq.workers import registry
from evq.workers.control import current
from evq.workers.middleware import Middleware, checked
from evq.workers.retry import BackoffSpec, backoff_schedule, is_int, is_number

from . import limits
from .limits import Key, RateLimit
from .schedules import class_schedule, register_schedule


class _JobMeta(msgspec.StructMeta):
    """Makes a job built with missing or unknown arguments raise ``InvalidArguments`` (naming
    the job type) instead of msgspec's plain ``TypeError``; registers a job type's class-level
    schedule once its fields are known."""

    def __new__(mcls, name: str, bases: tuple[type, ...], *args: Any, **kwargs: Any) -> Any:
        cls = cast("type[Job]", super().__new__(mcls, name, bases, *args, **kwargs))
        if any(isinstance(b, _JobMeta) for b in bases):  # a job type, not evq.Job itself
            planned = class_schedule(cls)  # refused before anything is registered
            registry.register(cls.job_name, cls)
            if planned is not None:
                register_schedule(planned)
        return cls

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().__call__(*args, **kwargs)
        except TypeError as exc:
            raise InvalidArguments(f"{getattr(cls, 'job_name', cls.__name__)}: {exc}") from None


class Job(msgspec.Struct, kw_only=True, metaclass=_JobMeta):
    """Base of every job type. Fields are the job's typed arguments; class attributes configure
    it: ``queue``, ``tries`` (total attempts), ``backoff``, ``timeout`` (seconds or None),
    ``priority`` (higher first), ``middleware`` (a list of :class:`evq.Middleware` around
    each attempt), ``job_name`` (defaults to the class name), ``unique_for`` (seconds: see
    :meth:`unique_key`), ``rate_limit`` (an :class:`evq.RateLimit`), ``concurrency_limit`` and
    ``concurrency_key`` (see the README), and ``schedule`` (a cron expression: dispatched at its
    ticks, see :mod:`evq.schedules`) with ``timezone`` and ``missed``."""

    job_name: ClassVar[str] = ""
    queue: ClassVar[str] = "default"
    tries: ClassVar[int] = 1
    backoff: ClassVar[BackoffSpec] = 0
    backoff_base: ClassVar[float] = 1.0
    timeout: ClassVar[float | None] = None
    priority: ClassVar[int] = 0
    middleware: ClassVar[Sequence[Middleware]] = ()
    unique_for: ClassVar[float | None] = None
    rate_limit: ClassVar[RateLimit | None] = None
    concurrency_limit: ClassVar[int | None] = None
    concurrency_key: ClassVar[Key] = None
    schedule: ClassVar[str | None] = None
    timezone: ClassVar[str | None] = None
    missed: ClassVar[str] = "skip"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "job_name" not in cls.__dict__:
            cls.job_name = cls.__name__
        check_settings(cls)

    def unique_key(self) -> str:
        """With ``unique_for`` set: a dispatch of a job whose key is held (by an unfinished job,
        or one dispatched less than ``unique_for`` seconds ago) returns that job's id instead.
        Default: the job's name and its arguments as canonical JSON."""
        return f"{self.job_name}:{msgspec.json.encode(self, order='sorted').decode()}"

    def handle(self) -> Any:
        """The work. May be ``async def``. Its return value is kept as the job's result."""
        raise NotImplementedError(f"{type(self).__name__} must define handle()")

    def failed(self, error: BaseException) -> None:
        """Called once the last attempt has failed."""

    def timed_out(self) -> None:
        """Called when an attempt runs past ``timeout``."""

    @property
    def cancelled(self) -> bool:
        """True once a cancel of this running attempt was requested (``q.cancel(id)``): a
        sync job checks it and returns early; its attempt is recorded as cancelled."""
        control = current(self)
        return control is not None and control.requested

    def progress(self, fraction: float, message: str = "") -> None:
        """Report how far this attempt is, from 0 to 1 (``JobProgress``; at most about 4 a
        second are recorded, and the last one always). Outside a worker it does nothing."""
        if not is_number(fraction) or not 0 <= fraction <= 1:
            raise InvalidArguments(f"progress must be a number from 0 to 1, not {fraction!r}")
        control = current(self)
        if control is not None:
            control.progress(float(fraction), str(message))

    def dispatch(self, *, delay: float | timedelta | None = None,
                 at: datetime | float | None = None, queue: str | None = None,
                 priority: int | None = None) -> int:
        """Dispatch on the default connection (``evq.connect()``); returns the job id."""
        from evq.api import default_queue

        return default_queue().dispatch(self, delay=delay, at=at, queue=queue,
                                        priority=priority)


# What job arguments may be: their JSON at most this long and nested at most this deep (deeper
# values cannot be decoded by a worker without running out of stack, and longer ones make every
# read of the job slow).
MAX_PAYLOAD_BYTES = 10 * 1024 * 1024
MAX_DEPTH = 64
# Times are unix seconds after the epoch and before the year 10000 (what a listing can show).
LATEST_TIME = 253402300799.0  # 9999-12-31T23:59:59Z
PRIORITY_RANGE = (-(2**63), 2**63 - 1)  # what the stores keep as an integer


def check_settings(cls: type[Job]) -> None:
    """Refuse a job type whose class settings could not be dispatched (at import, not later)."""
    where = f"job type {cls.__qualname__}"
    try:
        check_name(cls.job_name, f"{where}: job_name")
        check_queue(cls.queue, where)
        check_int(cls.priority, f"{where}: priority")
    except InvalidArguments as exc:
        raise ConfigError(str(exc)) from None
    if not is_int(cls.tries) or cls.tries < 1:
        raise ConfigError(f"{where}: tries must be an integer of at least 1, not {cls.tries!r}")
    timeout = cls.timeout
    if timeout is not None and not (is_number(timeout) and 0 < timeout < math.inf):
        raise ConfigError(f"{where}: timeout must be a positive number of seconds or None, "
                          f"not {timeout!r}")
    backoff_schedule(cls.backoff, cls.tries, cls.backoff_base)
    limits.check(cls, where)
    cls.middleware = checked(cls.middleware, where)


def check_name(name: object, what: str) -> None:
    """The rule for queue and job names: 1 to 100 printable characters, no comma (``evq work
    --queues`` splits on commas) and no space at either end."""
    if (not isinstance(name, str) or not 0 < len(name) <= 100 or not name.isprintable()
            or "," in name or name != name.strip()):
        raise InvalidArguments(f"{what} must be 1 to 100 printable characters, without commas "
                               f"or spaces at either end, not {name!r}")


def check_queue(queue: object, where: str) -> None:
    check_name(queue, f"{where}: queue")


def check_int(value: object, what: str) -> None:
    if not is_int(value) or not PRIORITY_RANGE[0] <= value <= PRIORITY_RANGE[1]:  # type: ignore[operator]
        raise InvalidArguments(f"{what} must be an integer of 64 bits, not {value!r}")


def validated_payload(job: Job) -> bytes:
    """The job's arguments as JSON, checked against its field types and bounds."""
    cls = type(job)
    try:
        payload = msgspec.json.encode(job)
    except (TypeError, RecursionError) as exc:
        raise InvalidArguments(f"{cls.job_name}: invalid arguments: {_why(exc)}") from None
    check_payload(cls.job_name, payload)
    try:
        msgspec.json.decode(payload, type=cls)
    except (msgspec.ValidationError, TypeError) as exc:
        raise InvalidArguments(f"{cls.job_name}: invalid arguments: {exc}") from None
    return payload


def check_payload(name: str, payload: bytes) -> None:
    """Refuse arguments whose JSON is too long or nested too deeply (see ``MAX_DEPTH``)."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise InvalidArguments(f"{name}: the arguments take {len(payload):,} bytes of JSON; at "
                               f"most {MAX_PAYLOAD_BYTES:,} are allowed")
    if payload.count(b"[") + payload.count(b"{") > MAX_DEPTH and _too_deep(payload):
        raise InvalidArguments(f"{name}: the arguments are nested more than {MAX_DEPTH} deep")


_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_SHAPE = bytes(sorted(set(range(256)) - set(b'[]{}"')))
_AS_SQUARE = bytes.maketrans(b"{}", b"[]")


def _too_deep(payload: bytes) -> bool:
    """Whether the JSON ``payload`` nests arrays and objects more than ``MAX_DEPTH`` deep: its
    brackets outside strings, with the innermost pairs taken away once per level (in C: a
    Python walk of the decoded value would slow every dispatch of a list of dicts)."""
    shape = _brackets(payload).translate(_AS_SQUARE)
    for _ in range(MAX_DEPTH):
        if not shape:
            return False
        shape = shape.replace(b"[]", b"")
    return bool(shape)


def _brackets(payload: bytes) -> bytes:
    """The brackets of ``payload`` outside its strings. Fast when no string holds a bracket or
    an escaped quote: then every string leaves a bare ``""`` among the brackets."""
    shape = payload.translate(None, _NOT_SHAPE).replace(b'""', b"")
    if b'"' not in shape and b'\\"' not in payload:
        return shape
    return _STRING.sub(b"", payload).translate(None, _NOT_SHAPE)


def _why(exc: BaseException) -> str:
    return f"nested too deeply to encode (at most {MAX_DEPTH})" if isinstance(
        exc, RecursionError) else str(exc)


def job(_fn: Callable[..., Any] | None = None, *, name: str | None = None,
        queue: str = "default", tries: int = 1, backoff: BackoffSpec = 0,
        backoff_base: float = 1.0, timeout: float | None = None, priority: int = 0,
        unique_for: float | None = None, rate_limit: RateLimit | None = None,
        concurrency_limit: int | None = None, concurrency_key: Key = None,
        middleware: Sequence[Middleware] = ()) -> Any:
    """Make a plain function a job type: ``fn.dispatch(*args, **kw)`` queues a call to it.

    The function's annotated parameters become the job's typed fields; calling the function
    directly still runs it in place.
    """

    def wrap(fn: Callable[..., Any]) -> Any:
        annotations: dict[str, Any] = {}
        defaults: dict[str, Any] = {}
        for p in inspect.signature(fn).parameters.values():
            annotations[p.name] = Any if p.annotation is inspect.Parameter.empty else p.annotation
            if p.default is not inspect.Parameter.empty:
                defaults[p.name] = p.default
        is_async = inspect.iscoroutinefunction(fn)

        def handle(self: Job) -> Any:
            return fn(**msgspec.structs.asdict(self))

        async def ahandle(self: Job) -> Any:
            return await fn(**msgspec.structs.asdict(self))

        cls = _JobMeta(fn.__name__, (Job,), {
            "__annotations__": annotations, **defaults, "__module__": fn.__module__,
            "__qualname__": fn.__qualname__, "job_name": name or fn.__name__, "queue": queue,
            "tries": tries, "backoff": backoff, "backoff_base": backoff_base,
            "timeout": timeout, "priority": priority, "unique_for": unique_for,
            "rate_limit": rate_limit, "concurrency_limit": concurrency_limit,
            "concurrency_key": concurrency_key, "middleware": middleware,
            "handle": ahandle if is_async else handle}, kw_only=True)
        return FunctionJob(fn, cast(type[Job], cls))

    return wrap(_fn) if _fn is not None else wrap


class FunctionJob:
    """A function made a job by ``@evq.job``: call it to run it here, ``dispatch`` to queue it."""

    def __init__(self, fn: Callable[..., Any], job_type: type[Job]) -> None:
        functools.update_wrapper(self, fn)
        self.fn = fn
        self.job_type = job_type

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)

    def make(self, *args: Any, **kwargs: Any) -> Job:
        """The job instance for a call with these arguments (``q.dispatch(fn.make(...),
        delay=...)`` dispatches it with options)."""
        try:
            bound = inspect.signature(self.fn).bind(*args, **kwargs)
        except TypeError as exc:
            raise InvalidArguments(f"{self.job_type.job_name}: {exc}") from None
        return self.job_type(**bound.arguments)

    def dispatch(self, *args: Any, **kwargs: Any) -> int:
        """Queue a call on the default connection; returns the job id. ``delay=``, ``at=``,
        ``queue=`` and ``priority=`` are dispatch options, unless the function has a parameter
        of that name (then it is the argument: use ``q.dispatch(fn.make(...), queue=...)``)."""
        params = inspect.signature(self.fn).parameters
        options = {k: kwargs.pop(k) for k in _DISPATCH_OPTIONS if k in kwargs and k not in params}
        return self.make(*args, **kwargs).dispatch(**options)


_DISPATCH_OPTIONS = ("delay", "at", "queue", "priority")
