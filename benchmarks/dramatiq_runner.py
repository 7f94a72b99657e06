"""dramatiq's runner (see peer_runner.py for the commands), run with the Python of its venv.

dramatiq with its defaults on Redis (database 13 of 127.0.0.1:6379, emptied before each run):
``RedisBroker(url=...)`` with its default middleware, the actor ``@dramatiq.actor(actor_name=
"noop")``, ``noop.send(n)``, and per worker process ``dramatiq.Worker(broker)`` (8 threads, as
the ``dramatiq`` command's default; its ``--processes N`` starts N such processes, as here).
dramatiq has no bulk enqueue. Start and completion: a ``Middleware`` of ours whose
``before_process_message`` and ``after_process_message`` stamp the message's argument.
"""

from __future__ import annotations

import threading
from typing import Any

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from peer_runner import REDIS_URL, Peer, main, stamp


class Stamps(dramatiq.Middleware):
    def before_process_message(self, broker: Any, message: Any) -> None:
        stamp("start", message.args[0])

    def after_process_message(self, broker: Any, message: Any, *, result: Any = None,
                              exception: Any = None) -> None:
        stamp("end", message.args[0])


broker = RedisBroker(url=REDIS_URL)
dramatiq.set_broker(broker)


@dramatiq.actor(actor_name="noop")
def noop(n: int) -> None:
    pass


class Dramatiq(Peer):
    name = "dramatiq"

    def reset(self) -> None:
        broker.client.flushdb()

    def enqueue(self, n: int) -> None:
        noop.send(n)

    def work(self, workers: int) -> None:
        broker.add_middleware(Stamps())
        worker = dramatiq.Worker(broker)
        worker.start()
        threading.Event().wait()  # until SIGTERM

    def close(self) -> None:
        broker.close()


if __name__ == "__main__":
    main(Dramatiq)
