"""Running jobs here and now, in the caller's thread, as a worker would: ``dispatch_sync``,
``evq.testing.run`` and the ``sync://`` store, on which every dispatch runs at once.

A job run here is leased and started in the transaction that makes it runnable (its dispatch, or
its previous attempt's outcome), so no worker can claim it meanwhile. Its tries follow one
another without waiting out the backoff; a sync job past its timeout cannot be stopped in the
caller's thread, so it is timed out when it returns.

``sync://`` (development and tests, as Laravel's sync driver) is a memory store that, after each
commit, runs every pending job in the committing thread, delayed ones too, oldest first: a
dispatch returns once the job has run, and what it dispatched (run after it; from a job run by
``dispatch_sync``, at once) and the rest of its chain, with their events in the store's log
(``q.history(id)``). A job's failure is in its row and history (``q.result(id)`` raises it),
not raised by the dispatch.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from evq.eventlog.errors import ConfigError
from evq.eventlog.events import Event, JobLeased, JobStarted
from evq.eventlog.sqlite import SqliteLog
from evq.projections.model import PENDING, JobRow
from evq.projections.store import Store, register_store

if TYPE_CHECKING:
    from evq.workers.execute import AsyncRunner, Outcome


def start(store: Store, job_id: int) -> JobRow | None:
    """Lease and start the next attempt of job ``job_id`` here, if it is pending; returns its
    row (None if it is not pending)."""
    now = time.time()
    worker = f"sync:{socket.gethostname()}:{os.getpid()}"

    def lease(row: JobRow) -> list[Event]:
        attempt = row.attempt + 1
        return [JobLeased(job_id=row.id, ts=now, worker=worker, attempt=attempt,
                          lease_expires=now + (row.timeout or 0) + 3600),
                JobStarted(job_id=row.id, ts=now, attempt=attempt, worker=worker)]

    rows = store.change(lease, job_id=job_id, states=[PENDING])
    return rows[0] if rows else None


def run_attempts(store: Store, row: JobRow) -> Outcome:
    """Run ``row`` (started by :func:`start`) attempt after attempt until it ends; returns the
    last attempt's outcome."""
    from evq.workers.execute import AsyncRunner, load_or_none, run, timed_out

    runner: AsyncRunner | None = None

    def async_runner() -> AsyncRunner:
        nonlocal runner
        runner = runner or AsyncRunner()
        return runner

    try:
        while True:
            started = time.time()
            outcome = run(row, started, async_runner, lambda: None)
            if row.timeout is not None and time.time() - started >= row.timeout:
                outcome = timed_out(row, load_or_none(row))  # it ran: too late to stop it
            with store.log.transaction():  # a retry starts in the commit of this outcome
                store.append(outcome.events)
                again = start(store, row.id)
            if outcome.hook is not None:
                outcome.hook()
            if again is None:
                return outcome
            row = again
    finally:
        if runner is not None:
            runner.close()


def _runner(store: Store) -> Callable[[], None]:
    """What a ``sync://`` store calls after each commit: run its pending jobs. Commits made
    while this thread runs them (a job's own dispatches, its outcome) only add to the work."""
    busy = threading.local()

    def run_pending() -> None:
        if getattr(busy, "running", False):
            return
        busy.running = True
        try:
            while pending := store.tables.find(states=[PENDING], limit=1):
                row = start(store, pending[0].id)
                if row is not None:  # else another thread has started it
                    run_attempts(store, row)
        finally:
            busy.running = False

    return run_pending


def _open_sync(url: str, options: dict[str, str], _create: bool,
               _upgrade: bool | None) -> Store:
    if options:
        raise ConfigError(f"{url!r}: unknown option {', '.join(sorted(options))}")
    store = Store(SqliteLog(":memory:"), "sync://")
    store.watch(None, _runner(store))
    return store


register_store("sync", _open_sync, "sync://")
