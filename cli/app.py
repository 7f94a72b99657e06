"""The root of the ``evq`` command: global options, and one-line errors instead of tracebacks."""

from __future__ import annotations

import sys
from typing import Any

import typer
from typer.core import TyperGroup

from evq.eventlog.errors import EvqError


class EvqGroup(TyperGroup):
    """Turns every evq error and usage mistake into one line on stderr and an exit code."""

    def main(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        standalone_mode = kwargs.pop("standalone_mode", True)
        try:
            rv = super().main(*args, standalone_mode=False, **kwargs)  # type: ignore[misc]
            code = rv if isinstance(rv, int) else 0
        except typer.TyperException as exc:  # usage mistakes, from typer's own click
            ctx = getattr(exc, "ctx", None)
            if type(exc).__name__ == "NoArgsIsHelpError" and ctx is not None:
                typer.echo(ctx.get_help())  # `evq` or `evq failed` alone: the help, no error
                code = 0
            else:
                hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
                code = fail(f"{exc.format_message()}{hint}", getattr(exc, "exit_code", 2))
        except EvqError as exc:
            code = fail(str(exc), 1)
        except typer.Abort:
            code = fail("aborted", 1)
        if standalone_mode:
            sys.exit(code)
        return code


def fail(message: str, code: int) -> int:
    """Print one error line on stderr; returns ``code``."""
    typer.echo(f"error: {message}", err=True)
    return code


def make_app(help: str, **kwargs: Any) -> typer.Typer:
    """A Typer (sub-)app with evq's error handling and no rich error panels."""
    options: dict[str, Any] = {"no_args_is_help": True, **kwargs}
    return typer.Typer(cls=EvqGroup, help=help, add_completion=False,
                       pretty_exceptions_enable=False, rich_markup_mode=None, **options)
