"""Fixtures for tests against a real container engine.

The ``engine`` fixture makes an engine answer (``tests/support/start_dockerd.sh``) and builds the
local Redis image (``tests/support/build_redis_image.sh``; no registry is reachable). When that is
impossible, tests that need the engine fail (never skip) with the reason.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from apphost_sdk.runtimes.base import ContainerSpec
from apphost_sdk.runtimes.cleanup import remove_app_objects
from apphost_sdk.runtimes.docker_runtime import DockerRuntime
from apphost_sdk.runtimes.engines import Engine, find_engine

SUPPORT = Path(__file__).resolve().parent.parent / "support"
TEST_IMAGE = "apphost-test/redis"
TEST_TAG = "7"


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def _unavailable(reason: str) -> None:
    """Fail, never skip: the test command starts an engine, so one that is unusable is a
    broken set-up to fix, not a test to leave out."""
    where = "CI=true and " if _in_ci() else ""
    pytest.fail(
        f"{where}the container engine is unusable: {reason}; run `bash tests/run.sh` (it "
        "starts dockerd) or start a Docker engine",
        pytrace=False,
    )


def _run_script(name: str) -> str | None:
    """Run a support script; return its failure output, or None when it succeeded."""
    try:
        done = subprocess.run(
            ["sh", str(SUPPORT / name)], capture_output=True, text=True, timeout=180
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{name}: {exc}"
    if done.returncode != 0:
        return f"{name} exited {done.returncode}: {(done.stderr or done.stdout).strip()[-500:]}"
    return None


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test in this folder that uses the engine carries the ``docker`` marker."""
    for item in items:
        if "tests/docker/" in str(item.fspath).replace(os.sep, "/") and (
            "engine" in getattr(item, "fixturenames", ())
        ):
            item.add_marker(pytest.mark.docker)


@pytest.fixture(scope="session")
def _engine_or_reason() -> Engine | str:
    """Start an engine if none answers and build the test image; the engine or why not."""
    if find_engine().engine is None:
        problem = _run_script("start_dockerd.sh")
        if problem is not None:
            return problem
    discovery = find_engine()
    if discovery.engine is None:
        return f"tried {discovery.tried()}"
    problem = _run_script("build_redis_image.sh")
    if problem is not None:
        return problem
    return discovery.engine


@pytest.fixture
def engine(_engine_or_reason: Engine | str) -> Engine:
    """A reachable engine with the test image (fails with the reason when there is none)."""
    if isinstance(_engine_or_reason, str):
        _unavailable(_engine_or_reason)
    assert isinstance(_engine_or_reason, Engine)
    return _engine_or_reason


@pytest.fixture
def api(engine: Engine) -> object:
    """The low-level Docker API client, for inspecting what the runtime created."""
    return engine.client.api


@pytest.fixture
def app_id() -> Iterator[str]:
    """A fresh app id per test; everything created for it is removed afterwards."""
    value = "test-" + uuid.uuid4().hex[:12]
    yield value
    discovery = find_engine()
    if discovery.engine is not None:
        remove_app_objects(discovery.engine.client.api, value, True)
        discovery.engine.client.close()


class Announcements(list[str]):
    """Collects what the runtime announces."""

    def __call__(self, line: str) -> None:
        self.append(line)


@pytest.fixture
def announce() -> Announcements:
    return Announcements()


@pytest.fixture
def make_runtime(engine: Engine, announce: Announcements) -> Iterator[Callable[[], DockerRuntime]]:
    """Build runtimes on fresh clients (one per simulated app-host run); closed afterwards."""
    made: list[DockerRuntime] = []

    def make() -> DockerRuntime:
        fresh = find_engine()
        assert fresh.engine is not None
        runtime = DockerRuntime(fresh.engine, announce)
        made.append(runtime)
        return runtime

    yield make
    for runtime in made:
        runtime.close()


@pytest.fixture
def make_spec(app_id: str, tmp_path: Path) -> Callable[..., ContainerSpec]:
    """A Redis spec on the local test image; keyword arguments override fields."""

    def make(**overrides: object) -> ContainerSpec:
        fields: dict[str, object] = {
            "app_id": app_id,
            "app_name": "testapp",
            "session_id": uuid.uuid4().hex,
            "resource_name": "cache",
            "image": TEST_IMAGE,
            "tag": TEST_TAG,
            "state_dir": tmp_path,
        }
        fields.update(overrides)
        return ContainerSpec(**fields)  # type: ignore[arg-type]

    return make
