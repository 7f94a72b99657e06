"""chancy's runner (see peer_runner.py for the commands), run with the Python of its venv.

chancy on PostgreSQL (127.0.0.1:5432; a database of its own, ``evq_bench_chancy``, made afresh
before each run, its schema made with ``await chancy.migrate()``): ``Chancy(URL)`` with its
default plugins, the queue ``Queue("default", eager_polling=True)`` and otherwise its defaults
(concurrency per worker = the number of cores, the ``ProcessExecutor``: a pool of spawned
processes; LISTEN/NOTIFY and a poll every 5 s). Not its default: ``eager_polling`` (poll again as
soon as a job completes), without which a worker takes a batch of jobs only every 5 s, as its
docs say: the drain would measure the poll interval (0.4 jobs/s here). ``await
chancy.push(Job(func="chancy_runner.noop", kwargs={"n": N}))`` one at a time, ``push_many`` (in
transactions of 1,000, its default) in bulk, and per worker process ``async with Worker(chancy):
await worker.wait_for_shutdown()``. Start and completion: a ``Plugin`` (chancy's hook API)
whose ``on_job_starting`` and ``on_job_completed`` stamp the job in the worker's process (just
before the job goes to the executor's pool, and once its result is back; chancy writes the
outcome in its next batch of updates, every second).
"""

from __future__ import annotations

from typing import Any

from chancy import Chancy, Job, Queue, QueuedJob, Worker
from chancy.plugin import Plugin
from peer_runner import AsyncPeer, fresh_database, main, stamp

DATABASE = "evq_bench_chancy"
URL = f"postgresql://postgres@127.0.0.1:5432/{DATABASE}"


def noop(n: int) -> None:
    pass


def job(n: int) -> Job:
    return Job(func="chancy_runner.noop", kwargs={"n": n})


class Stamps(Plugin):
    @staticmethod
    def get_identifier() -> str:
        return "evq-bench-stamps"

    async def on_job_starting(self, *, job: QueuedJob, worker: Any) -> QueuedJob:
        stamp("start", (job.kwargs or {})["n"])
        return job

    async def on_job_completed(self, *, worker: Any, job: QueuedJob,
                               exc: Exception | None = None, result: Any = None) -> QueuedJob:
        if exc is None:
            stamp("end", (job.kwargs or {})["n"])
        return job


class ChancyPeer(AsyncPeer):
    name = "chancy"
    bulk = True

    def __init__(self, folder: str) -> None:
        super().__init__(folder)
        self.app = Chancy(URL)  # its pool opens on first use

    async def areset(self) -> None:
        fresh_database(DATABASE)
        await self.app.migrate()
        await self.app.declare(Queue("default", eager_polling=True))

    async def aenqueue(self, n: int) -> None:
        await self.app.push(job(n))

    async def aenqueue_many(self, ns: list[int]) -> None:
        async for _ in self.app.push_many([job(n) for n in ns]):
            pass

    async def aclose(self) -> None:
        await self.app.pool.close()

    def work(self, workers: int) -> None:
        async def run() -> None:
            async with Chancy(URL, plugins=[Stamps()]) as chancy, Worker(chancy) as worker:
                await worker.wait_for_shutdown()

        self.run(run())


if __name__ == "__main__":
    main(ChancyPeer)
