"""The quick start's web API: counts visits in the distributed cache the app host wired up.

``GET /`` increments a counter stored in Redis (in the .NET ``IDistributedCache`` format, so a
.NET service could read it too) and returns it with the moment it was first seen; ``GET /health``
runs the cache's health check. Uses only the standard library's HTTP server.

``add_service_defaults()`` sends telemetry to the app host's dashboard: each request is a SERVER
span (continuing the caller's W3C ``traceparent``) whose cache calls are CLIENT child spans, a
request counter and a duration histogram, and one ``logging`` record per request tied to its
trace. Without the ``OTEL_*`` variables (run by hand) all of that is a no-op.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from urllib.parse import urlsplit

from opentelemetry import metrics, propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from apphost_sdk.caching import DistributedCache, DistributedCacheEntryOptions
from apphost_sdk.hosting import HealthStatus, HostApplicationBuilder

# Log lines also go to the console (the dashboard's console logs page), as well as to OTLP.
logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")
builder = HostApplicationBuilder()
builder.add_service_defaults()  # OTLP to the dashboard when the app host set OTEL_*
builder.add_redis_distributed_cache("cache")  # reads ConnectionStrings__cache
host = builder.build()
cache = host.services.get(DistributedCache)
lock = threading.Lock()
ENTRY = DistributedCacheEntryOptions(sliding_expiration=timedelta(minutes=20))

log = logging.getLogger("quickstart.api")
if builder.configuration.get("Logging:LogLevel:Default") is None:
    log.setLevel(logging.INFO)  # one record per request, unless configured otherwise
tracer = trace.get_tracer("quickstart.api")
meter = metrics.get_meter("quickstart.api")
requests_total = meter.create_counter(
    "quickstart.api.requests", unit="{request}", description="HTTP requests served"
)
request_duration = meter.create_histogram(
    "http.server.request.duration", unit="s", description="Duration of HTTP requests"
)
ROUTES = ("/",)
PORT = int(os.environ.get("PORT", "8000"))  # the app host assigns it (with_http_endpoint)


def count_visit() -> dict[str, object]:
    """Increment the visit counter in the cache (each call a CLIENT span) and describe it."""
    with lock:  # one process: keep read-modify-write simple
        visits = int(cache.get_string("visits") or "0") + 1
        cache.set_string("visits", str(visits), ENTRY)
        first = cache.get_string("first-visit")
        if first is None:
            first = datetime.now(timezone.utc).isoformat()
            cache.set_string("first-visit", first, ENTRY)
    return {"visits": visits, "firstVisit": first, "servedBy": os.getpid()}


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path == "/health":  # polled every few seconds: no span, no log
            report = host.health.check()
            self._send(200 if report.status is HealthStatus.HEALTHY else 503, report.to_dict())
            return
        self._traced(path)

    def _traced(self, path: str) -> None:
        """Serve ``path`` inside a SERVER span, then count, time and log the request."""
        started = time.perf_counter()
        route = path if path in ROUTES else None
        carrier = {name.lower(): value for name, value in self.headers.items()}
        attributes: dict[str, str | int] = {
            "http.request.method": "GET",
            "url.path": path,
            "server.port": PORT,
        }
        if route is not None:
            attributes["http.route"] = route
        with tracer.start_as_current_span(
            f"GET {route}" if route else "GET",
            context=propagate.extract(carrier),
            kind=SpanKind.SERVER,
            attributes=attributes,
        ) as span:
            try:
                status, body = (200, count_visit()) if route else (404, {"error": f"no {path}"})
            except Exception as exc:  # the cache is down, ...: answer 500, keep serving
                span.record_exception(exc)
                log.exception("GET %s failed", path)
                status, body = 500, {"error": "internal error"}
            span.set_attribute("http.response.status_code", status)
            if status >= 500:
                span.set_status(Status(StatusCode.ERROR))
            self._send(status, body)
            elapsed = time.perf_counter() - started
            labels: dict[str, str | int] = {"http.request.method": "GET"}
            labels["http.response.status_code"] = status
            if route is not None:
                labels["http.route"] = route
            requests_total.add(1, labels)
            request_duration.record(elapsed, labels)
            log.info("GET %s -> %d in %.1f ms", path, status, elapsed * 1000)

    def _send(self, status: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Requests are logged by ``_traced`` (with their trace), health checks not at all."""

    def log_message(self, format: str, *args: object) -> None:
        log.warning("%s %s", self.address_string(), format % args)


def _stop(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # SIGTERM from the app host: leave serve_forever, flush telemetry


if __name__ == "__main__":
    server = ThreadingHTTPServer(("127.0.0.1", PORT), Handler)
    # server_close() then waits for requests in flight, so their spans end before host.close()
    # flushes the telemetry.
    server.daemon_threads = False
    signal.signal(signal.SIGTERM, _stop)
    print(f"listening on http://127.0.0.1:{PORT}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        host.close()  # closes the cache and flushes spans, metrics and logs
