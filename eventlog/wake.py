"""Wake-ups across processes on one machine, without polling: a watch on files in a folder.

A SQLite store signals that work appeared in a queue by touching one small file per queue in a
folder beside the database (:class:`ReadySignals`); idle workers watch the files of their queues,
and ``evq events --follow`` watches the database files themselves. On Linux a thread blocks on an
inotify descriptor of the folder (inotify_simple): a change by any process wakes it at once, and
an idle watcher costs no CPU. Elsewhere watchfiles does
it, which checks for changes every ``step`` milliseconds and reports them after a quiet step: its
defaults (``step`` 50 ms, ``debounce`` 1.6 s) would delay every wake-up, so both are set to 2 ms
(about 3 ms a wake-up, under 1% of a core while idle).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import select
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

log = logging.getLogger("evq.worker")


class FileWatcher:
    """Calls ``on_change`` from a thread soon after one of the files ``names`` in ``folder`` is
    written, created or touched, while armed (as it starts). With inotify the watch is in place
    when the constructor returns, so no change after it is missed.

    A busy worker needs no wake-ups, and every commit (its own, and other workers') would cost
    it one: while disarmed, the thread stops reading changes; those made meanwhile are reported
    at once when it is armed again.
    """

    def __init__(self, folder: str | Path, names: Iterable[str],
                 on_change: Callable[[], None]) -> None:
        self._names = set(names)
        self._folder = Path(folder).resolve()
        self._on_change = on_change
        self._inotify = self._open_inotify()
        self._stop = threading.Event()
        self._armed = threading.Event()
        self._armed.set()
        self._wake_r, self._wake_w = os.pipe()  # written to by close()
        self._thread = threading.Thread(target=self._watch, name="evq-watch", daemon=True)
        self._thread.start()

    def _open_inotify(self) -> Any:
        try:
            from inotify_simple import INotify, flags

            notify = INotify()
        except (ImportError, OSError) as exc:  # not Linux, or out of inotify instances
            log.debug("inotify unavailable (%s): watching with watchfiles", exc)
            return None
        try:
            notify.add_watch(self._folder, flags.MODIFY | flags.CREATE | flags.MOVED_TO
                             | flags.ATTRIB | flags.CLOSE_WRITE)
        except OSError as exc:
            notify.close()
            log.debug("cannot watch %s with inotify (%s): trying watchfiles", self._folder, exc)
            return None
        return notify

    def _watch(self) -> None:
        if self._inotify is not None:
            try:
                with self._inotify:
                    self._watch_inotify(self._inotify)
                return
            except OSError as exc:
                log.debug("inotify failed (%s): watching with watchfiles", exc)
        try:
            self._watch_watchfiles()
        except Exception as exc:
            if not self._stop.is_set():
                log.warning("cannot watch %s for changes (%s); polling instead",
                            self._folder, exc)

    def _watch_inotify(self, notify: Any) -> None:
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


def database_watcher(db_path: str, on_change: Callable[[], None]) -> FileWatcher:
    """A watch on a SQLite database and its WAL: reports every commit of any process."""
    path = Path(db_path).resolve()
    return FileWatcher(path.parent, {path.name, path.name + "-wal"}, on_change)


class ReadySignals:
    """Signals between processes that work appeared in a queue: one empty file per queue (named
    by a hash of the queue's name) in a folder beside the database, touched after a commit that
    made a job of that queue ready or due sooner. A signal is a hint that wakes idle workers;
    one that cannot be written is dropped (the workers' fallback poll covers it)."""

    def __init__(self, db_path: str) -> None:
        self.db_path = db_path
        path = Path(db_path).resolve()
        self.folder = path.with_name(path.name + "-ready")
        self._paths: dict[str, str] = {}  # queue -> its file, once made

    @staticmethod
    def file_name(queue: str) -> str:
        return hashlib.blake2b(queue.encode(), digest_size=8).hexdigest()

    def announce(self, queues: Iterable[str]) -> None:
        for queue in queues:
            path = self._paths.get(queue)
            try:
                if path is not None:
                    os.utime(path)  # on the hot path of every dispatch: a syscall, no more
                    continue
                self.folder.mkdir(exist_ok=True)
                made = self.folder / self.file_name(queue)
                made.touch()
                self._paths[queue] = str(made)
            except OSError as exc:
                self._paths.pop(queue, None)
                log.debug("cannot signal work in queue %r: %s", queue, exc)

    def watch_all(self, on_change: Callable[[], None]) -> FileWatcher:
        return database_watcher(self.db_path, on_change)

    def watch(self, queues: Iterable[str], on_change: Callable[[], None]) -> FileWatcher:
        with contextlib.suppress(OSError):
            self.folder.mkdir(exist_ok=True)
        return FileWatcher(self.folder, {self.file_name(q) for q in queues}, on_change)
