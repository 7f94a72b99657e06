"""The ``evq`` command."""

from __future__ import annotations

import typer

from . import dashboard, demo, groups, inspect, liveness, make, manage, replay, schedule, sql, work
from .app import make_app
from .context import Context

app = make_app("evq: a background-job queue on an append-only event log.\n\n"
               "The store is --url, else EVQ_URL, else sqlite:///evq.db in this directory.")


@app.callback()
def root(
    ctx: typer.Context,
    url: str = typer.Option(None, "--url", envvar="EVQ_URL", show_envvar=True,
                            help="Store URL: sqlite:///path/to/evq.db (the default is "
                                 "sqlite:///evq.db), postgresql://user@host/db or "
                                 "memory://."),
) -> None:
    ctx.obj = Context(url)
    ctx.call_on_close(ctx.obj.close)


for module in (work, schedule, manage, inspect, groups, liveness, sql, replay, demo, make,
               dashboard):
    module.register(app)


def main() -> None:
    """The console script's entry point."""
    app()
