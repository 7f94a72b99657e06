"""The event log in SQLite: one ``events`` table, appended to inside ``BEGIN IMMEDIATE``.

The same class serves ``memory://`` (an in-memory database: one process, no file) and
``sqlite:///path`` (a file in WAL mode that many processes share). Tables of higher layers live in
the same database and join its transactions through :meth:`SqliteLog.transaction`.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TypeVar
from urllib.parse import quote

from msgspec.structs import replace

from .codec import Record, decode, encode
from .errors import DecodeError, StoreBusy, StoreCorrupt, StoreError, StoreFull, StoreMissing
from .events import Event, JobDispatched

_T = TypeVar("_T")

SCHEMA_VERSION = 3  # 2: the workers table; 3: the minutes table

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

# SQLite copies the WAL back into the database (a checkpoint, with two fsyncs) once it holds this
# many pages; its default of 1,000 (4 MB) made every ~100th single dispatch pay for one, and
# copied hot pages (the counters, the ends of the indexes) again and again.
WAL_CHECKPOINT_PAGES = 10_000

SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")


CHECK_HINT = "check it with: sqlite3 {path} 'PRAGMA integrity_check'"


def translate(exc: sqlite3.Error, path: str) -> StoreError:
    """A driver error as an evq error with a message a user can act on."""
    text = str(exc)
    if "locked" in text or "busy" in text:
        return StoreBusy(f"{path}: database stayed locked past the busy timeout ({text})")
    if "not a database" in text or "malformed" in text:
        return StoreCorrupt(f"{path} is not a usable SQLite database: it is damaged ({text}); "
                            f"{CHECK_HINT.format(path=path)}")
    if text.startswith("Could not decode to UTF-8"):  # the text itself may be huge: leave it out
        column = text.split(" with text", 1)[0].removeprefix("Could not decode to UTF-8 ")
        return StoreCorrupt(f"{path} is damaged: {column} holds text that is not UTF-8; "
                            f"{CHECK_HINT.format(path=path)}")
    if "unable to open" in text:
        folder = os.path.dirname(os.path.abspath(path))
        why = "its directory does not exist" if not os.path.isdir(folder) else text
        return StoreError(f"cannot open {path}: {why}")
    if "readonly" in text or "read-only" in text:
        return StoreError(f"{path} is read-only ({text})")
    if "disk is full" in text:
        return StoreFull(f"{path}: the disk is full; nothing was written ({text})")
    if "disk I/O error" in text:  # also what a write past a file-size limit (EFBIG) gives
        return StoreFull(f"{path}: a write failed (disk full, a file-size limit or a failing "
                         f"disk); nothing was written ({text})")
    return StoreError(f"{path}: {text}")


_READS = {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_RECURSIVE}

# The SQL functions a read-only connection may call: SQLite's core, date, math, JSON, aggregate
# and window functions, which only compute. An allow-list rather than a deny-list: a build of
# SQLite or an extension may bring functions that do more than read (``fts3_tokenizer`` returns a
# pointer and registers tokenizers; ``load_extension`` loads code), and an unknown name is then
# refused instead of trusted.
_READ_FUNCTION_NAMES = """
    abs changes char coalesce concat concat_ws format glob hex ifnull iif instr last_insert_rowid
    length like likelihood likely lower ltrim max min nullif octet_length printf quote random
    replace round rtrim sign soundex sqlite_version substr substring total_changes trim typeof
    unhex unicode unlikely upper
    date time datetime julianday unixepoch strftime timediff current_date current_time
    current_timestamp
    acos acosh asin asinh atan atan2 atanh ceil ceiling cos cosh degrees exp floor ln log log10
    log2 mod pi pow power radians sin sinh sqrt tan tanh trunc
    json jsonb json_array jsonb_array json_array_length json_error_position json_extract
    jsonb_extract json_insert jsonb_insert json_object jsonb_object json_patch jsonb_patch
    json_pretty json_remove jsonb_remove json_replace jsonb_replace json_set jsonb_set json_type
    json_valid json_quote json_group_array jsonb_group_array json_group_object
    jsonb_group_object json_each json_tree
    avg count group_concat string_agg sum median percentile percentile_cont percentile_disc
    row_number rank dense_rank percent_rank cume_dist ntile lag lead first_value last_value
    nth_value
"""
READ_FUNCTIONS = frozenset(_READ_FUNCTION_NAMES.split())


def _read_only(action: int, arg1: str | None, arg2: str | None, *_: object) -> int:
    """SQLite authorizer of read-only connections: reads, pragmas that only read, and the
    functions of :data:`READ_FUNCTIONS`."""
    if action in _READS or (action == sqlite3.SQLITE_PRAGMA and arg2 is None):
        return sqlite3.SQLITE_OK
    if action == sqlite3.SQLITE_FUNCTION and (arg2 or "").lower() in READ_FUNCTIONS:
        return sqlite3.SQLITE_OK
    return sqlite3.SQLITE_DENY


def _uri(path: str, mode: str) -> str:
    """A ``file:`` URI that opens ``path`` with SQLite's ``mode`` (``ro``, ``rw``)."""
    return f"file:{quote(str(Path(path).resolve()))}?mode={mode}"


class Where:
    """A WHERE clause built from conditions, each with its parameters; ``str()`` joins them."""

    def __init__(self, *conditions: str, params: Sequence[object] = ()) -> None:
        self.clauses = list(conditions) or ["1"]
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
            self.add(f"{column} IN ({','.join('?' * len(values))})", *values)
        return self

    def __str__(self) -> str:
        return " AND ".join(self.clauses)


def run_script(conn: sqlite3.Connection, script: str) -> None:
    """Run ``;``-separated statements inside the open transaction (``executescript`` would
    commit it first)."""
    for statement in script.split(";"):
        if statement.strip():
            conn.execute(statement)


class SqliteLog:
    """An append-only log of events in a SQLite database, with one connection and its lock."""

    def __init__(self, path: str, *, synchronous: str = "NORMAL", busy_timeout: float = 5.0,
                 readonly: bool = False, create: bool = True) -> None:
        """``readonly``: refuse every write; ``create=False``: the file must exist already (a
        read-only connection never creates one)."""
        self.path = path
        self.busy_timeout = busy_timeout
        self.memory = path == ":memory:"
        self.lock = threading.RLock()
        self._in_tx = False
        self._appended = False
        self._woken: set[str] = set()
        self._full = False  # the last write failed for lack of space
        self._on_commit: list[Callable[[set[str]], None]] = []
        if not self.memory and not readonly:
            folder = Path(path).resolve().parent
            if not folder.is_dir():
                raise StoreError(f"cannot open {path}: directory {folder} does not exist")
        must_exist = (readonly or not create) and not self.memory
        if must_exist and not Path(path).exists():
            raise StoreMissing(f"no evq store at {path}: the file does not exist")
        if synchronous.upper() not in SYNCHRONOUS:
            raise StoreError(f"synchronous must be one of {', '.join(SYNCHRONOUS)}")
        mode = "ro" if readonly else "rw" if not create else None
        try:
            uri = _uri(path, mode) if mode and not self.memory else None
            # SQLite's own busy handler sleeps 1, 2, 5, 10... ms between tries; a worker woken
            # by another process's commit often finds that commit still finishing, so locks are
            # awaited here instead, in steps from 50 us (see _retry_busy).
            self.conn = sqlite3.connect(uri or path, uri=uri is not None, isolation_level=None,
                                        check_same_thread=False, timeout=0)
            self.conn.execute("PRAGMA cache_size=-32000")
            if must_exist:
                self._check_exists()
            if readonly:
                self.conn.execute("PRAGMA query_only=1")
                self.conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
                self.conn.set_authorizer(_read_only)
            else:
                self._retry_busy(lambda: self.conn.execute("PRAGMA journal_mode=WAL").fetchone())
                self.conn.execute(f"PRAGMA synchronous={synchronous.upper()}")
                self.conn.execute(f"PRAGMA wal_autocheckpoint={WAL_CHECKPOINT_PAGES}")
        except sqlite3.Error as exc:
            raise translate(exc, path) from None

    def _check_exists(self) -> None:
        """Refuse a file without evq's tables (empty, or another program's), before anything is
        written to it."""
        if self.conn.execute("PRAGMA user_version").fetchone()[0] == 0:
            self.conn.close()
            raise StoreMissing(f"no evq store at {self.path}: the file holds no evq tables")

    # -- transactions --------------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction that holds SQLite's write lock from its first statement.

        Nested use joins the outer transaction. After a write that failed for lack of space, the
        next one checkpoints the WAL first, so that the space it holds comes back. Listeners
        added with :meth:`on_commit` run after the outermost commit, if it appended events, with
        the queues given to :meth:`wake_after_commit` during the transaction.
        """
        with self.lock:
            if self._in_tx:
                yield self.conn
                return
            if self._full:  # first give back the WAL's space (which only a checkpoint frees),
                self._full = not self.checkpoint()  # using the room freed since
            self._retry_busy(lambda: self.conn.execute("BEGIN IMMEDIATE"))
            self._in_tx = True
            self._appended = False
            self._woken = set()
            try:
                yield self.conn
                self.conn.execute("COMMIT")
                woken = self._woken
            except BaseException as exc:
                self._in_tx = False
                error = self._abort(exc)
                self._full = isinstance(error, StoreFull)
                if error is exc:
                    raise
                raise error from None
            finally:
                self._in_tx = False
        if self._appended:
            for listener in self._on_commit:
                listener(woken)

    @contextmanager
    def reading(self) -> Iterator[sqlite3.Connection]:
        """One read transaction: every read inside sees the log and the tables at one position,
        without blocking writers (WAL). Inside a write transaction it joins that one."""
        with self.lock:
            if self.conn.in_transaction:
                yield self.conn
                return
            self._retry_busy(lambda: self.conn.execute("BEGIN"))
            try:
                yield self.conn
                self.conn.execute("COMMIT")
            except BaseException as exc:
                error = self._abort(exc)
                if error is exc:
                    raise
                raise error from None

    def _abort(self, exc: BaseException) -> BaseException:
        """Roll back the open transaction after ``exc``; returns the error to raise."""
        with suppress(sqlite3.Error):  # a damaged file may refuse even this
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
        return translate(exc, self.path) if isinstance(exc, sqlite3.Error) else exc

    def checkpoint(self, mode: str = "TRUNCATE") -> bool:
        """Copy the WAL into the database (``PASSIVE``: what no reader needs, without waiting;
        ``TRUNCATE``: all of it, then empty the WAL file, freeing its space). Best effort:
        returns whether it completed."""
        if self.memory:
            return False
        with self.lock:
            try:
                busy = self.conn.execute(f"PRAGMA wal_checkpoint({mode})").fetchone()[0]
            except sqlite3.Error:
                return False
        return not busy

    def on_commit(self, listener: Callable[[set[str]], None]) -> Callable[[], None]:
        """Call ``listener`` after each write transaction of this process commits, with the
        queues in which it made work ready; returns the function that stops it."""
        self._on_commit.append(listener)
        return lambda: self._on_commit.remove(listener)

    def wake_after_commit(self, queues: Iterable[str]) -> None:
        """Inside a transaction: say that it makes work ready in ``queues``."""
        self._woken.update(queues)

    # The statements of the layers above go through these three, with ``?`` placeholders, so
    # that another SQL store can run the same texts.

    def execute(self, sql: str, params: Sequence[object] = ()) -> list[tuple]:
        """Run one statement inside :meth:`transaction`; returns the rows it gives."""
        return self.conn.execute(sql, params).fetchall()

    def executemany(self, sql: str, rows: Iterable[Sequence[object]]) -> None:
        """Run one statement for each of ``rows``, inside :meth:`transaction`."""
        self.conn.executemany(sql, rows)

    @staticmethod
    def index_hint(index: str | None) -> str:
        """The clause that makes a query use ``index`` (SQLite picks a worse plan for some)."""
        return f" INDEXED BY {index}" if index else ""

    def read_rows(self, sql: str, params: Sequence[object] = ()) -> list[tuple]:
        """Run one read query under the connection's lock, with errors translated."""
        with self.lock:
            return self._retry_busy(lambda: self.conn.execute(sql, params).fetchall())

    def _retry_busy(self, fn: Callable[[], _T]) -> _T:
        """Run ``fn``, retrying while the database is locked, up to the busy timeout."""
        delay, deadline = 0.00005, 0.0
        while True:
            try:
                return fn()
            except sqlite3.OperationalError as exc:
                text = str(exc)
                if "locked" not in text and "busy" not in text:
                    raise translate(exc, self.path) from None
                now = time.monotonic()
                deadline = deadline or now + self.busy_timeout
                if now >= deadline:
                    raise translate(exc, self.path) from None
                time.sleep(delay)
                delay = min(delay * 2, 0.002)
            except sqlite3.Error as exc:
                raise translate(exc, self.path) from None

    # -- schema --------------------------------------------------------------------------------

    def migrate(self, create_tables: Callable[[sqlite3.Connection], None]) -> int:
        """Create the log and the tables of ``create_tables`` that are missing; refuse newer
        schemas. Returns the version the store had (0: new, ``SCHEMA_VERSION``: current)."""
        version = self.read_rows("PRAGMA user_version")[0][0]
        if version > SCHEMA_VERSION:
            raise StoreError(f"{self.path} has schema version {version}; this evq knows "
                             f"{SCHEMA_VERSION}: upgrade evq")
        if version == SCHEMA_VERSION:
            return version
        with self.transaction() as conn:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version < SCHEMA_VERSION:
                run_script(conn, EVENTS_DDL)
                create_tables(conn)
                conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        return version

    # -- the log -------------------------------------------------------------------------------

    def append(self, events: Sequence[Event], queues: Sequence[str | None]) -> list[Record]:
        """Append events (inside :meth:`transaction`); returns them as stored, with their
        positions, an event with ``job_id`` 0 having taken its position as its job id."""
        # Appends hold the write lock and no event is ever deleted (archiving keeps the newest),
        # so the next position is one past the largest: no AUTOINCREMENT, whose sqlite_sequence
        # row would cost every transaction one more page.
        seq = self.conn.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()[0]
        records: list[Record] = []
        rows = []
        for e, q in zip(events, queues, strict=True):
            seq += 1
            if isinstance(e, JobDispatched):
                if e.job_id not in (0, seq):
                    raise ValueError(f"a JobDispatched takes its position as its job id: "
                                     f"{e.job_id} given at position {seq}")
                e = replace(e, job_id=seq)
            records.append(Record(seq, e))  # type: ignore[arg-type]
            rows.append((seq, e.ts, e.__struct_config__.tag, e.job_id, q, encode(e).decode()))
        self.conn.executemany("INSERT INTO events(seq, ts, type, job_id, queue, body) "
                              "VALUES (?, ?, ?, ?, ?, ?)", rows)
        self._appended = self._appended or bool(rows)
        return records

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

    def close(self) -> None:
        with self.lock:
            self.conn.close()
