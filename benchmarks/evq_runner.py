"""One evq worker process: ``python -m benchmarks.evq_runner URL [--idle]``.

It talks in JSON lines on stdout: ``{"ready": PID}`` once connected, then it waits for a line on
stdin, prints ``{"start": TS}`` (``time.time()`` just before ``Worker.run``), runs the worker and
prints ``{"end": TS, "done": N}``. Without ``--idle`` the worker stops when the queue is empty
(``stop_when_empty=True``); with ``--idle`` it runs until stdin is closed.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time

import evq
from benchmarks import jobs  # registers Noop

assert jobs.Noop


def say(**fields: object) -> None:
    print(json.dumps(fields), flush=True)


def main(argv: list[str]) -> None:
    url, idle = argv[0], "--idle" in argv[1:]
    q = evq.connect(url)
    worker = q.worker(stop_when_empty=not idle)
    say(ready=os.getpid())
    sys.stdin.readline()
    if idle:
        def stop_at_eof() -> None:
            sys.stdin.read()
            worker.stop()

        threading.Thread(target=stop_at_eof, daemon=True).start()
    say(start=time.time())
    done = worker.run()
    say(end=time.time(), done=done)
    q.close()


if __name__ == "__main__":
    main(sys.argv[1:])
