"""Job types by name: a worker runs only names registered here, never whatever a log names."""

from __future__ import annotations

from typing import Any

from evq.eventlog.errors import EvqError, UnknownJob

_types: dict[str, type[Any]] = {}


def register(name: str, cls: type[Any]) -> None:
    """Register ``cls`` under ``name``; a second, different class for one name is an error."""
    old = _types.get(name)
    if old is not None and (old.__module__, old.__qualname__) != (cls.__module__, cls.__qualname__):
        raise EvqError(f"job name {name!r} is taken by {old.__module__}.{old.__qualname__}; "
                       f"give {cls.__module__}.{cls.__qualname__} another job_name")
    _types[name] = cls


def lookup(name: str) -> type[Any]:
    """The job class registered under ``name``."""
    try:
        return _types[name]
    except KeyError:
        raise UnknownJob(f"no job type is registered as {name!r}: import the module that "
                         "defines it (evq work --app MODULE)") from None


def names() -> list[str]:
    return sorted(_types)


def modules() -> list[str]:
    """The modules that define the registered job types (what a child process must import)."""
    return sorted({cls.__module__ for cls in _types.values()} - {"__main__", "__mp_main__"})
