"""The dashboard's login (token URL, cookie, form), what anonymous requests get, and the OTLP
API key, against a real server on loopback."""

from __future__ import annotations

import httpx
import pytest

from apphost_sdk.dashboard import auth

from .conftest import Dashboard


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
    assert token not in auth.session_cookie(token)
    assert auth.session_value(token) != auth.session_value("1" * 32)


# -- the login flow -------------------------------------------------------------------------
def test_token_url_sets_a_strict_httponly_cookie_and_redirects(
    dashboard: Dashboard, anonymous: httpx.Client
) -> None:
    response = anonymous.get(f"/login?t={dashboard.token}&returnUrl=%2Ftraces%3Fx%3D1")
    assert response.status_code == 303
    assert response.headers["location"] == "/traces?x=1"
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"{auth.COOKIE_NAME}=")
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


def test_a_forged_cookie_is_refused(anonymous: httpx.Client) -> None:
    anonymous.cookies.set(auth.COOKIE_NAME, "0" * 64)
    assert anonymous.get("/api/resources").status_code == 401


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
