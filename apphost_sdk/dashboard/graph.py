"""The resources page's graph: resources as nodes, references and waits as arrows, in SVG.

Drawn on the server (no JavaScript layout library): resources are placed in columns by their
dependency depth (a resource that depends on nothing is in the first column, its dependents to
its right), each a box coloured by state that links to its console logs. Waits are dashed and
labelled with their kind. Every text is escaped; the output is well-formed XML.
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import quote

from markupsafe import escape

from .source import ResourceView

NODE_WIDTH = 180
NODE_HEIGHT = 48
COLUMN_GAP = 90  # room for the arrows and their labels between columns
ROW_GAP = 22
MARGIN = 16
_NAME_CHARS = 22

#: Fill colours by state; states not named here are grey.
STATE_COLOURS = {
    "Running": "#2da44e",
    "Provisioned": "#2da44e",
    "Waiting": "#d4a72c",
    "Starting": "#d4a72c",
    "Provisioning": "#d4a72c",
    "Stopping": "#d4a72c",
    "FailedToStart": "#d1242f",
}
_GREY = "#8c959f"
_RED = "#d1242f"


def state_colour(state: str) -> str:
    """The fill of a node in ``state``: green running, amber on its way, red failed, else grey."""
    if state.startswith("Failed"):
        return _RED
    return STATE_COLOURS.get(state, _GREY)


def layers(resources: Sequence[ResourceView]) -> dict[str, int]:
    """Each resource's column: 0 when it depends on no (known) resource, else one more than
    its deepest dependency. A cycle is cut where it closes, so every resource gets a column."""
    known = {r.name: r for r in resources}
    depth: dict[str, int] = {}

    def visit(name: str, path: frozenset[str]) -> int:
        if name in depth:
            return depth[name]
        targets = [
            rel.target
            for rel in known[name].relations
            if rel.target in known and rel.target not in path and rel.target != name
        ]
        result = 1 + max((visit(t, path | {name}) for t in targets), default=-1)
        depth[name] = result
        return result

    for resource in resources:
        visit(resource.name, frozenset())
    return depth


def resource_graph_svg(resources: Sequence[ResourceView]) -> str:
    """An inline ``<svg id="graph">``: one ``<g class="node" data-resource=NAME>`` per resource
    and one ``<g class="edge">`` per relation to a known resource."""
    columns = layers(resources)
    positions: dict[str, tuple[int, int]] = {}
    rows: dict[int, int] = {}
    for resource in resources:
        column = columns[resource.name]
        row = rows.get(column, 0)
        rows[column] = row + 1
        x = MARGIN + column * (NODE_WIDTH + COLUMN_GAP)
        y = MARGIN + row * (NODE_HEIGHT + ROW_GAP)
        positions[resource.name] = (x, y)
    width = MARGIN * 2 + max(1, len(rows)) * (NODE_WIDTH + COLUMN_GAP) - COLUMN_GAP
    height = MARGIN * 2 + max(1, max(rows.values(), default=1)) * (NODE_HEIGHT + ROW_GAP) - ROW_GAP
    parts = [
        f'<svg id="graph" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" '
        'aria-label="Resources and their references and waits" '
        'style="max-width:100%;height:auto" font-family="sans-serif">',
        "<defs>"
        '<marker id="graph-arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto-start-reverse">'
        '<path d="M0,0 L10,5 L0,10 z" fill="currentColor"/></marker></defs>',
    ]
    if not resources:
        parts.append(
            f'<text x="{MARGIN}" y="{MARGIN + 16}" fill="currentColor">No resources</text></svg>'
        )
        return "".join(parts)
    parts.append('<g class="edges" fill="none" stroke="currentColor" stroke-opacity="0.7">')
    for resource in resources:
        pairs: dict[str, list[str]] = {}  # target -> kinds: a reference and a wait side by side
        for relation in resource.relations:
            if relation.target in positions and relation.target != resource.name:
                pairs.setdefault(relation.target, []).append(relation.kind)
        for target, kinds in pairs.items():
            for index, kind in enumerate(kinds):
                shift = round((index - (len(kinds) - 1) / 2) * 8)
                (ax, ay), (tx, ty) = positions[resource.name], positions[target]
                parts.append(_edge(resource.name, target, kind, (ax, ay + shift), (tx, ty + shift)))
    parts.append("</g>")
    parts.extend(_node(r, positions[r.name]) for r in resources)
    parts.append("</svg>")
    return "".join(parts)


def _edge(source: str, target: str, kind: str, at: tuple[int, int], to: tuple[int, int]) -> str:
    """An arrow from the dependent's left side to its dependency's right side; waits dashed
    and labelled with their kind."""
    x1, y1 = at[0], at[1] + NODE_HEIGHT // 2
    x2, y2 = to[0] + NODE_WIDTH, to[1] + NODE_HEIGHT // 2
    bend = max(30, abs(x1 - x2) // 2)
    path = f"M{x1},{y1} C{x1 - bend},{y1} {x2 + bend},{y2} {x2},{y2}"
    is_wait = kind.startswith("wait")
    dash = ' stroke-dasharray="5 4"' if is_wait else ""
    label = ""
    if is_wait:
        mx, my = (x1 + x2) // 2, (y1 + y2) // 2 - 4
        label = (
            f'<text x="{mx}" y="{my}" text-anchor="middle" font-size="10" stroke="none" '
            f'fill="currentColor">{escape(kind)}</text>'
        )
    return (
        f'<g class="edge" data-from="{escape(source)}" data-to="{escape(target)}" '
        f'data-kind="{escape(kind)}"><title>{escape(source)} {escape(_verb(kind))} '
        f'{escape(target)}</title><path d="{path}"{dash} marker-end="url(#graph-arrow)"/>'
        f"{label}</g>"
    )


def _verb(kind: str) -> str:
    """How an edge's tooltip reads: ``api references cache``, ``api waits for cache``."""
    return {
        "reference": "references",
        "wait": "waits for (healthy)",
        "wait-start": "waits for the start of",
        "wait-completion": "waits for the completion of",
    }.get(kind, kind)


def _node(resource: ResourceView, at: tuple[int, int]) -> str:
    """A resource's box: name, kind and state, linking to its console logs."""
    x, y = at
    name = resource.name
    shown = name if len(name) <= _NAME_CHARS else name[: _NAME_CHARS - 1] + "…"
    colour = state_colour(resource.state)
    tooltip = f"{name} ({resource.kind}): {resource.state}, health {resource.health}"
    if resource.health_reason:
        tooltip += f" ({resource.health_reason})"
    href = "/consolelogs/resource/" + quote(name, safe="")
    return (
        f'<g class="node" data-resource="{escape(name)}" data-state="{escape(resource.state)}">'
        f'<a href="{escape(href)}"><title>{escape(tooltip)}</title>'
        f'<rect x="{x}" y="{y}" width="{NODE_WIDTH}" height="{NODE_HEIGHT}" rx="6" '
        f'fill="{colour}" fill-opacity="0.15" stroke="{colour}" stroke-width="2"/>'
        f'<circle cx="{x + 12}" cy="{y + 16}" r="5" fill="{colour}"/>'
        f'<text x="{x + 24}" y="{y + 20}" font-size="13" font-weight="bold" '
        f'fill="currentColor">{escape(shown)}</text>'
        f'<text x="{x + 12}" y="{y + 38}" font-size="11" fill="currentColor">'
        f"{escape(resource.kind)} · {escape(resource.state)}</text></a></g>"
    )
