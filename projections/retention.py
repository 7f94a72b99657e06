"""Retention: which jobs' events may leave the live log, and moving them to the archive.

A job's events are archived once it is finished (succeeded, failed after its last attempt, or
cancelled) since before the cutoff, or once it left the projections (purged, or cleared from its
queue) before it. Its row in ``jobs`` stays, so the projections do not change; its events stay
readable through the archive by ``evq history``, ``evq events`` and ``evq replay``. The newest
event of the log always stays (the next position follows it), and with it the job it belongs to.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from evq.eventlog import archive
from evq.eventlog.archive import NOT_DISPATCH, Moved
from evq.eventlog.errors import EvqError
from evq.eventlog.sqllog import SqlLog

from .model import FINISHED

logger = logging.getLogger(__name__)

_FINISHED = ", ".join(f"'{s}'" for s in FINISHED)


def archivable(log: SqlLog, before: float) -> list[int]:
    """Jobs with live events that finished, or left the projections, before ``before``."""
    finished = log.read_rows(
        f"SELECT id FROM jobs WHERE state IN ({_FINISHED}) AND finished_at < ? "
        f"AND EXISTS (SELECT 1 FROM events WHERE events.job_id = jobs.id AND {NOT_DISPATCH})",
        (before,))
    removed = log.read_rows(
        "SELECT DISTINCT job_id FROM events WHERE type IN ('JobPurged', 'QueueCleared') "
        "AND ts < ? AND job_id NOT IN (SELECT id FROM jobs)", (before,))
    return sorted({i for (i,) in finished} | {i for (i,) in removed})


def archive_finished(log: SqlLog, before: float, *, now: float | None = None) -> Moved:
    """Move the events of every job finished before ``before`` into archive segments."""
    return archive.archive(log, archivable(log, before), now=time.time() if now is None else now)


def keep_archiving(url: str, age: float, *, every: float = 3600.0) -> Callable[[], None]:
    """Archive the jobs finished more than ``age`` seconds ago now and every ``every`` seconds,
    on a thread with its own connection to the store at ``url``; returns (once the first round
    is done) the function that stops it."""
    stop, first_round = threading.Event(), threading.Event()

    def loop() -> None:
        from .store import open_store

        try:
            store = open_store(url)
        except EvqError as exc:
            logger.warning("archiving is off: %s", exc)
            first_round.set()
            return
        try:
            while True:
                try:
                    archive_finished(store.log, time.time() - age)
                except EvqError as exc:  # a busy store: try again at the next round
                    logger.warning("archiving failed: %s", exc)
                first_round.set()
                if stop.wait(every):
                    return
        finally:
            store.close()

    thread = threading.Thread(target=loop, name="evq-retention", daemon=True)
    thread.start()
    first_round.wait()

    def halt() -> None:
        stop.set()
        thread.join(timeout=30)

    return halt
