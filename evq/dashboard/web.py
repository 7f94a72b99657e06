"""The dashboard's routes: pages rendered on the server, live counts over server-sent events,
and the operator actions (only with ``allow_actions``, each checked against the token)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import jinja2
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from evq.api import Queue
from evq.eventlog.codec import to_json_obj
from evq.eventlog.errors import EvqError, NotFound

from . import charts, graph, metrics
from .security import token_ok

HERE = Path(__file__).parent
STATES = ("pending", "delayed", "running", "failed", "waiting", "succeeded", "cancelled")
PAGE = 50
LIVE_INTERVAL = 0.3  # at most about three live updates a second

_env = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True)
_env.filters["when"] = lambda ts: (time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts))
                                   if ts else "")


def app(queue: Queue, *, allow_actions: bool = False, token: str | None = None) -> Starlette:
    """An ASGI app showing ``queue``; with ``allow_actions`` (which needs ``token``) it also
    retries, cancels and deletes jobs for whoever presents the token."""
    if allow_actions and not token:
        raise ValueError("allow_actions needs a token")

    def render(request: Request, template: str, **context: Any) -> HTMLResponse:
        body = _env.get_template(template).render(request=request, actions=allow_actions,
                                                  **context)
        return HTMLResponse(body)

    def overview(request: Request) -> HTMLResponse:
        return render(request, "overview.html", **_overview(queue))

    def live_counts(request: Request) -> HTMLResponse:
        return render(request, "counts.html", **_overview(queue))

    async def live(request: Request) -> StreamingResponse:
        return StreamingResponse(_changes(queue, request), media_type="text/event-stream")

    def jobs(request: Request) -> HTMLResponse:
        args = request.query_params
        page = max(int(args.get("page") or 0), 0)
        try:
            rows = queue.search(args.get("state") or None, queue=args.get("queue") or None,
                                name=args.get("name") or None, text=args.get("text") or "",
                                since=_time(args.get("since")), until=_time(args.get("until")),
                                offset=page * PAGE, limit=PAGE)
        except EvqError as e:
            raise HTTPException(400, str(e)) from e
        return render(request, "jobs.html", rows=rows, args=args, page=page, states=STATES,
                      more=len(rows) == PAGE)

    def job(request: Request) -> HTMLResponse:
        job_id = request.path_params["job_id"]
        try:
            row = queue.job(job_id)
        except NotFound as e:
            raise HTTPException(404, str(e)) from e
        events = [to_json_obj(r) for r in queue.history(job_id)]
        return render(request, "job.html", job=row, events=events)

    def failed(request: Request) -> HTMLResponse:
        chosen = _failed_filter(request.query_params)
        rows = queue.search("failed", **chosen, limit=PAGE)
        return render(request, "failed.html", rows=rows, more=len(rows) == PAGE,
                      total=queue.count_jobs("failed"), retried=request.query_params.get("retried"),
                      filters={k: v or "" for k, v in chosen.items()})

    def groups(request: Request) -> HTMLResponse:
        return render(request, "groups.html", groups=queue.groups())

    def schedules(request: Request) -> HTMLResponse:
        from evq.schedules import registered
        from evq.workers.scheduler import status

        declared = {s.name: s for s in status(queue.store, [s.plan(queue) for s in registered()],
                                               time.time())}
        rows = [r for r in queue.store.schedules.all() if r.name not in declared]
        states = queue.store.tables.states(r.last_job for r in rows if r.last_job is not None)
        return render(request, "schedules.html", declared=list(declared.values()), schedules=rows,
                      states=states)

    def group(request: Request) -> HTMLResponse:
        try:
            found = queue.group(request.path_params["group_id"])
        except NotFound as e:
            raise HTTPException(404, str(e)) from e
        return render(request, "group.html", group=found, graph=graph.of_group(found),
                      max_nodes=graph.MAX_NODES)

    def as_of(request: Request) -> HTMLResponse:
        at = request.query_params.get("at") or ""
        past = _past(queue, _time(at)) if at else None
        return render(request, "replay.html", at=at, past=past)

    def prometheus(request: Request) -> PlainTextResponse:
        return PlainTextResponse(metrics.text(queue),
                                 media_type="text/plain; version=0.0.4; charset=utf-8")

    async def act(request: Request) -> Response:
        if not allow_actions:
            raise HTTPException(403, "actions are off: start the dashboard with --allow-actions")
        form = dict(parse_qsl((await request.body()).decode("utf-8", "replace")))
        assert token is not None
        if not token_ok(token, request.headers.get("x-evq-token") or form.get("token")):
            raise HTTPException(403, "wrong or missing token")
        by, reason = form.get("by", ""), form.get("reason", "")
        if not by:
            raise HTTPException(400, "name the operator (by)")
        verb = request.path_params["verb"]
        try:
            target = _do(queue, verb, form, by, reason)
        except EvqError as e:
            raise HTTPException(409, str(e)) from e
        return RedirectResponse(target, status_code=303)

    routes = [
        Route("/", overview), Route("/live", live), Route("/live/counts", live_counts),
        Route("/jobs", jobs), Route("/jobs/{job_id:int}", job), Route("/failed", failed),
        Route("/groups", groups), Route("/groups/{group_id:int}", group),
        Route("/schedules", schedules),
        Route("/replay", as_of), Route("/metrics", prometheus),
        Route("/actions/{verb}", act, methods=["POST"]),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    return Starlette(routes=routes)


def _do(queue: Queue, verb: str, form: dict[str, str], by: str, reason: str) -> str:
    """Carry out one action; returns where to go next."""
    if verb == "retry-all":
        chosen = _failed_filter(form)
        done = queue.retry_all(**chosen, by=by, reason=reason)
        return "/failed?" + urlencode({**{k: v for k, v in chosen.items() if v}, "retried": done})
    try:
        job_id = int(form.get("job_id", ""))
    except ValueError as e:
        raise HTTPException(400, "job_id must be a number") from e
    match verb:
        case "retry":
            queue.retry(job_id, by=by, reason=reason)
        case "cancel":
            queue.cancel(job_id, reason, by=by)
        case "delete":
            queue.forget(job_id, by=by, reason=reason)
            return "/failed"
        case _:
            raise HTTPException(404, f"no action {verb!r}")
    return f"/jobs/{job_id}"


def _failed_filter(fields: Mapping[str, str]) -> dict[str, Any]:
    """The failed page's filter (queue, job type, text in the arguments or error) from a query
    string or, for "Retry all", the form's hidden fields: both select the same jobs."""
    return {"queue": fields.get("queue") or None, "name": fields.get("name") or None,
            "text": fields.get("text") or ""}


def _overview(queue: Queue) -> dict[str, Any]:
    now = time.time()
    stats = queue.stats()
    points = charts.per_minute(queue.store.tables.minutes(now - 3600), now)
    return {"stats": stats, "chart": charts.svg(points), "workers": queue.workers(),
            "now": now, "attempts": sum(s + f for _, s, f in points)}


async def _changes(queue: Queue, request: Request) -> AsyncIterator[str]:
    """A ``change`` event after each burst of commits (at most one per LIVE_INTERVAL)."""
    loop = asyncio.get_running_loop()
    changed = asyncio.Event()
    watch = queue.store.watch(None, lambda: loop.call_soon_threadsafe(changed.set))
    try:
        yield "retry: 1000\n\n"
        while not await request.is_disconnected():
            try:
                await asyncio.wait_for(changed.wait(), 15)
            except TimeoutError:
                yield ": keep-alive\n\n"
                continue
            changed.clear()
            yield "event: change\ndata: \n\n"
            await asyncio.sleep(LIVE_INTERVAL)  # debounce: bursts become one update
    finally:
        watch.close()


def _past(queue: Queue, until_ts: float | None) -> dict[str, Any]:
    """The queues' counts as of ``until_ts``, rebuilt from the log by the replay code into a
    store in memory (read-only: the live projections are untouched)."""
    from evq.projections.replay import replay
    from evq.projections.store import Store

    copy = Queue(Store.in_memory())
    try:
        done = replay(queue.store, into=copy.store, until_ts=until_ts)
        return {"queues": copy.stats()["queues"], "events": done.events}
    finally:
        copy.close()


def _time(value: str | None) -> float | None:
    """An ISO 8601 time (as an HTML datetime-local input sends, UTC) as a unix time."""
    if not value:
        return None
    from datetime import UTC, datetime

    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as e:
        raise HTTPException(400, f"not a time: {value!r}") from e
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()
