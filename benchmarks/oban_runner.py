"""oban's runner (see peer_runner.py for the commands), run with the Python of its venv (oban,
the Python port of Oban, needs Python >= 3.12: the venv is made with one, see peers.py).

oban with its defaults on PostgreSQL (127.0.0.1:5432; a database of its own,
``evq_bench_oban``, made afresh before each run, its schema made with
``oban.schema.install(pool)``), over the pool of ``Oban.create_pool(URL)``: the worker
``@worker(queue="default")`` class ``Noop``, a client ``Oban(pool=pool)`` (no queues: it only
enqueues) with ``await oban.enqueue(Noop.new({"n": N}))`` one at a time and ``await
oban.enqueue_many([...])`` in bulk, and per worker process ``async with Oban(pool=pool,
queues={"default": 10})`` (a queue has no default limit; 10 is the one its docs show; insert
triggers with LISTEN/NOTIFY, a stager every second). Start and completion: the telemetry events
``oban.job.start`` and ``oban.job.stop`` (oban's public hook, ``telemetry.attach``) stamp the
job (oban then acknowledges the completion to the database).
"""

from __future__ import annotations

import asyncio
from typing import Any

from oban import Job, Oban, telemetry, worker
from oban.schema import install
from peer_runner import AsyncPeer, fresh_database, main, stamp

DATABASE = "evq_bench_oban"
URL = f"postgresql://postgres@127.0.0.1:5432/{DATABASE}"
KIND = {"oban.job.start": "start", "oban.job.stop": "end"}


@worker(queue="default")
class Noop:
    async def process(self, job: Job) -> None:
        pass


def stamps(name: str, meta: dict[str, Any]) -> None:
    stamp(KIND[name], meta["job"].args["n"])


class ObanPeer(AsyncPeer):
    name = "oban"
    bulk = True
    pool: Any = None
    client: Oban | None = None

    async def oban(self) -> Oban:
        if self.client is None:
            self.pool = await Oban.create_pool(URL)
            self.client = Oban(pool=self.pool)
        return self.client

    async def areset(self) -> None:
        fresh_database(DATABASE)
        await self.oban()
        await install(self.pool)

    async def aenqueue(self, n: int) -> None:
        await (await self.oban()).enqueue(Noop.new({"n": n}))  # type: ignore[attr-defined]

    async def aenqueue_many(self, ns: list[int]) -> None:
        await (await self.oban()).enqueue_many(
            [Noop.new({"n": n}) for n in ns])  # type: ignore[attr-defined]

    async def aclose(self) -> None:
        if self.pool is not None:
            await self.pool.close()

    def work(self, workers: int) -> None:
        async def run() -> None:
            telemetry.attach("evq-bench", list(KIND), stamps)
            pool = await Oban.create_pool(URL)
            async with Oban(pool=pool, queues={"default": 10}):
                await asyncio.Event().wait()  # until SIGTERM

        self.run(run())


if __name__ == "__main__":
    main(ObanPeer)
