"""What only the PostgreSQL store has to show: positions without gaps under concurrent appenders,
versioned schemas and ``evq migrate``, read-only queries with a time limit, and bad URLs."""

from __future__ import annotations

import itertools
import tempfile
import threading
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from helpers import postgres_schema
from jobs import Noop

import evq
from evq.eventlog.sqllog import SCHEMA_VERSION
from tests.test_cli import _cli_environment, as_json, assert_error, invoke, ok  # noqa: F401


@pytest.fixture
def url() -> Iterator[str]:
    with postgres_schema() as u:
        yield u


def sql(url: str, statement: str) -> None:
    base, schema = url.split("?schema=")
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'SET search_path TO "{schema}"')
        conn.execute(statement)


def test_a_follower_never_sees_a_gap_while_many_connections_append(url: str) -> None:
    """Eight connections dispatch at once (single jobs and batches) while a follower reads
    "after the last position seen" in a loop: every read continues exactly where the previous
    one ended, so no event is ever skipped, although the transactions overlap."""
    writers, per_writer = 8, 60
    queues = [evq.connect(url) for _ in range(writers + 1)]
    follower = queues.pop()
    errors: list[BaseException] = []

    def write(q: evq.Queue, n: int) -> None:
        try:
            for i in range(per_writer):
                if i % 3:
                    q.dispatch(Noop())
                else:
                    q.dispatch_many([Noop() for _ in range(n % 4 + 2)])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(q, n)) for n, q in enumerate(queues)]
    for t in threads:
        t.start()
    seen: list[int] = []
    reads = 0
    try:
        while True:
            finished = not any(t.is_alive() for t in threads)
            got = [r.seq for r in follower.store.log.read(since=seen[-1] if seen else 0)]
            assert got == list(range(len(seen) + 1, len(seen) + 1 + len(got))), "a gap"
            seen += got
            reads += 1
            if finished and not got:
                break
    finally:
        for t in threads:
            t.join(30)
        for q in [*queues, follower]:
            q.close()
    assert errors == []
    assert len(seen) == sum(1 if i % 3 else n % 4 + 2 for n in range(writers)
                            for i in range(per_writer))
    assert reads > 10
    print(f"\n{writers} appenders, {len(seen)} events, {reads} reads by the follower, no gap")


def test_a_schema_behind_is_refused_until_evq_migrate(url: str) -> None:
    evq.connect(url).close()
    sql(url, "UPDATE evq_schema SET version = 2")
    assert_error(invoke(["--url", url, "stats"]), "schema version 2", "evq migrate")
    with pytest.raises(evq.StoreError, match="run evq migrate"):
        evq.connect(url)
    assert ok(invoke(["--url", url, "migrate"])).stdout.strip().endswith(
        f"schema version {SCHEMA_VERSION} (upgraded from version 2)")
    assert as_json(invoke(["--url", url, "migrate", "--json"]))["was"] == SCHEMA_VERSION
    ok(invoke(["--url", url, "stats"]))


def test_a_schema_ahead_is_refused_by_every_command(url: str) -> None:
    evq.connect(url).close()
    sql(url, "UPDATE evq_schema SET version = 99")
    for command in (["stats"], ["migrate"],
                    ["work", "--app", "tests.cli_jobs", "--stop-when-empty"]):
        assert_error(invoke(["--url", url, *command]), "schema version 99", "upgrade evq")


def test_migrate_creates_a_store_and_reads_need_one(url: str) -> None:
    assert_error(invoke(["--url", url, "stats"]), "no evq store", "evq dispatch")
    assert as_json(invoke(["--url", url, "migrate", "--json"])) == {
        "url": url, "version": SCHEMA_VERSION, "was": 0}
    ok(invoke(["--url", url, "stats"]))


def test_query_is_read_only_and_stops_at_its_timeout(url: str) -> None:
    q = evq.connect(url)
    q.dispatch(Noop())
    q.close()
    for statement in ("DELETE FROM jobs", "UPDATE jobs SET state = 'failed'",
                      "CREATE TABLE extra (x int)", "DROP TABLE events"):
        assert_error(invoke(["--url", url, "query", statement]), "read-only")
    assert as_json(invoke(["--url", url, "query", "--json", "SELECT count(*) AS n FROM jobs"])
                   ) == [{"n": 1}]
    assert_error(invoke(["--url", url, "query", "--timeout", "0.2", "SELECT pg_sleep(5)"]),
                 "ran past --timeout 0.2 s")
    assert as_json(invoke(["--url", url, "query", "--json",
                           "SELECT 'a%' LIKE 'a%' AS percent_kept"])) == [{"percent_kept": True}]


@pytest.mark.parametrize(("change", "fragments"), [
    pytest.param(lambda u: u.replace(":5432/", ":1/"), ["cannot reach", "127.0.0.1"],
                 id="port-with-no-server"),
    pytest.param(lambda u: u.replace("/test?", "/no_such_db_here?"), ["no_such_db_here"],
                 id="no-such-database"),
    pytest.param(lambda u: u + "&colour=blue", ["unknown option colour"], id="unknown-option"),
    pytest.param(lambda u: u.split("?")[0] + "?schema=Bad-Name", ["schema must be"],
                 id="bad-schema-name"),
])
def test_bad_urls_are_one_line_errors(url: str, change: object, fragments: list[str]) -> None:
    bad = change(url)  # type: ignore[operator]
    for command in (["stats"], ["dispatch", "CliAdd", "--app", "tests.cli_jobs", "--json",
                                '{"a": 1, "b": 2}']):
        assert_error(invoke(["--url", bad, *command]), *fragments)


def test_messages_never_show_the_password(url: str) -> None:
    with_password = url.replace("postgres@", "postgres:s3cret@").replace(":5432/", ":1/")
    err = assert_error(invoke(["--url", with_password, "stats"]), "cannot reach")
    assert "s3cret" not in err


def test_many_rows_are_one_statement_with_the_same_effect_as_row_by_row(url: str) -> None:
    """``executemany`` sends the rows of an insert, an upsert, an update and a delete as one
    statement (a JSON array read by ``json_populate_recordset``; an infinity as its text), and
    falls back to row by row where an upsert's key repeats; the tables end up as if each row had
    been written alone."""
    from evq.eventlog.postgres import _bulk

    q = evq.connect(url)
    log = q.store.log
    log.run_script("CREATE TABLE t (k TEXT PRIMARY KEY, n BIGINT, x DOUBLE PRECISION, s TEXT)")
    upsert = ("INSERT INTO t(k, n, x, s) VALUES (?, ?, ?, ?) "
              "ON CONFLICT(k) DO UPDATE SET n = t.n + excluded.n")
    for sql, rows in ((upsert, [("a", 1, 0.5, "s"), ("b", 2, None, None)]),
                      ("UPDATE t SET x = ?, s = ? WHERE k = ?", [(1.0, "s", "a"), (2.0, "", "b")]),
                      ("DELETE FROM t WHERE k = ?", [("a",), ("a",)])):
        bulk = _bulk(sql)
        assert bulk is not None and bulk.param(rows) is not None, sql  # sent as one statement
    inf = _bulk(upsert)
    assert inf is not None and inf.param([("d", 1, float("inf"), "")]) is not None  # as text
    assert _bulk("UPDATE t SET n = n + ? WHERE k = ?") is None  # not a plain column = ?

    def table() -> list[tuple]:
        return log.read_rows("SELECT k, n, x, s FROM t ORDER BY k")

    text = 'quote " back\\slash % ü \u2028 {"json": [1]}'
    with log.transaction():
        log.executemany(upsert, [("a", 1, 0.1, text), ("b", 2, None, None), ("c", 3, 1e300, ""),
                                 ("f", 0, 0.0, "gone")])
        log.executemany(upsert, [("a", 10, 0.0, "kept"), ("c", 30, 0.0, "kept")])
        log.executemany(upsert, [("d", 1, float("inf"), "inf"), ("e", 1, 2.5, "e")])
        log.executemany(upsert, [("e", 1, 0.0, ""), ("e", 1, 0.0, "")])  # a key twice: falls back
        log.executemany("UPDATE t SET x = ?, s = ? WHERE k = ?",
                        [(-1.5, "b2", "b"), (7.0, None, "c")])
        log.executemany("DELETE FROM t WHERE k = ?", [("f",), ("zz",)])
    assert table() == [("a", 11, 0.1, text), ("b", 2, -1.5, "b2"), ("c", 33, 7.0, None),
                       ("d", 1, float("inf"), "inf"), ("e", 3, 2.5, "e")]
    q.close()


def test_a_claim_does_not_wait_for_the_disk_and_an_outcome_does(url: str) -> None:
    """A claim commits with ``synchronous_commit`` off (its loss in a crash of the server is
    the loss of a worker: the job runs again); every other write waits for the WAL's fsync,
    which also makes every earlier claim durable."""
    from evq.eventlog.events import JobLeased

    q = evq.connect(url)
    log = q.store.log

    def setting() -> str:
        return str(log.execute("SELECT current_setting('synchronous_commit')")[0][0])

    seen: list[str] = []

    def lease(row: Any) -> list[JobLeased]:  # runs inside the claim's transaction
        seen.append(setting())
        return [JobLeased(job_id=row.id, ts=now, worker="w", attempt=1, lease_expires=now + 30)]

    q.dispatch(Noop())
    now = time.time()
    assert len(q.store.claim(["default"], now, 1, lease)) == 1
    with log.transaction():  # an outcome's, a dispatch's
        seen.append(setting())
    assert seen == ["off", "on"]
    assert log.read_rows("SELECT current_setting('synchronous_commit')") == [("on",)]
    q.close()


def _waits(log: Any, write: Any) -> int:
    """How many times the client waited for the server during ``write()``: the turns from
    sending to receiving in libpq's trace of the store's connection."""
    with tempfile.TemporaryFile("w+") as trace:
        conn = log._conn
        conn.pgconn.trace(trace.fileno())
        try:
            write()
        finally:
            conn.pgconn.untrace()
        trace.seek(0)
        sides = [line.split("\t")[1] for line in trace if line.count("\t") >= 2]
    return sum(1 for a, b in itertools.pairwise(sides) if (a, b) == ("F", "B"))


def test_a_dispatch_waits_for_the_server_once_and_a_claim_and_an_outcome_twice(url: str) -> None:
    """Appends take the append lock and their positions on the server, in the round trip of
    their writes and commit (``append_placed``): the lock is never held across the network, and
    a dispatch waits for the server once; a claim twice (its rows, then the rest); a worker's
    outcome twice (its rows' versions, then the rest). What the positions decide still comes
    out right: job ids, ``last_seq``, the events' bodies, and a rebuild finds no difference."""
    from evq.eventlog.events import JobLeased, JobStarted, JobSucceeded

    q = evq.connect(url)
    log = q.store.log
    q.dispatch(Noop())  # the connection is made, the schema checked
    ids: list[int] = []
    assert _waits(log, lambda: ids.append(q.dispatch(Noop(n=1)))) == 1
    assert _waits(log, lambda: ids.extend(q.dispatch_many([Noop(n=2), Noop(n=3)]))) == 1
    assert ids == [2, 3, 4]
    now = time.time()
    held: dict[int, Any] = {}

    def claim() -> None:
        held.update((r.id, r) for r in q.store.claim(["default"], now, 2, lambda r: [JobLeased(
            job_id=r.id, ts=now, worker="w", attempt=1, lease_expires=now + 30)]))

    assert _waits(log, claim) == 2
    assert sorted(held) == [1, 2] and all(r.state == "leased" for r in held.values())
    events = [JobStarted(job_id=1, ts=now, attempt=1, worker="w"),
              JobSucceeded(job_id=1, ts=now, attempt=1, duration=0.0)]
    records: list[Any] = []
    assert _waits(log, lambda: records.extend(q.store.append(events, held))) == 2
    assert [r.seq for r in records] == [7, 8] and held[1].state == "succeeded"
    assert held[1].last_seq == 8 and held[2].last_seq == 6
    stored = log.read_rows("SELECT seq, job_id, type FROM events ORDER BY seq")
    assert stored == [(1, 1, "JobDispatched"), (2, 2, "JobDispatched"), (3, 3, "JobDispatched"),
                      (4, 4, "JobDispatched"), (5, 1, "JobLeased"), (6, 2, "JobLeased"),
                      (7, 1, "JobStarted"), (8, 1, "JobSucceeded")]
    assert [r.event.job_id for r in log.read(types=["JobDispatched"])] == [1, 2, 3, 4]
    row2, row4 = q.store.tables.get(2), q.store.tables.get(4)
    assert row2 is not None and row2.last_seq == 6 and row4 is not None and row4.last_seq == 4
    assert q.store.verify() == []
    q.close()


def test_followers_of_the_log_are_woken_by_each_commit_but_a_lease_only_claim(url: str) -> None:
    """A dispatch notifies its queue's readiness; a claim that only leases notifies nobody (the
    starts of its jobs, written moments later, wake the followers); an outcome, and a claim
    that holds a job back, notify the log's followers."""
    from evq.eventlog.events import JobHeld, JobLeased, JobStarted

    q = evq.connect(url)
    log = q.store.log
    listener = psycopg.connect(url.split("?")[0], autocommit=True)
    for channel in (log.channel, log.log_channel):
        listener.execute(f"LISTEN {channel}")

    def heard() -> list[tuple[str, str]]:
        return [(n.channel, n.payload) for n in listener.notifies(timeout=0.2)]

    first, second = q.dispatch(Noop()), q.dispatch(Noop())
    assert heard() == [(log.channel, "default")] * 2
    now = time.time()
    held = {r.id: r for r in q.store.claim(["default"], now, 1, lambda r: [JobLeased(
        job_id=r.id, ts=now, worker="w", attempt=1, lease_expires=now + 30)])}
    assert list(held) == [first] and heard() == []
    q.store.append([JobStarted(job_id=first, ts=now, attempt=1, worker="w")], held)
    assert heard() == [(log.log_channel, "")]
    q.store.claim(["default"], now, 1, lambda r: [JobHeld(job_id=r.id, ts=now, run_at=now + 60)])
    assert heard() == [(log.log_channel, "")] and q.job(second).state == "pending"
    listener.close()
    q.close()


def test_a_claim_of_a_job_with_an_infinite_timeout_writes_its_infinite_lease(url: str) -> None:
    """A ``jobs`` row given an infinite timeout by another program is not malformed (a double);
    its lease runs out never, and the claim's write (whose positions the server counts: it has
    no row-by-row form) carries the infinity. It used to fail with a ValueError, which took the
    worker down."""
    from evq.eventlog.events import JobLeased

    q = evq.connect(url)
    job = q.dispatch(Noop())
    sql(url, f"UPDATE jobs SET timeout = 'Infinity' WHERE id = {job}")
    now = time.time()
    [row] = q.store.claim(["default"], now, 1, lambda r: [JobLeased(
        job_id=r.id, ts=now, worker="w", attempt=1,
        lease_expires=max(now + 30, now + (r.timeout or 0) + 1))])
    assert row.lease_expires == float("inf") and q.job(job).lease_expires == float("inf")
    assert q.store.tables.versions([job]) == {job: row.last_seq}
    q.close()
