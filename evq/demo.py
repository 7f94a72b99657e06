"""The job types of ``evq demo``: a small shop's background work, with realistic failures."""

from __future__ import annotations

import random
import time

from .jobs import Job


class ResizeImage(Job):
    """Fast work: a few milliseconds each."""

    queue = "images"
    image_id: int
    width: int = 800

    def handle(self) -> dict[str, int]:
        time.sleep(random.uniform(0.002, 0.01))
        return {"image_id": self.image_id, "width": self.width}


class GenerateReport(Job):
    """Slow work: a few hundred milliseconds each."""

    queue = "reports"
    timeout = 5
    month: str

    def handle(self) -> str:
        time.sleep(random.uniform(0.2, 0.5))
        return f"report-{self.month}.pdf"


class SendEmail(Job):
    """Flaky work: the mail server fails now and then; retried with backoff."""

    queue = "emails"
    priority = 10
    tries = 4
    backoff = [0.3, 0.6, 1.2]
    to: str
    subject: str

    def handle(self) -> None:
        time.sleep(random.uniform(0.005, 0.02))
        if random.random() < 0.3:
            raise ConnectionError("SMTP server did not answer in time")


class ImportCsv(Job):
    """Broken input: fails on every attempt, so it ends dead and calls ``failed()``."""

    queue = "imports"
    tries = 3
    backoff = "exponential:0.25"
    path: str

    def handle(self) -> None:
        raise ValueError(f"{self.path}: row 17: invalid date '2026-13-01'")

    def failed(self, error: BaseException) -> None:
        pass  # a real application would alert someone here


def dispatch_mix(q: object) -> int:
    """Queue the demo's jobs on ``q``; returns how many."""
    jobs: list[Job] = [ResizeImage(image_id=i, width=random.choice([320, 800, 1600]))
                       for i in range(200)]
    jobs += [SendEmail(to=f"user{i}@example.com", subject="Your order has shipped")
             for i in range(40)]
    jobs += [GenerateReport(month=f"2026-{m:02d}") for m in range(1, 7)]
    jobs.append(ImportCsv(path="customers.csv"))
    n = len(q.dispatch_many(jobs))  # type: ignore[attr-defined]
    for i in range(5):
        q.dispatch(SendEmail(to=f"late{i}@example.com", subject="Reminder"),  # type: ignore[attr-defined]
                   delay=1 + i * 0.5)
    # an order's steps one after another, and a quarter's reports in parallel with a callback
    q.chain(ResizeImage(image_id=9000), GenerateReport(month="2026-07"),  # type: ignore[attr-defined]
            SendEmail(to="buyer@example.com", subject="Your photo book is ready"),
            name="photo-book").dispatch()
    q.batch([GenerateReport(month=f"2026-{m:02d}") for m in (8, 9, 10)],  # type: ignore[attr-defined]
            name="Q3 reports").on_finally(
        SendEmail(to="cfo@example.com", subject="Q3 reports are ready")).dispatch()
    return n + 5 + 3 + 4
