"""Store files a careless operator hands evq: missing, empty, damaged; and ``evq query``'s limits.

Real SQLite files on disk, damaged by flipping their bytes; every refusal is one line on stderr
and a non-zero exit code (``assert_error``), and nothing is created or written meanwhile.
"""

from __future__ import annotations

import contextlib
import sqlite3
import sys
from pathlib import Path

import pytest

import evq
from evq.eventlog.errors import StoreCorrupt, StoreMissing
from tests.cli_jobs import CliAdd
from tests.test_cli import assert_error, invoke, ok

ROOT = Path(__file__).resolve().parents[1]
READ_ONLY_COMMANDS = [["stats"], ["jobs"], ["events"], ["history", "1"], ["workers"],
                      ["failed", "list"], ["replay", "--since", "0", "--verify"],
                      ["snapshot", "--list"], ["query", "SELECT 1"], ["failed", "retry", "1"],
                      ["clear", "default", "--force"]]


@pytest.fixture(autouse=True)
def _from_the_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    monkeypatch.delenv("EVQ_URL", raising=False)
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))


# -- item 9: missing or empty store files ------------------------------------------------------


@pytest.mark.parametrize("command", READ_ONLY_COMMANDS, ids=" ".join)
@pytest.mark.parametrize("empty", [False, True], ids=["missing", "empty"])
def test_commands_that_only_read_refuse_a_store_that_does_not_exist(
        tmp_path: Path, command: list[str], empty: bool) -> None:
    db = tmp_path / "mistyped.db"
    if empty:
        db.touch()
    assert_error(invoke(["--url", f"sqlite:///{db}", *command]), "no evq store at")
    assert db.exists() == empty and (not empty or db.stat().st_size == 0)
    assert list(tmp_path.iterdir()) == ([db] if empty else [])


def test_health_of_a_store_that_does_not_exist_is_unhealthy(tmp_path: Path) -> None:
    db = tmp_path / "mistyped.db"
    result = invoke(["--url", f"sqlite:///{db}", "health"])
    assert result.exit_code == 2 and "no evq store at" in result.output
    assert not db.exists()


def test_dispatch_and_work_create_the_store(tmp_path: Path) -> None:
    db = tmp_path / "new.db"
    ok(invoke(["--url", f"sqlite:///{db}", "dispatch", "CliAdd", "--app", "tests.cli_jobs",
               "--json", '{"a": 1, "b": 2}']))
    other = tmp_path / "other.db"
    ok(invoke(["--url", f"sqlite:///{other}", "work", "--app", "tests.cli_jobs",
               "--stop-when-empty"]))
    assert db.exists() and other.exists()
    ok(invoke(["--url", f"sqlite:///{other}", "stats"]))


def test_connect_creates_by_default_and_not_with_create_false(tmp_path: Path) -> None:
    db = tmp_path / "evq.db"
    with pytest.raises(StoreMissing, match="does not exist"):
        evq.connect(f"sqlite:///{db}", create=False)
    assert not db.exists()
    evq.connect(f"sqlite:///{db}").close()
    evq.connect(f"sqlite:///{db}", create=False).close()


# -- item 5: a damaged database that SQLite opens ----------------------------------------------


def damaged_store(tmp_path: Path, jobs: int = 400) -> Path:
    """A store of ``jobs`` pending jobs whose pages past the first few are overwritten."""
    db = tmp_path / "evq.db"
    q = evq.connect(f"sqlite:///{db}")
    q.dispatch_many([CliAdd(a=i, b=i) for i in range(jobs)])
    q.store.log.checkpoint()
    q.close()
    data = bytearray(db.read_bytes())
    page = 4096
    pages = len(data) // page  # every page's header in the second half (the schema is first)
    for offset in range(pages // 2 * page, len(data), page):
        data[offset:offset + 16] = b"\xff" * 16
    db.write_bytes(bytes(data))
    return db


def test_a_damaged_store_is_store_corrupt_in_the_api(tmp_path: Path) -> None:
    db = damaged_store(tmp_path)
    with pytest.raises(StoreCorrupt, match="PRAGMA integrity_check"):
        q = evq.connect(f"sqlite:///{db}")
        try:
            q.dispatch(CliAdd(a=1, b=1))
            q.jobs("pending")
        finally:
            q.close()


@pytest.mark.parametrize("command", [
    ["dispatch", "CliAdd", "--app", "tests.cli_jobs", "--json", '{"a": 1, "b": 2}'],
    ["work", "--app", "tests.cli_jobs", "--stop-when-empty"],
    ["snapshot"], ["jobs"], ["events"], ["replay", "--since", "0", "--verify"],
], ids=lambda c: c[0])
def test_commands_on_a_damaged_store_say_so_in_one_line(tmp_path: Path,
                                                        command: list[str]) -> None:
    db = damaged_store(tmp_path)
    result = invoke(["--url", f"sqlite:///{db}", *command])
    if command[0] == "work":  # after the line that says the worker started
        assert result.stderr.startswith("evq worker ")
        result.stderr_bytes = result.stderr_bytes.split(b"\n", 1)[1]
    assert_error(result, "is damaged", "PRAGMA integrity_check")


def test_text_that_is_not_utf8_is_reported_as_damage(tmp_path: Path) -> None:
    db = tmp_path / "evq.db"
    q = evq.connect(f"sqlite:///{db}")
    job_id = q.dispatch(CliAdd(a=1, b=1))
    q.close()
    with contextlib.closing(sqlite3.connect(db)) as conn:
        conn.execute("UPDATE events SET body = CAST(x'7b22ff' AS TEXT) WHERE seq = ?", (job_id,))
        conn.commit()
    err = assert_error(invoke(["--url", f"sqlite:///{db}", "events"]), "is damaged",
                       "column 'body'", "not UTF-8")
    assert len(err) < 300


# -- item 12: evq query ------------------------------------------------------------------------


@pytest.fixture
def url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'evq.db'}"
    q = evq.connect(url)
    q.dispatch(CliAdd(a=1, b=2))
    q.close()
    return url


@pytest.mark.parametrize("statement", [
    "SELECT fts3_tokenizer('simple')",
    "SELECT hex(fts3_tokenizer('simple'))",
    "SELECT 1 FROM jobs WHERE fts3_tokenizer('x') IS NULL",
])
def test_query_refuses_functions_that_are_not_plain_reads(url: str, statement: str) -> None:
    assert_error(invoke(["--url", url, "query", statement]), "read-only",
                 "only functions that compute", "fts3_tokenizer")


def test_query_allows_the_functions_of_analytics(url: str) -> None:
    result = ok(invoke(["--url", url, "query", "--json",
                        "SELECT count(*) AS n, json_extract(body, '$.name') AS name, "
                        "round(avg(ts), 1) > 0 AS t, upper(coalesce(queue, 'x')) AS q, "
                        "strftime('%Y', ts, 'unixepoch') > '2000' AS y, "
                        "row_number() OVER () AS r FROM events GROUP BY name"]))
    assert '"name":"CliAdd"' in result.output and '"n":1' in result.output


def test_query_stops_at_its_time_limit(url: str) -> None:
    endless = ("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) "
               "SELECT count(*) FROM c")
    assert_error(invoke(["--url", url, "query", "--timeout", "0.2", endless]),
                 "--timeout", "0.2")
    ok(invoke(["--url", url, "query", "--timeout", "5", "SELECT count(*) FROM jobs"]))
