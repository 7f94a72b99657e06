"""Scheduled job types of the schedule tests, passed to ``evq schedule --app tests.sched_jobs``.

Import this module as ``tests.sched_jobs`` only (a second import under another name would declare
the same schedules again for other classes, which is refused). Both schedules tick every minute:
one catches up a missed tick once, the other skips missed ticks.
"""

from __future__ import annotations

import evq


class SchedOnce(evq.Job):
    schedule = "* * * * *"
    missed = "once"

    def handle(self) -> None:
        pass


class SchedSkip(evq.Job):
    schedule = "* * * * *"
    missed = "skip"

    def handle(self) -> None:
        pass


class SchedCleanup(evq.Job):
    days: int

    def handle(self) -> int:
        return self.days


evq.schedule("0 8 * * *", SchedCleanup(days=30), name="sched-cleanup", timezone="Europe/Paris")
