"""``evq work``: run a worker in this process until it is told to stop."""

from __future__ import annotations

import logging
import signal
import sys
from enum import StrEnum

import typer

from .context import get, import_apps
from .timeparse import parse_age


class Pool(StrEnum):
    thread = "thread"
    async_ = "async"
    process = "process"


def register(app: typer.Typer) -> None:
    @app.command()
    def work(
        ctx: typer.Context,
        app_modules: list[str] = typer.Option(
            [], "--app", envvar="EVQ_APP", help="Module(s) that define the job types to run "
            "(repeat, or separate with commas)."),
        queues: str = typer.Option("default", "--queues", "-q",
                                   help="Queues in order of precedence, e.g. high,default,low: "
                                        "a later queue runs only when the earlier are empty."),
        concurrency: int = typer.Option(1, "--concurrency", "-c", min=1,
                                        help="Jobs run at once (threads)."),
        pool: Pool = typer.Option(Pool.thread, "--pool",
                                  help="thread: sync jobs on threads, async jobs on one event "
                                       "loop; async: the same; process: not available yet."),
        max_jobs: int = typer.Option(None, "--max-jobs", min=1,
                                     help="Stop after this many jobs."),
        stop_when_empty: bool = typer.Option(False, "--stop-when-empty",
                                             help="Stop once no job is ready or running "
                                                  "(delayed jobs stay for a later worker)."),
        sleep: float = typer.Option(3.0, "--sleep", min=0.01,
                                    help="Seconds between fallback polls while idle (changes to "
                                         "the store wake the worker before that)."),
        lease: float = typer.Option(30.0, "--lease", min=0.1,
                                    help="Seconds a claim holds a job; renewed while it runs."),
        grace: float = typer.Option(30.0, "--grace", min=0,
                                    help="On SIGTERM/SIGINT, seconds to let running jobs "
                                         "finish."),
        verbose: bool = typer.Option(False, "--verbose", "-v", help="Log each failure."),
        archive_after: str = typer.Option(None, "--archive-after",
                                          help="Retention: now and every hour, archive the "
                                               "events of jobs finished longer ago than this "
                                               "age (e.g. 7d)."),
    ) -> None:
        """Run a worker: claim jobs, run them, record every step in the log."""
        if pool is Pool.process:
            raise typer.BadParameter("the process pool is not available yet; use thread",
                                     param_hint="--pool")
        logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        import_apps(app_modules)
        age = parse_age(archive_after) if archive_after is not None else None
        q = get(ctx).queue()
        worker = q.worker(queues=[s.strip() for s in queues.split(",") if s.strip()],
                          concurrency=concurrency, max_jobs=max_jobs,
                          stop_when_empty=stop_when_empty, sleep=sleep, lease=lease,
                          grace=grace)

        def on_signal(signum: int, _frame: object) -> None:
            worker.stop()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        print(f"evq worker {worker.name} on {q.url}: queues {','.join(worker.queues)}, "
              f"concurrency {concurrency}", file=sys.stderr)
        if age is not None:
            from evq.projections.retention import keep_archiving

            stop_archiving = keep_archiving(q.url, age)
        try:
            done = worker.run()
        finally:
            if age is not None:
                stop_archiving()
        print(f"evq worker {worker.name} stopped after {done} jobs", file=sys.stderr)
