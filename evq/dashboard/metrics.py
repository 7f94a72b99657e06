"""``/metrics`` in the Prometheus text format, from the projections (no scan of the log)."""

from __future__ import annotations

from evq.api import Queue


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def text(queue: Queue) -> str:
    """Queue depths by state, attempts by outcome, durations as summaries (percentiles over the
    latest jobs, as ``q.stats()`` computes them) and workers alive."""
    stats = queue.stats()
    out = ["# HELP evq_jobs Jobs per queue and state.", "# TYPE evq_jobs gauge"]
    for q, counts in stats["queues"].items():
        for state, n in counts.items():
            if isinstance(n, int):
                out.append(f'evq_jobs{{queue="{_label(q)}",state="{state}"}} {n}')
    out += ["# HELP evq_attempts_total Attempts per job type and outcome.",
            "# TYPE evq_attempts_total counter"]
    for name, t in stats["job_types"].items():
        for outcome, key in (("succeeded", "succeeded"), ("failed", "failures")):
            out.append(f'evq_attempts_total{{name="{_label(name)}",outcome="{outcome}"}} '
                       f'{t.get(key, 0)}')
    for kind, prefix in (("run", "duration"), ("wait", "wait")):
        metric = f"evq_job_{kind}_seconds"
        out += [f"# HELP {metric} Job {kind} time (latest jobs).", f"# TYPE {metric} summary"]
        for name, t in stats["job_types"].items():
            for p in (50, 95, 99):
                v = t.get(f"{prefix}_p{p}")
                if v is not None:
                    out.append(f'{metric}{{name="{_label(name)}",quantile="0.{p}"}} {v}')
    alive = sum(w.status == "alive" for w in queue.workers())
    out += ["# HELP evq_workers_alive Workers alive.", "# TYPE evq_workers_alive gauge",
            f"evq_workers_alive {alive}"]
    return "\n".join(out) + "\n"
