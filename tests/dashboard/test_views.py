"""The telemetry pages and the SVGs, rendered from a real TelemetryStore and checked as a browser
would see them: the HTML parsed with the standard library (balanced tags, the DOM contract of
the dashboard design), the SVGs parsed as XML, hostile names escaped."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from html.parser import HTMLParser

import attrs
import pytest
from attrs import Factory

from apphost_sdk.dashboard import charts, graph, pages, telemetry_views
from apphost_sdk.dashboard.source import RelationView, ResourceView
from apphost_sdk.telemetry.models import LogRecord, MetricPoint, Span, SpanEvent
from apphost_sdk.telemetry.store import Limits, TelemetryStore

SVG = "{http://www.w3.org/2000/svg}"
HOSTILE = "<script>alert('x')</script>&\""
T0 = 1_700_000_000_000_000_000  # a fixed epoch time in ns: renders are deterministic
MS = 1_000_000
TRACE_A = "a" * 32
TRACE_B = "b" * 32


# -- a tiny DOM ---------------------------------------------------------------------------------
@attrs.define
class Node:
    tag: str
    attrs: dict[str, str]
    children: list[Node] = Factory(list)
    texts: list[str] = Factory(list)

    def iter(self) -> Iterator[Node]:
        yield self
        for child in self.children:
            yield from child.iter()

    def find_all(self, tag: str, **wanted: str) -> list[Node]:
        """Elements of ``tag`` ("*" any) whose attributes match; ``cls`` matches one class."""
        found = []
        for node in self.iter():
            if tag != "*" and node.tag != tag:
                continue
            cls = wanted.get("cls")
            if cls is not None and cls not in node.attrs.get("class", "").split():
                continue
            if all(
                node.attrs.get(k.replace("_", "-")) == v for k, v in wanted.items() if k != "cls"
            ):
                found.append(node)
        return found

    def find(self, tag: str, **wanted: str) -> Node:
        found = self.find_all(tag, **wanted)
        assert found, f"no <{tag} {wanted}>"
        return found[0]

    @property
    def text(self) -> str:
        parts: list[str] = []

        def walk(node: Node) -> None:
            parts.extend(node.texts)
            for child in node.children:
                walk(child)

        walk(self)
        return " ".join(" ".join(parts).split())


VOID = {"input", "br", "img", "meta", "link", "hr", "col", "source", "wbr"}


class _Builder(HTMLParser):
    """Builds a Node tree and fails on unbalanced tags (what a template mistake looks like)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#root", {})
        self.stack = [self.root]

    def handle_starttag(self, tag: str, attributes: list[tuple[str, str | None]]) -> None:
        node = Node(tag, {k: v or "" for k, v in attributes})
        self.stack[-1].children.append(node)
        if tag not in VOID:
            self.stack.append(node)

    def handle_startendtag(self, tag: str, attributes: list[tuple[str, str | None]]) -> None:
        self.stack[-1].children.append(Node(tag, {k: v or "" for k, v in attributes}))

    def handle_endtag(self, tag: str) -> None:
        assert self.stack[-1].tag == tag, f"</{tag}> closes <{self.stack[-1].tag}>"
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.stack[-1].texts.append(data)


def parse(html: str) -> Node:
    builder = _Builder()
    builder.feed(html)
    builder.close()
    assert builder.stack == [builder.root], "unclosed tags: " + str(
        [n.tag for n in builder.stack[1:]]
    )
    assert not builder.root.find_all("script"), "a <script> element made it into the page"
    return builder.root


def svg_of(html: str, marker: str) -> ET.Element:
    """The inline SVG starting at ``marker`` in ``html``, parsed as XML (so: well-formed)."""
    start = html.index(marker)
    end = html.index("</svg>", start) + len("</svg>")
    return ET.fromstring(html[start:end])


# -- data ---------------------------------------------------------------------------------------
def span(
    resource: str,
    trace: str,
    span_id: str,
    parent: str,
    name: str,
    start: int,
    end: int,
    **extra: object,
) -> Span:
    return Span(resource, trace, span_id, parent, name, "Internal", T0 + start, T0 + end, **extra)  # type: ignore[arg-type]


def log(resource: str, severity: int, body: str, offset: int = 0, **extra: object) -> LogRecord:
    return LogRecord(resource, T0 + offset, severity, "", body, **extra)  # type: ignore[arg-type]


def point(
    resource: str, instrument: str, offset_s: int, value: float, **extra: object
) -> MetricPoint:
    defaults: dict[str, object] = {
        "meter": "app.meter",
        "unit": "ms",
        "description": "Request duration",
        "kind": "Gauge",
        "attributes": (),
    }
    defaults.update(extra)
    return MetricPoint(
        resource=resource,
        instrument=instrument,
        timestamp_ns=T0 + offset_s * 1_000_000_000,
        value=value,
        **defaults,  # type: ignore[arg-type]
    )


@pytest.fixture
def store() -> TelemetryStore:
    """Two traces (A: api -> cache with an error, 100 ms; B: api only, newer), logs, metrics."""
    s = TelemetryStore()
    s.add_spans(
        [
            span(
                "api",
                TRACE_A,
                "1" * 16,
                "",
                "GET /items",
                0,
                100 * MS,
                attributes=(("http.route", "/items"),),
            ),
            span(
                "cache",
                TRACE_A,
                "2" * 16,
                "1" * 16,
                "cache get",
                20 * MS,
                60 * MS,
                status="Error",
                status_message="timeout",
                events=(SpanEvent("retry", T0 + 30 * MS, (("attempt", "2"),)),),
            ),
            span("cache", TRACE_A, "3" * 16, "2" * 16, "redis GET", 30 * MS, 40 * MS),
            span("api", TRACE_A, "4" * 16, "f" * 16, "orphan", 50 * MS, 75 * MS),
            span("api", TRACE_B, "5" * 16, "", "GET /health", 500 * MS, 501 * MS),
        ]
    )
    s.add_log_records(
        [
            log("api", 9, "request started", 1, trace_id=TRACE_A, span_id="1" * 16),
            log("api", 13, "slow cache", 2, trace_id=TRACE_A, attributes=(("cache.key", "k1"),)),
            log("cache", 17, "connection refused", 3),
            log("api", 5, "debug detail", 4),
        ]
    )
    return s


# -- traces -------------------------------------------------------------------------------------
def test_traces_list_is_newest_first_with_spans_per_resource_and_error_badge(
    store: TelemetryStore,
) -> None:
    dom = parse(telemetry_views.traces_html(store, None))
    table = dom.find("table", id="traces")
    rows = table.find_all("tr", cls="trace")
    assert [r.attrs["data-trace-id"] for r in rows] == [TRACE_B, TRACE_A]
    newer, older = rows
    link = older.find("a", cls="trace-link")
    assert link.attrs["href"] == f"/traces/detail/{TRACE_A}"
    assert link.text == "api: GET /items"
    assert older.find("td", cls="span-count").text == "4"
    assert older.find("td", cls="duration").text == "100.00 ms"
    chips = [
        c.text for c in older.find("td", cls="resources").find_all("span", cls="resource-chip")
    ]
    assert chips == ["api (2)", "cache (2)"]
    assert older.find_all("span", cls="badge") and not newer.find_all("span", cls="badge")
    # the resource filter: all, then each resource with data; one of them selected
    links = dom.find("nav", cls="resource-filter").find_all("a")
    assert [(a.text, a.attrs["href"]) for a in links] == [
        ("All resources", "/traces"),
        ("api", "/traces/resource/api"),
        ("cache", "/traces/resource/cache"),
    ]
    assert "selected" in links[0].attrs["class"]


def test_traces_of_one_resource(store: TelemetryStore) -> None:
    dom = parse(telemetry_views.traces_html(store, "cache"))
    assert [r.attrs["data-trace-id"] for r in dom.find_all("tr", cls="trace")] == [TRACE_A]
    selected = dom.find("a", cls="selected")
    assert selected.text == "cache" and selected.attrs["aria-current"] == "page"
    assert dom.find("h1").text == "Traces: cache"


def test_trace_detail_waterfall_positions_depth_and_details(store: TelemetryStore) -> None:
    html = telemetry_views.trace_detail_html(store, TRACE_A)
    assert html is not None
    dom = parse(html)
    spans = dom.find("div", id="waterfall").find_all("div", cls="span")
    got = [
        (
            s.attrs["data-span-id"][0],
            s.attrs["data-resource"],
            s.attrs["data-name"],
            s.attrs["data-depth"],
        )
        for s in spans
    ]
    # parents before children by start time; the span whose parent is missing is a root
    assert got == [
        ("1", "api", "GET /items", "0"),
        ("2", "cache", "cache get", "1"),
        ("3", "cache", "redis GET", "2"),
        ("4", "api", "orphan", "0"),
    ]
    bars = [s.find("div", cls="span-bar") for s in spans]
    # left/width in % of the trace (0..100 ms)
    assert [(float(b.attrs["data-left"]), float(b.attrs["data-width"])) for b in bars] == [
        (0.0, 100.0),
        (20.0, 40.0),
        (30.0, 10.0),
        (50.0, 25.0),
    ]
    assert re.search(r"left:20(\.0+)?%;width:40(\.0+)?%", bars[1].attrs["style"])
    indents = [s.find("div", cls="span-label").attrs["style"] for s in spans]
    assert indents == [
        "padding-left:0px",
        "padding-left:16px",
        "padding-left:32px",
        "padding-left:0px",
    ]
    # one colour per resource
    colours = [re.search(r"background:(#[0-9a-f]{6})", b.attrs["style"]) for b in bars]
    api, cache = colours[0], colours[1]
    assert api and cache and api.group(1) != cache.group(1)
    # each span has a <details> with attributes, events and status
    first = spans[0].find("details")
    assert ("http.route", "/items") in [
        (row.find("th").text, row.find("td").text) for row in first.find_all("tr")
    ]
    failing = spans[1]
    assert "error" in failing.attrs["class"].split()
    assert failing.find("dd", cls="span-status").text == "Error: timeout"
    event = failing.find("li", cls="span-event-item")
    assert "retry" in event.text and "attempt" in event.text and "+30.00 ms" in event.text
    assert float(failing.find("span", cls="span-event").attrs["style"][5:-1]) == 30.0
    # the trace's resources and its structured logs, with a link to the logs page
    listed = [
        li.attrs["data-resource"] for li in dom.find("ul", cls="trace-resources").find_all("li")
    ]
    assert listed == ["api", "cache"]
    logs = dom.find("table", cls="trace-logs").find_all("tr", cls="log")
    assert [r.find("td", cls="message").text for r in logs] == ["request started", "slow cache"]
    assert (
        dom.find("a", cls="trace-logs-link").attrs["href"] == f"/structuredlogs?traceId={TRACE_A}"
    )


def test_trace_detail_of_an_unknown_trace_is_none(store: TelemetryStore) -> None:
    assert telemetry_views.trace_detail_html(store, "0" * 32) is None


def test_span_tree_cuts_parent_cycles() -> None:
    spans = [
        span("a", TRACE_A, "1" * 16, "2" * 16, "one", 0, 10),
        span("a", TRACE_A, "2" * 16, "1" * 16, "two", 5, 10),
    ]
    tree = telemetry_views.span_tree(spans)
    assert [(s.name, d) for s, d in tree] == [("one", 0), ("two", 1)]


def test_zero_length_trace_renders() -> None:
    store = TelemetryStore()
    store.add_spans([span("api", TRACE_A, "1" * 16, "", "instant", 0, 0)])
    html = telemetry_views.trace_detail_html(store, TRACE_A)
    assert html is not None
    bar = parse(html).find("div", cls="span-bar")
    assert (float(bar.attrs["data-left"]), float(bar.attrs["data-width"])) == (0.0, 0.0)


# -- structured logs ----------------------------------------------------------------------------
def test_structured_logs_newest_first_with_severity_classes_and_trace_links(
    store: TelemetryStore,
) -> None:
    dom = parse(telemetry_views.structured_logs_html(store, None, None, None, None))
    rows = dom.find("table", id="logs").find_all("tr", cls="log")
    assert [r.attrs["data-severity"] for r in rows] == ["debug", "error", "warning", "information"]
    assert [r.find("td", cls="message").text for r in rows] == [
        "debug detail",
        "connection refused",
        "slow cache",
        "request started",
    ]
    assert "sev-error" in rows[1].find("td", cls="severity").attrs["class"].split()
    assert rows[3].find("a", cls="trace-link").attrs["href"] == f"/traces/detail/{TRACE_A}"
    assert not rows[1].find_all("a", cls="trace-link")
    details = rows[2].find("details")
    assert [details.find("th").text, details.find("td").text] == ["cache.key", "k1"]
    time_cell = rows[0].find("td", cls="time")
    assert re.fullmatch(r"\d\d:\d\d:\d\d\.\d{3}", time_cell.text)


@pytest.mark.parametrize(
    ("level", "trace_id", "q", "messages"),
    [
        ("warning", None, None, ["connection refused", "slow cache"]),
        ("Error", None, None, ["connection refused"]),
        ("warn", None, None, ["connection refused", "slow cache"]),
        (None, TRACE_A.upper(), None, ["slow cache", "request started"]),
        (None, None, "CACHE.key", ["slow cache"]),
        ("information", TRACE_A, "started", ["request started"]),
    ],
)
def test_structured_logs_filters(
    store: TelemetryStore,
    level: str | None,
    trace_id: str | None,
    q: str | None,
    messages: list[str],
) -> None:
    dom = parse(telemetry_views.structured_logs_html(store, None, level, trace_id, q))
    rows = dom.find("table", id="logs").find_all("tr", cls="log")
    assert [r.find("td", cls="message").text for r in rows] == messages
    form = dom.find("form", cls="log-filters")
    assert form.attrs["method"] == "get" and form.attrs["action"] == "/structuredlogs"
    if level:
        selected = form.find("select").find("option", selected="")
        assert selected.attrs["value"] == telemetry_views.parse_level(level)[0]


def test_structured_logs_resource_filter_keeps_the_other_filters(store: TelemetryStore) -> None:
    dom = parse(telemetry_views.structured_logs_html(store, "api", "warning", None, "slow c"))
    hrefs = [a.attrs["href"] for a in dom.find("nav", cls="resource-filter").find_all("a")]
    assert hrefs == [
        "/structuredlogs?level=warning&q=slow+c",
        "/structuredlogs/resource/api?level=warning&q=slow+c",
        "/structuredlogs/resource/cache?level=warning&q=slow+c",
    ]
    assert dom.find("form").attrs["action"] == "/structuredlogs/resource/api"
    assert dom.find("input", name="q").attrs["value"] == "slow c"
    rows = dom.find("table", id="logs").find_all("tr", cls="log")
    assert [r.attrs["data-resource"] for r in rows] == ["api"]


def _many_resources(count: int, long_every: int | None = 10) -> TelemetryStore:
    """A store with ``count`` resources (one span each), every ``long_every``-th named with 300
    characters."""
    s = TelemetryStore()
    names = [
        f"r{n:03d}" + ("x" * 296 if long_every and n % long_every == 0 else "")
        for n in range(count)
    ]
    s.add_spans(
        span(name, f"{n + 1:032x}", "1" * 16, "", "op", 0, MS) for n, name in enumerate(names)
    )
    return s


def test_resource_filter_shows_at_most_50_links_with_names_cut_for_display() -> None:
    s = _many_resources(80)
    for html in (
        telemetry_views.traces_html(s, None),
        telemetry_views.metrics_html(s, None),
        telemetry_views.structured_logs_html(s, None, None, None, None),
    ):
        nav = parse(html).find("nav", cls="resource-filter")
        more = nav.find("details", cls="more-resources")
        hidden = more.find_all("a")
        links = [a for a in nav.find_all("a") if all(a is not h for h in hidden)]
        assert len(links) == telemetry_views.MAX_FILTER_LINKS
        assert len(hidden) == 80 + 1 - telemetry_views.MAX_FILTER_LINKS  # the rest, behind "more"
        assert links[0].text == "All resources"
        labels = [a.text for a in links[1:]]
        assert max(len(label) for label in labels) == telemetry_views.MAX_NAME_CHARS
        assert labels[0] == "r000" + "x" * 251 + "…"
        assert links[1].attrs["href"].endswith("/resource/r000" + "x" * 296)  # the whole name


def test_resource_filter_keeps_the_selected_one_and_lists_the_rest_as_more() -> None:
    s = _many_resources(80, long_every=None)
    names = s.resource_names()
    chosen = telemetry_views.resource_filter(s, "/traces", "r079", {"q": "x"})
    shown = list(chosen)
    assert len(shown) == telemetry_views.MAX_FILTER_LINKS
    assert [link.label for link in shown if link.selected] == ["r079"]
    assert shown[-1].href == "/traces/resource/r079?q=x"
    listed = [link.label for link in shown[1:]] + [link.label for link in chosen.more]
    assert sorted(listed) == names  # every resource is reachable, once
    assert all(not link.selected for link in chosen.more)
    assert chosen.more[0].href == "/traces/resource/r048?q=x"
    few = telemetry_views.resource_filter(_many_resources(3, None), "/metrics", None, {})
    assert [link.label for link in few] == ["All resources", "r000", "r001", "r002"]
    assert few.more == []


def test_short_name_cuts_at_256_characters() -> None:
    assert telemetry_views.short_name("a" * 256) == "a" * 256
    assert telemetry_views.short_name("a" * 257) == "a" * 255 + "…"


def test_start_times_show_a_restart_within_the_same_second() -> None:
    """The ``datetime`` of the start time has milliseconds: two starts within one second
    differ (the live swap shows the restart)."""
    second = 1_700_000_000.0
    before, after = (
        pages.resources_content([attrs.evolve(resource("api"), started_at=second + fraction)])
        for fraction in (0.125, 0.625)
    )
    stamps = [re.findall(r'<time datetime="([^"]+)">', html) for html in (before, after)]
    assert stamps[0] != stamps[1]
    assert ".125" in stamps[0][0] and ".625" in stamps[1][0]


def test_structured_logs_unknown_level_says_which_to_use(store: TelemetryStore) -> None:
    dom = parse(telemetry_views.structured_logs_html(store, None, "loud", None, None))
    error = dom.find("p", cls="filter-error").text
    assert "loud" in error and "information" in error and "critical" in error
    assert len(dom.find("table", id="logs").find_all("tr", cls="log")) == 4  # no filter applied


def test_structured_logs_no_match_offers_to_clear(store: TelemetryStore) -> None:
    dom = parse(telemetry_views.structured_logs_html(store, None, None, None, "nothing-like-it"))
    assert not dom.find_all("table", id="logs")
    empty = dom.find("p", cls="empty")
    assert "No log records match" in empty.text
    assert empty.find("a").attrs["href"] == "/structuredlogs"


# -- metrics ------------------------------------------------------------------------------------
def test_metrics_one_section_per_instrument_with_a_well_formed_chart() -> None:
    store = TelemetryStore()
    points = [point("api", "http.duration", i, 10.0 + i) for i in range(5)]
    points += [
        point("api", "requests", i, float(i * 3), kind="Sum", unit="{request}", meter="other.meter")
        for i in range(3)
    ]
    points += [point("worker", "queue.depth", i, 7.0, unit="1") for i in range(2)]
    store.add_metric_points(points)
    html = telemetry_views.metrics_html(store, None)
    dom = parse(html)
    sections = dom.find_all("section", cls="instrument")
    assert [(s.attrs["data-resource"], s.attrs["data-instrument"]) for s in sections] == [
        ("api", "http.duration"),
        ("api", "requests"),
        ("worker", "queue.depth"),
    ]
    groups = dom.find_all("section", cls="resource-metrics")
    assert [g.attrs["data-resource"] for g in groups] == ["api", "worker"]
    assert [m.attrs["data-meter"] for m in groups[0].find_all("section", cls="meter")] == [
        "app.meter",
        "other.meter",
    ]
    first = sections[0]
    assert "Request duration" in first.find("p", cls="description").text
    assert first.find("span", cls="last-value").text == "14 ms"
    chart = svg_of(html, '<svg class="chart"')
    labels = {t.get("class"): t.text for t in chart.iter(f"{SVG}text")}
    assert labels["y-max"] == "14 ms" and labels["y-min"] == "10 ms"
    assert re.fullmatch(r"\d\d:\d\d:\d\d", labels["x-min"] or "")
    polylines = list(chart.iter(f"{SVG}polyline"))
    assert len(polylines) == 1
    assert len(polylines[0].get("points", "").split()) == 5
    assert sections[1].find("span", cls="last-value").text == "6 request"
    # a flat, dimensionless series is drawn (mid-height) with no unit
    assert sections[2].find("span", cls="last-value").text == "7"


def test_histograms_chart_their_mean_and_show_their_count() -> None:
    store = TelemetryStore()
    store.add_metric_points(
        [point("api", "latency", i, 2.5 * i, kind="Histogram", count=10 * i) for i in range(1, 4)]
    )
    section = parse(telemetry_views.metrics_html(store, "api")).find("section", cls="instrument")
    assert section.attrs["data-kind"] == "Histogram"
    assert section.find("span", cls="last-value").text == "mean 7.5 ms, count 30"


def test_a_chart_has_one_line_per_attribute_set_up_to_the_maximum() -> None:
    store = TelemetryStore()
    store.add_metric_points(
        point("api", "hits", t, float(t + n), attributes=(("route", f"/r{n}"),))
        for n in range(10)
        for t in range(3)
    )
    html = telemetry_views.metrics_html(store, None)
    chart = svg_of(html, '<svg class="chart"')
    series = [g.get("data-series", "") for g in chart.iter(f"{SVG}g") if g.get("class") == "series"]
    assert len(series) == charts.MAX_SERIES
    assert series == sorted(series)
    summary = parse(html).find("p", cls="instrument-summary").text
    assert "10 attribute sets" in summary and "8 most recently updated" in summary


# -- dropped notes and empty states -------------------------------------------------------------
def test_dropped_notes_on_every_telemetry_page() -> None:
    store = TelemetryStore(Limits(spans=2, log_records=2, metric_points=2))
    store.add_spans(span("api", f"{n:032x}", f"{n:016x}", "", "op", n, n + 1) for n in range(1, 6))
    store.add_log_records(log("api", 9, f"line {n}", n) for n in range(5))
    store.add_metric_points(point("api", "m", n, 1.0) for n in range(6))
    pages = [
        (3, telemetry_views.traces_html(store, None)),
        (3, telemetry_views.structured_logs_html(store, "api", None, None, None)),
        (4, telemetry_views.metrics_html(store, "api")),
    ]
    for count, html in pages:
        notes = parse(html).find_all("p", cls="dropped")
        assert [n.text for n in notes] == [f"{count} older entries dropped"]
    # nothing dropped for another resource: no note
    assert not parse(telemetry_views.traces_html(store, "cache")).find_all("p", cls="dropped")


@pytest.mark.parametrize(
    ("render", "phrase"),
    [
        (lambda s: telemetry_views.traces_html(s, None), "No traces yet"),
        (
            lambda s: telemetry_views.structured_logs_html(s, None, None, None, None),
            "No structured logs yet",
        ),
        (lambda s: telemetry_views.metrics_html(s, None), "No metrics yet"),
        (lambda s: telemetry_views.metrics_html(s, "api"), "No metrics of api yet"),
    ],
)
def test_empty_states_say_how_to_get_data(render: object, phrase: str) -> None:
    html = render(TelemetryStore())  # type: ignore[operator]
    empty = parse(html).find("p", cls="empty").text
    assert empty.startswith(phrase)
    assert "services started by the app host send them automatically" in empty
    assert "README 'Telemetry'" in empty


# -- escaping -----------------------------------------------------------------------------------
def test_hostile_names_and_values_are_escaped_everywhere() -> None:
    store = TelemetryStore()
    store.add_spans(
        [
            span(
                HOSTILE,
                TRACE_A,
                "1" * 16,
                "",
                HOSTILE,
                0,
                10 * MS,
                attributes=((HOSTILE, HOSTILE),),
                status="Error",
                status_message=HOSTILE,
                events=(SpanEvent(HOSTILE, T0, ((HOSTILE, HOSTILE),)),),
                scope=HOSTILE,
            ),
        ]
    )
    store.add_log_records(
        [log(HOSTILE, 17, HOSTILE, trace_id=TRACE_A, attributes=((HOSTILE, HOSTILE),))]
    )
    store.add_metric_points(
        [
            point(
                HOSTILE,
                HOSTILE,
                i,
                1.0,
                meter=HOSTILE,
                unit=HOSTILE,
                description=HOSTILE,
                attributes=((HOSTILE, HOSTILE),),
            )
            for i in range(2)
        ]
    )
    detail = telemetry_views.trace_detail_html(store, TRACE_A)
    assert detail is not None
    pages = [
        telemetry_views.traces_html(store, HOSTILE),
        detail,
        telemetry_views.structured_logs_html(store, HOSTILE, HOSTILE, HOSTILE, HOSTILE),
        telemetry_views.metrics_html(store, HOSTILE),
    ]
    for html in pages:
        assert "<script" not in html
        dom = parse(html)  # also: no <script> element, balanced tags
        values = [v for node in dom.iter() for v in node.attrs.values()]
        assert HOSTILE in values or any(HOSTILE in v for v in values) or HOSTILE in dom.text
    # the DOM carries the real (unescaped) names
    dom = parse(detail)
    assert dom.find("div", cls="span").attrs["data-name"] == HOSTILE
    dom = parse(pages[3])
    assert dom.find("section", cls="instrument").attrs["data-instrument"] == HOSTILE
    svg_of(pages[3], '<svg class="chart"')  # still well-formed XML
    # a hostile resource in the path is URL-encoded in the filter links
    href = parse(pages[0]).find("a", cls="selected").attrs["href"]
    assert (
        href.startswith("/traces/resource/%3Cscript%3E")
        and "/" not in href[len("/traces/resource/") :]
    )


# -- the resource graph -------------------------------------------------------------------------
def resource(name: str, state: str = "Running", *relations: tuple[str, str]) -> ResourceView:
    return ResourceView(
        name=name,
        kind="Executable",
        state=state,
        health="Healthy",
        relations=tuple(RelationView(t, k) for t, k in relations),
    )


def test_graph_layers_nodes_by_dependency_depth_with_arrows() -> None:
    views = [
        resource("web", "Waiting", ("api", "reference"), ("api", "wait")),
        resource("api", "Running", ("cache", "reference"), ("db", "wait-completion")),
        resource("cache", "Running"),
        resource("db", "Exited"),
        resource("broken", "FailedToStart", ("nowhere", "reference")),
    ]
    svg = graph.resource_graph_svg(views)
    root = ET.fromstring(svg)  # well-formed
    assert root.get("id") == "graph"
    nodes = {g.get("data-resource"): g for g in root.iter(f"{SVG}g") if g.get("class") == "node"}
    assert list(nodes) == ["web", "api", "cache", "db", "broken"]

    def x_of(name: str) -> int:
        rect = nodes[name].find(f".//{SVG}rect")
        assert rect is not None
        return int(rect.get("x", ""))

    assert x_of("cache") == x_of("db") == x_of("broken") < x_of("api") < x_of("web")
    assert graph.layers(views) == {"web": 2, "api": 1, "cache": 0, "db": 0, "broken": 0}
    fills = {n: g.find(f".//{SVG}rect").get("stroke") for n, g in nodes.items()}  # type: ignore[union-attr]
    assert fills["api"] == "#2da44e" and fills["web"] == "#d4a72c"
    assert fills["broken"] == "#d1242f" and fills["db"] == "#8c959f"
    links = [a.get("href") for a in root.iter(f"{SVG}a")]
    assert "/consolelogs/resource/api" in links
    edges = [g for g in root.iter(f"{SVG}g") if g.get("class") == "edge"]
    got = {(e.get("data-from"), e.get("data-to"), e.get("data-kind")) for e in edges}
    assert got == {
        ("web", "api", "reference"),
        ("web", "api", "wait"),
        ("api", "cache", "reference"),
        ("api", "db", "wait-completion"),
    }  # the edge to an unknown resource is left out
    for edge in edges:
        path = edge.find(f"{SVG}path")
        assert path is not None and path.get("marker-end") == "url(#graph-arrow)"
        dashed = path.get("stroke-dasharray") is not None
        assert dashed == edge.get("data-kind", "").startswith("wait")
        label = edge.find(f"{SVG}text")
        assert (label is not None and label.text == edge.get("data-kind")) == dashed


def test_graph_survives_cycles_and_escapes_names() -> None:
    views = [
        resource(HOSTILE, "Running", ("b", "reference")),
        resource("b", "Starting", (HOSTILE, "wait")),
        resource("self", "Running", ("self", "reference")),
    ]
    svg = graph.resource_graph_svg(views)
    assert "<script" not in svg
    root = ET.fromstring(svg)
    names = [g.get("data-resource") for g in root.iter(f"{SVG}g") if g.get("class") == "node"]
    assert names == [HOSTILE, "b", "self"]
    assert "/consolelogs/resource/%3Cscript%3E" in svg


def test_graph_of_no_resources_is_still_an_svg() -> None:
    root = ET.fromstring(graph.resource_graph_svg([]))
    assert root.get("id") == "graph"
    assert not [g for g in root.iter(f"{SVG}g") if g.get("class") == "node"]


# -- charts -------------------------------------------------------------------------------------
def test_chart_edge_cases_stay_well_formed() -> None:
    empty = ET.fromstring(charts.line_chart_svg([], title=HOSTILE))
    assert [t.text for t in empty.iter(f"{SVG}text")] == ["No data points"]
    nan_only = charts.Series("x", ((T0, float("nan")),))
    assert "No data points" in charts.line_chart_svg([nan_only])
    single = ET.fromstring(charts.line_chart_svg([charts.Series("one", ((T0, 5.0),))]))
    assert [c.get("cx") for c in single.iter(f"{SVG}circle")] == ["348.0"]  # centred
    many = charts.Series("many", tuple((T0 + i, float(i)) for i in range(5000)))
    long = ET.fromstring(charts.line_chart_svg([many]))
    coords = next(long.iter(f"{SVG}polyline")).get("points", "").split()
    assert len(coords) <= charts.MAX_POINTS + 1 and coords[-1].startswith("624.0,")


@pytest.mark.parametrize(
    ("value", "unit", "text"),
    [
        (1204.0, "", "1,204"),
        (0.01234, "s", "0.01234 s"),
        (3.2e9 + 0.5, "By", "3.2e+09 By"),
        (2.5, "{request}", "2.5 request"),
        (7.0, "1", "7"),
    ],
)
def test_format_value(value: float, unit: str, text: str) -> None:
    assert charts.format_value(value, unit) == text
