"""taskiq's runner (see peer_runner.py for the commands), run with the Python of its venv.

taskiq with taskiq-redis and their defaults on Redis (database 13 of 127.0.0.1:6379, emptied
before each run): the broker ``ListQueueBroker(url=...)``, the task
``@broker.task(task_name="noop")``, ``await noop.kiq(n)``, and the worker as the ``taskiq
worker taskiq_runner:broker --workers N`` command runs it (``run_worker(WorkerArgs.from_cli(
...))``: N worker processes under one supervisor). taskiq has no bulk enqueue. Start and
completion: a ``TaskiqMiddleware`` of ours whose ``pre_execute`` and ``post_execute`` stamp the
message's argument.
"""

from __future__ import annotations

import os
from typing import Any

from peer_runner import REDIS_URL, STAMPS, AsyncPeer, main, stamp
from redis.asyncio import Redis
from taskiq import TaskiqMessage, TaskiqMiddleware, TaskiqResult
from taskiq.cli.worker.args import WorkerArgs
from taskiq.cli.worker.run import run_worker
from taskiq_redis import ListQueueBroker


class Stamps(TaskiqMiddleware):
    def pre_execute(self, message: TaskiqMessage) -> TaskiqMessage:
        stamp("start", message.args[0])
        return message

    def post_execute(self, message: TaskiqMessage, result: TaskiqResult[Any]) -> None:
        stamp("end", message.args[0])


broker = ListQueueBroker(url=REDIS_URL)
if os.environ.get(STAMPS):  # in the worker processes
    broker.add_middlewares(Stamps())


@broker.task(task_name="noop")
async def noop(n: int) -> None:
    pass


class Taskiq(AsyncPeer):
    name = "taskiq"
    own_processes = True
    started = False

    async def connect(self) -> None:
        if not self.started:
            await broker.startup()
            self.started = True

    async def areset(self) -> None:
        await self.connect()
        async with Redis.from_url(REDIS_URL) as redis:
            await redis.flushdb()

    async def aenqueue(self, n: int) -> None:
        await self.connect()
        await noop.kiq(n)

    async def aclose(self) -> None:
        if self.started:
            await broker.shutdown()

    def work(self, workers: int) -> None:
        run_worker(WorkerArgs.from_cli(["taskiq_runner:broker", "--workers", str(workers)]))


if __name__ == "__main__":
    main(Taskiq)
