"""The dashboard server end to end over real HTTP: pages and their DOM contract, fragments,
security headers, live updates (server-sent events), the JSON API (commands, reveal, console),
the OTLP receiver fed by the real OpenTelemetry SDK exporter, and the server's life cycle."""

from __future__ import annotations

import gzip
import re
import secrets
import socket
import threading
import time
from collections.abc import Iterable, Iterator

import httpx
import pytest
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from apphost_sdk.dashboard.server import DashboardServer
from apphost_sdk.telemetry.models import Span
from apphost_sdk.telemetry.otlp import MAX_BODY
from apphost_sdk.telemetry.store import Limits, TelemetryStore

from .conftest import SECRET, Dashboard, FakeSource, wait_until

PAGES = ("/", "/consolelogs", "/consolelogs/resource/api", "/structuredlogs", "/traces", "/metrics")
NAV_LINKS = ('href="/"', 'href="/consolelogs"', 'href="/structuredlogs"', 'href="/traces"')


def _send_trace(dashboard: Dashboard, service: str = "api") -> str:
    """Export one trace (a server span with a client child) with the real SDK exporter;
    return its trace id."""
    exporter = OTLPSpanExporter(
        endpoint=f"{dashboard.otlp}/v1/traces", headers={"x-otlp-api-key": dashboard.api_key}
    )
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("tests")
    with tracer.start_as_current_span("GET /items") as root:
        root.set_attribute("http.route", "/items")
        with tracer.start_as_current_span("cache get"):
            pass
        trace_id = format(root.get_span_context().trace_id, "032x")
    provider.shutdown()
    return trace_id


def _events(lines_in: Iterator[str], wanted: str, timeout: float = 10.0) -> list[str]:
    """Read server-sent event lines until an ``event: {wanted}`` block is complete."""
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    seen = False
    for line in lines_in:
        lines.append(line)
        if line == f"event: {wanted}":
            seen = True
        elif seen and line == "":
            return lines
        if time.monotonic() > deadline:
            break
    raise AssertionError(f"no {wanted!r} event; got {lines}")


# -- pages ----------------------------------------------------------------------------------
def test_every_page_renders_with_nav_and_content(client: httpx.Client) -> None:
    for path in PAGES:
        response = client.get(path)
        assert response.status_code == 200, path
        html = response.text
        assert '<main id="content"' in html, path
        for link in (*NAV_LINKS, 'href="/metrics"'):
            assert link in html, (path, link)
        assert '<link rel="stylesheet" href="/static/dashboard.css">' in html


def test_resources_page_dom_contract(client: httpx.Client) -> None:
    html = client.get("/").text
    assert '<table id="resources">' in html
    for name in ("api", "cache"):
        row = re.search(
            rf'<tr data-resource="{name}">(.*?)</tr>\s*(?=<tr data-resource=|</tbody>)',
            html,
            re.S,
        )
        assert row, name
        body = row.group(1)
        assert '<td class="state" data-state="Running">' in body
        assert '<td class="health"' in body
        assert f'<a class="console-link" href="/consolelogs/resource/{name}">' in body
        for command in ("start", "stop", "restart"):
            assert f'data-command="{command}" data-resource="{name}"' in body
        assert '<details class="resource-details"' in body
        assert 'class="reveal"' in body
    assert '<a class="endpoint" href="http://localhost:8080"' in html
    assert re.search(r'data-command="start" data-resource="api" disabled', html)
    assert not re.search(r'data-command="stop" data-resource="api" disabled', html)
    assert '<svg id="graph"' in html
    for name in ("api", "cache"):
        assert f'<g class="node" data-resource="{name}"' in html
    assert "references" in html and "waits for (healthy)" in html


def test_resources_page_start_times_have_milliseconds(client: httpx.Client) -> None:
    """A restart within the same second changes the page: the ``datetime`` has milliseconds."""
    stamps = re.findall(r'<time datetime="([^"]+)">', client.get("/").text)
    assert len(stamps) == 2
    for stamp in stamps:
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d", stamp), stamp


def test_resources_page_shows_state_health_reason_and_exit(
    dashboard: Dashboard, client: httpx.Client
) -> None:
    dashboard.source.set_state("api", "Exited")
    html = client.get("/").text
    assert 'data-state="Exited"' in html
    assert "GET /health answered 503" in html
    assert "exit code 0" in html
    assert re.search(r'data-command="start" data-resource="api">', html)


def test_fragment_requests_get_only_the_content(client: httpx.Client) -> None:
    fragment = client.get("/", headers={"X-Fragment": "1"})
    assert fragment.status_code == 200
    assert fragment.text.lstrip().startswith("<h1>Resources</h1>")
    assert "<nav" not in fragment.text.split("<table", 1)[0]
    assert "<html" not in fragment.text


def test_console_page_dom_contract(dashboard: Dashboard, client: httpx.Client) -> None:
    store = dashboard.store
    store.add_console_line("api", "stdout", "\x1b[32mready\x1b[0m <b>on</b> 8080")
    store.add_console_line("api", "stderr", "warning: slow")
    store.add_console_line("cache", "stdout", "other resource")
    html = client.get("/consolelogs/resource/api").text
    assert '<pre id="console"' in html
    assert '<input type="checkbox" id="follow" checked>' in html
    lines = re.findall(r'<div class="(line[^"]*)" data-seq="(\d+)">', html)
    assert [cls for cls, _ in lines] == ["line", "line stderr"]
    assert '<span style="color:#0dbc79">ready</span> &lt;b&gt;on&lt;/b&gt; 8080' in html
    assert "other resource" not in html
    assert 'class="dropped"' not in html


def test_console_page_notes_dropped_lines() -> None:
    store = TelemetryStore(Limits(console_lines=2))
    for n in range(5):
        store.add_console_line("api", "stdout", f"line {n}")
    server = DashboardServer(FakeSource(), store, token="t" * 32, otlp_api_key="k" * 32)
    server.start()
    try:
        assert server.wait_started(10)
        with httpx.Client(base_url=server.ui_url, timeout=10, follow_redirects=True) as c:
            html = c.get(server.login_url).text  # follows the redirect to /
            assert '<table id="resources">' in html
            console = c.get("/consolelogs/resource/api").text
    finally:
        server.stop()
    assert '<p class="dropped">3 older entries dropped</p>' in console
    assert re.findall(r'data-seq="\d+">', console) and "line 0" not in console


def test_unknown_console_resource_is_404(client: httpx.Client) -> None:
    response = client.get("/consolelogs/resource/nope")
    assert response.status_code == 404
    assert "No resource named" in response.text


def test_console_index_links_every_resource(client: httpx.Client) -> None:
    html = client.get("/consolelogs").text
    for name in ("api", "cache"):
        assert f'<a class="console-link" href="/consolelogs/resource/{name}">' in html


def test_security_headers(client: httpx.Client, anonymous: httpx.Client) -> None:
    for response in (client.get("/"), client.get("/api/resources"), anonymous.get("/login")):
        headers = response.headers
        assert "default-src 'self'" in headers["content-security-policy"]
        assert "frame-ancestors 'none'" in headers["content-security-policy"]
        assert headers["x-frame-options"] == "DENY"
        assert headers["cache-control"] == "no-store"
        assert headers["referrer-policy"] == "no-referrer"


# -- telemetry through the OTLP receiver ---------------------------------------------------
def test_real_sdk_spans_reach_the_traces_pages(dashboard: Dashboard, client: httpx.Client) -> None:
    trace_id = _send_trace(dashboard)
    wait_until(lambda: len(dashboard.store.trace(trace_id)) == 2, what="the exported spans")
    spans = dashboard.store.trace(trace_id)
    assert {s.name for s in spans} == {"GET /items", "cache get"}
    assert {s.resource for s in spans} == {"api"}
    traces = client.get("/traces").text
    assert '<table id="traces">' in traces
    assert f'href="/traces/detail/{trace_id}"' in traces
    assert f"/traces/detail/{trace_id}" in client.get("/traces/resource/api").text
    detail = client.get(f"/traces/detail/{trace_id}")
    assert detail.status_code == 200
    assert '<div id="waterfall"' in detail.text
    assert detail.text.count('class="span') >= 2
    assert client.get("/traces/detail/" + "0" * 32).status_code == 404


def test_real_sdk_logs_reach_the_structured_logs_page(
    dashboard: Dashboard, client: httpx.Client
) -> None:
    exporter = OTLPLogExporter(
        endpoint=f"{dashboard.otlp}/v1/logs", headers={"x-otlp-api-key": dashboard.api_key}
    )
    provider = LoggerProvider(resource=Resource.create({"service.name": "api"}))
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    import logging

    from opentelemetry.sdk._logs import LoggingHandler

    logger = logging.getLogger("dashboard-test-logs")
    logger.propagate = False
    handler = LoggingHandler(logger_provider=provider)
    logger.addHandler(handler)
    try:
        logger.warning("cache is slow today")
    finally:
        logger.removeHandler(handler)
        provider.shutdown()
    wait_until(lambda: dashboard.store.log_records().items, what="the exported log record")
    html = client.get("/structuredlogs").text
    assert '<table id="logs">' in html
    assert "cache is slow today" in html
    assert '<tr class="log' in html and "data-severity=" in html


def test_otlp_json_is_accepted_and_answered_in_json(dashboard: Dashboard) -> None:
    body = (
        '{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":'
        '{"stringValue":"web"}}]},"scopeSpans":[{"spans":[{"traceId":"'
        + "ab" * 16
        + '","spanId":"'
        + "cd" * 8
        + '","name":"GET /","kind":2,"startTimeUnixNano":"1","endTimeUnixNano":"2"}]}]}]}'
    )
    response = httpx.post(
        f"{dashboard.otlp}/v1/traces",
        content=body,
        headers={"content-type": "application/json", "x-otlp-api-key": dashboard.api_key},
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert [s.resource for s in dashboard.store.trace("ab" * 16)] == ["web"]


def test_otlp_refuses_bad_types_bodies_and_sizes(dashboard: Dashboard) -> None:
    key = {"x-otlp-api-key": dashboard.api_key}
    with httpx.Client(base_url=dashboard.otlp, timeout=10) as otlp:
        wrong_type = otlp.post(
            "/v1/traces", content=b"x", headers={**key, "content-type": "text/plain"}
        )
        assert wrong_type.status_code == 415
        assert "application/x-protobuf" in wrong_type.text
        garbage = otlp.post(
            "/v1/traces",
            content=b"\xff\x00garbage",
            headers={**key, "content-type": "application/x-protobuf"},
        )
        assert garbage.status_code == 400
        big = b"\x00" * (MAX_BODY + 1)
        too_big = otlp.post(
            "/v1/logs", content=big, headers={**key, "content-type": "application/x-protobuf"}
        )
        assert too_big.status_code == 400

        def chunks() -> Iterator[bytes]:
            for _ in range(5):
                yield b"\x00" * (1024 * 1024)

        chunked = otlp.post(
            "/v1/metrics",
            content=chunks(),
            headers={**key, "content-type": "application/x-protobuf"},
        )
        assert chunked.status_code == 400
        zipped = gzip.compress(ExportTraceServiceResponse().SerializeToString())
        gz = otlp.post(
            "/v1/traces",
            content=zipped,
            headers={**key, "content-type": "application/x-protobuf", "content-encoding": "gzip"},
        )
        assert gz.status_code == 200
        assert otlp.get("/v1/traces", headers=key).status_code == 405
        assert otlp.get("/", headers=key).status_code == 404
    assert dashboard.store.version == 0


def test_unsupported_encodings_are_refused_before_the_body(dashboard: Dashboard) -> None:
    headers = {
        "x-otlp-api-key": dashboard.api_key,
        "content-type": "application/x-protobuf",
        "content-encoding": "br",
    }
    response = httpx.post(f"{dashboard.otlp}/v1/traces", content=b"x", headers=headers)
    assert response.status_code == 415
    assert "gzip" in response.text
    bomb = gzip.compress(b"\x00" * (MAX_BODY + 1))
    response = httpx.post(
        f"{dashboard.otlp}/v1/traces",
        content=bomb,
        headers={**headers, "content-encoding": "gzip"},
    )
    assert response.status_code == 400
    assert dashboard.store.version == 0


class _GatedStore(TelemetryStore):
    """A real store whose ``add_spans`` waits for a gate: it stands in for a slow decode of a
    large request, so the test can see whether it holds up the receiver's event loop."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.gate = threading.Event()

    def add_spans(self, spans: Iterable[Span]) -> int:
        self.entered.set()
        assert self.gate.wait(20), "the test never opened the gate"
        return super().add_spans(spans)


def test_otlp_decoding_does_not_stall_other_requests() -> None:
    """While one export is being decoded and stored (held at the gate), other exporters and
    the UI are answered: decoding runs on a worker thread, not the receiver's event loop."""
    store = _GatedStore()
    key = secrets.token_hex(16)
    server = DashboardServer(FakeSource(), store, token=secrets.token_hex(16), otlp_api_key=key)
    server.start()
    results: list[str] = []
    try:
        assert server.wait_started(10)
        dashboard = Dashboard(server, FakeSource(), store, "", key)
        slow = threading.Thread(target=lambda: results.append(_send_trace(dashboard)))
        slow.start()
        assert store.entered.wait(10), "the trace export never reached the store"
        with httpx.Client(base_url=server.otlp_url, timeout=5) as otlp:
            assert otlp.get("/", headers={"x-otlp-api-key": key}).status_code == 404
        exporter = OTLPLogExporter(
            endpoint=f"{server.otlp_url}/v1/logs", headers={"x-otlp-api-key": key}, timeout=5
        )
        provider = LoggerProvider(resource=Resource.create({"service.name": "worker"}))
        provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
        provider.get_logger("tests").emit(body="while the trace waits")
        provider.shutdown()
        assert store.log_records("worker").items, "the log export waited for the trace"
        assert httpx.get(f"{server.ui_url}/health", timeout=5).status_code == 200
        assert not results, "the trace export finished before its gate opened"
        store.gate.set()
        slow.join(10)
        assert len(results) == 1 and len(store.trace(results[0])) == 2
    finally:
        store.gate.set()
        server.stop()


def test_oversized_body_is_refused_from_its_length_without_reading_it(
    dashboard: Dashboard,
) -> None:
    with socket.create_connection(("127.0.0.1", dashboard.server.otlp_port), timeout=10) as sock:
        sock.sendall(
            b"POST /v1/traces HTTP/1.1\r\nHost: localhost\r\n"
            b"Content-Type: application/x-protobuf\r\n"
            + f"x-otlp-api-key: {dashboard.api_key}\r\n".encode()
            + f"Content-Length: {MAX_BODY + 1}\r\n\r\n".encode()
        )
        answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 400")


def test_each_port_serves_one_role(dashboard: Dashboard, client: httpx.Client) -> None:
    otlp_on_ui = client.post(
        "/v1/traces",
        content=b"",
        headers={"content-type": "application/x-protobuf", "x-otlp-api-key": dashboard.api_key},
    )
    assert otlp_on_ui.status_code == 404
    with httpx.Client(base_url=dashboard.otlp, timeout=10, cookies=client.cookies) as otlp:
        assert otlp.get("/").status_code == 404
        assert otlp.get("/api/resources").status_code == 404
        assert otlp.get(f"/login?t={dashboard.token}").status_code == 404


# -- live updates ---------------------------------------------------------------------------
def test_sse_sends_changed_after_a_store_change(dashboard: Dashboard, client: httpx.Client) -> None:
    with client.stream("GET", "/api/events?topic=traces") as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = response.iter_lines()
        assert next(lines) == "retry: 2000"
        _send_trace(dashboard)
        block = _events(lines, "changed")
    assert any(line.startswith('data: {"version":') for line in block)


def test_sse_sends_changed_when_resources_change(
    dashboard: Dashboard, client: httpx.Client
) -> None:
    with client.stream("GET", "/api/events?topic=resources") as response:
        lines = response.iter_lines()
        assert next(lines) == "retry: 2000"
        dashboard.source.set_state("cache", "Exited")
        _events(lines, "changed")


def test_sse_console_lines_arrive_rendered(dashboard: Dashboard, client: httpx.Client) -> None:
    dashboard.store.add_console_line("api", "stdout", "before the page")
    after = re.search(r'data-after="(\d+)"', client.get("/consolelogs/resource/api").text)
    assert after
    url = f"/api/events?topic=console&resource=api&after={after.group(1)}"
    with client.stream("GET", url) as response:
        dashboard.store.add_console_line("api", "stderr", "\x1b[31mboom\x1b[0m <x>")
        dashboard.store.add_console_line("cache", "stdout", "not this one")
        block = _events(response.iter_lines(), "line")
    data = "".join(line[len("data: ") :] for line in block if line.startswith("data: "))
    assert '<div class="line stderr" data-seq=' in data
    assert '<span style="color:#cd3131">boom</span> &lt;x&gt;' in data
    assert "before the page" not in data
    assert "not this one" not in data
    assert any(line.startswith("id: ") for line in block)


def test_sse_rejects_unknown_topics(client: httpx.Client) -> None:
    response = client.get("/api/events?topic=nope")
    assert response.status_code == 400
    assert "resources" in response.json()["error"]


# -- JSON API -------------------------------------------------------------------------------
def test_api_resources_lists_views_without_secrets(client: httpx.Client) -> None:
    response = client.get("/api/resources")
    assert response.status_code == 200
    names = [r["name"] for r in response.json()]
    assert names == ["cache", "api"]
    assert SECRET not in response.text


def test_reveal_api_is_the_only_way_to_a_secret(dashboard: Dashboard, client: httpx.Client) -> None:
    response = client.post("/api/resources/cache/environment/REDIS_PASSWORD/reveal")
    assert response.status_code == 200
    assert response.json() == {"resource": "cache", "name": "REDIS_PASSWORD", "value": SECRET}
    missing = client.post("/api/resources/cache/environment/NOPE/reveal")
    assert missing.status_code == 404
    assert client.get("/api/resources/cache/environment/REDIS_PASSWORD/reveal").status_code == 405
    cross = client.post(
        "/api/resources/cache/environment/REDIS_PASSWORD/reveal",
        headers={"origin": "http://evil.example"},
    )
    assert cross.status_code == 403
    assert SECRET not in cross.text


def test_commands_api(dashboard: Dashboard, client: httpx.Client) -> None:
    stop = client.post("/api/resources/api/commands/stop")
    assert (stop.status_code, stop.json()) == (200, {"ok": True, "message": "api: stop done"})
    assert dashboard.source.states["api"] == "Exited"
    refused = client.post("/api/resources/api/commands/restart")
    assert refused.status_code == 409
    assert refused.json() == {"ok": False, "message": "api is not running"}
    assert client.post("/api/resources/api/commands/start").status_code == 200
    unknown_resource = client.post("/api/resources/nope/commands/start")
    assert unknown_resource.status_code == 404
    unknown_command = client.post("/api/resources/api/commands/explode")
    assert unknown_command.status_code == 404
    assert "start, stop, restart" in unknown_command.json()["error"]
    assert dashboard.source.executed == [("api", "stop"), ("api", "restart"), ("api", "start")]


def test_console_api_pages_lines(dashboard: Dashboard, client: httpx.Client) -> None:
    first = dashboard.store.add_console_line("api", "stdout", "one")
    dashboard.store.add_console_line("api", "stderr", "two")
    body = client.get(f"/api/consolelogs?resource=api&after={first.seq}").json()
    assert [(i["text"], i["stream"]) for i in body["items"]] == [("two", "stderr")]
    assert body["dropped"] == 0
    assert body["lastSeq"] >= first.seq + 1
    assert client.get("/api/consolelogs?after=x").status_code == 400


def test_no_secret_in_any_page_or_answer(dashboard: Dashboard, client: httpx.Client) -> None:
    _send_trace(dashboard)
    answers = [client.get(path) for path in PAGES]
    answers += [client.get("/api/resources"), client.get("/api/consolelogs")]
    answers += [client.get("/", headers={"X-Fragment": "1"}), client.get("/login")]
    for answer in answers:
        assert SECRET not in answer.text, answer.request.url
        assert dashboard.token not in answer.text, answer.request.url
        assert dashboard.api_key not in answer.text, answer.request.url


# -- life cycle -----------------------------------------------------------------------------
def _server() -> DashboardServer:
    return DashboardServer(
        FakeSource(), TelemetryStore(), token=secrets.token_hex(16), otlp_api_key="k" * 32
    )


def test_bind_gives_ports_at_once_and_never_all_interfaces() -> None:
    server = _server()
    with pytest.raises(RuntimeError, match="bind"):
        _ = server.ui_port
    server.bind()
    try:
        assert server.ui_port != server.otlp_port
        # 127.0.0.1, the address bound: `localhost` may resolve to ::1 first.
        assert server.ui_url == f"http://127.0.0.1:{server.ui_port}"
        assert server.login_url.startswith(f"{server.ui_url}/login?t=")
        assert server.otlp_url == f"http://127.0.0.1:{server.otlp_port}"
    finally:
        server.stop()
    wide = DashboardServer(
        FakeSource(),
        TelemetryStore(),
        token="t" * 32,
        otlp_api_key="k" * 32,
        otlp_hosts=("0.0.0.0",),
    )
    with pytest.raises(ValueError, match="all interfaces"):
        wide.bind()


def test_a_port_in_use_is_an_oserror_and_leaves_nothing_bound() -> None:
    first = _server()
    first.bind()
    try:
        second = DashboardServer(
            FakeSource(),
            TelemetryStore(),
            token="t" * 32,
            otlp_api_key="k",
            otlp_port=first.ui_port,
        )
        with pytest.raises(OSError):
            second.bind()
        second.stop()
    finally:
        first.stop()


def test_stop_ends_live_streams_within_two_seconds(dashboard: Dashboard) -> None:
    opened = threading.Event()
    ended = threading.Event()

    def listen() -> None:
        with httpx.Client(base_url=dashboard.ui, timeout=10) as c:
            c.get(f"/login?t={dashboard.token}")
            try:
                with c.stream("GET", "/api/events?topic=resources") as response:
                    for _ in response.iter_lines():
                        opened.set()
            except httpx.HTTPError:
                pass
        ended.set()

    thread = threading.Thread(target=listen, daemon=True)
    thread.start()
    assert opened.wait(10)
    started = time.monotonic()
    dashboard.server.stop()
    assert time.monotonic() - started < 2.0
    assert ended.wait(2)
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{dashboard.ui}/health", timeout=2)
