"""Chains, workflows, batches and results, on every store: what runs when, what is cancelled,
which callbacks run (once), and that the groups replay to the same projections."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from helpers import event_types
from jobs import CALLS, Add, Step
from test_liveness import reopened_as_of

import evq
from evq.projections.model import CANCELLED, FAILED, PENDING, SUCCEEDED, WAITING


def drain(q: evq.Queue) -> None:
    q.worker(stop_when_empty=True, sleep=0.05).run()


def states(q: evq.Queue, ids: list[int]) -> list[str]:
    return [q.job(i).state for i in ids]


def started_at(q: evq.Queue, job_id: int) -> int:
    return next(r.seq for r in q.history(job_id) if type(r.event).__name__ == "JobStarted")


def ended_at(q: evq.Queue, job_id: int) -> int:
    return q.history(job_id)[-1].seq


def test_a_chain_runs_its_jobs_one_after_another(queue: evq.Queue, key: str) -> None:
    chain = queue.chain(*(Step(key=key, label=x) for x in "abc")).dispatch()
    assert len(chain.job_ids) == 3 and chain.id is not None
    assert states(queue, chain.job_ids) == [PENDING, WAITING, WAITING]
    assert queue.count_jobs("waiting") == 2
    assert queue.stats()["queues"]["default"]["waiting"] == 2
    drain(queue)
    assert CALLS[key] == ["a", "b", "c"]
    assert states(queue, chain.job_ids) == [SUCCEEDED] * 3
    a, b, c = chain.job_ids
    assert ended_at(queue, a) < started_at(queue, b) and ended_at(queue, b) < started_at(queue, c)
    assert event_types(queue, b)[:2] == ["JobDispatched", "JobReleased"]
    status = queue.group(chain.id)
    assert (status["kind"], status["state"], status["succeeded"], status["pending"]) == (
        "chain", "succeeded", 3, 0)
    assert status["finished_at"] is not None
    assert [j["after"] for j in status["jobs"]] == [[], [a], [b]]
    assert queue.store.verify() == []


def test_a_failed_step_cancels_the_rest_and_runs_catch_once(queue: evq.Queue, key: str) -> None:
    chain = queue.chain(Step(key=key, label="a"), Step(key=key, label="b", fail=True),
                        Step(key=key, label="c"), Step(key=key, label="d")
                        ).catch(Step(key=key, label="caught")).dispatch()
    drain(queue)
    assert CALLS[key] == ["a", "b", "caught"]
    _, b, c, d = chain.job_ids
    assert states(queue, chain.job_ids) == [SUCCEEDED, FAILED, CANCELLED, CANCELLED]
    assert queue.job(c).error == f"job {b} it waited for failed"
    assert queue.job(d).error == f"job {c} it waited for cancelled"
    assert [r.id for r in queue.jobs("cancelled")] == [c, d]
    assert event_types(queue, d) == ["JobDispatched", "JobCancelled"]
    status = queue.group(chain.id)
    assert (status["state"], status["failed"], status["cancelled"], status["pending"]) == (
        "failed", 1, 2, 0)
    [caught] = [r for r in queue.jobs() if r.callback_of == f"{chain.id}:failure"]
    assert caught.state == SUCCEEDED
    assert queue.store.verify() == []


def test_cancelling_a_waiting_step_cancels_what_waits_for_it(queue: evq.Queue,
                                                            key: str) -> None:
    chain = queue.chain(*(Step(key=key, label=x) for x in "abc")).dispatch()
    _, b, c = chain.job_ids
    assert queue.cancel(b, reason="not today").state == CANCELLED
    assert (queue.job(c).state, queue.job(c).error) == (CANCELLED,
                                                        f"job {b} it waited for cancelled")
    drain(queue)
    assert CALLS[key] == ["a"] and queue.group(chain.id)["state"] == "failed"  # type: ignore[arg-type]


def test_a_workflow_job_waits_for_all_it_depends_on(queue: evq.Queue, key: str) -> None:
    wf = queue.workflow(name="report")
    a = wf.add(Step(key=key, label="a"))
    b = wf.add(Step(key=key, label="b"))
    c = wf.add(Step(key=key, label="c"), after=[a, b])
    d = wf.add(Step(key=key, label="d"), after=[c])
    wf.dispatch()
    assert wf.job_ids == [a.id, b.id, c.id, d.id]
    drain(queue)
    assert sorted(CALLS[key][:2]) == ["a", "b"] and CALLS[key][2:] == ["c", "d"]
    assert started_at(queue, c.id) > max(ended_at(queue, a.id), ended_at(queue, b.id))  # type: ignore[arg-type]
    status = queue.group(wf.id)  # type: ignore[arg-type]
    assert (status["name"], status["kind"], status["state"]) == ("report", "workflow",
                                                                 "succeeded")
    assert {j["id"]: j["after"] for j in status["jobs"]}[c.id] == [a.id, b.id]


def test_an_edge_that_ignores_failure_runs_after_a_failed_job(queue: evq.Queue,
                                                               key: str) -> None:
    wf = queue.workflow()
    a = wf.add(Step(key=key, label="a", fail=True))
    b = wf.add(Step(key=key, label="b"))
    cleanup = wf.add(Step(key=key, label="cleanup"), after=[a, b], ignore_failure=True)
    strict = wf.add(Step(key=key, label="strict"), after=[a])
    wf.dispatch()
    drain(queue)
    assert "cleanup" in CALLS[key] and "strict" not in CALLS[key]
    assert queue.job(cleanup.id).state == SUCCEEDED  # type: ignore[arg-type]
    assert queue.job(strict.id).state == CANCELLED  # type: ignore[arg-type]
    assert queue.group(wf.id)["jobs"][2]["ignore_failure"] == [a.id, b.id]  # type: ignore[arg-type]


def test_compositions_that_cannot_run_are_refused_and_write_nothing(queue: evq.Queue,
                                                                     key: str) -> None:
    last = queue.store.log.last_seq()
    with pytest.raises(evq.InvalidArguments, match="at least one job"):
        queue.chain().dispatch()
    with pytest.raises(evq.InvalidArguments, match="at least one job"):
        queue.workflow().dispatch()
    with pytest.raises(evq.InvalidArguments, match="at least one job"):
        queue.batch([]).dispatch()
    with pytest.raises(evq.InvalidArguments, match="must be a job"):
        queue.batch([Step(key=key, label="a")]).on_success(print)  # type: ignore[arg-type]
    with pytest.raises(evq.InvalidArguments, match="not a job"):
        queue.batch([Step(key=key, label="a"), "b"])  # type: ignore[list-item]
    wf, other = queue.workflow(), queue.workflow()
    x = other.add(Step(key=key, label="x"))
    with pytest.raises(evq.InvalidArguments, match="its own workflow"):
        wf.add(Step(key=key, label="a"), after=[x])
    a = wf.add(Step(key=key, label="a"))
    b = wf.add(Step(key=key, label="b"), after=[a])
    a.after(b)
    with pytest.raises(evq.InvalidArguments, match="cycle"):
        wf.dispatch()
    assert queue.store.log.last_seq() == last
    with pytest.raises(evq.NotFound):
        queue.group(12345)


def test_a_batch_runs_its_callbacks_once(queue: evq.Queue, key: str) -> None:
    batch = queue.batch([Step(key=key, label=str(i)) for i in range(5)], name="import"
                        ).on_success(Step(key=key, label="success")
                        ).on_failure(Step(key=key, label="failure")
                        ).on_finally(Step(key=key, label="finally")).dispatch()
    status = batch.status()
    assert (status["total"], status["pending"], status["state"], status["name"]) == (
        5, 5, "running", "import")
    drain(queue)
    assert sorted(CALLS[key][:5]) == list("01234")
    assert sorted(CALLS[key][5:]) == ["finally", "success"]
    status = batch.wait(timeout=5)
    assert (status["succeeded"], status["failed"], status["pending"], status["state"]) == (
        5, 0, 0, "succeeded")
    assert [b["id"] for b in queue.groups("batch")] == [batch.id]
    assert queue.store.verify() == []


def test_without_allow_failures_the_first_failure_fails_the_batch(queue: evq.Queue,
                                                                    key: str) -> None:
    jobs = [Step(key=key, label="ok"), Step(key=key, label="bad1", fail=True),
            Step(key=key, label="bad2", fail=True)]
    batch = queue.batch(jobs).on_success(Step(key=key, label="success")).on_failure(
        Step(key=key, label="failure")).on_finally(Step(key=key, label="finally")).dispatch()
    drain(queue)
    assert CALLS[key].count("failure") == 1 and CALLS[key].count("finally") == 1
    assert "success" not in CALLS[key]
    assert {"ok", "bad1", "bad2"} <= set(CALLS[key])  # the rest still ran
    assert batch.status()["state"] == "failed"
    assert queue.store.verify() == []


def test_allow_failures_lets_the_batch_succeed(queue: evq.Queue, key: str) -> None:
    batch = queue.batch([Step(key=key, label="ok"), Step(key=key, label="bad", fail=True)]
                        ).allow_failures().on_success(Step(key=key, label="success")
                        ).on_failure(Step(key=key, label="failure")).dispatch()
    drain(queue)
    assert "success" in CALLS[key] and "failure" not in CALLS[key]
    status = batch.status()
    assert (status["state"], status["failed"], status["allow_failures"]) == (
        "finished", 1, True)


def test_a_batch_can_be_awaited(queue: evq.Queue, key: str, worker_thread) -> None:  # type: ignore[no-untyped-def]
    batch = queue.batch([Step(key=key, label=str(i)) for i in range(3)]).dispatch()
    with pytest.raises(TimeoutError):
        batch.wait(timeout=0.05)
    worker_thread(queue.worker(sleep=0.05))
    status = asyncio.run(batch.await_done(timeout=20))
    assert status["succeeded"] == 3 and status["finished_at"] is not None


def test_result_returns_the_value_or_raises_the_failure(queue: evq.Queue, key: str,
                                                         worker_thread) -> None:  # type: ignore[no-untyped-def]
    ok = queue.dispatch(Add(a=2, b=3))
    bad = queue.dispatch(Step(key=key, label="x", fail=True))
    with pytest.raises(TimeoutError, match=f"job {ok} has not finished"):
        queue.result(ok, timeout=0.05)
    with pytest.raises(evq.NotFound):
        queue.result(10**9)
    worker_thread(queue.worker(sleep=0.05))
    assert queue.result(ok, timeout=20) == 5
    with pytest.raises(evq.JobFailed) as failed:
        queue.result(bad, timeout=20)
    assert (failed.value.error_type, failed.value.message) == ("ValueError", "step x failed")
    assert asyncio.run(queue.aresult(ok, timeout=5)) == 5
    cancelled = queue.dispatch(Add(a=1, b=1), delay=3600)
    queue.cancel(cancelled, reason="not needed")
    with pytest.raises(evq.JobFailed, match="cancelled: not needed"):
        queue.result(cancelled, timeout=1)


def test_module_level_builders_use_the_default_connection(default_connection: evq.Queue,
                                                          key: str) -> None:
    chain = evq.chain(Step(key=key, label="a"), Step(key=key, label="b")).dispatch()
    batch = evq.batch([Step(key=key, label="c")]).dispatch()
    wf = evq.workflow()
    wf.add(Step(key=key, label="d"))
    wf.dispatch()
    drain(default_connection)
    assert sorted(CALLS[key]) == ["a", "b", "c", "d"]
    assert {default_connection.group(g.id)["kind"] for g in (chain, batch, wf)} == {  # type: ignore[arg-type]
        "chain", "batch", "workflow"}


def test_groups_replay_to_the_live_projections(queue: evq.Queue, key: str) -> None:
    queue.chain(Step(key=key, label="a"), Step(key=key, label="b", fail=True),
                Step(key=key, label="c")).catch(Step(key=key, label="catch")).dispatch()
    queue.batch([Step(key=key, label="d"), Step(key=key, label="e", fail=True)]
                ).on_finally(Step(key=key, label="f")).dispatch()
    drain(queue)
    before = queue.store.groups.all()
    aside = evq.connect("memory://")
    try:
        queue.store.rebuild(into=aside.store)
        assert aside.store.groups.all() == before
        assert queue.store.differences(aside.store) == []
    finally:
        aside.close()


def test_a_store_of_schema_version_4_gets_the_tables_of_groups(tmp_path: Any, key: str) -> None:
    q = evq.connect(f"sqlite:///{tmp_path}/old.db")
    done = q.dispatch(Add(a=1, b=2))
    drain(q)
    q = reopened_as_of(q, 4, "DROP TABLE groups", "DROP TABLE deps",
                       "DROP INDEX jobs_workflows", "DROP VIEW queue_stats",
                       "DROP VIEW job_type_stats", "ALTER TABLE jobs DROP COLUMN workflow_id",
                       "ALTER TABLE jobs DROP COLUMN after",
                       "ALTER TABLE jobs DROP COLUMN callback_of",
                       "ALTER TABLE counts DROP COLUMN waiting")
    try:
        assert q.job(done).result == "3" and q.store.verify() == []
        chain = q.chain(Step(key=key, label="a"), Step(key=key, label="b")).dispatch()
        drain(q)
        assert q.group(chain.id)["state"] == "succeeded"  # type: ignore[arg-type]
        assert q.stats()["queues"]["default"]["succeeded"] == 3
    finally:
        q.close()


def test_the_cli_shows_batches_and_workflows(queue: evq.Queue, key: str) -> None:
    from test_cli import invoke

    if queue.url == "memory://":
        pytest.skip("the CLI opens the store again: a memory store is another one")
    batch = queue.batch([Step(key=key, label="x")], name="nightly").dispatch()
    chain = queue.chain(Step(key=key, label="a"), Step(key=key, label="b")).dispatch()
    drain(queue)
    listed = invoke(["--url", queue.url, "batches", "--json"])
    assert listed.exit_code == 0, listed.output
    [shown] = json.loads(listed.stdout)
    assert (shown["id"], shown["name"], shown["total"], shown["succeeded"], shown["failed"],
            shown["pending"]) == (batch.id, "nightly", 1, 1, 0, 0)
    assert shown["finished_at"] is not None
    one = json.loads(invoke(["--url", queue.url, "batch", batch.id, "--json"]).stdout)
    assert one["state"] == "succeeded"
    graph = json.loads(invoke(["--url", queue.url, "workflow", chain.id, "--json"]).stdout)
    assert [(j["id"], j["state"], j["after"]) for j in graph["jobs"]] == [
        (chain.job_ids[0], "succeeded", []), (chain.job_ids[1], "succeeded", [chain.job_ids[0]])]
    table = invoke(["--url", queue.url, "workflow", chain.id])
    assert table.exit_code == 0 and "waits for" in table.stdout
    missing = invoke(["--url", queue.url, "batch", "999999"])
    assert missing.exit_code == 1 and missing.output.strip() == (
        "error: no batch or workflow 999999")
    bad = invoke(["--url", queue.url, "batches", "--kind", "flows"])
    assert bad.exit_code == 2 and "unknown kind 'flows'" in bad.output
    waiting = invoke(["--url", queue.url, "jobs", "--state", "waiting", "--json"])
    assert waiting.exit_code == 0 and json.loads(waiting.stdout) == []
