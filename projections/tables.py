"""The projection tables (``jobs``, ``counts`` and its views ``queue_stats`` and
``job_type_stats``), and queries.

The tables are created from the structs in :mod:`model`, so a column and its field cannot drift.
Every write happens inside the log's transaction; the reads are what workers and commands ask.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import msgspec

from evq.eventlog.sqllog import SqlLog, Where

from .apply import Deltas
from .model import (
    CANCELLED,
    COUNT_COLUMNS,
    FAILED,
    HELD,
    JOB_COLUMNS,
    MINUTE_COLUMNS,
    PENDING,
    QUEUE_COLUMNS,
    TYPE_COLUMNS,
    TYPE_SOURCES,
    UNIQUE_COLUMNS,
    Counts,
    JobRow,
    JobTypeStats,
    MinuteCounts,
    QueueCounts,
    UniqueRow,
)
from .snapshot import SNAPSHOTS_DDL

_COLS = ", ".join(JOB_COLUMNS)

# Every index on ``jobs`` is partial: it holds the rows of some states only, so the other state
# changes of a job cost no write to it. SQLite uses a partial index only for a query whose WHERE
# repeats the index's condition word for word, so the conditions are named here and the queries
# below reuse them.
READY = f"state = '{PENDING}'"
DELAYED = f"state = '{PENDING}' AND run_at > dispatched_at"  # dispatched with a delay, or a retry
HELD_NOW = f"state IN ({', '.join(repr(s) for s in HELD)})"
STOPPED = f"state IN ('{FAILED}', '{CANCELLED}')"
LIMITED = "limit_key IS NOT NULL"
LIMITED_HELD = f"{LIMITED} AND {HELD_NOW}"
UNFINISHED = f"state IN ('{PENDING}', {', '.join(repr(s) for s in HELD)})"

LINKS_INDEX = "jobs_replays"

# One B-tree, ordered by key (a rowid table would add an index: one page more per dispatch).
UNIQUES_DDL = """
CREATE TABLE IF NOT EXISTS uniques (
    key    TEXT PRIMARY KEY,    -- a unique key
    job_id INTEGER NOT NULL,    -- the latest job dispatched with it
    until  REAL NOT NULL        -- that job's dispatch plus its unique_for
) WITHOUT ROWID
"""

INDEXES = f"""
-- claim order within a queue: priority, then dispatch order (ids are time-ordered)
CREATE INDEX IF NOT EXISTS jobs_ready ON jobs(queue, priority DESC, id, run_at) WHERE {READY};
CREATE INDEX IF NOT EXISTS jobs_delayed ON jobs(queue, run_at) WHERE {DELAYED};
CREATE INDEX IF NOT EXISTS jobs_leases ON jobs(lease_expires) WHERE {HELD_NOW};
CREATE INDEX IF NOT EXISTS jobs_stopped ON jobs(state, id) WHERE {STOPPED};
-- the jobs of a limit key that hold a slot, and their starts (for rate limits)
CREATE INDEX IF NOT EXISTS jobs_limits_held ON jobs(limit_key) WHERE {LIMITED_HELD};
CREATE INDEX IF NOT EXISTS jobs_limits_starts ON jobs(limit_key, started_at) WHERE {LIMITED};
-- the copies of a job (evq replay --redispatch): jobs that are not copies have no entry
CREATE INDEX IF NOT EXISTS {LINKS_INDEX} ON jobs(replay_of) WHERE replay_of IS NOT NULL;
-- the jobs of a workflow (or chain)
CREATE INDEX IF NOT EXISTS jobs_workflows ON jobs(workflow_id) WHERE workflow_id IS NOT NULL;
"""

# For find(): the partial index that covers a set of states, and its condition.
_COVERING = ((frozenset([PENDING]), "jobs_ready", READY),
             (frozenset(HELD), "jobs_leases", HELD_NOW),
             (frozenset([FAILED, CANCELLED]), "jobs_stopped", STOPPED))

_LAST_SEQ = JOB_COLUMNS.index("last_seq")
assert len(JOB_COLUMNS) - 1 == _LAST_SEQ  # save() finds it last in a row and in an update
_INSERT_JOB = f"INSERT INTO jobs({_COLS}) VALUES ({', '.join('?' * len(JOB_COLUMNS))})"


def _update_sql(columns: tuple[int, ...]) -> str:
    return (f"UPDATE jobs SET {', '.join(f'{JOB_COLUMNS[i]} = ?' for i in columns)} "
            "WHERE id = ?")


def replace_sql(table: str, columns: Sequence[str]) -> str:
    """An upsert that writes whole rows, keyed by the first column."""
    return (f"INSERT INTO {table}({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))}) "
            f"ON CONFLICT({columns[0]}) DO UPDATE SET "
            + ", ".join(f"{c} = excluded.{c}" for c in columns[1:]))


def _bump_sql(table: str, columns: Sequence[str], key: int) -> str:
    """An upsert that adds to the totals (the columns after the ``key`` first ones)."""
    return (f"INSERT INTO {table}({', '.join(columns)}) "
            f"VALUES ({', '.join('?' * len(columns))}) "
            f"ON CONFLICT({', '.join(columns[:key])}) DO UPDATE SET "
            + ", ".join(f"{f} = {table}.{f} + excluded.{f}" for f in columns[key:]))


_TOTALS, _MINUTE_TOTALS = COUNT_COLUMNS[2:], MINUTE_COLUMNS[3:]
_ZEROS = (0,) * len(_TOTALS)
_BUMP, _BUMP_MINUTE = _bump_sql("counts", COUNT_COLUMNS, 2), _bump_sql("minutes", MINUTE_COLUMNS, 3)
_SET_UNIQUE = (f"INSERT INTO uniques({', '.join(UNIQUE_COLUMNS)}) VALUES (?, ?, ?) "
               "ON CONFLICT(key) DO UPDATE SET job_id = excluded.job_id, until = excluded.until")


def _view(name: str, key: str, struct: type) -> str:
    """A view that sums ``counts`` by ``key``; sums of counts stay integers (PostgreSQL would
    give numerics)."""
    sums = []
    for c, kind in list(column_types(struct).items())[1:]:
        total = f"sum({TYPE_SOURCES.get(c, c) if key == 'name' else c})"
        sums.append(f"{f'CAST({total} AS BIGINT)' if kind is int else total} AS {c}")
    return (f"CREATE VIEW IF NOT EXISTS {name} AS SELECT {key}, {', '.join(sums)} FROM counts "
            f"GROUP BY {key}")


class RowWrites(msgspec.Struct):
    """What writing some changed rows takes: new rows to insert, the changed columns of the
    others (by set of columns), rows to delete."""

    inserts: list[list]
    updates: dict[tuple[int, ...], list[list]]
    removed: list[int]


def row_writes(rows: Iterable[JobRow], removed: Iterable[int],
               before: Mapping[int, JobRow]) -> RowWrites:
    """The writes that turn ``before`` into ``rows``: an UPDATE sets only the columns that
    changed (one that set every column would rewrite every index entry)."""
    astuple = msgspec.structs.astuple
    inserts: list[list] = []
    updates: defaultdict[tuple[int, ...], list[list]] = defaultdict(list)
    for row in rows:
        new, old = astuple(row), before.get(row.id)
        if old is None:
            inserts.append(list(new))
            continue
        was = astuple(old)  # a changed row has a new last_seq (compared it could be a placeholder)
        columns = (*(i for i in range(1, _LAST_SEQ) if new[i] != was[i]), _LAST_SEQ)
        updates[columns].append([*(new[i] for i in columns), row.id])
    return RowWrites(inserts, dict(updates), list(removed))


def column_types(struct: type) -> dict[str, type]:
    types: dict[str, type] = {}
    for f in msgspec.structs.fields(struct):
        t = f.type
        base = next((a for a in getattr(t, "__args__", (t,)) if a is not type(None)), str)
        types[f.name] = base if base in (int, float, str) else str
    return types


VIEWS = ";".join((_view("queue_stats", "queue", QueueCounts),
                  _view("job_type_stats", "name", JobTypeStats)))


def _filter(states: Sequence[str], queue: str | None, name: str | None,
            due_before: float | None, due_after: float | None) -> tuple[Where, str | None]:
    """The WHERE clause of :meth:`SqlTables.find` and the partial index that serves it."""
    where = Where().among("state", states)
    index = None  # without one, ORDER BY id LIMIT tempts SQLite to scan every job
    cover = next(((i, c) for s, i, c in _COVERING if states and s >= set(states)), None)
    if cover is not None:
        index = cover[0]
        where.add(cover[1])
    if due_after is not None:
        index = "jobs_delayed"
        where.add(DELAYED)
    where.given(("queue = ?", queue), ("name = ?", name), ("run_at <= ?", due_before),
                ("run_at > ?", due_after))
    return where, index


class SqlTables:
    """Reads and writes of the projection tables, through the log's statements."""

    def __init__(self, log: SqlLog) -> None:
        self.log = log

    @staticmethod
    def create(log: SqlLog) -> None:
        """Create the tables and indexes (inside the schema transaction)."""
        log.create_table("jobs", column_types(JobRow), ("id",))
        log.run_script(UNIQUES_DDL)
        log.create_table("counts", column_types(Counts), ("queue", "name"))
        log.create_table("minutes", column_types(MinuteCounts), ("minute", "queue", "name"))
        log.run_script(INDEXES)
        log.run_script(VIEWS)
        log.run_script(SNAPSHOTS_DDL)

    @staticmethod
    def drop(log: SqlLog) -> None:
        """Drop ``jobs`` and the counter tables with their views (to make them anew)."""
        log.run_script("DROP VIEW IF EXISTS queue_stats; DROP VIEW IF EXISTS job_type_stats; "
                       "DROP TABLE IF EXISTS jobs; DROP TABLE IF EXISTS counts")

    # -- writes (inside a transaction) ---------------------------------------------------------

    def load(self, ids: Iterable[int]) -> dict[int, JobRow]:
        """The rows of these jobs, locked against other writers."""
        return {t[0]: JobRow(*t) for t in self._by_id(_COLS, ids, lock=True)}

    def _by_id(self, columns: str, ids: Iterable[int], *, lock: bool,
               where: str = "") -> list[tuple]:
        """``columns`` of the rows of these jobs (and of ``where``); ``lock``: locked against
        other writers, inside a write transaction (without it, also outside one)."""
        ids = list(ids)
        got: list[tuple] = []
        run = self.log.execute if lock else self.log.read_rows
        for i in range(0, len(ids), 500):
            among, params = self.log.among("id", ids[i:i + 500])
            got += run(f"SELECT {columns} FROM jobs WHERE {among}{where} ORDER BY id"
                       f"{self.log.row_lock() if lock else ''}", params)
        return got

    def save(self, writes: RowWrites, seq_base: int | str = 0) -> None:
        """Write what :func:`row_writes` worked out, for rows derived before their events had
        positions: ``seq_base`` (see :meth:`SqlLog.append_placed`) is added to every row's
        ``last_seq`` and to the id of every new row (a new job's id is its position)."""
        log = self.log
        shifted = isinstance(seq_base, str)  # added by the server
        if isinstance(seq_base, int) and seq_base:
            for row in writes.inserts:
                row[0] += seq_base
                row[-1] += seq_base
            for values in writes.updates.values():
                for row in values:
                    row[-2] += seq_base
        if writes.inserts:
            log.executemany(_INSERT_JOB, writes.inserts, ("id", "last_seq") if shifted else ())
        for columns, values in writes.updates.items():
            log.executemany(_update_sql(columns), values, ("last_seq",) if shifted else ())
        if writes.removed:
            log.executemany("DELETE FROM jobs WHERE id = ?", [(i,) for i in writes.removed])

    def versions(self, ids: Iterable[int]) -> dict[int, int]:
        """The ``last_seq`` of each of these jobs that has a row: a row changes only with it."""
        return dict(self._by_id("id, last_seq", ids, lock=True))  # type: ignore[arg-type]

    def cancel_requests(self, ids: Iterable[int]) -> dict[int, tuple[int, str]]:
        """For each of these jobs with a cancel request: its attempt and the reason."""
        return {i: (attempt, reason) for i, attempt, reason in self._by_id(
            "id, attempt, cancel_requested", ids, lock=False,
            where=" AND cancel_requested IS NOT NULL")}

    def bump(self, deltas: Deltas) -> None:
        for sql, totals, changes in ((_BUMP, _TOTALS, deltas.counts),
                                     (_BUMP_MINUTE, _MINUTE_TOTALS, deltas.minutes)):
            if changes:
                self.log.executemany(sql, [(*key, *map(d.get, totals, _ZEROS))
                                                for key, d in changes.items()])
        if deltas.uniques:
            self.log.executemany(_SET_UNIQUE, [msgspec.structs.astuple(u)
                                               for u in deltas.uniques.values()])
        if deltas.unique_gone:
            self.log.executemany("DELETE FROM uniques WHERE key = ? AND job_id = ?",
                                 deltas.unique_gone)

    def unique_holders(self, keys: Sequence[str], now: float) -> dict[str, int]:
        """For each of ``keys`` that is taken at ``now``, the id of the job that holds it: the
        latest job of the key, while it is unfinished or its ``until`` is ahead. Read after
        the append lock (:meth:`SqlLog.read_after_lock`): every writer of ``uniques`` and of
        job states holds it until it commits, so the answer stays true until this transaction
        commits."""
        got: dict[str, int] = {}
        for i in range(0, len(keys), 500):
            among, params = self.log.among("u.key", keys[i:i + 500])
            got.update(self.log.read_after_lock(
                f"SELECT u.key, u.job_id FROM uniques u JOIN jobs j ON j.id = u.job_id "
                f"WHERE {among} AND (u.until > ? OR j.{UNFINISHED})", [*params, now]))
        return got

    def limit_usage(self, key: str, since: float | None) -> tuple[list[str], list[float]]:
        """What holds the slots of limit key ``key``: the states of its leased and running
        jobs, and (with ``since``) the start times after ``since`` of its jobs, ascending."""
        held = [s for (s,) in self.log.execute(
            f"SELECT state FROM jobs WHERE limit_key = ? AND {LIMITED_HELD}", (key,))]
        if since is None:
            return held, []
        return held, [t for (t,) in self.log.execute(
            f"SELECT started_at FROM jobs WHERE limit_key = ? AND {LIMITED} AND started_at > ? "
            "ORDER BY started_at", (key, since))]

    def uniques(self) -> list[UniqueRow]:
        return [UniqueRow(*t) for t in self.log.read_rows(
            f"SELECT {', '.join(UNIQUE_COLUMNS)} FROM uniques ORDER BY key")]

    # -- reads ---------------------------------------------------------------------------------

    def _rows(self, where: str, params: Sequence[object], tail: str = "",
              index: str | None = None, skip_locked: bool = False) -> list[JobRow]:
        """Rows of ``jobs``; inside a write transaction, locked against other writers (with
        ``skip_locked``, rows another writer holds are left out instead of awaited)."""
        return [JobRow(*t) for t in self.log.read_rows(
            f"SELECT {_COLS} FROM jobs{self.log.index_hint(index)} WHERE {where} {tail}"
            f"{self.log.row_lock(skip_locked=skip_locked)}", params)]

    def ready(self, queue: str, now: float, limit: int, names: Sequence[str] | None = None,
              *, skip_keys: Sequence[str] = (), skip_ids: Sequence[int] = ()) -> list[JobRow]:
        """Jobs of ``queue`` (and of the job types ``names``, if given) that may be claimed
        now, in claim order (inside a write transaction, those no other writer holds), but
        for those of the limit keys ``skip_keys`` and the ids ``skip_ids``."""
        where = Where(f"queue = ? AND {READY} AND run_at <= ?", params=(queue, now))
        if names is not None:
            where.among("name", names)
        if skip_keys:
            where.add(f"(limit_key IS NULL OR limit_key NOT IN "
                      f"({','.join('?' * len(skip_keys))}))", *skip_keys)
        if skip_ids:
            where.add(f"id NOT IN ({','.join('?' * len(skip_ids))})", *skip_ids)
        return self._rows(str(where), where.params,
                          f"ORDER BY priority DESC, id LIMIT {int(limit)}", "jobs_ready",
                          skip_locked=True)

    def expired(self, now: float, limit: int = 1000) -> list[JobRow]:
        """Held jobs whose lease ran out before ``now`` (inside a write transaction, those no
        other writer holds)."""
        return self._rows(f"{HELD_NOW} AND lease_expires < ?", (now,),
                          f"ORDER BY lease_expires LIMIT {int(limit)}", skip_locked=True)

    def next_due(self, queues: Sequence[str]) -> float | None:
        """The earliest ``run_at`` of a delayed job in ``queues`` (a worker asks when it has
        found nothing ready)."""
        got = [self.log.read_rows(
            f"SELECT min(run_at) FROM jobs WHERE queue = ? AND {DELAYED}", (q,))[0][0]
            for q in queues]
        return min((t for t in got if t is not None), default=None)

    def next_lease_expiry(self) -> float | None:
        return self.log.read_rows(
            f"SELECT min(lease_expires) FROM jobs WHERE {HELD_NOW}")[0][0]

    def members(self, workflow_id: str) -> list[JobRow]:
        """The jobs of a workflow, in dispatch order."""
        return self._rows("workflow_id = ? AND workflow_id IS NOT NULL", (workflow_id,),
                          "ORDER BY id")

    def states(self, ids: Iterable[int]) -> dict[int, str]:
        """The state of each of these jobs that has a row (inside a write transaction)."""
        return dict(self._by_id("id, state", ids, lock=False))  # type: ignore[arg-type]

    def get(self, job_id: int) -> JobRow | None:
        rows = self._rows("id = ?", (job_id,))
        return rows[0] if rows else None

    def find(self, *, states: Sequence[str] = (), queue: str | None = None,
             name: str | None = None, due_before: float | None = None,
             due_after: float | None = None, limit: int = 100,
             newest_first: bool = False) -> list[JobRow]:
        """Jobs matching every given filter, in dispatch order."""
        where, index = _filter(states, queue, name, due_before, due_after)
        order = "DESC" if newest_first else ""
        return self._rows(str(where), where.params, f"ORDER BY id {order} LIMIT {int(limit)}",
                          index)

    def count(self, *, states: Sequence[str] = (), queue: str | None = None,
              name: str | None = None, due_before: float | None = None,
              due_after: float | None = None) -> int:
        """How many jobs :meth:`find` would give without a limit."""
        where, index = _filter(states, queue, name, due_before, due_after)
        return self.log.read_rows(f"SELECT count(*) FROM jobs{self.log.index_hint(index)} "
                                  f"WHERE {where}", where.params)[0][0]

    def search(self, *, text: str = "", since: float | None = None,
               until: float | None = None, offset: int = 0, limit: int = 50,
               **filters: Any) -> list[JobRow]:
        """Like :meth:`find` (newest first, from ``offset``), also with ``text`` in the
        arguments or the error, and dispatched between ``since`` and ``until``."""
        where, index = _filter(filters.get("states", ()), filters.get("queue"),
                               filters.get("name"), filters.get("due_before"),
                               filters.get("due_after"))
        if text:
            like = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            where.add("(payload LIKE ? ESCAPE '\\' OR error LIKE ? ESCAPE '\\')", like, like)
        where.given(("dispatched_at >= ?", since), ("dispatched_at < ?", until))
        return self._rows(str(where), where.params,
                          f"ORDER BY id DESC LIMIT {int(limit)} OFFSET {int(offset)}", index)

    def pending_ids(self, queue: str) -> list[int]:
        return [i for (i,) in self.log.read_rows(
            f"SELECT id FROM jobs WHERE queue = ? AND {READY} ORDER BY id", (queue,))]

    def queue_counts(self) -> list[QueueCounts]:
        return [QueueCounts(*t) for t in self.log.read_rows(
            f"SELECT {', '.join(QUEUE_COLUMNS)} FROM queue_stats ORDER BY queue")]

    def delayed_counts(self, now: float) -> dict[str, int]:
        """Pending jobs per queue whose ``run_at`` is still ahead."""
        return dict(self.log.read_rows(
            f"SELECT queue, count(*) FROM jobs WHERE {DELAYED} AND run_at > ? "
            "GROUP BY queue", (now,)))

    def type_stats(self, queue: str | None = None) -> list[JobTypeStats]:
        """``job_type_stats``; with ``queue``, the same totals of that queue's jobs only."""
        if queue is None:
            return [JobTypeStats(*t) for t in self.log.read_rows(
                f"SELECT {', '.join(TYPE_COLUMNS)} FROM job_type_stats ORDER BY name")]
        columns = ", ".join(TYPE_SOURCES.get(c, c) for c in TYPE_COLUMNS)
        return [JobTypeStats(*t) for t in self.log.read_rows(
            f"SELECT {columns} FROM counts WHERE queue = ? ORDER BY name", (queue,))]

    def counts(self) -> list[Counts]:
        return [Counts(*t) for t in self.log.read_rows(
            f"SELECT {', '.join(COUNT_COLUMNS)} FROM counts ORDER BY queue, name")]

    def minutes(self, since: float) -> list[MinuteCounts]:
        """The per-minute outcome counts of the minutes that end after ``since``."""
        return [MinuteCounts(*t) for t in self.log.read_rows(
            f"SELECT {', '.join(MINUTE_COLUMNS)} FROM minutes WHERE minute > ? "
            "ORDER BY minute, queue, name", (since - 60,))]

    def dump(self) -> tuple[list[JobRow], list[Counts], list[MinuteCounts]]:
        """Every row of every projection table, in key order: what a rebuild must reproduce."""
        return self._rows("1 = 1", (), "ORDER BY id"), self.counts(), self.minutes(float("-inf"))

