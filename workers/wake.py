"""Waking idle workers when the SQLite files change, without polling (watchfiles)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

import watchfiles

log = logging.getLogger("evq.worker")


class FileWatcher:
    """Calls ``on_change`` soon after the database file or its WAL changes, from a thread, while
    :meth:`arm`-ed.

    watchfiles groups changes before it reports them; its defaults (``step`` 50 ms, ``debounce``
    1.6 s) would delay every wake-up, so both are set to a few milliseconds here. ``step`` is
    also how often its thread wakes while idle: 2 ms costs under 1% of a core and adds about
    3 ms to a wake-up (1 ms: about 1.5% of a core and 1.5 ms).

    A busy worker needs no wake-ups, and every commit (its own, and other workers') would cost
    it one: while disarmed, the watching thread stops asking watchfiles for changes, which
    gathers them meanwhile and reports them at once when armed again.
    """

    def __init__(self, db_path: str, on_change: Callable[[], None]) -> None:
        path = Path(db_path).resolve()
        self._names = {path.name, path.name + "-wal"}
        self._folder = path.parent
        self._on_change = on_change
        self._stop = threading.Event()
        self._armed = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="evq-watch", daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        try:
            for _ in watchfiles.watch(self._folder, watch_filter=self._relevant, debounce=2,
                                      step=2, stop_event=self._stop, rust_timeout=5000,
                                      recursive=False, raise_interrupt=False):
                self._armed.wait()
                if self._stop.is_set():
                    return
                self._on_change()
        except Exception as exc:
            log.warning("cannot watch %s for changes (%s); polling instead", self._folder, exc)

    def _relevant(self, _change: watchfiles.Change, path: str) -> bool:
        return Path(path).name in self._names

    def arm(self) -> None:
        """Report changes from now on (and any gathered while disarmed)."""
        self._armed.set()

    def disarm(self) -> None:
        """Stop reporting changes until armed again."""
        self._armed.clear()

    def close(self) -> None:
        self._stop.set()
        self._armed.set()  # let a waiting thread see the stop
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=1.0)
