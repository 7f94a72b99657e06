"""``python -m benchmarks``: evq beside the Python queues people use and plain sqlite3, in one
table."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console

from . import machine, peer_bench, plot, suite, table

HERE = Path(__file__).resolve().parent


def names(value: str | None, known: tuple[str, ...], what: str) -> list[str]:
    """The comma-separated names of ``value`` (all of ``known`` if None); exits with code 2 on
    an unknown one."""
    if value is None:
        return list(known)
    chosen = [v.strip() for v in value.split(",") if v.strip()]
    for name in chosen:
        if name not in known:
            sys.stderr.write(f"python -m benchmarks: unknown {what} {name!r} "
                             f"(choose from {', '.join(known)})\n")
            sys.exit(2)
    if not chosen:
        sys.stderr.write(f"python -m benchmarks: no {what} given\n")
        sys.exit(2)
    return chosen


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Benchmark evq's SQLite store beside huey, rq, dramatiq, celery, "
                    "procrastinate, arq, saq, taskiq, pgqueuer, chancy, oban and dbos (each in "
                    "its own venv under benchmarks/.venvs) and plain sqlite3. Run from the "
                    "repository root.")
    p.add_argument("--quick", action="store_true",
                   help="a small version (about 10 minutes with every peer): fewer jobs, one "
                        "repetition, a smaller log for replay and growth")
    p.add_argument("--only", metavar="SYSTEMS",
                   help=f"comma-separated systems to run: {','.join(suite.SYSTEMS)}")
    p.add_argument("--scenario", metavar="SCENARIOS",
                   help=f"comma-separated scenarios to run: {','.join(suite.SCENARIOS)}")
    p.add_argument("--repeat", type=int, metavar="N",
                   help="repetitions of each figure (default 3, 1 with --quick)")
    p.add_argument("--latency-jobs", type=int, metavar="N",
                   help="jobs of the latency scenario (default 200, 100 with --quick; its p99 "
                        "is the 1%% tail: more jobs make it steadier)")
    p.add_argument("--json", metavar="FILE", type=Path,
                   help="also write every figure and the machine description to FILE")
    p.add_argument("--plot", metavar="FILE", type=Path,
                   help="write a PNG (needs matplotlib); default benchmarks/results.png on a "
                        "full run of every system and scenario, none otherwise")
    p.add_argument("--no-plot", action="store_true", help="write no PNG")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    systems = names(args.only, suite.SYSTEMS, "system")
    scenarios = names(args.scenario, suite.SCENARIOS, "scenario")
    for option, value in (("--repeat", args.repeat), ("--latency-jobs", args.latency_jobs)):
        if value is not None and value < 1:
            sys.stderr.write(f"python -m benchmarks: {option} must be at least 1\n")
            return 2
    settings = suite.QUICK if args.quick else suite.FULL
    if args.repeat is not None:
        settings = dataclasses.replace(settings, repeat=args.repeat)
    if args.latency_jobs is not None:
        settings = dataclasses.replace(settings, latency_jobs=args.latency_jobs)
    plan = suite.selected(systems, scenarios)
    if not plan:
        sys.stderr.write(f"python -m benchmarks: nothing to run for {', '.join(systems)} in "
                         f"{', '.join(scenarios)} (sqlite3 has only the ceiling scenario, "
                         f"{' and '.join(suite.EVQ_ONLY)} are evq's only)\n")
        return 2
    out, err = Console(), Console(stderr=True, highlight=False)
    if not out.is_terminal:  # a file or a pipe: room for the whole table
        out = Console(width=140)

    def say(text: str) -> None:
        err.print(text, markup=False)

    peer_bench.log = say
    used = {c.system for c in plan}
    about = machine.describe({p.name: p.versions() for p in peer_bench.PEERS if p.name in used})
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="evq-bench-") as tmp:
        figures, samples = suite.run(plan, settings, Path(tmp), say)
    machine.finish(about)
    targets = suite.targets(figures)
    kind = "quick" if args.quick else "full"
    title = (f"evq benchmarks ({kind} run: {settings.repeat} repetition(s), {settings.jobs:,} "
             f"jobs for dispatch and drain, {settings.latency_jobs} for latency)")
    table.render(figures, targets, title, machine.summary(about), out)

    if args.json:
        report = {"machine": about, "settings": dataclasses.asdict(settings), "kind": kind,
                  "started": started, "seconds": round(time.time() - started, 1),
                  "figures": [f.to_json() for f in figures],
                  "targets": [{"target": t, "measured": m, "met": ok} for t, m, ok in targets],
                  "latency_samples_ms": samples}
        args.json.write_text(json.dumps(report, indent=1) + "\n")
        say(f"figures written to {args.json}")
    full = not args.quick and len(plan) == len(suite.selected(list(suite.SYSTEMS),
                                                              list(suite.SCENARIOS)))
    target = args.plot or (HERE / "results.png" if full else None)
    if target is not None and not args.no_plot:
        say(plot.write(figures, samples, target))
    return 0


if __name__ == "__main__":
    sys.exit(main())
