"""``evq query`` (read-only SQL on the store) and ``evq replay`` (rebuild the projections)."""

from __future__ import annotations

import csv
import sqlite3
import sys
import time

import typer

from evq.eventlog.errors import EvqError

from .context import get
from .output import print_json, print_table
from .timeparse import parse_point


def register(app: typer.Typer) -> None:
    app.command()(query)
    app.command()(replay)


def query(
    ctx: typer.Context,
    sql: str = typer.Argument(..., help="One SQL statement, e.g. \"SELECT state, count(*) FROM "
                              "jobs GROUP BY state\"."),
    as_json: bool = typer.Option(False, "--json", help="A JSON array of objects."),
    as_csv: bool = typer.Option(False, "--csv", help="CSV with a header line."),
) -> None:
    """Run read-only SQL on the log (``events``) and the projections (``jobs``,
    ``queue_stats``, ``job_type_stats``)."""
    from evq.api import resolve_url
    from evq.eventlog.sqlite import SqliteLog, translate
    from evq.projections.store import sqlite_path

    path = sqlite_path(resolve_url(get(ctx).url))
    log = SqliteLog(path, readonly=True)
    try:
        cur = log.conn.execute(sql)
        columns = [d[0] for d in cur.description or ()]
        rows = cur.fetchall()
    except sqlite3.Error as exc:
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


def replay(
    ctx: typer.Context,
    since: str = typer.Option(..., "--since", help="A log position (seq) or a time (ISO "
                              "8601, or relative: 30m, 2h, 1d)."),
    verify: bool = typer.Option(False, "--verify", help="Rebuild aside and report every "
                                "difference from the live projections (exit 1 if any)."),
) -> None:
    """Rebuild the projections from the log through the same apply-functions as the live path.

    There are no snapshots yet, so the rebuild always starts at the beginning of the log;
    --since is checked and reported.
    """
    q = get(ctx).queue()
    pos, ts = parse_point(since)
    last = q.store.log.last_seq()
    if pos is not None and pos > last:
        raise typer.BadParameter(f"position {pos} is beyond the end of the log ({last})",
                                 param_hint="--since")
    started = time.perf_counter()
    if verify:
        differences = q.store.verify()
        for line in differences[:200]:
            typer.echo(line)
        if len(differences) > 200:
            typer.echo(f"... and {len(differences) - 200} more")
        typer.echo(f"verified {last} events: {len(differences)} differences")
        raise typer.Exit(1 if differences else 0)
    count = q.store.rebuild()
    took = time.perf_counter() - started
    point = f"seq {pos}" if pos is not None else f"time {ts}"
    typer.echo(f"replayed {count} events from the start of the log (no snapshot at or before "
               f"{point}) in {took:.2f}s ({count / max(took, 1e-9):,.0f} events/s)")
