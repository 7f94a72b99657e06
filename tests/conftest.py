"""Fixtures of the core suite: one store URL per store, a queue on it, and waiting helpers."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from helpers import postgres_schema, store_of

import evq
from evq.workers import execute

STORES = ("memory", "sqlite", "postgres")


@pytest.fixture
def key(request: pytest.FixtureRequest) -> str:
    """A key unique to this test (and store), for what jobs record."""
    return request.node.nodeid


@pytest.fixture(params=STORES)
def store_url(request: pytest.FixtureRequest, tmp_path: Any) -> str:
    """The URL of a fresh, empty store of each kind."""
    if request.param == "memory":
        return "memory://"
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/evq.db"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def db(tmp_path: Any) -> Any:
    """The path of a SQLite file for the test (not created)."""
    return tmp_path / "evq.db"


@pytest.fixture(params=["sqlite", "postgres"])
def url(request: pytest.FixtureRequest, db: Any) -> str:
    """A store other processes can open, of each kind; tests that look at the SQLite file
    itself (``db``) run on it only."""
    return store_of(request, db)


@pytest.fixture
def q(url: str) -> Iterator[evq.Queue]:
    """``evq.connect(url)`` (creates the store), closed after the test."""
    queue = evq.connect(url)
    yield queue
    queue.close()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """The URL of a fresh schema on the server of ``EVQ_TEST_POSTGRES_URL``, dropped after the
    test; the test is skipped (with the reason) where there is no server."""
    with postgres_schema() as url:
        yield url


@pytest.fixture
def queue(store_url: str) -> Iterator[evq.Queue]:
    """``evq.connect(store_url)``, closed after the test."""
    q = evq.connect(store_url)
    yield q
    q.close()


@pytest.fixture
def second_connection(queue: evq.Queue) -> Iterator[evq.Queue]:
    """Another connection to the same store: a second ``connect`` for a file, the same queue for
    an in-memory store (which only one connection can see)."""
    if not queue.store.shared:
        yield queue
        return
    other = evq.connect(queue.url)
    yield other
    other.close()


@pytest.fixture
def default_connection(queue: evq.Queue) -> Iterator[evq.Queue]:
    """``queue`` as the default connection (``Job.dispatch()``), the previous one restored."""
    previous = evq.use(queue)
    yield queue
    evq.use(previous)


class WorkerThread:
    """A worker running in a thread, for tests that act while it runs."""

    def __init__(self, worker: evq.Worker) -> None:
        self.worker = worker
        self.error: BaseException | None = None
        self.result: int | None = None
        self.thread = threading.Thread(target=self._run, name="test-worker", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.result = self.worker.run()
        except BaseException as exc:  # reported by stop()
            self.error = exc

    def stop(self, timeout: float = 15.0) -> int | None:
        """Stop gracefully and wait for ``run()`` to return."""
        self.worker.stop()
        return self.join(timeout)

    def join(self, timeout: float = 15.0) -> int | None:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the worker did not stop"
        if self.error is not None:
            raise self.error
        return self.result


@pytest.fixture
def worker_thread(queue: evq.Queue) -> Iterator[Callable[[evq.Worker], WorkerThread]]:
    """Start a worker in a thread; any still running at the end of the test is stopped (before
    ``queue`` closes: this fixture depends on it for that order)."""
    started: list[WorkerThread] = []

    def start(worker: evq.Worker) -> WorkerThread:
        started.append(WorkerThread(worker))
        return started[-1]

    yield start
    for t in started:
        if t.thread.is_alive():
            t.worker.stop()
            t.worker.stop()  # a second stop does not wait for running jobs
            t.thread.join(15)


@pytest.fixture(autouse=True)
def async_runners(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    """Every ``AsyncRunner`` (the event loop thread of async jobs) created during the test.

    ``AsyncRunner.close()`` stops its loop but does not close it (a bug, see
    ``test_worker.py::test_async_runner_closes_its_event_loop``): the loop's selector and
    self-pipe then raise ResourceWarning whenever they are collected, which
    ``filterwarnings = error`` turns into a failure of whatever test runs at that moment. So
    this fixture closes the loops the test left open; once the bug is fixed it does nothing.
    """
    created: list[Any] = []
    original = execute.AsyncRunner.__init__

    def init(self: Any) -> None:
        original(self)
        created.append(self)

    monkeypatch.setattr(execute.AsyncRunner, "__init__", init)
    yield created
    for runner in created:
        if not runner.loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop already stopped and died
                runner.loop.call_soon_threadsafe(runner.loop.stop)
            runner.thread.join(5)
            if not runner.thread.is_alive():
                runner.loop.close()


@pytest.fixture(autouse=True)
def _restore_default_connection() -> Iterator[None]:
    """No test leaves its (soon closed) queue as the process's default connection."""
    previous = evq.use(None)
    evq.use(previous)
    yield
    evq.use(previous)
