"""The benchmark suite's command line and bookkeeping (nothing is measured here)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from benchmarks import __main__ as cli
from benchmarks import peer_bench, peers, suite
from benchmarks.procstat import percentile


@pytest.mark.parametrize("argv", [["--only", "evq,nope"], ["--scenario", "dispatch,nope"],
                                  ["--only", ","], ["--repeat", "0"], ["--latency-jobs", "0"],
                                  ["--only", "sqlite3", "--scenario", "replay"]])
def test_bad_input_is_one_line_and_exit_code_2(argv: list[str], capsys: pytest.CaptureFixture[str],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SystemExit) as exc:
        code = cli.main(argv)
        raise SystemExit(code)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err


def test_every_peer_has_every_scenario_and_a_runner() -> None:
    plan = suite.selected(list(suite.SYSTEMS), list(suite.SCENARIOS))
    for peer in peer_bench.PEERS:
        mine = {(c.scenario, c.label) for c in plan if c.system == peer.name}
        assert {("dispatch", "single"), ("drain", "1 worker"), ("drain", "2 workers"),
                ("drain", "4 workers"), ("latency", "p50 p95 p99 idle CPU")} <= mine
        assert (("dispatch", "bulk") in mine) == peer.bulk
        assert (suite.Path(peer_bench.__file__).parent / peer.runner).exists()
    assert {c.label for c in plan if c.system == "evq" and c.scenario == "drain"} == {
        "1 worker", "2 workers", "4 workers"}
    assert {"chancy", "oban", "dbos"} <= set(suite.SYSTEMS)
    assert plan[0].scenario == "ceiling"
    assert {c.scenario for c in plan if c.system != "evq"} <= {"dispatch", "drain", "latency",
                                                                "ceiling"}


def test_a_peer_whose_service_is_down_fails_without_running(monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    monkeypatch.setattr(peer_bench.Service, "down",
                        lambda self: f"{self.name} at 127.0.0.1:6379 is down")
    plan = suite.selected(["rq", "dramatiq"], ["dispatch"])
    said: list[str] = []
    figures, _ = suite.run(plan, suite.QUICK, suite.Path("/nonexistent"), said.append)
    assert said == ["Redis at 127.0.0.1:6379 is down: not running rq, dramatiq"]
    assert all(f.error == "Redis at 127.0.0.1:6379 is down" for f in figures)


def test_ratios_fastest_peer_and_growth() -> None:
    F = suite.Figure
    figures = [F("sqlite3", "ceiling", "1 row/tx", [10_000.0]),
               F("evq", "dispatch", "single", [4_000.0]),
               F("rq", "dispatch", "single", [1_000.0]),
               F("huey", "dispatch", "single", [2_000.0]),
               F("evq", "growth", "dispatch 10k", [100.0]),
               F("evq", "growth", "dispatch 1M", [110.0])]
    suite.compare(figures)
    assert figures[1].of_ceiling == pytest.approx(0.4)
    assert figures[2].ratio == pytest.approx(4.0)
    assert figures[5].ratio == pytest.approx(1.1)
    met = {what: ok for what, _, ok in suite.targets(figures)}
    assert met["evq single dispatch >= 2x the fastest peer's (huey)"] is True
    assert met["evq dispatch cost at 1M events within 1.2x of its cost at the smallest log"]


def test_percentile_nearest_rank() -> None:
    assert percentile(list(range(1, 101)), 99) == 99
    assert percentile([5.0], 50) == 5.0


def fake_python(path: Path, major: int, minor: int) -> None:
    """An executable that answers the version question as a Python ``major.minor`` would."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/sh\necho {major} {minor}\n")
    path.chmod(0o755)


def test_a_venv_python_new_enough_is_found_past_a_broken_shim(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shims, root = tmp_path / "shims", tmp_path / "pyenv"
    shims.mkdir()
    (shims / "python3.99").write_text("#!/bin/sh\necho 'pyenv: python3.99: command not found'"
                                      " >&2\nexit 127\n")
    (shims / "python3.99").chmod(0o755)
    fake_python(root / "versions" / "3.99.1" / "bin" / "python", 3, 99)
    fake_python(root / "versions" / "3.98.0" / "bin" / "python", 3, 98)
    monkeypatch.setenv("PATH", f"{shims}:{os.environ['PATH']}")
    monkeypatch.setenv("PYENV_ROOT", str(root))
    assert peers.interpreter((3, 99)) == str(root / "versions" / "3.99.1" / "bin" / "python")
    assert peers.interpreter((3, 98)) == str(root / "versions" / "3.98.0" / "bin" / "python")
    assert peers.interpreter(sys.version_info[:2]) == sys.executable
    assert peers.interpreter(None) == sys.executable


def test_a_peer_without_the_python_it_needs_is_a_failed_row(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no python3.99 anywhere
    monkeypatch.setenv("PYENV_ROOT", str(tmp_path))
    monkeypatch.setattr(peers, "VENVS", tmp_path / "venvs")
    peer = peer_bench.Peer("needs-3.99", ("nothing",), "nothing", peer_bench.POSTGRES,
                           bulk=False, detection="", minimum_python=(3, 99))
    plan = [suite.Case("oban", "dispatch", "single", ("single",),
                       lambda s, t, say: peer.dispatch_single(s.jobs, t))]
    said: list[str] = []
    figures, _ = suite.run(plan, suite.QUICK, tmp_path / "run", said.append)
    reason = ("needs Python >= 3.99: none found (no python3.99 or newer on the PATH or among "
              "pyenv's versions)")
    assert [f.error for f in figures] == [reason]
    assert said[-1].endswith(f"oban dispatch single: failed: {reason}")
    assert not (tmp_path / "venvs" / "needs-3.99").exists()
