"""The dashboard's UI app (Starlette): pages, the JSON API and live updates (server-sent events).

Every page renders its content inside ``<main id="content">``; with ``X-Fragment: 1`` only that
inner HTML is answered, which the page's script swaps in on an SSE ``changed`` event. The app is
wrapped in :class:`~apphost_sdk.dashboard.auth.RequireLogin`, in
:class:`~apphost_sdk.dashboard.auth.RequireLoopbackHost` (DNS rebinding) and in security headers
(a self-only Content-Security-Policy, no framing, no caching).
"""

from __future__ import annotations

import asyncio
import importlib
import json
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import attrs
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..telemetry.models import ConsoleLine
from ..telemetry.store import TelemetryStore
from . import auth, pages
from .source import COMMANDS, DashboardSource

#: The live-update topics of ``/api/events``.
TOPICS = ("resources", "console", "logs", "traces", "metrics")
#: How often a live stream looks for changes, in seconds.
POLL_INTERVAL = 0.25
#: Telemetry pages are re-fetched at most this often (a busy service changes the store
#: hundreds of times a second; the page needs no more than a refresh a second).
TELEMETRY_REFRESH = 1.0
#: A comment line keeps idle streams (and proxies) open.
PING_INTERVAL = 15.0
#: Console lines shown on a page and sent per live event at most.
CONSOLE_PAGE_LINES = 10_000
#: Largest login form body read.
MAX_FORM = 8 * 1024

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; style-src-attr 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; font-src 'self'; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
STATIC = pages.TEMPLATES.parent / "static"


@attrs.frozen
class Context:
    """What the UI app serves: the running app (``source``), its telemetry, the login token, the
    server's stop flag (live streams end when it is set) and the UI port (the cookie's name and
    the accepted ``Host`` carry it)."""

    source: DashboardSource
    store: TelemetryStore
    token: str
    stopping: threading.Event
    port: int
    show_secrets: bool = False


def create_ui_app(context: Context) -> ASGIApp:
    """The UI app with its routes, login and loopback-host requirements and security headers."""
    handlers = _Handlers(context)
    routes = [
        Route("/", handlers.resources),
        Route("/consolelogs", handlers.console_index),
        Route("/consolelogs/resource/{name}", handlers.console),
        Route("/structuredlogs", handlers.structured_logs),
        Route("/structuredlogs/resource/{name}", handlers.structured_logs),
        Route("/traces", handlers.traces),
        Route("/traces/resource/{name}", handlers.traces),
        Route("/traces/detail/{trace_id}", handlers.trace_detail),
        Route("/metrics", handlers.metrics),
        Route("/metrics/resource/{name}", handlers.metrics),
        Route("/login", handlers.login, methods=["GET", "POST"]),
        Route("/logout", handlers.logout, methods=["GET", "POST"]),
        Route("/health", handlers.health),
        Route("/api/resources", handlers.api_resources),
        Route("/api/resources/{name}/commands/{command}", handlers.api_command, methods=["POST"]),
        Route(
            "/api/resources/{name}/environment/{variable}/reveal",
            handlers.api_reveal,
            methods=["POST"],
        ),
        Route("/api/consolelogs", handlers.api_console),
        Route("/api/events", handlers.api_events),
        Mount("/static", StaticFiles(directory=str(STATIC)), name="static"),
    ]
    app = Starlette(routes=routes)
    login = auth.RequireLogin(app, context.token, context.port)
    return SecurityHeaders(auth.RequireLoopbackHost(RefuseOtlp(login), context.port))


class SecurityHeaders:
    """ASGI middleware adding a self-only CSP, no framing, no sniffing, no referrer, and no
    caching (pages show live state; static files are revalidated) to every HTTP answer,
    WebSocket refusals included; scope types the UI does not serve are refused here too."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self.app(scope, receive, send)
            return
        if kind not in auth.SERVED_SCOPES:
            return
        cache = b"no-cache" if scope["path"].startswith("/static/") else b"no-store"

        async def send_with_headers(message: Message) -> None:
            if message["type"] in ("http.response.start", "websocket.http.response.start"):
                headers = [(k, v) for k, v in message.get("headers", []) if k != b"cache-control"]
                headers += [
                    (b"content-security-policy", CSP.encode()),
                    (b"x-frame-options", b"DENY"),
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"no-referrer"),
                    (b"cache-control", cache),
                ]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


class RefuseOtlp:
    """OTLP sent to the UI port is refused: each port serves one role, as in Aspire."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/v1/"):
            response = PlainTextResponse(
                "this is the dashboard's UI port; send OTLP to its OTLP endpoint "
                "(OTEL_EXPORTER_OTLP_ENDPOINT)",
                status_code=404,
            )
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _telemetry_view(name: str) -> Callable[..., Any] | None:
    """A function of ``telemetry_views`` (written separately), or None until it exists."""
    module_name = f"{__package__}.telemetry_views"
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        return None
    view: Callable[..., Any] = getattr(module, name)
    return view


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _same_origin(request: Request) -> bool:
    """False when a browser says the request comes from another site (belt and braces beside
    the SameSite=Strict cookie for the state-changing API)."""
    origin = request.headers.get("origin")
    if origin is None:
        return True
    parts = urlsplit(origin)
    return parts.netloc == request.headers.get("host", "")


class _Handlers:
    """The UI app's endpoints, bound to one :class:`Context`."""

    def __init__(self, context: Context) -> None:
        self.c = context

    # -- pages ------------------------------------------------------------------------------
    def _page(
        self,
        request: Request,
        title: str,
        active: str,
        content: str,
        *,
        topic: str,
        resource: str = "",
        status: int = 200,
    ) -> HTMLResponse:
        """The page, or only its content for the live-update script (``X-Fragment: 1``)."""
        if request.headers.get("x-fragment") == "1":
            return HTMLResponse(content, status_code=status)
        html = pages.layout(title, active, content, topic=topic, resource=resource)
        return HTMLResponse(html, status_code=status)

    def resources(self, request: Request) -> HTMLResponse:
        views = self.c.source.resources()
        revealed = self.c.source.reveal if self.c.show_secrets else None
        content = pages.resources_content(views, revealed)
        return self._page(request, "Resources", "resources", content, topic="resources")

    def console_index(self, request: Request) -> HTMLResponse:
        entries = [
            pages.ConsoleEntry(view, len(self.c.store.console_lines(view.name).items))
            for view in self.c.source.resources()
        ]
        content = pages.consolelogs_index(entries)
        return self._page(request, "Console logs", "console", content, topic="resources")

    def console(self, request: Request) -> HTMLResponse:
        name = request.path_params["name"]
        names = [view.name for view in self.c.source.resources()]
        page = self.c.store.console_lines(name, limit=CONSOLE_PAGE_LINES)
        unknown = name not in names and not page.items
        content = pages.console_content(name, names, page, unknown)
        return self._page(
            request,
            f"{name} console",
            "console",
            content,
            topic="console",
            resource=name,
            status=404 if unknown else 200,
        )

    def _telemetry_page(
        self, request: Request, title: str, active: str, view: str, *args: Any
    ) -> HTMLResponse:
        resource = request.path_params.get("name")
        function = _telemetry_view(view)
        if function is None:
            content = pages.message(title, "This page is not available yet.")
        else:
            content = function(self.c.store, resource, *args)
        return self._page(request, title, active, content, topic=active, resource=resource or "")

    def structured_logs(self, request: Request) -> HTMLResponse:
        q = request.query_params
        level = q.get("level") or q.get("logLevel") or None
        return self._telemetry_page(
            request,
            "Structured logs",
            "logs",
            "structured_logs_html",
            level,
            q.get("traceId") or None,
            q.get("q") or None,
        )

    def traces(self, request: Request) -> HTMLResponse:
        return self._telemetry_page(request, "Traces", "traces", "traces_html")

    def metrics(self, request: Request) -> HTMLResponse:
        return self._telemetry_page(request, "Metrics", "metrics", "metrics_html")

    def trace_detail(self, request: Request) -> HTMLResponse:
        trace_id = request.path_params["trace_id"]
        function = _telemetry_view("trace_detail_html")
        content = None if function is None else function(self.c.store, trace_id)
        status = 200
        if content is None:
            status = 404
            content = pages.message("Trace", f"No trace {trace_id} is kept.")
        return self._page(request, "Trace", "traces", content, topic="traces", status=status)

    # -- login ------------------------------------------------------------------------------
    async def login(self, request: Request) -> Response:
        if request.method == "POST":
            form = await _small_form(request)
            token, return_to = form.get("t"), form.get("returnUrl")
        else:
            token, return_to = request.query_params.get("t"), request.query_params.get("returnUrl")
        target = auth.safe_return_url(return_to)
        if token is not None and auth.secret_matches(token, self.c.token):
            response = RedirectResponse(target, status_code=303)
            response.headers.append("set-cookie", auth.session_cookie(self.c.token, self.c.port))
            return response
        if token is None and auth.is_logged_in(request.scope["headers"], self.c.token, self.c.port):
            return RedirectResponse(target, status_code=303)
        html = pages.login_page(target, failed=token is not None)
        return HTMLResponse(html, status_code=401)

    def logout(self, request: Request) -> Response:
        response = RedirectResponse("/login", status_code=303)
        response.headers.append("set-cookie", auth.clear_cookie(self.c.port))
        return response

    def health(self, request: Request) -> PlainTextResponse:
        return PlainTextResponse("Healthy")

    # -- JSON API ---------------------------------------------------------------------------
    def api_resources(self, request: Request) -> JSONResponse:
        views = self.c.source.resources()
        return JSONResponse([attrs.asdict(v) for v in views])

    async def api_command(self, request: Request) -> JSONResponse:
        if not _same_origin(request):
            return _error(403, "cross-site requests are refused")
        name, command = request.path_params["name"], request.path_params["command"]
        if command not in COMMANDS:
            return _error(404, f"unknown command {command!r}; use one of {', '.join(COMMANDS)}")
        views = await run_in_threadpool(self.c.source.resources)
        if all(view.name != name for view in views):
            return _error(404, f"no resource named {name!r}")
        result = await run_in_threadpool(self.c.source.execute, name, command)
        return JSONResponse(
            {"ok": result.ok, "message": result.message}, status_code=200 if result.ok else 409
        )

    async def api_reveal(self, request: Request) -> JSONResponse:
        if not _same_origin(request):
            return _error(403, "cross-site requests are refused")
        name, variable = request.path_params["name"], request.path_params["variable"]
        value = await run_in_threadpool(self.c.source.reveal, name, variable)
        if value is None:
            return _error(404, f"resource {name!r} has no environment variable {variable!r}")
        return JSONResponse({"resource": name, "name": variable, "value": value})

    def api_console(self, request: Request) -> JSONResponse:
        q = request.query_params
        try:
            after = _int(q.get("after"), "after")
            limit = _int(q.get("limit"), "limit") or None
        except ValueError as exc:
            return _error(400, str(exc))
        page = self.c.store.console_lines(q.get("resource") or None, after=after, limit=limit)
        items = [
            {
                "seq": line.seq,
                "resource": line.resource,
                "stream": line.stream,
                "timestamp": line.timestamp,
                "text": line.text,
            }
            for line in page.items
            if isinstance(line, ConsoleLine)
        ]
        return JSONResponse({"items": items, "dropped": page.dropped, "lastSeq": page.last_seq})

    def api_events(self, request: Request) -> Response:
        q = request.query_params
        topic = q.get("topic", "resources")
        if topic not in TOPICS:
            return _error(400, f"unknown topic {topic!r}; use one of {', '.join(TOPICS)}")
        try:
            after = _int(request.headers.get("last-event-id") or q.get("after"), "after")
        except ValueError as exc:
            return _error(400, str(exc))
        stream = _EventStream(self.c, topic, q.get("resource") or None, after)
        return StreamingResponse(
            stream.run(),
            media_type="text/event-stream",
            headers={"x-accel-buffering": "no"},
        )


def _int(raw: str | None, name: str) -> int:
    """A non-negative integer query value (0 when absent)."""
    if raw is None or raw == "":
        return 0
    if not (raw.isascii() and raw.isdigit()):
        raise ValueError(f"{name} must be a whole number >= 0, got {raw!r}")
    return int(raw)


async def _small_form(request: Request) -> dict[str, str]:
    """A small urlencoded form body (the login form), at most MAX_FORM bytes read."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM:
            return {}
    fields = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    return {key: values[0] for key, values in fields.items() if values}


def _event(name: str, data: str, event_id: int | None = None) -> bytes:
    """One server-sent event; multi-line data becomes several ``data:`` lines."""
    lines = [f"event: {name}"]
    if event_id is not None:
        lines.append(f"id: {event_id}")
    lines += [f"data: {part}" for part in data.split("\n")]
    return ("\n".join(lines) + "\n\n").encode()


class _EventStream:
    """One ``/api/events`` subscription: polls the source/store every POLL_INTERVAL and sends
    ``changed`` (pages re-fetch their content) or, for the console, ``line`` events with the
    rendered new lines and ``dropped`` when the dropped count moves."""

    def __init__(self, context: Context, topic: str, resource: str | None, after: int) -> None:
        self.c = context
        self.topic = topic
        self.resource = resource
        self.after = after
        self.dropped = 0

    def _version(self) -> int:
        if self.topic == "resources":
            return self.c.source.version()
        return self.c.store.version

    async def run(self) -> AsyncIterator[bytes]:
        loop = asyncio.get_running_loop()
        yield b"retry: 2000\n\n"
        version = self._version()
        last_ping = last_sent = loop.time()
        refresh = POLL_INTERVAL if self.topic == "resources" else TELEMETRY_REFRESH
        if self.topic == "console":
            version = -1  # send whatever arrived between the page and this stream at once
        while not self.c.stopping.is_set():
            now = loop.time()
            current = self._version()
            if current != version and (self.topic == "console" or now - last_sent >= refresh):
                version, last_sent = current, now
                if self.topic == "console":
                    for chunk in self._console():
                        yield chunk
                else:
                    yield _event("changed", json.dumps({"version": current}))
            if now - last_ping >= PING_INTERVAL:
                last_ping = now
                yield b": ping\n\n"
            await asyncio.sleep(POLL_INTERVAL)

    def _console(self) -> list[bytes]:
        """The events for console lines after ``self.after``, and ``dropped`` when the count of
        dropped lines moved."""
        page = self.c.store.console_lines(self.resource, after=self.after, limit=CONSOLE_PAGE_LINES)
        out: list[bytes] = []
        if page.dropped != self.dropped:
            self.dropped = page.dropped
            out.append(_event("dropped", str(page.dropped)))
        lines = [item for item in page.items if isinstance(item, ConsoleLine)]
        if lines:
            self.after = lines[-1].seq
            html = "".join(
                pages.console_line(line, with_resource=self.resource is None) for line in lines
            )
            out.append(_event("line", html, self.after))
        return out
