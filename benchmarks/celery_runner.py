"""celery's runner (see peer_runner.py for the commands), run with the Python of its venv.

celery with its defaults on Redis (database 13 of 127.0.0.1:6379, emptied before each run):
``Celery(broker=...)`` (no result backend), the task ``@app.task(name="noop")``,
``noop.delay(n)``, and the worker ``app.worker_main(["worker", "--concurrency=N"])``: one
worker with N prefork child processes, celery's own way of running N processes (its default
is one per core). celery has no bulk enqueue (a ``group`` sends its messages one by one).
Start and completion: celery's signals ``task_prerun`` and ``task_postrun`` (sent in the child
process that runs the task).
"""

from __future__ import annotations

from typing import Any

from celery import Celery
from celery.signals import task_postrun, task_prerun
from peer_runner import REDIS_URL, Peer, main, stamp

app = Celery("bench", broker=REDIS_URL)


@app.task(name="noop")
def noop(n: int) -> None:
    pass


@task_prerun.connect
def started(args: Any = None, **_: Any) -> None:
    stamp("start", args[0])


@task_postrun.connect
def completed(args: Any = None, **_: Any) -> None:
    stamp("end", args[0])


class Celery_(Peer):
    name = "celery"
    own_processes = True

    def reset(self) -> None:
        with app.connection_for_write() as conn:
            conn.default_channel.client.flushdb()

    def enqueue(self, n: int) -> None:
        noop.delay(n)

    def work(self, workers: int) -> None:
        app.worker_main(["worker", f"--concurrency={workers}", "--loglevel=WARNING"])


if __name__ == "__main__":
    main(Celery_)
