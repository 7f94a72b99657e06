"""One error hierarchy for everything evq raises on purpose; each docstring is the default text."""

from __future__ import annotations


class EvqError(Exception):
    """An evq operation failed."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())


class ConfigError(EvqError):
    """The store URL or a setting is invalid."""


class StoreError(EvqError):
    """The store cannot be opened or used."""


class StoreBusy(StoreError):
    """The store stayed locked by another process past the busy timeout."""


class StoreMissing(StoreError):
    """There is no evq store here (no such file, or a file without evq's tables)."""


class StoreCorrupt(StoreError):
    """The database file is damaged: retrying cannot help."""


class StoreFull(StoreError):
    """A write failed for lack of space (a full disk or a file-size limit); nothing was
    written."""


class DecodeError(EvqError):
    """A stored event or payload cannot be decoded by this version of evq."""


class UnknownJob(EvqError):
    """No job type is registered under this name."""


class InvalidArguments(EvqError):
    """The arguments do not match the job's fields."""


class NotFound(EvqError):
    """No such job."""


class InvalidState(EvqError):
    """The job is not in a state that allows this operation."""


class JobFailed(EvqError):
    """A job failed: its last attempt raised ``error_type`` with ``message``."""

    def __init__(self, text: str, *, error_type: str = "", message: str = "") -> None:
        super().__init__(text)
        self.error_type = error_type
        self.message = message
