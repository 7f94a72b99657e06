"""Durable subscribers: readers of the log that resume where they stopped.

``evq.subscribe("billing-sync", fn, types=["JobDead"])`` calls ``fn(record)`` for each event of
the log (archived ones included) after the position saved under the name, in log order, and saves
the position after each batch it handled: a subscriber that was down catches up, and one killed
mid-batch sees that batch again (at least once). One process at a time holds a name (see
:mod:`evq.eventlog.consumers`); it wakes on the store's commits, not by polling.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from evq.eventlog import archive, consumers
from evq.eventlog.codec import Record
from evq.eventlog.errors import InvalidArguments, InvalidState
from evq.eventlog.events import EVENT_TYPES

if TYPE_CHECKING:
    from .api import Queue

log = logging.getLogger("evq.subscriber")

Handler = Callable[[Record], Any]


class Subscription:
    """One durable reader of the log under ``name``: :meth:`run` in this thread (until
    :meth:`stop`), or :meth:`start` on a thread of its own."""

    def __init__(self, queue: Queue, name: str, fn: Handler, *, types: Sequence[str] = (),
                 since: int = 0, batch: int = 500, lease: float = 30.0,
                 atomic: bool = False) -> None:
        """``atomic``: handle each batch and save the position in one transaction of the store
        (for a handler that only writes to the store, such as one that dispatches jobs: then
        each event is handled exactly once)."""
        if not isinstance(name, str) or not name.strip():
            raise InvalidArguments("a subscriber needs a name")
        if not callable(fn):
            raise InvalidArguments(f"subscribe({name!r}): {fn!r} is not callable")
        unknown = [t for t in types if t not in EVENT_TYPES]
        if unknown:
            raise InvalidArguments(f"subscribe({name!r}): unknown event type {unknown[0]!r}")
        if batch < 1 or lease <= 0:
            raise InvalidArguments("batch must be at least 1 and lease positive")
        self.queue = queue
        self.name = name
        self.fn = fn
        self.types = list(types)
        self.since = since
        self.batch = batch
        self.lease = lease
        self.atomic = atomic
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.position: int | None = None  # what it has handled everything up to
        self.handled = 0
        self._saved_at = 0.0
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def claim(self) -> int:
        """Take the name (an :class:`InvalidState` if a live reader holds it); returns the
        position to read after."""
        self._saved_at = time.time()
        self.position = consumers.claim(self.queue.store.log, self.name, self.owner,
                                        self._saved_at, self.lease, self.since)
        return self.position

    def poll(self) -> int:
        """Handle what the log holds after the position, in batches, saving the position after
        each; returns how many events were handled."""
        store = self.queue.store
        if self.position is None:
            self.claim()
        done = 0
        while not self._stop.is_set():
            assert self.position is not None
            end = store.log.last_seq()  # every position up to it has committed
            records = list(archive.read(store.log, since=self.position, until=end,
                                        types=self.types, limit=self.batch))
            last = records[-1].seq if len(records) == self.batch else end
            with store.log.transaction() if self.atomic else contextlib.nullcontext():
                for record in records:
                    self.fn(record)
                now = time.time()
                if last != self.position or now - self._saved_at > self.lease / 3:  # heartbeat
                    consumers.save(store.log, self.name, self.owner, last, now)
                    self.position, self._saved_at = last, now
            done += len(records)
            self.handled += len(records)
            if len(records) < self.batch:
                return done
        return done

    def run(self) -> None:
        """Read and handle until :meth:`stop`; a handler that raises is retried (the same
        event, after a pause that doubles, up to 30 s), and logged."""
        self.claim()
        watch = self.queue.store.watch(None, self._wake.set)
        pause = 0.0
        try:
            while not self._stop.is_set():
                self._wake.clear()
                try:
                    self.poll()
                    pause = 0.0
                except InvalidState:
                    raise
                except Exception:
                    pause = min(max(pause * 2, 0.5), 30.0)
                    log.exception("subscriber %r failed at position %s: retrying in %.1f s",
                                  self.name, self.position, pause)
                    self._stop.wait(pause)
                    continue
                self.between()
                self._wake.wait(self.lease / 4)  # then poll, which also says it is alive
        finally:
            watch.close()
            consumers.release(self.queue.store.log, self.name, self.owner)

    def between(self) -> None:
        """Called by :meth:`run` between its reads (for subclasses)."""

    def start(self) -> Subscription:
        """Claim the name here (so a taken name is an error at once), then run on a daemon
        thread."""
        self.claim()
        self._thread = threading.Thread(target=self.run, name=f"evq-subscriber-{self.name}",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop after the event in hand, and give the name up."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def subscribe(name: str, fn: Handler, *, types: Sequence[str] = (), since: int = 0,
              batch: int = 500, lease: float = 30.0, queue: Queue | None = None
              ) -> Subscription:
    """A durable subscriber on ``queue`` (default: the default connection), started on a thread
    of its own; ``stop()`` it (or use it in a ``with``). A new name starts after ``since``."""
    if queue is None:
        from .api import default_queue

        queue = default_queue()
    return Subscription(queue, name, fn, types=types, since=since, batch=batch,
                        lease=lease).start()
