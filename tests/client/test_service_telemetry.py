"""Service-side telemetry: ``add_service_defaults()`` and the instrumented quick-start API.

The quick start runs as a real process against a real redis-server and exports with the real
OTLP/HTTP exporters to a tiny real receiver (stdlib HTTP server, ``opentelemetry.proto``
decoding, API key checked as the dashboard does). Global OpenTelemetry providers can be set
only once per process, so cases that set them run in a fresh interpreter.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from apphost_sdk.errors import ConfigurationError
from apphost_sdk.hosting import TelemetryHandles, configure_opentelemetry

from .redis_process import RedisProcess, free_port

ROOT = Path(__file__).resolve().parents[2]
API_DIR = ROOT / "samples" / "quickstart" / "api"
API_KEY = "test-otlp-key"
SERVER, CLIENT = 2, 3  # Span.SpanKind values
STATUS_ERROR = 2

_MESSAGES: dict[str, Callable[[], Any]] = {
    "traces": trace_service_pb2.ExportTraceServiceRequest,
    "logs": logs_service_pb2.ExportLogsServiceRequest,
    "metrics": metrics_service_pb2.ExportMetricsServiceRequest,
}
_RESPONSES: dict[str, Callable[[], Any]] = {
    "traces": trace_service_pb2.ExportTraceServiceResponse,
    "logs": logs_service_pb2.ExportLogsServiceResponse,
    "metrics": metrics_service_pb2.ExportMetricsServiceResponse,
}


class OtlpReceiver:
    """An OTLP/HTTP protobuf receiver on 127.0.0.1 keeping every decoded export request."""

    def __init__(self) -> None:
        self.requests: dict[str, list[Any]] = {signal: [] for signal in _MESSAGES}
        self.rejected = 0
        self._changed = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                signal_name = self.path.removeprefix("/v1/")
                if self.headers.get("x-otlp-api-key") != API_KEY or signal_name not in _MESSAGES:
                    with receiver._changed:
                        receiver.rejected += 1
                    self.send_response(401)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                assert self.headers.get("Content-Type") == "application/x-protobuf"
                message = _MESSAGES[signal_name]()
                message.ParseFromString(body)
                with receiver._changed:
                    receiver.requests[signal_name].append(message)
                    receiver._changed.notify_all()
                answer = _RESPONSES[signal_name]().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def spans(self) -> list[tuple[Any, Any]]:
        """Every ``(resource, span)`` received so far."""
        with self._changed:
            return [
                (rs.resource, span)
                for request in self.requests["traces"]
                for rs in request.resource_spans
                for ss in rs.scope_spans
                for span in ss.spans
            ]

    def log_records(self) -> list[tuple[Any, Any]]:
        """Every ``(resource, log record)`` received so far."""
        with self._changed:
            return [
                (rl.resource, record)
                for request in self.requests["logs"]
                for rl in request.resource_logs
                for sl in rl.scope_logs
                for record in sl.log_records
            ]

    def metrics(self) -> dict[str, list[Any]]:
        """Metrics received so far by name (one entry per export)."""
        found: dict[str, list[Any]] = {}
        with self._changed:
            for request in self.requests["metrics"]:
                for rm in request.resource_metrics:
                    for sm in rm.scope_metrics:
                        for metric in sm.metrics:
                            found.setdefault(metric.name, []).append(metric)
        return found

    def wait_for(self, condition: Callable[[], bool], timeout: float = 20.0) -> None:
        """Block until ``condition()`` holds after some export, or fail at the deadline."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not condition():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"telemetry not received in {timeout} s")
                self._changed.wait(min(remaining, 0.5))


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    server = OtlpReceiver()
    yield server
    server.stop()


def _attributes(item: Any) -> dict[str, Any]:
    """Attributes of a span, log record, data point or resource as a plain dict."""
    values: dict[str, Any] = {}
    for kv in item.attributes:
        kind = kv.value.WhichOneof("value")
        values[kv.key] = getattr(kv.value, kind) if kind else None
    return values


def _clean_environ(**extra: str) -> dict[str, str]:
    """This process's environment without any ``OTEL_*``, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


def _otel_environ(receiver: OtlpReceiver, delay_ms: int) -> dict[str, str]:
    """What the app host injects (DESIGN 'Telemetry wiring'), with export delays ``delay_ms``."""
    return {
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_EXPORTER_OTLP_HEADERS": f"x-otlp-api-key={API_KEY}",
        "OTEL_SERVICE_NAME": "api",
        "OTEL_RESOURCE_ATTRIBUTES": "service.instance.id=api-test1",
        "OTEL_BSP_SCHEDULE_DELAY": str(delay_ms),
        "OTEL_BLRP_SCHEDULE_DELAY": str(delay_ms),
        "OTEL_METRIC_EXPORT_INTERVAL": str(delay_ms),
        "OTEL_TRACES_SAMPLER": "always_on",
        "OTEL_METRICS_EXEMPLAR_FILTER": "trace_based",
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_LOGS_EXPORTER": "otlp",
        "OTEL_METRICS_EXPORTER": "otlp",
        "OTEL_PYTHON_LOGGING_AUTO_INSTRUMENTATION_ENABLED": "true",
    }


class QuickstartApi:
    """The quick-start API as a real process on a free port."""

    def __init__(self, redis_server: RedisProcess, otel: dict[str, str]) -> None:
        self.port = free_port()
        env = _clean_environ(
            PORT=str(self.port),
            ConnectionStrings__cache=redis_server.connection_string,
            **otel,
        )
        self.proc = subprocess.Popen(
            [sys.executable, "app.py"],
            cwd=API_DIR,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                self.get("/health")
                return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.proc.kill()
                    raise AssertionError(f"the API did not start:\n{self.output()}") from None
                time.sleep(0.05)

    def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
        request = urllib.request.Request(self.url + path, headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    def terminate(self) -> int:
        """SIGTERM (as the app host stops it); the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise

    def output(self) -> str:
        self.terminate() if self.proc.poll() is None else None
        assert self.proc.stdout is not None
        return self.proc.stdout.read()


@pytest.fixture
def start_api(redis_server: RedisProcess) -> Iterator[Callable[[dict[str, str]], QuickstartApi]]:
    started: list[QuickstartApi] = []

    def start(otel: dict[str, str]) -> QuickstartApi:
        api = QuickstartApi(redis_server, otel)
        started.append(api)
        return api

    yield start
    for api in started:
        if api.proc.poll() is None:
            api.proc.kill()
            api.proc.wait()
        if api.proc.stdout is not None:
            api.proc.stdout.close()


TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN_ID = "00f067aa0ba902b7"


def _request_trace(api: QuickstartApi) -> None:
    """One counted request continuing a caller's trace, a health check and a 404."""
    status, body = api.get("/", {"traceparent": f"00-{TRACE_ID}-{CALLER_SPAN_ID}-01"})
    assert status == 200 and body["visits"] >= 1
    assert api.get("/health")[0] == 200
    assert api.get("/missing")[0] == 404


def _assert_one_trace(receiver: OtlpReceiver) -> None:
    """The request's SERVER span and its cache CLIENT spans form one trace, with its log."""
    spans = [(r, s) for r, s in receiver.spans() if s.trace_id.hex() == TRACE_ID]
    servers = [s for _, s in spans if s.kind == SERVER]
    assert [s.name for s in servers] == ["GET /"]
    server = servers[0]
    assert server.parent_span_id.hex() == CALLER_SPAN_ID  # traceparent was extracted
    attributes = _attributes(server)
    assert attributes["http.request.method"] == "GET"
    assert attributes["url.path"] == "/"
    assert attributes["http.response.status_code"] == 200
    assert attributes["server.port"] > 0
    clients = [s for _, s in spans if s.kind == CLIENT]
    assert {s.name for s in clients} >= {"cache get", "cache set"}
    assert all(s.parent_span_id == server.span_id for s in clients)
    assert all(_attributes(s)["db.system"] == "redis" for s in clients)
    resource = _attributes(spans[0][0])
    assert resource["service.name"] == "api"
    assert resource["service.instance.id"] == "api-test1"

    logs = [rec for _, rec in receiver.log_records() if rec.trace_id.hex() == TRACE_ID]
    assert [rec.severity_text for rec in logs] == ["INFO"]  # one record per request
    assert logs[0].body.string_value.startswith("GET / -> 200")
    assert logs[0].span_id == server.span_id
    bodies = [rec.body.string_value for _, rec in receiver.log_records()]
    assert not [b for b in bodies if "/health" in b]  # health checks stay quiet
    assert not [s for _, s in receiver.spans() if "/health" in _attributes(s).get("url.path", "")]
    assert receiver.rejected == 0


def _assert_metrics(receiver: OtlpReceiver) -> None:
    metrics = receiver.metrics()
    counted = {
        (_attributes(p).get("http.route"), _attributes(p)["http.response.status_code"]): p.as_int
        for m in metrics["quickstart.api.requests"]
        for p in m.sum.data_points
    }
    assert counted[("/", 200)] >= 1 and counted[(None, 404)] >= 1
    durations = [
        p for m in metrics["http.server.request.duration"] for p in m.histogram.data_points
    ]
    assert durations and all(p.count >= 1 and p.sum > 0 for p in durations)
    assert metrics["http.server.request.duration"][0].unit == "s"


def test_quickstart_exports_one_trace_while_running(
    receiver: OtlpReceiver, start_api: Callable[[dict[str, str]], QuickstartApi]
) -> None:
    """With the app host's variables (short intervals) telemetry arrives while it serves."""
    api = start_api(_otel_environ(receiver, delay_ms=200))
    _request_trace(api)

    def complete() -> bool:
        spans = [s for _, s in receiver.spans() if s.trace_id.hex() == TRACE_ID]
        logs = [r for _, r in receiver.log_records() if r.trace_id.hex() == TRACE_ID]
        metrics = receiver.metrics()
        return (
            len(spans) >= 4
            and bool(logs)
            and "quickstart.api.requests" in metrics
            and "http.server.request.duration" in metrics
        )

    receiver.wait_for(complete)
    _assert_one_trace(receiver)
    _assert_metrics(receiver)
    assert api.terminate() == 0


def test_quickstart_flushes_on_close(
    receiver: OtlpReceiver, start_api: Callable[[dict[str, str]], QuickstartApi]
) -> None:
    """With minute-long intervals nothing is due yet: SIGTERM -> host.close() flushes it all."""
    api = start_api(_otel_environ(receiver, delay_ms=60_000))
    _request_trace(api)
    assert api.terminate() == 0
    _assert_one_trace(receiver)
    _assert_metrics(receiver)


def test_a_failed_request_is_an_error_span(receiver: OtlpReceiver) -> None:
    """The cache going away: 500, the SERVER span and the cache span have status Error."""
    redis_server = RedisProcess()
    api = QuickstartApi(redis_server, _otel_environ(receiver, delay_ms=60_000))
    try:
        redis_server.stop()
        status, body = api.get("/")
        assert (status, body) == (500, {"error": "internal error"})
        assert api.terminate() == 0
    finally:
        redis_server.stop()
        if api.proc.poll() is None:
            api.proc.kill()
        api.proc.wait()
        assert api.proc.stdout is not None
        api.proc.stdout.close()
    spans = [s for _, s in receiver.spans()]
    server = next(s for s in spans if s.kind == SERVER)
    assert server.name == "GET /" and server.status.code == STATUS_ERROR
    assert _attributes(server)["http.response.status_code"] == 500
    assert "exception" in [e.name for e in server.events]
    assert [s.status.code for s in spans if s.kind == CLIENT] == [STATUS_ERROR]
    failed = [r for _, r in receiver.log_records() if r.trace_id == server.trace_id]
    assert [r.severity_text for r in failed] == ["ERROR", "INFO"]


def test_quickstart_works_without_opentelemetry_variables(
    receiver: OtlpReceiver, start_api: Callable[[dict[str, str]], QuickstartApi]
) -> None:
    api = start_api({})
    status, body = api.get("/")
    assert status == 200 and body["visits"] >= 1
    output = api.output()
    assert api.proc.returncode == 0, output
    assert "GET / -> 200" in output  # the request log still reaches the console
    assert "Traceback" not in output and "opentelemetry" not in output.casefold()
    assert receiver.spans() == [] and receiver.rejected == 0


# -- configure_opentelemetry ----------------------------------------------------------------


def test_nothing_is_configured_without_an_endpoint() -> None:
    for environ in (
        {},
        {"OTEL_SERVICE_NAME": "api", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://localhost:1", "OTEL_SDK_DISABLED": "true"},
    ):
        handles = configure_opentelemetry(environ)
        assert isinstance(handles, TelemetryHandles)
        assert handles.signals == ()
        handles.shutdown()


@pytest.mark.parametrize(
    ("variable", "value", "hint"),
    [
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc", "opentelemetry-exporter-otlp-proto-grpc"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json", "cannot send http/json"),
        ("OTEL_EXPORTER_OTLP_LOGS_PROTOCOL", "grpc", "opentelemetry-exporter-otlp-proto-grpc"),
        ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "thrift", "set OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"),
    ],
)
def test_an_unsupported_protocol_is_a_clear_error(variable: str, value: str, hint: str) -> None:
    environ = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://localhost:1", variable: value}
    with pytest.raises(ConfigurationError) as raised:
        configure_opentelemetry(environ)
    message = str(raised.value)
    assert f"{variable}={value!r}" in message
    assert "http/protobuf" in message and hint in message


def test_a_per_signal_protocol_overrides_the_general_one() -> None:
    """``OTEL_EXPORTER_OTLP_TRACES_PROTOCOL=http/protobuf`` wins over a general ``grpc``, but
    the signals without their own setting still see ``grpc``."""
    environ = {
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://localhost:1/v1/traces",
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
    }
    _run_python(
        """
        from apphost_sdk.hosting import configure_opentelemetry
        handles = configure_opentelemetry(ENVIRON)  # only traces have an endpoint
        assert handles.signals == ("traces",), handles.signals
        handles.shutdown()
        """,
        environ,
    )
    with pytest.raises(ConfigurationError, match="OTEL_EXPORTER_OTLP_PROTOCOL='grpc'"):
        configure_opentelemetry({**environ, "OTEL_EXPORTER_OTLP_ENDPOINT": "http://localhost:1"})


def _run_python(code: str, environ: dict[str, str]) -> str:
    """Run ``code`` in a fresh interpreter (global providers are set once per process) with
    ``environ`` as its OTel environment and as ``ENVIRON``; its output."""
    script = f"ENVIRON = {environ!r}\n" + textwrap.dedent(code)
    result = subprocess.run(
        [sys.executable, "-c", script],
        env=_clean_environ(**environ),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


def test_a_provider_the_user_set_is_kept(receiver: OtlpReceiver) -> None:
    """As under ``opentelemetry-instrument``: the user's tracer provider stays in place and
    still gets the spans; only the signals without a provider are configured."""
    output = _run_python(
        """
        import logging
        from opentelemetry import metrics, trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
            InMemorySpanExporter,
        )
        from apphost_sdk.hosting import configure_opentelemetry

        mine, exported = TracerProvider(), InMemorySpanExporter()
        mine.add_span_processor(SimpleSpanProcessor(exported))
        trace.set_tracer_provider(mine)
        handles = configure_opentelemetry()
        assert handles.signals == ("metrics", "logs"), handles.signals
        assert handles.tracer_provider is None and trace.get_tracer_provider() is mine
        assert metrics.get_meter_provider() is handles.meter_provider
        again = configure_opentelemetry()  # a second call adds nothing
        assert again.signals == (), again.signals
        assert sum(h is handles.log_handler for h in logging.getLogger().handlers) == 1
        with trace.get_tracer("t").start_as_current_span("mine"):
            logging.getLogger("user").warning("inside my span")
        handles.shutdown()
        handles.shutdown()  # idempotent
        assert handles.log_handler not in logging.getLogger().handlers
        assert [s.name for s in exported.get_finished_spans()] == ["mine"]
        print("ok")
        """,
        _otel_environ(receiver, delay_ms=60_000),
    )
    assert "ok" in output and "Overriding" not in output
    assert receiver.spans() == []  # traces stayed with the user's provider
    records = receiver.log_records()
    assert [r.body.string_value for _, r in records] == ["inside my span"]
    assert records[0][1].trace_id != b"\0" * 16  # correlated with the user's span


def test_add_service_defaults_returns_the_builder_and_flushes_on_close(
    receiver: OtlpReceiver,
) -> None:
    _run_python(
        """
        import logging
        from opentelemetry import trace
        from apphost_sdk.hosting import HostApplicationBuilder, TelemetryHandles

        builder = HostApplicationBuilder()
        assert builder.add_service_defaults() is builder
        assert builder.add_service_defaults() is builder  # once is enough
        handles = builder.services.get(TelemetryHandles)
        assert handles.signals == ("traces", "metrics", "logs"), handles.signals
        host = builder.build()
        with trace.get_tracer("t").start_as_current_span("work"):
            logging.getLogger("t").warning("working")
        host.close()
        assert handles.log_handler not in logging.getLogger().handlers
        """,
        _otel_environ(receiver, delay_ms=60_000),
    )
    assert [s.name for _, s in receiver.spans()] == ["work"]
    assert [r.body.string_value for _, r in receiver.log_records()] == ["working"]
