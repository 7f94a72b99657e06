"""The dashboard end to end: a real ``evq dashboard`` process on a free port, driven in Debian's
headless chromium through Playwright (never a downloaded browser)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import wait_until

import evq

CHROMIUM = "/usr/bin/chromium"
# The README's screenshots are retaken with EVQ_SCREENSHOTS=1; otherwise they go to tmp_path.
DOCS = Path(__file__).resolve().parent.parent / "docs"
TOKEN = "e2e-token"
EVQ = [sys.executable, "-c", "from evq.cli.main import main; main()"]

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="no /usr/bin/chromium")]
sync_api = pytest.importorskip("playwright.sync_api")


class Exploding(evq.Job):
    job_name = "browser.exploding"
    tries = 2
    backoff = 0

    def handle(self) -> None:
        raise RuntimeError("<script>alert(1)</script> the upstream said no")


class Quick(evq.Job):
    job_name = "browser.quick"

    n: int = 0

    def handle(self) -> int:
        return self.n


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[evq.Queue, str]]:
    """A store with one succeeded and one failed job, and its dashboard with actions on."""
    url = f"sqlite:///{tmp_path}/evq.db"
    q = evq.connect(url)
    q.dispatch(Quick(n=1))
    q.dispatch(Exploding())
    q.worker(stop_when_empty=True).run()
    port = free_port()
    server = subprocess.Popen([*EVQ, "--url", url, "dashboard", "--port", str(port),
                               "--allow-actions"], env={**os.environ, "EVQ_DASHBOARD_TOKEN": TOKEN},
                              stdout=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            with urllib.request.urlopen(base + "/metrics", timeout=1) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    try:
        wait_until(up, timeout=30, interval=0.05)
        yield q, base
    finally:
        server.terminate()
        server.wait(10)
        q.close()


def test_overview_live_failed_timeline_retry_and_history(served: tuple[evq.Queue, str],
                                                          tmp_path: Path) -> None:
    q, base = served
    shots = DOCS if os.environ.get("EVQ_SCREENSHOTS") else tmp_path
    failed_id = q.jobs("failed")[0].id
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        page = browser.new_page(viewport={"width": 1100, "height": 800})
        page.goto(base + "/")
        succeeded = page.locator("#queues td.succeeded").first
        sync_api.expect(succeeded).to_have_text("1")
        page.wait_for_selector("body[data-live=on]")  # its event stream is open
        q.dispatch_many([Quick(n=i) for i in range(3)])
        q.worker(stop_when_empty=True).run()
        sync_api.expect(succeeded).to_have_text("4", timeout=10_000)  # live, no reload
        page.screenshot(path=str(shots / "dashboard-overview.png"), full_page=True)

        page.goto(base + "/failed")
        page.screenshot(path=str(shots / "dashboard-failed.png"), full_page=True)
        page.click(f'a[href="/jobs/{failed_id}"]')
        sync_api.expect(page.locator(".timeline")).to_contain_text("JobFailed")
        sync_api.expect(page.locator(".timeline .error").first).to_contain_text(
            "<script>alert(1)</script>")  # shown as text, not run
        page.screenshot(path=str(shots / "dashboard-job.png"), full_page=True)

        page.fill("input[name=by]", "ann")
        page.fill("input[name=reason]", "upstream fixed")
        page.fill("input[name=token]", TOKEN)
        page.click("button:has-text('Retry')")
        sync_api.expect(page.locator(".timeline")).to_contain_text("by ann")

        wf = q.workflow(name="nightly report")  # a diamond: one of its middle jobs fails
        fetch = wf.add(Quick(n=1))
        left, right = wf.add(Quick(n=2), after=[fetch]), wf.add(Exploding(), after=[fetch])
        wf.add(Quick(n=4), after=[left, right])
        wf.dispatch()
        q.worker(stop_when_empty=True).run()
        page.goto(f"{base}/groups/{wf.id}")
        nodes = page.locator("svg.graph a.node")
        sync_api.expect(nodes).to_have_count(4)
        sync_api.expect(page.locator("svg.graph a.node.failed")).to_have_count(1)
        sync_api.expect(page.locator("svg.graph a.node.cancelled")).to_have_count(1)
        page.screenshot(path=str(shots / "dashboard-workflow.png"), full_page=True)
        browser.close()
    history = subprocess.run([*EVQ, "--url", q.url, "history", str(failed_id)],
                             capture_output=True, text=True, check=True).stdout
    assert "JobRequeued" in history and "ann" in history and "upstream fixed" in history
