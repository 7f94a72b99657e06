"""What only the PostgreSQL store has to show: positions without gaps under concurrent appenders,
versioned schemas and ``evq migrate``, read-only queries with a time limit, and bad URLs."""

from __future__ import annotations

import threading
from collections.abc import Iterator

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
