"""``evq workers`` (who is alive, who is lost, what they hold) and ``evq health``."""

from __future__ import annotations

import time

import typer

from evq.eventlog.errors import EvqError
from evq.health import Health, unreachable

from .context import get
from .output import print_json, print_table, when


def register(app: typer.Typer) -> None:
    app.command()(workers)
    app.command()(health)


def workers(
    ctx: typer.Context,
    show_all: bool = typer.Option(False, "--all", help="Also stopped workers, and lost ones "
                                                       "seen more than a day ago."),
    as_json: bool = typer.Option(False, "--json", help="One JSON array."),
) -> None:
    """Workers alive or lost (silent past their lease), their last heartbeat and held jobs."""
    q = get(ctx).queue()
    listed = q.workers(stopped=show_all, lost_within=None if show_all else 86400.0)
    if as_json:
        print_json(listed)
        return
    now = time.time()
    print_table(f"workers ({q.url})",
                ("name", "status", "pid", "queues", "pool", "conc", "started", "last heartbeat",
                 "done", "holds"),
                [(w.name, w.status, w.pid, w.queues, w.pool, w.concurrency, when(w.started_at),
                  f"{now - w.last_seen:.1f}s ago", w.done,
                  " ".join(map(str, w.held[:10])) + (" ..." if len(w.held) > 10 else ""))
                 for w in listed])


def health(
    ctx: typer.Context,
    max_backlog: int = typer.Option(1000, "--max-backlog", min=0,
                                    help="Degraded when more jobs than this are ready but "
                                         "unclaimed."),
    max_failure_rate: float = typer.Option(0.1, "--max-failure-rate", min=0, max=1,
                                           help="Degraded when more than this share of the "
                                                "attempts in --window failed."),
    window: float = typer.Option(300.0, "--window", min=1,
                                 help="Seconds of history for the failure rate."),
    min_workers: int = typer.Option(1, "--min-workers", min=0,
                                    help="Unhealthy with fewer live workers than this."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object."),
) -> None:
    """Check the queue: exit 0 healthy, 1 degraded, 2 unhealthy (store unreachable, too few
    live workers)."""
    try:
        report: Health = get(ctx).queue().health(
            max_backlog=max_backlog, max_failure_rate=max_failure_rate, window=window,
            min_workers=min_workers)
    except EvqError as exc:
        report = unreachable(str(exc))
    if as_json:
        print_json({"status": report.status, "checks": report.checks})
    else:
        for c in report.checks:
            typer.echo(f"{c.status:<9} {c.name:<12} {c.detail}")
        typer.echo(report.status)
    raise typer.Exit(report.code)
