"""evq's pytest plugin (the ``pytest11`` entry point ``evq``; ``-p no:evq`` turns it off):
the fixtures ``evq_fake`` and ``evq_queue``. It imports evq only when a test uses one."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from evq.api import Queue
    from evq.testing.fake import Fake


@pytest.fixture
def evq_fake() -> Iterator[Fake]:
    """``evq.testing.fake()`` for the test: dispatches are recorded, not stored."""
    from evq.testing import fake

    with fake() as recorder:
        yield recorder


@pytest.fixture
def evq_queue() -> Iterator[Queue]:
    """A queue on a fresh memory store, the default connection during the test (the previous
    one is restored, and the queue closed, after it)."""
    import evq

    queue = evq.connect("memory://")
    previous = evq.use(queue)
    try:
        yield queue
    finally:
        evq.use(previous)
        queue.close()
