"""Helpers for testing code that uses evq.

    with evq.testing.fake() as queue:           # or the pytest fixture evq_fake
        signup("a@b.c")                         # dispatches are recorded, not stored
        queue.assert_dispatched(SendEmail, to="a@b.c")

    ran = evq.testing.run(SendEmail(to="a@b.c"))  # runs it here, as a worker would
    assert ran.succeeded, ran.error

``sync://`` is a store URL on which every dispatch runs at once (see :mod:`evq.sync`); the pytest
plugin (:mod:`evq.testing.plugin`, loaded by pytest on its own) has the fixtures ``evq_fake``
and ``evq_queue`` (a fresh memory store, the default connection during the test).
"""

from .fake import Dispatched, Fake, fake
from .run import Ran, run

__all__ = ["Dispatched", "Fake", "Ran", "fake", "run"]
