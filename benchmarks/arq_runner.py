"""arq's runner (see peer_runner.py for the commands), run with the Python of its venv.

arq with its defaults on Redis (database 13 of 127.0.0.1:6379, emptied before each run):
``create_pool(RedisSettings.from_dsn(...))``, ``await pool.enqueue_job("noop", n,
_job_id=str(n))`` (the job id names the job's argument, since arq's hooks see the job id but
not its arguments), and per worker process ``Worker(functions=[func(noop, name="noop")],
...).run()`` (max_jobs 10, its default). arq has no bulk enqueue. Start and completion: the
worker hooks ``on_job_start`` and ``after_job_end``.
"""

from __future__ import annotations

from typing import Any

from arq import create_pool
from arq.connections import ArqRedis, RedisSettings
from arq.worker import Worker, func
from peer_runner import REDIS_URL, AsyncPeer, main, stamp

SETTINGS = RedisSettings.from_dsn(REDIS_URL)


async def noop(ctx: dict[str, Any], n: int) -> None:
    pass


async def started(ctx: dict[str, Any]) -> None:
    stamp("start", ctx["job_id"])


async def ended(ctx: dict[str, Any]) -> None:
    stamp("end", ctx["job_id"])


class Arq(AsyncPeer):
    name = "arq"
    pool: ArqRedis | None = None

    async def connect(self) -> ArqRedis:
        if self.pool is None:
            self.pool = await create_pool(SETTINGS)
        return self.pool

    async def areset(self) -> None:
        await (await self.connect()).flushdb()

    async def aenqueue(self, n: int) -> None:
        await (await self.connect()).enqueue_job("noop", n, _job_id=str(n))

    async def aclose(self) -> None:
        if self.pool is not None:
            await self.pool.aclose()

    def work(self, workers: int) -> None:
        Worker(functions=[func(noop, name="noop")], redis_settings=SETTINGS,
               on_job_start=started, after_job_end=ended).run()


if __name__ == "__main__":
    main(Arq)
