"""``evq replay`` (rebuild, verify, as of a past point, into a file, redispatch), ``evq snapshot``
and ``evq archive``: the commands that work on the log as a whole."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import typer

from evq.eventlog.errors import InvalidArguments

from .context import get
from .output import print_json, print_table, seconds, when
from .timeparse import parse_point, parse_time


def register(app: typer.Typer) -> None:
    app.command()(replay)
    app.command()(snapshot)
    app.command()(archive)


def _point(text: str | None, option: str, last: int) -> tuple[int | None, float | None]:
    if text is None:
        return None, None
    pos, ts = parse_point(text)
    if pos is not None and pos > last:
        raise typer.BadParameter(f"position {pos} is beyond the end of the log ({last})",
                                 param_hint=option)
    return pos, ts


def replay(
    ctx: typer.Context,
    since: str = typer.Option(..., "--since", help="A log position (seq) or a time (ISO "
                              "8601, or relative: 30m, 2h, 1d): start from the newest snapshot "
                              "at or before it."),
    until: str = typer.Option(None, "--until", help="Stop at this position or time: the state "
                              "as of then (needs --into)."),
    verify: bool = typer.Option(False, "--verify", help="Rebuild aside and report every "
                                "difference from the live projections (exit 1 if any)."),
    into: Path = typer.Option(None, "--into", help="Write the rebuilt projections, and the "
                              "events up to the point, to this new SQLite file."),
    force: bool = typer.Option(False, "--force", help="With --into: replace an existing file."),
    redispatch: bool = typer.Option(False, "--redispatch", help="Dispatch the jobs dispatched "
                                    "in [--since, --until] that match the filters again, as new "
                                    "jobs linked to the originals (replay_of)."),
    state: list[str] = typer.Option([], "--state", help="With --redispatch: only jobs in this "
                                    "state now (repeat), e.g. failed."),
    name: str = typer.Option(None, "--name", help="With --redispatch: only this job type."),
    queue: str = typer.Option(None, "--queue", help="With --redispatch: only this queue."),
    dry_run: bool = typer.Option(False, "--dry-run", help="With --redispatch: list the jobs, "
                                 "dispatch nothing."),
    as_json: bool = typer.Option(False, "--json", help="The outcome as one JSON object."),
) -> None:
    """Replay the log through the projections' apply-functions (the same as the live path).

    Without --verify, --into or --redispatch it rebuilds the live projections, holding the write
    lock (workers wait, nothing is missed).
    """
    q = get(ctx).queue()
    last = q.store.log.last_seq()
    pos, ts = _point(since, "--since", last)
    upos, uts = _point(until, "--until", last)
    used = [o for o, on in (("--verify", verify), ("--into", into is not None),
                            ("--redispatch", redispatch)) if on]
    if len(used) > 1:
        raise typer.BadParameter(f"{' and '.join(used)} do not go together: give one")
    if (state or name or queue or dry_run) and not redispatch:
        raise typer.BadParameter("--state, --name, --queue and --dry-run go with --redispatch")
    if until is not None and not (into or redispatch):
        raise typer.BadParameter("the live projections follow the whole log: give --into FILE "
                                 "to see the state as of --until", param_hint="--until")
    if redispatch:
        _redispatch(q, pos, ts, upos, uts, state, name, queue, dry_run, as_json)
        return
    if verify:
        _verify(q, pos, ts, as_json)
        return
    target = _open_into(into, force) if into is not None else None
    started = time.perf_counter()
    from evq.projections.replay import replay as run

    try:
        with _ProgressBar() as progress:
            done = run(q.store, into=target.store if target else None, since=pos, since_ts=ts,
                       until=upos, until_ts=uts, copy_events=target is not None,
                       progress=progress)
    except BaseException:
        if target is not None:
            target.close()
            _remove(Path(str(into) + ".partial"))
        raise
    took = time.perf_counter() - started
    if target is not None:
        target.close()
        os.replace(str(into) + ".partial", into)  # type: ignore[arg-type]
    origin = (f"the snapshot at seq {done.start}" if done.snapshot_ts is not None
              else "the start of the log")
    summary = {"events": done.events, "from_seq": done.start, "to_seq": done.end,
               "snapshot": done.snapshot_ts is not None, "seconds": round(took, 3),
               "events_per_second": round(done.events / max(took, 1e-9)),
               "into": str(into) if into is not None else None}
    if as_json:
        print_json(summary)
        return
    typer.echo(f"replayed {done.events} events from {origin} up to seq {done.end} in "
               f"{took:.2f}s ({summary['events_per_second']:,} events/s)"
               + (f" into {into}" if into is not None else ""))


def _verify(q: Any, pos: int | None, ts: float | None, as_json: bool) -> None:
    from evq.projections.replay import replay as run
    from evq.projections.store import Store

    aside = Store.in_memory()
    try:
        with q.store.log.exclusive(), _ProgressBar() as progress:
            run(q.store, into=aside, since=pos, since_ts=ts, progress=progress)
            differences = q.store.differences(aside)
    finally:
        aside.close()
    if as_json:
        print_json({"differences": differences})
    else:
        for line in differences[:200]:
            typer.echo(line)
        if len(differences) > 200:
            typer.echo(f"... and {len(differences) - 200} more")
        typer.echo(f"verified {q.store.log.last_seq()} events: {len(differences)} differences")
    raise typer.Exit(1 if differences else 0)


def _open_into(into: Path, force: bool) -> Any:
    """A new, empty store at ``into``.partial (renamed to ``into`` when the replay is done)."""
    from evq.api import connect

    if into.exists() and not force:
        raise InvalidArguments(f"{into} exists: give --force to replace it")
    if into.is_dir():
        raise InvalidArguments(f"{into} is a directory")
    if not into.resolve().parent.is_dir():
        raise InvalidArguments(f"cannot write {into}: its directory does not exist")
    partial = Path(str(into) + ".partial")
    _remove(partial)
    return connect(f"sqlite:///{partial}")


def _remove(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)


class _ProgressBar:
    """A rich progress bar on stderr while a replay runs (only on a terminal)."""

    def __enter__(self) -> Any:
        self.bar: Any = None
        if not sys.stderr.isatty():
            return None
        from rich.console import Console
        from rich.progress import Progress

        self.bar = Progress(console=Console(stderr=True), transient=True)
        self.bar.start()
        self.task = self.bar.add_task("replaying", total=None)
        return self._update

    def _update(self, done: int, total: int) -> None:
        self.bar.update(self.task, completed=done, total=max(total, done))

    def __exit__(self, *_: object) -> None:
        if self.bar is not None:
            self.bar.stop()


def _redispatch(q: Any, pos: int | None, ts: float | None, upos: int | None, uts: float | None,
                states: list[str], name: str | None, queue: str | None, dry_run: bool,
                as_json: bool) -> None:
    from evq.projections.model import STATES
    from evq.redispatch import matching, redispatch

    unknown = [s for s in states if s not in STATES]
    if unknown:
        raise InvalidArguments(f"unknown state {unknown[0]!r}: use {', '.join(STATES)}")
    rows = matching(q.store, states=states, name=name, queue=queue, after=pos or 0,
                    until=upos, since_ts=ts, until_ts=uts)
    new: list[int | None] = [None] * len(rows) if dry_run else list(redispatch(q.store, rows))
    if as_json:
        print_json([{"job_id": r.id, "name": r.name, "queue": r.queue, "state": r.state,
                     "new_job_id": n} for r, n in zip(rows, new, strict=True)])
        return
    verb = "would dispatch again" if dry_run else "dispatched again"
    print_table(f"{verb}: {len(rows)} jobs", ["job", "name", "queue", "state", "dispatched",
                                              "error", "new job"],
                [(r.id, r.name, r.queue, r.state, when(r.dispatched_at), r.error, n)
                 for r, n in zip(rows, new, strict=True)])


def snapshot(
    ctx: typer.Context,
    list_: bool = typer.Option(False, "--list", help="List the snapshots instead."),
    as_json: bool = typer.Option(False, "--json", help="One JSON document."),
) -> None:
    """Record the projections at the current log position; replay starts from the newest
    snapshot at or before its --since."""
    from evq.projections import snapshot as snapshots

    log = get(ctx).queue().store.log
    if list_:
        found = snapshots.listing(log)
        if as_json:
            print_json([{"seq": s, "ts": t, "jobs": j, "bytes": b} for s, t, j, b in found])
        else:
            print_table("snapshots", ["seq", "taken", "jobs", "bytes"],
                        [(s, when(t), j, b) for s, t, j, b in found])
        return
    started = time.perf_counter()
    seq, jobs, size = snapshots.take(log)
    if as_json:
        print_json({"seq": seq, "jobs": jobs, "bytes": size})
    else:
        typer.echo(f"snapshot at seq {seq}: {jobs} jobs, {size:,} bytes compressed, in "
                   f"{seconds(time.perf_counter() - started)}")


def archive(
    ctx: typer.Context,
    before: str = typer.Option(..., "--before", help="Archive the events of jobs finished "
                               "before this time (ISO 8601, or an age: 7d, 12h)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Count the jobs, move nothing."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object."),
) -> None:
    """Move the events of finished jobs into compressed archive segments in the same file;
    history, events and replay still read them."""
    from evq.projections.retention import archivable, archive_finished

    cutoff = parse_time(before)
    log = get(ctx).queue().store.log
    if dry_run:
        n = len(archivable(log, cutoff))
        if as_json:
            print_json({"jobs": n})
        else:
            typer.echo(f"would archive {n} jobs")
        return
    moved = archive_finished(log, cutoff)
    if as_json:
        print_json(moved)
        return
    typer.echo(f"archived {moved.events} events of {moved.jobs} jobs finished before "
               f"{when(cutoff)} into {moved.segments} segments ({moved.raw_bytes:,} bytes of "
               f"JSON stored in {moved.stored_bytes:,})")
