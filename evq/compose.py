"""Composing jobs: chains, workflows (dependency graphs) and batches.

Each is a group: a ``WorkflowCreated`` or ``BatchCreated`` event whose position is the group's
id, and its jobs, dispatched in the same commit and naming it. A workflow's job that depends on
others is dispatched waiting; the store releases it when they have succeeded (or ended, for an
edge that ignores failure) and cancels it when one of them failed (see
:mod:`evq.projections.flow`). Callbacks are jobs too, dispatched once by the store when the group
turns failed (``on_failure``; a chain's ``catch``), or when its last job ends (``on_finally``,
and ``on_success`` if none failed or failures are allowed).

    chain = evq.chain(Fetch(url=u), Resize(size=64), Upload()).catch(Alert()).dispatch()
    wf = evq.workflow(); a = wf.add(A()); b = wf.add(B()); wf.add(C(), after=[a, b])
    batch = evq.batch([Import(row=r) for r in rows]).on_finally(Report()).dispatch()
    batch.wait(timeout=60)
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import msgspec
from msgspec.structs import replace

from evq.eventlog.errors import InvalidArguments, InvalidState, NotFound
from evq.eventlog.events import (
    BatchCreated,
    Callback,
    GroupCreated,
    JobDispatched,
    WorkflowCreated,
)
from evq.projections.groups import dependencies
from evq.projections.model import GroupRow

from .jobs import Job

if TYPE_CHECKING:
    from .api import Queue

class Node:
    """A job added to a workflow; its ``id`` is the job's id once the workflow is dispatched."""

    def __init__(self, workflow: Workflow, job: Job) -> None:
        self.workflow = workflow
        self.job = job
        self.id: int | None = None
        self.edges: dict[Node, bool] = {}  # the nodes it waits for: whether failure is ignored

    def after(self, *nodes: Node, ignore_failure: bool = False) -> Node:
        """Make this job wait for ``nodes`` (``ignore_failure``: run even if they fail)."""
        for node in nodes:
            if not isinstance(node, Node):
                raise InvalidArguments(f"after: {node!r} is not a node of a workflow (what "
                                       "workflow.add() returns)")
            if node.workflow is not self.workflow:
                raise InvalidArguments("after: a job can only wait for jobs of its own workflow")
            self.edges[node] = ignore_failure
        return self

    def __repr__(self) -> str:
        return f"<evq.Node {type(self.job).__name__} id={self.id}>"


class _Group:
    """What batches and workflows share: callbacks, dispatch, progress and waiting."""

    kind = ""

    def __init__(self, queue: Queue | None, name: str) -> None:
        self._queue = queue
        self.name = name
        self.id: int | None = None
        self._callbacks: list[tuple[str, Job]] = []

    @property
    def queue(self) -> Queue:
        if self._queue is None:
            from .api import default_queue

            self._queue = default_queue()
        return self._queue

    def on_success(self, job: Job) -> Any:
        """Dispatch ``job`` once every job has ended, if none failed (or failures are
        allowed)."""
        return self._on("success", job)

    def on_failure(self, job: Job) -> Any:
        """Dispatch ``job`` once, when the group fails (its first failed job)."""
        return self._on("failure", job)

    def on_finally(self, job: Job) -> Any:
        """Dispatch ``job`` once every job has ended, whatever the outcome."""
        return self._on("finally", job)

    def _on(self, on: str, job: Job) -> Any:
        if not isinstance(job, Job):
            raise InvalidArguments(f"on_{on}: the callback must be a job (an evq.Job "
                                   f"instance), not {job!r}")
        self._check_open()
        self._callbacks.append((on, job))
        return self

    def _check_open(self) -> None:
        if self.id is not None:
            raise InvalidState(f"{self.kind} {self.id} is dispatched already")

    def _created(self, q: Queue, now: float, total: int) -> dict[str, Any]:
        """The fields of the group's creation event."""
        callbacks = []
        for on, job in self._callbacks:
            e = q._dispatched(job, now, None, None, None, None)
            callbacks.append(Callback(on=on, name=e.name, queue=e.queue, payload=e.payload,
                                      priority=e.priority, tries=e.tries, backoff=e.backoff,
                                      timeout=e.timeout))
        return {"ts": now, "total": total, "name": self.name, "callbacks": callbacks}

    def _append(self, created: GroupCreated, layers: Iterable[Any]) -> None:
        """Append the creation event, then each layer's dispatches (a function of the group's
        id and what is dispatched so far), all in one transaction."""
        store = self.queue.store
        with store.log.transaction():
            gid = store.append([created])[0].seq
            for layer in layers:
                events = layer(str(gid))
                for record, target in zip(store.append(events), layer.targets, strict=True):
                    target.id = record.seq
        self.id = gid

    def status(self) -> dict[str, Any]:
        """The group's progress (what ``evq batch ID --json`` prints)."""
        if self.id is None:
            raise InvalidState(f"the {self.kind} is not dispatched yet")
        return self.queue.group(self.id)

    def wait(self, timeout: float | None = None) -> dict[str, Any]:
        """Block until every job of the group has ended; returns :meth:`status`. Raises
        ``TimeoutError`` after ``timeout`` seconds."""
        if self.id is None:
            raise InvalidState(f"the {self.kind} is not dispatched yet")
        gid = self.id
        self.queue.wait_for(lambda: _finished(self.queue.store.groups.get(gid)), timeout,
                            f"{self.kind} {gid} has not finished")
        return self.status()

    async def await_done(self, timeout: float | None = None) -> dict[str, Any]:
        """:meth:`wait`, without blocking the event loop."""
        return await asyncio.to_thread(self.wait, timeout)


def _finished(row: GroupRow | None) -> bool:
    return row is not None and row.finished_at is not None


class _Layer:
    """The dispatches of one layer of a workflow (jobs whose dependencies are in earlier
    layers); called with the group's id once it is known."""

    def __init__(self, build: Any, targets: list[Any]) -> None:
        self.build = build
        self.targets = targets

    def __call__(self, gid: str) -> list[JobDispatched]:
        return self.build(gid)


class Workflow(_Group):
    """A graph of jobs: each starts once the jobs it waits for have succeeded; a failed one
    cancels what waits for it (unless that edge ignores failure)."""

    kind = "workflow"

    def __init__(self, queue: Queue | None = None, *, name: str = "") -> None:
        super().__init__(queue, name)
        self.nodes: list[Node] = []

    def add(self, job: Job, *, after: Sequence[Node] = (), ignore_failure: bool = False) -> Node:
        """Add a job that waits for the jobs ``after`` (nodes this method returned)."""
        if not isinstance(job, Job):
            raise InvalidArguments(f"add: {job!r} is not a job (an evq.Job instance)")
        self._check_open()
        node = Node(self, job)
        node.after(*after, ignore_failure=ignore_failure)
        self.nodes.append(node)
        return node

    @property
    def job_ids(self) -> list[int]:
        """The ids of its jobs, in the order they were added (once dispatched)."""
        return [n.id for n in self.nodes if n.id is not None]

    def dispatch(self) -> Workflow:
        """Dispatch every job (the ones that wait, waiting) in one transaction."""
        self._check_open()
        if not self.nodes:
            raise InvalidArguments(f"a {self.kind} needs at least one job")
        q = self.queue
        layers = _layers(self.nodes)
        now = time.time()
        first = {n: q._dispatched(n.job, now, None, None, None, None) for n in self.nodes}
        created = WorkflowCreated(**self._created(q, now, len(self.nodes)), kind=self.kind)

        def build(layer: list[Node]) -> _Layer:
            def events(gid: str) -> list[JobDispatched]:
                return [replace(first[n], workflow_id=gid,
                                after=[d.id for d, ignore in n.edges.items() if not ignore],
                                after_finished=[d.id for d, ignore in n.edges.items() if ignore])
                        for n in layer]
            return _Layer(events, layer)

        self._append(created, [build(layer) for layer in layers])
        return self


def _layers(nodes: list[Node]) -> list[list[Node]]:
    """The nodes in layers: each node after every node it waits for (Kahn's algorithm);
    a cycle is an error."""
    depth: dict[Node, int] = {}
    waiting = {n: len(n.edges) for n in nodes}
    dependents: dict[Node, list[Node]] = {n: [] for n in nodes}
    for n in nodes:
        for d in n.edges:
            dependents[d].append(n)
    ready = [n for n in nodes if not n.edges]
    while ready:
        n = ready.pop()
        depth[n] = max((depth[d] + 1 for d in n.edges), default=0)
        for m in dependents[n]:
            waiting[m] -= 1
            if not waiting[m]:
                ready.append(m)
    if len(depth) < len(nodes):
        stuck = ", ".join(type(n.job).__name__ for n in nodes if n not in depth)
        raise InvalidArguments(f"the workflow has a cycle: {stuck} wait for each other")
    out: list[list[Node]] = [[] for _ in range(max(depth.values()) + 1)]
    for n in nodes:
        out[depth[n]].append(n)
    return out


class Chain(Workflow):
    """Jobs that run one after another; the first that fails cancels the rest and dispatches
    the ``catch`` job."""

    kind = "chain"

    def __init__(self, jobs: Iterable[Job], queue: Queue | None = None, *,
                 name: str = "") -> None:
        super().__init__(queue, name=name)
        previous: list[Node] = []
        for job in jobs:
            previous = [self.add(job, after=previous)]

    def catch(self, job: Job) -> Chain:
        """Dispatch ``job`` if the chain stops on a failure."""
        return self.on_failure(job)  # type: ignore[no-any-return]


class Batch(_Group):
    """Jobs that run in parallel, with callbacks when the batch fails or ends; its progress is
    the ``groups`` row (``status()``, ``evq batch ID``)."""

    kind = "batch"

    def __init__(self, jobs: Iterable[Job], queue: Queue | None = None, *,
                 name: str = "") -> None:
        super().__init__(queue, name)
        self.jobs = list(jobs)
        for job in self.jobs:
            if not isinstance(job, Job):
                raise InvalidArguments(f"batch: {job!r} is not a job (an evq.Job instance)")
        self._allow_failures = False
        self.job_ids: list[int] = []

    def allow_failures(self, allow: bool = True) -> Batch:
        """Let jobs fail without failing the batch: ``on_success`` then runs at the end."""
        self._check_open()
        self._allow_failures = allow
        return self

    def dispatch(self) -> Batch:
        """Dispatch the batch and every job of it, in one transaction."""
        self._check_open()
        if not self.jobs:
            raise InvalidArguments("a batch needs at least one job")
        q = self.queue
        now = time.time()
        events = [q._dispatched(j, now, None, None, None, None) for j in self.jobs]
        created = BatchCreated(**self._created(q, now, len(events)),
                               allow_failures=self._allow_failures)
        targets = [_Id() for _ in events]
        layer = _Layer(lambda gid: [replace(e, batch_id=gid) for e in events], targets)
        self._append(created, [layer])
        self.job_ids = [t.id for t in targets]  # type: ignore[misc]
        return self


class _Id:
    id: int | None = None


def group_status(q: Queue, gid: int) -> dict[str, Any]:
    """A group's progress as ``evq batch``/``evq workflow --json`` print it; a workflow's
    with each job's state and what it waits for."""
    row = q.store.groups.get(gid)
    if row is None:
        raise NotFound(f"no batch or workflow {gid!r}")
    out = {"id": row.id, "kind": row.kind, "name": row.name, "state": row.state,
           "total": row.total, "succeeded": row.succeeded, "failed": row.failed,
           "cancelled": row.cancelled, "pending": row.pending,
           "allow_failures": bool(row.allow_failures), "created_at": row.created_at,
           "finished_at": row.finished_at,
           "callbacks": [{"on": c["on"], "name": c["name"]}
                         for c in msgspec.json.decode(row.callbacks)]}
    if row.kind != "batch":
        out["jobs"] = [{"id": j.id, "name": j.name, "state": j.state,
                        "after": [d for d, _ in dependencies(j)],
                        "ignore_failure": [d for d, ignore in dependencies(j) if ignore]}
                       for j in q.store.tables.members(str(gid))]
    return out


def chain(*jobs: Job, name: str = "") -> Chain:
    """Jobs to run one after another, on the default connection (``q.chain`` for another)."""
    return Chain(jobs, name=name)


def batch(jobs: Iterable[Job], *, name: str = "") -> Batch:
    """Jobs to run in parallel as one batch, on the default connection (``q.batch``)."""
    return Batch(jobs, name=name)


def workflow(*, name: str = "") -> Workflow:
    """An empty workflow on the default connection (``q.workflow``): ``add`` jobs, then
    ``dispatch``."""
    return Workflow(name=name)
