"""Small helpers the test modules share."""

from __future__ import annotations

import evq


def event_types(q: evq.Queue, job_id: int) -> list[str]:
    """The type names of a job's events, in log order."""
    return [r.event.__struct_config__.tag for r in q.history(job_id)]
