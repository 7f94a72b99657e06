"""What every SQL event log shares: the ``events`` table, appending, reading, and the surface
through which the layers above run their statements.

A log in SQL is one ``events`` table and the projection tables beside it, in one database, so that
an append and the projection writes it causes commit together. The layers above write their
statements once, with ``?`` placeholders and the SQL common to SQLite and PostgreSQL, and run them
through :meth:`SqlLog.execute`, :meth:`SqlLog.executemany` and :meth:`SqlLog.read_rows`; each
store (:mod:`.sqlite`, :mod:`.postgres`) supplies its transactions, its locks and the few clauses
that differ (:meth:`SqlLog.index_hint`, :meth:`SqlLog.row_lock`, DDL types).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

from msgspec.structs import replace

from .codec import Record, decode, encode
from .errors import DecodeError, EvqError, StoreError
from .events import Event, JobDispatched

SCHEMA_VERSION = 7  # 2: the workers table; 3: the minutes table; 4: workers.names;
# 5: groups and deps, jobs.workflow_id/after/callback_of, counts.waiting; consumers; the uniques
# table, and the limits of jobs (limit_key, rate_limit, rate_per, concurrency_limit); 6: the
# schedules table, workers.kind; 7: jobs.cancel_requested, jobs.progress,
# jobs.progress_message, jobs.jitter and jobs.meta

# A job's id is the position of its JobDispatched event, so that event needs no entry in the index
# of events by job (one page less per dispatch); reads by job look it up by position instead.
NOT_DISPATCH = "type <> 'JobDispatched'"
_BY_JOB = f"((seq = ? AND type = 'JobDispatched') OR (job_id = ? AND {NOT_DISPATCH}))"

EVENTS_DDL = f"""
CREATE TABLE IF NOT EXISTS events (
    seq    INTEGER PRIMARY KEY,                -- position in the log, in commit order
    ts     REAL NOT NULL,                      -- when the event happened (unix seconds)
    type   TEXT NOT NULL,                      -- the event type, e.g. 'JobDispatched'
    job_id INTEGER NOT NULL,
    queue  TEXT,
    body   TEXT NOT NULL                       -- the whole event as JSON
);
CREATE INDEX IF NOT EXISTS events_job ON events(job_id, seq) WHERE {NOT_DISPATCH};
"""

# Events are appended within moments of their ``ts`` (an outcome waits at most one group
# commit), so ``ts`` rises with ``seq`` up to this many seconds; times are found by bisecting
# ``seq`` instead of keeping an index on ``ts``, which would cost every append a page write.
TS_DISORDER = 60.0


class Where:
    """A WHERE clause built from conditions, each with its parameters; ``str()`` joins them."""

    def __init__(self, *conditions: str, params: Sequence[object] = ()) -> None:
        self.clauses = list(conditions) or ["1 = 1"]
        self.params = list(params)

    def add(self, clause: str, *params: object) -> Where:
        self.clauses.append(clause)
        self.params.extend(params)
        return self

    def given(self, *pairs: tuple[str, object]) -> Where:
        """Add each ``(clause, value)`` whose value is not None (a filter that was given)."""
        for clause, value in pairs:
            if value is not None:
                self.add(clause, value)
        return self

    def among(self, column: str, values: Sequence[object]) -> Where:
        """``column IN (values)``, if there are values."""
        if values:
            clause, params = SqlLog.among(column, values)
            self.add(clause, *params)
        return self

    def __str__(self) -> str:
        return " AND ".join(self.clauses)


def query_stopped(timeout: float) -> EvqError:
    return EvqError(f"query stopped: it ran past --timeout {timeout:g} s (narrow it with WHERE or "
                    "LIMIT, or give a longer --timeout)")


def query_refused(why: object) -> EvqError:
    return EvqError(f"query refused: evq query is read-only ({why})")


def query_failed(why: object) -> EvqError:
    return EvqError(f"query failed: {why}")


class Signals(Protocol):
    """How a shared store tells other processes that work appeared in a queue."""

    def announce(self, queues: Iterable[str]) -> None:
        """After a commit that made work ready in ``queues``."""

    def watch(self, queues: Iterable[str], on_change: Callable[[], None]) -> Any:
        """Call ``on_change`` when work appears in one of ``queues``; returns a watcher with
        ``arm()``, ``disarm()`` and ``close()``."""

    def watch_all(self, on_change: Callable[[], None]) -> Any:
        """Call ``on_change`` soon after any commit (for viewers that follow the log), or soon
        after the commit that follows a quiet one (:meth:`SqlLog.quiet`)."""


class Commit:
    """What a write transaction said of itself, for the listeners of its commit: the queues in
    which it made work ready, whether it appended, whether it is quiet (:meth:`SqlLog.quiet`),
    and its notes."""

    __slots__ = ("appended", "noted", "quiet", "woken")

    def __init__(self) -> None:
        self.appended = False
        self.quiet = False
        self.woken: set[str] = set()
        self.noted: list[list[Any]] = []  # the notes, by call of SqlLog.note

    @property
    def notes(self) -> list[Any]:
        return [item for items in self.noted for item in items]


class SqlLog:
    """The log's rules on top of a store's statements and transactions (see the module)."""

    memory = False  # an in-memory database: one process, nothing shared
    remote = False  # a server's database: each write waits a round trip of the network
    name = ""  # what messages call the store (a file's path, a server's URL without password)

    def __init__(self) -> None:
        self._commit = Commit()
        self._on_commit: list[Callable[[Commit], None]] = []

    # -- what each store supplies --------------------------------------------------------------

    def transaction(self, *, durable: bool = True) -> AbstractContextManager[Any]:
        """A write transaction; nested use joins the outer one. Listeners of :meth:`on_commit`
        run after the outermost commit, if it appended events.

        ``durable=False``: the commit may return before it is on disk, where the store waits
        for the disk (a server's ``fsync``); a crash of the machine or server may then undo it,
        but no later durable commit is kept without it (they reach the disk in commit order).
        For writes that a crash may undo at no cost but time: a claim, whose loss is the loss
        of a worker (its job runs again)."""
        raise NotImplementedError

    def exclusive(self) -> AbstractContextManager[Any]:
        """A write transaction during which no other writer commits: what a rebuild in place and
        a verification need, to see the log and the projections at one position."""
        raise NotImplementedError

    def reading(self) -> AbstractContextManager[Any]:
        """One read transaction: every read inside sees the log and the tables at one position.
        Inside a write transaction it joins that one."""
        raise NotImplementedError

    def execute(self, sql: str, params: Sequence[object] = ()) -> list[tuple]:
        """Run one statement inside :meth:`transaction`; returns the rows it gives."""
        raise NotImplementedError

    def executemany(self, sql: str, rows: Iterable[Sequence[object]],
                    shift: Sequence[str] = ()) -> None:
        """Run one statement for each of ``rows``, inside :meth:`transaction`. ``shift``: the
        columns whose values count from the SQL base an :meth:`append_placed` returned (given
        only then)."""
        raise NotImplementedError

    def read_rows(self, sql: str, params: Sequence[object] = ()) -> list[tuple]:
        """Run one read query (inside a transaction if one is open), errors translated."""
        raise NotImplementedError

    def run_script(self, script: str) -> None:
        """Run ``;``-separated DDL statements inside the open transaction."""
        raise NotImplementedError

    def has_table(self, name: str) -> bool:
        raise NotImplementedError

    def create_table(self, name: str, columns: dict[str, type], pk: Sequence[str]) -> None:
        """Create a table of these columns (of Python types int, float, str) if it is missing."""
        raise NotImplementedError

    def lock_keys(self, keys: Iterable[str]) -> set[str]:
        """Inside a write transaction: lock these keys against other writers until it ends
        (where writers run at once). Returns the keys it could not lock (see the stores)."""
        return set()

    def migrate(self, create_tables: Callable[[int], None], *, upgrade: bool = True) -> int:
        """Create the log and, by ``create_tables`` (given the version found), the tables that
        are missing; refuse newer schemas, and with ``upgrade`` False, older ones. Returns the
        version the store had (0: new, ``SCHEMA_VERSION``: current)."""
        raise NotImplementedError

    def checkpoint(self, mode: str = "TRUNCATE") -> bool:
        """Give back space the store holds for past writes, where it needs telling (SQLite's
        WAL); best effort: returns whether it did."""
        return False

    def query(self, sql: str, timeout: float) -> tuple[list[str], list[tuple]]:
        """Run one statement of a user's, read-only, stopped after ``timeout`` seconds: its
        column names and rows. Refusals and failures are :class:`EvqError` s that say why."""
        raise NotImplementedError

    def signals(self) -> Signals | None:
        """How this store wakes other processes (None: nothing else can open it)."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    @staticmethod
    def index_hint(index: str | None) -> str:
        """The clause that makes a query use ``index`` where the planner needs telling."""
        return ""

    @staticmethod
    def among(column: str, values: Sequence[object]) -> tuple[str, list[object]]:
        """The condition that ``column`` is one of ``values`` (not empty), with its parameters:
        ``IN (?, ...)`` here; a store may give one statement for any number of values."""
        return f"{column} IN ({','.join('?' * len(values))})", list(values)

    def row_lock(self, *, skip_locked: bool = False) -> str:
        """The clause that locks the rows a query inside a write transaction selects, against
        other writers of a store where writers run at once (``skip_locked``: rows that another
        writer holds are left out instead of awaited)."""
        return ""

    def lock_appends(self) -> None:
        """Inside a write transaction: wait until no other transaction can append before this
        one commits (where writers run at once). Appends call it before taking positions."""

    def read_after_lock(self, sql: str, params: Sequence[object] = ()) -> list[tuple]:
        """Inside a write transaction: :meth:`lock_appends`, then run the read ``sql`` (in one
        round trip to a server, where the store can)."""
        self.lock_appends()
        return self.execute(sql, params)

    def _check_version(self, version: int, *, upgrade: bool) -> None:
        if version > SCHEMA_VERSION:
            raise StoreError(f"{self.name} has schema version {version}; this evq knows "
                             f"{SCHEMA_VERSION}: upgrade evq")
        if 0 < version < SCHEMA_VERSION and not upgrade:
            raise StoreError(f"{self.name} has schema version {version}, behind this evq's "
                             f"{SCHEMA_VERSION}: run evq migrate")

    # -- commits -------------------------------------------------------------------------------

    def on_commit(self, listener: Callable[[Commit], None]) -> Callable[[], None]:
        """Call ``listener`` after each write transaction of this process that appended events
        commits, with what it said of itself; returns the function that stops it."""
        self._on_commit.append(listener)
        return lambda: self._on_commit.remove(listener)

    def wake_after_commit(self, queues: Iterable[str]) -> None:
        """Inside a transaction: say that it makes work ready in ``queues``."""
        self._commit.woken.update(queues)

    def quiet(self) -> None:
        """Inside a transaction: its commit need not wake the followers of the whole log in
        other processes (see :meth:`Signals.watch_all`), as another commit follows at once: a
        claim's, whose jobs' starts are written moments later."""
        self._commit.quiet = True

    def note(self, items: Iterable[Any]) -> list[Any]:
        """Inside a transaction: hand ``items`` to the listeners of its commit (dropped if it
        rolls back). Returns them as a list, which a placement may still fill (its items then
        keep this place among the notes)."""
        self._commit.noted.append(noted := list(items))
        return noted

    def _begun(self) -> None:
        self._commit = Commit()

    def _committed(self, commit: Commit) -> None:
        if commit.appended:
            for listener in self._on_commit:
                listener(commit)

    # -- the log -------------------------------------------------------------------------------

    def append(self, events: Sequence[Event], queues: Sequence[str | None]) -> list[Record]:
        """Append events (inside :meth:`transaction`); returns them as stored, with their
        positions, an event with ``job_id`` 0 having taken its position as its job id."""
        # Appends are serialised (:meth:`lock_appends`) and no event is ever deleted (archiving
        # keeps the newest), so the next position is one past the largest: gap-free, in commit
        # order, with no sequence object to keep. What needs no position is encoded before the
        # lock: it is held for the writes only.
        bodies = [None if isinstance(e, JobDispatched) else encode(e).decode() for e in events]
        self.lock_appends()
        seq = self.execute("SELECT coalesce(max(seq), 0) FROM events")[0][0]
        records: list[Record] = []
        rows = []
        for e, q, body in zip(events, queues, bodies, strict=True):
            seq += 1
            if isinstance(e, JobDispatched):
                if e.job_id not in (0, seq):
                    raise ValueError(f"a JobDispatched takes its position as its job id: "
                                     f"{e.job_id} given at position {seq}")
                e = replace(e, job_id=seq)
                body = encode(e).decode()
            records.append(Record(seq, e))  # type: ignore[arg-type]
            rows.append((seq, e.ts, e.__struct_config__.tag, e.job_id, q, body))
        self.executemany("INSERT INTO events(seq, ts, type, job_id, queue, body) "
                         "VALUES (?, ?, ?, ?, ?, ?)", rows)
        self._commit.appended = self._commit.appended or bool(rows)
        return records

    def append_placed(self, events: Sequence[Event], queues: Sequence[str | None],
                      placed: Callable[[int], None]) -> int | str:
        """Append events whose positions the caller may learn as late as the commit: each event
        of a job whose row it holds, or a new job's ``JobDispatched`` (``job_id`` 0), whose job
        id is then its position. ``placed(base)`` runs once the positions are known (here at
        once; a server's store may wait for the commit): the events took the positions
        ``base + 1`` on, in order.

        Returns the base to write with: the number, or, where only the server knows it before
        the commit, an SQL expression of it: rows written in the same transaction then give
        their positions counted from it, through the ``shift`` of :meth:`executemany`. (The
        statements that use it follow this append before any other append.) A server's
        append then needs no round trip before its writes, and its lock is held by the server
        alone, not across the network."""
        base = self.append(events, queues)[0].seq - 1
        placed(base)
        return base

    def read(self, *, since: int = 0, until: int | None = None, job_id: int | None = None,
             since_ts: float | None = None, until_ts: float | None = None,
             types: Sequence[str] = (), queue: str | None = None, limit: int | None = None,
             chunk: int = 10_000) -> Iterator[Record]:
        """Events in log order after position ``since``, filtered; read in chunks."""
        if since_ts is not None:
            since = max(since, self.seq_before(since_ts - TS_DISORDER))
        if until_ts is not None:
            bound = self.seq_before(until_ts + TS_DISORDER, after=True)
            until = bound if until is None else min(until, bound)
        where = Where("seq > ?", params=[since])
        if job_id is not None:
            where.add(_BY_JOB, job_id, job_id)
        where.given(("seq <= ?", until), ("ts >= ?", since_ts), ("ts <= ?", until_ts),
                    ("queue = ?", queue)).among("type", types)
        params = where.params
        left = limit
        while left is None or left > 0:
            n = chunk if left is None else min(chunk, left)
            rows = self.read_rows(f"SELECT seq, body FROM events WHERE {where} "
                                  f"ORDER BY seq LIMIT {n}", params)
            for seq, body in rows:
                try:
                    yield Record(seq, decode(body))
                except DecodeError as exc:
                    raise DecodeError(f"event at seq {seq}: {exc}") from None
            if len(rows) < n:
                return
            params[0] = rows[-1][0]
            if left is not None:
                left -= len(rows)

    def seq_before(self, ts: float, *, after: bool = False) -> int:
        """By bisection on ``seq``: the last position whose event is older than ``ts`` (0 if
        none), or with ``after``, the first one at or past ``ts`` (the end if none)."""
        lo, hi = self.read_rows("SELECT coalesce(min(seq), 1), coalesce(max(seq), 0) "
                                "FROM events")[0]
        first, last = lo, hi
        while lo <= hi:  # find the first seq whose ts >= ts; positions may have gaps
            mid = (lo + hi) // 2
            got = self.read_rows("SELECT seq, ts FROM events WHERE seq >= ? ORDER BY seq "
                                 "LIMIT 1", (mid,))
            if not got or got[0][1] >= ts:
                hi = mid - 1
            else:
                lo = got[0][0] + 1
        # lo is now the first position (or gap before it) with ts >= ts
        if after:
            return min(lo, last) if lo <= last else last
        return max(lo - 1, first - 1, 0)

    def last_seq(self) -> int:
        """The position of the newest event (0 for an empty log)."""
        return self.read_rows("SELECT coalesce(max(seq), 0) FROM events")[0][0]
