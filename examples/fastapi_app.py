"""Dispatching evq jobs from a FastAPI app.

Development: one process, with a worker embedded in the app (it starts and stops with it)::

    EVQ_EMBEDDED_WORKER=1 uvicorn --factory examples.fastapi_app:create_app --reload

Production: the app only dispatches; workers run apart, as many as needed, on the same store::

    EVQ_URL=postgresql://app@db/app uvicorn --factory examples.fastapi_app:create_app
    EVQ_URL=postgresql://app@db/app evq work --app examples.fastapi_app --queues images
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

import evq


class MakeThumbnail(evq.Job):
    queue = "images"
    tries = 3

    path: str
    width: int = 128

    def handle(self) -> str:
        return f"{self.path} thumbnail at {self.width}px"  # the slow work, off the request


def create_app(url: str | None = None, *, embedded_worker: bool | None = None) -> FastAPI:
    """The app, on the store ``url`` (default ``EVQ_URL``, else ``sqlite:///evq.db``), with a
    worker inside it if ``embedded_worker`` (default: ``EVQ_EMBEDDED_WORKER=1``)."""
    if embedded_worker is None:
        embedded_worker = os.environ.get("EVQ_EMBEDDED_WORKER") == "1"

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        queue = evq.connect(url)
        previous = evq.use(queue)  # what Job.dispatch() uses
        try:
            if embedded_worker:
                async with queue.worker(queues=["images"]).start():  # stopped with the app
                    yield
            else:
                yield
        finally:
            evq.use(previous)
            queue.close()

    app = FastAPI(lifespan=lifespan)

    @app.post("/images/{path}/resize")
    def resize(path: str, width: int = 128) -> dict[str, int]:
        return {"job_id": MakeThumbnail(path=path, width=width).dispatch()}

    @app.get("/jobs/{job_id}")
    def job(job_id: int) -> dict[str, str]:
        return {"state": evq.default_queue().job(job_id).state}

    return app
