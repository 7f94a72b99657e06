"""Failure notifications through a real local HTTP server and a real local SMTP server
(aiosmtpd): once per dead job, retried as jobs while a channel is down, never blocking a worker."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from helpers import wait_until
from jobs import Add, Step

import evq
from evq.notifications import CONSUMER, Channels, Notifier, channels


class Hook(BaseHTTPRequestHandler):
    """Records each POSTed JSON body; answers 500 to the first ``failures`` requests."""

    def do_POST(self) -> None:
        server: Any = self.server
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with server.lock:
            server.calls += 1
            failing = server.calls <= server.failures
            if not failing:
                server.bodies.append(body)
        self.send_response(500 if failing else 200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def webhook() -> Iterator[Any]:
    server: Any = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    server.bodies, server.calls, server.failures, server.lock = [], 0, 0, threading.Lock()
    server.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def smtp() -> Iterator[Any]:
    from aiosmtpd.controller import Controller

    class Inbox:
        def __init__(self) -> None:
            self.messages: list[Any] = []

        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            self.messages.append((envelope.rcpt_tos, message_from_bytes(envelope.content)))
            return "250 OK"

    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=0)
    controller.start()
    inbox.url = f"smtp://127.0.0.1:{controller.server.sockets[0].getsockname()[1]}"  # type: ignore[attr-defined]
    yield inbox
    controller.stop()


def run_until(queue: evq.Queue, notifier: Notifier, done: Any, worker_thread: Any) -> None:
    """A worker and ``notifier`` on ``queue`` until ``done()``."""
    notifier.start()
    try:
        worker_thread(queue.worker(sleep=0.05))
        wait_until(done, timeout=30, what="the notifications")
    finally:
        notifier.stop()


def test_a_dead_job_is_posted_to_the_webhook_once(queue: evq.Queue, key: str, webhook: Any,
                                                  worker_thread: Any) -> None:
    webhook.failures = 1  # the first POST fails: the notification job retries (after 5 s)
    queue.dispatch(Step(key=key, label="before", fail=True))  # dead before the notifier: old
    queue.worker(stop_when_empty=True).run()
    notifier = Notifier(queue, channels(webhook=webhook.url), lease=2, health_every=None)
    dead = queue.dispatch(Step(key=key, label="x", fail=True))
    ok = queue.dispatch(Add(a=1, b=2))
    run_until(queue, notifier, lambda: [r for r in queue.jobs("succeeded")
                                        if r.name == "evq.notify.webhook"], worker_thread)
    [body] = webhook.bodies  # the job that died before the notifier started is not news
    assert body["job_id"] == dead and body["error_type"] == "ValueError"
    assert body["text"] == (f"evq: job {dead} (core.step, queue default) failed for good "
                            "after 1 attempt: ValueError: step x failed")
    assert queue.job(ok).state == "succeeded"
    [sent] = queue.jobs(name="evq.notify.webhook")
    assert (sent.state, sent.attempt, sent.queue) == ("succeeded", 2, "default")
    assert sent.error_type == "HTTPError" and webhook.calls == 2


def test_the_health_turning_bad_is_notified_once(queue: evq.Queue, key: str,
                                                 worker_thread: Any) -> None:
    notifier = Notifier(queue, channels(webhook="http://127.0.0.1:1/hook"), health_every=10)

    def sent() -> list[Any]:
        return queue.jobs(name="evq.notify.webhook")

    worker_thread(queue.worker(sleep=0.05, queues=["other"]))  # alive; runs no notification
    wait_until(lambda: queue.health().status == "ok", what="a live worker")
    notifier.check_health(1000.0)
    assert sent() == []
    failing = queue.dispatch(Step(key=key, label="x", fail=True), queue="other")
    wait_until(lambda: queue.job(failing).state == "failed", what="the failure")
    assert queue.health().status == "degraded"
    notifier.check_health(1005.0)  # not due yet
    assert sent() == []
    notifier.check_health(1010.0)
    [first] = sent()
    body = json.loads(first.payload)["body"]
    assert body["status"] == "degraded" and "failure_rate" in body["text"]
    notifier.check_health(1020.0)  # still degraded: no news
    assert len(sent()) == 1


def test_an_smtp_server_that_refuses_fails_the_email_job_not_the_worker(
        queue: evq.Queue, key: str, worker_thread: Any) -> None:
    notifier = Notifier(queue, channels(email="ops@example.com", smtp="smtp://127.0.0.1:9"),
                        health_every=None)
    queue.dispatch(Step(key=key, label="z", fail=True))
    run_until(queue, notifier,
              lambda: [r for r in queue.jobs(name="evq.notify.email") if r.failures],
              worker_thread)
    [email] = queue.jobs(name="evq.notify.email")
    assert email.error_type == "ConnectionRefusedError"
    ok = queue.dispatch(Add(a=2, b=2))
    assert queue.result(ok, timeout=20) == 4


def test_two_notifiers_send_each_dead_job_once(queue: evq.Queue, key: str, webhook: Any,
                                               worker_thread: Any) -> None:
    if not queue.store.shared:
        pytest.skip("two connections need a store other connections can open")
    other = evq.connect(queue.url)
    try:
        first = Notifier(queue, channels(webhook=webhook.url), lease=1, health_every=None).start()
        wait_until(lambda: queue.store.log.read_rows(
            "SELECT owner FROM consumers WHERE name = ?", (CONSUMER,)), what="a holder")
        second = Notifier(other, channels(webhook=webhook.url), lease=1,
                          health_every=None).start()
        dead = queue.dispatch_many([Step(key=key, label=str(i), fail=True) for i in range(5)])
        worker_thread(queue.worker(sleep=0.05))
        def deaths() -> list[int]:
            return sorted(b["job_id"] for b in webhook.bodies)

        wait_until(lambda: len(deaths()) == 5, timeout=30, what="five notifications")
        first.stop()  # the other takes over: the next dead job is still notified, once
        more = queue.dispatch(Step(key=key, label="late", fail=True))
        wait_until(lambda: len(deaths()) == 6, timeout=30, what="the sixth")
        second.stop()
        assert deaths() == [*dead, more]
    finally:
        other.close()


@pytest.mark.parametrize(("options", "message"), [
    ({"webhook": "ftp://example.com/hook"}, "is not an http(s) URL"),
    ({"email": "not an address"}, "is not an email address"),
    ({"email": "a@b.c", "smtp": "mail.example.com"}, "write smtp://"),
    ({"email": "a@b.c", "smtp": "smtp://host:port"}, "the port is not a number"),
])
def test_bad_channels_are_refused(options: dict[str, str], message: str) -> None:
    with pytest.raises(evq.ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        channels(**options)


def test_channels_come_from_the_environment_and_pyproject(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pyproject.toml").write_text(
        '[tool.evq]\nnotify_webhook = "https://hooks.example.com/x"\n'
        'notify_email = "ops@example.com"\n')
    got = channels()
    assert (got.webhook, got.email) == ("https://hooks.example.com/x", ["ops@example.com"])
    monkeypatch.setenv("EVQ_NOTIFY_WEBHOOK", "http://127.0.0.1:1/env")
    assert channels().webhook == "http://127.0.0.1:1/env"
    assert not Channels()


@pytest.mark.slow
def test_evq_work_notifies_when_configured_by_the_environment(store_url: str, webhook: Any,
                                                              queue: evq.Queue) -> None:
    import signal
    import subprocess

    from test_e2e import APP, EVQ, ROOT, evq_env, run_evq

    if not queue.store.shared:
        pytest.skip("needs a store another process can open")
    from tests.cli_jobs import CliFail

    bad = run_evq(store_url, "work", "--app", APP, EVQ_NOTIFY_WEBHOOK="ftp://example.com/x")
    assert bad.returncode == 1 and bad.stderr.strip().splitlines() == [
        "error: notification webhook 'ftp://example.com/x' is not an http(s) URL"]
    proc = subprocess.Popen([*EVQ, "work", "--app", APP, "--sleep", "0.1"], cwd=ROOT,
                            env=evq_env(store_url, EVQ_NOTIFY_WEBHOOK=webhook.url),
                            stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: queue.store.log.read_rows(
            "SELECT owner FROM consumers WHERE name = ?", (CONSUMER,)), what="the notifier")
        dead = queue.dispatch(CliFail(reason="bad input"))
        wait_until(lambda: [b for b in webhook.bodies if b.get("job_id") == dead], timeout=30,
                   what="the notification")
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0 and "Traceback" not in err
