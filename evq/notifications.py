"""Failure notifications: a webhook (JSON POST with Slack's ``text`` field) and email (SMTP) when
a job ends dead, and when the queue's health turns degraded.

Configured in code (``evq.notify(webhook=..., email=...)``), by the environment
(``EVQ_NOTIFY_WEBHOOK``, ``EVQ_NOTIFY_EMAIL``, ``EVQ_SMTP_URL``, ``EVQ_NOTIFY_FROM``) or in
``pyproject.toml`` (``[tool.evq]``: ``notify_webhook``, ``notify_email``, ``smtp_url``,
``notify_from``), in that order of precedence.

A :class:`Notifier` is a durable subscriber of ``JobDead`` events (named ``evq-notify``: one
process at a time holds it, the others stand by): for each, in the same transaction as it saves
its position, it dispatches a notification *job* per channel, on the dead job's queue. Sending is
that job's work, with its own retries and backoff: a channel that is down never blocks a worker,
and no dead job is notified twice or missed across restarts.
"""

from __future__ import annotations

import json
import logging
import os
import smtplib
import threading
import time
import tomllib
import urllib.error
import urllib.request
from email.message import EmailMessage
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

import msgspec

from evq.eventlog.codec import Record
from evq.eventlog.errors import ConfigError, InvalidState

from .jobs import Job
from .subscribers import Subscription

if TYPE_CHECKING:
    from .api import Queue

log = logging.getLogger("evq.notify")
CONSUMER = "evq-notify"
HEALTH_EVERY = 60.0  # seconds between looks at the queue's health
DEFAULT_SMTP = "smtp://localhost:25"
DEFAULT_SENDER = "evq@localhost"


class Channels(msgspec.Struct, frozen=True):
    """Where notifications go."""

    webhook: str | None = None
    email: list[str] = []
    smtp: str = DEFAULT_SMTP
    sender: str = DEFAULT_SENDER

    def __bool__(self) -> bool:
        return bool(self.webhook or self.email)


_configured: Channels | None = None


def notify(*, webhook: str | None = None, email: str | list[str] | None = None,
           smtp: str | None = None, sender: str | None = None) -> Channels:
    """Send failure notifications to ``webhook`` (an http(s) URL) and/or ``email`` (addresses,
    through the SMTP server ``smtp``, as ``smtp://[user:password@]host[:port][?starttls=1]``);
    for the workers of this process. Returns the channels."""
    global _configured
    _configured = channels(webhook=webhook, email=email, smtp=smtp, sender=sender)
    return _configured


def channels(*, webhook: str | None = None, email: str | list[str] | None = None,
             smtp: str | None = None, sender: str | None = None) -> Channels:
    """Checked channels; what is not given comes from the environment, then pyproject.toml."""
    file = _pyproject()
    webhook = webhook or os.environ.get("EVQ_NOTIFY_WEBHOOK") or file.get("notify_webhook")
    email = email or os.environ.get("EVQ_NOTIFY_EMAIL") or file.get("notify_email") or []
    smtp = smtp or os.environ.get("EVQ_SMTP_URL") or file.get("smtp_url") or DEFAULT_SMTP
    sender = sender or os.environ.get("EVQ_NOTIFY_FROM") or file.get("notify_from") \
        or DEFAULT_SENDER
    if webhook is not None and urlsplit(webhook).scheme not in ("http", "https"):
        raise ConfigError(f"notification webhook {webhook!r} is not an http(s) URL")
    addresses = [a.strip() for a in (email.split(",") if isinstance(email, str) else email)
                 if a.strip()]
    for address in [*addresses, sender]:
        if "@" not in address or " " in address:
            raise ConfigError(f"{address!r} is not an email address")
    _smtp_parts(smtp)
    return Channels(webhook=webhook or None, email=addresses, smtp=smtp, sender=sender)


def configured() -> Channels:
    """The channels of :func:`notify`, else of the environment and pyproject.toml."""
    return _configured if _configured is not None else channels()


def _pyproject() -> dict[str, Any]:
    path = Path("pyproject.toml")
    if not path.is_file():
        return {}
    try:
        return tomllib.loads(path.read_text()).get("tool", {}).get("evq", {})
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path.resolve()}: {exc}") from None


def _smtp_parts(url: str) -> tuple[str, int, str | None, str | None, bool]:
    parts = urlsplit(url)
    if parts.scheme != "smtp" or not parts.hostname:
        raise ConfigError(f"SMTP server {url!r}: write smtp://[user:password@]host[:port]")
    try:
        port = parts.port or 25
    except ValueError:
        raise ConfigError(f"SMTP server {url!r}: the port is not a number") from None
    return (parts.hostname, port, parts.username and unquote(parts.username),
            parts.password and unquote(parts.password), "starttls=1" in parts.query)


# -- the notification jobs ---------------------------------------------------------------------

class NotifyWebhook(Job):
    """POSTs ``body`` (JSON) to ``url``; an answer other than 2xx fails the attempt."""

    job_name = "evq.notify.webhook"
    tries = 6
    backoff = "exponential:5"

    url: str
    body: dict[str, Any]

    def handle(self) -> int:
        request = urllib.request.Request(self.url, data=json.dumps(self.body).encode(),
                                         headers={"Content-Type": "application/json"},
                                         method="POST")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return int(response.status)
        except urllib.error.HTTPError as exc:
            exc.close()  # it holds the answer's socket: left open, it warns when collected
            raise


class NotifyEmail(Job):
    """Sends one email through the SMTP server ``smtp``."""

    job_name = "evq.notify.email"
    tries = 6
    backoff = "exponential:5"

    smtp: str
    sender: str
    to: list[str]
    subject: str
    text: str

    def handle(self) -> None:
        host, port, user, password, starttls = _smtp_parts(self.smtp)
        message = EmailMessage()
        message["From"], message["To"], message["Subject"] = self.sender, ", ".join(self.to), \
            self.subject
        message.set_content(self.text)
        with smtplib.SMTP(host, port, timeout=10) as server:
            if starttls:
                server.starttls()
            if user:
                server.login(user, password or "")
            server.send_message(message)


def notifications(ch: Channels, subject: str, text: str, details: dict[str, Any]) -> list[Job]:
    """The notification jobs of one occasion, one per channel."""
    jobs: list[Job] = []
    if ch.webhook:
        jobs.append(NotifyWebhook(url=ch.webhook, body={"text": text, **details}))
    if ch.email:
        jobs.append(NotifyEmail(smtp=ch.smtp, sender=ch.sender, to=ch.email, subject=subject,
                                text=text))
    return jobs


# -- the notifier ------------------------------------------------------------------------------

class Notifier:
    """Dispatches the notifications of dead jobs and of the queue's health turning degraded,
    while it holds the ``evq-notify`` name (another process's notifier stands by meanwhile, and
    takes over when that one stops or is lost); on a thread of its own."""

    def __init__(self, queue: Queue, ch: Channels, *, lease: float = 30.0,
                 health_every: float | None = HEALTH_EVERY) -> None:
        """``health_every``: seconds between looks at the queue's health (None: none)."""
        self.queue = queue
        self.channels = ch
        self.lease = lease
        self.health_every = health_every
        self.reader = _DeadJobs(self)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="evq-notifier", daemon=True)
        self._health = "ok"
        self._next_health = 0.0

    def start(self) -> Notifier:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self.reader.stop()
        self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.reader.run()
            except InvalidState:  # another process notifies: stand by
                self._stop.wait(self.lease / 2)
            except Exception:
                log.exception("the notifier failed; starting again")
                self._stop.wait(5.0)

    def dead(self, record: Record) -> None:
        """Dispatch the notifications of one ``JobDead`` (inside the reader's transaction)."""
        row = self.queue.store.tables.get(record.event.job_id)
        if row is None:  # purged meanwhile
            return
        text = (f"evq: job {row.id} ({row.name}, queue {row.queue}) failed for good after "
                f"{row.attempt} attempt{'s' if row.attempt != 1 else ''}: "
                f"{row.error_type}: {row.error}")
        details = {"job_id": row.id, "name": row.name, "queue": row.queue,
                   "attempt": row.attempt, "error_type": row.error_type, "error": row.error,
                   "seq": record.seq}
        jobs = notifications(self.channels, f"evq: {row.name} job {row.id} failed", text,
                             details)
        if jobs:
            self.queue.dispatch_many(jobs, queue=row.queue)

    def check_health(self, now: float) -> None:
        """Every ``health_every`` seconds: notify when the health turns from ok to degraded or
        unhealthy."""
        if self.health_every is None or now < self._next_health:
            return
        self._next_health = now + self.health_every
        report = self.queue.health()
        if report.status != "ok" and self._health == "ok":
            failing = "; ".join(f"{c.name}: {c.detail}" for c in report.checks
                                if c.status != "ok")
            text = f"evq: {self.queue.url} is {report.status} ({failing})"
            jobs = notifications(self.channels, f"evq: the queue is {report.status}", text,
                                 {"status": report.status})
            if jobs:
                self.queue.dispatch_many(jobs)
        self._health = report.status


class _DeadJobs(Subscription):
    """The notifier's reader: ``JobDead`` events after its position (a new one starts at the
    end of the log: dead jobs of the past are not news), handled exactly once."""

    def __init__(self, notifier: Notifier) -> None:
        q = notifier.queue
        super().__init__(q, CONSUMER, notifier.dead, types=["JobDead"],
                         since=q.store.log.last_seq(), lease=notifier.lease, atomic=True)
        self.notifier = notifier

    def between(self) -> None:
        self.notifier.check_health(time.time())
