"""The worker: claims jobs in batches, runs them on threads, and writes outcomes in groups.

One thread (the caller of :meth:`Worker.run`) is the only one that writes to the store: each
pass it appends the events the runner threads produced since the last pass (group commit),
claims more jobs when the local backlog runs low (one transaction for a whole batch), extends the
leases it holds and says it is alive (heartbeat: one ``WorkerHeartbeat`` per interval, not per
job), settles leases that other workers let expire, times out sync jobs that overran, and (every
``CANCEL_CHECK`` seconds while it holds jobs, one read) looks for cancel requests. Runner
threads only run jobs, themselves or (``pool="process"``) through a child process each. While
nothing is ready the loop sleeps until the store changes (a watch on the database files, or a
commit in this process), the next delayed job is due (whenever a slot is free, even while
other jobs run), or the fallback poll (``sleep``) comes round. Until its first job has finished
a worker claims no more than it can start, so that workers that start together share long jobs.
A claim that finds fewer jobs than it asked for is not repeated until the store changes or a time
comes round, and the idle runners start what it found before this thread goes on.

A stop releases the claimed jobs that have not started at once and waits ``grace`` seconds for
the running ones: then jobs on threads are left to their leases' expiry, and process-pool jobs
are killed (their attempts fail). Any error while a job is loaded or run fails that attempt;
it never ends a runner thread.

A crash loses at most the outcomes not yet written (one pass): those jobs run again after their
leases expire, which is within at-least-once delivery.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import TypeVar

from msgspec.structs import replace

from evq.eventlog.errors import EvqError, StoreCorrupt, StoreError
from evq.eventlog.events import (
    Event,
    JobCancelled,
    JobFailed,
    JobLeased,
    JobStarted,
    JobTimedOut,
    LeaseExtended,
    LeaseReleased,
    WorkerHeartbeat,
    WorkerStarted,
    WorkerStopped,
)
from evq.projections.model import HELD, LEASED, PENDING, JobRow, malformed
from evq.projections.store import Store, Watch

from . import registry
from .control import Control
from .embedded import Running
from .execute import AsyncRunner, Outcome, failure, load_or_none, run, timed_out
from .middleware import Middleware, checked
from .procpool import ProcessPool
from .retry import after_lease_expired

log = logging.getLogger("evq.worker")
_T = TypeVar("_T")
_F = TypeVar("_F")

MAX_BATCH = 256  # jobs claimed in one transaction, at most
PREFETCH_SECONDS = 0.05  # claim about this much work ahead of the runners (none until the
                         # first job has finished: until then the worker cannot tell how long
                         # jobs take, and other workers may be idle)
CANCEL_CHECK = 0.5  # seconds between reads of the cancel requests of the jobs held here
HANDOFF_SECONDS = 0.005  # at most this long the loop waits for idle runners to start the jobs
                         # it claimed for them


class MalformedRow(Exception):
    """A ``jobs`` row has values the worker cannot use (written by another program)."""


class _Slot:
    __slots__ = ("abandoned", "control", "deadline", "row", "started")

    def __init__(self, row: JobRow, started: float, control: Control) -> None:
        self.row = row
        self.started = started
        self.control = control
        self.deadline = (started + row.timeout) if row.timeout else None
        self.abandoned = False

    def deadline_by_loop(self) -> None:
        """An async job: its event loop enforces the timeout, not the worker's loop."""
        self.deadline = None


class Worker:
    """Runs jobs from ``queues`` (in that order of precedence) of one store.

    ``run()`` blocks until the worker stops: after ``max_jobs`` jobs, when nothing is left to do
    with ``stop_when_empty``, or on ``stop()``; ``start()`` runs it on a thread instead.
    ``pool`` is ``"thread"`` (or ``"async"``, the same) or ``"process"`` (see :mod:`.procpool`).
    ``middleware`` (a list of :class:`evq.Middleware`) wraps every job, outside the job class's
    own middleware.
    """

    def __init__(self, store: Store, *, queues: Sequence[str] = ("default",),
                 concurrency: int = 1, max_jobs: int | None = None,
                 stop_when_empty: bool = False, sleep: float = 3.0, lease: float = 30.0,
                 grace: float = 30.0, name: str | None = None, pool: str = "thread",
                 on_progress: Callable[[int], None] | None = None,
                 middleware: Sequence[Middleware] = ()) -> None:
        if concurrency < 1:
            raise EvqError("concurrency must be at least 1")
        if pool not in ("thread", "async", "process"):
            raise EvqError(f"unknown pool {pool!r}: use thread, async or process")
        if lease <= 0 or sleep <= 0:
            raise EvqError("lease and sleep must be positive numbers of seconds")
        self.store = store
        self.queues = list(queues)
        self.concurrency = concurrency
        self.max_jobs = max_jobs
        self.stop_when_empty = stop_when_empty
        self.sleep = sleep
        self.lease = lease
        self.grace = grace
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:{id(self) & 0xFFFF:x}"
        self.on_progress = on_progress
        self.pool = pool
        self.middleware = checked(middleware, "Worker")
        self.claimed = 0  # jobs claimed so far
        self.done = 0  # attempts finished so far
        self._cv = threading.Condition()
        self._todo: deque[JobRow] = deque()
        self._running: dict[int, _Slot] = {}
        self._outbox: list[Event] = []
        self._poked = True
        self._drained = False  # the last claim found less than it asked for
        self._handing_off = False  # the loop waits for idle runners to start what it claimed
        self._starts = 0  # jobs taken by runners so far
        self._idle = False
        self._stopping = False
        self._hard_stop = False
        self._stop_by = float("inf")  # when the grace period of a stop ends
        self._avg_duration: float | None = None  # of attempts here, once one has finished
        self._leases: dict[int, float] = {}  # job id -> lease expiry, for jobs held here
        self._held: dict[int, JobRow] = {}  # the rows of the jobs held here, as last written
        self._async: AsyncRunner | None = None
        self._procs = ProcessPool(self.middleware) if pool == "process" else None
        self._threads: list[threading.Thread] = []
        self._watcher: Watch | None = None
        self._next_heartbeat = 0.0
        self._next_expiry_check = 0.0
        self._next_cancel_check = 0.0
        self._write_failures = 0  # writes refused in a row (locked, disk full)

    # -- control -------------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop claiming and finish what runs (within ``grace``); a second call stops at once."""
        with self._cv:
            self._hard_stop = self._stopping
            if not self._stopping:
                self._stopping = True
                self._stop_by = time.time() + self.grace
            self._cv.notify_all()

    def start(self) -> Running:
        """Run this worker on a thread of its own, for embedding in an application; returns the
        handle that stops it (also as ``with`` or ``async with``)."""
        return Running(self)

    def poke(self) -> None:
        """Wake the idle loop: something in the store may have changed."""
        with self._cv:
            self._poked = True
            self._cv.notify_all()

    # -- the loop ------------------------------------------------------------------------------

    def run(self) -> int:
        """Work until stopped; returns the number of attempts finished."""
        self._watcher = self.store.watch(self.queues, self.poke)
        self._write(lambda: self.store.append([WorkerStarted(
            ts=time.time(), worker=self.name, host=socket.gethostname(), pid=os.getpid(),
            queues=self.queues, concurrency=self.concurrency, pool=self.pool,
            lease=self.lease, names=registry.names())]), None)
        self._next_heartbeat = time.time() + self.lease / 3
        for i in range(self.concurrency):
            self._spawn(i)
        try:
            self._loop()
        finally:
            self._shutdown()
        return self.done

    @property
    def idle(self) -> bool:
        """True while the worker waits with no job in hand and no outcome left to write."""
        with self._cv:
            return self._idle

    @property
    def stopped_at_once(self) -> bool:
        """True once a second ``stop()`` asked it to stop without waiting for running jobs."""
        return self._hard_stop

    def _loop(self) -> None:
        while True:
            now = time.time()
            busy = self._flush()
            self._housekeeping(now)
            if self._hard_stop:
                return
            with self._cv:
                if self._stopping:
                    self._release_unstarted(now)
                    if not self._running or now >= self._stop_by:
                        return
                room = self._claim_limit(len(self._todo) + len(self._running))
                # once a claim found less than it asked for, the next waits for a wake-up (a
                # change in the store, or a time: a delayed job due, the fallback poll)
                limit = room if self._poked or not self._drained else 0
                if limit:
                    self._poked = False  # this claim sees what a wake-up so far was about
            if limit:
                self._drained = not self._claim(limit, now)
                if not self._drained:
                    continue
            with self._cv:
                idle = not self._todo and not self._running and not self._outbox
                if idle and (self.stop_when_empty or self._quota_used() or self._stopping):
                    return
                if busy or self._outbox or (self._poked and room):
                    continue
                if idle:  # copy the WAL back while nothing else is to do, so that it stays small
                    self.store.log.checkpoint("PASSIVE")
                self._idle = idle
                if self._watcher and room:  # a change in the store may bring work
                    self._watcher.arm()  # (pokes at once if a change came while disarmed)
                if not (self._poked and room) and not self._cv.wait(
                        self._wait_time(now, idle, room > 0)):
                    self._drained = False  # woken by the clock
                self._idle = False
            if self._watcher:
                self._watcher.disarm()

    def _claim_limit(self, held: int) -> int:
        if self._stopping or self._quota_used():
            return 0
        avg = self._avg_duration
        prefetch = 0 if avg is None else min(MAX_BATCH, int(PREFETCH_SECONDS / max(avg, 1e-5)))
        want = self.concurrency * (1 + prefetch) - held
        if held >= self.concurrency and want < self.concurrency:
            return 0  # enough in hand: claim again in bigger batches later
        if self.max_jobs is not None:
            want = min(want, self.max_jobs - self.claimed)
        return max(0, min(want, MAX_BATCH))

    def _quota_used(self) -> bool:
        return self.max_jobs is not None and self.claimed >= self.max_jobs

    def _wait_time(self, now: float, idle: bool, can_claim: bool) -> float:
        """Seconds until the loop has something to do by the clock: a timeout, a heartbeat, the
        end of a stop's grace period, or (with room for another job) the next due job."""
        wake = now + (self.sleep if idle else min(self.sleep, self.lease / 3))
        for slot in self._running.values():
            if slot.deadline is not None:
                wake = min(wake, slot.deadline)
        if can_claim:
            due = self._next_due()
            if due is not None:
                wake = min(wake, due)
        if self._leases:
            wake = min(wake, self._next_cancel_check)
        wake = min(wake, self._next_heartbeat, self._next_expiry_check, self._stop_by)
        return max(0.0, wake - now)

    def _next_due(self) -> float | None:
        try:
            due = self.store.tables.next_due(self.queues)
            expiry = self.store.tables.next_lease_expiry()
        except StoreError as exc:
            log.warning("cannot read the store: %s", exc)
            return None
        times = [t for t in (due, expiry) if t is not None]
        return min(times) if times else None

    # -- claiming ------------------------------------------------------------------------------

    def _claim(self, limit: int, now: float) -> bool:
        """Claim up to ``limit`` jobs; returns False if the store had fewer ready (the next
        claim then waits for a wake-up), True if more may be ready."""
        if self._write_failures and self._outbox:
            return True  # outcomes first (new claims would take the space they need): the
            # queue is not known to be empty
        lease_until = now + self.lease

        def lease(row: JobRow) -> list[Event]:
            problem = malformed(row)
            if problem is None and row.cancel_requested is not None:  # asked while pending again
                return [JobCancelled(job_id=row.id, ts=now, reason=row.cancel_requested)]
            if problem is None:
                return [JobLeased(job_id=row.id, ts=now, worker=self.name,
                                  attempt=row.attempt + 1,
                                  lease_expires=max(lease_until, now + (row.timeout or 0) + 1))]
            return self._reject(row, now, problem)

        handed: list[JobRow] = []

        def start(rows: list[JobRow]) -> None:  # maybe before the claim's write: Store.claim
            handed.extend(r for r in rows if r.state == LEASED and r.worker == self.name)
            if handed:
                self._hand(handed, lease_until)

        def claim() -> list[JobRow]:
            try:
                return self.store.claim(self.queues, now, limit, lease, registry.names(), start)
            except StoreError:
                self._take_back(handed)  # (what started meanwhile will end stale: no lease)
                raise

        picked = self._write(claim, None)
        if picked is None:
            return True  # the store refused (locked, full): not empty; try again after a pause
        rows = [r for r in picked if r.state == LEASED and r.worker == self.name]
        if not rows:  # only malformed rows, failed here: there may be good ones behind them
            return any(r.state != PENDING for r in picked)
        self._held.update((r.id, r) for r in rows)
        # fewer than asked: nothing more was ready, so the next claim waits for a wake-up (or
        # for room after an outcome) instead of asking again at once while the jobs start
        return len(picked) >= limit

    def _hand(self, rows: list[JobRow], lease_until: float) -> None:
        """Give claimed jobs to the runners, and let idle ones start theirs before this thread
        goes on: until it blocks it holds the interpreter, and they would wait for it."""
        with self._cv:
            self.claimed += len(rows)
            for r in rows:
                self._leases[r.id] = r.lease_expires or lease_until
            idle_runners = self.concurrency - len(self._running) - len(self._todo)
            self._todo.extend(rows)
            self._cv.notify_all()
            if idle_runners > 0:
                starts = self._starts + min(idle_runners, len(rows))
                self._handing_off = True
                self._cv.wait_for(lambda: self._starts >= starts or self._stopping,
                                  HANDOFF_SECONDS)
                self._handing_off = False

    def _take_back(self, rows: list[JobRow]) -> None:
        """The claim that handed out ``rows`` failed: those not started yet are dropped."""
        with self._cv:
            for r in rows:
                self._leases.pop(r.id, None)
                if r in self._todo:
                    self._todo.remove(r)
                    self.claimed -= 1

    def _reject(self, row: JobRow, now: float, problem: str) -> list[Event]:
        """The events that fail a malformed row's job at once, as it is claimed (or none, if
        even its attempt number is unusable: then it stays as it is, for an operator)."""
        log.error("%s: failing the job", problem)
        if type(row.attempt) is not int or type(row.failures) is not int:
            return []
        claimed = replace(row, attempt=row.attempt + 1)
        return [JobLeased(job_id=row.id, ts=now, worker=self.name, attempt=claimed.attempt,
                          lease_expires=now),
                *failure(claimed, now, MalformedRow(problem), final=True).events]

    # -- writing outcomes ----------------------------------------------------------------------

    def _flush(self) -> bool:
        with self._cv:
            events, self._outbox = self._outbox, []
        if events and self._write(lambda: self.store.append(events, self._held), None) is None:
            with self._cv:  # keep them for the next pass
                self._outbox[:0] = events
            return False
        for job_id in {e.job_id for e in events}:
            row = self._held.get(job_id)
            if row is not None and (row.state not in HELD or row.worker != self.name):
                del self._held[job_id]
        return bool(events)

    def _write(self, fn: Callable[[], _T], failed: _F) -> _T | _F:
        """Run one write; if the store refuses it for now (locked, full), wait a backoff that
        doubles per failure in a row and return ``failed``. A damaged store stops the worker at
        once: nothing it runs could be recorded."""
        try:
            result = fn()
        except StoreCorrupt:
            with self._cv:
                self._hard_stop = True
                self._cv.notify_all()
            raise
        except StoreError as exc:
            self._write_failures += 1
            log.warning("store write failed (%d in a row), will retry, claiming no jobs "
                        "meanwhile: %s", self._write_failures, exc)
            with self._cv:
                self._cv.wait(min(0.05 * 2 ** min(self._write_failures, 10),
                                  max(self.sleep, 1.0)))
            return failed
        if self._write_failures:
            log.warning("store writes work again, after %d failures", self._write_failures)
            self._write_failures = 0
        return result

    # -- leases and timeouts -------------------------------------------------------------------

    def _housekeeping(self, now: float) -> None:
        self._time_out_overruns(now)
        if now >= self._next_heartbeat:
            self._next_heartbeat = now + self.lease / 3
            self._heartbeat(now)
        if now >= self._next_expiry_check:
            self._next_expiry_check = now + self.lease / 2
            self._write(lambda: self.store.settle_expired(
                now, lambda row: after_lease_expired(row, now)), None)
        if self._leases and now >= self._next_cancel_check and not self._write_failures:
            self._next_cancel_check = now + CANCEL_CHECK  # (not while the store refuses writes)
            self._cancel_requested(now)

    def _heartbeat(self, now: float) -> None:
        with self._cv:
            due = [(i, t) for i, t in self._leases.items() if t - now < self.lease * 2 / 3]
            attempts = {r.id: r.attempt for r in self._todo}
            attempts.update({i: s.row.attempt for i, s in self._running.items()})
        until = now + self.lease
        events: list[Event] = [WorkerHeartbeat(ts=now, worker=self.name, done=self.done)]
        events += [LeaseExtended(job_id=i, ts=now, attempt=attempts[i],
                                             lease_expires=max(until, t))
                               for i, t in due if i in attempts]
        if self._write(lambda: self.store.append(events, self._held), None) is not None:
            with self._cv:
                for e in events:
                    if e.job_id in self._leases:
                        self._leases[e.job_id] = e.lease_expires  # type: ignore[attr-defined]

    def _cancel_requested(self, now: float) -> None:
        """Act on the cancel requests of jobs held here: one not started yet is cancelled at
        once; a running one is told (see :class:`Control`), and its attempt ends cancelled."""
        with self._cv:
            ids = list(self._leases)
        try:
            requests = self.store.tables.cancel_requests(ids)
        except StoreError as exc:
            log.warning("cannot read the store: %s", exc)
            return
        with self._cv:
            for row in [r for r in self._todo if requests.get(r.id, (0,))[0] == r.attempt]:
                self._todo.remove(row)
                self._leases.pop(row.id, None)
                self._outbox.append(JobCancelled(job_id=row.id, ts=now, attempt=row.attempt,
                                                 reason=requests[row.id][1]))
            slots = [s for i, s in self._running.items()
                     if requests.get(i, (0,))[0] == s.row.attempt]
        for slot in slots:
            slot.control.cancel(requests[slot.row.id][1])

    def _time_out_overruns(self, now: float) -> None:
        with self._cv:
            late = [s for s in self._running.values()
                    if s.deadline is not None and now >= s.deadline]
            for slot in late:
                slot.abandoned = True
                del self._running[slot.row.id]
                self._leases.pop(slot.row.id, None)
        for slot in late:  # the thread goes on in the background; a new one takes its place
            outcome = timed_out(slot.row, load_or_none(slot.row))
            hook, outcome.hook = outcome.hook, None
            self._finish(outcome)
            if hook is not None:  # the job's own code: never on this thread
                threading.Thread(target=hook, name="evq-timed-out", daemon=True).start()
            self._spawn(len(self._threads))

    # -- runner threads ------------------------------------------------------------------------

    def _spawn(self, index: int) -> None:
        t = threading.Thread(target=self._runner, name=f"evq-runner-{index}", daemon=True)
        self._threads.append(t)
        t.start()

    def _runner(self) -> None:
        while (slot := self._take()) is not None:
            outcome = self._attempt(slot)
            with self._cv:
                if slot.abandoned:
                    # timed out meanwhile: record what happened (a stale outcome changes nothing)
                    self._outbox.extend(outcome.events if outcome else [])
                    return
                self._running.pop(slot.row.id, None)
                self._leases.pop(slot.row.id, None)
            took = time.time() - slot.started
            avg = self._avg_duration
            self._avg_duration = took if avg is None else avg + (took - avg) * 0.1
            if outcome is not None:
                self._finish(outcome)

    def _take(self) -> _Slot | None:
        """The next job to run, started (None once the worker stops)."""
        with self._cv:
            while not self._todo and not self._stopping:
                self._cv.wait()
            if self._stopping:
                return None
            row = self._todo.popleft()
            slot = self._running[row.id] = _Slot(row, time.time(), Control(row, self._report))
            self._starts += 1
            if self._handing_off or not self._outbox:  # (the loop waits for the start, or
                self._cv.notify_all()  # for the first of the events it writes in a group)
            self._outbox.append(JobStarted(job_id=row.id, ts=slot.started, attempt=row.attempt,
                                           worker=self.name))
            return slot

    def _attempt(self, slot: _Slot) -> Outcome | None:
        """Run one attempt. Whatever goes wrong in here (a bug of ours included) fails the
        attempt instead of killing the runner thread; None if even that cannot be said (the
        job's lease is then left to expire)."""
        row = slot.row
        try:
            if self._procs is not None:
                return self._procs.run(row, slot.started, slot.deadline_by_loop, slot.control)
            return run(row, slot.started, self._async_runner, slot.deadline_by_loop,
                       middleware=self.middleware, control=slot.control)
        except BaseException as exc:
            log.exception("running %s job %d failed", row.name, row.id)
            try:
                return failure(row, slot.started, exc)
            except Exception:
                log.exception("cannot record the failure of job %d: its lease will expire",
                              row.id)
                return None

    def _report(self, events: list[Event]) -> None:
        """A running job's progress reports: written with the next group commit."""
        with self._cv:
            if not self._outbox:
                self._cv.notify_all()
            self._outbox.extend(events)

    def _finish(self, outcome: Outcome) -> None:
        for e in outcome.events:  # what -v shows: each attempt that failed or timed out
            if isinstance(e, JobFailed):
                log.info("job %d failed (attempt %d): %s: %s", e.job_id, e.attempt,
                         e.error_type, e.message)
            elif isinstance(e, JobTimedOut):
                log.info("job %d timed out (attempt %d)", e.job_id, e.attempt)
        with self._cv:
            if not self._outbox:
                self._cv.notify_all()
            self._outbox.extend(outcome.events)
            self.done += 1
        if outcome.hook is not None:
            outcome.hook()
        if self.on_progress:
            try:
                self.on_progress(self.done)
            except Exception:
                log.exception("on_progress raised")

    def _async_runner(self) -> AsyncRunner:
        with self._cv:
            if self._async is None:
                self._async = AsyncRunner()
            return self._async

    # -- stopping ------------------------------------------------------------------------------

    def _release_unstarted(self, now: float) -> None:
        """Give back the claimed jobs that no runner has started (under ``_cv``)."""
        for row in self._todo:
            self._outbox.append(LeaseReleased(job_id=row.id, ts=now, attempt=row.attempt))
            self._leases.pop(row.id, None)
        self._todo.clear()

    def _shutdown(self) -> None:
        with self._cv:
            self._stopping = True
            self._release_unstarted(time.time())
            self._cv.notify_all()
        if not self._hard_stop:
            if self._procs and self._running:  # the grace period is over: kill them
                self._procs.close()
                with self._cv:  # their runners report them as failed
                    self._cv.wait_for(lambda: not self._running, timeout=1.0)
            # thread jobs still running are left to their leases' expiry, as after a crash
            with self._cv:
                self._outbox.append(WorkerStopped(ts=time.time(), worker=self.name,
                                                  done=self.done))
            with contextlib.suppress(EvqError):
                self._flush()
        if self._watcher:
            self._watcher.close()
            self._watcher = None
        if self._async:
            self._async.close()
        if self._procs:
            self._procs.close()
