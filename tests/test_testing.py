"""evq.testing: the fake queue and its assertions, run(), the sync:// store, the pytest plugin."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from helpers import event_types
from testing_jobs import CALLS, Flaky, Signup, Slow, Welcome, resize

import evq
from evq import testing
from evq.projections.model import FAILED, SUCCEEDED


def test_fake_records_every_kind_of_dispatch_and_stores_none(queue: evq.Queue) -> None:
    with testing.fake() as fake:
        ids = [queue.dispatch(Welcome(to="a"), delay=60, queue="high", priority=5)]
        ids += queue.dispatch_many([Welcome(to="b"), Welcome(to="c")])
        ids.append(Welcome(to="d").dispatch())
        ids.append(resize.dispatch("x.png", width=50))
        chain = queue.chain(Welcome(to="e"), Welcome(to="f")).dispatch()
        batch = evq.batch([Welcome(to="g")]).dispatch()
        wf = queue.workflow()
        wf.add(Welcome(to="h"), after=[wf.add(Welcome(to="i"))])
        wf.dispatch()
    assert all(i < 0 for i in ids + chain.job_ids + batch.job_ids + wf.job_ids)
    assert queue.count_jobs() == 0 and queue.store.log.last_seq() == 0
    # in dispatch order: i before h, which waits for it
    assert [d.job.to for d in fake.dispatched(Welcome)] == list("abcdefgih")
    first = fake.dispatched(Welcome, to="a")[0]
    assert (first.id, first.queue, first.priority, first.delay) == (ids[0], "high", 5, 60)
    assert first.at == pytest.approx(first.event.ts + 60) and first.group is None
    assert fake.dispatched(Welcome, to="b")[0].queue == "emails"
    groups = [d.group for d in fake.dispatched(Welcome)][4:]
    assert groups == [chain.id] * 2 + [batch.id] + [wf.id] * 2
    assert fake.dispatched(resize)[0].job == resize.make("x.png", 50)


def test_assertions_pass_on_what_was_dispatched(evq_fake: testing.Fake) -> None:
    Welcome(to="a").dispatch()
    Welcome(to="a", subject="again").dispatch(delay=5)
    found = evq_fake.assert_dispatched(Welcome, to="a")
    assert [d.job.subject for d in found] == ["hello", "again"]
    evq_fake.assert_dispatched(Welcome, to="a", subject="again")
    evq_fake.assert_dispatched_times(Welcome, 2)
    evq_fake.assert_dispatched_times(Welcome, 1, subject="again")
    evq_fake.assert_not_dispatched(Welcome, to="b")
    evq_fake.assert_not_dispatched(Signup)


def test_assertion_failures_say_what_was_dispatched_instead(evq_fake: testing.Fake) -> None:
    with pytest.raises(AssertionError, match=r"testing\.welcome was not dispatched; nothing"):
        evq_fake.assert_dispatched(Welcome)
    evq_fake.assert_nothing_dispatched()
    Welcome(to="b").dispatch(delay=5)
    with pytest.raises(AssertionError, match=r"testing.welcome\(to='a'\) was not dispatched; "
                       r"dispatched instead:\n  Welcome\(to='b', subject='hello'\) "
                       r"\(queue='emails', priority=0, delay=5\)"):
        evq_fake.assert_dispatched(Welcome, to="a")
    with pytest.raises(AssertionError, match=r"dispatched 1 times, not 2; dispatched instead"):
        evq_fake.assert_dispatched_times(Welcome, 2)
    with pytest.raises(AssertionError, match=r"testing.welcome was dispatched 1 times:\n  Wel"):
        evq_fake.assert_not_dispatched(Welcome)
    with pytest.raises(AssertionError, match=r"1 jobs were dispatched:\n  Welcome\(to='b'"):
        evq_fake.assert_nothing_dispatched()


def test_assertions_refuse_what_is_not_a_job_type(evq_fake: testing.Fake) -> None:
    with pytest.raises(evq.InvalidArguments, match="'Welcome' is not a job type: give an"):
        evq_fake.assert_dispatched("Welcome")
    with pytest.raises(evq.InvalidArguments, match="is not a job type"):
        evq_fake.assert_not_dispatched(Welcome(to="a"))
    with pytest.raises(evq.InvalidArguments,
                       match=r"testing.welcome has no field too \(its fields: to, subject\)"):
        evq_fake.assert_dispatched(Welcome, too="a")


def test_the_fake_ends_with_its_block_and_opens_no_database(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, queue: evq.Queue) -> None:
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    monkeypatch.delenv("EVQ_URL", raising=False)
    with testing.fake() as outer:
        with testing.fake() as inner:
            Welcome(to="a").dispatch()
        Welcome(to="b").dispatch()
    assert os.listdir(tmp_path / "cwd") == []  # Job.dispatch() used the fake's memory store
    assert [d.job.to for d in inner.jobs] == ["a"] and [d.job.to for d in outer.jobs] == ["b"]
    job_id = queue.dispatch(Welcome(to="c"))
    assert job_id > 0 and queue.job(job_id).state == "pending"


def test_dispatch_sync_and_run_still_run_under_the_fake(
        evq_fake: testing.Fake, queue: evq.Queue, key: str) -> None:
    ran = testing.run(Signup(email=key))
    assert ran.succeeded and CALLS[key] == ["signup", "signup done"]
    evq_fake.assert_dispatched(Welcome, to=key)  # what the job dispatched
    assert queue.dispatch_sync(Welcome(to=key)) == f"sent to {key}"
    evq_fake.assert_dispatched_times(Welcome, 1)
    evq_fake.assert_not_dispatched(Signup)


def test_run_returns_the_outcome_and_history(key: str) -> None:
    ran = testing.run(Welcome(to=key))
    assert (ran.succeeded, ran.result, ran.error, ran.attempts) == (True, f"sent to {key}",
                                                                     None, 1)
    assert [r.event.__struct_config__.tag for r in ran.events] == [
        "JobDispatched", "JobLeased", "JobStarted", "JobSucceeded"]


def test_run_retries_at_once_and_calls_failed(key: str) -> None:
    ran = testing.run(Flaky(key=key, fails=2))
    assert (ran.state, ran.attempts, ran.result) == (SUCCEEDED, 3, 3)
    CALLS[key].clear()
    ran = testing.run(Flaky(key=key, fails=5))
    assert (ran.succeeded, ran.state, ran.attempts, ran.result) == (False, FAILED, 3, None)
    assert isinstance(ran.error, ValueError) and str(ran.error) == "attempt 3 failed"
    assert CALLS[key] == ["try"] * 3 + ["failed: attempt 3 failed"]


def test_run_times_out_a_job_past_its_timeout(key: str) -> None:
    ran = testing.run(Slow(key=key))
    assert not ran.succeeded and isinstance(ran.error, TimeoutError)
    assert "JobTimedOut" in [r.event.__struct_config__.tag for r in ran.events]
    assert CALLS[key] == ["timed out"]


def test_run_on_a_given_queue_keeps_the_job_there(queue: evq.Queue, key: str) -> None:
    ran = testing.run(Welcome(to=key), queue=queue)
    assert queue.job(ran.job_id).state == SUCCEEDED
    with pytest.raises(evq.InvalidArguments, match=r"is not an evq\.Job"):
        testing.run("Welcome")  # type: ignore[arg-type]


def test_a_sync_store_runs_each_dispatch_at_once(key: str) -> None:
    q = evq.connect("sync://")
    try:
        job_id = q.dispatch(Welcome(to=key), delay=3600)  # delays are not waited out
        assert CALLS[key] == ["welcome"] and q.url == "sync://"
        assert q.result(job_id, timeout=0) == f"sent to {key}"
        assert event_types(q, job_id) == ["JobDispatched", "JobLeased", "JobStarted",
                                          "JobSucceeded"]
        failing = q.dispatch(Flaky(key=key + "f", fails=9))  # no error at the dispatch...
        with pytest.raises(evq.JobFailed, match="attempt 3 failed"):
            q.result(failing, timeout=0)  # ...it is the job's result
        assert CALLS[key + "f"][-1] == "failed: attempt 3 failed"
    finally:
        q.close()


def test_on_a_sync_store_what_a_job_dispatches_runs_after_it(
        monkeypatch: pytest.MonkeyPatch, key: str) -> None:
    monkeypatch.setenv("EVQ_URL", "sync://")
    q = evq.connect()
    previous = evq.use(q)
    try:
        Signup(email=key).dispatch()
        assert CALLS[key] == ["signup", "signup done", "welcome"]
        chain = q.chain(Welcome(to=key + "1"), Welcome(to=key + "2")).dispatch()
        assert [q.job(i).state for i in chain.job_ids] == [SUCCEEDED] * 2
        assert q.dispatch_sync(Signup(email=key)) is None  # its job's dispatches run at once
        assert CALLS[key][3:] == ["signup", "welcome", "signup done"]
    finally:
        evq.use(previous)
        q.close()


def test_a_sync_url_takes_no_options() -> None:
    with pytest.raises(evq.ConfigError, match="unknown option x"):
        evq.connect("sync://?x=1")


def test_the_plugin_is_loaded_and_its_queue_is_the_default(
        pytestconfig: pytest.Config, evq_queue: evq.Queue) -> None:
    assert pytestconfig.pluginmanager.has_plugin("evq")
    job_id = Welcome(to="a").dispatch()
    assert evq_queue.url == "memory://" and evq_queue.job(job_id).name == "testing.welcome"
