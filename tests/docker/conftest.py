"""Fixtures for tests against a real container engine.

The ``engine`` fixture makes an engine answer (``tests/support/start_dockerd.sh``) and builds the
local Redis image (``tests/support/build_redis_image.sh``; no registry is reachable); ``kv_image``
and ``recorder_image`` build the memcached and busybox images the generic-runtime tests use.
When that is impossible, tests that need the engine fail (never skip) with the reason.

``make_spec`` builds a generic ``ContainerSpec``; ``redis_spec`` builds one for Redis the way the
orchestrator does from a ``RedisResource`` (``/bin/sh -c`` with the resource's own script, the
password in ``REDIS_PASSWORD`` only, port 6379 as endpoint ``tcp``, ``/data`` as mount).
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from apphost_sdk import DistributedApplication
from apphost_sdk.integrations.redis import DATA_DIR, PASSWORD_VARIABLE, REDIS_PORT, Persistence
from apphost_sdk.runtimes.base import ContainerSpec, Lifetime, MountSpec, PortSpec
from apphost_sdk.runtimes.cleanup import remove_app_objects
from apphost_sdk.runtimes.docker_runtime import DockerRuntime
from apphost_sdk.runtimes.engines import Engine, find_engine

SUPPORT = Path(__file__).resolve().parent.parent / "support"
TEST_IMAGE = "apphost-test/redis"
TEST_TAG = "7"
KV_IMAGE, KV_TAG = "apphost-test/kv", "1"
RECORDER_IMAGE, RECORDER_TAG = "apphost-test/recorder", "1"


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


@pytest.fixture(scope="session")
def _kv_image_problem() -> str | None:
    return _run_script("build_kv_image.sh")


@pytest.fixture(scope="session")
def _recorder_image_problem() -> str | None:
    return _run_script("build_recorder_image.sh")


@pytest.fixture
def kv_image(engine: Engine, _kv_image_problem: str | None) -> str:
    """``apphost-test/kv:1`` (memcached on 11211; ENTRYPOINT memcached, /bin/sh is dash)."""
    if _kv_image_problem is not None:
        _unavailable(_kv_image_problem)
    return f"{KV_IMAGE}:{KV_TAG}"


@pytest.fixture
def recorder_image(engine: Engine, _recorder_image_problem: str | None) -> str:
    """``apphost-test/recorder:1`` (busybox httpd on 5540; /bin/busybox has nc and wget)."""
    if _recorder_image_problem is not None:
        _unavailable(_recorder_image_problem)
    return f"{RECORDER_IMAGE}:{RECORDER_TAG}"


@pytest.fixture
def make_spec(app_id: str, tmp_path: Path) -> Callable[..., ContainerSpec]:
    """A generic spec (the Redis test image, its own command, no ports unless given); keyword
    arguments override fields. The hash key is fixed per test, as the app's state keeps it."""
    hash_key = "hash-key-" + app_id

    def make(**overrides: object) -> ContainerSpec:
        fields: dict[str, object] = {
            "app_id": app_id,
            "app_name": "testapp",
            "session_id": uuid.uuid4().hex,
            "resource_name": "cache",
            "image": TEST_IMAGE,
            "tag": TEST_TAG,
            "state_dir": tmp_path,
            "hash_key": hash_key,
        }
        fields.update(overrides)
        return ContainerSpec(**fields)  # type: ignore[arg-type]

    return make


def redis_container_args(
    *,
    password: bool,
    data_mount: bool,
    persistence: Persistence | None,
    server_args: tuple[str, ...],
) -> tuple[str, ...]:
    """The ``/bin/sh`` arguments a real ``RedisResource`` with these settings produces."""
    builder = DistributedApplication.create_builder([])
    redis = builder.add_redis("cache")
    if not password:
        redis.with_password(None)
    if data_mount:  # the script only tells a /data mount (--dir) from none
        redis.with_data_volume()  # which also turns persistence on, with its defaults
    if persistence is not None:
        redis.with_persistence(
            timedelta(seconds=persistence.interval_seconds), persistence.keys_changed_threshold
        )
    if server_args:
        redis.with_args(*server_args)
    return tuple(redis._container_args())


@pytest.fixture
def redis_spec(make_spec: Callable[..., ContainerSpec]) -> Callable[..., ContainerSpec]:
    """A Redis spec as the orchestrator builds it from ``builder.add_redis(...)``.

    Redis settings: ``password`` (None: no authentication), ``host_port``, ``data_volume``
    (a volume name, "" for a derived one), ``bind_mount`` (a folder), ``persistence`` (with a
    data mount the default ``Persistence()``, as ``with_data_volume`` sets it), ``server_args``
    (``with_args``). ``environment`` adds variables next to the password; any other keyword
    overrides a ``ContainerSpec`` field.
    """

    def make(
        *,
        password: str | None = None,
        host_port: int | None = None,
        data_volume: str | None = None,
        bind_mount: str | None = None,
        persistence: Persistence | None = None,
        server_args: tuple[str, ...] = (),
        lifetime: Lifetime = "session",
        environment: dict[str, str] | None = None,
        **overrides: object,
    ) -> ContainerSpec:
        secret = {PASSWORD_VARIABLE: password} if password is not None else {}
        mounts: tuple[MountSpec, ...] = ()
        if data_volume is not None:
            mounts = (MountSpec(data_volume or None, DATA_DIR),)
        elif bind_mount is not None:
            mounts = (MountSpec(bind_mount, DATA_DIR, "bind"),)
        fields: dict[str, object] = {
            "ports": (PortSpec("tcp", REDIS_PORT, host_port),),
            "entrypoint": ("/bin/sh",),
            "args": redis_container_args(
                password=password is not None,
                data_mount=bool(mounts),
                persistence=persistence,
                server_args=server_args,
            ),
            "environment": {**(environment or {}), **secret},
            "mounts": mounts,
            "lifetime": lifetime,
        }
        fields.update(overrides)
        return make_spec(**fields)

    return make
