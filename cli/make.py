"""``evq make job NAME``: write a job module from a template."""

from __future__ import annotations

import keyword
import re
from pathlib import Path

import typer

from evq.eventlog.errors import InvalidArguments

from .app import make_app

make_commands = make_app("Write new code from a template.")

_CLASS_NAME = re.compile(r"[A-Z][A-Za-z0-9]*")

TEMPLATE = '''"""The {name} job."""

from __future__ import annotations

import evq


class {name}(evq.Job):
    """What {name} does. Dispatch it with ``{name}(item_id=42).dispatch()``."""

    queue = "default"
    tries = 3  # attempts in all
    backoff = [10, 60]  # seconds before each retry
    timeout = 60  # seconds; None for no limit

    item_id: int  # the job's arguments: typed fields, checked when it is dispatched

    def handle(self) -> None:
        """The work (may be ``async def``); what it returns is kept as the job's result."""

    def failed(self, error: BaseException) -> None:
        """Called once the last attempt has failed."""
'''


def register(app: typer.Typer) -> None:
    app.add_typer(make_commands, name="make")


@make_commands.command()
def job(
    name: str = typer.Argument(..., help="The job's class name, in CamelCase: ProcessPodcast."),
    directory: Path = typer.Option(Path("app/jobs"), "--dir",
                                   help="Where to write it (created if missing)."),
) -> None:
    """Write a job class to DIR/snake_case_name.py (never over an existing file)."""
    path = directory / f"{module_name(name)}.py"
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InvalidArguments(f"cannot make the folder {directory}: {exc.strerror}") from None
    try:
        with path.open("x") as out:  # "x": never over a file, even one written meanwhile
            out.write(TEMPLATE.format(name=name))
    except FileExistsError:
        raise InvalidArguments(f"{path} exists: not overwritten") from None
    typer.echo(f"wrote {path}")


def module_name(name: str) -> str:
    """The module of job class ``name``: ``ProcessPodcast`` -> ``process_podcast``; refuses a
    name that is not a CamelCase class name."""
    module = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).lower()
    if not _CLASS_NAME.fullmatch(name) or keyword.iskeyword(module):
        raise InvalidArguments(f"{name!r} is not a job class name: use a Python identifier in "
                               "CamelCase, as ProcessPodcast")
    return module
