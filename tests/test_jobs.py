"""Job types: class configuration, backoff forms, registration by name, ``@evq.job``, and the
dispatch helpers. The store does not matter here: these tests use the in-memory one."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
import pytest
from helpers import event_types
from jobs import (
    CALLS,
    FAILED_HOOK,
    TIMED_OUT_HOOK,
    Add,
    AsyncAdd,
    Broken,
    Configured,
    Exits,
    ExpBackoff,
    ExpBackoffBase,
    ExpBackoffClassBase,
    Flaky,
    LinearBackoffString,
    Noop,
    SlowAsync,
    SlowSync,
    core_plain,
    greet,
    multiply,
)

import evq
from evq import ConfigError, EvqError, InvalidArguments, UnknownJob
from evq.eventlog.events import JobDispatched
from evq.workers import registry
from evq.workers.retry import backoff_schedule


@pytest.fixture
def store_url() -> str:
    return "memory://"


def dispatched_event(q: evq.Queue, job_id: int) -> JobDispatched:
    event = q.history(job_id)[0].event
    assert isinstance(event, JobDispatched)
    return event


# -- class configuration -------------------------------------------------------------------------


def test_class_attributes_configure_the_job() -> None:
    assert (Configured.job_name, Configured.queue, Configured.tries, Configured.timeout,
            Configured.priority) == ("core.configured", "emails", 3, 30, 10)
    assert Configured.backoff == [60, 300, 900]
    job = Configured(to="a@b.c")
    assert (job.to, job.subject) == ("a@b.c", "hi")  # fields are the typed arguments
    assert [f.name for f in msgspec.structs.fields(Configured)] == ["to", "subject"]


def test_defaults() -> None:
    assert (Noop.queue, Noop.tries, Noop.backoff, Noop.timeout, Noop.priority) == (
        "default", 1, 0, None, 0)


def test_job_name_defaults_to_the_class_name() -> None:
    class CoreDefaultNamed(evq.Job):
        def handle(self) -> None:
            return None

    assert CoreDefaultNamed.job_name == "CoreDefaultNamed"
    assert registry.lookup("CoreDefaultNamed") is CoreDefaultNamed


# -- backoff forms -------------------------------------------------------------------------------


@pytest.mark.parametrize(("spec", "tries", "expected"), [
    (5, 4, [5, 5, 5]),
    (2.5, 2, [2.5]),
    ([1, 5], 4, [1, 5, 5]),
    ([1, 5, 9, 20], 3, [1, 5]),
    ([], 3, [0, 0]),
    ("exponential", 4, [1, 2, 4]),
    ("linear", 4, [1, 2, 3]),
    (("exponential", 60), 4, [60, 120, 240]),
    (("linear", 10), 3, [10, 20]),
    ("exponential:60", 4, [60, 120, 240]),
    ("linear:0.5", 3, [0.5, 1.0]),
    ("exponential", 1, []),
    (7, 0, []),
])
def test_backoff_schedule(spec: Any, tries: int, expected: list[float]) -> None:
    assert backoff_schedule(spec, tries) == expected


def test_backoff_base() -> None:
    assert backoff_schedule("exponential", 4, base=5) == [5, 10, 20]
    assert backoff_schedule(("exponential", 2), 3, base=5) == [2, 4]  # the tuple's base wins


@pytest.mark.parametrize("spec", [
    "quadratic", "exponential:soon", ("linear", "x"), [1, -2], ["x"], ("exponential", -5),
    -1,
])
def test_bad_backoff_is_a_config_error(spec: Any) -> None:
    with pytest.raises(ConfigError, match="backoff"):
        backoff_schedule(spec, 3)


@pytest.mark.parametrize(("cls", "expected"), [
    (ExpBackoff, [1, 2, 4]),
    (ExpBackoffBase, [60, 120, 240]),
    (LinearBackoffString, [10, 20, 30]),
    (ExpBackoffClassBase, [5, 10]),
    (Configured, [60, 300]),
    (Noop, []),
])
def test_dispatch_records_the_backoff_schedule(queue: evq.Queue, cls: type[evq.Job],
                                              expected: list[float]) -> None:
    job = cls(to="x") if cls is Configured else cls()  # type: ignore[call-arg]
    job_id = queue.dispatch(job)
    assert dispatched_event(queue, job_id).backoff == expected
    assert msgspec.json.decode(queue.job(job_id).backoff) == expected


# -- registration by name -----------------------------------------------------------------------


def test_job_types_are_registered_by_name() -> None:
    assert registry.lookup("core.add") is Add
    assert registry.lookup("core.multiply") is multiply.job_type
    assert {"core.add", "core.noop", "core.multiply", "core.greet"} <= set(registry.names())
    registry.register("core.add", Add)  # the same class again (a re-import) is fine


def test_a_taken_name_refuses_another_class() -> None:
    with pytest.raises(EvqError, match=r"core\.add"):
        class Impostor(evq.Job):
            job_name = "core.add"

            def handle(self) -> None:
                return None

    assert registry.lookup("core.add") is Add


def test_a_taken_name_refuses_another_function() -> None:
    with pytest.raises(EvqError, match=r"core\.noop"):
        @evq.job(name="core.noop")
        def noop() -> None:
            return None

    assert registry.lookup("core.noop") is Noop


def test_unknown_name_lookup_explains_the_fix() -> None:
    with pytest.raises(UnknownJob, match="--app"):
        registry.lookup("core.never-registered")


# -- @evq.job --------------------------------------------------------------------------------


def test_decorated_function_still_runs_inline() -> None:
    assert multiply(3, 4) == 12
    assert multiply(3) == 6
    assert multiply.__name__ == "multiply"
    assert core_plain(1) == 2
    assert asyncio.run(greet("ann")) == "hello ann"


def test_decorator_builds_a_job_type() -> None:
    job = multiply.make(3)
    assert isinstance(job, evq.Job)
    cls = type(job)
    assert (cls.job_name, cls.queue, cls.tries) == ("core.multiply", "math", 2)
    assert msgspec.structs.asdict(job) == {"a": 3, "b": 2}
    assert msgspec.structs.asdict(multiply.make(b=5, a=1)) == {"a": 1, "b": 5}
    assert core_plain.job_type.job_name == "core_plain"  # a bare @evq.job: the function's name
    assert job.handle() == 6


def test_decorated_function_dispatch_on_the_default_connection(
        default_connection: evq.Queue) -> None:
    job_id = multiply.dispatch(5, b=3)
    row = default_connection.job(job_id)
    assert (row.name, row.queue, row.tries) == ("core.multiply", "math", 2)
    assert msgspec.json.decode(row.payload) == {"a": 5, "b": 3}
    greet_id = greet.dispatch("bob")
    default_connection.worker(queues=["math", "default"], stop_when_empty=True).run()
    assert msgspec.json.decode(default_connection.job(job_id).result) == 15
    assert msgspec.json.decode(default_connection.job(greet_id).result) == "hello bob"


def test_decorated_function_arguments_are_checked_at_dispatch(
        default_connection: evq.Queue) -> None:
    with pytest.raises(InvalidArguments, match=r"core\.multiply"):
        multiply.dispatch("three")
    assert default_connection.store.log.last_seq() == 0


# -- argument validation -----------------------------------------------------------------------


@pytest.mark.parametrize("job", [Add(a="1", b=2), Add(a=1, b=None), Add(a=1.5, b=2),  # type: ignore[arg-type]
                                 Add(a=object(), b=2)],  # type: ignore[arg-type]
                         ids=["str", "none", "float", "object"])
def test_wrong_argument_types_are_refused_naming_the_job(queue: evq.Queue, job: Add) -> None:
    with pytest.raises(InvalidArguments, match=r"core\.add"):
        queue.dispatch(job)
    assert queue.store.log.last_seq() == 0


def test_a_non_job_is_refused(queue: evq.Queue) -> None:
    with pytest.raises(InvalidArguments, match="make"):
        queue.dispatch(multiply)  # type: ignore[arg-type]  # the function, not a job


# -- dispatch helpers ------------------------------------------------------------------------


def test_dispatch_if_and_unless(queue: evq.Queue) -> None:
    assert queue.dispatch_if(False, Noop()) is None
    assert queue.dispatch_unless(True, Noop()) is None
    assert queue.store.log.last_seq() == 0
    a = queue.dispatch_if(1, Noop(n=1), delay=60)
    b = queue.dispatch_unless("", Noop(n=2), queue="other")
    assert a is not None and b is not None
    assert [r.id for r in queue.jobs("delayed")] == [a]
    assert queue.job(b).queue == "other"


def test_dispatch_sync_runs_here_and_records_it(queue: evq.Queue) -> None:
    assert queue.dispatch_sync(Add(a=2, b=3)) == 5
    assert queue.dispatch_sync(AsyncAdd(a=2, b=3)) == 5
    assert queue.dispatch_sync(greet.make("cy")) == "hello cy"
    assert queue.dispatch_sync(multiply.make(4)) == 8
    [first, *_] = queue.jobs("succeeded")
    assert event_types(queue, first.id) == ["JobDispatched", "JobLeased", "JobStarted",
                                            "JobSucceeded"]
    assert first.worker is not None and first.worker.startswith("sync:")
    assert queue.size() == 0 and queue.store.verify() == []


def test_dispatch_sync_uses_every_try_and_runs_failed_as_a_worker_does(
        queue: evq.Queue, key: str) -> None:
    with pytest.raises(ValueError, match="boom 3"):
        queue.dispatch_sync(Flaky(key=key))
    assert CALLS[key] == ["attempt"] * 3
    assert FAILED_HOOK[key] == ["ValueError('boom 3')"]
    [row] = queue.jobs("failed")
    assert (row.attempt, row.failures) == (3, 3)
    assert event_types(queue, row.id).count("JobRetryScheduled") == 2


@pytest.mark.parametrize("slow", [SlowSync, SlowAsync])
def test_dispatch_sync_of_a_job_past_its_timeout_is_timed_out_as_a_worker_does(
        queue: evq.Queue, key: str, slow: type[SlowSync | SlowAsync]) -> None:
    with pytest.raises(TimeoutError, match=r"timed out after 0\.2s"):
        queue.dispatch_sync(slow(key=key))
    assert TIMED_OUT_HOOK[key] == 1
    [row] = queue.jobs("failed")
    assert (row.error_type, event_types(queue, row.id)[-2:]) == (
        "TimeoutError", ["JobTimedOut", "JobDead"])


def test_a_worker_never_claims_a_job_dispatch_sync_runs(
        queue: evq.Queue, second_connection: evq.Queue, worker_thread: Any) -> None:
    worker_thread(second_connection.worker(sleep=0.01))
    for i in range(40):
        assert queue.dispatch_sync(Add(a=i, b=1)) == i + 1
    workers = {r.worker for r in queue.jobs("succeeded", limit=100)}
    assert len(workers) == 1 and workers.pop().startswith("sync:")


@pytest.mark.parametrize("kind", ["exit", "interrupt", "custom"])
def test_dispatch_sync_of_a_job_that_exits_does_not_end_the_caller(queue: evq.Queue,
                                                                   kind: str) -> None:
    with pytest.raises(evq.JobFailed) as raised:
        queue.dispatch_sync(Exits(kind=kind))
    assert raised.value.error_type in ("SystemExit", "KeyboardInterrupt", "CustomBase")
    assert queue.jobs("failed")[0].error_type == raised.value.error_type


def test_a_job_built_with_missing_or_unknown_arguments_raises_invalid_arguments() -> None:
    with pytest.raises(InvalidArguments, match=r"core\.add: Missing required argument 'b'"):
        Add(a=1)  # type: ignore[call-arg]
    with pytest.raises(InvalidArguments, match="Unexpected keyword argument 'c'"):
        Add(a=1, b=2, c=3)  # type: ignore[call-arg]


def test_dispatch_sync_checks_arguments_and_raises_the_job_error(queue: evq.Queue) -> None:
    with pytest.raises(InvalidArguments, match=r"core\.add"):
        queue.dispatch_sync(Add(a="x", b=1))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="own error"):
        queue.dispatch_sync(Broken())


def test_dispatch_json(queue: evq.Queue) -> None:
    job_id = queue.dispatch_json("core.add", '{"a": 1, "b": 2}', delay=60)
    row = queue.job(job_id)
    assert (row.name, msgspec.json.decode(row.payload)) == ("core.add", {"a": 1, "b": 2})
    assert [r.id for r in queue.jobs("delayed")] == [job_id]
    assert queue.dispatch_json("core.add", b'{"a": 3, "b": 4}') == job_id + 1


@pytest.mark.parametrize("arguments", ['{"a": 1', '{"a": "x", "b": 2}', '[1, 2]', '{"a": 1}',
                                       b"\xff"],
                         ids=["broken-json", "wrong-type", "not-object", "missing", "not-utf8"])
def test_dispatch_json_refuses_bad_arguments(queue: evq.Queue, arguments: Any) -> None:
    with pytest.raises(InvalidArguments, match=r"core\.add"):
        queue.dispatch_json("core.add", arguments)
    assert queue.store.log.last_seq() == 0


def test_dispatch_json_refuses_an_unknown_name(queue: evq.Queue) -> None:
    with pytest.raises(UnknownJob, match=r"'core\.unknown'.*--app"):
        queue.dispatch_json("core.unknown", "{}")
    assert queue.store.log.last_seq() == 0


# -- the default connection --------------------------------------------------------------------


def test_job_dispatch_uses_the_default_connection(queue: evq.Queue) -> None:
    previous = evq.use(queue)
    try:
        assert evq.default_queue() is queue
        job_id = Add(a=1, b=2).dispatch(delay=60, priority=3)
        row = queue.job(job_id)
        assert (row.name, row.priority) == ("core.add", 3)
        assert [r.id for r in queue.jobs("delayed")] == [job_id]
        other_id = Noop().dispatch(queue="other")
        assert queue.job(other_id).queue == "other"
    finally:
        assert evq.use(previous) is queue


def test_a_function_job_takes_dispatch_options(default_connection: evq.Queue) -> None:
    q = default_connection
    job_id = multiply.dispatch(3, delay=60, queue="later", priority=4)
    row = q.job(job_id)
    assert (row.queue, row.priority) == ("later", 4) and row.run_at > row.dispatched_at + 59
    assert msgspec.json.decode(row.payload) == msgspec.json.decode(q.job(
        multiply.dispatch(3)).payload)
