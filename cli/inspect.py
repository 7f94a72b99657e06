"""Commands that read: ``stats``, ``jobs``, ``history`` and ``events``."""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

import msgspec
import typer

from evq.eventlog import consumers

from .context import get
from .output import console, inert, print_json, print_table, seconds, when
from .timeparse import parse_point

STATE_COLUMNS = ("pending", "delayed", "leased", "running", "succeeded", "failed", "cancelled")


def register(app: typer.Typer) -> None:
    app.command()(stats)
    app.command()(jobs)
    app.command()(history)
    app.command()(events)


def stats(
    ctx: typer.Context,
    queue: str = typer.Argument(None, help="Only this queue."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object."),
    watch: bool = typer.Option(False, "--watch", help="Refresh every second until Ctrl-C."),
    window: int = typer.Option(1000, "--window", min=1, help="Percentiles, rates and outcomes "
                               "per queue and job type over this many latest jobs."),
) -> None:
    """Jobs per queue and state; outcomes, retries, wait and run times per job type."""
    q = get(ctx).queue()

    def collect() -> dict[str, Any]:
        return q.stats(window, queue=queue)

    if as_json:
        print_json(collect())
        return
    if not watch:
        print_stats(collect())
        return
    try:
        if not sys.stdout.isatty():  # a pipe or a file: each refresh printed after the last
            while True:
                print_stats(collect())
                sys.stdout.flush()
                time.sleep(1)
        from rich.live import Live

        with Live(console=console(), auto_refresh=False) as live:
            while True:
                live.update(_stats_tables(collect()), refresh=True)
                time.sleep(1)
    except KeyboardInterrupt:
        pass


def _stats_tables(data: dict[str, Any]) -> Any:
    from rich.console import Group
    from rich.table import Table

    queues = Table(title=f"queues ({inert(data['url'])}, log at seq {data['last_seq']})",
                   title_justify="left")
    queues.add_column("queue")
    for c in STATE_COLUMNS:
        queues.add_column(c, justify="right")
    for name, counts in data["queues"].items():
        queues.add_row(inert(name), *(str(counts[c]) for c in STATE_COLUMNS))
    types = Table(title="job types", title_justify="left")
    for c in ("name", "dispatched", "succeeded", "failures", "retried", "dead", "fail %",
              "run p50", "run p95", "run p99", "wait p50", "wait p99"):
        types.add_column(c, justify="left" if c == "name" else "right")
    for name, t in data["job_types"].items():
        types.add_row(inert(name), str(t["dispatched"]), str(t["succeeded"]), str(t["failures"]),
                      str(t["retried"]), str(t["dead"]), f"{t['failure_rate'] * 100:.1f}",
                      *(seconds(t[k]) or "" for k in ("duration_p50", "duration_p95",
                                                      "duration_p99", "wait_p50", "wait_p99")))
    recent = data["recent"]
    title = (f"latest {recent['window']} jobs (rate over the last {recent['span_minutes']:g} "
             "min)")
    return Group(queues, types, _recent_table(f"{title}, per queue", "queue", recent["queues"]),
                 _recent_table(f"{title}, per job type", "name", recent["job_types"]))


def _recent_table(title: str, key: str, groups: dict[str, Any]) -> Any:
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for c in (key, "jobs", "succeeded", "failed", "cancelled", "retried", "fail %", "wait p50",
              "wait p95", "wait p99", "run p50", "run p95", "run p99", "per min"):
        table.add_column(c, justify="left" if c == key else "right")
    for name, g in groups.items():
        table.add_row(inert(name), *(str(g[k]) for k in ("jobs", "succeeded", "failed", "cancelled",
                                                  "retried_jobs")),
                      f"{g['failure_rate'] * 100:.1f}",
                      *(seconds(g[k]) or "" for k in ("wait_p50", "wait_p95", "wait_p99",
                                                      "run_p50", "run_p95", "run_p99")),
                      f"{g['per_minute']:g}")
    return table


def print_stats(data: dict[str, Any]) -> None:
    console().print(_stats_tables(data))


def jobs(
    ctx: typer.Context,
    state: str = typer.Option(None, "--state",
                              help="pending (ready), delayed, running, succeeded, failed, "
                                   "cancelled or waiting (for other jobs of its workflow)."),
    queue: str = typer.Option(None, "--queue"),
    name: str = typer.Option(None, "--name"),
    limit: int = typer.Option(100, "--limit", min=1),
    as_json: bool = typer.Option(False, "--json", help="A JSON array of jobs."),
) -> None:
    """List jobs from the projections, oldest first (with more than --limit, says how many
    match)."""
    q = get(ctx).queue()
    rows = q.jobs(state, queue=queue, name=name, limit=limit)
    if as_json:
        print_json(rows)
        return
    now = time.time()
    columns = ["id", "name", "queue", "state", "attempt", "run at", "duration", "error"]
    table = [[r.id, r.name, r.queue, "delayed" if r.state == "pending" and r.run_at > now
              else r.state, r.attempt, when(r.run_at), seconds(r.duration), r.error]
             for r in rows]
    if any(r.progress is not None for r in rows):  # a column only when a job reported some
        columns.insert(4, "progress")
        for r, line in zip(rows, table, strict=True):
            line.insert(4, _progress(r.progress, r.progress_message))
    print_table(None, columns, table)
    say_how_many_more(q, len(rows), limit, state, queue=queue, name=name)


def _progress(fraction: float | None, message: str | None) -> str | None:
    if fraction is None:
        return None
    return f"{fraction * 100:.0f}% {message}" if message else f"{fraction * 100:.0f}%"


def say_how_many_more(q: Any, shown: int, limit: int, state: str | None, *,
                      queue: str | None = None, name: str | None = None) -> None:
    """After a listing cut at ``limit``: how many jobs match in all, on stderr."""
    if shown < limit:
        return
    total = q.count_jobs(state, queue=queue, name=name)
    if total > limit:
        typer.echo(f"the oldest {limit} of {total:,} matching jobs; see more with --limit "
                   f"{min(total, limit * 10)}, or narrow with --state, --queue or --name",
                   err=True)


def history(
    ctx: typer.Context,
    job_id: int = typer.Argument(..., help="The job's id."),
    as_json: bool = typer.Option(False, "--json", help="A JSON array of events."),
) -> None:
    """Every event of one job, in order: its audit trail."""
    from evq.eventlog.codec import to_json_obj

    q = get(ctx).queue()
    records = q.history(job_id)
    if as_json:
        print_json([to_json_obj(r) for r in records])
        return
    print_history(records)
    from evq.redispatch import copies

    again = copies(q.store, job_id)
    if again:
        typer.echo(f"dispatched again as job {', '.join(map(str, again))} (evq replay "
                   "--redispatch)")


def print_history(records: list[Any]) -> None:
    """One job's events as a table, with the time since the previous event."""
    from evq.eventlog.codec import to_json_obj

    objs = [to_json_obj(r) for r in records]
    first = objs[0]
    title = f"job {first['job_id']}: {first.get('name', '?')} on {first.get('queue', '?')}"
    rows, prev = [], first["ts"]
    for o in objs:
        rows.append((o["seq"], when(o["ts"]), f"+{seconds(o['ts'] - prev)}", o["type"],
                     o.get("attempt"), _details(o)))
        prev = o["ts"]
    print_table(title, ["seq", "time", "after", "event", "attempt", "details"], rows)
    tb = next((o["traceback"] for o in reversed(objs) if o.get("traceback")), None)
    if tb:
        typer.echo("last traceback:\n" + inert(tb.rstrip(), lines=True, cut=20_000))


_SHOWN = {"seq", "ts", "type", "job_id", "attempt", "traceback", "payload"}


def _details(o: dict[str, Any]) -> str:
    """An event's fields in one line, each value inert and cut (see :func:`inert`)."""
    parts = []
    if o["type"] == "JobDispatched":
        parts.append("args " + inert(msgspec.json.encode(o["payload"]).decode()))
    for k, v in o.items():
        if k in _SHOWN or v in (None, [], "") or (o["type"] == "JobDispatched" and k in (
                "name", "queue", "tries", "backoff")):
            continue
        if k == "run_at" and not v:  # a requeue's "at once"
            continue
        if k in ("run_at", "lease_expires"):
            v = when(v)
        elif k in ("duration", "timeout"):
            v = seconds(v)
        parts.append(f"{k} {inert(v)}")
    return ", ".join(parts)


def events(
    ctx: typer.Context,
    since: str = typer.Option(None, "--since", help="After this log position (seq) or from "
                              "this time (ISO 8601, or relative: 30m, 2h, 1d)."),
    until: str = typer.Option(None, "--until", help="Up to this position or time."),
    types: list[str] = typer.Option([], "--type", help="Only these event types (repeat)."),
    queue: str = typer.Option(None, "--queue", help="Only events of this queue."),
    job: int = typer.Option(None, "--job", help="Only events of this job."),
    limit: int = typer.Option(None, "--limit", min=1),
    follow: bool = typer.Option(False, "--follow", "-f",
                                help="Keep printing new events until Ctrl-C."),
    consumer: str = typer.Option(None, "--consumer", help="A durable reader: print what came "
                                 "after this name's saved position, and save where it got to "
                                 "(instead of --since)."),
    as_json: bool = typer.Option(False, "--json", help="JSON Lines: one event a line."),
) -> None:
    """The log itself, in order."""
    from evq.eventlog.codec import to_json_obj
    from evq.eventlog.events import EVENT_TYPES

    unknown = [t for t in types if t not in EVENT_TYPES]
    if unknown:
        raise typer.BadParameter(f"unknown event type {unknown[0]!r} (one of "
                                 f"{', '.join(sorted(EVENT_TYPES))})", param_hint="--type")
    q = get(ctx).queue()
    filters: dict[str, Any] = {"types": types, "queue": queue, "job_id": job}
    start = 0
    if since is not None:
        pos, ts = parse_point(since)
        start, filters["since_ts"] = (pos or 0), ts
        if pos is not None and pos > q.store.log.last_seq():
            raise typer.BadParameter(f"position {pos} is beyond the end of the log "
                                     f"({q.store.log.last_seq()})", param_hint="--since")
    if until is not None:
        pos, ts = parse_point(until)
        filters["until"], filters["until_ts"] = pos, ts

    left = limit  # events still to print (None: no limit)
    reader = None
    if consumer is not None:
        if since is not None:
            raise typer.BadParameter("give --since or --consumer, not both",
                                     param_hint="--consumer")
        from evq.subscribers import Subscription

        reader = Subscription(q, consumer, lambda r: None, types=types)
        start = reader.claim()
        ctx.call_on_close(lambda: consumers.release(q.store.log, consumer, reader.owner))

    def show(since_seq: int) -> int:
        nonlocal left
        last = since_seq
        if reader is not None:  # all up to the end of the log now, then saved
            filters["until"] = q.store.log.last_seq()
        for rec in q.events(since=since_seq, limit=left, **filters):
            obj = to_json_obj(rec)
            if as_json:
                print_json(obj)
            else:
                typer.echo(f"{obj['seq']:>8} {when(obj['ts'])} {obj['type']:<18} "
                           f"job {obj['job_id']:<8} {_details(obj)}")
            last = rec.seq
            left = None if left is None else left - 1
        sys.stdout.flush()
        if reader is not None:
            if left != 0:
                last = filters["until"]
            consumers.save(q.store.log, reader.name, reader.owner, last, time.time())
        return last

    last = show(start)
    if not follow or left == 0:
        return
    changed = threading.Event()
    watcher = q.store.watch(None, changed.set)
    try:
        while left != 0:
            changed.wait(1.0)
            changed.clear()
            last = show(last)
    except KeyboardInterrupt:
        pass
    finally:
        watcher.close()
