"""A worker embedded in an application: on a thread of its own, stopped cleanly by the app.

    with q.worker(queues=["default"]).start():          # or: running = worker.start()
        serve_the_app()                                  # running.stop() when done

    async with q.worker().start() as running:            # in an asyncio app: the stop is
        await serve_forever()                            # awaited off the event loop

Signals stay with the application: call :meth:`Running.stop` from its own shutdown.
"""

from __future__ import annotations

import asyncio
import threading
from types import TracebackType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .worker import Worker


class Running:
    """A worker running on a thread; :meth:`stop` ends it and reports what went wrong, if
    anything did."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.done: int | None = None  # attempts finished, once it has stopped
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"evq-worker {worker.name}",
                                        daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self.done = self.worker.run()
        except BaseException as exc:  # re-raised by stop() on the application's thread
            self._error = exc

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self, timeout: float | None = None, *, wait: bool = True) -> int | None:
        """Stop claiming, let running jobs finish (within the worker's grace, or ``wait=False``:
        at once) and wait for the thread; returns the number of attempts finished (None if it
        has not ended within ``timeout``)."""
        self.worker.stop()
        if not wait:
            self.worker.stop()
        return self.join(timeout)

    def join(self, timeout: float | None = None) -> int | None:
        """Wait for the worker to end by itself (``max_jobs``, ``stop_when_empty``)."""
        self._thread.join(timeout)
        if self._error is not None:
            error, self._error = self._error, None
            raise error
        return self.done

    async def astop(self, timeout: float | None = None) -> int | None:
        """:meth:`stop`, awaited in a thread so that the event loop keeps running."""
        return await asyncio.to_thread(self.stop, timeout)

    def __enter__(self) -> Running:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    async def __aenter__(self) -> Running:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.astop()
