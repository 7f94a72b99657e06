"""Archive segments: events of finished jobs moved out of the live ``events`` table.

A segment is one row of the ``archive_segments`` table in the same SQLite file: the moved rows as
zlib-compressed JSON, one array ``[seq, ts, type, job_id, queue, event]`` per row (the event as
it was stored), with the range of positions and times it covers. ``archive_jobs`` says which
segments hold a job's events.

Segments live in the database, not in files beside it, so that moving events is one transaction:
the rows are deleted from ``events`` and their segment inserted together, and a crash leaves them
in exactly one place. One file still holds everything (back it up, copy it, open it in Datasette).

Readers merge the archive with the live log by ``seq`` (:func:`read`, :func:`rows`), so history,
the event listing and replay see every event whether it has been archived or not.
"""

from __future__ import annotations

import heapq
import itertools
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from .codec import Record, decode
from .errors import DecodeError
from .sqllog import NOT_DISPATCH, SqlLog, Where

ARCHIVE_DDL = """
CREATE TABLE IF NOT EXISTS archive_segments (
    id        INTEGER PRIMARY KEY,
    first_seq INTEGER NOT NULL,
    last_seq  INTEGER NOT NULL,
    first_ts  REAL NOT NULL,
    last_ts   REAL NOT NULL,
    events    INTEGER NOT NULL,
    created   REAL NOT NULL,
    body      BLOB NOT NULL   -- zlib of JSON: [[seq, ts, type, job_id, queue, event], ...]
);
CREATE TABLE IF NOT EXISTS archive_jobs (
    job_id  INTEGER NOT NULL,
    segment INTEGER NOT NULL,
    PRIMARY KEY (job_id, segment)
) WITHOUT ROWID;
"""

# Jobs per segment: some 500 events, 10-20 KB compressed, so that the history of one archived
# job decodes one small segment (about 2 ms; 512 jobs took 5-8 ms on a 1M-event log), and a move
# holds the write lock for milliseconds.
SEGMENT_JOBS = 128

Row = tuple[int, float, str, int, str | None, str]  # seq, ts, type, job_id, queue, body
Brief = tuple[int, float, str]  # seq, ts, body: all that replay needs to apply an event


class _Line(msgspec.Struct, array_like=True):
    seq: int
    ts: float
    type: str
    job_id: int
    queue: str | None
    body: msgspec.Raw


_encode_line = msgspec.json.Encoder().encode
_decode_lines = msgspec.json.Decoder(list[_Line])


def has_archive(log: SqlLog) -> bool:
    """Whether the store has archive tables (they are created by the first archive run)."""
    return log.has_table("archive_segments")


def pack(rows: Sequence[Row]) -> bytes:
    """Rows as one compressed segment body."""
    lines = b"[" + b",".join(_encode_line(_Line(s, t, k, j, q, msgspec.Raw(b.encode())))
                             for s, t, k, j, q, b in rows) + b"]"
    return zlib.compress(lines, 6)


def unpack(blob: bytes) -> list[Row]:
    """A segment body back as rows, in ``seq`` order."""
    return [(x.seq, x.ts, x.type, x.job_id, x.queue, bytes(x.body).decode())
            for x in _decode_lines.decode(zlib.decompress(blob))]


@dataclass
class Moved:
    """What one :func:`archive` run moved."""

    jobs: int = 0
    events: int = 0
    segments: int = 0
    raw_bytes: int = 0
    stored_bytes: int = 0


def archive(log: SqlLog, job_ids: Iterable[int], *, now: float) -> Moved:
    """Move every live event of ``job_ids`` into new segments of ``SEGMENT_JOBS`` jobs, one
    write transaction per segment (so workers wait at most one segment's move)."""
    moved = Moved()
    with log.transaction():
        log.run_script(ARCHIVE_DDL)
    ids = sorted(set(job_ids))
    for i in range(0, len(ids), SEGMENT_JOBS):
        _move(log, ids[i:i + SEGMENT_JOBS], now, moved)
    return moved


def _move(log: SqlLog, job_ids: list[int], now: float, moved: Moved) -> None:
    with log.transaction():
        log.lock_appends()  # archivers take turns: two must not move the same events
        rows: list[Row] = []
        for i in range(0, len(job_ids), 500):
            part = job_ids[i:i + 500]
            marks = ",".join("?" * len(part))
            # a job's JobDispatched sits at the job's id; the index by job may leave it out
            rows.extend(log.execute(
                "SELECT seq, ts, type, job_id, queue, body FROM events "
                f"WHERE (seq IN ({marks}) AND type = 'JobDispatched') "
                f"OR (job_id IN ({marks}) AND {NOT_DISPATCH})", part + part))
        # The newest event stays in the log: the next position is one past the largest there.
        (newest,), = log.execute("SELECT coalesce(max(seq), 0) FROM events")
        keep = {r[3] for r in rows if r[0] == newest}
        rows = sorted(r for r in rows if r[3] not in keep)
        if not rows:
            return
        blob = pack(rows)
        (segment,), = log.execute(
            "INSERT INTO archive_segments(id, first_seq, last_seq, first_ts, last_ts, events, "
            "created, body) VALUES ((SELECT coalesce(max(id), 0) + 1 FROM archive_segments), "
            "?, ?, ?, ?, ?, ?, ?) RETURNING id",
            (rows[0][0], rows[-1][0], min(r[1] for r in rows), max(r[1] for r in rows),
             len(rows), now, blob))
        present = sorted({r[3] for r in rows})
        log.executemany("INSERT INTO archive_jobs(job_id, segment) VALUES (?, ?) "
                        "ON CONFLICT DO NOTHING", [(j, segment) for j in present])
        log.executemany("DELETE FROM events WHERE seq = ?", [(r[0],) for r in rows])
        moved.jobs += len(present)
        moved.events += len(rows)
        moved.segments += 1
        moved.raw_bytes += sum(len(r[5]) for r in rows)
        moved.stored_bytes += len(blob)


def archived_rows(log: SqlLog, *, since: int = 0, until: int | None = None,
                  job_id: int | None = None, since_ts: float | None = None,
                  until_ts: float | None = None) -> Iterator[Row]:
    """Archived rows in ``seq`` order, after ``since`` and up to ``until``, one segment decoded
    at a time (segments of one run hold disjoint positions but may interleave with others)."""
    if not has_archive(log):
        return
    where = Where("last_seq > ?", params=[since]).given(
        ("first_seq <= ?", until),
        ("id IN (SELECT segment FROM archive_jobs WHERE job_id = ?)", job_id),
        # only the segments that cover some of the times asked for
        ("last_ts >= ?", since_ts), ("first_ts <= ?", until_ts))
    segments = log.read_rows(f"SELECT first_seq, id FROM archive_segments WHERE {where} "
                             "ORDER BY first_seq", where.params)

    def segment(i: int) -> Iterator[Row]:
        (blob, first, last), = log.read_rows(
            "SELECT body, first_seq, last_seq FROM archive_segments WHERE id = ?", (i,))
        try:
            rows = unpack(blob)
        except (msgspec.DecodeError, zlib.error, RecursionError, UnicodeDecodeError) as exc:
            raise DecodeError(f"archive segment {i} (events at seq {first} to {last}) cannot "
                              f"be read: {exc}") from None
        for r in rows:
            if r[0] > since and (until is None or r[0] <= until) and (
                    job_id is None or r[3] == job_id):
                yield r

    yield from _merge_lazily(segments, segment)


def _merge_lazily(segments: list[tuple[int, int]],
                  open_segment: Callable[[int], Iterator[Row]]) -> Iterator[Row]:
    """Merge segments (``(first_seq, id)``, by ``first_seq``) in ``seq`` order, opening each
    only when the merge reaches its first position: memory stays at the segments that overlap."""
    heap: list[tuple[Row, int, Iterator[Row]]] = []
    waiting = iter(segments)
    upcoming = next(waiting, None)
    while heap or upcoming:
        while upcoming and (not heap or upcoming[0] <= heap[0][0][0]):
            it = open_segment(upcoming[1])
            first = next(it, None)
            if first is not None:
                heapq.heappush(heap, (first, upcoming[1], it))
            upcoming = next(waiting, None)
        if not heap:
            return
        row, key, it = heapq.heappop(heap)
        yield row
        following = next(it, None)
        if following is not None:
            heapq.heappush(heap, (following, key, it))


def live_rows(log: SqlLog, *, since: int = 0, until: int | None = None,
              chunk: int = 20_000, brief: bool = False) -> Iterator[Any]:
    """Rows (or with ``brief``, :data:`Brief` rows: half the reading) of the live ``events``
    table in ``seq`` order, read in chunks."""
    bound = "" if until is None else f" AND seq <= {int(until)}"
    columns = "seq, ts, body" if brief else "seq, ts, type, job_id, queue, body"
    while True:
        got = log.read_rows(f"SELECT {columns} FROM events "
                            f"WHERE seq > ?{bound} ORDER BY seq LIMIT {chunk}", (since,))
        yield from got
        if len(got) < chunk:
            return
        since = got[-1][0]


def rows(log: SqlLog, *, since: int = 0, until: int | None = None,
         brief: bool = False) -> Iterator[Any]:
    """Every stored row (or :data:`Brief` row), archived or live, in ``seq`` order: what
    replay reads."""
    archived: Iterator[Any] = archived_rows(log, since=since, until=until)
    if brief:
        archived = ((r[0], r[1], r[5]) for r in archived)
    return heapq.merge(archived, live_rows(log, since=since, until=until, brief=brief))


def read(log: SqlLog, *, since: int = 0, until: int | None = None,
         job_id: int | None = None, since_ts: float | None = None,
         until_ts: float | None = None, types: Sequence[str] = (), queue: str | None = None,
         limit: int | None = None) -> Iterator[Record]:
    """The events of the log and of its archive merged in ``seq`` order, with the filters of
    :meth:`SqlLog.read`."""
    live = log.read(since=since, until=until, job_id=job_id, since_ts=since_ts,
                    until_ts=until_ts, types=types, queue=queue, limit=limit)
    old = _records(r for r in archived_rows(log, since=since, until=until, job_id=job_id,
                                            since_ts=since_ts, until_ts=until_ts)
                   if (since_ts is None or r[1] >= since_ts)
                   and (until_ts is None or r[1] <= until_ts)
                   and (not types or r[2] in types) and (queue is None or r[4] == queue))
    merged = heapq.merge(old, live, key=lambda rec: rec.seq)
    return merged if limit is None else itertools.islice(merged, limit)


def _records(rows: Iterable[Row]) -> Iterator[Record]:
    for r in rows:
        yield decode_row(r)


def decode_row(row: Row | Brief) -> Record:
    """A stored row as a record, naming its position if it does not decode."""
    try:
        return Record(row[0], decode(row[-1]))
    except DecodeError as exc:
        raise DecodeError(f"event at seq {row[0]}: {exc}") from None
