"""Old logs stay readable: a log written by evq 0.1.0 (schema version 1) is decoded and replayed.

``fixtures/log-v1.jsonl`` holds one stored event a line (``seq``, ``queue`` and the ``event`` as
its stored JSON), every event type at least once, with fixed times; ``log-v1.expected.json`` the
projections that version derived from it. Both were written once by evq 0.1.0 and must never be
regenerated: a later version that cannot decode or replay them to the same projections has broken
the promise that stored events stay readable forever. New fields need defaults.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec

from evq.eventlog.codec import decode
from evq.eventlog.events import EVENT_TYPES
from evq.projections.store import Store, open_store

FIXTURES = Path(__file__).parent / "fixtures"
# Event types that evq 0.1.0 did not have, so its log cannot hold them.
NEW_SINCE_V1 = {"JobReleased", "BatchCreated", "WorkflowCreated", "JobHeld", "ScheduleTicked",
                "JobCancelRequested", "JobProgress"}
LINES = [json.loads(line) for line in (FIXTURES / "log-v1.jsonl").read_text().splitlines()]
EXPECTED = json.loads((FIXTURES / "log-v1.expected.json").read_text())


def load(store: Store) -> None:
    """The fixture's events as stored rows of ``store``'s log."""
    with store.log.transaction() as conn:
        conn.executemany(
            "INSERT INTO events(seq, ts, type, job_id, queue, body) VALUES (?, ?, ?, ?, ?, ?)",
            [(x["seq"], x["event"]["ts"], x["event"]["type"], x["event"]["job_id"], x["queue"],
              json.dumps(x["event"])) for x in LINES])


def projections(store: Store) -> dict[str, Any]:
    """The projections in the shape of ``log-v1.expected.json``: the columns that version had
    (the columns added since must hold their defaults: no event of that log sets them)."""
    tables = store.tables
    jobs, queues, types = tables.dump()[0], tables.queue_counts(), tables.type_stats()
    got = {"jobs": msgspec.to_builtins(jobs),
           "queue_stats": [q for q in msgspec.to_builtins(queues)
                           if any(v for k, v in q.items() if k != "queue")],
           "job_type_stats": msgspec.to_builtins(types)}
    for table, rows in got.items():
        known = EXPECTED[table][0].keys()
        for row in rows:
            for column in row.keys() - known:
                assert row.pop(column) in (None, 0), f"{table}.{column} is set"
    return got


def test_every_event_of_the_v1_log_decodes() -> None:
    events = [decode(json.dumps(x["event"])) for x in LINES]
    assert {type(e).__name__ for e in events} == set(EVENT_TYPES) - NEW_SINCE_V1
    assert [x["seq"] for x in LINES] == list(range(1, len(LINES) + 1))


def test_the_v1_log_replays_to_its_projections() -> None:
    store = open_store("memory://")
    try:
        load(store)
        assert store.rebuild() == len(LINES)
        got = projections(store)
        assert got == EXPECTED
        jobs = {j["id"]: j for j in got["jobs"]}
        send, flaky, broken, report, released = (jobs[i] for i in sorted(jobs)[:5])
        assert (send["state"], send["result"], send["priority"]) == ("succeeded", '{"sent":true}',
                                                                     10)
        assert (flaky["state"], flaky["attempt"], flaky["failures"]) == ("succeeded", 3, 2)
        assert flaky["duration"] == 0.5  # the stale success of attempt 1 changed nothing
        assert (broken["state"], broken["error_type"]) == ("failed", "WorkerLost")
        assert (report["state"], report["error"], report["chain_id"]) == (
            "cancelled", "not needed", "c1")
        assert released["state"] == "pending" and released["worker"] is None
        assert [j["replay_of"] for j in got["jobs"]][-1] == str(broken["id"])
        assert len(jobs) == 6  # the purged and the cleared job left the projections
        rows = store.tables.dump()[0]
        assert {(r.limit_key, r.rate_limit, r.rate_per, r.concurrency_limit) for r in rows} == {
            (None, None, None, None)}  # columns of version 5: no limits in a v1 log
        # its unique key, held by no job: the job is cancelled, and unique_for is 0 in v1
        assert [(u.key, u.job_id) for u in store.tables.uniques()] == [("report:2026-11",
                                                                         report["id"])]
        with store.log.transaction():
            assert store.tables.unique_holders(["report:2026-11"], report["dispatched_at"]) == {}
        [w1] = store.workers.all()
        assert (w1.name, w1.pid, w1.queues, w1.last_seen, w1.stopped_at, w1.done) == (
            "w1", 4242, "default,emails", 1764000060.0, 1764000060.0, 9)
    finally:
        store.close()


# A log written by the version that added groups, limits, uniques, schedules, cancel requests and
# progress (schema version 7), with every event type added since 0.1.0, and the projections that
# version derived from it: written once, never to be regenerated (see the module's docstring).
V7_LINES = [json.loads(line)
            for line in (FIXTURES / "log-v7.jsonl").read_text().splitlines()]
V7_EXPECTED = json.loads((FIXTURES / "log-v7.expected.json").read_text())


def test_the_v7_log_holds_every_event_type_added_since_v1() -> None:
    events = [decode(json.dumps(x["event"])) for x in V7_LINES]
    assert {type(e).__name__ for e in events} >= NEW_SINCE_V1
    assert {type(e).__name__ for e in events} | {x["event"]["type"] for x in LINES} == set(
        EVENT_TYPES)


def test_the_v7_log_replays_to_its_projections() -> None:
    store = open_store("memory://")
    try:
        with store.log.transaction() as conn:
            conn.executemany(
                "INSERT INTO events(seq, ts, type, job_id, queue, body) VALUES (?, ?, ?, ?, ?, ?)",
                [(x["seq"], x["event"]["ts"], x["event"]["type"], x["event"]["job_id"],
                  x["queue"], json.dumps(x["event"])) for x in V7_LINES])
        assert store.rebuild() == len(V7_LINES)
        tables = store.tables
        got = {"jobs": msgspec.to_builtins(tables.dump()[0]),
               "queue_stats": [q for q in msgspec.to_builtins(tables.queue_counts())
                               if any(v for k, v in q.items() if k != "queue")],
               "job_type_stats": msgspec.to_builtins(tables.type_stats()),
               "groups": msgspec.to_builtins(store.groups.all()),
               "schedules": msgspec.to_builtins(store.schedules.all()),
               "uniques": msgspec.to_builtins(tables.uniques())}
        for table, rows in got.items():  # columns added after version 7 hold their defaults
            known = V7_EXPECTED[table][0].keys() if V7_EXPECTED[table] else set()
            for row in rows:
                for column in row.keys() - known:
                    assert row.pop(column) in (None, 0, 0.0, ""), f"{table}.{column} is set"
        assert got == V7_EXPECTED
        states = {j["state"] for j in got["jobs"]}
        assert {"succeeded", "failed", "cancelled"} <= states
        assert [g["kind"] for g in got["groups"]] == ["chain", "workflow", "batch"]
    finally:
        store.close()
