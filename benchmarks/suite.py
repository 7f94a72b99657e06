"""What runs: the cases of each system and scenario, their repetitions, and the figures."""

from __future__ import annotations

import shutil
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import evq_bench, huey_bench, sqlite_bench

SYSTEMS = ("evq", "huey", "sqlite3")
SCENARIOS = ("dispatch", "drain", "latency", "ceiling")
PEERS = ("huey", "sqlite3")


@dataclass(frozen=True)
class Settings:
    repeat: int = 3
    jobs: int = 10_000  # dispatch and drain
    latency_jobs: int = 200
    gap: float = 0.020  # seconds between two dispatches in the latency scenario
    idle_wait: float = 1.0  # seconds an idle worker is left alone before its CPU is measured
    cpu_window: float = 3.0  # seconds over which its CPU use is measured
    ceiling_single: int = 10_000  # rows, one transaction each
    ceiling_batched: int = 100_000  # rows, 10,000 per transaction


FULL = Settings()
QUICK = Settings(repeat=1, jobs=5_000, latency_jobs=100, idle_wait=0.5, cpu_window=2.0,
                 ceiling_single=2_000, ceiling_batched=20_000)

# measure -> (unit, higher is better)
MEASURES: dict[str, tuple[str, bool]] = {
    "single": ("jobs/s", True), "bulk": ("jobs/s", True),
    "1 worker": ("jobs/s", True), "2 workers": ("jobs/s", True),
    "p50": ("ms", False), "p95": ("ms", False), "p99": ("ms", False),
    "idle CPU": ("% core", False),
    "1 row/tx": ("rows/s", True), "10k rows/tx": ("rows/s", True),
}
# an evq measure -> (the ceiling measure it is held against, events written per job)
CEILING_OF = {"single": ("1 row/tx", 1), "bulk": ("10k rows/tx", 1),
              "1 worker": ("10k rows/tx", 4), "2 workers": ("10k rows/tx", 4)}


@dataclass
class Figure:
    system: str
    scenario: str
    measure: str
    samples: list[float] = field(default_factory=list)
    error: str | None = None
    ratio: float | None = None  # evq's median / this one's (peers' rows)
    of_ceiling: float | None = None  # events/s written / rows/s possible (evq's rows)

    @property
    def unit(self) -> str:
        return MEASURES.get(self.measure, ("", True))[0]

    @property
    def higher_is_better(self) -> bool:
        return MEASURES.get(self.measure, ("", True))[1]

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    def to_json(self) -> dict[str, Any]:
        ok = self.error is None and bool(self.samples)
        return {"system": self.system, "scenario": self.scenario, "measure": self.measure,
                "unit": self.unit, "higher_is_better": self.higher_is_better,
                "samples": self.samples, "median": self.median if ok else None,
                "min": min(self.samples) if ok else None,
                "max": max(self.samples) if ok else None,
                "error": self.error, "evq_over_peer": self.ratio,
                "fraction_of_ceiling": self.of_ceiling}


Result = dict[str, float] | tuple[dict[str, float], list[float]]


@dataclass(frozen=True)
class Case:
    system: str
    scenario: str
    label: str  # names the row when the case fails
    measures: tuple[str, ...]
    run: Callable[[Settings, Path], Result]


LATENCY = ("p50", "p95", "p99", "idle CPU")


def cases() -> list[Case]:
    def latency(module: Any) -> Callable[[Settings, Path], Result]:
        return lambda s, t: module.latency(s.latency_jobs, s.gap, s.idle_wait, s.cpu_window, t)

    out = []
    for name, module in (("evq", evq_bench), ("huey", huey_bench)):
        out.append(Case(name, "dispatch", "single", ("single",),
                        lambda s, t, m=module: m.dispatch_single(s.jobs, t)))
        if name == "evq":
            out.append(Case(name, "dispatch", "bulk", ("bulk",),
                            lambda s, t: evq_bench.dispatch_bulk(s.jobs, t)))
        for workers in (1, 2):
            label = f"{workers} worker{'s' if workers > 1 else ''}"
            out.append(Case(name, "drain", label, (label,),
                            lambda s, t, m=module, w=workers: m.drain(s.jobs, w, t)))
        out.append(Case(name, "latency", "p50 p95 p99 idle CPU", LATENCY, latency(module)))
    out.append(Case("sqlite3", "ceiling", "1 row/tx", ("1 row/tx",),
                    lambda s, t: sqlite_bench.one_per_transaction(s.ceiling_single, t)))
    out.append(Case("sqlite3", "ceiling", "10k rows/tx", ("10k rows/tx",),
                    lambda s, t: sqlite_bench.batched(s.ceiling_batched, t)))
    return out


def selected(systems: list[str], scenarios: list[str]) -> list[Case]:
    """The cases to run, scenario by scenario (the ceiling first: evq's rows refer to it)."""
    order = ["ceiling", *[s for s in SCENARIOS if s != "ceiling"]]
    chosen = [c for c in cases() if c.system in systems and c.scenario in scenarios]
    return sorted(chosen, key=lambda c: (order.index(c.scenario), SYSTEMS.index(c.system)))


def run(plan: list[Case], settings: Settings, tmp: Path,
        say: Callable[[str], None]) -> tuple[list[Figure], dict[str, list[float]]]:
    """Run every case ``settings.repeat`` times, round by round (so that a passing load on the
    machine falls on every system alike); a case that fails once becomes one failed row.

    Returns the figures and the raw latency samples (ms) of each system."""
    got = [{m: Figure(c.system, c.scenario, m) for m in c.measures} for c in plan]
    raw: list[list[float]] = [[] for _ in plan]
    t0 = time.monotonic()
    for rep in range(settings.repeat):
        for n, case in enumerate(plan):
            if any(f.error for f in got[n].values()):
                continue
            folder = tmp / f"{n}-{case.system}-{case.scenario}-{rep}"
            folder.mkdir(parents=True)
            try:
                result = case.run(settings, folder)
            except Exception as exc:
                reason = str(exc).strip() or type(exc).__name__
                say(f"[{time.monotonic() - t0:6.1f}s] {case.system} {case.scenario} "
                    f"{case.label}: failed: {reason}")
                got[n] = {case.label: Figure(case.system, case.scenario, case.label,
                                             error=reason)}
                raw[n] = []
                continue
            finally:
                shutil.rmtree(folder, ignore_errors=True)
            if isinstance(result, tuple):
                result, more = result
                raw[n] += more
            for m in case.measures:
                got[n][m].samples.append(result[m])
            shown = ", ".join(f"{m} {result[m]:,.1f}" for m in case.measures)
            say(f"[{time.monotonic() - t0:6.1f}s] {case.system} {case.scenario} "
                f"({rep + 1}/{settings.repeat}): {shown}")
    figures = [f for figs in got for f in figs.values()]
    samples: dict[str, list[float]] = {}
    for case, more in zip(plan, raw, strict=True):
        if more:
            samples.setdefault(case.system, []).extend(more)
    compare(figures)
    return figures, samples


def compare(figures: list[Figure]) -> None:
    """Fill in evq/peer ratios (on the peers' rows) and fractions of the ceiling (evq's)."""
    ok = {(f.system, f.measure): f for f in figures if f.error is None and f.samples}
    for f in ok.values():
        evq = ok.get(("evq", f.measure))
        if f.system != "evq" and evq is not None and f.median:
            f.ratio = evq.median / f.median
        if f.system == "evq" and f.measure in CEILING_OF:
            measure, events = CEILING_OF[f.measure]
            ceiling = ok.get(("sqlite3", measure))
            if ceiling is not None:
                f.of_ceiling = f.median * events / ceiling.median


def targets(figures: list[Figure]) -> list[tuple[str, str, bool]]:
    """evq's throughput targets: (what, measured, met)."""
    ok = {(f.system, f.measure): f for f in figures if f.error is None and f.samples}
    out = []
    bulk = ok.get(("evq", "bulk"))
    if bulk is not None:
        out.append(("evq bulk dispatch >= 100,000 jobs/s", f"{bulk.median:,.0f} jobs/s",
                    bulk.median >= 100_000))
    single, peer = ok.get(("evq", "single")), ok.get(("huey", "single"))
    if single is not None and peer is not None:
        out.append(("evq single dispatch >= 2x huey single dispatch",
                    f"{single.median / peer.median:.2f}x", single.median >= 2 * peer.median))
    if bulk is not None and peer is not None:
        out.append(("evq bulk dispatch >= 2x huey single dispatch",
                    f"{bulk.median / peer.median:.2f}x", bulk.median >= 2 * peer.median))
    return out
