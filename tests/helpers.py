"""Small helpers the test modules share."""

from __future__ import annotations

import contextlib
import inspect
import os
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import evq


def event_types(q: evq.Queue, job_id: int) -> list[str]:
    """The type names of a job's events, in log order."""
    return [r.event.__struct_config__.tag for r in q.history(job_id)]


def wait_until(predicate: Callable[[], Any], timeout: float = 20.0, interval: float = 0.005,
               what: str = "") -> Any:
    """Poll ``predicate`` until it returns something true (and return that); fail after
    ``timeout`` seconds. This awaits a condition: it is not a fixed sleep."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for "
                                 f"{what or getattr(predicate, '__name__', predicate)}")
        time.sleep(interval)


POSTGRES_ENV = "EVQ_TEST_POSTGRES_URL"


@contextlib.contextmanager
def postgres_schema() -> Iterator[str]:
    """A store URL in a new schema of the ``EVQ_TEST_POSTGRES_URL`` server (dropped afterwards),
    or a skip that says why there is none."""
    import pytest

    base = os.environ.get(POSTGRES_ENV)
    if not base:
        pytest.skip(f"postgres: {POSTGRES_ENV} is not set (.ci/run sets it and starts the server)")
    try:
        import psycopg
    except ImportError:
        pytest.skip("postgres: psycopg is not installed (pip install -e '.[test]')")
    try:
        psycopg.connect(base, connect_timeout=3).close()
    except psycopg.Error as exc:
        pytest.skip(f"postgres: no server at {base}: {str(exc).strip().splitlines()[0]}")
    schema = f"evq_test_{uuid.uuid4().hex[:12]}"
    try:
        yield f"{base}{'&' if '?' in base else '?'}schema={schema}"
    finally:  # on a connection of its own: the test may have restarted the server
        with psycopg.connect(base, autocommit=True, connect_timeout=10) as admin:
            admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def store_of(request: Any, db: Any) -> str:
    """For a fixture parametrised with "sqlite" and "postgres": the URL of ``db`` or of a fresh
    PostgreSQL schema. A test that asks for ``db`` itself is about the SQLite file, as is one
    marked ``sqlite_only``: they are skipped on postgres."""
    import pytest

    if request.param == "sqlite":
        return f"sqlite:///{db}"
    if ("db" in inspect.signature(request.function).parameters
            or request.node.get_closest_marker("sqlite_only")):
        pytest.skip("about the SQLite file itself")
    return request.getfixturevalue("postgres_url")
