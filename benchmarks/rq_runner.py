"""rq's runner (see peer_runner.py for the commands), run with the Python of rq's venv.

rq with its defaults on Redis (database 13 of 127.0.0.1:6379, emptied before each run):
``Queue(connection=Redis(...))``, ``queue.enqueue("rq_runner.noop", n)`` one at a time,
``queue.enqueue_many([Queue.prepare_data(...), ...])`` in bulk, and ``Worker([queue]).work()``
(which forks a work horse per job). Start and completion come from rq's own records: the count
of the queue's ``FinishedJobRegistry``, then each job's ``started_at`` and ``ended_at``.
"""

from __future__ import annotations

from datetime import datetime

from peer_runner import REDIS_URL, Peer, main
from redis import Redis
from rq import Queue, Worker
from rq.job import Job


def noop(n: int) -> None:
    pass


class Rq(Peer):
    name = "rq"
    bulk = True

    def __init__(self, folder: str) -> None:
        super().__init__(folder)
        self.redis = Redis.from_url(REDIS_URL)
        self.queue = Queue(connection=self.redis)

    def reset(self) -> None:
        self.redis.flushdb()

    def enqueue(self, n: int) -> None:
        self.queue.enqueue("rq_runner.noop", n)

    def enqueue_many(self, ns: list[int]) -> None:
        self.queue.enqueue_many([Queue.prepare_data("rq_runner.noop", (n,)) for n in ns])

    def work(self, workers: int) -> None:
        Worker([self.queue], connection=self.redis).work()

    def close(self) -> None:
        self.redis.close()

    def progress(self, kind: str) -> int:
        if kind == "end":
            return self.queue.finished_job_registry.count
        return self.queue.finished_job_registry.count + self.queue.started_job_registry.count

    def times(self, kind: str) -> list[tuple[int, float]]:
        ids = self.queue.finished_job_registry.get_job_ids()
        if kind == "start":
            ids += self.queue.started_job_registry.get_job_ids()
        out = []
        for start in range(0, len(ids), 1000):
            for job in Job.fetch_many(ids[start:start + 1000], connection=self.redis):
                when: datetime | None = job and (job.started_at if kind == "start"
                                                 else job.ended_at)
                if job is not None and when is not None:
                    out.append((int(job.args[0]), when.timestamp()))
        return out


if __name__ == "__main__":
    main(Rq)
