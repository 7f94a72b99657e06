"""The event log: event types, their encoding, and the stores that append and read them."""

from . import events
from .codec import Record
from .errors import EvqError

__all__ = ["EvqError", "Record", "events"]
