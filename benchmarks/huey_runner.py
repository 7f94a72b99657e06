"""huey's runner (see peer_runner.py for the commands), run with the Python of huey's venv.

huey with its defaults: ``SqliteHuey(filename=...)`` on a file in the run's folder and
``huey.consumer.Consumer(huey)`` (one worker thread, polling from 0.1 s backing off to 10 s);
N workers are ``Consumer(huey, workers=N, worker_type="process")``. Start and completion:
handlers on huey's ``SIGNAL_EXECUTING`` (sent just before a task runs) and ``SIGNAL_COMPLETE``
(sent after it ran).
"""

from __future__ import annotations

import os
from typing import Any

from huey import SqliteHuey
from huey.consumer import Consumer
from huey.signals import SIGNAL_COMPLETE, SIGNAL_EXECUTING
from peer_runner import Peer, main, stamp


def noop(n: int) -> None:
    pass


class Huey(Peer):
    name = "huey"
    own_processes = True

    def __init__(self, folder: str) -> None:
        super().__init__(folder)
        self.huey = SqliteHuey(filename=os.path.join(folder, "huey.db"))
        self.task = self.huey.task(name="noop")(noop)

    def enqueue(self, n: int) -> None:
        self.task(n)

    def work(self, workers: int) -> None:
        @self.huey.signal(SIGNAL_EXECUTING, SIGNAL_COMPLETE)
        def stamped(signal: str, task: Any, *args: Any) -> None:
            stamp("start" if signal == SIGNAL_EXECUTING else "end", task.args[0])

        consumer = (Consumer(self.huey, workers=workers, worker_type="process") if workers > 1
                    else Consumer(self.huey))
        consumer.run()


if __name__ == "__main__":
    main(Huey)
