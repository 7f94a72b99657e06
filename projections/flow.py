"""What follows a job's end in a workflow or a batch: the decisions, as pure functions.

When a job ends, the store asks here, in the same transaction, for the events that follow: a
waiting job whose dependencies have all ended as it needs is released (``JobReleased``), one
whose dependency failed is cancelled (which may cancel the jobs waiting for it in turn), and a
group whose state turned dispatches its callback jobs (once each: the ``fired_*`` counts).
These follow-on events are appended like any other, so a replay needs no rule of this module:
it only applies what was decided.
"""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from evq.eventlog.events import Callback, Event, JobCancelled, JobDispatched, JobReleased

from .groups import dependencies
from .model import CANCELLED, FAILED, FINISHED, SUCCEEDED, WAITING, GroupRow, JobRow

_callbacks = msgspec.json.Decoder(list[Callback])


def release_or_cancel(row: JobRow, states: Mapping[int, str], now: float) -> Event | None:
    """For a waiting job, given the states of the jobs it waits for (a missing one was purged,
    so it had ended): ``JobCancelled`` if one it needs failed or was cancelled, ``JobReleased``
    once every one has ended as needed, else None (still waiting)."""
    if row.state != WAITING:
        return None
    done = True
    for dep, ignore_failure in dependencies(row):
        state = states.get(dep, SUCCEEDED)
        if state in (FAILED, CANCELLED) and not ignore_failure:
            return JobCancelled(job_id=row.id, ts=now, reason=f"job {dep} it waited for {state}")
        done = done and state in FINISHED
    return JobReleased(job_id=row.id, ts=now) if done else None


def callbacks(before: GroupRow, after: GroupRow, now: float) -> list[JobDispatched]:
    """The callback jobs a group's change calls for: ``failure`` when it turns failed,
    ``finally`` when its last job ends, ``success`` then if none failed (or failures are
    allowed); each at most once."""
    due = []
    if after.state == "failed" and before.state != "failed" and not after.fired_failure:
        due.append("failure")
    if after.pending <= 0 < before.pending:
        if after.state != "failed" and not after.fired_success:
            due.append("success")
        if not after.fired_finally:
            due.append("finally")
    if not due:
        return []
    return [JobDispatched(ts=now, name=c.name, queue=c.queue, payload=c.payload,
                          priority=c.priority, run_at=now, tries=c.tries, backoff=c.backoff,
                          timeout=c.timeout, callback_of=f"{after.id}:{c.on}")
            for c in _callbacks.decode(after.callbacks) if c.on in due]
