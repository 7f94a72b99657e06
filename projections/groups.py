"""The ``groups`` projection (batches, workflows and chains) and ``deps``, the index of what
each waiting job waits for.

A group's row is made by its ``BatchCreated`` or ``WorkflowCreated`` event and counted forward by
its jobs' ends (:meth:`apply.Deltas.add`); ``deps`` holds one row per dependency of a workflow's
job, so that the jobs waiting for a job that ended are found by one indexed read. Both are written
in the append's transaction, after the append lock, like ``counts``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import msgspec

from evq.eventlog.codec import Record
from evq.eventlog.events import GroupCreated
from evq.eventlog.sqllog import SqlLog

from .apply import apply_group, group_created
from .model import GROUP_COLUMNS, WAITING, GroupRow, JobRow
from .tables import column_types, replace_sql

_COLS = ", ".join(GROUP_COLUMNS)
_UPSERT = replace_sql("groups", GROUP_COLUMNS)

DEPS_DDL = """
CREATE TABLE IF NOT EXISTS deps (
    dep_id  INTEGER NOT NULL,   -- the job waited for
    job_id  INTEGER NOT NULL,   -- the waiting job
    PRIMARY KEY (dep_id, job_id)
)
"""


def group_events(records: Iterable[Record]) -> list[Record]:
    return [r for r in records if isinstance(r.event, GroupCreated)]


def dependencies(row: JobRow) -> list[tuple[int, bool]]:
    """What a workflow's job waits for: ``(job id, whether its failure is ignored)``."""
    return [(i, ignore) for i, ignore in msgspec.json.decode(row.after)] if row.after else []


class GroupTable:
    """Reads and writes of ``groups`` and ``deps``, on the log's connection."""

    def __init__(self, log: SqlLog) -> None:
        self.log = log

    @staticmethod
    def create(log: SqlLog) -> None:
        log.create_table("groups", column_types(GroupRow), ("id",))
        log.run_script(DEPS_DDL)
        log.run_script("CREATE INDEX IF NOT EXISTS deps_job ON deps(job_id)")

    def record(self, created: list[Record], deltas: Mapping[int, dict[str, float]]
               ) -> dict[int, tuple[GroupRow, GroupRow]]:
        """Make the rows of new groups and count the changes of ``deltas`` (inside the append's
        transaction). Returns each changed group's row before and after."""
        rows = {r.seq: group_created(r.event, r.seq) for r in created}  # type: ignore[arg-type]
        wanted = [g for g in deltas if g not in rows]
        rows.update((r.id, r) for r in self.get_many(wanted))
        out: dict[int, tuple[GroupRow, GroupRow]] = {}
        for gid, delta in deltas.items():
            if gid in rows:
                out[gid] = (rows[gid], apply_group(rows[gid], delta))
                rows[gid] = out[gid][1]
        if rows:
            self.log.executemany(_UPSERT, [msgspec.structs.astuple(r) for r in rows.values()])
        return out

    def get_many(self, ids: Iterable[int]) -> list[GroupRow]:
        ids = list(ids)
        if not ids:
            return []
        return self._rows(*self.log.among("id", ids))

    def get(self, gid: int) -> GroupRow | None:
        got = self.get_many([gid])
        return got[0] if got else None

    def find(self, kind: str | None = None, limit: int = 100) -> list[GroupRow]:
        """Groups (of ``kind``), newest first."""
        where, params = ("kind = ?", [kind]) if kind else ("1 = 1", [])
        return self._rows(where, params, f"ORDER BY id DESC LIMIT {int(limit)}")

    def all(self) -> list[GroupRow]:
        return self._rows("1 = 1", ())

    def _rows(self, where: str, params: Iterable[object], tail: str = "ORDER BY id"
              ) -> list[GroupRow]:
        return [GroupRow(*t) for t in self.log.read_rows(
            f"SELECT {_COLS} FROM groups WHERE {where} {tail}", list(params))]

    def dependents(self, ids: Iterable[int]) -> list[int]:
        """The jobs that wait for one of these jobs."""
        ids = list(ids)
        if not ids:
            return []
        among, params = self.log.among("dep_id", ids)
        return sorted({j for (j,) in self.log.read_rows(
            f"SELECT job_id FROM deps WHERE {among}", params)})

    def index_deps(self, rows: Iterable[JobRow], before: Mapping[int, JobRow]) -> None:
        """Keep ``deps`` to the jobs that wait: add what a new waiting job waits for, drop the
        entries of a job that stopped waiting."""
        add, drop = [], []
        for r in rows:
            old = before.get(r.id)
            if r.state == WAITING and old is None:
                add += [(dep, r.id) for dep, _ in dependencies(r)]
            elif old is not None and old.state == WAITING and r.state != WAITING:
                drop.append((r.id,))
        if add:
            self.log.executemany("INSERT INTO deps(dep_id, job_id) VALUES (?, ?) "
                                 "ON CONFLICT DO NOTHING", add)
        if drop:
            self.log.executemany("DELETE FROM deps WHERE job_id = ?", drop)

    def reindex_deps(self, rows: Iterable[JobRow]) -> None:
        """Make ``deps`` again from every job row (a rebuild)."""
        self.log.execute("DELETE FROM deps")
        self.index_deps((r for r in rows if r.state == WAITING), {})

