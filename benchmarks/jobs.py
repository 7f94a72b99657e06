"""The job every evq benchmark dispatches: a no-op taking one small int."""

import evq


class Noop(evq.Job):
    n: int

    def handle(self) -> None:
        pass
