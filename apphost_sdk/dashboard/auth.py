"""Browser-token authentication of the dashboard, as Aspire's ``BrowserToken`` mode.

The app host makes a fresh token per run and prints ``{url}/login?t={token}``. A matching token
(compared in constant time) sets an HttpOnly, SameSite=Strict cookie; the cookie holds a value
derived from the token, never the token itself, so a copied cookie does not reveal the login URL.
Without the cookie, pages redirect to the login page and ``/api/*`` answers 401.

Browsers ignore ports for cookies, so the cookie's name carries the UI port (two dashboards on
one machine do not log each other out), and only loopback ``Host`` names are served (a DNS
rebinding page cannot read the dashboard through a name of its own).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable
from http.cookies import SimpleCookie
from urllib.parse import quote, urlsplit

from starlette.types import ASGIApp, Receive, Scope, Send

#: The session cookie's name before the port (not Aspire's ``.Aspire.Dashboard.Auth``).
COOKIE_PREFIX = "apphost.dashboard"
#: Three days, as Aspire's persistent cookie.
COOKIE_MAX_AGE = 3 * 24 * 60 * 60
#: Paths served without the cookie: the login flow, the health probe, CSS and JS.
ANONYMOUS_PATHS = ("/login", "/health", "/logout")
ANONYMOUS_PREFIXES = ("/static/",)
#: The host names the UI answers to (with its port): loopback only, never a DNS name that
#: someone else controls. ``apphost.localhost`` is loopback by RFC 6761 (browsers resolve it
#: themselves).
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]", "apphost.localhost")
#: WebSocket close code "policy violation", for connections refused before the app.
WS_POLICY_VIOLATION = 1008
#: Scope types the UI serves; any other (an extension's) is refused.
SERVED_SCOPES = ("http", "websocket", "lifespan")


def cookie_name(port: int) -> str:
    """The session cookie's name for the dashboard on ``port`` (cookies ignore ports)."""
    return f"{COOKIE_PREFIX}.{port}"


def _as_bytes(value: str) -> bytes:
    return value.encode("utf-8", "surrogateescape")


def secret_matches(given: str | None, expected: str) -> bool:
    """Whether ``given`` equals ``expected``, in time independent of where they differ."""
    if given is None or not expected:
        return False
    return hmac.compare_digest(_as_bytes(given), _as_bytes(expected))


def session_value(token: str) -> str:
    """The cookie value for ``token``: an HMAC of it, so the cookie is not the token."""
    return hmac.new(_as_bytes(token), b"apphost.dashboard.session", hashlib.sha256).hexdigest()


def session_cookie(token: str, port: int) -> str:
    """The ``Set-Cookie`` header value that logs a browser in to the dashboard on ``port``."""
    return (
        f"{cookie_name(port)}={session_value(token)}; Max-Age={COOKIE_MAX_AGE}; Path=/; "
        "HttpOnly; SameSite=Strict"
    )


def clear_cookie(port: int) -> str:
    """The ``Set-Cookie`` header value that logs a browser out of the dashboard on ``port``."""
    return f"{cookie_name(port)}=; Max-Age=0; Path=/; HttpOnly; SameSite=Strict"


def cookie_from(headers: Iterable[tuple[bytes, bytes]], name: str) -> str | None:
    """The value of the cookie ``name`` among raw ASGI headers, or None."""
    for key, value in headers:
        if key.lower() != b"cookie":
            continue
        jar: SimpleCookie = SimpleCookie()
        try:
            jar.load(value.decode("latin-1"))
        except Exception:  # a malformed Cookie header is simply no session
            continue
        morsel = jar.get(name)
        if morsel is not None:
            return morsel.value
    return None


def is_logged_in(headers: Iterable[tuple[bytes, bytes]], token: str, port: int) -> bool:
    """Whether the request carries a valid session cookie for ``token`` on ``port``."""
    return secret_matches(cookie_from(headers, cookie_name(port)), session_value(token))


def allowed_hosts(port: int) -> frozenset[str]:
    """The ``Host`` header values the UI on ``port`` answers (lower case): each loopback name
    with the port (and without it on port 80, where browsers leave it out)."""
    names = {f"{host}:{port}" for host in LOOPBACK_HOSTS}
    if port == 80:
        names.update(LOOPBACK_HOSTS)
    return frozenset(names)


def host_of(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """The request's ``Host`` header, lower case, or None when it is missing."""
    for key, value in headers:
        if key.lower() == b"host":
            return value.decode("latin-1").strip().lower()
    return None


def safe_return_url(value: str | None) -> str:
    """``value`` when it is a path on this server (``/traces?x=1``), else ``/``: a login link
    can never send the browser to another site (no scheme, host, ``//`` or backslash)."""
    if not value or not value.startswith("/") or value.startswith("//"):
        return "/"
    if "\\" in value or any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        return "/"
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return "/"
    return value


def login_redirect(path: str, query: str) -> str:
    """The login page's URL that comes back to ``path?query`` after logging in."""
    target = path + (f"?{query}" if query else "")
    if target == "/":
        return "/login"
    return "/login?returnUrl=" + quote(target, safe="")


def _is_anonymous(path: str) -> bool:
    return path in ANONYMOUS_PATHS or path.startswith(ANONYMOUS_PREFIXES)


async def _refuse_websocket(send: Send, reason: str) -> None:
    """Close a WebSocket before accepting it (the server answers the upgrade with 403)."""
    await send({"type": "websocket.close", "code": WS_POLICY_VIOLATION, "reason": reason})


async def _answer(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    """A complete HTTP response from a middleware."""
    headers = [*headers, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class RequireLoopbackHost:
    """ASGI middleware of the UI port: only requests whose ``Host`` is a loopback name with this
    port are served; others get 421 (WebSockets: close 1008). A page of another site whose DNS
    name was re-pointed at 127.0.0.1 (DNS rebinding) thus reads nothing."""

    def __init__(self, app: ASGIApp, port: int) -> None:
        self.app = app
        self.port = port
        self.hosts = allowed_hosts(port)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self.app(scope, receive, send)
            return
        if kind not in SERVED_SCOPES:
            return
        if host_of(scope["headers"]) in self.hosts:
            await self.app(scope, receive, send)
            return
        if kind == "websocket":
            await _refuse_websocket(send, "unknown Host")
            return
        body = (
            "misdirected request: this dashboard answers only at "
            f"http://127.0.0.1:{self.port} (or localhost:{self.port}); open that URL\n"
        ).encode()
        await _answer(send, 421, body, [(b"content-type", b"text/plain; charset=utf-8")])


class RequireLogin:
    """ASGI middleware: pages without the session cookie get 303 to the login page, ``/api/*``
    gets 401 JSON, WebSockets are closed (1008); the login flow, ``/health`` and static files
    stay anonymous. Scope types other than HTTP, WebSocket and lifespan are refused."""

    def __init__(self, app: ASGIApp, token: str, port: int) -> None:
        self.app = app
        self.token = token
        self.port = port

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self.app(scope, receive, send)
            return
        if kind not in SERVED_SCOPES:
            return
        logged_in = is_logged_in(scope["headers"], self.token, self.port)
        if kind == "websocket":
            if logged_in:
                await self.app(scope, receive, send)
            else:
                await _refuse_websocket(send, "not logged in")
            return
        if logged_in or _is_anonymous(scope["path"]):
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if path == "/api" or path.startswith("/api/"):
            body = json.dumps(
                {"error": "not logged in: open the dashboard's login URL (with ?t=TOKEN) first"}
            ).encode()
            await _answer(send, 401, body, [(b"content-type", b"application/json")])
            return
        query = scope.get("query_string", b"").decode("latin-1")
        location = login_redirect(path, query)
        await _answer(send, 303, b"", [(b"location", location.encode("latin-1"))])
