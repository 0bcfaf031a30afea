"""The dashboard in a real browser: Debian's Chromium, headless, driven by Playwright.

A user's path through the quick start (``apphost start samples/quickstart/apphost.py``): the
login page without the token, the token URL, both resources Running, the API's console logs
growing live on a request, that request's trace (the API's SERVER span and its cache CLIENT
spans), structured logs and metrics, then a restart of the API from the resources page. A full
page screenshot of each page is saved under ``tests/artifacts/dashboard/``. A second test checks
that the cache password is not in the resources page until its reveal button is clicked.

The quick start runs its cache as a redis-server process (``APPHOST_CONTAINER_RUNTIME=process``)
so the test needs no container engine and stays fast.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

# A dev dependency (tests/run.sh installs it): missing fails the import, never skips.
from playwright.sync_api import Browser, Locator, Page, expect

from .conftest import wait_until
from .dashboard_browser import (
    RECORD_STATES_JS,
    WAIT_MS,
    RunningQuickStart,
    cache_port,
    launched_chromium,
    process_pid,
    quickstart_status,
    redis_server_pids,
    require_chromium,
    resource_of,
    screenshot,
    start_quickstart,
    stop_quickstart,
)

pytestmark = pytest.mark.redis

#: Seconds to wait for telemetry to reach a page (services export every second).
TELEMETRY_S = 20.0


@pytest.fixture
def chromium() -> Iterator[Browser]:
    """Debian's Chromium (fails under CI=true, skips elsewhere, when it is missing)."""
    require_chromium()
    with launched_chromium() as browser:
        yield browser


@pytest.fixture
def quickstart(chromium: Browser, monkeypatch: pytest.MonkeyPatch) -> Iterator[RunningQuickStart]:
    """The quick start running in the background (cache as a process); stopped afterwards
    whatever happened, with nothing left running."""
    monkeypatch.setenv("APPHOST_CONTAINER_RUNTIME", "process")
    started = None
    try:
        started = start_quickstart()
        yield started
    finally:
        stop_quickstart(started)


@pytest.fixture
def tab(chromium: Browser) -> Iterator[Page]:
    """A fresh browser page (no cookie yet); uncaught JavaScript errors fail the test."""
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(WAIT_MS)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    context.close()
    assert errors == [], f"JavaScript errors on the dashboard: {errors}"


def state_cell(page: Page, resource: str) -> Locator:
    """The state cell of ``resource``'s row on the resources page."""
    return page.locator(f'#resources tr[data-resource="{resource}"] td.state')


def expect_running(page: Page, *resources: str) -> None:
    """Wait until the resources page shows each of ``resources`` Running."""
    for name in resources:
        expect(state_cell(page, name)).to_have_attribute("data-state", "Running", timeout=WAIT_MS)


def visible_after_reloads(page: Page, locator: Locator, what: str) -> Locator:
    """Wait up to ``TELEMETRY_S`` for ``locator`` to match, reloading the page between tries
    (telemetry arrives in batches; the live update is checked on the console page)."""
    deadline = time.monotonic() + TELEMETRY_S
    while True:
        try:
            expect(locator.first).to_be_attached(timeout=3_000)
            return locator
        except AssertionError:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{what}: not on {page.url} after {TELEMETRY_S:.0f} s"
                ) from None
            page.reload()


def login(page: Page, app: RunningQuickStart) -> None:
    """Open the login URL (token included): the cookie is set and the resources page shown."""
    page.goto(app.login_url)
    expect(page).to_have_url(app.url + "/", timeout=WAIT_MS)
    expect(page.locator("table#resources")).to_be_visible()


def get_api(app: RunningQuickStart) -> dict[str, Any]:
    """``GET /`` of the API (counts a visit in the cache)."""
    response = httpx.get(app.api_url + "/", timeout=10)
    assert response.status_code == 200, response.text
    body = response.json()
    assert isinstance(body, dict)
    return body


def test_dashboard_end_to_end(quickstart: RunningQuickStart, tab: Page) -> None:
    app, page = quickstart, tab

    # Without the token: the login page, and the JSON API answers 401.
    page.goto(app.url + "/")
    expect(page).to_have_url(re.compile(r"/login(\?returnUrl=[^&]*)?$"))
    expect(page.locator("form.login input#token")).to_be_visible()
    screenshot(page, "login")
    anonymous = page.request.get(app.url + "/api/resources")
    assert anonymous.status == 401 and "cache" not in anonymous.text(), anonymous.text()

    # The login URL: both resources Running, in the table and the graph.
    login(page, app)
    expect_running(page, "cache", "api")
    for name in ("cache", "api"):
        expect(page.locator(f'#graph g.node[data-resource="{name}"]')).to_have_count(1)
    expect(page.locator('tr[data-resource="api"] a.endpoint').first).to_have_attribute(
        "href", re.compile(re.escape(app.api_url))
    )
    assert page.request.get(app.url + "/api/resources").status == 200
    screenshot(page, "resources")

    # The API's console logs: a request's log line appears live, without a reload.
    page.locator('tr[data-resource="api"] a.console-link').click()
    expect(page).to_have_url(app.url + "/consolelogs/resource/api")
    console = page.locator("pre#console")
    expect(console).to_contain_text("listening on", timeout=WAIT_MS)
    expect(page.locator("input#follow")).to_be_checked()
    page.evaluate("() => { window.__notReloaded = true; }")
    request_lines = console.locator("div.line", has_text="GET / -> 200")
    before = request_lines.count()
    first = get_api(app)
    expect(request_lines).to_have_count(before + 1, timeout=WAIT_MS)
    assert page.evaluate("() => window.__notReloaded === true"), "the console page reloaded"
    screenshot(page, "console")

    # Its trace: the API's SERVER span with the cache calls as CLIENT child spans.
    page.goto(app.url + "/traces")
    get_root = re.compile(r"^\s*(api: )?GET /\s*$")
    trace_link = page.locator("#traces tr.trace a.trace-link", has_text=get_root)
    visible_after_reloads(page, trace_link, "the trace of GET /")
    screenshot(page, "traces")
    trace_link.first.click()
    expect(page).to_have_url(re.compile(r"/traces/detail/[0-9a-f]{32}$"))
    waterfall = page.locator("#waterfall")
    server = waterfall.locator('div.span[data-resource="api"][data-name="GET /"]')
    cache_calls = waterfall.locator("div.span[data-name^='cache ']")
    visible_after_reloads(page, cache_calls, "the cache spans of GET /")
    expect(server).to_have_count(1)
    expect(page.locator('ul.trace-resources li[data-resource="api"]')).to_have_count(1)
    expect(server.locator("details > summary")).to_contain_text("Server")
    server_id = server.get_attribute("data-span-id")
    assert server_id
    names = cache_calls.evaluate_all("spans => spans.map(s => s.dataset.name)")
    assert "cache get" in names and "cache set" in names, names
    for i in range(cache_calls.count()):
        call = cache_calls.nth(i)
        expect(call.locator("details > summary")).to_contain_text("Client")
        expect(call).to_have_attribute("data-parent-span-id", server_id)
    server.locator("details > summary").click()
    expect(server.locator("details")).to_contain_text("http.response.status_code")
    screenshot(page, "trace")

    # Structured logs (the request's log record) and metrics (one chart per instrument).
    page.goto(app.url + "/structuredlogs")
    logs = page.locator("table#logs tr.log", has_text="GET / -> 200")
    visible_after_reloads(page, logs, "the log record of GET /")
    screenshot(page, "structuredlogs")
    page.goto(app.url + "/metrics")
    for instrument in ("quickstart.api.requests", "http.server.request.duration"):
        chart = page.locator(f'section.instrument[data-instrument="{instrument}"]')
        visible_after_reloads(page, chart, f"the {instrument} chart")
        expect(chart.first.locator("svg")).to_have_count(1)
    screenshot(page, "metrics")

    # Restart the API from the resources page: its row shows a new process and Running again
    # (the Stopping/Starting in between can be shorter than a live update, so the new pid is
    # what proves it left), the cache stays Running throughout (same Redis process), and the
    # new API process answers with the cache's count intact.
    old_api_pid = process_pid(app.resource("api"))
    redis_pids = redis_server_pids(cache_port(app.status))
    assert len(redis_pids) == 1, redis_pids
    page.goto(app.url + "/")
    expect_running(page, "cache", "api")
    api_runtime = page.locator('tr[data-resource="api"] p.runtime')
    expect(api_runtime).to_contain_text(f"pid {old_api_pid}")
    page.evaluate(RECORD_STATES_JS)
    restart = page.locator('button.command[data-command="restart"][data-resource="api"]')
    expect(restart).to_be_enabled()
    restart.click()
    expect(api_runtime).not_to_have_text(re.compile(rf"pid {old_api_pid}\b"), timeout=WAIT_MS)
    expect_running(page, "api")
    expect(page.locator("#toast")).to_contain_text("restart")
    states = page.evaluate("() => window.__apphostStates")
    assert states["api"][-1] == "Running", states
    assert set(states["cache"]) == {"Running"}, states
    status = quickstart_status()
    new_api_pid = process_pid(resource_of(status, "api"))
    app.pids.append(new_api_pid)
    assert new_api_pid != old_api_pid
    expect(api_runtime).to_contain_text(f"pid {new_api_pid}")
    assert redis_server_pids(cache_port(status)) == redis_pids  # the same Redis, not restarted
    again = wait_until(_answer(app), timeout=TELEMETRY_S, what="the restarted API to answer")
    assert again["servedBy"] == new_api_pid
    assert again["visits"] == first["visits"] + 1
    screenshot(page, "restarted")


def _answer(app: RunningQuickStart) -> Callable[[], dict[str, Any]]:
    """A poll for ``GET /`` of the API: its JSON, or ``{}`` while it does not answer yet."""

    def poll() -> dict[str, Any]:
        try:
            return get_api(app)
        except (httpx.HTTPError, AssertionError):
            return {}

    return poll


def test_secret_hidden_until_revealed(quickstart: RunningQuickStart, tab: Page) -> None:
    """The cache password, in the environment the API was started with, is masked in the
    page, its live fragment and the JSON API; one click on its reveal button shows it, and
    only it (the connection string holding the same password stays masked)."""
    app, page = quickstart, tab
    password = app.cache_password
    assert len(password) >= 16
    login(page, app)
    expect_running(page, "cache", "api")
    api_row = page.locator('tr[data-resource="api"]')
    value = api_row.locator('code.env-value[data-variable="CACHE_PASSWORD"]')
    connection = api_row.locator('code.env-value[data-variable="ConnectionStrings__cache"]')
    expect(value).to_have_count(1)
    expect(connection).to_contain_text("password=***")
    assert password not in page.content()
    assert password not in page.request.get(app.url + "/api/resources").text()
    fragment = page.request.get(app.url + "/", headers={"X-Fragment": "1"})
    assert fragment.status == 200 and password not in fragment.text()

    api_row.locator("details.resource-details > summary").click()
    expect(value).not_to_have_text(password)
    api_row.locator('button.reveal[data-variable="CACHE_PASSWORD"]').click()
    expect(value).to_have_text(password, timeout=WAIT_MS)
    expect(connection).to_contain_text("password=***")
    assert page.content().count(password) == 1
