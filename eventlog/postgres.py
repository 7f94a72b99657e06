"""The event log in PostgreSQL: the ``events`` table and the projections in one database (or one
schema of it), shared by workers on many machines.

Positions without gaps, in commit order. Writers run at once here (SQLite lets one in at a time),
so a position taken as ``max(seq) + 1`` could be committed after a higher one, and a reader that
follows "after seq N" would skip it. So an append first takes a transaction-scoped advisory lock
(:meth:`PostgresLog.lock_appends`), held until its transaction commits, and only then reads
``max(seq)``: appends commit one at a time, in the order of their positions, and every position
a reader sees is preceded by every smaller one. What runs before the lock (finding and locking
the rows a transaction changes, deciding its events) still runs at once in many workers. The
common appends (dispatches, claims, outcomes: :meth:`PostgresLog.append_placed`) do not wait for
``max(seq)`` to come back: the lock, the read of it into a setting of the transaction (a
statement of its own, so that it sees what committed before the lock was granted) and the
writes, which count positions from that setting, go in one round trip with the commit. The
append lock is then held for the server's work only, never across the network.

Locks, in the one order that cannot deadlock: every write transaction starts with ``jobs`` in
ROW EXCLUSIVE mode, then locks the rows it changes (claims and expiries ``FOR UPDATE SKIP
LOCKED``: a row another worker is taking is left to it; a schedule's tick, its ``schedules`` row,
by the upsert that takes the tick), then the limit keys of the jobs a claim takes
(:meth:`PostgresLog.lock_keys`: advisory locks in ascending order, a key out of order only
tried), then the append lock; after it, it writes only rows it holds or rows that only holders
of the append lock write (counts, minutes, workers, uniques, new jobs). A dispatch of unique
jobs reads ``uniques`` after the append lock: every writer of ``uniques`` and of job states
holds that lock until it commits, so what the dispatch read stays true until it commits.
:meth:`PostgresLog.exclusive` (rebuilds, verification) takes ``jobs`` in EXCLUSIVE mode first,
so it waits for the writers that started before it and keeps out the rest.

Wake-ups: a transaction that makes work ready sends ``NOTIFY`` with the queue's name, delivered
at commit; idle workers ``LISTEN`` on their own connection (:class:`PgSignals`). Any other
transaction that appends sends one ``NOTIFY`` on a second channel, for those who follow the whole
log (viewers, results, subscribers): a worker's wake-ups stay those of its queues. (A claim that
only leases sends none: the starts of its jobs, written moments later, do.)
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import msgspec

from .codec import encode
from .errors import ConfigError, EvqError, StoreBusy, StoreError, StoreFull, StoreMissing
from .events import Event, JobDispatched
from .sqllog import EVENTS_DDL, SCHEMA_VERSION, SqlLog, query_failed, query_refused, query_stopped

try:
    import psycopg
    from psycopg import errors as pg_errors
except ImportError:  # pragma: no cover - the optional extra is not installed
    psycopg = None  # type: ignore[assignment]

log = logging.getLogger("evq.store")
_PIPELINE = psycopg is not None and psycopg.Pipeline.is_supported()  # libpq 14 or newer

# Options of a postgresql:// URL that evq reads itself; the libpq ones it passes on.
EVQ_OPTIONS = {"schema"}
# What evq sets unless the URL does: a server that stops answering (a network cut that drops
# packets, a crashed host) is given up on in seconds, as StoreUnavailable, instead of when the
# kernel gives up on TCP (many minutes; never for an idle connection awaiting a reply).
LIBPQ_DEFAULTS = {"connect_timeout": "5", "keepalives": "1", "keepalives_idle": "5",
                  "keepalives_interval": "2", "keepalives_count": "3",
                  "tcp_user_timeout": "10000"}
LIBPQ_OPTIONS = {"sslmode", "sslrootcert", "sslcert", "sslkey", "application_name",
                 "target_session_attrs", "options", "password", "user", *LIBPQ_DEFAULTS}
_SCHEMA = re.compile(r"[a-z_][a-z0-9_]{0,62}")

_TYPES = {int: "BIGINT", float: "DOUBLE PRECISION", str: "TEXT"}
_DDL = ((re.compile(r"\bINTEGER\b"), "BIGINT"), (re.compile(r"\bREAL\b"), "DOUBLE PRECISION"),
        (re.compile(r"\bBLOB\b"), "BYTEA"), (re.compile(r"\)\s*WITHOUT ROWID"), ")"),
        (re.compile(r"CREATE VIEW IF NOT EXISTS"), "CREATE OR REPLACE VIEW"))


def _ddl(script: str) -> str:
    """The DDL of the layers above (written for SQLite) in PostgreSQL's types: 64-bit integers,
    doubles, bytea; views replaced rather than kept."""
    for pattern, replacement in _DDL:
        script = pattern.sub(replacement, script)
    return script


@lru_cache(maxsize=1024)
def _statement(sql: str) -> tuple[str, bool]:
    """A statement with ``?`` placeholders in psycopg's ``%s`` style, and whether it gives rows
    (a query, or a write with RETURNING)."""
    gives_rows = sql.lstrip()[:6].upper() in ("SELECT", "WITH") or " RETURNING " in sql.upper()
    return sql.replace("%", "%%").replace("?", "%s"), gives_rows


_INSERT = re.compile(r"INSERT INTO (\w+)\(([\w, ]+)\) VALUES \(\?(?:, ?\?)*\)(.*)", re.S)
_UPDATE = re.compile(r"UPDATE (\w+) SET ((?:\w+ = \?, )*\w+ = \?) WHERE (\w+) = \?")
_DELETE = re.compile(r"DELETE FROM (\w+) WHERE ((?:\w+ = \? AND )*\w+ = \?)")
_CONFLICT = re.compile(r"ON CONFLICT\s*\(([\w, ]+)\)\s*DO UPDATE", re.S)
_json = msgspec.json.Encoder()
# The position before the first event of a deferred append (:meth:`PostgresLog.append_placed`),
# set in its transaction by the server, after the append lock.
BASE = "current_setting('evq.base')::bigint"
_SET_BASE = "SELECT set_config('evq.base', coalesce(max(seq), 0)::text, true) FROM events"
_INSERT_PLACED = (
    # a new job's JobDispatched (job_id null) takes its position as its job id, in the body too:
    # its JSON is sent without its last field's value, "job_id":0} (job_id comes last)
    f"INSERT INTO events(seq, ts, type, job_id, queue, body) SELECT x.seq + {BASE}, x.ts, "
    f"x.type, coalesce(x.job_id, x.seq + {BASE}), x.queue, "
    f"coalesce(x.body, x.head || (x.seq + {BASE}) || '}}') "
    "FROM json_to_recordset(%s::json) AS x(seq bigint, ts double precision, type text, "
    "job_id bigint, queue text, body text, head text)")
_EventRow = msgspec.defstruct("EventRow", ["seq", "ts", "type", "job_id", "queue", "body",
                                           "head"])
_NEW_JOB_TAIL = '"job_id":0}'
_BINARY = (bytes, bytearray, memoryview)  # JSON would carry them as base64 text


class _Bulk:
    """One statement for many rows: ``sql`` reads them from one JSON parameter (an array of
    objects keyed by ``columns``) through ``json_populate_recordset``, which gives every value
    its column's type. ``unique``: the columns whose values must differ between the rows (an
    upsert or an update may touch a row once per statement; executed row by row it may not
    matter)."""

    __slots__ = ("row", "sql", "unique")

    def __init__(self, sql: str, columns: Sequence[str], unique: Sequence[int]) -> None:
        self.sql, self.unique = sql, tuple(unique)
        self.row = msgspec.defstruct("Row", list(columns))  # encodes as an object, fast

    def param(self, rows: Sequence[Sequence[object]]) -> str | None:
        """The rows as the JSON parameter, or None where JSON cannot carry them (bytes) or
        ``unique`` columns repeat. Infinities and NaN, which JSON has no numbers for, go as the
        strings PostgreSQL reads them from."""
        odd = False
        for r in rows:
            for v in r:
                t = type(v)
                if t in _BINARY:
                    return None
                odd = odd or (t is float and not math.isfinite(v))  # type: ignore[arg-type]
        if self.unique and len({tuple(r[i] for i in self.unique) for r in rows}) < len(rows):
            return None
        if odd:
            rows = [[_float_text(v) for v in r] for r in rows]
        row = self.row
        return _json.encode([row(*r) for r in rows]).decode()


def _float_text(v: object) -> object:
    """``v``, or for an infinity or NaN the text of it that PostgreSQL reads as a double."""
    if type(v) is not float or math.isfinite(v):
        return v
    return "NaN" if v != v else ("Infinity" if v > 0 else "-Infinity")


@lru_cache(maxsize=256)
def _bulk(sql: str, shift: tuple[str, ...] = ()) -> _Bulk | None:
    """The one-statement form of an INSERT ... VALUES (?, ...), UPDATE ... SET c = ?, ... WHERE
    k = ?, or DELETE ... WHERE c = ? AND ... written for one row (None for other statements);
    the columns ``shift`` take their values counted from the base of a deferred append
    (:data:`BASE`). Row by row, each row costs a round of the protocol and of the executor:
    ~20 us of the client's CPU and ~15 us of the server's here; in one statement, ~5 and ~7."""
    source = "json_populate_recordset(NULL::{}, %s::json) AS x"

    def value(c: str) -> str:
        return f"x.{c} + {BASE}" if c in shift else f"x.{c}"

    if m := _INSERT.fullmatch(sql.strip()):
        table, cols, tail = m[1], [c.strip() for c in m[2].split(",")], m[3]
        conflict = _CONFLICT.search(tail)
        unique = [cols.index(c.strip()) for c in conflict[1].split(",")] if conflict else []
        # WHERE true: so that ON CONFLICT is not read as the ON of a join
        return _Bulk(f"INSERT INTO {table}({', '.join(cols)}) "
                     f"SELECT {', '.join(map(value, cols))} "
                     f"FROM {source.format(table)} WHERE true {tail.replace('%', '%%')}",
                     cols, unique)
    if m := _UPDATE.fullmatch(sql.strip()):
        table, key = m[1], m[3]
        cols = [c.split("=")[0].strip() for c in m[2].split(",")]
        sets = ", ".join(f"{c} = {value(c)}" for c in cols)
        return _Bulk(f"UPDATE {table} SET {sets} FROM {source.format(table)} "
                     f"WHERE {table}.{key} = x.{key}", [*cols, key], [len(cols)])
    if m := _DELETE.fullmatch(sql.strip()):
        table = m[1]
        cols = [c.split("=")[0].strip() for c in m[2].split(" AND ")]
        where = " AND ".join(f"{table}.{c} = x.{c}" for c in cols)
        return _Bulk(f"DELETE FROM {table} USING {source.format(table)} WHERE {where}", cols, [])
    return None


def _key(text: str) -> int:
    """A 64-bit advisory lock key (or channel suffix) for ``text``."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big",
                          signed=True)


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


class StoreUnavailable(StoreError):
    """The database server cannot be reached (down, restarting, or the network is cut); evq
    reconnects on the next use."""


def translate(exc: BaseException, name: str) -> BaseException:
    """A driver error as an evq error with a message a user can act on."""
    if psycopg is None or not isinstance(exc, psycopg.Error):
        return exc
    text = _first_line(exc)
    if isinstance(exc, pg_errors.SerializationFailure | pg_errors.DeadlockDetected
                  | pg_errors.LockNotAvailable):
        return StoreBusy(f"{name}: {text}")
    if isinstance(exc, pg_errors.InsufficientPrivilege):
        return StoreError(f"{name}: permission denied ({text})")
    if isinstance(exc, psycopg.OperationalError):
        if isinstance(exc, pg_errors.DiskFull):
            return StoreFull(f"{name}: the server's disk is full; nothing was written ({text})")
        return StoreUnavailable(f"cannot reach {name}: {text}")
    return StoreError(f"{name}: {text}")


def parse_url(url: str) -> tuple[str, str | None, str]:
    """``postgresql://...`` as (the libpq URL, the schema, the URL to show in messages: no
    password). Unknown options are a :class:`ConfigError`."""
    parts = urlsplit(url)
    options = dict(parse_qsl(parts.query))
    unknown = options.keys() - EVQ_OPTIONS - LIBPQ_OPTIONS
    if unknown:
        raise ConfigError(f"{_shown(parts)}: unknown option {', '.join(sorted(unknown))} "
                          f"(evq reads schema; libpq's: {', '.join(sorted(LIBPQ_OPTIONS))})")
    schema = options.pop("schema", None)
    if schema is not None and not _SCHEMA.fullmatch(schema):
        raise ConfigError(f"{_shown(parts)}: schema must be a lower-case SQL name "
                          "(letters, digits, _)")
    options = {**LIBPQ_DEFAULTS, **options}
    conninfo = urlunsplit(parts._replace(scheme="postgresql", query=urlencode(options)))
    return conninfo, schema, _shown(parts)


def _shown(parts: Any) -> str:
    netloc = parts.netloc.rsplit("@", 1)
    if len(netloc) == 2 and ":" in netloc[0]:
        netloc[0] = netloc[0].split(":", 1)[0] + ":***"
    return urlunsplit(parts._replace(netloc="@".join(netloc), query=""))


class PostgresLog(SqlLog):
    """An append-only log of events in PostgreSQL, on one connection guarded by a lock (as the
    SQLite log), reconnected after the server was lost."""

    remote = True

    def __init__(self, url: str, *, create: bool = True) -> None:
        if psycopg is None:
            raise ConfigError("postgresql:// stores need psycopg: pip install 'evq[postgres]'")
        super().__init__()
        self.conninfo, self.schema, self.name = parse_url(url)
        scope = self.schema or "public"
        self._append_key = _key(f"evq append {scope}")
        self._migrate_key = _key(f"evq migrate {scope}")
        self.channel = f"evq_ready_{_key(scope) & 0xFFFFFFFF:08x}"
        self.log_channel = f"evq_log_{_key(scope) & 0xFFFFFFFF:08x}"  # the other appends
        self.lock = threading.RLock()
        self._conn: Any = None
        self._writes: Any = None  # the connection's cursor for statements whose rows nobody
        # reads: one cursor for them all costs the client a third less than a cursor each
        self._lost = False  # the last connection failed: say so when it comes back
        self._in_tx = False
        self._writing = False
        self._append_locked = False
        self._keys_locked: set[str] = set()
        self._placements: list[Callable[[], None]] = []  # what runs as the transaction commits
        self._nested = 0  # transactions joined to the one open
        self._signals: PgSignals | None = None
        with self.lock:
            self._connection()
        if not create and self._version() == 0:
            self.close()
            raise StoreMissing(f"no evq store at {self.name}: the database has no evq tables"
                               + (f" in schema {self.schema}" if self.schema else ""))

    # -- the connection ------------------------------------------------------------------------

    def connect(self) -> Any:
        """A new autocommit connection to the server, in the store's schema."""
        try:
            conn = psycopg.connect(self.conninfo, autocommit=True)
        except psycopg.Error as exc:
            raise translate(exc, self.name) from None
        if self.schema:
            conn.execute(f'SET search_path TO "{self.schema}"')
        # the server's side of the same: a session whose client is cut off mid-transaction
        # ends in seconds, with the locks it holds (the append lock stops every writer)
        conn.execute("SET tcp_keepalives_idle = 5; SET tcp_keepalives_interval = 2; "
                     "SET tcp_keepalives_count = 3; SET tcp_user_timeout = 10000")
        return conn

    def _connection(self) -> Any:
        if self._conn is None or self._conn.closed or self._conn.broken:
            if self._conn is not None:
                self._conn.close()
            self._conn = self.connect()
            self._writes = self._conn.cursor()
            if self._lost:
                log.warning("reconnected to %s", self.name)
                self._lost = False
        return self._conn

    def _failed(self, exc: BaseException) -> BaseException:
        """The error to raise for ``exc``; a lost connection is dropped, to be made again."""
        error = translate(exc, self.name)
        if isinstance(error, StoreUnavailable) or (self._conn is not None and self._conn.broken):
            if not self._lost:
                log.warning("lost the connection to %s: %s", self.name, error)
            self._lost = True
            if self._conn is not None:
                self._conn.close()
            self._conn = None
            if not isinstance(error, StoreUnavailable):
                error = StoreUnavailable(str(error))
        return error

    def _run(self, fn: Callable[[Any], Any]) -> Any:
        """``fn(connection)``, errors translated; inside a transaction, on its connection only
        (a new one would run the statement outside it)."""
        with self.lock:
            try:
                conn = self._conn if self._in_tx else self._connection()
                if conn is None:
                    raise StoreUnavailable(f"lost the connection to {self.name}")
                return fn(conn)
            except psycopg.Error as exc:
                raise self._failed(exc) from None

    # -- transactions --------------------------------------------------------------------------

    @contextmanager
    def _tx(self, *begin: str, writing: bool = True) -> Iterator[Any]:
        """A transaction of the statements ``begin`` and the caller's. A write transaction runs
        in pipeline mode: statements whose rows nobody reads (inserts, updates, locks, the
        commit) are sent without waiting for their answers, so a dispatch costs one round trip
        to the server (see :meth:`append_placed`) instead of one per statement."""
        with self.lock:
            if self._in_tx:
                self._nested += 1
                try:
                    yield self._conn
                finally:
                    self._nested -= 1
                return
            conn = self._run(lambda c: c)
            self._in_tx, self._writing, self._append_locked = True, writing, False
            self._keys_locked = set()
            self._placements = []
            self._begun()
            try:
                with conn.pipeline() if writing and _PIPELINE else contextlib.nullcontext():
                    writes = self._writes
                    for statement in begin:
                        writes.execute(statement)
                    yield conn
                    if self._commit.woken:
                        writes.execute("SELECT pg_notify(%s, q) FROM unnest(%s::text[]) AS q",
                                       (self.channel, sorted(self._commit.woken)))
                    elif self._commit.appended and not self._commit.quiet:
                        writes.execute("SELECT pg_notify(%s, '')", (self.log_channel,))
                    writes.execute("COMMIT")
                commit = self._commit
                for place in self._placements:  # under the lock: their notes join this commit
                    place()
            except BaseException as exc:
                error = self._failed(exc) if isinstance(exc, psycopg.Error) else exc
                if self._conn is not None and not self._conn.broken:
                    try:
                        self._conn.execute("ROLLBACK")
                    except psycopg.Error as again:
                        self._failed(again)
                if error is exc:
                    raise
                raise error from None
            finally:
                self._in_tx = self._writing = self._append_locked = False
        self._committed(commit)

    def transaction(self, *, durable: bool = True) -> Any:
        begin = ("BEGIN", "LOCK TABLE jobs IN ROW EXCLUSIVE MODE")
        # not durable: the commit does not wait for the WAL's fsync (the server flushes it
        # within moments, and before any later commit that waits)
        return self._tx(*begin, *(() if durable else ("SET LOCAL synchronous_commit = off",)))

    def exclusive(self) -> Any:
        return self._tx("BEGIN", "LOCK TABLE jobs IN EXCLUSIVE MODE",
                        f"SELECT pg_advisory_xact_lock({self._append_key})")

    def reading(self) -> Any:
        return self._tx("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", writing=False)

    def lock_appends(self) -> None:
        if not self._append_locked:
            self._run(lambda c: self._writes.execute("SELECT pg_advisory_xact_lock(%s)",
                                                     (self._append_key,)))
            self._append_locked = True

    def read_after_lock(self, sql: str, params: Sequence[object] = ()) -> list[tuple]:
        """The lock and the read sent together: in pipeline mode the lock's answer is not
        awaited apart (the server runs the read once it has the lock)."""
        if self._append_locked:
            return self.execute(sql, params)
        statement = _statement(sql)[0]

        def run(c: Any) -> list[tuple]:
            self._writes.execute("SELECT pg_advisory_xact_lock(%s)", (self._append_key,))
            return c.execute(statement, params).fetchall()

        rows = self._run(run)
        self._append_locked = True
        return rows

    def append_placed(self, events: Sequence[Event], queues: Sequence[str | None],
                      placed: Callable[[int], None]) -> int | str:
        """As :meth:`SqlLog.append_placed`, deferred: the append lock, the base (read after the
        lock, in a statement of its own: each statement sees what committed before it began)
        and the events are sent at once, positions counted from the base by the server; the
        base comes back with the commit (at once inside a transaction joined to another, whose
        code may need the positions before it commits). Returns :data:`BASE`."""
        rows = []
        for i, (e, q) in enumerate(zip(events, queues, strict=True), 1):
            if type(e) is JobDispatched:
                if e.job_id:
                    raise ValueError("a JobDispatched appended here takes its position as its "
                                     f"job id: job_id {e.job_id} given")
                body = encode(e).decode()
                if not body.endswith(_NEW_JOB_TAIL):
                    raise ValueError(f"a JobDispatched encoded as {body[-40:]!r}: job_id last")
                rows.append(_EventRow(i, e.ts, "JobDispatched", None, q, None, body[:-2]))
            else:
                rows.append(_EventRow(i, e.ts, e.__struct_config__.tag, e.job_id, q,
                                      encode(e).decode(), None))
        param = _json.encode(rows).decode()

        def run(c: Any) -> Any:
            if not self._append_locked:
                self._writes.execute("SELECT pg_advisory_xact_lock(%s)", (self._append_key,))
            base = c.execute(_SET_BASE)
            self._writes.execute(_INSERT_PLACED, (param,))
            return base

        base = self._run(run)
        self._append_locked = True
        self._commit.appended = True
        if self._nested:
            placed(int(base.fetchone()[0]))
        else:
            self._placements.append(lambda: placed(int(base.fetchone()[0])))
        return BASE

    @staticmethod
    def among(column: str, values: Sequence[object]) -> tuple[str, list[object]]:
        """``= ANY(?)`` of one array: one statement text whatever the number of values (a text
        with a placeholder per value is parsed anew for each count, by psycopg and the server)."""
        return f"{column} = ANY(?)", [list(values)]

    def row_lock(self, *, skip_locked: bool = False) -> str:
        if not (self._in_tx and self._writing):
            return ""
        return " FOR UPDATE SKIP LOCKED" if skip_locked else " FOR UPDATE"

    # -- statements ----------------------------------------------------------------------------

    def execute(self, sql: str, params: Sequence[object] = ()) -> list[tuple]:
        statement, gives_rows = _statement(sql)
        if not gives_rows:  # in a pipeline: sent, not awaited
            return self._run(lambda c: (self._writes.execute(statement, params), [])[1])
        return self._run(lambda c: c.execute(statement, params).fetchall())

    def executemany(self, sql: str, rows: Iterable[Sequence[object]],
                    shift: Sequence[str] = ()) -> None:
        """Many rows in one statement where :func:`_bulk` knows its form, else row by row
        (rows with ``shift`` always in one statement: the writes of a deferred append, whose
        forms it knows)."""
        rows = list(rows)
        if (len(rows) > 1 or shift) and (bulk := _bulk(sql, tuple(shift))) is not None:
            param = bulk.param(rows)
            if param is not None:
                self._run(lambda c: self._writes.execute(bulk.sql, (param,)))
                return
        if shift:
            raise ValueError(f"cannot shift the positions of these rows: {sql}")
        statement = _statement(sql)[0]
        if len(rows) == 1:
            self._run(lambda c: self._writes.execute(statement, rows[0]))
        elif rows:
            self._run(lambda c: c.cursor().executemany(statement, rows))

    def read_rows(self, sql: str, params: Sequence[object] = ()) -> list[tuple]:
        return self.execute(sql, params)

    def query(self, sql: str, timeout: float) -> tuple[list[str], list[tuple]]:
        """In a read-only transaction, with a ``statement_timeout``."""
        with self._tx("BEGIN READ ONLY", writing=False) as conn:
            try:
                conn.execute(f"SET LOCAL statement_timeout = {max(1, int(timeout * 1000))}")
                # prepared: one statement only; without parameters any % stays as it is
                cur = conn.execute(sql, prepare=True)
                return [d.name for d in cur.description or ()], _rows(cur)
            except psycopg.Error as exc:
                error = _query_error(exc, timeout)
                if error is None:
                    raise
                raise error from None

    def run_script(self, script: str) -> None:
        statements = [s for s in _ddl(script).split(";") if s.strip()]
        self._run(lambda c: [c.execute(s) for s in statements])

    def has_table(self, name: str) -> bool:
        return self.execute("SELECT to_regclass(?) IS NOT NULL", (name,))[0][0]

    def create_table(self, name: str, columns: dict[str, type], pk: Sequence[str]) -> None:
        cols = ", ".join(f"{c} {_TYPES[t]}" for c, t in columns.items())
        self.run_script(f"CREATE TABLE IF NOT EXISTS {name} ({cols}, "
                        f"PRIMARY KEY ({', '.join(pk)}))")

    def lock_keys(self, keys: Iterable[str]) -> set[str]:
        """Transaction-scoped advisory locks, taken in ascending order of key: a key below one
        this transaction holds already is only tried (a wait out of order could deadlock), and
        given back among those not locked if another transaction holds it."""
        missed = set()
        for key in sorted(set(keys) - self._keys_locked):
            in_order = not self._keys_locked or key > max(self._keys_locked)
            lock = "pg_advisory_xact_lock" if in_order else "pg_try_advisory_xact_lock"
            got = self.execute(f"SELECT {lock}(?)",
                               (_key(f"evq limit {self.schema or 'public'} {key}"),))[0][0]
            if got is False:
                missed.add(key)
            else:
                self._keys_locked.add(key)
        return missed

    # -- schema --------------------------------------------------------------------------------

    def _version(self) -> int:
        if not self.has_table("evq_schema"):
            return 0
        got = self.read_rows("SELECT max(version) FROM evq_schema")
        return got[0][0] or 0

    def migrate(self, create_tables: Callable[[int], None], *, upgrade: bool = True) -> int:
        version = self._version()
        self._check_version(version, upgrade=upgrade)
        if version == SCHEMA_VERSION:
            return version
        with self._tx("BEGIN", f"SELECT pg_advisory_xact_lock({self._migrate_key})"):
            if self.schema:
                self.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
            self.run_script("CREATE TABLE IF NOT EXISTS evq_schema (version INTEGER NOT NULL)")
            version = self._version()
            if version < SCHEMA_VERSION:
                self.run_script(EVENTS_DDL)
                create_tables(version)
                self.execute("DELETE FROM evq_schema")
                self.execute("INSERT INTO evq_schema(version) VALUES (?)", (SCHEMA_VERSION,))
        return version

    # -- wake-ups ------------------------------------------------------------------------------

    def signals(self) -> PgSignals:
        if self._signals is None:
            self._signals = PgSignals(self)
        return self._signals

    def close(self) -> None:
        if self._signals is not None:
            self._signals.close()
        with self.lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


def _query_error(exc: BaseException, timeout: float) -> EvqError | None:
    """What a user's query did wrong, or None for a failure of the store."""
    if isinstance(exc, pg_errors.QueryCanceled):
        return query_stopped(timeout)
    if isinstance(exc, pg_errors.ReadOnlySqlTransaction | pg_errors.InsufficientPrivilege
                  | pg_errors.ActiveSqlTransaction):
        return query_refused(_first_line(exc))
    if "multiple commands" in str(exc):
        return query_failed("give one statement at a time")
    if isinstance(exc, pg_errors.SyntaxErrorOrAccessRuleViolation | pg_errors.DataException
                  | pg_errors.UndefinedFunction):
        return query_failed(_first_line(exc))
    return None


def _rows(cur: Any) -> list[tuple]:
    return cur.fetchall() if cur.description else []


class PgSignals:
    """Wake-ups through ``LISTEN``, by two listeners, each one thread and one connection made on
    first use, whatever the number of watches: one on the ready channel for the watches of queues
    (workers), one on both channels for the watches of every commit (viewers), so that a worker
    is not woken by the notifications of outcomes, its own included."""

    def __init__(self, log: PostgresLog) -> None:
        self._queues = _Listener(log, (log.channel,))
        self._all = _Listener(log, (log.channel, log.log_channel))

    def announce(self, queues: Iterable[str]) -> None:
        """Nothing to do: the transaction sent its ``NOTIFY`` as it committed."""

    def watch(self, queues: Iterable[str], on_change: Callable[[], None]) -> _PgWatch:
        return self._queues.add(frozenset(queues), on_change)

    def watch_all(self, on_change: Callable[[], None]) -> _PgWatch:
        return self._all.add(None, on_change)

    def close(self) -> None:
        self._queues.close()
        self._all.close()


class _Listener:
    """One connection that LISTENs on ``channels`` and its thread. A notification on the ready
    channel names the queue in which work appeared (its payload); one on the log channel names
    none, and only watches of every notification listen to it. After a lost connection every
    watch is woken once (what was sent meanwhile is unknown), then it listens again."""

    CHECK_STOP = 0.2  # seconds the listener waits for a notification before it checks for
    # close(): a wait on its socket, no query

    def __init__(self, log: PostgresLog, channels: Sequence[str]) -> None:
        self._log = log
        self._channels = channels
        self._watches: list[_PgWatch] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._listening = threading.Event()

    def add(self, queues: frozenset[str] | None, on_change: Callable[[], None]) -> _PgWatch:
        """A watch of ``queues`` (None: of every notification)."""
        w = _PgWatch(queues, on_change, self._remove)
        with self._lock:
            self._watches.append(w)
            if self._thread is None:
                self._thread = threading.Thread(target=self._listen, name="evq-listen",
                                                daemon=True)
                self._thread.start()
        self._listening.wait(10)  # the LISTEN is in place: no notification after it is missed
        return w

    def _remove(self, w: _PgWatch) -> None:
        with self._lock:
            if w in self._watches:
                self._watches.remove(w)

    def _listen(self) -> None:
        delay = 0.1
        while not self._stop.is_set():
            try:
                conn = self._log.connect()
            except StoreError as exc:
                log.warning("cannot listen for work: %s (retrying in %.1fs)", exc, delay)
                self._stop.wait(delay)
                delay = min(delay * 2, 5.0)
                continue
            try:
                for channel in self._channels:
                    conn.execute(f"LISTEN {channel}")
                if self._listening.is_set():  # back after a loss: wake everyone once
                    self._notify(None)
                self._listening.set()
                delay = 0.1
                while not self._stop.is_set():
                    for n in conn.notifies(timeout=self.CHECK_STOP):
                        self._notify(n.payload)
            except psycopg.Error as exc:
                if not self._stop.is_set():
                    log.warning("lost the listening connection: %s", _first_line(exc))
                    self._stop.wait(delay)
            finally:
                conn.close()

    def _notify(self, queue: str | None) -> None:
        """Fire the watches of ``queue`` and those of every notification; None: all."""
        with self._lock:
            watches = list(self._watches)
        for w in watches:
            if queue is None or w.queues is None or queue in w.queues:
                w.fire()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)


class _PgWatch:
    def __init__(self, queues: frozenset[str] | None, on_change: Callable[[], None],
                 remove: Callable[[_PgWatch], None]) -> None:
        self.queues = queues
        self._on_change = on_change
        self._remove = remove
        self._armed = True
        self._missed = False

    def fire(self) -> None:
        if self._armed:
            self._on_change()
        else:
            self._missed = True

    def arm(self) -> None:
        self._armed = True
        if self._missed:
            self._missed = False
            self._on_change()

    def disarm(self) -> None:
        self._armed = False

    def close(self) -> None:
        self._remove(self)
