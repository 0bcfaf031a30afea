"""``/health`` for ASGI and WSGI apps, answering like ASP.NET Core's ``MapHealthChecks``.

The body is JSON (overall status plus each check); the status code is 200 when Healthy or
Degraded and 503 when Unhealthy. Wrap an app to add the route, or serve it alone.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

from .health import HealthChecks, HealthReport, HealthStatus

__all__ = ["asgi_health", "wsgi_health"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


def _render(report: HealthReport) -> tuple[int, bytes]:
    code = 503 if report.status is HealthStatus.UNHEALTHY else 200
    return code, json.dumps(report.to_dict()).encode("utf-8")


def asgi_health(health: HealthChecks, app: ASGIApp | None = None, path: str = "/health") -> ASGIApp:
    """An ASGI app answering ``GET path`` with the health report; other requests go to ``app``."""

    async def endpoint(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("path") == path:
            code, body = _render(await health.check_async())
            headers = [(b"content-type", b"application/json"), (b"cache-control", b"no-store")]
            await send({"type": "http.response.start", "status": code, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        if app is not None:
            await app(scope, receive, send)
            return
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 404, "headers": []})
            await send({"type": "http.response.body", "body": b"Not Found"})

    return endpoint


def wsgi_health(health: HealthChecks, app: WSGIApp | None = None, path: str = "/health") -> WSGIApp:
    """A WSGI app answering ``GET path`` with the health report; other requests go to ``app``."""

    def endpoint(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == path:
            code, body = _render(health.check())
            reason = "OK" if code == 200 else "Service Unavailable"
            start_response(
                f"{code} {reason}",
                [("Content-Type", "application/json"), ("Cache-Control", "no-store")],
            )
            return [body]
        if app is not None:
            return app(environ, start_response)
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"Not Found"]

    return endpoint
