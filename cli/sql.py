"""``evq query``: read-only SQL on the store."""

from __future__ import annotations

import csv
import sqlite3
import sys
import time

import typer

from evq.eventlog.errors import EvqError, StoreMissing

from .context import get, hinted
from .output import print_json, print_table


def register(app: typer.Typer) -> None:
    app.command()(query)


def query(
    ctx: typer.Context,
    sql: str = typer.Argument(..., help="One SQL statement, e.g. \"SELECT state, count(*) FROM "
                              "jobs GROUP BY state\"."),
    as_json: bool = typer.Option(False, "--json", help="A JSON array of objects."),
    as_csv: bool = typer.Option(False, "--csv", help="CSV with a header line."),
    timeout: float = typer.Option(30.0, "--timeout", min=0.001,
                                  help="Seconds the query may run before it is stopped."),
) -> None:
    """Run read-only SQL on the log (``events``) and the projections (``jobs``,
    ``queue_stats``, ``job_type_stats``), for at most --timeout seconds."""
    from evq.api import resolve_url
    from evq.eventlog.sqlite import SqliteLog, translate
    from evq.projections.store import sqlite_path

    path = sqlite_path(resolve_url(get(ctx).url))
    try:
        log = SqliteLog(path, readonly=True)
    except StoreMissing as exc:
        raise hinted(exc) from None
    deadline = time.monotonic() + timeout
    log.conn.set_progress_handler(lambda: time.monotonic() > deadline, 10_000)
    try:
        cur = log.conn.execute(sql)
        columns = [d[0] for d in cur.description or ()]
        rows = cur.fetchall()
    except sqlite3.Error as exc:
        if str(exc) == "interrupted":
            raise EvqError(f"query stopped: it ran past --timeout {timeout:g} s (narrow it with "
                           "WHERE or LIMIT, or give a longer --timeout)") from None
        if "to use function" in str(exc):
            raise EvqError(f"query refused: evq query is read-only and allows only functions "
                           f"that compute ({exc})") from None
        if any(w in str(exc) for w in ("readonly", "read-only", "authoriz")):
            raise EvqError(f"query refused: evq query is read-only ({exc})") from None
        if isinstance(exc, sqlite3.OperationalError | sqlite3.ProgrammingError):
            raise EvqError(f"query failed: {exc}") from None
        raise translate(exc, path) from None
    finally:
        log.close()
    if as_json:
        print_json([dict(zip(columns, r, strict=True)) for r in rows])
    elif as_csv:
        out = csv.writer(sys.stdout)
        out.writerow(columns)
        out.writerows(rows)
    else:
        print_table(None, columns, rows)

