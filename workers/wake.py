"""Waking idle workers when the SQLite files change, without polling.

On Linux a thread blocks on an inotify descriptor of the database's folder (inotify_simple): a
commit by any process wakes it at once, and an idle worker costs no CPU. Elsewhere watchfiles does
it, which checks for changes every ``step`` milliseconds and reports them after a quiet step: its
defaults (``step`` 50 ms, ``debounce`` 1.6 s) would delay every wake-up, so both are set to 2 ms
(about 3 ms a wake-up, under 1% of a core while idle).
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import threading
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger("evq.worker")


class FileWatcher:
    """Calls ``on_change`` from a thread soon after the database file or its WAL changes, while
    armed (as it starts).

    A busy worker needs no wake-ups, and every commit (its own, and other workers') would cost
    it one: while disarmed, the thread stops reading changes; those made meanwhile are reported
    at once when it is armed again.
    """

    def __init__(self, db_path: str, on_change: Callable[[], None]) -> None:
        path = Path(db_path).resolve()
        self._names = {path.name, path.name + "-wal"}
        self._folder = path.parent
        self._on_change = on_change
        self._stop = threading.Event()
        self._armed = threading.Event()
        self._armed.set()
        self._wake_r, self._wake_w = os.pipe()  # written to by close()
        self._thread = threading.Thread(target=self._watch, name="evq-watch", daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        try:
            self._watch_inotify()
        except (ImportError, OSError) as exc:  # not Linux, or out of inotify instances
            if self._stop.is_set():
                return
            log.debug("inotify unavailable (%s): watching with watchfiles", exc)
            try:
                self._watch_watchfiles()
            except Exception as exc:
                log.warning("cannot watch %s for changes (%s); polling instead",
                            self._folder, exc)

    def _watch_inotify(self) -> None:
        from inotify_simple import INotify, flags

        with INotify() as notify:
            notify.add_watch(self._folder, flags.MODIFY | flags.CREATE | flags.MOVED_TO)
            while self._wait_armed():
                ready, _, _ = select.select([notify, self._wake_r], [], [])
                if self._wake_r in ready:
                    return
                if any(e.name in self._names for e in notify.read(timeout=0)):
                    self._on_change()

    def _watch_watchfiles(self) -> None:
        import watchfiles

        for _ in watchfiles.watch(self._folder, watch_filter=self._relevant, debounce=2, step=2,
                                  stop_event=self._stop, rust_timeout=5000, recursive=False,
                                  raise_interrupt=False):
            if not self._wait_armed():
                return
            self._on_change()

    def _wait_armed(self) -> bool:
        """Wait until armed; False once closed."""
        self._armed.wait()
        return not self._stop.is_set()

    def _relevant(self, _change: object, path: str) -> bool:
        return Path(path).name in self._names

    def arm(self) -> None:
        """Report changes from now on (and any made while disarmed)."""
        self._armed.set()

    def disarm(self) -> None:
        """Stop reporting changes until armed again."""
        self._armed.clear()

    def close(self) -> None:
        self._stop.set()
        self._armed.set()  # let a waiting thread see the stop
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=1.0)
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)
