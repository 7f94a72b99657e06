"""pgqueuer's runner (see peer_runner.py for the commands), run with the Python of its venv.

pgqueuer with its defaults on PostgreSQL (127.0.0.1:5432; a database of its own,
``evq_bench_pgqueuer``, made afresh before each run, its schema made with
``Queries(driver).install()``), over asyncpg: ``await queries.enqueue("noop", b"N")`` one at a
time, ``await queries.enqueue(["noop", ...], [b"0", ...], [0, ...])`` in bulk, and per worker
process ``PgQueuer.from_asyncpg_connection(conn)`` with ``@pgq.entrypoint("noop")`` and
``await pgq.run()`` (its defaults: batches of 10, LISTEN/NOTIFY). Start and completion: the
entrypoint's executor (``executor_factory``, pgqueuer's hook around running a job) is the
default ``EntrypointExecutor`` with stamps before and after it runs the job.
"""

from __future__ import annotations

from typing import Any

import asyncpg
from peer_runner import AsyncPeer, fresh_database, main, stamp
from pgqueuer import PgQueuer, Queries
from pgqueuer.db import AsyncpgDriver
from pgqueuer.executors import EntrypointExecutor

DATABASE = "evq_bench_pgqueuer"
URL = f"postgresql://postgres@127.0.0.1:5432/{DATABASE}"


class Stamped(EntrypointExecutor):
    async def execute(self, job: Any, context: Any) -> None:
        stamp("start", job.payload)
        await super().execute(job, context)
        stamp("end", job.payload)


async def noop(job: Any) -> None:
    pass


class Pgqueuer(AsyncPeer):
    name = "pgqueuer"
    bulk = True
    conn: Any = None

    async def queries(self) -> Queries:
        if self.conn is None:
            self.conn = await asyncpg.connect(URL)
        return Queries(AsyncpgDriver(self.conn))

    async def areset(self) -> None:
        fresh_database(DATABASE)
        await (await self.queries()).install()

    async def aenqueue(self, n: int) -> None:
        await (await self.queries()).enqueue("noop", str(n).encode())

    async def aenqueue_many(self, ns: list[int]) -> None:
        await (await self.queries()).enqueue(["noop"] * len(ns), [str(n).encode() for n in ns],
                                             [0] * len(ns))

    async def aclose(self) -> None:
        if self.conn is not None:
            await self.conn.close()

    def work(self, workers: int) -> None:
        async def run() -> None:
            pgq = PgQueuer.from_asyncpg_connection(await asyncpg.connect(URL))
            pgq.entrypoint("noop", executor_factory=Stamped)(noop)
            await pgq.run()

        self.run(run())


if __name__ == "__main__":
    main(Pgqueuer)
