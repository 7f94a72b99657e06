"""Queue events in-process (``evq.on``) and durable subscribers (``evq.subscribe``, ``evq events
--consumer``), on every store; a subscriber killed with SIGKILL resumes without gaps."""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import wait_until
from jobs import Add, Flaky, Step

import evq
from evq.eventlog.codec import Record


@pytest.fixture
def seen() -> Iterator[list[evq.QueueEvent]]:
    """Every queue event of this process while the test runs."""
    got: list[evq.QueueEvent] = []
    removers = [evq.on(kind, got.append) for kind in
                ("dispatched", "started", "completed", "failed", "retrying", "dead", "cancelled")]
    yield got
    for remove in removers:
        remove()


def kinds(events: list[evq.QueueEvent], job_id: int) -> list[str]:
    return [e.kind for e in events if e.job_id == job_id]


def test_hooks_see_every_step_of_a_job(queue: evq.Queue, key: str,
                                       seen: list[evq.QueueEvent]) -> None:
    ok = queue.dispatch(Add(a=1, b=2))
    flaky = queue.dispatch(Flaky(key=key))
    dropped = queue.dispatch(Add(a=0, b=0), delay=3600)
    queue.cancel(dropped, reason="no")
    queue.worker(stop_when_empty=True, sleep=0.05).run()
    assert kinds(seen, ok) == ["dispatched", "started", "completed"]
    assert kinds(seen, flaky) == ["dispatched", *["started", "failed", "retrying"] * 2,
                                  "started", "failed", "dead"]
    assert kinds(seen, dropped) == ["dispatched", "cancelled"]
    completed = next(e for e in seen if e.job_id == ok and e.kind == "completed")
    assert (completed.name, completed.queue, completed.attempt) == ("core.add", "default", 1)
    assert completed.duration is not None and completed.duration >= 0
    dead = next(e for e in seen if e.job_id == flaky and e.kind == "dead")
    assert (dead.attempt, dead.error_type, dead.error) == (3, "ValueError", "boom 3")
    assert next(e for e in seen if e.kind == "cancelled").error == "no"
    assert [e.seq for e in seen] == sorted(e.seq for e in seen)


def test_hooks_see_what_an_outcome_caused_after_the_outcome(queue: evq.Queue, key: str,
                                                            seen: list[evq.QueueEvent]) -> None:
    """A batch member's completion dispatches the batch's callback in the same transaction:
    the hooks see the completion first, and every event once, in log order, on every store
    (on PostgreSQL the outcome's positions are known only as it commits)."""
    batch = queue.batch([Step(key=key, label="a")]).on_success(Step(key=key, label="done"))
    batch.dispatch()
    queue.worker(stop_when_empty=True, sleep=0.05).run()
    member = batch.job_ids[0]
    steps = [(e.kind, e.job_id) for e in seen if e.kind in ("completed", "dispatched")]
    callback = next(j for kind, j in steps if kind == "dispatched" and j != member)
    assert steps.index(("completed", member)) < steps.index(("dispatched", callback))
    assert [e.seq for e in seen] == sorted({e.seq for e in seen})
    stored = {r.seq: r.event.job_id for r in queue.store.log.read()}
    assert all(stored[e.seq] == e.job_id for e in seen)


def test_a_hook_that_raises_is_logged_and_changes_nothing(
        queue: evq.Queue, caplog: pytest.LogCaptureFixture) -> None:
    def broken(event: evq.QueueEvent) -> None:
        raise RuntimeError("hook bug")

    remove = evq.on("dispatched", broken)
    try:
        with caplog.at_level(logging.ERROR, logger="evq.hooks"):
            job_id = queue.dispatch(Add(a=1, b=1))
        assert queue.job(job_id).state == "pending"
        assert "'dispatched' hook raised" in caplog.text
    finally:
        remove()
    with pytest.raises(evq.InvalidArguments, match="unknown queue event 'finished'"):
        evq.on("finished", print)

    got: list[int] = []

    @evq.on("dispatched")
    def record(event: evq.QueueEvent) -> None:
        got.append(event.job_id)

    try:
        assert got == [] and queue.dispatch(Add(a=2, b=2)) in got
    finally:
        evq.hooks._hooks["dispatched"].remove(record)


def test_a_subscriber_resumes_after_its_saved_position(queue: evq.Queue, key: str) -> None:
    ids = queue.dispatch_many([Step(key=key, label=str(i)) for i in range(5)])
    first: list[Record] = []
    sub = queue.subscribe("audit", first.append, types=["JobDispatched"], batch=2)
    wait_until(lambda: len(first) == 5, what="the first five dispatches")
    with pytest.raises(evq.InvalidState, match="'audit' is taken by"):
        queue.subscribe("audit", print)
    sub.stop()
    later = queue.dispatch_many([Step(key=key, label=str(i)) for i in range(3)])
    second: list[Record] = []
    with queue.subscribe("audit", second.append, types=["JobDispatched"]):
        wait_until(lambda: len(second) == 3, what="the next three")
    assert [r.seq for r in first] == ids and [r.seq for r in second] == later
    other: list[Record] = []
    with queue.subscribe("everything", other.append, since=ids[-1]):
        wait_until(lambda: [r.seq for r in other][-1:] == [queue.store.log.last_seq()])
    assert other[0].seq == ids[-1] + 1


def test_a_subscriber_whose_handler_fails_retries_the_same_event(queue: evq.Queue) -> None:
    first = queue.dispatch(Add(a=1, b=1))
    calls: list[int] = []

    def flaky(record: Record) -> None:
        calls.append(record.seq)
        if len(calls) == 1:
            raise RuntimeError("downstream is down")

    with queue.subscribe("sync", flaky, types=["JobDispatched"]):
        wait_until(lambda: len(calls) == 2, timeout=10, what="the retry")
    assert calls == [first, first]


def test_events_consumer_prints_only_what_is_new(queue: evq.Queue) -> None:
    from test_cli import invoke

    if queue.url == "memory://":
        pytest.skip("the CLI opens the store again: a memory store is another one")
    a = queue.dispatch(Add(a=1, b=1))
    args = ["--url", queue.url, "events", "--consumer", "cli", "--type", "JobDispatched",
            "--json"]
    once = invoke(args)
    assert once.exit_code == 0, once.output
    assert [json.loads(line)["seq"] for line in once.stdout.splitlines()] == [a]
    b = queue.dispatch(Add(a=2, b=2))
    again = invoke(args)
    assert [json.loads(line)["seq"] for line in again.stdout.splitlines()] == [b]
    assert invoke(args).stdout == ""
    with queue.subscribe("held", print):
        taken = invoke(["--url", queue.url, "events", "--consumer", "held"])
    assert taken.exit_code == 1 and "'held' is taken by" in taken.output
    assert "Traceback" not in taken.output


SUBSCRIBER = textwrap.dedent("""
    import sys, time, evq
    q = evq.connect(sys.argv[1])
    out = open(sys.argv[2], "a")

    def handle(record):
        out.write(f"{record.seq}\\n"); out.flush()
        time.sleep(0.001)

    sub = q.subscribe("killed", handle, types=["JobDispatched"], batch=50, lease=1.0)
    while True:
        time.sleep(1)
""")


@pytest.mark.slow
def test_a_subscriber_killed_mid_stream_resumes_without_gaps(queue: evq.Queue,
                                                            tmp_path: Path) -> None:
    if not queue.store.shared:
        pytest.skip("needs a store other processes can open")
    ids = queue.dispatch_many([Add(a=i, b=i) for i in range(2000)])
    out = tmp_path / "seen.txt"
    script = tmp_path / "subscriber.py"
    script.write_text(SUBSCRIBER)

    def start() -> subprocess.Popen[Any]:
        return subprocess.Popen([sys.executable, str(script), queue.url, str(out)])

    def handled() -> list[int]:
        return [int(x) for x in out.read_text().split()] if out.exists() else []

    proc = start()
    try:
        wait_until(lambda: len(handled()) >= 500, timeout=60, what="a quarter handled")
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        cut = len(handled())
        assert cut < 2000
        [(seen_at, lease)] = queue.store.log.read_rows(
            "SELECT seen, lease FROM consumers WHERE name = 'killed'")
        wait_until(lambda: time.time() > seen_at + lease, what="the killed holder's lease")
        proc = start()
        wait_until(lambda: set(handled()) >= set(ids), timeout=60, what="all handled")
    finally:
        proc.kill()
        proc.wait(10)
    got = handled()
    resumed_at = got[cut]
    assert got[:cut] == ids[:cut] and sorted(set(got)) == ids
    assert resumed_at <= got[cut - 1] + 1  # no gap: it resumed at or before the next one
    assert cut - ids.index(resumed_at) <= 50  # at most the batch in hand is seen again
    assert got[cut:] == ids[ids.index(resumed_at):]
