"""``evq.testing.fake()``: dispatches recorded instead of stored, and assertions on them (as
Laravel's ``Queue::fake()``).

Every dispatch (``Queue.dispatch``, ``dispatch_many``, ``Job.dispatch``, function jobs, chains,
workflows and batches, on any queue) passes through ``Queue._append_dispatches``, which hands it
to the active fake: so nothing is written and no worker runs it. ``dispatch_sync`` and
:func:`evq.testing.run` still run their job (what that job dispatches is recorded).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import msgspec

from evq import api
from evq.eventlog.errors import InvalidArguments
from evq.eventlog.events import Event, JobDispatched
from evq.jobs import FunctionJob, Job
from evq.workers import registry


@dataclass(frozen=True)
class Dispatched:
    """One recorded dispatch: the job and its options (as the store would have had them)."""

    id: int  # what the dispatch returned: negative, never the id of a stored job
    job: Job
    queue: str
    priority: int
    delay: float  # seconds from the dispatch until the job is due (to the microsecond)
    at: float  # when the job is due (unix time)
    group: int | None  # the chain, workflow or batch it is part of
    event: JobDispatched

    def __str__(self) -> str:
        due = f", delay={self.delay:g}" if self.delay else ""
        return f"{self.job!r} (queue={self.queue!r}, priority={self.priority}{due})"


class Fake:
    """The dispatches recorded while :func:`fake` is active, and assertions on them."""

    def __init__(self, queue: api.Queue) -> None:
        self.queue = queue  # the default connection meanwhile (an empty memory store)
        self.events: list[tuple[int, Event]] = []  # every recorded event, with its id
        self._lock = threading.Lock()

    def record(self, events: Sequence[Event]) -> list[int]:
        """Record dispatch events; returns their (negative) ids."""
        with self._lock:
            first = len(self.events) + 1
            self.events += [(-(first + i), e) for i, e in enumerate(events)]
        return [-(first + i) for i in range(len(events))]

    @property
    def jobs(self) -> list[Dispatched]:
        """Every recorded job, in dispatch order."""
        with self._lock:
            events = list(self.events)
        return [_dispatched(i, e) for i, e in events if isinstance(e, JobDispatched)]

    def dispatched(self, job_type: Any, **fields: Any) -> list[Dispatched]:
        """The recorded jobs of ``job_type`` (a job class or ``@evq.job`` function) whose
        fields equal ``fields``, in dispatch order."""
        name = _job_class(job_type, fields).job_name
        return [d for d in self.jobs if d.event.name == name
                and all(getattr(d.job, k) == v for k, v in fields.items())]

    def assert_dispatched(self, job_type: Any, **fields: Any) -> list[Dispatched]:
        """Fail unless a job of ``job_type`` (with these field values) was dispatched; returns
        the ones that were."""
        found = self.dispatched(job_type, **fields)
        if not found:
            raise AssertionError(f"{_wanted(job_type, fields)} was not dispatched; "
                                 f"{self._instead()}")
        return found

    def assert_not_dispatched(self, job_type: Any, **fields: Any) -> None:
        """Fail if a job of ``job_type`` (with these field values) was dispatched."""
        found = self.dispatched(job_type, **fields)
        if found:
            raise AssertionError(f"{_wanted(job_type, fields)} was dispatched "
                                 f"{len(found)} times:{_lines(found)}")

    def assert_dispatched_times(self, job_type: Any, times: int, **fields: Any) -> None:
        """Fail unless exactly ``times`` jobs of ``job_type`` (with these values) were
        dispatched."""
        found = self.dispatched(job_type, **fields)
        if len(found) != times:
            raise AssertionError(f"{_wanted(job_type, fields)} was dispatched {len(found)} "
                                 f"times, not {times}; {self._instead()}")

    def assert_nothing_dispatched(self) -> None:
        """Fail if any job was dispatched."""
        found = self.jobs
        if found:
            raise AssertionError(f"{len(found)} jobs were dispatched:{_lines(found)}")

    def _instead(self) -> str:
        found = self.jobs
        return f"dispatched instead:{_lines(found)}" if found else "nothing was dispatched"


@contextmanager
def fake() -> Iterator[Fake]:
    """Record every dispatch of this process instead of storing it, until the block ends;
    meanwhile the default connection is an empty memory store (so ``Job.dispatch()`` opens
    no database). Yields the :class:`Fake` to assert on."""
    queue = api.connect("memory://")
    recorder = Fake(queue)
    previous_queue = api.use(queue)
    previous = api.record_dispatches(recorder.record)
    try:
        yield recorder
    finally:
        api.record_dispatches(previous)
        api.use(previous_queue)
        queue.close()


def _job_class(job_type: Any, fields: dict[str, Any]) -> type[Job]:
    """The job class ``job_type`` names; refuses anything else, and fields it does not have."""
    cls = job_type.job_type if isinstance(job_type, FunctionJob) else job_type
    if not (isinstance(cls, type) and issubclass(cls, Job)):
        raise InvalidArguments(f"{job_type!r} is not a job type: give an evq.Job subclass or "
                               "an @evq.job function")
    unknown = sorted(fields.keys() - set(cls.__struct_fields__))
    if unknown:
        raise InvalidArguments(f"{cls.job_name} has no field {', '.join(unknown)} (its fields: "
                               f"{', '.join(cls.__struct_fields__) or 'none'})")
    return cls


def _dispatched(job_id: int, e: JobDispatched) -> Dispatched:
    group = e.workflow_id or e.batch_id
    return Dispatched(
        id=job_id, job=msgspec.json.decode(e.payload, type=registry.lookup(e.name)),
        queue=e.queue, priority=e.priority, delay=round(e.run_at - e.ts, 6), at=e.run_at,
        group=None if group is None else int(group), event=e)


def _wanted(job_type: Any, fields: dict[str, Any]) -> str:
    name = _job_class(job_type, {}).job_name
    return f"{name}({', '.join(f'{k}={v!r}' for k, v in fields.items())})" if fields else name


def _lines(found: list[Dispatched]) -> str:
    return "".join(f"\n  {d}" for d in found)
