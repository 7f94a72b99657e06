# ruff: noqa: F811  (the fixtures of test_cli, imported by name, are parameters here)
"""Analytics per queue and per job type over the latest jobs (``evq stats``, ``recent``)."""

from __future__ import annotations

import time

import evq
from evq.projections.analytics import percentile, recent
from tests.cli_jobs import CliAdd, CliFail, CliUrgent
from tests.test_cli import Cli, _cli_environment, as_json, cli, ok, work  # noqa: F401


def test_stats_shows_outcomes_retries_times_and_throughput(cli: Cli, q: evq.Queue) -> None:
    for i in range(4):
        q.dispatch(CliAdd(a=i, b=i))
    q.dispatch(CliFail())
    q.dispatch(CliUrgent())
    q.cancel(q.dispatch(CliAdd(a=0, b=0)))
    work(cli, "--queues", "cli-high,default")
    q.dispatch(CliAdd(a=9, b=9))
    data = as_json(cli("stats", "--json"))["recent"]
    assert data["window"] == 8
    default = data["queues"]["default"]
    assert (default["jobs"], default["succeeded"], default["failed"], default["cancelled"],
            default["unfinished"]) == (7, 4, 1, 1, 1)
    assert default["retried_jobs"] == 1 and default["failed_attempts"] == 2
    assert default["failure_rate"] == 2 / (4 + 2)
    assert 0 <= default["wait_p50"] <= default["wait_p95"] <= default["wait_p99"]
    assert 0 <= default["run_p50"] <= default["run_p95"] <= default["run_p99"]
    assert default["per_minute"] == 5 / 5  # 5 finished over the last five minutes
    fail = data["job_types"]["CliFail"]
    assert (fail["failed"], fail["failure_rate"], fail["run_p50"]) == (1, 1.0, None)
    assert data["queues"]["cli-high"]["succeeded"] == 1
    types = as_json(cli("stats", "--json"))["job_types"]
    assert types["CliAdd"]["duration_p99"] == data["job_types"]["CliAdd"]["run_p99"]

    table = ok(cli("stats")).stdout
    for text in ("per queue", "per job type", "wait p95", "run p99", "per min"):
        assert text in table


def test_the_window_is_the_latest_jobs(q: evq.Queue) -> None:
    for i in range(5):
        q.dispatch(CliAdd(a=i, b=i))
    q.dispatch(CliUrgent())
    got = recent(q.store.log, time.time(), window=2)
    assert got["window"] == 2
    assert got["queues"]["default"]["jobs"] == 1 and got["queues"]["cli-high"]["jobs"] == 1


def test_percentile_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert (percentile(values, 50), percentile(values, 95), percentile(values, 99)) == (
        50.0, 95.0, 99.0)
    assert percentile([], 50) is None and percentile([3.0], 99) == 3.0
