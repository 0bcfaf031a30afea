"""The quick start's web API: counts visits in the distributed cache the app host wired up.

``GET /`` increments a counter stored in Redis (in the .NET ``IDistributedCache`` format, so a
.NET service could read it too) and returns it with the moment it was first seen; ``GET /health``
runs the cache's health check. Uses only the standard library's HTTP server.
"""

from __future__ import annotations

import json
import os
import threading
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from apphost_sdk.caching import DistributedCache, DistributedCacheEntryOptions
from apphost_sdk.hosting import HealthStatus, HostApplicationBuilder

builder = HostApplicationBuilder()
builder.add_redis_distributed_cache("cache")  # reads ConnectionStrings__cache
host = builder.build()
cache = host.services.get(DistributedCache)
lock = threading.Lock()
ENTRY = DistributedCacheEntryOptions(sliding_expiration=timedelta(minutes=20))


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/health":
            report = host.health.check()
            self._send(200 if report.status is HealthStatus.HEALTHY else 503, report.to_dict())
            return
        if self.path != "/":
            self._send(404, {"error": f"no route {self.path}"})
            return
        with lock:  # one process: keep read-modify-write simple
            visits = int(cache.get_string("visits") or "0") + 1
            cache.set_string("visits", str(visits), ENTRY)
            first = cache.get_string("first-visit")
            if first is None:
                first = datetime.now(timezone.utc).isoformat()
                cache.set_string("first-visit", first, ENTRY)
        self._send(200, {"visits": visits, "firstVisit": first, "servedBy": os.getpid()})

    def _send(self, status: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        print(f"{self.address_string()} {format % args}", flush=True)


if __name__ == "__main__":
    port = int(os.environ.get("PORT", "8000"))
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    print(f"listening on http://127.0.0.1:{port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        host.close()
