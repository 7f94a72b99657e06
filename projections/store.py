"""The store: the log and its projections, written together in one transaction.

A store is a set of named operations: append events (and apply them), claim ready jobs, settle
expired leases, change jobs by id or state (operators' commands), read rows, counts and the log,
and watch for work. Each write is one transaction that picks the rows it concerns, asks the caller
for the events (the rules of leases and retries stay with the workers), appends them and applies
them to the projections, so the checks it makes and the events it appends can never be split by
another writer. The transitions themselves are the pure functions of :mod:`.apply`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlsplit

from msgspec.structs import replace

from evq.eventlog import consumers
from evq.eventlog.codec import Record
from evq.eventlog.errors import ConfigError
from evq.eventlog.events import Event, JobDispatched, JobLeased, ScheduleTicked
from evq.eventlog.sqlite import SqliteLog
from evq.eventlog.sqllog import SCHEMA_VERSION, Commit, SqlLog

from . import flow
from .apply import Deltas, apply
from .groups import GroupTable, dependencies, group_events
from .limits import Gate
from .model import FINISHED, HELD, PENDING, Counts, JobRow, MinuteCounts
from .schedules import ScheduleTable, ticked
from .tables import SqlTables, row_writes
from .workers import WorkerTable, worker_events

_C = TypeVar("_C", Counts, MinuteCounts)
Select = Callable[[SqlTables], Iterable[JobRow]]
Decide = Callable[[JobRow], Sequence[Event]]
Observer = Callable[[list[tuple[Record, JobRow | None]]], None]


class Store:
    """An event log with its projection tables; opened by :func:`open_store`."""

    def __init__(self, log: SqlLog, url: str, *, upgrade: bool = True) -> None:
        """``upgrade=False``: a schema older than this evq's is an error (``evq migrate``
        upgrades it) instead of being upgraded."""
        self.log = log
        self.url = url
        self.tables = SqlTables(log)
        self.workers = WorkerTable(log)
        self.groups = GroupTable(log)
        self.schedules = ScheduleTable(log)
        self.schema_was = found = log.migrate(_create_tables(log), upgrade=upgrade)
        if 0 < found < SCHEMA_VERSION:  # derive what the new tables and columns hold
            self.rebuild()
        self._signals = log.signals()
        self._watches: list[_LocalWatch] = []
        self._observers: list[Observer] = []
        log.on_commit(self._committed)

    @classmethod
    def in_memory(cls) -> Store:
        """A new empty store in memory (``memory://``)."""
        return cls(SqliteLog(":memory:"), "memory://")

    @property
    def shared(self) -> bool:
        """Whether other processes (and machines, for a server) can open this store too."""
        return self._signals is not None

    # -- wake-ups ------------------------------------------------------------------------------

    def watch(self, queues: Sequence[str] | None, on_change: Callable[[], None]) -> Watch:
        """Call ``on_change`` (from another thread) soon after work appears in one of
        ``queues`` (a job becomes ready, or due sooner), in this process or, on a shared store,
        any other; with ``queues`` None, after every commit. Commits that make no work ready
        (claims, heartbeats, outcomes) wake nobody."""
        local = _LocalWatch(None if queues is None else frozenset(queues), on_change)
        self._watches.append(local)
        files = None
        if self._signals is not None:
            files = (self._signals.watch_all(on_change) if queues is None
                     else self._signals.watch(queues, on_change))
        return Watch(lambda: self._watches.remove(local), files)

    def observe(self, observer: Observer) -> Callable[[], None]:
        """Call ``observer`` after each commit of this process, with the events it appended,
        each with its job's row (None for events of no job); returns what stops it."""
        self._observers.append(observer)
        return lambda: self._observers.remove(observer)

    def _committed(self, commit: Commit) -> None:
        woken = commit.woken
        for w in list(self._watches):
            if w.queues is None or not w.queues.isdisjoint(woken):
                w.on_change()
        if woken and self._signals is not None:
            self._signals.announce(woken)
        notes = commit.notes
        if notes:
            for observer in list(self._observers):
                observer(notes)

    def _note(self, records: Sequence[Record], *rows: Mapping[int, JobRow]) -> None:
        """For the observers: each record with its job's row (in the first of ``rows`` that
        has it)."""
        if self._observers:
            self.log.note(self._pairs(records, *rows))

    @staticmethod
    def _pairs(records: Sequence[Record],
               *rows: Mapping[int, JobRow]) -> list[tuple[Record, JobRow | None]]:
        return [(r, next((m[r.event.job_id] for m in rows if r.event.job_id in m), None))
                for r in records]

    # -- writes --------------------------------------------------------------------------------

    def append(self, events: Sequence[Event],
               held: dict[int, JobRow] | None = None) -> list[Record]:
        """Append events and apply them to the projections, atomically; returns them as stored
        (an event appended with ``job_id`` 0 has taken its ``seq`` as its job id).

        ``held``: the caller's copies of the rows of the jobs the events concern (a worker's
        jobs), updated here to the rows after the events. If it has every one of them, the
        events are applied to the copies before the write lock is taken, and the lock is held
        only to check that no row changed meanwhile (by ``last_seq``) and to write; if one did,
        the events are applied to the rows as stored, as without ``held``.
        """
        ready = None
        if held is not None and all(e.job_id in held for e in events):
            ready = _Applied(events, held)
        elif held is None and all(_new_alone(e) for e in events):
            ready = _Applied(events, {})
        with self.log.transaction():
            if ready is not None and ready.still_current(self.tables):
                return self._append_applied(ready, held)
            rows: dict[int, JobRow] = {}
            records = self._record(events, rows)
        if held is not None:
            for job_id in {e.job_id for e in events}:
                if job_id in rows:
                    held[job_id] = rows[job_id]
                else:
                    held.pop(job_id, None)
        return records

    def dispatch(self, events: Sequence[JobDispatched], now: float) -> list[int]:
        """Append new jobs; returns their ids. A job whose ``unique_key`` is taken at ``now``
        (see :meth:`SqlTables.unique_holders`), or by an earlier job of ``events``, is not
        appended: its id is the holder's."""
        keys = sorted({e.unique_key for e in events if e.unique_key is not None})
        if not keys:
            return [r.seq for r in self.append(events)]
        with self.log.transaction():
            holders = self.tables.unique_holders(keys, now)
            new: list[JobDispatched] = []
            slots: list[int | str] = []  # per event: its index in new, or the key it gets
            firsts: dict[str, int] = {}
            for e in events:
                key = e.unique_key
                if key is not None and (key in holders or key in firsts):
                    slots.append(key)
                    continue
                if key is not None:
                    firsts[key] = len(new)
                slots.append(len(new))
                new.append(e)
            records = self._record(new, {}) if new else []
        holders.update((key, records[i].seq) for key, i in firsts.items())
        return [records[s].seq if isinstance(s, int) else holders[s] for s in slots]

    # -- named operations: each one transaction that picks jobs and appends events for them ----

    def claim(self, queues: Sequence[str], now: float, limit: int, lease: Decide,
              names: Sequence[str] | None = None,
              decided: Callable[[list[JobRow]], None] | None = None) -> list[JobRow]:
        """Lease up to ``limit`` jobs of ``queues`` that are ready at ``now`` (an earlier queue
        first; within a queue by priority, then dispatch order), of the job types ``names``
        only if given: ``lease`` gives each picked row's events (its ``JobLeased``). Jobs over
        their limits are held back (see :mod:`.limits`). Returns the rows as leased.

        ``decided``: called with the rows as leased, for a worker to start their jobs: once
        committed; on a store whose writes wait for a server (:attr:`SqlLog.remote`), as soon
        as the events are decided, before they are written, with the rows locked (their
        positions not known yet), so that the write's round trip is not on the way to the
        start. If that write fails, no lease was taken: such a job's outcome comes out stale,
        and the job runs again (at least once, as after a crash).

        The claim's commit is not durable (see :meth:`SqlLog.transaction`): a crash of the
        store's server may undo it, which is what a crash of the worker does (the job runs again
        when its lease is found gone: its outcome is then stale); the outcome's durable commit
        makes the claim durable first. On PostgreSQL that spares the start of every job one
        ``fsync``."""
        if names is not None and not names:
            return []
        with self.log.transaction(durable=False):
            gate = Gate(self.tables, now)
            picked: list[JobRow] = []
            for q in queues:
                taken: list[int] = []  # of this queue: rows leased below, still pending
                while len(picked) < limit:
                    want = limit - len(picked)
                    got = self.tables.ready(q, now, want, names, skip_keys=sorted(gate.full),
                                            skip_ids=taken)
                    admitted = (gate.admit(got) if any(r.limit_key is not None for r in got)
                                else got)
                    picked += admitted
                    if len(got) < want or len(admitted) == len(got):
                        break  # the queue has no more, or none was held back
                    taken += (r.id for r in admitted)
                if len(picked) >= limit:
                    break
            rows = {r.id: r for r in (*gate.held, *picked)}
            events = [*gate.holds, *(e for r in picked for e in lease(r))]
            early = decided if self.log.remote else None  # before the write, or after it
            if events:  # applied before the append lock: it is held for the writes only
                ready = _Applied(events, rows)
                if early is not None:
                    early([ready.changed.get(r.id, r) for r in picked])
                self._append_applied(ready, rows)
                if all(type(e) is JobLeased for e in events):
                    self.log.quiet()  # the jobs' starts follow at once
        leased = [rows.get(r.id, r) for r in picked]  # (as placed by the commit)
        if decided is not None and early is None and leased:
            decided(leased)
        return leased

    def settle_expired(self, now: float, settle: Decide, limit: int = 1000) -> list[JobRow]:
        """For up to ``limit`` held jobs whose lease ran out before ``now``, append the events
        ``settle`` gives (``LeaseExpired`` and what follows). Returns the rows afterwards."""
        return self._transact(lambda t: t.expired(now, limit), settle)

    def change(self, decide: Decide, *, job_id: int | None = None,
               states: Sequence[str] = (), queue: str | None = None, name: str | None = None,
               text: str = "") -> list[JobRow]:
        """For the job ``job_id`` (if it is in one of ``states``), or for every job in
        ``states`` (of ``queue``, of the type ``name``, with ``text`` in its arguments or
        error), in dispatch order, append the events ``decide`` gives: operators' commands.
        Returns the rows changed, as they are afterwards."""
        def pick(tables: SqlTables) -> list[JobRow]:
            if job_id is None:
                return tables.search(states=states, queue=queue, name=name, text=text,
                                     limit=2**62)[::-1]
            row = tables.get(job_id)
            return [row] if row is not None and (not states or row.state in states) else []

        return self._transact(pick, decide)

    def tick(self, tick: ScheduleTicked, dispatched: JobDispatched) -> int | None:
        """Dispatch a schedule's job for its tick, once: in one transaction, take the tick (see
        :meth:`ScheduleTable.take`; a manual tick is always taken), append ``dispatched`` and
        then ``tick`` naming the job. Returns the job's id, or None if the tick was taken
        already (nothing is appended)."""
        with self.log.transaction():
            if not self.schedules.take(tick.schedule, None if tick.manual else tick.tick):
                return None
            rows: dict[int, JobRow] = {}
            job_id = self._record([dispatched], rows)[0].seq
            self._record([replace(tick, job_id=job_id)], rows)
            return job_id

    def _append_applied(self, ready: _Applied, held: dict[int, JobRow] | None) -> list[Record]:
        """Inside a transaction: append the events ``ready`` applied (to the rows ``held``, locked
        by the caller, or to none: new jobs) and write what they changed. Their positions come
        with the commit: then the list returned holds the records, and ``held`` the rows as
        after the events."""
        records: list[Record] = []
        notes = self.log.note(()) if self._observers else None  # filled in their turn

        def placed(base: int) -> None:
            records[:] = ready.place(base)
            if held is not None:
                ready.update(held)
            if notes is not None:
                notes.extend(self._pairs(records, ready.changed, ready.before))

        base = self.log.append_placed(ready.events, ready.queues, placed)
        self.tables.save(ready.writes, base)
        self.tables.bump(ready.deltas)
        self.log.wake_after_commit(_woken(ready.changed, ready.before))
        self._follow(ready.records, ready.changed, ready.before, ready.deltas, {})
        return records

    def _transact(self, select: Select, decide: Decide) -> list[JobRow]:
        """In one transaction: pick rows, append the events ``decide`` returns for each, apply
        them. Returns the picked rows as they are afterwards (in pick order)."""
        with self.log.transaction():
            picked = list(select(self.tables))
            if not picked:
                return []
            rows = {r.id: r for r in picked}
            events = [e for r in picked for e in decide(r)]
            if events:
                self._record(events, rows)
            return [rows.get(r.id, r) for r in picked]

    def _record(self, events: Sequence[Event], rows: dict[int, JobRow]) -> list[Record]:
        missing = {e.job_id for e in events if e.job_id} - rows.keys()
        if missing:
            rows.update(self.tables.load(missing))
        queues = [getattr(e, "queue", None) or (rows[e.job_id].queue if e.job_id in rows
                                                else None) for e in events]
        for name in sorted({e.schedule for e in events if isinstance(e, ScheduleTicked)}):
            self.schedules.take(name, None)  # its row is locked before the append lock
        records = self.log.append(events, queues)
        deltas = Deltas()
        before = dict(rows)
        changed, removed = _apply_all(records, rows, deltas)
        self.tables.save(row_writes(changed.values(), removed, before))
        self.tables.bump(deltas)
        self.log.wake_after_commit(_woken(changed, before))
        self.workers.record(worker_events(records))
        self.schedules.record(ticked(records))
        self._note(records, rows, before)
        self._follow(records, changed, before, deltas, rows)
        return records

    def _follow(self, records: Sequence[Record], changed: dict[int, JobRow],
                before: Mapping[int, JobRow], deltas: Deltas, rows: dict[int, JobRow]) -> None:
        """Keep ``groups`` and ``deps``, and append what the changes call for (see
        :mod:`.flow`): the jobs waiting for an ended job released or cancelled, groups'
        callbacks dispatched; in the same transaction."""
        created = group_events(records)
        if not (created or deltas.groups or deltas.waiting):
            return
        if deltas.waiting:
            self.groups.index_deps(changed.values(), before)
        now = max(r.event.ts for r in records)  # what follows happens as the last change did
        follow: list[Event] = []
        for old, new in self.groups.record(created, deltas.groups).values():
            follow += flow.callbacks(old, new, now)
        ended = [i for i, r in changed.items() if r.workflow_id and r.state in FINISHED
                 and i in before and before[i].state not in FINISHED]
        waiting = self.groups.dependents(ended)
        if waiting:
            rows.update(self.tables.load(i for i in waiting if i not in rows))
            states = self.tables.states({d for i in waiting if i in rows
                                         for d, _ in dependencies(rows[i])})
            follow += [e for i in waiting if i in rows
                       if (e := flow.release_or_cancel(rows[i], states, now)) is not None]
        if follow:
            self._record(follow, rows)

    # -- replay --------------------------------------------------------------------------------

    def rebuild(self, *, into: Store | None = None, until: int | None = None,
                progress: Callable[[int], None] | None = None) -> int:
        """Throw the projections of ``into`` (default: this store) away and derive them again
        from this log and its archive, up to position ``until``. Returns the number of events
        applied. (:func:`evq.projections.replay.replay` has every option.)"""
        from .replay import replay

        return replay(self, into=into, until=until,
                      progress=progress and (lambda done, _total: progress(done))).events

    def verify(self) -> list[str]:
        """Rebuild the projections aside (in memory) and list every difference from the live
        ones; no other writer commits meanwhile, so that both see the same log."""
        aside = Store.in_memory()
        try:
            with self.log.exclusive():
                self.rebuild(into=aside)
                return self.differences(aside)
        finally:
            aside.close()

    def differences(self, other: Store) -> list[str]:
        """Every difference between this store's projections and ``other``'s."""
        mine, theirs = self.tables.dump(), other.tables.dump()
        out: list[str] = []
        for label, a, b, key in (("job", mine[0], theirs[0], ("id",)),
                                 ("counts", _nonzero(mine[1]), _nonzero(theirs[1]),
                                  ("queue", "name")),
                                 ("minute", _nonzero(mine[2], 3), _nonzero(theirs[2], 3),
                                  ("minute", "queue", "name")),
                                 ("worker", self.workers.all(), other.workers.all(), ("name",)),
                                 ("group", self.groups.all(), other.groups.all(), ("id",)),
                                 ("unique", self.tables.uniques(), other.tables.uniques(),
                                  ("key",)),
                                 ("schedule", self.schedules.all(), other.schedules.all(),
                                  ("name",))):
            left = {tuple(getattr(r, k) for k in key): r for r in a}
            right = {tuple(getattr(r, k) for k in key): r for r in b}
            for k in sorted(left.keys() | right.keys()):
                x, y, where = left.get(k), right.get(k), f"{label} {'/'.join(map(str, k))}"
                if x is None or y is None:
                    out.append(f"{where}: only in {'rebuild' if x is None else 'live'}")
                    continue
                for field in x.__struct_fields__:
                    u, v = getattr(x, field), getattr(y, field)
                    if u != v and not (isinstance(u, float) and isinstance(v, float)
                                       and math.isclose(u, v, rel_tol=1e-9, abs_tol=1e-9)):
                        out.append(f"{where}: {field} is {u!r} live, {v!r} rebuilt")
        return out

    def close(self) -> None:
        self.log.close()


def _create_tables(log: SqlLog) -> Callable[[int], None]:
    """What creates the projection tables of a store found at a schema version (0: new);
    tables whose columns changed since are made again (and filled by a rebuild)."""
    def create(found: int) -> None:
        if 0 < found < 6:  # versions 4 and 6 add workers.names and workers.kind
            log.run_script("DROP TABLE IF EXISTS workers")
        if 0 < found < 7:  # versions 5 and 7 add columns to jobs (5: and to counts)
            SqlTables.drop(log)
        SqlTables.create(log)
        WorkerTable.create(log)
        GroupTable.create(log)
        ScheduleTable.create(log)
        consumers.create(log)

    return create


def _new_alone(event: Event) -> bool:
    """Whether ``event`` is a new job's dispatch that changes no row but its own and the counts
    (no unique key, no callback, nothing to wait for): it may be applied before its position is
    known (see :class:`_Applied`)."""
    return (type(event) is JobDispatched and not event.job_id and event.unique_key is None
            and event.callback_of is None and not event.after and not event.after_finished)


class _Applied:
    """Events applied before their positions are known: the events of the jobs in ``held`` (a
    worker's copies of their rows, before the write lock is taken), or, with ``held`` empty, new
    jobs' dispatches (see :func:`_new_alone`). Until :meth:`place`, positions count from 0: the
    records', the rows' ``last_seq`` and the new jobs' ids (their positions)."""

    def __init__(self, events: Sequence[Event], held: dict[int, JobRow]) -> None:
        self.events = events
        self.before = {e.job_id: held[e.job_id] for e in events if e.job_id}
        self.queues: list[str | None] = [self.before[e.job_id].queue if e.job_id
                                         else e.queue for e in events]  # type: ignore[attr-defined]
        rows = dict(self.before)
        self.deltas = Deltas()
        self.records = [Record(i, e if e.job_id else replace(e, job_id=i))  # type: ignore[arg-type]
                        for i, e in enumerate(events, 1)]
        self.changed, self.removed = _apply_all(self.records, rows, self.deltas)
        self.writes = row_writes(self.changed.values(), self.removed, self.before)

    def still_current(self, tables: SqlTables) -> bool:
        """Whether the stored rows are still the copies these events were applied to."""
        return tables.versions(self.before) == {i: r.last_seq for i, r in self.before.items()}

    def place(self, base: int) -> list[Record]:
        """The events took the positions after ``base``: the changed rows say so. Returns the
        records as stored."""
        def placed(row: JobRow) -> JobRow:
            new = row.id not in self.before
            return replace(row, id=row.id + base if new else row.id,
                           last_seq=row.last_seq + base)

        self.changed = {r.id: r for r in map(placed, self.changed.values())}
        return [Record(r.seq + base, r.event if r.event.job_id in self.before
                       else replace(r.event, job_id=r.event.job_id + base))
                for r in self.records]

    def update(self, held: dict[int, JobRow]) -> None:
        """``held`` (copies of the rows) as after the events, once placed."""
        held.update(self.changed)
        for job_id in self.removed:
            held.pop(job_id, None)


def _apply_all(records: Iterable[Record], rows: dict[int, JobRow],
               deltas: Deltas) -> tuple[dict[int, JobRow], set[int]]:
    """Apply events in order to ``rows`` (updated in place); returns what changed."""
    changed: dict[int, JobRow] = {}
    removed: set[int] = set()
    for record in records:
        event, job_id = record.event, record.event.job_id
        old = rows.get(job_id)
        new = apply(old, event, record.seq)
        if new is old:
            continue
        deltas.add(old, new, event)
        if new is None:
            del rows[job_id]
            changed.pop(job_id, None)
            removed.add(job_id)
        else:
            rows[job_id] = changed[job_id] = new
            removed.discard(job_id)
    return changed, removed


def _woken(changed: dict[int, JobRow], before: Mapping[int, JobRow]) -> set[str]:
    """The queues in which these changes made a job ready, or due sooner, or freed a slot of a
    concurrency limit."""
    out: set[str] = set()
    for job_id, row in changed.items():
        old = before.get(job_id)
        ready = row.state == PENDING and (old is None or old.state != PENDING
                                          or row.run_at < old.run_at)
        freed = (row.concurrency_limit and old is not None and old.state in HELD
                 and row.state not in HELD)  # a slot of its limit key
        if ready or freed:
            out.add(row.queue)
    return out


class _LocalWatch:
    def __init__(self, queues: frozenset[str] | None, on_change: Callable[[], None]) -> None:
        self.queues = queues
        self.on_change = on_change


class Watch:
    """What :meth:`Store.watch` returns: ``close()`` it when done. ``disarm()`` lets a busy
    watcher skip the wake-ups of other processes until ``arm()``, which reports one at once if
    any came meanwhile."""

    def __init__(self, close_local: Callable[[], None], files: Any) -> None:
        self._close_local = close_local
        self._files = files

    def arm(self) -> None:
        if self._files is not None:
            self._files.arm()

    def disarm(self) -> None:
        if self._files is not None:
            self._files.disarm()

    def close(self) -> None:
        self._close_local()
        if self._files is not None:
            self._files.close()


def _nonzero(counts: Sequence[_C], key: int = 2) -> list[_C]:
    return [c for c in counts if any(getattr(c, f) for f in c.__struct_fields__[key:])]


def sqlite_path(url: str) -> str:
    """The database file a ``sqlite:///`` URL (or a plain path) names."""
    if "://" not in url:
        return url
    if not url.startswith("sqlite:///"):
        raise ConfigError(f"{url!r} names no SQLite file: this needs sqlite:///path/to/evq.db")
    path = url[len("sqlite:///"):].split("?", 1)[0]
    if not path:
        raise ConfigError(f"{url!r}: a SQLite URL needs a path, as in sqlite:///evq.db")
    return path


StoreFactory = Callable[[str, dict[str, str], bool, "bool | None"], Store]
"""Opens the store of a URL, given the URL, its query options, whether to create it, and whether
to upgrade an older schema (None: the store's own default)."""

_FACTORIES: dict[str, tuple[StoreFactory, str]] = {}


def register_store(scheme: str, factory: StoreFactory, example: str) -> None:
    """Make :func:`open_store` open URLs of ``scheme`` with ``factory`` (``example`` is shown to
    a user who names an unknown scheme)."""
    _FACTORIES[scheme] = (factory, example)


def open_store(url: str, *, create: bool = True, upgrade: bool | None = None) -> Store:
    """Open the store a URL names (``sqlite:///path``, ``postgresql://...``, ``memory://``, or a
    plain file path). ``create=False``: a store that does not exist yet is an error
    (:class:`~evq.eventlog.errors.StoreMissing`) instead of a new empty one. ``upgrade``: whether
    a schema older than this evq's is upgraded (SQLite files are by default; a PostgreSQL
    server, shared by workers of several versions, only by ``evq migrate``)."""
    if "://" not in url:
        url = "sqlite:///" + url
    parts = urlsplit(url)
    found = _FACTORIES.get(parts.scheme)
    if found is None:
        examples = " or ".join(dict.fromkeys(e for _, e in _FACTORIES.values()))
        raise ConfigError(f"unknown store URL scheme {parts.scheme!r} in {url!r}: use {examples}")
    return found[0](url, dict(parse_qsl(parts.query)), create, upgrade)


def _open_memory(url: str, options: dict[str, str], _create: bool,
                 _upgrade: bool | None) -> Store:
    if options:
        raise ConfigError(f"{url!r}: unknown option {', '.join(sorted(options))}")
    return Store.in_memory()


def _open_sqlite(url: str, options: dict[str, str], create: bool,
                 upgrade: bool | None) -> Store:
    path = sqlite_path(url)
    unknown = options.keys() - {"synchronous", "busy_timeout"}
    if unknown:
        raise ConfigError(f"{url!r}: unknown option {', '.join(sorted(unknown))}")
    try:
        busy = float(options.get("busy_timeout", 5.0))
    except ValueError:
        raise ConfigError(f"{url!r}: busy_timeout must be a number of seconds") from None
    return Store(SqliteLog(path, synchronous=options.get("synchronous", "NORMAL"),
                           busy_timeout=busy, create=create), url, upgrade=upgrade is not False)


def _open_postgres(url: str, _options: dict[str, str], create: bool,
                   upgrade: bool | None) -> Store:
    from evq.eventlog.postgres import PostgresLog  # only for this scheme: it imports psycopg

    log = PostgresLog(url, create=create)
    try:
        return Store(log, url, upgrade=bool(upgrade))
    except BaseException:
        log.close()
        raise


register_store("sqlite", _open_sqlite, "sqlite:///path/to/evq.db")
register_store("postgresql", _open_postgres, "postgresql://user@host:5432/db")
register_store("postgres", _open_postgres, "postgresql://user@host:5432/db")
register_store("memory", _open_memory, "memory://")
