"""Fixtures of the end-to-end tests: the real builder, orchestrator and ``apphost`` CLI, as a user
runs them.

The container engine fixtures are those of ``tests/docker/conftest.py`` (loaded from that file,
not copied): ``engine`` starts an engine when none answers and builds the local test image
``apphost-test/redis:7``; without an engine the test fails (never skips) with the reason.
Every test gets its own ``APPHOST_STATE_DIR``.

No registry is reachable on the project's machines, so the quick start's default image
``docker.io/library/redis:8.6`` cannot be pulled. The ``default_redis_image`` fixture does what a
user behind a registry mirror would do::

    docker tag apphost-test/redis:7 docker.io/library/redis:8.6

(a real ``redis:8.6`` already present is left alone).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import socket
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

# pytest puts tests/ on sys.path (the first folder up with no __init__.py): the core tests'
# helpers import as ``core.helpers``.
from core.helpers import pid_alive
from core.helpers import wait_until as core_wait_until

from apphost_sdk.runtimes.engines import Engine

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "samples" / "quickstart" / "apphost.py"
DEFAULT_IMAGE = "docker.io/library/redis:8.6"


def _load_docker_fixtures() -> Any:
    spec = importlib.util.spec_from_file_location(
        "_apphost_tests_docker_fixtures", ROOT / "tests" / "docker" / "conftest.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_docker = _load_docker_fixtures()
#: The engine fixtures of tests/docker (they fail, never skip, when there is no engine).
_engine_or_reason = _docker._engine_or_reason
TEST_IMAGE: str = _docker.TEST_IMAGE
TEST_TAG: str = _docker.TEST_TAG


def _docker_library_problem() -> str | None:
    """Why ``import docker`` would not give the Docker SDK, or None when it does.

    A ``tests/docker/__init__.py`` makes ``tests/docker`` a regular package named ``docker``
    that shadows the SDK once pytest puts ``tests/`` on ``sys.path``: the engine then looks
    unreachable and every container test would be skipped. That must fail, never skip.
    """
    loaded = sys.modules.get("docker")
    if loaded is not None:
        origin = getattr(loaded, "__file__", None) or str(getattr(loaded, "__path__", ""))
    else:
        found = importlib.util.find_spec("docker")
        if found is None:
            return None  # not installed: the engine fixture reports it (it fails)
        origin = found.origin or str(found.submodule_search_locations)
    if str(ROOT / "tests") in str(origin):
        return (
            f"'import docker' finds the test folder ({origin}), not the Docker SDK: "
            "tests/docker must not be a package (remove tests/docker/__init__.py)"
        )
    return None


@pytest.fixture
def engine(_engine_or_reason: Engine | str) -> Engine:
    """A reachable engine with the test image (fails with the reason when there is none;
    fails always when the Docker SDK is shadowed)."""
    problem = _docker_library_problem()
    if problem is not None:
        pytest.fail(problem, pytrace=False)
    if isinstance(_engine_or_reason, str):
        _docker._unavailable(_engine_or_reason)
    assert isinstance(_engine_or_reason, Engine)
    return _engine_or_reason


T = TypeVar("T")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests of this folder that use the engine carry the ``docker`` marker."""
    for item in items:
        if "tests/e2e/" in str(item.fspath).replace(os.sep, "/") and (
            "engine" in getattr(item, "fixturenames", ())
        ):
            item.add_marker(pytest.mark.docker)


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A state directory per test; no connection strings or runtime choice from outside."""
    state = tmp_path / "state"
    monkeypatch.setenv("APPHOST_STATE_DIR", str(state))
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.delenv("APPHOST_CONTAINER_RUNTIME", raising=False)
    for key in list(os.environ):
        low = key.lower()
        if low.startswith(("connectionstrings__", "parameters__", "azure__")) or low in (
            "apphost_environment",
            "apphost_redis_server",
        ):
            monkeypatch.delenv(key)
    return state


@pytest.fixture
def default_redis_image(engine: Engine) -> Iterator[str]:
    """``docker tag apphost-test/redis:7 docker.io/library/redis:8.6``: what a user with a
    registry mirror would do so that the quick start's default image is present (the tag is
    removed again afterwards when this fixture made it)."""
    import docker

    api = engine.client.api
    tagged = False
    try:
        api.inspect_image(DEFAULT_IMAGE)
    except docker.errors.ImageNotFound:
        api.tag(f"{TEST_IMAGE}:{TEST_TAG}", "docker.io/library/redis", "8.6")
        tagged = True
    yield DEFAULT_IMAGE
    if tagged:
        with contextlib.suppress(docker.errors.APIError):
            api.remove_image(DEFAULT_IMAGE)  # only the tag: the test image keeps its own


def wait_until(
    predicate: Callable[[], T], timeout: float = 10.0, interval: float = 0.05, what: str = ""
) -> T:
    """The core tests' ``wait_until``, polling less often: the engine's work shows slower."""
    return core_wait_until(predicate, timeout, interval, what)


def redis_server_processes() -> list[tuple[int, str]]:
    """``(pid, command line)`` of every running ``redis-server`` process on this machine."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "redis-server" in cmd and pid_alive(int(entry.name)):
            out.append((int(entry.name), cmd))
    return out


def redis_server_cmdlines() -> list[str]:
    """Command lines of every running ``redis-server`` process on this machine."""
    return [cmd for _, cmd in redis_server_processes()]


def port_accepts(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def apphost_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60.0
) -> subprocess.CompletedProcess[str]:
    """``python -m apphost_sdk ARGS`` in a subprocess, with the test's environment."""
    return subprocess.run(
        [sys.executable, "-m", "apphost_sdk", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        cwd=ROOT,
    )


def write_file(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


# --------------------------------------------------------------------------- generic containers
#
# Shared by test_generic_containers.py and test_integration_extension.py: the other offline test
# images, an app-host folder per test (so each test has its own app id, and relative paths
# resolve against that folder as they do for a user's apphost.py), and clean-up of what the
# engine keeps for an app (containers, networks, volumes, images built from a Dockerfile).

KV_IMAGE = "apphost-test/kv:1"
RECORDER_IMAGE = "apphost-test/recorder:1"
COMMANDER_IMAGE = "apphost-test/redis-commander:1"
EXTRA_IMAGE_SCRIPTS = (
    "build_kv_image.sh",
    "build_recorder_image.sh",
    "build_redis_commander_image.sh",
)


@pytest.fixture(scope="session")
def _extra_images_or_reason(_engine_or_reason: Engine | str) -> str | None:
    """Build the kv, recorder and Redis Commander test images once (each script returns at
    once when its image exists); None, or why they cannot be had."""
    if isinstance(_engine_or_reason, str):
        return _engine_or_reason
    for script in EXTRA_IMAGE_SCRIPTS:
        problem = _docker._run_script(script)
        if problem is not None:
            return problem
    return None


@pytest.fixture
def extra_images(engine: Engine, _extra_images_or_reason: str | None) -> None:
    """The engine with apphost-test/kv:1, apphost-test/recorder:1 and
    apphost-test/redis-commander:1 (fails, never skips, when they cannot be built)."""
    if _extra_images_or_reason is not None:
        _docker._unavailable(_extra_images_or_reason)


#: The start of a host-process script the tests write (test_generic_containers.py's client,
#: test_integration_extension.py's worker): ``talk(host, port, payload, until)`` sends
#: ``payload`` over TCP and returns what comes back up to ``until`` (or the close), decoded.
TALK_SCRIPT = r"""
import socket

def talk(host, port, payload, until):
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(payload)
        data = b""
        while until not in data:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    return data.decode()
"""


#: An app host file whose builder the test configures (``create_builder`` takes the calling
#: file as the app host, so the builder's app host path is this file).
APP_FOLDER_HOST = """
    from apphost_sdk import DistributedApplication


    def create(args):
        return DistributedApplication.create_builder(args)
"""


class AppFolder:
    """An app host folder of its own; ``builder()`` is ``create_builder`` called from its
    ``apphost.py``."""

    def __init__(self, folder: Path) -> None:
        from apphost_sdk.state import app_identity

        self.folder = folder
        self.path = write_file(folder / "apphost.py", APP_FOLDER_HOST)
        self.app_name, self.app_id = app_identity(self.path)

    def builder(self, *args: str) -> Any:
        import runpy

        return runpy.run_path(str(self.path))["create"](list(args))


def remove_app_everything(api: Any, app_id: str) -> None:
    """Remove every container, network, volume and built image labelled with ``app_id``."""
    from apphost_sdk.runtimes.cleanup import remove_app_objects

    remove_app_objects(api, app_id, True)
    for image in api.images(filters={"label": f"apphost-sdk.app-id={app_id}"}):
        for ref in image.get("RepoTags") or [image["Id"]]:
            with contextlib.suppress(Exception):
                api.remove_image(ref, force=True)


@pytest.fixture
def app_folder(tmp_path: Path, engine: Engine) -> Iterator[AppFolder]:
    """An app host folder in ``tmp_path``; what the engine keeps for it is removed afterwards."""
    folder = AppFolder(tmp_path / "app")
    yield folder
    remove_app_everything(engine.client.api, folder.app_id)
