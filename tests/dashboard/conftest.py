"""Fixtures of the dashboard tests: a small in-test DashboardSource (two resources with a secret),
a real DashboardServer on loopback ports, and httpx clients (anonymous and logged in)."""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable, Iterator

import attrs
import httpx
import pytest

from apphost_sdk.dashboard.server import DashboardServer
from apphost_sdk.dashboard.source import (
    COMMANDS,
    CommandResult,
    CommandView,
    EndpointView,
    EnvVarView,
    RelationView,
    ResourceView,
)
from apphost_sdk.telemetry.store import TelemetryStore

#: The secret environment value of the test app: it must appear in no page or API answer.
SECRET = "p4ss-w0rd-that-must-not-leak"
MASK = "***"


class FakeSource:
    """Two resources, ``cache`` (a container with a password) and ``api`` (an executable
    referencing and waiting for it); commands change their state as the orchestrator would."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._version = 1
        self.states = {"cache": "Running", "api": "Running"}
        self.executed: list[tuple[str, str]] = []
        self.environment = {
            "cache": {"REDIS_PASSWORD": SECRET},
            "api": {"ConnectionStrings__cache": f"localhost:6379,password={SECRET}", "X": "1"},
        }

    def _view(self, name: str) -> ResourceView:
        state = self.states[name]
        env = tuple(
            EnvVarView(key, MASK if key != "X" else value, key != "X")
            for key, value in self.environment[name].items()
        )
        commands = tuple(CommandView(c, (c == "start") == (state != "Running")) for c in COMMANDS)
        if name == "cache":
            return ResourceView(
                name="cache",
                kind="Container",
                state=state,
                health="Healthy",
                endpoints=(EndpointView("tcp", "tcp://localhost:6379"),),
                started_at=time.time() - 60,
                environment=env,
                commands=commands,
            )
        return ResourceView(
            name="api",
            kind="Executable",
            state=state,
            health="Unhealthy" if state != "Running" else "Healthy",
            health_reason="GET /health answered 503" if state != "Running" else None,
            endpoints=(EndpointView("http", "http://localhost:8080"),),
            started_at=time.time() - 30,
            exit_code=None if state == "Running" else 0,
            environment=env,
            relations=(RelationView("cache", "reference"), RelationView("cache", "wait")),
            commands=commands,
        )

    def resources(self) -> list[ResourceView]:
        with self._lock:
            return [self._view("cache"), self._view("api")]

    def version(self) -> int:
        with self._lock:
            return self._version

    def set_state(self, name: str, state: str) -> None:
        with self._lock:
            self.states[name] = state
            self._version += 1

    def execute(self, resource: str, command: str) -> CommandResult:
        with self._lock:
            self.executed.append((resource, command))
            state = self.states[resource]
            if command == "start" and state == "Running":
                return CommandResult(False, f"{resource} is already running")
            if command in ("stop", "restart") and state != "Running":
                return CommandResult(False, f"{resource} is not running")
            self.states[resource] = "Exited" if command == "stop" else "Running"
            self._version += 1
            return CommandResult(True, f"{resource}: {command} done")

    def reveal(self, resource: str, variable: str) -> str | None:
        return self.environment.get(resource, {}).get(variable)


@attrs.frozen
class Dashboard:
    """A running dashboard and what a test needs to talk to it."""

    server: DashboardServer
    source: FakeSource
    store: TelemetryStore
    token: str
    api_key: str

    @property
    def ui(self) -> str:
        return self.server.ui_url

    @property
    def otlp(self) -> str:
        return self.server.otlp_url


@pytest.fixture
def dashboard() -> Iterator[Dashboard]:
    source = FakeSource()
    store = TelemetryStore()
    token = secrets.token_hex(16)
    api_key = secrets.token_hex(16)
    server = DashboardServer(source, store, token=token, otlp_api_key=api_key)
    server.bind()
    server.start()
    try:
        assert server.wait_started(10), "the dashboard's servers did not start"
        yield Dashboard(server, source, store, token, api_key)
    finally:
        server.stop()


@pytest.fixture
def anonymous(dashboard: Dashboard) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=dashboard.ui, timeout=10, follow_redirects=False) as client:
        yield client


@pytest.fixture
def client(dashboard: Dashboard) -> Iterator[httpx.Client]:
    """A client logged in through the login URL (the cookie is set)."""
    with httpx.Client(base_url=dashboard.ui, timeout=10, follow_redirects=False) as client:
        response = client.get(f"/login?t={dashboard.token}")
        assert response.status_code == 303, response.text
        yield client


def wait_until(check: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
    """Poll ``check`` until true or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what or check}")
