"""Projections: the state transitions of every event and the tables derived from the log."""

from .apply import apply
from .model import JobRow
from .store import Store, open_store

__all__ = ["JobRow", "Store", "apply", "open_store"]
