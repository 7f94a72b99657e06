"""Dashboard server time on a generated log.

    python -m benchmarks.dashboard_bench [--events 1000000] [--store sqlite|postgres]

Builds a store of N events, a SQLite file or a fresh PostgreSQL schema (as
:mod:`benchmarks.replay_bench` does: jobs that are dispatched, leased, started and succeed, one in
ten failing once), then times the overview, a job page, the failed list and a text search through
Starlette's test client in process (the server's work plus the in-process client's small
overhead; median of 20).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from starlette.testclient import TestClient

from evq.dashboard import app

from .evq_bench import postgres_store
from .replay_bench import generate, median_ms


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.dashboard_bench")
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--store", choices=("sqlite", "postgres"), default="sqlite",
                        help="postgres: a fresh schema on EVQ_BENCH_POSTGRES_URL's server")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        where = (Path(tmp) / "evq.db" if args.store == "sqlite"
                 else postgres_store(Path(tmp), "dashboard"))
        q = generate(where, args.events)
        job_id = q.jobs(limit=1)[0].id + 10 * (args.events // 100)  # one from the middle
        with TestClient(app(q)) as client:
            pages = {"overview": "/", "job page": f"/jobs/{job_id}", "jobs list": "/jobs",
                     "text search": "/jobs?text=no-such-text", "metrics": "/metrics"}
            for label, url in pages.items():
                assert client.get(url).status_code == 200, url
                ms = median_ms(lambda url=url: client.get(url), 20)
                print(f"{label:12} {url:28} {ms:8.1f} ms (median of 20)")
        print(f"{args.events} events, {q.count_jobs()} jobs")
        q.close()


if __name__ == "__main__":
    main()
