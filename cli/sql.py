"""``evq query``: read-only SQL on the store."""

from __future__ import annotations

import csv
import sys

import typer

from .context import get
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
    """Run read-only SQL on the log (``events``) and the projections (``jobs``, ``counts``,
    ``minutes``, ``workers``, ``queue_stats``, ``job_type_stats``), for at most --timeout
    seconds."""
    columns, rows = get(ctx).queue().store.log.query(sql, timeout)
    if as_json:
        print_json([dict(zip(columns, r, strict=True)) for r in rows])
    elif as_csv:
        out = csv.writer(sys.stdout)
        out.writerow(columns)
        out.writerows(rows)
    else:
        print_table(None, columns, rows)

