"""saq's runner (see peer_runner.py for the commands), run with the Python of its venv.

saq with its defaults on Redis (database 13 of 127.0.0.1:6379, emptied before each run):
``Queue.from_url(...)``, ``await queue.enqueue("noop", n=n)``, and per worker process
``Worker(queue, functions=[noop], ...).start()`` (concurrency 10, its default). saq has no bulk
enqueue (``Queue.map`` enqueues many jobs but waits for their results). Start and completion:
the worker hooks ``before_process`` and ``after_process``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from peer_runner import REDIS_URL, AsyncPeer, main, stamp
from saq import Queue, Worker


async def noop(ctx: dict[str, Any], *, n: int) -> None:
    pass


async def started(ctx: dict[str, Any]) -> None:
    stamp("start", ctx["job"].kwargs["n"])


async def ended(ctx: dict[str, Any]) -> None:
    stamp("end", ctx["job"].kwargs["n"])


class Saq(AsyncPeer):
    name = "saq"
    queue: Queue | None = None

    async def connect(self) -> Queue:
        if self.queue is None:
            self.queue = Queue.from_url(REDIS_URL)
            await self.queue.connect()
        return self.queue

    async def areset(self) -> None:
        await (await self.connect()).redis.flushdb()  # type: ignore[attr-defined]

    async def aenqueue(self, n: int) -> None:
        await (await self.connect()).enqueue("noop", n=n)

    async def aclose(self) -> None:
        if self.queue is not None:
            await self.queue.disconnect()

    def work(self, workers: int) -> None:
        async def run() -> None:
            worker = Worker(await self.connect(), functions=[("noop", noop)],
                            before_process=started, after_process=ended)
            await worker.start()

        asyncio.run(run())


if __name__ == "__main__":
    main(Saq)
