"""``evq work``: run a worker in this process, or supervise several worker processes."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import typer

from evq.eventlog.errors import ConfigError
from evq.workers.supervisor import EXIT_RECYCLE, Supervisor, rss_mb

from .context import get, import_apps, load_middleware
from .timeparse import parse_age

if TYPE_CHECKING:
    from evq.api import Queue


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
                                        help="Jobs run at once (per worker process)."),
        pool: Pool = typer.Option(Pool.thread, "--pool",
                                  help="thread: sync jobs on threads, async jobs on one event "
                                       "loop; async: the same; process: each job in a child "
                                       "process (one per --concurrency), killed past its "
                                       "timeout, replaced if it crashes."),
        processes: int = typer.Option(1, "--processes", "-p", min=1,
                                      help="Worker processes to start and supervise (each with "
                                           "--concurrency runners); one that dies is "
                                           "restarted."),
        max_jobs: int = typer.Option(None, "--max-jobs", min=1,
                                     help="Stop after this many jobs; under a supervisor "
                                          "(--processes, --max-memory) the process is replaced "
                                          "by a fresh one instead."),
        max_memory: float = typer.Option(None, "--max-memory", min=1,
                                         help="MB of resident memory (RSS) after which a worker "
                                              "process is stopped gracefully and replaced "
                                              "(starts a supervisor)."),
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
        middleware_specs: list[str] = typer.Option(
            [], "--middleware", help="MODULE:NAME of an evq.Middleware (or a list of them) "
            "that wraps every job, outside the job classes' own (repeat for more)."),
        verbose: bool = typer.Option(False, "--verbose", "-v", help="Log each failure."),
        archive_after: str = typer.Option(None, "--archive-after",
                                          help="Retention: now and every hour, archive the "
                                               "events of jobs finished longer ago than this "
                                               "age (e.g. 7d)."),
        schedule: bool = typer.Option(False, "--schedule",
                                      help="Also run a scheduler of the schedules that --app "
                                           "declares (see evq schedule)."),
        supervised: bool = typer.Option(False, "--supervised", hidden=True,
                                        help="Run as a supervisor's worker process."),
    ) -> None:
        """Run a worker: claim jobs, run them, record every step in the log (with --processes,
        supervise several worker processes)."""
        logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        if not app_modules:
            raise ConfigError("evq work needs --app MODULE (or EVQ_APP): the modules that "
                              "define the job types to run (a worker claims no other)")
        import_apps(app_modules)
        middleware = load_middleware(middleware_specs)
        from evq import notifications  # its job types run here; channels: the app or config

        channels = notifications.configured()
        age = parse_age(archive_after) if archive_after is not None else None
        q = get(ctx).queue(create=True)
        queue_list = [s.strip() for s in queues.split(",") if s.strip()]
        if not queue_list:
            raise typer.BadParameter("name at least one queue", param_hint="--queues")
        if not supervised and (processes > 1 or max_memory is not None):
            if max_memory is not None and rss_mb(os.getpid()) is None:
                raise ConfigError("--max-memory reads memory use from /proc, which this system "
                                  "does not have")
            if not q.store.shared:
                raise ConfigError(f"{q.url} lives in one process: --processes and --max-memory "
                                  "need a SQLite file (sqlite:///path/to/evq.db)")
            command = [sys.executable, "-m", "evq.cli", "--url", q.url, "work", "--supervised",
                       "--queues", ",".join(queue_list), "--concurrency", str(concurrency),
                       "--pool", pool.value, "--sleep", str(sleep), "--lease", str(lease),
                       "--grace", str(grace)]
            command += [a for m in app_modules for a in ("--app", m)]
            command += [a for m in middleware_specs for a in ("--middleware", m)]
            command += ["--max-jobs", str(max_jobs)] if max_jobs else []
            command += ["--stop-when-empty"] if stop_when_empty else []
            command += ["--verbose"] if verbose else []
            q.close()
            # by the supervisor, not by each of its processes
            with _archiving(q.url, age), _notifying(q.url, channels, lease), \
                    _scheduling(q.url if schedule else None):
                code = _supervise(command, processes, max_memory)
            raise typer.Exit(code)
        worker = q.worker(queues=queue_list, concurrency=concurrency, max_jobs=max_jobs,
                          stop_when_empty=stop_when_empty, sleep=sleep, lease=lease,
                          grace=grace, pool=pool.value, middleware=middleware)

        signals: list[int] = []

        def stop() -> None:
            worker.stop()
            print("evq worker: stopping at once" if len(signals) > 1 else
                  f"evq worker: stopping (running jobs get {grace:g}s to finish; a second "
                  "signal stops at once)", file=sys.stderr)

        def on_signal(signum: int, _frame: object) -> None:
            # The handler runs on the main thread, which runs the worker's loop: between the
            # loop's last look at its state and its wait, a stop() made here would be missed
            # for a whole --sleep. From another thread it waits for the loop's lock instead.
            signals.append(signum)
            threading.Thread(target=stop, name="evq-stop").start()

        signal.signal(signal.SIGTERM, on_signal)
        # a supervised process hears Ctrl-C through its supervisor, not from the terminal
        signal.signal(signal.SIGINT, signal.SIG_IGN if supervised else on_signal)
        print(f"evq worker {worker.name} on {q.url}: queues {','.join(worker.queues)}, "
              f"concurrency {concurrency}, pool {pool.value}", file=sys.stderr)
        with _archiving(q.url, age), _notifying(q.url, channels, lease, supervised), \
                _scheduling(q if schedule else None):
            done = worker.run()
        print(f"evq worker {worker.name} stopped after {done} jobs", file=sys.stderr)
        if worker.stopped_at_once and signals:
            raise typer.Exit(_signal_exit(signals[-1]))
        if supervised and max_jobs is not None and worker.claimed >= max_jobs:
            raise typer.Exit(EXIT_RECYCLE)


@contextlib.contextmanager
def _archiving(url: str, age: float | None) -> Iterator[None]:
    """Retention (``--archive-after``): archive old finished jobs now and every hour meanwhile."""
    if age is None:
        yield
        return
    from evq.projections.retention import keep_archiving

    stop = keep_archiving(url, age)
    try:
        yield
    finally:
        stop()


@contextlib.contextmanager
def _scheduling(store: Queue | str | None) -> Iterator[None]:
    """``--schedule``: a scheduler on a thread (on a connection of its own, given a URL) while
    the worker or the supervisor runs."""
    if store is None:
        yield
        return
    from evq.api import connect

    q = connect(store) if isinstance(store, str) else store
    try:
        scheduler = q.scheduler().start()
        try:
            yield
        finally:
            scheduler.stop()
    finally:
        if q is not store:
            q.close()


@contextlib.contextmanager
def _notifying(url: str, channels: Any, lease: float, off: bool = False) -> Iterator[None]:
    """Failure notifications, when channels are configured: a notifier on a connection of its
    own (the supervisor's, under --processes: ``off`` in its worker processes)."""
    if not channels or off:
        yield
        return
    import evq
    from evq.notifications import Notifier

    q = evq.connect(url)
    notifier = Notifier(q, channels, lease=lease).start()
    try:
        yield
    finally:
        notifier.stop()
        q.close()


def _supervise(command: list[str], processes: int, max_memory: float | None) -> int:
    supervisor = Supervisor(command, processes, max_memory_mb=max_memory)
    signals: list[int] = []

    def on_signal(signum: int, _frame: object) -> None:
        signals.append(signum)
        supervisor.stop()
        print("evq supervisor: stopping the worker processes at once" if supervisor.stopping > 1
              else "evq supervisor: stopping the worker processes (a second signal stops them "
                   "at once)", file=sys.stderr)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    print(f"evq supervisor: {processes} worker processes", file=sys.stderr)
    code = supervisor.run()
    print(f"evq supervisor stopped ({supervisor.restarts} restarts)", file=sys.stderr)
    return _signal_exit(signals[-1]) if supervisor.stopping > 1 and signals else code


def _signal_exit(signum: int) -> int:
    """The exit code of a stop at once (a second signal): 128 + the signal, as a shell says
    of a process killed by it (130 for SIGINT, 143 for SIGTERM), so the stop is not clean."""
    return 128 + signum

