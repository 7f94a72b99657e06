"""Server-side inline SVG of a workflow: its jobs in layers (a job's layer is the length of the
longest path to it from a job that waits for nothing), an arrow from each dependency to the job
that waits for it, each job a link to its page, coloured by its state."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from graphlib import TopologicalSorter
from html import escape
from typing import Any, NamedTuple

MAX_NODES = 500  # beyond this the group page lists the jobs only
NODE_W, NODE_H, GAP_X, GAP_Y, PAD = 190, 40, 50, 12, 8
LABEL_CHARS = 26  # a longer name is cut (the whole of it is the node's tooltip)

Edge = tuple[int, int]  # (the dependency's id, the id of the job that waits for it)


class Node(NamedTuple):
    """A job to draw: its id (the link to its page), label (its name) and state (its colour)."""

    id: int
    label: str
    state: str


def layers(nodes: Sequence[Node], edges: Iterable[Edge]) -> dict[int, int]:
    """Each node's layer: the length of the longest path to it from a root. Edges naming a
    node not given are left out; a cycle raises ``graphlib.CycleError``."""
    deps: dict[int, set[int]] = {n.id: set() for n in nodes}
    for dep, job in edges:
        if dep in deps and job in deps:
            deps[job].add(dep)
    layer: dict[int, int] = {}
    for i in TopologicalSorter(deps).static_order():
        layer[i] = max((layer[d] + 1 for d in deps[i]), default=0)
    return layer


def svg(nodes: Sequence[Node], edges: Collection[Edge], soft: Collection[Edge] = ()) -> str:
    """The graph as an ``<svg>`` element: layers left to right, each layer's nodes top to
    bottom by id; ``soft`` edges (the job runs even if the dependency fails) are dashed."""
    layer = layers(nodes, edges)
    columns: dict[int, list[Node]] = {}
    for n in sorted(nodes, key=lambda n: n.id):
        columns.setdefault(layer[n.id], []).append(n)
    at = {n.id: (PAD + c * (NODE_W + GAP_X), PAD + r * (NODE_H + GAP_Y))
          for c, column in columns.items() for r, n in enumerate(column)}
    width = PAD * 2 + len(columns) * (NODE_W + GAP_X) - GAP_X
    height = PAD * 2 + max(map(len, columns.values()), default=0) * (NODE_H + GAP_Y) - GAP_Y
    parts = ['<defs><marker id="arrow" viewBox="0 0 6 6" refX="6" refY="3" markerWidth="6" '
             'markerHeight="6" orient="auto"><path d="M0,0L6,3L0,6z"/></marker></defs>']
    for dep, job in sorted(edges):
        if dep in at and job in at:
            (x1, y1), (x2, y2) = at[dep], at[job]
            x1, y1, y2 = x1 + NODE_W, y1 + NODE_H // 2, y2 + NODE_H // 2  # right side to left
            mid = (x1 + x2) // 2
            css = "edge soft" if (dep, job) in soft else "edge"
            parts.append(f'<path class="{css}" d="M{x1},{y1} C{mid},{y1} {mid},{y2} {x2},{y2}" '
                         'marker-end="url(#arrow)"/>')
    for n in nodes:
        x, y = at[n.id]
        short = n.label if len(n.label) <= LABEL_CHARS else n.label[:LABEL_CHARS - 1] + "…"
        parts.append(f'<a href="/jobs/{n.id}" class="node {escape(n.state)}">'
                     f"<title>{escape(n.label)} ({escape(n.state)})</title>"
                     f'<rect x="{x}" y="{y}" width="{NODE_W}" height="{NODE_H}" rx="6"/>'
                     f'<text x="{x + 8}" y="{y + 16}">{escape(short)}</text>'
                     f'<text class="id" x="{x + 8}" y="{y + 32}">#{n.id} {escape(n.state)}'
                     "</text></a>")
    return (f'<svg class="graph" viewBox="0 0 {width} {height}" width="{width}" '
            f'height="{height}" role="img" aria-label="the workflow\'s jobs and what each waits '
            'for">' + "".join(parts) + "</svg>")


def of_group(group: dict[str, Any]) -> str | None:
    """The graph of a workflow or chain as :meth:`evq.Queue.group` gives it; None for a batch
    (its jobs wait for nothing) and beyond ``MAX_NODES`` jobs."""
    jobs = group.get("jobs") or []
    if not jobs or len(jobs) > MAX_NODES:
        return None
    nodes = [Node(j["id"], j["name"], j["state"]) for j in jobs]
    edges = [(d, j["id"]) for j in jobs for d in j["after"]]
    soft = {(d, j["id"]) for j in jobs for d in j["ignore_failure"]}
    return svg(nodes, edges, soft)
