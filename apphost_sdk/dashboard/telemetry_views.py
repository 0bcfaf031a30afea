"""The telemetry pages' content: structured logs, traces (list and waterfall) and metrics.

Each function answers the inner HTML of ``<main id="content">`` for one page, rendered from the
:class:`~apphost_sdk.telemetry.store.TelemetryStore` with the ``telemetry_*.html`` Jinja2
templates (autoescaped, so every name, attribute and message is escaped). The same HTML serves
the first load and the live re-fetches (``X-Fragment: 1``), so the web app only wraps it.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Iterable, Iterator, Sequence
from urllib.parse import quote, urlencode

import attrs
import jinja2
from markupsafe import Markup

from ..telemetry.models import Instrument, LogRecord, MetricPoint, Span, SpanEvent, TraceSummary
from ..telemetry.store import TelemetryStore
from .charts import MAX_SERIES, Series, display_unit, format_value, line_chart_svg

#: The structured logs page's ``level`` filter: each name and the lowest severity number it
#: keeps (OpenTelemetry's ranges: TRACE 1-4, DEBUG 5-8, INFO 9-12, WARN 13-16, ERROR 17-20,
#: FATAL 21-24).
LEVELS = {
    "trace": 1,
    "debug": 5,
    "information": 9,
    "warning": 13,
    "error": 17,
    "critical": 21,
}
_LEVEL_ALIASES = {"info": "information", "warn": "warning", "fatal": "critical"}

#: Rows shown at most on the structured logs page and on a trace's page.
MAX_LOG_ROWS = 500
MAX_TRACE_LOG_ROWS = 200
#: Traces listed at most on the traces page.
MAX_TRACE_ROWS = 200
#: Deeper spans are indented no further (the waterfall stays readable).
MAX_INDENT_DEPTH = 12
#: Links in the resource filter at most ("All resources" included); the rest are listed behind
#: an "N more" toggle. Resource names come from OTLP senders, so neither their number nor their
#: length may grow every page without bound.
MAX_FILTER_LINKS = 50
#: Characters of a resource name shown at most (longer ones end with "…"; links keep it whole).
MAX_NAME_CHARS = 256

#: Resource colours in traces (one per resource, the same on every page).
RESOURCE_PALETTE = (
    "#2f81f7",
    "#e3702d",
    "#2da44e",
    "#8250df",
    "#bf8700",
    "#1b7c83",
    "#cf4fa8",
    "#6e7781",
    "#d1242f",
    "#0969da",
)

_HINT = "services started by the app host send them automatically; see README 'Telemetry'"


# -- public entry points ------------------------------------------------------------------------
def structured_logs_html(
    store: TelemetryStore,
    resource: str | None,
    level: str | None,
    trace_id: str | None,
    q: str | None,
) -> str:
    """The structured logs page: filters (resource, level, trace id, text) and the newest
    matching log records first."""
    resource = resource or None
    level_name, level_error = parse_level(level)
    trace_id = (trace_id or "").strip().lower() or None
    text = (q or "").strip() or None
    page = store.log_records(
        resource,
        min_severity=LEVELS.get(level_name or "", 0),
        trace_id=trace_id,
        text=text,
        limit=MAX_LOG_ROWS + 1,
    )
    records = [r for r in page.items if isinstance(r, LogRecord)]
    more = len(records) > MAX_LOG_ROWS
    records = records[-MAX_LOG_ROWS:]
    records.reverse()
    query = {"level": level_name or "", "traceId": trace_id or "", "q": text or ""}
    return _render(
        "telemetry_logs.html",
        store,
        filter=resource_filter(store, "/structuredlogs", resource, query),
        dropped=page.dropped,
        records=records,
        more=more,
        levels=list(LEVELS),
        level=level_name or "",
        level_error=level_error,
        trace_id=trace_id or "",
        q=text or "",
        action=_path("/structuredlogs", resource),
        filtered=bool(level_name or trace_id or text),
        resource=resource,
        hint=_HINT,
    )


def traces_html(store: TelemetryStore, resource: str | None) -> str:
    """The traces page: one row per trace, newest first, with its spans per resource."""
    resource = resource or None
    summaries = store.traces(resource, limit=MAX_TRACE_ROWS)
    rows = [_TraceRow(s, _spans_per_resource(store.trace(s.trace_id))) for s in summaries]
    return _render(
        "telemetry_traces.html",
        store,
        filter=resource_filter(store, "/traces", resource, {}),
        dropped=store.dropped("spans", resource),
        rows=rows,
        resource=resource,
        limit=MAX_TRACE_ROWS,
        hint=_HINT,
    )


def trace_detail_html(store: TelemetryStore, trace_id: str) -> str | None:
    """One trace's page: its spans as a waterfall across services, each with its attributes,
    events and status, and the trace's structured logs; None when no span of it is kept."""
    spans = store.trace(trace_id)
    if not spans:
        return None
    start = min(s.start_ns for s in spans)
    end = max(s.end_ns for s in spans)
    total = max(0, end - start)
    tree = span_tree(spans)
    rows = [_span_row(span, depth, start, total) for span, depth in tree]
    root = tree[0][0]
    logs = store.log_records(trace_id=spans[0].trace_id, limit=MAX_TRACE_LOG_ROWS)
    records = [r for r in logs.items if isinstance(r, LogRecord)]
    return _render(
        "telemetry_trace.html",
        store,
        trace_id=root.trace_id,
        name=f"{root.resource}: {root.name}",
        has_error=any(s.status == "Error" for s in spans),
        rows=rows,
        start_ns=start,
        total_ns=total,
        ticks=[(p, start + total * p // 100) for p in (0, 25, 50, 75, 100)],
        resources=_spans_per_resource(spans),
        records=records,
        logs_href="/structuredlogs?" + urlencode({"traceId": spans[0].trace_id}),
    )


def metrics_html(store: TelemetryStore, resource: str | None) -> str:
    """The metrics page: per resource and meter, one section with a line chart per
    instrument."""
    resource = resource or None
    groups: dict[str, dict[str, list[_InstrumentView]]] = {}
    for instrument in store.instruments(resource):
        meters = groups.setdefault(instrument.resource, {})
        meters.setdefault(instrument.meter, []).append(_instrument_view(instrument))
    return _render(
        "telemetry_metrics.html",
        store,
        filter=resource_filter(store, "/metrics", resource, {}),
        dropped=store.dropped("metrics", resource),
        groups=groups,
        max_series=MAX_SERIES,
        resource=resource,
        hint=_HINT,
    )


# -- structured logs ----------------------------------------------------------------------------
def parse_level(level: str | None) -> tuple[str | None, str | None]:
    """``(level name, error)`` for the ``level`` filter: a known name (case-insensitive, or
    info/warn/fatal), else no filter and a message that lists the names to use."""
    text = (level or "").strip().lower()
    if not text:
        return None, None
    text = _LEVEL_ALIASES.get(text, text)
    if text in LEVELS:
        return text, None
    return None, f"Unknown level {level!r}: use one of {', '.join(LEVELS)}."


def severity_name(number: int) -> str:
    """The level name of an OpenTelemetry severity number (``unspecified`` for 0)."""
    name = "unspecified"
    for level, lowest in LEVELS.items():
        if number >= lowest:
            name = level
    return name


# -- traces -------------------------------------------------------------------------------------
@attrs.frozen
class _TraceRow:
    summary: TraceSummary
    per_resource: list[tuple[str, int]]


@attrs.frozen
class _SpanRow:
    """One waterfall row: a span, its depth and its bar in % of the trace."""

    span: Span
    depth: int
    left: float
    width: float
    offset_ns: int  # start, from the trace's start
    events: list[tuple[float, int, SpanEvent]]  # (left %, offset ns, event)


def span_tree(spans: Sequence[Span]) -> list[tuple[Span, int]]:
    """Spans in waterfall order with their depth: each parent followed by its children by start
    time. A span whose parent is not kept starts a tree of its own; cycles are cut."""
    ordered = sorted(spans, key=lambda s: (s.start_ns, s.seq))
    ids = {s.span_id for s in ordered}
    children: dict[str, list[Span]] = {}
    roots: list[Span] = []
    for span in ordered:
        parent = span.parent_span_id
        if parent and parent in ids and parent != span.span_id:
            children.setdefault(parent, []).append(span)
        else:
            roots.append(span)
    out: list[tuple[Span, int]] = []
    seen: set[int] = set()

    def walk(top: Span) -> None:
        stack = [(top, 0)]
        while stack:
            span, depth = stack.pop()
            if id(span) in seen:
                continue
            seen.add(id(span))
            out.append((span, depth))
            kids = children.pop(span.span_id, [])
            stack.extend((kid, depth + 1) for kid in reversed(kids))

    for root in roots:
        walk(root)
    for span in ordered:  # only spans in a parent cycle are left
        if id(span) not in seen:
            walk(span)
    return out


def _span_row(span: Span, depth: int, start: int, total: int) -> _SpanRow:
    def percent(ns: int) -> float:
        return round(min(100.0, max(0.0, ns * 100 / total)), 3) if total else 0.0

    left = percent(span.start_ns - start)
    width = min(percent(span.duration_ns), round(100.0 - left, 3))
    events = [(percent(e.timestamp_ns - start), e.timestamp_ns - start, e) for e in span.events]
    return _SpanRow(span, depth, left, width, span.start_ns - start, events)


def _spans_per_resource(spans: Iterable[Span]) -> list[tuple[str, int]]:
    """``(resource, span count)`` in order of first appearance."""
    counts: dict[str, int] = {}
    for span in spans:
        counts[span.resource] = counts.get(span.resource, 0) + 1
    return list(counts.items())


def resource_colours(names: Iterable[str]) -> dict[str, str]:
    """Each resource's colour: by its place among the resources (sorted), so the first ten
    differ and every page shows a resource in the same colour."""
    ordered = sorted(set(names))
    return {n: RESOURCE_PALETTE[i % len(RESOURCE_PALETTE)] for i, n in enumerate(ordered)}


def resource_colour(name: str) -> str:
    """The colour of a resource the page's colour map lacks (stable: a CRC, not ``hash``)."""
    return RESOURCE_PALETTE[zlib.crc32(name.encode()) % len(RESOURCE_PALETTE)]


def format_duration(ns: int) -> str:
    """A duration as Aspire shows it: ``850 µs``, ``12.35 ms``, ``1.20 s``, ``2 m 3.4 s``."""
    if ns <= 0:
        return "0"
    if ns < 1_000_000:
        return f"{ns / 1000:.0f} µs" if ns >= 1000 else f"{ns} ns"
    if ns < 1_000_000_000:
        return f"{ns / 1e6:.2f} ms"
    seconds = ns / 1e9
    if seconds < 60:
        return f"{seconds:.2f} s"
    minutes, rest = divmod(seconds, 60)
    return f"{int(minutes)} m {rest:.1f} s"


# -- metrics ------------------------------------------------------------------------------------
@attrs.frozen
class _InstrumentView:
    instrument: Instrument
    chart: Markup
    series_count: int  # attribute sets seen (at most MAX_SERIES are charted)
    last: str  # the newest point's value (histograms: mean and count)


def _instrument_view(instrument: Instrument) -> _InstrumentView:
    """An instrument's chart: one series per attribute set (and instance, when several)."""
    unit = instrument.unit
    histogram = instrument.kind in ("Histogram", "ExponentialHistogram", "Summary")
    instances = {p.instance_id for p in instrument.points}
    by_key: dict[tuple[str, tuple[tuple[str, str], ...]], list[MetricPoint]] = {}
    for point in instrument.points:
        instance = point.instance_id if len(instances) > 1 else ""
        by_key.setdefault((instance, tuple(sorted(point.attributes))), []).append(point)
    # The most recently updated attribute sets are charted, in a stable (label) order.
    newest = sorted(by_key.items(), key=lambda kv: -max(p.timestamp_ns for p in kv[1]))
    charted = sorted(newest[:MAX_SERIES], key=lambda kv: _series_label(*kv[0]))
    series = []
    for key, points in charted:
        points.sort(key=lambda p: p.timestamp_ns)
        series.append(
            Series(
                label=_series_label(*key),
                points=tuple((p.timestamp_ns, p.value) for p in points),
                last_label=_last_text(points[-1], unit, histogram),
            )
        )
    title = f"{instrument.name} ({display_unit(unit)})" if display_unit(unit) else instrument.name
    newest_point = max(instrument.points, key=lambda p: p.timestamp_ns)
    return _InstrumentView(
        instrument=instrument,
        chart=Markup(line_chart_svg(series, unit=unit, title=title)),
        series_count=len(by_key),
        last=_last_text(newest_point, unit, histogram),
    )


def _series_label(instance: str, attributes: tuple[tuple[str, str], ...]) -> str:
    text = ", ".join(f"{k}={v}" for k, v in attributes) or "(no attributes)"
    return f"{text} [{instance}]" if instance else text


def _last_text(point: MetricPoint, unit: str, histogram: bool) -> str:
    value = format_value(point.value, unit)
    if histogram:
        count = "?" if point.count is None else f"{point.count:,}"
        return f"mean {value}, count {count}"
    return value


# -- shared -------------------------------------------------------------------------------------
def short_name(name: str) -> str:
    """``name`` cut to MAX_NAME_CHARS characters (the last one "…") for display."""
    text = str(name)
    return text if len(text) <= MAX_NAME_CHARS else text[: MAX_NAME_CHARS - 1] + "…"


@attrs.frozen
class _FilterLink:
    label: str
    href: str
    selected: bool


@attrs.frozen
class ResourceFilter:
    """The resource filter of a telemetry page: iterating gives the links shown (at most
    MAX_FILTER_LINKS, "All resources" and the selected one always among them); ``more`` holds
    the other resources' links, for an "N more" list."""

    links: list[_FilterLink]
    more: list[_FilterLink]

    def __iter__(self) -> Iterator[_FilterLink]:
        return iter(self.links)

    def __len__(self) -> int:
        return len(self.links)


def _path(base: str, resource: str | None) -> str:
    return base if resource is None else f"{base}/resource/{quote(resource, safe='')}"


def resource_filter(
    store: TelemetryStore, base: str, resource: str | None, query: dict[str, str]
) -> ResourceFilter:
    """Links to the page for all resources and for each resource with data (keeping the
    other filters), names cut for display; the selected resource is listed even when it has no
    data yet, and is always among the links shown."""
    names = store.resource_names()
    if resource is not None and resource not in names:
        names = sorted([*names, resource])
    kept = {k: v for k, v in query.items() if v}
    suffix = "?" + urlencode(kept) if kept else ""
    shown = names[: MAX_FILTER_LINKS - 1]
    if resource is not None and resource not in shown:
        shown = sorted([*shown[: MAX_FILTER_LINKS - 2], resource])
    shown_set = set(shown)

    def link(name: str) -> _FilterLink:
        return _FilterLink(short_name(name), _path(base, name) + suffix, name == resource)

    links = [_FilterLink("All resources", base + suffix, resource is None)]
    links.extend(link(n) for n in shown)
    return ResourceFilter(links, [link(n) for n in names if n not in shown_set])


def _clock_ns(timestamp_ns: int) -> str:
    """Local time with milliseconds, as the tables show it."""
    seconds, ns = divmod(timestamp_ns, 1_000_000_000)
    return time.strftime("%H:%M:%S", time.localtime(seconds)) + f".{ns // 1_000_000:03d}"


def _iso_ns(timestamp_ns: int) -> str:
    """Local date and time (RFC 3339), for ``<time datetime=...>`` and tooltips."""
    seconds, ns = divmod(timestamp_ns, 1_000_000_000)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(seconds))
    zone = time.strftime("%z", time.localtime(seconds))
    return f"{stamp}.{ns // 1_000_000:03d}{zone[:3]}:{zone[3:]}"


def _plural(count: int, word: str) -> str:
    """``1 attribute``, ``2 attributes``."""
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("apphost_sdk.dashboard", "templates"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters.update(
        clock=_clock_ns,
        iso=_iso_ns,
        duration=format_duration,
        plural=_plural,
        colour=resource_colour,
        short=short_name,
        severity=severity_name,
        urlpart=lambda value: quote(str(value), safe=""),
        indent_px=lambda depth: min(depth, MAX_INDENT_DEPTH) * 16,
    )
    return env


_ENV = _environment()


def _render(template: str, store: TelemetryStore, **context: object) -> str:
    """Render a page with the colour map of the store's resources (the chips use it)."""
    colours = resource_colours(store.resource_names())
    return _ENV.get_template(template).render(colours=colours, **context)
