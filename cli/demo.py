"""``evq demo``: a realistic run on a fresh SQLite file, with a progress bar."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    app.command()(demo)


def demo(
    path: Path = typer.Option(Path("evq-demo.db"), "--path",
                              help="The SQLite file to create (replaced if it exists)."),
    concurrency: int = typer.Option(4, "--concurrency", min=1),
) -> None:
    """Dispatch a mix of jobs (fast, slow, delayed, flaky, broken), run a worker until all are
    done, then show the stats and the history of a job that was retried."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from evq import connect
    from evq import demo as jobs
    from evq.projections.model import FINISHED

    from .inspect import print_history, print_stats
    from .output import console

    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    url = f"sqlite:///{os.path.abspath(path)}"
    q = connect(url)
    out = console()
    total = jobs.dispatch_mix(q)
    out.print(f"dispatched {total} jobs to {url}")
    worker = q.worker(queues=["emails", "images", "reports", "imports"],
                      concurrency=concurrency, sleep=0.5)
    thread = threading.Thread(target=worker.run, name="evq-demo-worker")
    thread.start()
    columns = (*Progress.get_default_columns()[:1], BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())
    changed = threading.Event()
    watcher = q.store.watch(None, changed.set)
    try:
        with Progress(*columns, console=out) as progress:
            task = progress.add_task("working", total=total)
            done = 0
            while done < total:
                counts = q.store.tables.queue_counts()
                done = sum(getattr(c, s) for c in counts for s in FINISHED)
                progress.update(task, completed=done)
                changed.wait(0.1)
                changed.clear()
    finally:
        watcher.close()
        worker.stop()
        thread.join()
    print_stats(q.stats())
    retried = [r for r in q.jobs("succeeded", name="SendEmail", limit=1000) if r.attempt > 1]
    dead = q.jobs("failed", limit=1)
    for row in (retried[:1] or []) + dead:
        print_history(q.history(row.id))
    from .groups import print_groups

    print_groups(q.groups("chain") + q.groups("batch"))
    out.print(f"\nExplore it: evq --url {url} jobs --state failed | history ID | batches | "
              "workflow ID | events --json | query \"SELECT ...\"")
