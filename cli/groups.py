"""Commands about composed work: ``batches``, ``batch ID`` and ``workflow ID``."""

from __future__ import annotations

from typing import Any

import typer

from .context import get
from .output import print_json, print_table, when

_KINDS = ("batch", "workflow", "chain")


def register(app: typer.Typer) -> None:
    app.command()(batches)
    app.command()(batch)
    app.command()(workflow)


def batches(
    ctx: typer.Context,
    kind: str = typer.Option("batch", "--kind", help="batch, workflow or chain."),
    limit: int = typer.Option(100, "--limit", min=1),
    as_json: bool = typer.Option(False, "--json", help="A JSON array of batches."),
) -> None:
    """List batches (or workflows, or chains), newest first, with their progress."""
    if kind not in _KINDS:
        raise typer.BadParameter(f"unknown kind {kind!r}: use {', '.join(_KINDS)}",
                                 param_hint="--kind")
    rows = get(ctx).queue().groups(kind, limit=limit)
    if as_json:
        print_json(rows)
        return
    print_groups(rows)


def batch(
    ctx: typer.Context,
    batch_id: int = typer.Argument(..., help="The batch's id."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object."),
) -> None:
    """One batch's progress: how many of its jobs succeeded, failed or are pending."""
    status = get(ctx).queue().group(batch_id)
    if as_json:
        print_json(status)
        return
    print_groups([status])


def workflow(
    ctx: typer.Context,
    workflow_id: int = typer.Argument(..., help="The workflow's (or chain's) id."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object, with its jobs."),
) -> None:
    """A workflow's (or chain's) jobs, each with its state and the jobs it waits for."""
    status = get(ctx).queue().group(workflow_id)
    if as_json:
        print_json(status)
        return
    print_groups([status])
    print_table(None, ["id", "name", "state", "waits for"],
                [(j["id"], j["name"], j["state"], _edges(j)) for j in status.get("jobs", [])])


def print_groups(rows: list[dict[str, Any]]) -> None:
    """Batches, workflows or chains as a table, with their progress."""
    print_table(None, ["id", "kind", "name", "state", "total", "succeeded", "failed",
                       "cancelled", "pending", "created", "finished"],
                [(r["id"], r["kind"], r["name"], r["state"], r["total"], r["succeeded"],
                  r["failed"], r["cancelled"], r["pending"], when(r["created_at"]),
                  when(r["finished_at"])) for r in rows])


def _edges(job: dict[str, Any]) -> str:
    return ", ".join(f"{d} (any outcome)" if d in job["ignore_failure"] else str(d)
                     for d in job["after"])
