"""Helpers of the dashboard's browser test: Debian's Chromium driven by Playwright, the quick
start started and stopped with the ``apphost`` CLI, and screenshots saved as test artifacts.

The browser is always the system one (``/usr/lib/chromium/chromium``, installed by
``tests/support/install_chromium.sh``); ``playwright install`` is never run. Without it the
test fails under ``CI=true`` (the set-up is broken) and is skipped elsewhere.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from .conftest import (
    QUICKSTART,
    ROOT,
    apphost_cli,
    pid_alive,
    redis_server_processes,
    wait_until,
)

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

CHROMIUM = Path("/usr/lib/chromium/chromium")
INSTALL_SCRIPT = "tests/support/install_chromium.sh"
#: Headless and quiet: no sandbox (root in CI), no GPU, no calls home, no QUIC.
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
#: Where the screenshots go (the README names this folder; git ignores it).
ARTIFACTS = ROOT / "tests" / "artifacts" / "dashboard"
#: Milliseconds Playwright waits for a page to show something (generous: a noisy 2-core box).
WAIT_MS = 30_000

#: Records every ``data-state`` each resource row shows from now on in
#: ``window.__apphostStates`` (name -> list of states), so a short-lived state that the live
#: update swapped in and out again is still seen.
RECORD_STATES_JS = """
() => {
  const seen = {};
  const record = () => {
    document.querySelectorAll("#resources tr[data-resource]").forEach((row) => {
      const cell = row.querySelector("td.state");
      if (!cell) return;
      const name = row.dataset.resource, state = cell.dataset.state;
      const list = seen[name] || (seen[name] = []);
      if (list[list.length - 1] !== state) list.push(state);
    });
  };
  record();
  new MutationObserver(record).observe(document.getElementById("content"),
    { subtree: true, childList: true, attributes: true, attributeFilter: ["data-state"] });
  window.__apphostStates = seen;
}
"""


def in_ci() -> bool:
    """True under ``CI=true``: a missing browser is then a failure, not a skip."""
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def chromium_problem() -> str | None:
    """Why the browser cannot be driven here, or None when it can."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the Python package playwright is missing (pip install -e '.[dev]')"
    if not os.access(CHROMIUM, os.X_OK):
        return f"Debian's chromium ({CHROMIUM}) is missing; run `sh {INSTALL_SCRIPT}`"
    return None


def require_chromium() -> None:
    """Fail, naming the install script, when there is no browser (never skip: tests/run.sh
    installs it)."""
    problem = chromium_problem()
    if problem is None:
        return
    prefix = "CI=true and " if in_ci() else ""
    pytest.fail(f"{prefix}{problem}", pytrace=False)


@contextlib.contextmanager
def launched_chromium() -> Iterator[Browser]:
    """Debian's Chromium, headless, driven by Playwright's sync API; closed on exit."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as driver:
        browser = driver.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=LAUNCH_ARGS
        )
        try:
            yield browser
        finally:
            browser.close()


@dataclass(frozen=True)
class RunningQuickStart:
    """What ``apphost start samples/quickstart/apphost.py --json --show-secrets`` printed."""

    status: dict[str, Any]
    url: str  #: the dashboard, e.g. http://127.0.0.1:PORT
    login_url: str  #: the dashboard's login URL, token included
    api_url: str  #: the API's HTTP endpoint
    cache_password: str  #: the cache's generated password (a secret)
    #: Processes that must be gone after the stop (a test adds those it caused, e.g. a restart).
    pids: list[int] = field(default_factory=list)

    @property
    def host_pid(self) -> int:
        return int(self.status["pid"])

    def resource(self, name: str) -> dict[str, Any]:
        return resource_of(self.status, name)


def resource_of(status: dict[str, Any], name: str) -> dict[str, Any]:
    """The status JSON entry of resource ``name``."""
    return dict(next(r for r in status["resources"] if r["name"] == name))


def process_pid(resource: dict[str, Any]) -> int:
    """The pid of a resource run as a host process (its status ``runtime`` is ``pid N``)."""
    match = re.fullmatch(r"pid (\d+)", str(resource.get("runtime", "")))
    assert match, f"not a host process: {resource.get('runtime')!r}"
    return int(match.group(1))


def redis_server_pids(port: int) -> list[int]:
    """Pids of the ``redis-server`` processes serving ``port`` (their title names it)."""
    return [pid for pid, cmd in redis_server_processes() if f":{port}" in cmd]


def cache_port(status: dict[str, Any]) -> int:
    """The quick start's Redis port (the cache's ``CACHE_PORT``)."""
    return int(resource_of(status, "cache")["environment"]["CACHE_PORT"])


def quickstart_status() -> dict[str, Any]:
    """The running quick start's status, secrets shown (a second ``start`` prints it)."""
    done = apphost_cli("start", str(QUICKSTART), "--json", "--show-secrets")
    assert done.returncode == 0, done.stderr
    status = json.loads(done.stdout)
    assert isinstance(status, dict), done.stdout
    return status


def start_quickstart() -> RunningQuickStart:
    """Start the quick start in the background and read its dashboard's URLs."""
    status = quickstart_status()
    assert status["phase"] == "ready", status
    dashboard = status.get("dashboard")
    assert dashboard, f"the status JSON has no dashboard: {status}"
    login_url = str(dashboard["loginUrl"])
    assert "***" not in login_url, f"--show-secrets left the login URL masked: {login_url}"
    pids = [int(status["pid"]), process_pid(resource_of(status, "api"))]
    pids += redis_server_pids(cache_port(status))
    return RunningQuickStart(
        status=status,
        pids=pids,
        url=str(dashboard["url"]).rstrip("/"),
        login_url=login_url,
        api_url=str(resource_of(status, "api")["endpoint"]).rstrip("/"),
        cache_password=str(resource_of(status, "cache")["environment"]["CACHE_PASSWORD"]),
    )


def stop_quickstart(started: RunningQuickStart | None) -> None:
    """``apphost stop`` the quick start, then check its processes are gone."""
    stopped = apphost_cli("stop", str(QUICKSTART))
    if started is None:
        return
    assert stopped.returncode == 0, stopped.stderr
    pids = list(started.pids)
    wait_until(
        lambda: not any(pid_alive(pid) for pid in pids),
        timeout=20,
        what=f"the quick start's processes {pids} to exit",
    )


def screenshot(page: Page, name: str) -> Path:
    """Save a full-page screenshot as ``tests/artifacts/dashboard/{name}.png``."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
