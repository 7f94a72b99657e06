"""What an open dashboard costs and how fast it follows: a real ``evq dashboard`` process with its
overview open in Debian's headless chromium (Playwright), on SQLite or PostgreSQL.

    python -m benchmarks.dashboard_live [--store sqlite|postgres] [--samples 20] [--jobs 10000]
                                        [--repeat 3]

* **live update**: one job is dispatched every ``--gap`` seconds while the page is open; a
  ``MutationObserver`` in the page notes when the counts change. The figure is that moment less
  the moment the dispatch's commit returned (one clock: same machine).
* **drain cost**: ``--jobs`` no-op jobs drained by one worker process, with and without the page
  open (alternating, ``--repeat`` times each); the figure is the second over the first.

Needs the ``test`` extra (Playwright) and /usr/bin/chromium; it is a benchmark, not a test: it
asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import evq

from .evq_bench import drain, postgres_store, sqlite_store
from .jobs import Noop

CHROMIUM = "/usr/bin/chromium"
SETTLE = 2.0  # seconds for the page (or, without it, the machine) to settle before a drain:
# chromium's first paint keeps a core busy for about a second after the page opens
EVQ = [sys.executable, "-c", "from evq.cli.main import main; main()"]
WATCH = """() => {
  window.changes = [];
  new MutationObserver(() => window.changes.push(Date.now() / 1000))
    .observe(document.querySelector("[data-live]"),
             {childList: true, subtree: true, characterData: true});
}"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def dashboard(url: str) -> Iterator[tuple[Any, str]]:
    """``evq dashboard`` on ``url``, and a chromium page on its overview (the live stream open)."""
    from playwright.sync_api import sync_playwright

    port = _free_port()
    server = subprocess.Popen([*EVQ, "--url", url, "dashboard", "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(base + "/metrics", timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True)
            page = browser.new_page()
            page.goto(base + "/")
            page.wait_for_selector("body[data-live=on]")
            yield page, base
            browser.close()
    finally:
        server.terminate()
        server.wait(10)


def live_update(url: str, samples: int, gap: float) -> list[float]:
    """Seconds from each dispatch's commit to the page's counts changing."""
    q = evq.connect(url)
    delays = []
    try:
        with dashboard(url) as (page, _):
            page.evaluate(WATCH)
            for i in range(samples):
                time.sleep(gap)
                q.dispatch(Noop(n=i))
                committed = time.time()
                page.wait_for_function(
                    f"() => window.changes.some(t => t >= {committed})", timeout=10_000)
                seen = page.evaluate(
                    f"() => window.changes.find(t => t >= {committed})")
                delays.append(seen - committed)
    finally:
        q.close()
    return delays


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.dashboard_live")
    parser.add_argument("--store", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--gap", type=float, default=1.0, help="seconds between dispatches")
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if not os.path.exists(CHROMIUM):
        sys.exit(f"needs {CHROMIUM} (apt-get install chromium)")
    store = sqlite_store if args.store == "sqlite" else postgres_store
    with tempfile.TemporaryDirectory() as tmp:
        delays = sorted(live_update(store(Path(tmp), "live"), args.samples, args.gap))
        print(f"live update ({args.store}, {len(delays)} dispatches): "
              f"p50 {statistics.median(delays) * 1000:.0f} ms, "
              f"max {delays[-1] * 1000:.0f} ms")
        plain: list[float] = []
        watched: list[float] = []
        for i in range(args.repeat):
            for label, figures in (("plain", plain), ("watched", watched)):
                case = Path(tmp) / f"{label}{i}"
                case.mkdir()
                url = store(case, "drain")
                evq.connect(url).close()  # made first, so that the dashboard can open it

                def made(_tmp: Path, _name: str, url: str = url) -> str:
                    return url

                with dashboard(url) if figures is watched else nullcontext():
                    time.sleep(SETTLE)
                    figures.append(drain(args.jobs, 1, case, made)["1 worker"])
        a, b = statistics.median(plain), statistics.median(watched)
        print(f"drain, 1 worker ({args.store}, {args.jobs} jobs, median of {args.repeat}): "
              f"{a:,.0f} jobs/s alone, {b:,.0f} jobs/s with the overview open "
              f"({b / a * 100:.1f}% of alone)")


if __name__ == "__main__":
    main()
