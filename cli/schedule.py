"""``evq schedule``: run the scheduler, list the schedules, run one now, see the schedulers."""

from __future__ import annotations

import signal
import sys
import threading
import time

import typer

from evq.eventlog.errors import ConfigError
from evq.schedules import registered, schedulers

from .app import make_app
from .context import get, import_apps
from .output import print_json, print_table, when

schedule_app = make_app(
    "Cron schedules. 'evq schedule --app MODULE' runs a scheduler (as many as you like, on any "
    "hosts: each tick is dispatched once); the commands below list and run them.",
    invoke_without_command=True, no_args_is_help=False)

APP_HELP = "Module(s) that declare the schedules (repeat, or separate with commas)."


def register(app: typer.Typer) -> None:
    app.add_typer(schedule_app, name="schedule")


def _apps(app_modules: list[str], command: str) -> None:
    if not app_modules:
        raise ConfigError(f"evq {command} needs --app MODULE (or EVQ_APP): the modules that "
                          "declare the schedules")
    import_apps(app_modules)


@schedule_app.callback()
def run(
    ctx: typer.Context,
    app_modules: list[str] = typer.Option([], "--app", envvar="EVQ_APP", help=APP_HELP),
    lease: float = typer.Option(30.0, "--lease", min=0.1,
                                help="Seconds of silence after which this scheduler counts as "
                                     "lost (it writes a heartbeat every third of it)."),
) -> None:
    """Run a scheduler until SIGTERM or SIGINT: dispatch each schedule's job at its ticks."""
    if ctx.invoked_subcommand is not None:
        if app_modules:
            import_apps(app_modules)
        return
    _apps(app_modules, "schedule")
    q = get(ctx).queue(create=True)
    scheduler = q.scheduler(lease=lease)

    def on_signal(_signum: int, _frame: object) -> None:
        # from another thread: the handler runs on the thread that waits in the scheduler
        threading.Thread(target=scheduler.stop, name="evq-stop").start()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    print(f"evq scheduler {scheduler.name} on {q.url}: "
          f"{', '.join(p.name for p in scheduler.plans)}", file=sys.stderr)
    done = scheduler.run()
    print(f"evq scheduler {scheduler.name} stopped after {done} ticks", file=sys.stderr)


@schedule_app.command("list")
def list_(
    ctx: typer.Context,
    app_modules: list[str] = typer.Option([], "--app", envvar="EVQ_APP", help=APP_HELP),
    count: int = typer.Option(3, "--count", min=1, max=100, help="Next run times to show."),
    as_json: bool = typer.Option(False, "--json", help="One JSON array."),
) -> None:
    """Each schedule: its cron, next run times, and its last dispatch and that job's state."""
    from evq.workers.scheduler import status

    _apps(app_modules, "schedule list")
    q = get(ctx).queue()
    plans = [s.plan(q) for s in registered()]
    listed = status(q.store, plans, time.time(), count)
    if as_json:
        print_json(listed)
        return
    print_table(f"schedules ({q.url})",
                ("name", "cron", "timezone", "missed", "job", "next runs", "last tick",
                 "last job", "last state", "ticks", "skipped"),
                [(s.name, s.cron, s.timezone or "UTC", s.missed, s.job,
                  ", ".join(filter(None, map(when, s.next_runs))), when(s.last_tick),
                  s.last_job, s.last_state, s.ticks, s.skipped) for s in listed])


@schedule_app.command("run")
def run_now(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="The schedule's name."),
    app_modules: list[str] = typer.Option([], "--app", envvar="EVQ_APP", help=APP_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print {\"job_id\": N}."),
) -> None:
    """Dispatch a schedule's job now, outside its cron (its last tick stays as it was)."""
    from evq.workers.scheduler import trigger

    _apps(app_modules, "schedule run")
    q = get(ctx).queue(create=True)
    [chosen] = registered([name])
    job_id = trigger(q.store, chosen.plan(q), time.time())
    if as_json:
        print_json({"job_id": job_id})
    else:
        typer.echo(f"dispatched job {job_id} of schedule {name}")


@schedule_app.command("status")
def status_(
    ctx: typer.Context,
    show_all: bool = typer.Option(False, "--all", help="Also stopped schedulers."),
    as_json: bool = typer.Option(False, "--json", help="One JSON array."),
) -> None:
    """Schedulers alive or lost (silent past their lease), with their last heartbeat."""
    q = get(ctx).queue()
    listed = schedulers(q, stopped=show_all)
    if as_json:
        print_json(listed)
        return
    now = time.time()
    print_table(f"schedulers ({q.url})",
                ("name", "status", "host", "pid", "schedules", "started", "last heartbeat",
                 "dispatched"),
                [(s.name, s.status, s.host, s.pid, ", ".join(s.schedules), when(s.started_at),
                  f"{now - s.last_seen:.1f}s ago", s.dispatched) for s in listed])
