"""The file watcher that wakes idle workers: inotify on Linux, watchfiles elsewhere."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import pytest

from evq.eventlog.wake import FileWatcher, ReadySignals, database_watcher


def _no_inotify(self: FileWatcher) -> None:
    return None  # as where inotify cannot be had


@pytest.fixture(params=["inotify", "watchfiles"])
def watcher_kind(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "watchfiles":
        monkeypatch.setattr(FileWatcher, "_open_inotify", _no_inotify)
    return str(request.param)


def test_a_write_to_the_wal_is_reported(tmp_path: Path, watcher_kind: str) -> None:
    db = tmp_path / "evq.db"
    changed = threading.Event()
    watcher = database_watcher(str(db), changed.set)
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
    watcher = database_watcher(str(db), changed.set)
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

    watcher = database_watcher(str(db), on_change)
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


def test_a_queue_signal_wakes_the_watchers_of_that_queue_only(
        tmp_path: Path, watcher_kind: str) -> None:
    signals = ReadySignals(str(tmp_path / "evq.db"))
    mine, other = threading.Event(), threading.Event()
    watchers = [signals.watch(["emails", "default"], mine.set),
                signals.watch(["reports"], other.set)]
    try:
        for _ in range(50):  # watchfiles starts watching a moment later: signal until seen
            signals.announce(["emails"])
            if mine.wait(0.1):
                break
        assert mine.is_set()
        assert not other.wait(0.3)
        signals.announce(["reports"])
        assert other.wait(5.0)
    finally:
        for w in watchers:
            w.close()


@pytest.mark.skipif(sys.platform != "linux", reason="inotify is Linux's")
def test_with_inotify_a_signal_right_after_the_watch_starts_is_seen(tmp_path: Path) -> None:
    signals = ReadySignals(str(tmp_path / "evq.db"))
    seen = threading.Event()
    watcher = signals.watch(["default"], seen.set)
    try:
        signals.announce(["default"])  # no retry: the watch is in place already
        assert seen.wait(5.0)
    finally:
        watcher.close()
