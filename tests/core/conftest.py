"""Fixtures of the core tests: process runtime, an isolated state directory per test, and a
check that no test leaves a child process behind."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from apphost_sdk.orchestration.app import DistributedApplication

from .helpers import children_of, pid_alive, services, wait_until


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Force the process runtime and give each test its own state directory."""
    state = tmp_path / "state"
    monkeypatch.setenv("APPHOST_CONTAINER_RUNTIME", "process")
    monkeypatch.setenv("APPHOST_STATE_DIR", str(state))
    monkeypatch.setenv("NO_COLOR", "1")
    for key in list(os.environ):
        low = key.lower()
        if (
            low.startswith(("connectionstrings__", "parameters__", "azure__"))
            or low == "apphost_environment"
            or low == "apphost_redis_server"
        ):
            monkeypatch.delenv(key)
    return state


@pytest.fixture(autouse=True)
def no_child_left_behind() -> Iterator[None]:
    """Every child process a test started is gone when the test ends."""
    before = set(children_of(os.getpid()))
    yield
    me = os.getpid()
    wait_until(
        lambda: not [p for p in children_of(me) if p not in before and pid_alive(p)],
        timeout=5,
        what="the test's child processes to exit",
    )


@pytest.fixture
def svc(tmp_path: Path) -> Path:
    """A folder with the service scripts of ``helpers``."""
    return services(tmp_path / "svc")


@pytest.fixture
def apps() -> Iterator[list[DistributedApplication]]:
    """Apps appended here are stopped at the end of the test, whatever happened."""
    started: list[DistributedApplication] = []
    yield started
    for app in started:
        app.stop()
