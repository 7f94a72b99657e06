"""The file watcher that wakes idle workers: inotify on Linux, watchfiles elsewhere."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from evq.workers.wake import FileWatcher


def _no_inotify(self: FileWatcher) -> None:
    raise ImportError("inotify disabled by the test")


@pytest.fixture(params=["inotify", "watchfiles"])
def watcher_kind(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "watchfiles":
        monkeypatch.setattr(FileWatcher, "_watch_inotify", _no_inotify)
    return str(request.param)


def test_a_write_to_the_wal_is_reported(tmp_path: Path, watcher_kind: str) -> None:
    db = tmp_path / "evq.db"
    changed = threading.Event()
    watcher = FileWatcher(str(db), changed.set)
    try:
        for _ in range(50):  # until the watch is set up; each write is a change
            (tmp_path / "evq.db-wal").write_bytes(b"frame")
            if changed.wait(0.1):
                break
        assert changed.is_set()
    finally:
        watcher.close()


def test_other_files_are_not_reported(tmp_path: Path, watcher_kind: str) -> None:
    db = tmp_path / "evq.db"
    changed = threading.Event()
    watcher = FileWatcher(str(db), changed.set)
    try:
        for i in range(5):
            (tmp_path / f"other-{i}.txt").write_bytes(b"x")
        assert not changed.wait(0.3)
    finally:
        watcher.close()


def test_disarmed_it_reports_a_burst_once_at_most_and_nothing_is_lost(
        tmp_path: Path, watcher_kind: str) -> None:
    db = tmp_path / "evq.db"
    calls: list[int] = []
    changed = threading.Event()

    def on_change() -> None:
        calls.append(1)
        changed.set()

    watcher = FileWatcher(str(db), on_change)
    try:
        for _ in range(50):  # armed as it starts: wait until it reports at all
            db.write_bytes(b"a")
            if changed.wait(0.1):
                break
        assert changed.is_set()
        watcher.disarm()
        changed.wait(0.2)  # a report already under way may still arrive
        before = len(calls)
        for i in range(20):
            db.write_bytes(b"b%d" % i)
        changed.clear()
        changed.wait(0.3)  # time for reports to arrive, if any would
        during = len(calls)
        assert during <= before + 1  # a busy worker gets no storm of wake-ups
        changed.clear()
        watcher.arm()
        if during == before:  # not reported yet: arming reports it
            assert changed.wait(5.0)
        assert len(calls) >= before + 1
    finally:
        watcher.close()
