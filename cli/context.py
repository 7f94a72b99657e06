"""What every command shares: the store URL from ``--url``/``EVQ_URL`` and the open queue."""

from __future__ import annotations

import importlib
import os
import sys
import traceback
from typing import TYPE_CHECKING, Any

import typer

from evq.eventlog.errors import ConfigError, StoreMissing

if TYPE_CHECKING:
    from evq.api import Queue


class Context:
    """The root options, handed to commands through ``ctx.obj``."""

    def __init__(self, url: str | None) -> None:
        self.url = url
        self._queue: Queue | None = None

    def queue(self, *, create: bool = False, upgrade: bool | None = None) -> Queue:
        """The queue of ``--url``; only commands that put jobs in (``dispatch``, ``work``) and
        ``migrate`` pass ``create``: the others say that a store that does not exist is
        missing."""
        if self._queue is None:
            from evq.api import connect

            try:
                self._queue = connect(self.url, create=create, upgrade=upgrade)
            except StoreMissing as exc:
                raise hinted(exc) from None
        return self._queue

    def close(self) -> None:
        """Close the queue, if a command opened it."""
        if self._queue is not None:
            self._queue.close()
            self._queue = None


def hinted(exc: StoreMissing) -> StoreMissing:
    """A missing store's error, with what a user of the command line can do about it."""
    return StoreMissing(f"{exc} (check --url or EVQ_URL; evq dispatch and evq work create a "
                        "store)")


def get(ctx: typer.Context) -> Context:
    return ctx.find_root().obj  # type: ignore[no-any-return]


def import_apps(modules: list[str]) -> None:
    """Import the modules that define job types (``--app``), so their names are registered."""
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    for name in modules:
        for module in filter(None, (m.strip() for m in name.split(","))):
            try:
                importlib.import_module(module)
            except ModuleNotFoundError as exc:
                if exc.name is not None and module.startswith(exc.name):
                    raise ConfigError(f"cannot import --app {module}: {exc}") from None
                raise ConfigError(f"importing --app {module} failed{_where(exc)}: "
                                  f"{type(exc).__name__}: {exc}") from None
            except Exception as exc:
                raise ConfigError(f"importing --app {module} failed{_where(exc)}: "
                                  f"{type(exc).__name__}: {exc}") from None


def load_middleware(specs: list[str]) -> list[Any]:
    """The middleware that ``--middleware MODULE:NAME`` options name (after ``--app``): each
    ``NAME`` an :class:`evq.Middleware` instance or a list of them."""
    from evq.workers.middleware import checked

    found: list[Any] = []
    for spec in specs:
        module, _, name = spec.partition(":")
        if not module or not name:
            raise ConfigError(f"--middleware {spec!r}: give MODULE:NAME, e.g. myapp.jobs:TRACING")
        import_apps([module])
        value = getattr(sys.modules[module], name, None)
        if value is None:
            raise ConfigError(f"--middleware {spec!r}: {module} has no {name}")
        found += checked(value if isinstance(value, list | tuple) else [value],
                         f"--middleware {spec}")
    return found


def _where(exc: BaseException) -> str:
    """" at FILE:LINE" of the failure: where a syntax error is, or the innermost frame of the
    traceback that is not in the import machinery."""
    if isinstance(exc, SyntaxError) and exc.filename:
        return f" at {exc.filename}:{exc.lineno}"
    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if not f.filename.startswith("<frozen")]
    return f" at {frames[-1].filename}:{frames[-1].lineno}" if frames[1:] else ""
