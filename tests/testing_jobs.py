"""Job types of the tests of ``evq.testing`` and ``sync://`` (names start with ``testing.``)."""

from __future__ import annotations

import time
from collections import defaultdict

import evq

CALLS: defaultdict[str, list[str]] = defaultdict(list)  # what jobs did, by the test's key


class Welcome(evq.Job):
    job_name = "testing.welcome"
    queue = "emails"

    to: str
    subject: str = "hello"

    def handle(self) -> str:
        CALLS[self.to].append("welcome")
        return f"sent to {self.to}"


class Signup(evq.Job):
    """Dispatches a Welcome from inside a job."""

    job_name = "testing.signup"

    email: str

    def handle(self) -> None:
        CALLS[self.email].append("signup")
        Welcome(to=self.email).dispatch()
        CALLS[self.email].append("signup done")


class Flaky(evq.Job):
    """Fails until its ``fails`` attempts are used up; ``failed()`` records the last error."""

    job_name = "testing.flaky"
    tries = 3
    backoff = 3600  # waited out by a worker, never by run() or sync://

    key: str
    fails: int

    def handle(self) -> int:
        CALLS[self.key].append("try")
        if len(CALLS[self.key]) <= self.fails:
            raise ValueError(f"attempt {len(CALLS[self.key])} failed")
        return len(CALLS[self.key])

    def failed(self, error: BaseException) -> None:
        CALLS[self.key].append(f"failed: {error}")


class Slow(evq.Job):
    job_name = "testing.slow"
    timeout = 0.05

    key: str

    def handle(self) -> None:
        time.sleep(0.1)  # overruns its timeout (this is the job's work, not a wait)

    def timed_out(self) -> None:
        CALLS[self.key].append("timed out")


@evq.job(name="testing.resize", queue="images")
def resize(path: str, width: int = 100) -> str:
    return f"{path}@{width}"
