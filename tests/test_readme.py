# ruff: noqa: F811  (the fixtures of test_cli, imported by name, are parameters here)
"""The README's example SQL queries, each run through ``evq query`` on a store with history."""

from __future__ import annotations

import re
import time
from pathlib import Path

import msgspec
import pytest

import evq
from evq.eventlog.events import (
    JobDead,
    JobDispatched,
    JobFailed,
    JobLeased,
    JobRetryScheduled,
    JobStarted,
)
from tests.cli_jobs import CliAdd, CliFail
from tests.test_cli import Cli, _cli_environment, as_json, cli, work  # noqa: F401

README = Path(__file__).resolve().parents[1] / "README.md"
QUERIES = re.findall(r"```sql\n(.*?)```", README.read_text(), re.S)


def stubborn_job(q: evq.Queue, attempts: int) -> int:
    """A job that failed ``attempts`` times, as a worker would have recorded it."""
    now = time.time()
    job = q.append([JobDispatched(ts=now, run_at=now, name="CliStubborn", queue="default",
                                  payload=msgspec.Raw(b"{}"), tries=attempts)])[0]
    for n in range(1, attempts + 1):
        q.append([JobLeased(ts=now, job_id=job, worker="w", attempt=n, lease_expires=now + 30),
                  JobStarted(ts=now, job_id=job, attempt=n, worker="w"),
                  JobFailed(ts=now, job_id=job, attempt=n, error_type="OSError", message="no")])
        q.append([JobRetryScheduled(ts=now, job_id=job, attempt=n, run_at=now)
                  if n < attempts else JobDead(ts=now, job_id=job, attempt=n)])
    return job


def test_the_readme_has_the_example_queries() -> None:
    text = " ".join(QUERIES)
    for topic in ("slowest job types today", "failure rate by hour", "retried more than twice"):
        assert topic in text


@pytest.mark.parametrize("statement", QUERIES, ids=lambda s: s.splitlines()[0][3:40])
def test_a_readme_query_runs(cli: Cli, q: evq.Queue, url: str, statement: str) -> None:
    first = statement.splitlines()[0]
    on_postgres = url.startswith("postgresql")
    if "SQLite and PostgreSQL" not in first and first.startswith("-- on PostgreSQL") != on_postgres:
        pytest.skip("a query in the SQL of the other store")
    for i in range(3):
        q.dispatch(CliAdd(a=i, b=i))
    q.dispatch(CliFail())
    work(cli)
    stubborn = stubborn_job(q, 4)
    rows = as_json(cli("query", "--json", "--", statement))  # "--": it starts with a comment
    assert rows, "an example query returned nothing on a store that has history"
    if "retried more than twice" in statement:
        assert [r["id"] for r in rows] == [stubborn]
    if "slowest job types" in statement:
        assert [r["name"] for r in rows] == ["CliAdd"] and rows[0]["jobs"] == 3
    if "failure rate by hour" in statement:
        assert sum(r["failed"] for r in rows) == 2 + 4
        assert sum(r["succeeded"] for r in rows) == 3
