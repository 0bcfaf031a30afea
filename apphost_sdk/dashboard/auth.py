"""Browser-token authentication of the dashboard, as Aspire's ``BrowserToken`` mode.

The app host makes a fresh token per run and prints ``{url}/login?t={token}``. A matching token
(compared in constant time) sets an HttpOnly, SameSite=Strict cookie; the cookie holds a value
derived from the token, never the token itself, so a copied cookie does not reveal the login URL.
Without the cookie, pages redirect to the login page and ``/api/*`` answers 401.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable
from http.cookies import SimpleCookie
from urllib.parse import quote, urlsplit

from starlette.types import ASGIApp, Receive, Scope, Send

#: The session cookie's name (not Aspire's ``.Aspire.Dashboard.Auth``: a different product).
COOKIE_NAME = "apphost.dashboard"
#: Three days, as Aspire's persistent cookie.
COOKIE_MAX_AGE = 3 * 24 * 60 * 60
#: Paths served without the cookie: the login flow, the health probe, CSS and JS.
ANONYMOUS_PATHS = ("/login", "/health", "/logout")
ANONYMOUS_PREFIXES = ("/static/",)


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


def session_cookie(token: str) -> str:
    """The ``Set-Cookie`` header value that logs a browser in."""
    return (
        f"{COOKIE_NAME}={session_value(token)}; Max-Age={COOKIE_MAX_AGE}; Path=/; HttpOnly; "
        "SameSite=Strict"
    )


def clear_cookie() -> str:
    """The ``Set-Cookie`` header value that logs a browser out."""
    return f"{COOKIE_NAME}=; Max-Age=0; Path=/; HttpOnly; SameSite=Strict"


def cookie_from(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """The session cookie's value among raw ASGI headers, or None."""
    for key, value in headers:
        if key.lower() != b"cookie":
            continue
        jar: SimpleCookie = SimpleCookie()
        try:
            jar.load(value.decode("latin-1"))
        except Exception:  # a malformed Cookie header is simply no session
            continue
        morsel = jar.get(COOKIE_NAME)
        if morsel is not None:
            return morsel.value
    return None


def is_logged_in(headers: Iterable[tuple[bytes, bytes]], token: str) -> bool:
    """Whether the request carries a valid session cookie for ``token``."""
    return secret_matches(cookie_from(headers), session_value(token))


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


class RequireLogin:
    """ASGI middleware: pages without the session cookie get 303 to the login page, ``/api/*``
    gets 401 JSON; the login flow, ``/health`` and static files stay anonymous."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or _is_anonymous(scope["path"]):
            await self.app(scope, receive, send)
            return
        if is_logged_in(scope["headers"], self.token):
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if path == "/api" or path.startswith("/api/"):
            body = json.dumps(
                {"error": "not logged in: open the dashboard's login URL (with ?t=TOKEN) first"}
            ).encode()
            headers = [(b"content-type", b"application/json")]
            status = 401
        else:
            query = scope.get("query_string", b"").decode("latin-1")
            location = login_redirect(path, query)
            body = b""
            headers = [(b"location", location.encode("latin-1"))]
            status = 303
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
