"""HTML of the dashboard's own pages: the shared layout, the login page, the resources page and
the console logs pages (the telemetry pages come from ``telemetry_views``).

Templates are Jinja2 with autoescaping on; the only markup passed through unescaped is what this
module or ``ansi`` built from escaped parts (and the graph/telemetry views, which escape theirs).
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import quote

import attrs
import jinja2
from markupsafe import Markup, escape

from ..telemetry.models import ConsoleLine, Page
from . import ansi
from .source import ResourceView

TEMPLATES = Path(__file__).parent / "templates"

#: The nav's pages: (key, label, href).
NAV = (
    ("resources", "Resources", "/"),
    ("console", "Console", "/consolelogs"),
    ("logs", "Structured logs", "/structuredlogs"),
    ("traces", "Traces", "/traces"),
    ("metrics", "Metrics", "/metrics"),
)

#: How relations read in the details pane.
RELATION_LABELS = {
    "reference": "references",
    "wait": "waits for (healthy)",
    "wait-start": "waits for (started)",
    "wait-completion": "waits for (completed)",
}


@lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=False,
    )


def render(template: str, **values: Any) -> str:
    """Render one template of ``templates/`` with ``values`` (autoescaped)."""
    return _environment().get_template(template).render(**values)


# -- layout ---------------------------------------------------------------------------------
def layout(title: str, active: str, content: str, *, topic: str = "", resource: str = "") -> str:
    """A whole page: nav, CSS/JS and ``content`` (already escaped HTML) in ``<main id=content>``;
    ``topic`` names the live-update stream the page's script subscribes to."""
    nav = [{"key": key, "label": label, "href": href} for key, label, href in NAV]
    return render(
        "base.html",
        title=title,
        active=active,
        nav=nav,
        topic=topic,
        resource=resource,
        content=Markup(content),
    )


def login_page(return_url: str, failed: bool) -> str:
    """The login form (paste the token) that comes back to ``return_url``."""
    return render("login.html", return_url=return_url, failed=failed)


def message(title: str, text: str) -> str:
    """A plain content block (a placeholder or a not-found notice)."""
    return f'<h1>{escape(title)}</h1>\n<p class="empty">{escape(text)}</p>'


# -- resources ------------------------------------------------------------------------------
def _slug(value: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in value.lower())


def _time_texts(started_at: float | None) -> tuple[str, str]:
    """``(RFC 3339 with milliseconds, local text)`` of a start time: the milliseconds make a
    restart within the same second change the page (and the live swap)."""
    if started_at is None:
        return "", ""
    moment = datetime.fromtimestamp(started_at).astimezone()
    return moment.isoformat(timespec="milliseconds"), moment.strftime("%Y-%m-%d %H:%M:%S")


def _link(url: str) -> str | None:
    """``url`` when a browser can open it (http/https), else None (tcp://, redis://...)."""
    return url if url.lower().startswith(("http://", "https://")) else None


def _row(view: ResourceView, revealed: Callable[[str, str], str | None] | None) -> dict[str, Any]:
    """What the resources template needs of one resource."""
    iso, text = _time_texts(view.started_at)
    environment = []
    for var in view.environment:
        value = var.value
        secret = var.secret
        if secret and revealed is not None:
            real = revealed(view.name, var.name)
            if real is not None:
                value, secret = real, False
        environment.append({"name": var.name, "value": value, "secret": secret})
    return {
        "name": view.name,
        "path_name": quote(view.name, safe=""),
        "kind": view.kind,
        "state": view.state,
        "state_class": _slug(view.state),
        "health": view.health,
        "health_class": _slug(view.health),
        "health_reason": view.health_reason,
        "exit_code": view.exit_code,
        "message": view.message,
        "runtime": view.runtime,
        "started_iso": iso,
        "started_text": text,
        "endpoints": [{"name": e.name, "url": e.url, "href": _link(e.url)} for e in view.endpoints],
        "environment": environment,
        "relations": [
            {"target": r.target, "kind": r.kind, "label": RELATION_LABELS.get(r.kind, r.kind)}
            for r in view.relations
        ],
        "commands": [{"name": c.name, "enabled": c.enabled} for c in view.commands],
    }


def graph_svg(resources: Sequence[ResourceView]) -> str:
    """The resource graph from ``graph.py``, or a plain row of nodes until it exists."""
    try:
        graph = importlib.import_module(f"{__package__}.graph")
    except ModuleNotFoundError as exc:
        if exc.name != f"{__package__}.graph":
            raise
        return _fallback_graph(resources)
    svg: str = graph.resource_graph_svg(resources)
    return svg


def _fallback_graph(resources: Sequence[ResourceView]) -> str:
    """One box per resource (the contract's ``g.node``), no edges."""
    width = max(1, len(resources)) * 160
    nodes = []
    for i, view in enumerate(resources):
        x = i * 160 + 10
        nodes.append(
            f'<g class="node" data-resource="{escape(view.name)}">'
            f'<rect x="{x}" y="10" width="140" height="40" rx="6"></rect>'
            f'<text x="{x + 70}" y="35" text-anchor="middle">{escape(view.name)}</text></g>'
        )
    return (
        f'<svg id="graph" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} 60" '
        f'role="img" aria-label="Resource graph">{"".join(nodes)}</svg>'
    )


def resources_content(
    resources: Sequence[ResourceView],
    revealed: Callable[[str, str], str | None] | None = None,
) -> str:
    """The resources page's content: the table with details and command buttons, the graph.
    ``revealed`` (only with ``show_secrets``) gives real values of secret variables."""
    rows = [_row(view, revealed) for view in resources]
    return render("resources.html", resources=rows, graph=Markup(graph_svg(resources)))


# -- console logs ---------------------------------------------------------------------------
def console_line(line: ConsoleLine, *, with_resource: bool = False) -> str:
    """One console line as ``<div class="line" data-seq=N>`` with its ANSI colours rendered."""
    classes = "line stderr" if line.stream == "stderr" else "line"
    stamp = time.strftime("%H:%M:%S", time.localtime(line.timestamp))
    prefix = f'<span class="res">{escape(line.resource)}</span> ' if with_resource else ""
    return (
        f'<div class="{classes}" data-seq="{line.seq}"><span class="ts">{stamp}</span> '
        f"{prefix}{ansi.to_html(line.text)}</div>"
    )


def console_content(resource: str, names: Sequence[str], page: Page, unknown: bool) -> str:
    """The console page's content for one resource: the lines kept, follow mode, the dropped
    note; ``data-after`` lets the live stream continue after the last line shown."""
    lines = "".join(console_line(item) for item in page.items if isinstance(item, ConsoleLine))
    return render(
        "console.html",
        resource=resource,
        names=list(names),
        lines=Markup(lines),
        dropped=page.dropped,
        after=page.last_seq,
        unknown=unknown,
    )


@attrs.frozen
class ConsoleEntry:
    """A resource on the console picker page, with how many lines it has kept."""

    view: ResourceView
    lines: int


def consolelogs_index(entries: Sequence[ConsoleEntry]) -> str:
    """The console picker: one link per resource."""
    rows = [
        {
            "name": e.view.name,
            "path_name": quote(e.view.name, safe=""),
            "state": e.view.state,
            "state_class": _slug(e.view.state),
            "lines": e.lines,
        }
        for e in entries
    ]
    return render("consolelogs_index.html", resources=rows)
