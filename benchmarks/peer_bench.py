"""The peers' side of each scenario: each peer's runner (``NAME_runner.py``, built on
``peer_runner.py``) run with the Python of the peer's own virtual environment."""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import peers

log: Callable[[str], None] | None = None  # where to report the venvs' making (set by the CLI)


@dataclass(frozen=True)
class Service:
    name: str
    host: str
    port: int
    durable: bool  # keeps its data on disk here

    def down(self) -> str | None:
        """Why the service cannot be reached, or None if it answers."""
        try:
            with socket.create_connection((self.host, self.port), timeout=2):
                return None
        except OSError as exc:
            why = exc.strerror or exc
            return f"{self.name} at {self.host}:{self.port} is not answering ({why})"


SQLITE = None
REDIS = Service("Redis", "127.0.0.1", 6379, durable=False)
POSTGRES = Service("Postgres", "127.0.0.1", 5432, durable=True)


@dataclass(frozen=True)
class Peer:
    name: str
    requirements: tuple[str, ...]  # pip requirements of its venv
    module: str  # what must import in the venv
    service: Service | None  # None: a SQLite file
    bulk: bool  # has a bulk enqueue API
    detection: str  # how start and completion are detected (for the README and --json)
    minimum_python: tuple[int, int] | None = None  # its venv's Python, if newer than ours

    @property
    def runner(self) -> str:
        return f"{self.name}_runner.py"

    @property
    def store(self) -> str:
        if self.service is None:
            return "SQLite"
        return self.service.name + ("" if self.service.durable else "*")

    def exe(self) -> Path:
        return peers.python(self.name, self.requirements, self.module, log, self.minimum_python)

    def call(self, args: list[object], timeout: float) -> dict[str, Any]:
        return peers.run(self.exe(), self.runner, args, timeout)

    def dispatch_single(self, n: int, tmp: Path) -> dict[str, float]:
        return self.call(["dispatch", n, tmp], timeout=600)

    def dispatch_bulk(self, n: int, tmp: Path) -> dict[str, float]:
        return self.call(["bulk", n, tmp], timeout=600)

    def drain(self, n: int, workers: int, limit: float, tmp: Path) -> dict[str, Any]:
        return self.call(["drain", n, workers, limit, tmp], timeout=limit + 900)

    def latency(self, n: int, gap: float, idle_wait: float, cpu_window: float,
                tmp: Path) -> tuple[dict[str, float], list[float]]:
        got = self.call(["latency", n, gap, idle_wait, cpu_window, tmp], timeout=600)
        samples = got.pop("samples")
        return got, samples

    def versions(self) -> dict[str, Any]:
        """The peer's version and the Python of its venv, or why there are none."""
        try:
            return self.call(["version"], timeout=120)
        except peers.PeerError as exc:
            return {self.name: f"failed: {exc}"}


HOOKS = "a hook of its public API appends the job's argument and time.time() to a file"

PEERS = (
    Peer("huey", ("huey",), "huey", SQLITE, bulk=False,
         detection=f"signals SIGNAL_EXECUTING and SIGNAL_COMPLETE ({HOOKS})"),
    Peer("rq", ("rq",), "rq", REDIS, bulk=True,
         detection="rq's own records: FinishedJobRegistry count, then each job's started_at "
                   "and ended_at"),
    Peer("dramatiq", ("dramatiq[redis]",), "dramatiq", REDIS, bulk=False,
         detection=f"a Middleware's before_process_message and after_process_message ({HOOKS})"),
    Peer("celery", ("celery[redis]",), "celery", REDIS, bulk=False,
         detection=f"signals task_prerun and task_postrun ({HOOKS})"),
    Peer("procrastinate", ("procrastinate", "psycopg[binary]"), "procrastinate", POSTGRES,
         bulk=True,
         detection="procrastinate's own records: the procrastinate_events rows 'started' and "
                   "'succeeded' (their `at`)"),
    Peer("arq", ("arq",), "arq", REDIS, bulk=False,
         detection=f"worker hooks on_job_start and after_job_end ({HOOKS})"),
    Peer("saq", ("saq[redis]", "typing_extensions"), "saq", REDIS, bulk=False,
         detection=f"worker hooks before_process and after_process ({HOOKS})"),
    Peer("taskiq", ("taskiq", "taskiq-redis"), "taskiq_redis", REDIS, bulk=False,
         detection=f"a TaskiqMiddleware's pre_execute and post_execute ({HOOKS})"),
    Peer("pgqueuer", ("pgqueuer[asyncpg]",), "pgqueuer", POSTGRES, bulk=True,
         detection=f"the entrypoint's executor ({HOOKS})"),
    Peer("chancy", ("chancy", "psycopg[binary]"), "chancy", POSTGRES, bulk=True,
         detection=f"a Plugin's on_job_starting and on_job_completed ({HOOKS})"),
    Peer("oban", ("oban",), "oban", POSTGRES, bulk=True, minimum_python=(3, 12),
         detection=f"telemetry events oban.job.start and oban.job.stop ({HOOKS})"),
    Peer("dbos", ("dbos",), "dbos", POSTGRES, bulk=False,
         detection="dbos's own records: the workflow_status rows (started_at_epoch_ms, and "
                   "updated_at once SUCCESS)"),
)
BY_NAME = {p.name: p for p in PEERS}
