"""An optional PNG of the results (skipped when matplotlib is missing)."""

from __future__ import annotations

from pathlib import Path

from .suite import SYSTEMS, Figure


def colour(system: str) -> str:
    """One colour per system, the same in both panels (evq blue, sqlite3 grey)."""
    if system == "sqlite3":
        return "tab:gray"
    palette = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown",
               "tab:pink", "tab:olive", "tab:cyan", "gold"]
    return palette[SYSTEMS.index(system) % len(palette)]


def write(figures: list[Figure], samples: dict[str, list[float]], path: Path) -> str:
    """Draw throughput by system and the latency distributions; returns what happened."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "no plot: matplotlib is not installed (pip install matplotlib)"
    rates = [f for f in figures if f.error is None and f.samples and f.unit.endswith("/s")
             and f.scenario in ("dispatch", "drain", "ceiling")]
    fig, (left, right) = plt.subplots(1, 2, figsize=(14, max(5.0, 0.28 * len(rates) + 1)))
    labels = [f"{f.system} {f.scenario} {f.measure}" for f in rates]
    medians = [f.median for f in rates]
    spread = [[f.median - min(f.samples) for f in rates], [max(f.samples) - f.median
                                                           for f in rates]]
    left.barh(labels, medians, xerr=spread, color=[colour(f.system) for f in rates])
    left.set_xscale("log")
    left.invert_yaxis()
    left.set_xlabel("jobs/s or rows/s (median, min-max; log scale)")
    left.set_title("Throughput by system and worker processes")
    for system, values in samples.items():
        ordered = sorted(values)
        n = len(ordered)
        right.plot(ordered, [(i + 1) / n for i in range(n)], label=system,
                   color=colour(system))
    right.set_xscale("log")
    right.set_xlabel("dispatch to start (ms, log scale)")
    right.set_ylabel("fraction of jobs")
    right.set_title("Latency distribution (idle worker, all repetitions)")
    right.legend()
    right.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return f"plot written to {path}"
