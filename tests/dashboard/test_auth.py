"""The dashboard's login (token URL, cookie, form), what anonymous requests get, the Host
check (DNS rebinding), refused WebSockets, and the OTLP API key, against a real server on
loopback (and the real ASGI app for scope types uvicorn cannot carry here)."""

from __future__ import annotations

import secrets
import socket
import threading

import anyio
import httpx
import pytest
from starlette.types import Message, Scope

from apphost_sdk.dashboard import auth
from apphost_sdk.dashboard.server import DashboardServer
from apphost_sdk.dashboard.web import Context, create_ui_app
from apphost_sdk.telemetry.store import TelemetryStore

from .conftest import Dashboard, FakeSource


# -- helpers --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("/traces?x=1", "/traces?x=1"),
        ("/consolelogs/resource/api", "/consolelogs/resource/api"),
        (None, "/"),
        ("", "/"),
        ("https://evil.example/", "/"),
        ("//evil.example/x", "/"),
        ("/\\evil.example", "/"),
        ("javascript:alert(1)", "/"),
        ("traces", "/"),
        ("/x\r\nSet-Cookie: a=b", "/"),
    ],
)
def test_return_url_is_a_local_path_only(given: str | None, expected: str) -> None:
    assert auth.safe_return_url(given) == expected


def test_secret_comparison() -> None:
    assert auth.secret_matches("abc", "abc")
    assert not auth.secret_matches("abd", "abc")
    assert not auth.secret_matches(None, "abc")
    assert not auth.secret_matches("", "")
    assert not auth.secret_matches("é", "abc")  # non-ASCII input is no crash


def test_the_cookie_is_not_the_token() -> None:
    token = "0" * 32
    assert token not in auth.session_cookie(token, 8080)
    assert auth.session_value(token) != auth.session_value("1" * 32)


# -- the login flow -------------------------------------------------------------------------
def test_token_url_sets_a_strict_httponly_cookie_and_redirects(
    dashboard: Dashboard, anonymous: httpx.Client
) -> None:
    response = anonymous.get(f"/login?t={dashboard.token}&returnUrl=%2Ftraces%3Fx%3D1")
    assert response.status_code == 303
    assert response.headers["location"] == "/traces?x=1"
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"apphost.dashboard.{dashboard.server.ui_port}=")
    for part in ("HttpOnly", "SameSite=Strict", "Path=/", f"Max-Age={3 * 24 * 3600}"):
        assert part in cookie
    assert dashboard.token not in cookie
    assert anonymous.get("/").status_code == 200


def test_return_url_to_another_site_goes_home(
    dashboard: Dashboard, anonymous: httpx.Client
) -> None:
    response = anonymous.get(f"/login?t={dashboard.token}&returnUrl=https://evil.example/")
    assert response.status_code == 303
    assert response.headers["location"] == "/"


def test_wrong_or_missing_token_shows_the_login_form_with_401(
    dashboard: Dashboard, anonymous: httpx.Client
) -> None:
    for url in ("/login", "/login?t=" + "0" * 32, "/login?t="):
        response = anonymous.get(url)
        assert response.status_code == 401, url
        assert '<form method="post" action="/login"' in response.text
        assert "set-cookie" not in response.headers
    assert "does not open this dashboard" in anonymous.get("/login?t=nope").text
    assert anonymous.get("/").status_code == 303


def test_login_form_post(dashboard: Dashboard, anonymous: httpx.Client) -> None:
    bad = anonymous.post("/login", data={"t": "wrong", "returnUrl": "/metrics"})
    assert bad.status_code == 401
    assert 'value="/metrics"' in bad.text
    good = anonymous.post("/login", data={"t": dashboard.token, "returnUrl": "/metrics"})
    assert good.status_code == 303
    assert good.headers["location"] == "/metrics"
    assert anonymous.get("/metrics").status_code == 200


def test_pages_without_cookie_redirect_to_login_with_return_url(
    anonymous: httpx.Client,
) -> None:
    response = anonymous.get("/traces/resource/api?x=1")
    assert response.status_code == 303
    assert response.headers["location"] == "/login?returnUrl=%2Ftraces%2Fresource%2Fapi%3Fx%3D1"
    assert anonymous.get("/").headers["location"] == "/login"
    for path in ("/consolelogs", "/structuredlogs", "/metrics", "/traces/detail/ab"):
        assert anonymous.get(path).status_code == 303, path


def test_api_without_cookie_is_401_json(anonymous: httpx.Client) -> None:
    for method, path in (
        ("GET", "/api/resources"),
        ("GET", "/api/consolelogs"),
        ("GET", "/api/events?topic=resources"),
        ("POST", "/api/resources/api/commands/stop"),
        ("POST", "/api/resources/cache/environment/REDIS_PASSWORD/reveal"),
    ):
        response = anonymous.request(method, path)
        assert response.status_code == 401, path
        assert "login URL" in response.json()["error"]


def test_a_forged_cookie_is_refused(dashboard: Dashboard, anonymous: httpx.Client) -> None:
    anonymous.cookies.set(auth.cookie_name(dashboard.server.ui_port), "0" * 64)
    assert anonymous.get("/api/resources").status_code == 401


def test_a_valid_session_under_another_ports_name_is_refused(
    dashboard: Dashboard, anonymous: httpx.Client
) -> None:
    """The cookie of this dashboard's token under another port's name (another dashboard's,
    or the old portless name) is no session here."""
    value = auth.session_value(dashboard.token)
    anonymous.cookies.set(auth.cookie_name(dashboard.server.ui_port + 1), value)
    anonymous.cookies.set("apphost.dashboard", value)
    assert anonymous.get("/api/resources").status_code == 401
    anonymous.cookies.set(auth.cookie_name(dashboard.server.ui_port), value)
    assert anonymous.get("/api/resources").status_code == 200


def test_two_dashboards_do_not_log_each_other_out(dashboard: Dashboard) -> None:
    """One browser (one cookie jar, cookies ignore ports) logged in to two dashboards stays
    logged in to both, and logging out of one leaves the other."""
    token = secrets.token_hex(16)
    other = DashboardServer(FakeSource(), TelemetryStore(), token=token, otlp_api_key="k" * 32)
    other.start()
    try:
        assert other.wait_started(10)
        with httpx.Client(timeout=10, follow_redirects=False) as browser:
            assert browser.get(f"{dashboard.ui}/login?t={dashboard.token}").status_code == 303
            assert browser.get(f"{other.ui_url}/login?t={token}").status_code == 303
            assert browser.get(f"{dashboard.ui}/api/resources").status_code == 200
            assert browser.get(f"{other.ui_url}/api/resources").status_code == 200
            assert browser.get(f"{other.ui_url}/logout").status_code == 303
            assert browser.get(f"{other.ui_url}/api/resources").status_code == 401
            assert browser.get(f"{dashboard.ui}/api/resources").status_code == 200
    finally:
        other.stop()


# -- Host check (DNS rebinding) -------------------------------------------------------------
def test_loopback_host_names_with_the_port_are_served(
    dashboard: Dashboard, client: httpx.Client
) -> None:
    port = dashboard.server.ui_port
    for host in ("localhost", "127.0.0.1", "[::1]", "apphost.localhost", "LocalHost"):
        response = client.get("/api/resources", headers={"host": f"{host}:{port}"})
        assert response.status_code == 200, host


def test_other_host_names_get_421(dashboard: Dashboard, client: httpx.Client) -> None:
    """A rebinding page (its own name, now resolving to 127.0.0.1) reads nothing, not even the
    anonymous pages; neither does a loopback name with another port."""
    port = dashboard.server.ui_port
    for host in (
        f"evil.example:{port}",
        "evil.example",
        f"127.0.0.1:{port + 1}",
        "localhost",
        f"localhost.evil.example:{port}",
        f"127.0.0.2:{port}",
    ):
        for path in ("/api/resources", "/", "/health", "/login", "/static/dashboard.js"):
            response = client.get(path, headers={"host": host})
            assert response.status_code == 421, (host, path)
            assert f"http://127.0.0.1:{port}" in response.text
            assert "set-cookie" not in response.headers
            assert response.headers["x-frame-options"] == "DENY"


def test_a_request_without_host_gets_421(dashboard: Dashboard) -> None:
    with socket.create_connection(("127.0.0.1", dashboard.server.ui_port), timeout=10) as sock:
        sock.sendall(b"GET /health HTTP/1.0\r\n\r\n")
        answer = b""
        while chunk := sock.recv(4096):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 421"), answer[:100]


# -- WebSockets and other scopes ------------------------------------------------------------
def _call(scope_type: str, headers: list[tuple[bytes, bytes]], port: int = 8080) -> list[Message]:
    """Run the real UI app on one connection of ``scope_type``; the messages it sends."""
    token = "t" * 32
    app = create_ui_app(Context(FakeSource(), TelemetryStore(), token, threading.Event(), port))
    scope: Scope = {
        "type": scope_type,
        "asgi": {"version": "3.0"},
        "scheme": "ws",
        "path": "/api/events",
        "raw_path": b"/api/events",
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", port),
        "subprotocols": [],
    }
    sent: list[Message] = []
    incoming = [{"type": "websocket.connect"}, {"type": "websocket.disconnect", "code": 1000}]

    async def receive() -> Message:
        return incoming.pop(0) if incoming else {"type": "websocket.disconnect", "code": 1000}

    async def send(message: Message) -> None:
        sent.append(message)

    async def main() -> None:
        await app(scope, receive, send)

    anyio.run(main)
    return sent


def test_websockets_without_the_cookie_are_closed_with_1008() -> None:
    sent = _call("websocket", [(b"host", b"127.0.0.1:8080")])
    assert sent and sent[0]["type"] == "websocket.close"
    assert sent[0]["code"] == 1008
    assert all(m["type"] != "websocket.accept" for m in sent)


def test_websockets_with_a_foreign_host_are_closed_with_1008() -> None:
    cookie = f"{auth.cookie_name(8080)}={auth.session_value('t' * 32)}".encode()
    sent = _call("websocket", [(b"host", b"evil.example:8080"), (b"cookie", cookie)])
    assert [m["type"] for m in sent] == ["websocket.close"]
    assert sent[0]["code"] == 1008


def test_websockets_with_the_cookie_find_no_route() -> None:
    """Logged in, a WebSocket reaches the app, which has no WebSocket route: closed, never
    accepted."""
    cookie = f"{auth.cookie_name(8080)}={auth.session_value('t' * 32)}".encode()
    sent = _call("websocket", [(b"host", b"127.0.0.1:8080"), (b"cookie", cookie)])
    assert sent and all(m["type"] != "websocket.accept" for m in sent)
    assert sent[0]["type"] == "websocket.close"


def test_unknown_scope_types_are_refused() -> None:
    cookie = f"{auth.cookie_name(8080)}={auth.session_value('t' * 32)}".encode()
    assert _call("webtransport", [(b"host", b"127.0.0.1:8080"), (b"cookie", cookie)]) == []


def test_a_websocket_upgrade_over_the_wire_is_never_accepted(dashboard: Dashboard) -> None:
    port = dashboard.server.ui_port
    request = (
        f"GET /api/events?topic=resources HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 "), answer[:100]
    assert not answer.startswith(b"HTTP/1.1 101"), answer[:100]


def test_health_and_static_files_are_anonymous(anonymous: httpx.Client) -> None:
    health = anonymous.get("/health")
    assert (health.status_code, health.text) == (200, "Healthy")
    assert anonymous.get("/static/dashboard.css").status_code == 200
    assert anonymous.get("/static/dashboard.js").status_code == 200


def test_logout_clears_the_cookie(client: httpx.Client) -> None:
    assert client.get("/api/resources").status_code == 200
    response = client.get("/logout")
    assert response.status_code == 303
    assert response.headers["location"] == "/login"
    assert "Max-Age=0" in response.headers["set-cookie"]
    assert client.get("/api/resources").status_code == 401


def test_login_page_when_already_logged_in_goes_on(client: httpx.Client) -> None:
    response = client.get("/login?returnUrl=/traces")
    assert response.status_code == 303
    assert response.headers["location"] == "/traces"


# -- OTLP key -------------------------------------------------------------------------------
def test_otlp_without_or_with_a_wrong_key_gets_a_bare_401(dashboard: Dashboard) -> None:
    headers = {"content-type": "application/x-protobuf"}
    with httpx.Client(base_url=dashboard.otlp, timeout=10) as otlp:
        missing = otlp.post("/v1/traces", content=b"", headers=headers)
        wrong = otlp.post(
            "/v1/traces", content=b"", headers={**headers, "x-otlp-api-key": "0" * 32}
        )
    for response in (missing, wrong):
        assert response.status_code == 401
        assert response.content == b""
    assert dashboard.store.version == 0
