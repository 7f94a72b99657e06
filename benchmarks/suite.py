"""What runs: the cases of each system and scenario, their repetitions, and the figures."""

from __future__ import annotations

import shutil
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import evq_bench, evq_growth, peer_bench, sqlite_bench

PEERS = tuple(p.name for p in peer_bench.PEERS)
SYSTEMS = ("evq", "evq-pg", *PEERS, "sqlite3")
ON_POSTGRES = {p.name for p in peer_bench.PEERS if p.service == peer_bench.POSTGRES}
SCENARIOS = ("dispatch", "drain", "latency", "ceiling", "replay", "growth")
EVQ_ONLY = ("replay", "growth")
DRAIN_WORKERS = (1, 2, 4)  # worker processes in the drain scenario, for every system


def workers_label(workers: int) -> str:
    return f"{workers} worker{'s' if workers > 1 else ''}"


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
    replay_events: int = 1_000_000  # events in the log that is replayed
    growth_sizes: tuple[int, ...] = (10_000, 1_000_000, 5_000_000)  # events in the log
    growth_calls: int = 1_000  # dispatches and jobs drained at each size
    drain_limit: float = 60.0  # seconds; a peer's drain still running then is cut short


FULL = Settings()
QUICK = Settings(repeat=1, jobs=5_000, latency_jobs=100, idle_wait=0.5, cpu_window=2.0,
                 ceiling_single=2_000, ceiling_batched=20_000, replay_events=100_000,
                 growth_sizes=(10_000, 200_000), growth_calls=500, drain_limit=30.0)

# measure -> (unit, higher is better)
MEASURES: dict[str, tuple[str, bool]] = {
    "single": ("jobs/s", True), "bulk": ("jobs/s", True),
    **{workers_label(w): ("jobs/s", True) for w in DRAIN_WORKERS},
    "p50": ("ms", False), "p95": ("ms", False), "p99": ("ms", False),
    "idle CPU": ("% core", False),
    "1 row/tx": ("rows/s", True), "10k rows/tx": ("rows/s", True),
    "events/s": ("events/s", True),
}
# the growth scenario's measures are "WHAT SIZE" (as "dispatch 1M"): WHAT -> (unit, higher)
GROWTH: dict[str, tuple[str, bool]] = {
    "build": ("s", False), "dispatch": ("µs/call", False), "claim+run": ("µs/job", False),
    "history": ("ms", False), "stats": ("ms", False),
}
# an evq measure -> (the ceiling measure it is held against, events written per job)
CEILING_OF = {"single": ("1 row/tx", 1), "bulk": ("10k rows/tx", 1),
              **{workers_label(w): ("10k rows/tx", 4) for w in DRAIN_WORKERS},
              "events/s": ("10k rows/tx", 1)}


@dataclass
class Figure:
    system: str
    scenario: str
    measure: str
    samples: list[float] = field(default_factory=list)
    error: str | None = None
    ratio: float | None = None  # evq's median / this one's (peers' rows); growth: / at 10k
    of_ceiling: float | None = None  # events/s written / rows/s possible (evq's rows)
    notes: list[str] = field(default_factory=list)  # as "3,100 of 10,000 done in 120 s"

    @property
    def kind(self) -> tuple[str, bool]:
        if self.measure in MEASURES:
            return MEASURES[self.measure]
        return GROWTH.get(self.measure.split(" ")[0], ("", True))

    @property
    def unit(self) -> str:
        return self.kind[0]

    @property
    def higher_is_better(self) -> bool:
        return self.kind[1]

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
                "error": self.error, "notes": self.notes, "ratio": self.ratio,
                "fraction_of_ceiling": self.of_ceiling}


# one repetition's figures, with the raw latency samples in the latency scenario; or (a case
# that does its repetitions itself, ``once``) every sample of each measure
Result = dict[str, float] | tuple[dict[str, float], list[float]] | dict[str, list[float]]


@dataclass(frozen=True)
class Case:
    system: str
    scenario: str
    label: str  # names the row when the case fails
    measures: tuple[str, ...]
    run: Callable[[Settings, Path, Callable[[str], None]], Result]
    once: bool = False  # runs its repetitions itself (a big log is built once)
    service: peer_bench.Service | None = None  # must answer before the case runs


LATENCY = ("p50", "p95", "p99", "idle CPU")


def cases() -> list[Case]:
    out: list[Case] = []
    for system, store, service in (("evq", evq_bench.sqlite_store, None),
                                   ("evq-pg", evq_bench.postgres_store, peer_bench.POSTGRES)):
        def on_store(system: str = system, service: Any = service, **kw: Any) -> Case:
            return Case(system=system, service=service, **kw)

        out += [on_store(scenario="dispatch", label="single", measures=("single",),
                   run=lambda s, t, say, st=store: evq_bench.dispatch_single(s.jobs, t, st)),
                on_store(scenario="dispatch", label="bulk", measures=("bulk",),
                   run=lambda s, t, say, st=store: evq_bench.dispatch_bulk(s.jobs, t, st))]
        out += [on_store(scenario="drain", label=workers_label(w), measures=(workers_label(w),),
                   run=lambda s, t, say, w=w, st=store: evq_bench.drain(s.jobs, w, t, st))
                for w in DRAIN_WORKERS]
        out.append(on_store(scenario="latency", label="p50 p95 p99 idle CPU", measures=LATENCY,
                      run=lambda s, t, say, st=store: evq_bench.latency(
                          s.latency_jobs, s.gap, s.idle_wait, s.cpu_window, t, st)))
    out.append(Case("evq", "replay", "events/s", ("events/s", "build"),
                    lambda s, t, say: evq_growth.replay(s.replay_events, s.repeat, t, say),
                    once=True))
    growth = tuple(f"{what} {evq_growth.label(size)}" for size in FULL.growth_sizes
                   for what in GROWTH)
    out.append(Case("evq", "growth", "growth", growth,
                    lambda s, t, say: evq_growth.costs(s.growth_sizes, s.growth_calls,
                                                       s.repeat, t, say), once=True))
    for p in peer_bench.PEERS:
        def on(peer: peer_bench.Peer = p, **kw: Any) -> dict[str, Any]:
            return dict(system=peer.name, service=peer.service, **kw)

        out.append(Case(**on(scenario="dispatch", label="single", measures=("single",),
                             run=lambda s, t, say, p=p: p.dispatch_single(s.jobs, t))))
        if p.bulk:
            out.append(Case(**on(scenario="dispatch", label="bulk", measures=("bulk",),
                                 run=lambda s, t, say, p=p: p.dispatch_bulk(s.jobs, t))))
        out += [Case(**on(scenario="drain", label=workers_label(w),
                          measures=(workers_label(w),),
                          run=lambda s, t, say, p=p, w=w: p.drain(s.jobs, w, s.drain_limit,
                                                                  t)))
                for w in DRAIN_WORKERS]
        out.append(Case(**on(scenario="latency", label="p50 p95 p99 idle CPU", measures=LATENCY,
                             run=lambda s, t, say, p=p: p.latency(
                                 s.latency_jobs, s.gap, s.idle_wait, s.cpu_window, t))))
    out.append(Case("sqlite3", "ceiling", "1 row/tx", ("1 row/tx",),
                    lambda s, t, say: sqlite_bench.one_per_transaction(s.ceiling_single, t)))
    out.append(Case("sqlite3", "ceiling", "10k rows/tx", ("10k rows/tx",),
                    lambda s, t, say: sqlite_bench.batched(s.ceiling_batched, t)))
    return out


def selected(systems: list[str], scenarios: list[str]) -> list[Case]:
    """The cases to run, scenario by scenario (the ceiling first: evq's rows refer to it)."""
    order = ["ceiling", *[s for s in SCENARIOS if s != "ceiling"]]
    chosen = [c for c in cases() if c.system in systems and c.scenario in scenarios]
    return sorted(chosen, key=lambda c: (order.index(c.scenario), SYSTEMS.index(c.system)))


def run(plan: list[Case], settings: Settings, tmp: Path,
        say: Callable[[str], None]) -> tuple[list[Figure], dict[str, list[float]]]:
    """Run every case ``settings.repeat`` times, round by round (so that a passing load on the
    machine falls on every system alike); a case that fails once becomes one failed row. A
    case whose service does not answer fails without running, with one line per service.

    Returns the figures and the raw latency samples (ms) of each system."""
    got = [{m: Figure(c.system, c.scenario, m) for m in c.measures} for c in plan]
    raw: list[list[float]] = [[] for _ in plan]
    t0 = time.monotonic()

    def failed(n: int, reason: str) -> None:
        case = plan[n]
        got[n] = {case.label: Figure(case.system, case.scenario, case.label, error=reason)}
        raw[n] = []

    down: dict[str, str | None] = {}
    for n, case in enumerate(plan):
        if case.service is None:
            continue
        if case.service.name not in down:
            down[case.service.name] = reason = case.service.down()
            if reason:
                users = sorted({c.system for c in plan if c.service == case.service},
                               key=SYSTEMS.index)
                say(f"{reason}: not running {', '.join(users)}")
        reason = down[case.service.name]
        if reason:
            failed(n, reason)
    for rep in range(settings.repeat):
        for n, case in enumerate(plan):
            if any(f.error for f in got[n].values()) or (case.once and rep > 0):
                continue
            folder = tmp / f"{n}-{case.system}-{case.scenario}-{rep}"
            folder.mkdir(parents=True)
            try:
                result = case.run(settings, folder, say)
            except Exception as exc:
                reason = " ".join(str(exc).split()) or type(exc).__name__
                say(f"[{time.monotonic() - t0:6.1f}s] {case.system} {case.scenario} "
                    f"{case.label}: failed: {reason}")
                failed(n, reason)
                continue
            finally:
                shutil.rmtree(folder, ignore_errors=True)
            if isinstance(result, tuple):
                result, more = result
                raw[n] += more
            if "partial" in result:
                done, total, limit = result.pop("partial")  # type: ignore[misc]
                note = f"{done:,} of {total:,} done in {limit:.0f} s"
                say(f"  {case.system} {case.scenario} {case.label}: cut short, {note}")
                got[n][case.label].notes.append(note)
            if case.once:
                got[n] = {m: Figure(case.system, case.scenario, m, list(v))
                          for m, v in result.items()}  # type: ignore[arg-type]
                shown = ", ".join(f"{m} {statistics.median(v):,.1f}"  # type: ignore[arg-type]
                                  for m, v in result.items())
                say(f"[{time.monotonic() - t0:6.1f}s] {case.system} {case.scenario}: {shown}")
                continue
            for m in case.measures:
                got[n][m].samples.append(result[m])  # type: ignore[arg-type]
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


def _ok(figures: list[Figure]) -> dict[tuple[str, str], Figure]:
    return {(f.system, f.measure): f for f in figures if f.error is None and f.samples}


def compare(figures: list[Figure]) -> None:
    """Fill in evq/peer ratios (on the peers' rows: evq on PostgreSQL for the peers on
    PostgreSQL, evq on SQLite for the others), fractions of the ceiling (evq's) and, in the
    growth scenario, each cost over its cost at the smallest log."""
    ok = _ok(figures)
    for f in ok.values():
        evq = ok.get(("evq-pg" if f.system in ON_POSTGRES else "evq", f.measure))
        if f.system not in ("evq", "evq-pg", "sqlite3") and evq is not None and f.median:
            f.ratio = evq.median / f.median
        if f.system == "evq" and f.measure in CEILING_OF:
            measure, events = CEILING_OF[f.measure]
            ceiling = ok.get(("sqlite3", measure))
            if ceiling is not None:
                f.of_ceiling = f.median * events / ceiling.median
        if f.scenario == "growth" and f.measure.startswith("dispatch "):
            ceiling = ok.get(("sqlite3", "1 row/tx"))
            if ceiling is not None:  # µs a call -> calls/s, one event each
                f.of_ceiling = 1e6 / f.median / ceiling.median
        if f.scenario == "growth" and not f.measure.startswith("build"):
            what = f.measure.split(" ")[0]
            first = next(g for g in figures if g.scenario == "growth"
                         and g.measure.startswith(what + " "))
            if first is not f and first.error is None and first.samples and first.median:
                f.ratio = f.median / first.median


def fastest(ok: dict[tuple[str, str], Figure], measure: str) -> Figure | None:
    """The peer with the best median of ``measure``."""
    rows = [f for (system, m), f in ok.items() if m == measure and system in PEERS]
    if not rows:
        return None
    pick = max if rows[0].higher_is_better else min
    return pick(rows, key=lambda f: f.median)


def targets(figures: list[Figure]) -> list[tuple[str, str, bool]]:
    """evq's targets from the issue: (what, measured, met)."""
    ok = _ok(figures)
    out = []

    def evq(measure: str) -> Figure | None:
        return ok.get(("evq", measure))

    bulk = evq("bulk")
    if bulk is not None:
        out.append(("evq bulk dispatch >= 100,000 jobs/s", f"{bulk.median:,.0f} jobs/s",
                    bulk.median >= 100_000))
    for measure, times, what in (("single", 2, "single dispatch"),
                                 ("2 workers", 5, "drain with 2 worker processes")):
        mine, best = evq(measure), fastest(ok, measure)
        if mine is not None and best is not None:
            ratio = mine.median / best.median
            out.append((f"evq {what} >= {times}x the fastest peer's ({best.system})",
                        f"{ratio:.2f}x", ratio >= times))
    one, two = evq("1 worker"), evq("2 workers")
    if one is not None and two is not None:
        out.append(("evq drain: 2 worker processes faster than 1",
                    f"{two.median / one.median:.2f}x", two.median > one.median))
    for measure in ("p50", "p99"):
        mine, best = evq(measure), fastest(ok, measure)
        if mine is not None and best is not None:
            out.append((f"evq latency {measure} below every peer's (best: {best.system}, "
                        f"{best.median:.1f} ms)", f"{mine.median:.1f} ms",
                        mine.median < best.median))
    cpu = evq("idle CPU")
    if cpu is not None:
        out.append(("evq idle worker < 2% of a core", f"{cpu.median:.1f} %", cpu.median < 2))
    rate = evq("events/s")
    if rate is not None:
        out.append(("evq replay >= 200,000 events/s", f"{rate.median:,.0f} events/s",
                    rate.median >= 200_000))
    growth = [f for f in figures if f.scenario == "growth" and f in ok.values()]
    for f in growth:
        what, size = f.measure.split(" ")
        if what in ("dispatch", "claim+run") and f.ratio is not None:
            out.append((f"evq {what} cost at {size} events within 1.2x of its cost at the "
                        "smallest log", f"{f.ratio:.2f}x", f.ratio <= 1.2))
        if what in ("history", "stats") and size == growth[-1].measure.split(" ")[1]:
            out.append((f"evq {what} as a whole command under 250 ms at {size} events",
                        f"{f.median:.0f} ms", f.median < 250))
    return out
