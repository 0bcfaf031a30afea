"""Load-generating programs for ``benchmarks/dashboard.py`` (one mode a process).

- ``otlp URL KEY --service NAME --seconds S``: builds one ``ExportTraceServiceRequest`` of
  ``--spans`` spans (64 traces of 8) with ``opentelemetry.proto``, serialises it once, prints
  ``ready``, waits for a start time (epoch seconds) on stdin, then POSTs it to ``URL/v1/traces``
  over one keep-alive connection until ``S`` seconds have passed, and prints a JSON line with
  the batches accepted. Every post gets fresh trace ids (an 8-byte marker in the serialised
  body is replaced), so the store sees new traces, not one trace growing.
- ``service --rate N``: a service as the app host starts it: ``N`` spans/s through the real
  OpenTelemetry SDK exporter configured by the injected ``OTEL_*`` variables, and ``N`` console
  lines/s, until SIGTERM (then it flushes and exits 0).
- ``serve``: a DashboardServer + TelemetryStore without an app host (no resources), for
  measuring ingest in isolation; prints a JSON line with its URLs and key, serves until stdin
  closes.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import secrets
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent

#: Spans of one trace in the OTLP batch (a root server span and its children).
SPANS_PER_TRACE = 8


def build_batch(service: str, spans: int, marker: bytes) -> bytes:
    """One serialised ExportTraceServiceRequest of ``spans`` spans of ``service``, whose trace
    ids all start with ``marker`` (8 bytes), the part a sender replaces per post."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
    from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

    def attr(key: str, value: str | int) -> KeyValue:
        if isinstance(value, int):
            return KeyValue(key=key, value=AnyValue(int_value=value))
        return KeyValue(key=key, value=AnyValue(string_value=value))

    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    rs.resource.attributes.extend(
        [attr("service.name", service), attr("service.instance.id", f"{service}-bench")]
    )
    scope = rs.scope_spans.add()
    scope.scope.name = "benchmarks.dashboard"
    now = time.time_ns()
    for i in range(spans):
        trace_no, pos = divmod(i, SPANS_PER_TRACE)
        root_id = (trace_no * SPANS_PER_TRACE + 1).to_bytes(8, "big")
        start = now + pos * 100_000
        scope.spans.add(
            trace_id=marker + trace_no.to_bytes(8, "big"),
            span_id=(i + 1).to_bytes(8, "big"),
            parent_span_id=b"" if pos == 0 else root_id,
            name="GET /items/{id}" if pos == 0 else f"cache get item:{i}",
            kind=Span.SPAN_KIND_SERVER if pos == 0 else Span.SPAN_KIND_CLIENT,
            start_time_unix_nano=start,
            end_time_unix_nano=start + 2_000_000 - pos * 200_000,
            attributes=[
                attr("http.request.method", "GET"),
                attr("url.path", f"/items/{i}"),
                attr("http.response.status_code", 200),
                attr("server.address", "localhost"),
                attr("db.system", "redis"),
            ],
            status=Status(code=Status.STATUS_CODE_UNSET),
        )
    body: bytes = request.SerializeToString()
    if body.count(marker) != spans:  # once per span: in its trace id
        raise RuntimeError("the trace-id marker also occurs elsewhere in the body; run again")
    return body


def run_otlp(url: str, key: str, service: str, seconds: float, spans: int) -> int:
    """The ``otlp`` mode (see the module docstring)."""
    marker = secrets.token_bytes(8)
    template = build_batch(service, spans, marker)
    parts = urlsplit(url)
    host, port = parts.hostname or "localhost", parts.port or 80
    headers = {"Content-Type": "application/x-protobuf", "x-otlp-api-key": key}
    conn = http.client.HTTPConnection(host, port, timeout=30)
    conn.connect()  # outside the timed window
    print("ready", flush=True)
    line = sys.stdin.readline()
    if not line.strip():
        return 1
    start_at = float(line)
    while (wait := start_at - time.time()) > 0:
        time.sleep(min(wait, 0.05))
    end = start_at + seconds
    ok = failed = 0
    statuses: dict[str, int] = {}
    latencies: list[float] = []
    while True:
        body = template.replace(marker, secrets.token_bytes(8))
        t0 = time.perf_counter()
        try:
            conn.request("POST", "/v1/traces", body, headers)
            resp = conn.getresponse()
            resp.read()
            status = str(resp.status)
        except (OSError, http.client.HTTPException) as exc:
            status = type(exc).__name__
            conn.close()
            conn = http.client.HTTPConnection(host, port, timeout=30)
        latencies.append(time.perf_counter() - t0)
        if time.time() > end:
            break  # finished after the window: not counted
        statuses[status] = statuses.get(status, 0) + 1
        if status == "200":
            ok += 1
        else:
            failed += 1
    conn.close()
    latencies.sort()
    print(
        json.dumps(
            {
                "ok": ok,
                "failed": failed,
                "statuses": statuses,
                "spans": spans,
                "bytes": len(template),
                "p50_ms": latencies[len(latencies) // 2] * 1000 if latencies else None,
            }
        ),
        flush=True,
    )
    return 0


def run_service(rate: int, seconds: float | None) -> int:
    """The ``service`` mode (see the module docstring): paced in 10 ms ticks, so the load is
    even across each second rather than one burst."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.trace import SpanKind

    if not os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        print("no OTEL_EXPORTER_OTLP_ENDPOINT: is the dashboard on?", file=sys.stderr, flush=True)
    provider = TracerProvider(resource=Resource.create())
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    tracer = provider.get_tracer("benchmarks.dashboard")
    stop = threading.Event()

    def on_term(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    tick = 0.01
    per_tick = max(1, round(rate * tick))
    started = time.monotonic()
    made = 0
    out = sys.stdout
    while not stop.is_set():
        next_tick = started + (made // per_tick + 1) * tick
        lines = []
        for _ in range(per_tick // 2 or 1):
            with tracer.start_as_current_span("GET /items/{id}", kind=SpanKind.SERVER) as span:
                span.set_attribute("http.request.method", "GET")
                span.set_attribute("url.path", f"/items/{made}")
                with tracer.start_as_current_span("cache get", kind=SpanKind.CLIENT) as child:
                    child.set_attribute("db.system", "redis")
                span.set_attribute("http.response.status_code", 200)
        for _ in range(per_tick):
            made += 1
            colour = "\x1b[32m" if made % 10 else "\x1b[31m"
            lines.append(f"{colour}INFO\x1b[0m request {made} GET /items/{made} 200 in 1.2 ms\n")
        out.write("".join(lines))
        out.flush()
        if seconds is not None and time.monotonic() - started >= seconds:
            break
        stop.wait(max(0.0, next_tick - time.monotonic()))
    provider.shutdown()
    print(f"sent {made} lines in {time.monotonic() - started:.1f} s", file=sys.stderr, flush=True)
    return 0


def run_serve() -> int:
    """The ``serve`` mode (see the module docstring)."""
    sys.path.insert(0, str(ROOT))
    from apphost_sdk.dashboard.server import DashboardServer
    from apphost_sdk.dashboard.source import CommandResult, ResourceView
    from apphost_sdk.telemetry.store import TelemetryStore

    class NoResources:
        """A DashboardSource with no resources (the dashboard alone)."""

        def resources(self) -> list[ResourceView]:
            return []

        def version(self) -> int:
            return 0

        def execute(self, resource: str, command: str) -> CommandResult:
            return CommandResult(False, f"no resource {resource!r} here")

        def reveal(self, resource: str, variable: str) -> str | None:
            return None

    token, key = secrets.token_hex(16), secrets.token_hex(16)
    server = DashboardServer(NoResources(), TelemetryStore(), token=token, otlp_api_key=key)
    server.bind()
    threading.Thread(target=server.start, name="dashboard", daemon=True).start()
    print(
        json.dumps(
            {
                "url": server.ui_url,
                "loginUrl": server.login_url,
                "otlpEndpoint": server.otlp_url,
                "otlpApiKey": key,
                "pid": os.getpid(),
            }
        ),
        flush=True,
    )
    sys.stdin.read()  # until the benchmark closes our stdin
    server.stop()
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="mode", required=True)
    p = sub.add_parser("otlp", help="POST OTLP/protobuf span batches for a while")
    p.add_argument("url")
    p.add_argument("key")
    p.add_argument("--service", default="bench-load")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--spans", type=int, default=512)
    p = sub.add_parser("service", help="spans and console lines at a rate, until SIGTERM")
    p.add_argument("--rate", type=int, default=1000)
    p.add_argument("--seconds", type=float, default=None)
    sub.add_parser("serve", help="a dashboard without an app host")
    ns = parser.parse_args()
    if ns.mode == "otlp":
        return run_otlp(ns.url, ns.key, ns.service, ns.seconds, ns.spans)
    if ns.mode == "service":
        return run_service(ns.rate, ns.seconds)
    return run_serve()


if __name__ == "__main__":
    raise SystemExit(main())
