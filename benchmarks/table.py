"""The results as a rich table."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .peer_bench import BY_NAME
from .suite import Figure


def number(value: float) -> str:
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def store_of(system: str) -> str:
    if system in ("evq", "sqlite3"):
        return "SQLite"
    if system == "evq-pg":
        return "Postgres"
    return BY_NAME[system].store


def render(figures: list[Figure], targets: list[tuple[str, str, bool]], title: str,
           about: str, console: Console) -> None:
    table = Table(title=title, title_justify="left", show_lines=False)
    for name, justify in (("scenario", "left"), ("system", "left"), ("store", "left"),
                          ("measure", "left"), ("median", "right"), ("min", "right"),
                          ("max", "right"), ("unit", "left"), ("ratio", "right"),
                          ("evq of ceiling", "right")):
        table.add_column(name, justify=justify, overflow="fold",  # type: ignore[arg-type]
                         ratio=4 if name == "measure" else None)
    previous: Figure | None = None
    for f in figures:
        if previous is not None and f.scenario != previous.scenario:
            table.add_section()
        scenario = "" if previous and f.scenario == previous.scenario else f.scenario
        system = "" if previous and not scenario and f.system == previous.system else f.system
        previous = f
        store = store_of(f.system) if system else ""
        if f.error is not None:
            table.add_row(scenario, system, store,
                          f"{escape(f.measure)}: [red]failed: {escape(f.error)}[/red]",
                          "", "", "", "", "", "")
            continue
        arrow = "↑" if f.higher_is_better else "↓"
        measure = f.measure + "".join(f" [dim]({escape(n)})[/dim]" for n in f.notes)
        table.add_row(scenario, system, store, measure, number(f.median),
                      number(min(f.samples)),
                      number(max(f.samples)), f"{f.unit} {arrow}",
                      f"{f.ratio:.2f}x" if f.ratio is not None else "",
                      f"{f.of_ceiling:.1%}" if f.of_ceiling is not None else "")
    console.print(table)
    console.print(f"machine: {about}", highlight=False, markup=False)
    console.print("median, min and max of the repetitions; ↑ higher is better, ↓ lower is "
                  "better; ratio: on a peer's row evq's median over the peer's (for ↓ rows below "
                  "1 means evq is better), on a growth row the cost over the same cost at the "
                  "smallest log; evq of ceiling: events/s evq wrote over sqlite3's rows/s "
                  "(1 event per dispatch, 4 per drained job; replay: events replayed/s over rows/s "
                  "written in batches). *Redis here keeps nothing on "
                  "disk: not durable (a restart loses every queued job); SQLite and PostgreSQL "
                  "are durable.", highlight=False)
    for what, measured, met in targets:
        mark = "[green]met[/green]" if met else "[red]missed[/red]"
        console.print(f"target {what}: {measured}, {mark}", highlight=False)
