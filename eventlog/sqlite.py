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
from contextlib import AbstractContextManager, contextmanager, suppress
from pathlib import Path
from typing import TypeVar
from urllib.parse import quote

from .errors import StoreBusy, StoreCorrupt, StoreError, StoreFull, StoreMissing
from .sqllog import (
    EVENTS_DDL,
    SCHEMA_VERSION,
    SqlLog,
    query_failed,
    query_refused,
    query_stopped,
)
from .wake import ReadySignals

_T = TypeVar("_T")

# SQLite copies the WAL back into the database (a checkpoint, with two fsyncs) once it holds this
# many pages; its default of 1,000 (4 MB) made every ~100th single dispatch pay for one, and
# copied hot pages (the counters, the ends of the indexes) again and again.
WAL_CHECKPOINT_PAGES = 10_000

SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")
_TYPES = {int: "INTEGER", float: "FLOAT", str: "TEXT"}  # as sqlite-utils makes columns


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


class SqliteLog(SqlLog):
    """An append-only log of events in a SQLite database, with one connection and its lock."""

    def __init__(self, path: str, *, synchronous: str = "NORMAL", busy_timeout: float = 5.0,
                 readonly: bool = False, create: bool = True) -> None:
        """``readonly``: refuse every write; ``create=False``: the file must exist already (a
        read-only connection never creates one)."""
        super().__init__()
        self.path = self.name = path
        self.busy_timeout = busy_timeout
        self.memory = path == ":memory:"
        self.lock = threading.RLock()
        self._in_tx = False
        self._full = False  # the last write failed for lack of space
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
    def transaction(self, *, durable: bool = True) -> Iterator[sqlite3.Connection]:
        """A write transaction that holds SQLite's write lock from its first statement.
        (``durable`` changes nothing here: a commit survives the process by WAL alone, and the
        machine's crash by the ``synchronous`` mode given to the store.)

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
            self._begun()
            try:
                yield self.conn
                self.conn.execute("COMMIT")
                commit = self._commit
            except BaseException as exc:
                self._in_tx = False
                error = self._abort(exc)
                self._full = isinstance(error, StoreFull)
                if error is exc:
                    raise
                raise error from None
            finally:
                self._in_tx = False
        self._committed(commit)

    def exclusive(self) -> AbstractContextManager[sqlite3.Connection]:
        """A write transaction: SQLite's write lock already keeps every other writer out."""
        return self.transaction()

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

    def query(self, sql: str, timeout: float) -> tuple[list[str], list[tuple]]:
        """On a connection of its own that can only read (see :func:`_read_only`)."""
        if self.memory:
            raise StoreError("memory:// lives in one process: evq query needs a store file")
        reader = SqliteLog(self.path, readonly=True)
        deadline = time.monotonic() + timeout
        reader.conn.set_progress_handler(lambda: time.monotonic() > deadline, 10_000)
        try:
            cur = reader.conn.execute(sql)
            return [d[0] for d in cur.description or ()], cur.fetchall()
        except sqlite3.Error as exc:
            text = str(exc)
            if text == "interrupted":
                raise query_stopped(timeout) from None
            if "to use function" in text:
                raise query_refused(f"it allows only functions that compute: {text}") from None
            if any(w in text for w in ("readonly", "read-only", "authoriz")):
                raise query_refused(text) from None
            if isinstance(exc, sqlite3.OperationalError | sqlite3.ProgrammingError):
                raise query_failed(text) from None
            raise translate(exc, self.path) from None
        finally:
            reader.close()

    def signals(self) -> ReadySignals | None:
        """Files beside the database that other processes watch (none for ``:memory:``)."""
        return None if self.memory else ReadySignals(self.path)

    def execute(self, sql: str, params: Sequence[object] = ()) -> list[tuple]:
        """Run one statement inside :meth:`transaction`; returns the rows it gives."""
        return self.conn.execute(sql, params).fetchall()

    def executemany(self, sql: str, rows: Iterable[Sequence[object]],
                    shift: Sequence[str] = ()) -> None:
        """Run one statement for each of ``rows``, inside :meth:`transaction` (``shift`` is
        never given here: :meth:`append_placed` knows its base at once)."""
        self.conn.executemany(sql, rows)

    @staticmethod
    def index_hint(index: str | None) -> str:
        """The clause that makes a query use ``index`` (SQLite picks a worse plan for some)."""
        return f" INDEXED BY {index}" if index else ""

    def run_script(self, script: str) -> None:
        """Run ``;``-separated statements inside the open transaction (``executescript`` would
        commit it first)."""
        for statement in script.split(";"):
            if statement.strip():
                self.conn.execute(statement)

    def has_table(self, name: str) -> bool:
        return bool(self.read_rows("SELECT 1 FROM sqlite_master WHERE name = ?", (name,)))

    def create_table(self, name: str, columns: dict[str, type], pk: Sequence[str]) -> None:
        import sqlite_utils  # only when a store is created: it takes 100 ms to import

        sqlite_utils.Database(self.conn).table(name).create(
            columns, pk=pk[0] if len(pk) == 1 else tuple(pk), if_not_exists=True)

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

    def migrate(self, create_tables: Callable[[int], None], *, upgrade: bool = True) -> int:
        version = self.read_rows("PRAGMA user_version")[0][0]
        self._check_version(version, upgrade=upgrade)
        if version == SCHEMA_VERSION:
            return version
        with self.transaction() as conn:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version < SCHEMA_VERSION:
                self.run_script(EVENTS_DDL)
                create_tables(version)
                conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        return version

    def close(self) -> None:
        with self.lock:
            self.conn.close()
