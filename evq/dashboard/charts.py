"""Server-side inline SVG: throughput and failure rate per minute over the last hour."""

from __future__ import annotations

from collections.abc import Sequence

from evq.projections.model import MinuteCounts

WIDTH, HEIGHT = 600, 120


def per_minute(rows: Sequence[MinuteCounts], now: float) -> list[tuple[int, int, int]]:
    """(minute, successes, failures) for each of the 60 minutes up to ``now``."""
    last = int(now // 60) * 60
    minutes = {m: [0, 0] for m in range(last - 59 * 60, last + 60, 60)}
    for r in rows:
        if r.minute in minutes:
            minutes[r.minute][0] += r.successes
            minutes[r.minute][1] += r.failures
    return [(m, s, f) for m, (s, f) in sorted(minutes.items())]


def svg(points: list[tuple[int, int, int]]) -> str:
    """Stacked bars (successes green, failures red) and the failure rate as a line."""
    top = max((s + f for _, s, f in points), default=0) or 1
    bar = WIDTH / max(len(points), 1)
    parts, rate = [], []
    for i, (_, s, f) in enumerate(points):
        x = i * bar
        hs, hf = HEIGHT * s / top, HEIGHT * f / top
        parts.append(f'<rect x="{x:.1f}" y="{HEIGHT - hs:.1f}" width="{bar - 1:.1f}" '
                     f'height="{hs:.1f}" fill="#4a4"/>')
        parts.append(f'<rect x="{x:.1f}" y="{HEIGHT - hs - hf:.1f}" width="{bar - 1:.1f}" '
                     f'height="{hf:.1f}" fill="#c33"/>')
        r = f / (s + f) if s + f else 0.0
        rate.append(f"{x + bar / 2:.1f},{HEIGHT * (1 - r):.1f}")
    line = f'<polyline points="{" ".join(rate)}" fill="none" stroke="#a50" stroke-width="1"/>'
    return (f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" '
            f'height="{HEIGHT}" role="img" aria-label="attempts per minute">'
            + "".join(parts) + line + "</svg>")
