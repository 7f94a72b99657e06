"""Commands that change the queue: ``dispatch``, ``failed ...``, ``cancel`` and ``clear``."""

from __future__ import annotations

import getpass

import typer

from .app import make_app
from .context import get, import_apps
from .output import inert, print_json, print_table, when
from .timeparse import parse_time

failed_app = make_app("Failed jobs: those whose last attempt failed (retries used up).")

BY = typer.Option(None, "--by", help="The operator the event names (default: the OS user).")
REASON = typer.Option("", "--reason", help="Why, for the audit trail.")


def operator(by: str | None) -> str:
    """``--by``, else the OS user."""
    return by if by is not None else getpass.getuser()


def register(app: typer.Typer) -> None:
    app.add_typer(failed_app, name="failed")

    @app.command()
    def dispatch(
        ctx: typer.Context,
        name: str = typer.Argument(..., help="The job type's name, e.g. SendEmail."),
        arguments: str = typer.Option("{}", "--json", help="The job's arguments, a JSON object."),
        app_modules: list[str] = typer.Option([], "--app", envvar="EVQ_APP",
                                              help="Module(s) that define the job type."),
        queue: str = typer.Option(None, "--queue", help="Override the job type's queue."),
        delay: float = typer.Option(None, "--delay", min=0, help="Run after this many seconds."),
        at: str = typer.Option(None, "--at", help="Run at this time (ISO 8601)."),
        priority: int = typer.Option(None, "--priority", help="Higher runs first."),
    ) -> None:
        """Queue one job by name; prints its id."""
        import_apps(app_modules)
        when_ = parse_time(at) if at is not None else None
        job_id = get(ctx).queue(create=True).dispatch_json(
            name, arguments, queue=queue, delay=delay, at=when_, priority=priority)
        typer.echo(job_id)

    @app.command()
    def migrate(
        ctx: typer.Context,
        as_json: bool = typer.Option(False, "--json", help="{url, version, was} as JSON."),
    ) -> None:
        """Create the store, or upgrade its schema to this evq's. On PostgreSQL this is the only
        command that upgrades: the others refuse a schema that is behind."""
        from evq.eventlog.sqllog import SCHEMA_VERSION

        q = get(ctx).queue(create=True, upgrade=True)
        was = q.store.schema_was
        if as_json:
            print_json({"url": q.url, "version": SCHEMA_VERSION, "was": was})
            return
        done = ("created" if was == 0 else "already current" if was == SCHEMA_VERSION
                else f"upgraded from version {was}")
        typer.echo(f"{q.url}: schema version {SCHEMA_VERSION} ({done})")

    @app.command()
    def cancel(
        ctx: typer.Context,
        job_id: int = typer.Argument(..., help="The job to cancel."),
        reason: str = REASON,
        by: str = BY,
    ) -> None:
        """Cancel a job: a pending one at once; a leased or running one is stopped by its
        worker within about a second (its attempt is recorded as cancelled, without retry)."""
        row = get(ctx).queue().cancel(job_id, reason, by=operator(by))
        typer.echo(f"cancelled job {job_id}" if row.state == "cancelled" else
                   f"cancel requested for job {job_id} ({row.state} on worker "
                   f"{inert(row.worker or '')})")

    @app.command()
    def clear(
        ctx: typer.Context,
        queue: str = typer.Argument(..., help="The queue to empty."),
        force: bool = typer.Option(False, "--force", help="Really remove its pending jobs."),
        by: str = BY,
        reason: str = REASON,
    ) -> None:
        """Remove every pending (ready or delayed) job of a queue; the log keeps their history."""
        if not force:
            raise typer.BadParameter(f"this removes every pending job of {queue!r}: "
                                     "add --force to do it", param_hint="--force")
        cleared = get(ctx).queue().clear(queue, by=operator(by), reason=reason)
        typer.echo(f"cleared {cleared} jobs from {queue}")


@failed_app.command("list")
def failed_list(
    ctx: typer.Context,
    queue: str = typer.Option(None, "--queue", help="Only this queue."),
    limit: int = typer.Option(100, "--limit", min=1),
    as_json: bool = typer.Option(False, "--json", help="A JSON array of jobs."),
) -> None:
    """List failed jobs, newest last."""
    from .inspect import say_how_many_more

    q = get(ctx).queue()
    rows = q.jobs("failed", queue=queue, limit=limit)
    if as_json:
        print_json(rows)
        return
    print_table("failed jobs", ["id", "name", "queue", "attempts", "failed at", "error"],
                [(r.id, r.name, r.queue, r.failures, when(r.finished_at),
                  f"{r.error_type}: {r.error}") for r in rows])
    say_how_many_more(q, len(rows), limit, "failed", queue=queue)


@failed_app.command("retry")
def failed_retry(
    ctx: typer.Context,
    job_id: int = typer.Argument(None, help="The failed job to queue again."),
    all_: bool = typer.Option(False, "--all", help="Queue every failed job again."),
    queue: str = typer.Option(None, "--queue", help="With --all: only this queue."),
    name: str = typer.Option(None, "--name", help="With --all: only jobs of this type."),
    text: str = typer.Option("", "--text",
                             help="With --all: only jobs with this text in their arguments "
                                  "or error."),
    by: str = BY,
    reason: str = REASON,
) -> None:
    """Queue failed jobs again (JobRequeued): their attempts start over."""
    q = get(ctx).queue()
    if all_ == (job_id is not None):
        raise typer.BadParameter("give a job id or --all")
    if all_:
        done = q.retry_all(queue, name=name, text=text, by=operator(by), reason=reason)
        typer.echo(f"requeued {done} jobs")
    else:
        q.retry(job_id, by=operator(by), reason=reason)
        typer.echo(f"requeued job {job_id}")


@failed_app.command("delete")
def failed_delete(ctx: typer.Context, job_id: int = typer.Argument(...), by: str = BY,
                  reason: str = REASON) -> None:
    """Remove one failed job from the failed list (its events stay in the log)."""
    get(ctx).queue().forget(job_id, states=["failed"], by=operator(by), reason=reason)
    typer.echo(f"deleted job {job_id}")


@failed_app.command("flush")
def failed_flush(ctx: typer.Context, by: str = BY, reason: str = REASON) -> None:
    """Remove every failed job from the failed list (their events stay in the log)."""
    deleted = get(ctx).queue().flush_failed(by=operator(by), reason=reason)
    typer.echo(f"deleted {deleted} failed jobs")
