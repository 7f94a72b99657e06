"""``evq dashboard``: the web dashboard, served with uvicorn."""

from __future__ import annotations

import typer

from evq.eventlog.errors import ConfigError

from .context import get, import_apps


def register(app: typer.Typer) -> None:
    app.command()(dashboard)


def dashboard(
    ctx: typer.Context,
    host: str = typer.Option("127.0.0.1", "--host", help="The address to listen on."),
    port: int = typer.Option(8484, "--port", min=0, max=65535),
    allow_actions: bool = typer.Option(False, "--allow-actions",
                                       help="Let holders of the token retry, cancel and delete "
                                            "jobs (token: EVQ_DASHBOARD_TOKEN, else printed)."),
    app_modules: list[str] = typer.Option([], "--app", envvar="EVQ_APP",
                                          help="Module(s) that declare the schedules, for their "
                                               "cron and next runs on /schedules (optional)."),
) -> None:
    """Serve the web dashboard of the store (read-only unless --allow-actions)."""
    if app_modules:
        import_apps(app_modules)
    try:
        import uvicorn

        from evq.dashboard import app
        from evq.dashboard.security import action_token
    except ImportError as exc:
        raise ConfigError(f"the dashboard needs its extra: pip install 'evq[dashboard]' "
                          f"({exc.name} is missing)") from None
    q = get(ctx).queue()
    token = None
    if allow_actions:
        token = action_token(None)
        typer.echo(f"actions allowed with the token: {token}")
    typer.echo(f"evq dashboard of {q.url} on http://{host}:{port}/", err=True)
    uvicorn.run(app(q, allow_actions=allow_actions, token=token), host=host, port=port,
                log_level="warning")
