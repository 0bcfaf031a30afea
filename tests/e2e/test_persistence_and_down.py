"""Persistent resources outlive their app host, as in Aspire, and ``apphost down`` never removes
what a live app host uses (issue #11).

- A persistent container is left running by a normal stop (``app.stop()``, ``apphost stop``,
  Ctrl-C) and reused by the next run as it is (same server, port and password); orphan clean-up
  keeps it; only ``apphost down --volumes`` removes it.
- ``apphost down`` refuses, removing nothing and naming the pid and how to stop it, while a live
  app host uses the containers, networks or volumes it would remove: whichever run created them
  (a persistent container reused by a later run is that run's), whatever ``APPHOST_STATE_DIR``
  and folder ``down`` runs from.
- A persistent Redis on the process runtime stops with its app host but keeps its port and data
  (in its state folder's ``volumes/``) until ``apphost down --volumes``.
"""

from __future__ import annotations

import gc
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from apphost_sdk.errors import ApphostError, ResourceStartError
from apphost_sdk.model.annotations import ProcessFallbackAnnotation
from apphost_sdk.model.builder import DistributedApplicationBuilder
from apphost_sdk.model.values import ProcessContext
from apphost_sdk.orchestration.app import DistributedApplication
from apphost_sdk.runtimes import in_use
from apphost_sdk.runtimes.base import Lifetime, ProcessSpec
from apphost_sdk.runtimes.cleanup import down, remove_app_objects
from apphost_sdk.runtimes.engines import Engine
from apphost_sdk.runtimes.process import ProcessRuntime, persistent_dir
from apphost_sdk.state import app_identity

from .conftest import ROOT, TEST_IMAGE, TEST_TAG, pid_alive, wait_until, write_file

APPHOST = f"""
    from apphost_sdk import DistributedApplication


    def make_builder(args):
        builder = DistributedApplication.create_builder(args)
        cfg = builder.configuration
        cache = builder.add_redis("cache").with_image("{TEST_IMAGE}", "{TEST_TAG}")
        cache.with_lifetime("persistent")
        if cfg.get_str("Test:Volume"):
            cache.with_data_volume()
        if cfg.get_str("Test:Session"):  # a session container beside it
            builder.add_redis("scratch").with_image("{TEST_IMAGE}", "{TEST_TAG}")
        return builder


    if __name__ == "__main__":
        make_builder(None).build().run()
"""


class App:
    """An app host file in its own folder (its own app id), run in-process or as a user would."""

    def __init__(self, folder: Path, state_root: Path) -> None:
        self.path = write_file(folder / "apphost.py", APPHOST)
        self.app_name, self.app_id = app_identity(self.path)
        self.state_root = state_root
        self.state_dir = state_root / self.app_id

    def builder(self, *args: str) -> DistributedApplicationBuilder:
        import runpy

        builder = runpy.run_path(str(self.path))["make_builder"](list(args))
        assert isinstance(builder, DistributedApplicationBuilder)
        return builder

    def start(self, *args: str) -> DistributedApplication:
        return self.builder(*args).build().start(timeout=60, quiet=True)

    def background(self, *args: str) -> subprocess.Popen[bytes]:
        """``python apphost.py ARGS`` as a user runs it; returns once its status says ready."""
        proc = subprocess.Popen(
            [sys.executable, str(self.path), *args],
            cwd=self.path.parent,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_until(lambda: self._ready(proc.pid), timeout=60, what="the app host to be ready")
        except BaseException:
            proc.kill()
            proc.wait(10)
            raise
        return proc

    def _ready(self, pid: int) -> bool:
        try:
            status = json.loads((self.state_dir / "status.json").read_text())
        except (OSError, ValueError):
            return False
        return bool(status.get("pid") == pid and status.get("phase") == "ready")

    def cli(
        self, *args: str, cwd: Path | None = None, **env: str
    ) -> subprocess.CompletedProcess[str]:
        """``python -m apphost_sdk ARGS`` from ``cwd`` with ``env`` on top of the test's."""
        return subprocess.run(
            [sys.executable, "-m", "apphost_sdk", *args],
            capture_output=True,
            text=True,
            timeout=90,
            cwd=cwd or ROOT,
            env={**os.environ, **env},
        )


@pytest.fixture
def app(
    tmp_path: Path, isolated_env: Path, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> Iterator[App]:
    """The app host on the docker runtime; everything the engine keeps for it is removed after."""
    monkeypatch.setenv("APPHOST_CONTAINER_RUNTIME", "docker")
    host = App(tmp_path / "keepapp", isolated_env)
    yield host
    remove_app_objects(engine.client.api, host.app_id, True)


def _containers(api: Any, app_id: str) -> dict[str, dict[str, Any]]:
    found = api.containers(all=True, filters={"label": [f"apphost-sdk.app-id={app_id}"]})
    return {c["Labels"]["apphost-sdk.resource"]: c for c in found}


def _volumes(api: Any, app_id: str) -> list[str]:
    found = api.volumes(filters={"label": [f"apphost-sdk.app-id={app_id}"]}) or {}
    return [v["Name"] for v in found.get("Volumes") or []]


def _down_removes_everything(app: App, api: Any, cwd: Path | None = None, **env: str) -> None:
    """``apphost down APPHOST.py --volumes`` (from ``cwd``, with ``env``) succeeds and leaves
    none of the app's containers or volumes."""
    done = app.cli("down", str(app.path), "--volumes", cwd=cwd, **env)
    assert done.returncode == 0, done.stderr
    assert _containers(api, app.app_id) == {} and _volumes(api, app.app_id) == []


def _endpoint(app: DistributedApplication, name: str = "cache") -> tuple[int, str]:
    """(host port, password) of ``name``, from the connection string a reference injects."""
    cs = app.connection_string(name)
    assert cs is not None
    hostport, _, options = cs.partition(",")
    return int(hostport.rpartition(":")[2]), options.partition("password=")[2]


def _redis(port: int, password: str) -> redis.Redis:
    return redis.Redis(host="127.0.0.1", port=port, password=password, socket_timeout=5)


def _stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


# --------------------------------------------------------------------------- item 2: containers


def test_a_persistent_container_outlives_every_normal_stop_and_is_reused_as_it_is(
    app: App, engine: Engine
) -> None:
    api = engine.client.api
    # app.stop()
    with app.start("--Test:Volume=1") as running:
        port, password = _endpoint(running)
        client = _redis(port, password)
        client.set("kept", "in memory and on disk")
        run_id = client.info("server")["run_id"]
        client.close()
    del running
    gc.collect()  # an app started in-process holds the app's run lock until it is collected
    keep = _containers(api, app.app_id)["cache"]
    assert keep["State"] == "running"

    # apphost start / apphost stop
    started = app.cli("start", str(app.path), "--Test:Volume=1")
    assert started.returncode == 0, started.stderr
    stopped = app.cli("stop", str(app.path))
    assert stopped.returncode == 0, stopped.stderr
    assert _containers(api, app.app_id)["cache"]["State"] == "running"

    # Ctrl-C
    proc = app.background("--Test:Volume=1")
    _stop(proc, signal.SIGINT)
    assert proc.returncode in (0, 130)

    [again] = _containers(api, app.app_id).values()
    assert (again["Id"], again["State"]) == (keep["Id"], "running")
    with app.start("--Test:Volume=1") as running:
        assert _endpoint(running) == (port, password)
        client = _redis(port, password)
        assert client.get("kept") == b"in memory and on disk"
        assert client.info("server")["run_id"] == run_id  # never restarted by any of those
        client.close()

    # Only `down --volumes` removes it (and its volume).
    kept = app.cli("down", str(app.path))
    assert kept.returncode == 0, kept.stderr
    assert _containers(api, app.app_id)["cache"]["Id"] == keep["Id"]
    _down_removes_everything(app, api)


# --------------------------------------------------------------------------- item 1: down


def test_down_from_another_state_folder_refuses_while_the_app_host_runs(
    app: App, engine: Engine, tmp_path: Path
) -> None:
    api = engine.client.api
    proc = app.background("--Test:Volume=1", "--Test:Session=1")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    other_state = str(tmp_path / "other-state")
    try:
        before = _containers(api, app.app_id)
        assert set(before) == {"cache", "scratch"}
        volumes = _volumes(api, app.app_id)
        assert len(volumes) == 1

        for args in (("--volumes",), ()):
            refused = app.cli(
                "down", str(app.path), *args, cwd=elsewhere, APPHOST_STATE_DIR=other_state
            )
            assert refused.returncode == 1, refused.stdout
            message = refused.stderr
            assert f"pid {proc.pid}" in message, message
            assert f"apphost stop {app.path}" in message, message
            assert f"APPHOST_STATE_DIR={app.state_root}" in message, message
            assert "nothing was removed" in message, message
            assert "Traceback" not in message

        after = _containers(api, app.app_id)
        assert {k: (c["Id"], c["State"]) for k, c in after.items()} == {
            k: (c["Id"], "running") for k, c in before.items()
        }
        assert _volumes(api, app.app_id) == volumes
    finally:
        _stop(proc)

    # Stopped: the session container is gone, the persistent one is no longer in use.
    _down_removes_everything(app, api, cwd=elsewhere, APPHOST_STATE_DIR=other_state)


def test_down_refuses_while_a_later_run_reuses_the_persistent_container(
    app: App, engine: Engine, tmp_path: Path
) -> None:
    api = engine.client.api
    other_state = str(tmp_path / "other-state")
    # This test process creates it (its creator label names this process) ...
    with app.start("--Test:Volume=1"):
        refused = app.cli("down", str(app.path), "--volumes", APPHOST_STATE_DIR=other_state)
        assert refused.returncode == 1
        assert f"pid {os.getpid()}" in refused.stderr, refused.stderr
    gc.collect()  # an app started in-process holds the app's run lock until it is collected
    # ... and lets it go; a later app host reuses it.
    created = _containers(api, app.app_id)["cache"]
    proc = app.background("--Test:Volume=1")
    try:
        refused = app.cli("down", str(app.path), "--volumes", APPHOST_STATE_DIR=other_state)
        assert refused.returncode == 1
        assert f"pid {proc.pid}" in refused.stderr, refused.stderr
        assert f"pid {os.getpid()}" not in refused.stderr
        assert "resource cache, persistent" in refused.stderr
        assert _containers(api, app.app_id)["cache"]["Id"] == created["Id"]
    finally:
        _stop(proc, signal.SIGKILL)  # killed: its in-use record is stale and counts for nothing

    _down_removes_everything(app, api, APPHOST_STATE_DIR=other_state)


def test_a_persistent_container_in_use_is_never_recreated_under_its_app_host(
    app: App, engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = engine.client.api
    proc = app.background()
    try:
        [used] = _containers(api, app.app_id).values()
        # The same app with another state folder has another password: its settings differ.
        monkeypatch.setenv("APPHOST_STATE_DIR", str(tmp_path / "other-state"))
        with pytest.raises(ResourceStartError) as caught:
            app.start()
        assert f"pid {proc.pid} uses it" in str(caught.value)
        [still] = _containers(api, app.app_id).values()
        assert (still["Id"], still["State"]) == (used["Id"], "running")
        assert proc.poll() is None
    finally:
        _stop(proc)


def test_a_stale_in_use_record_counts_for_nothing_and_is_removed() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        from apphost_sdk.files import write_private
        from apphost_sdk.process_identity import process_start_time

        folder = in_use.registry_dir()
        assert folder is not None and folder.stat().st_mode & 0o077 == 0
        record = folder / f"{'f' * 64}.{child.pid}.test.json"
        write_private(
            record,
            json.dumps(
                {"container": "f" * 64, "pid": child.pid, "start": process_start_time(child.pid)}
            ),
        )
        assert [u.pid for u in in_use.users(["f" * 64])] == [child.pid]
    finally:
        child.kill()
        child.wait(10)
    assert in_use.users(["f" * 64]) == []
    assert not record.exists()


# --------------------------------------------------------------------------- item 2: processes


def _redis_recipe(lifetime: Lifetime, password: str) -> Any:
    """The recipe of a real ``RedisResource``, as the orchestrator hands it to the runtime."""
    builder = DistributedApplication.create_builder([])
    resource = builder.add_redis("cache")
    if lifetime == "persistent":
        resource.with_lifetime("persistent")
    fallback = resource.annotation(ProcessFallbackAnnotation)
    assert fallback is not None

    def recipe(port: int, addresses: tuple[str, ...], scratch: Path, mounts: Any) -> Any:
        launch = fallback.recipe(
            ProcessContext("cache", port, addresses, scratch, mounts, lambda p: password)
        )
        return launch.argv, launch.cwd, launch.environment, launch.private_files

    return recipe, fallback


def _process_spec(state_dir: Path, lifetime: Lifetime, password: str) -> ProcessSpec:
    import uuid

    recipe, fallback = _redis_recipe(lifetime, password)
    return ProcessSpec(
        app_id="procapp-0123456789",
        session_id=uuid.uuid4().hex[:12],
        resource_name="cache",
        state_dir=state_dir,
        host_port=None,
        mounts=(),
        bind_addresses=("127.0.0.1",),
        recipe=recipe,
        endpoint="tcp",
        ready_marker=fallback.ready_marker,
        port_conflict_marker=fallback.port_conflict_marker,
        lifetime=lifetime,
    )


def _ping_until(port: int, password: str) -> redis.Redis:
    client = _redis(port, password)
    wait_until(lambda: _pings(client), timeout=15, what=f"PING on {port}")
    return client


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


def test_a_persistent_process_keeps_its_port_and_data_until_down_volumes(tmp_path: Path) -> None:
    state = tmp_path / "state" / "procapp-0123456789"
    password = "Pr0cessPassw0rdXYZ"
    lines: list[str] = []

    def run() -> tuple[int, redis.Redis, Any]:
        handle = ProcessRuntime().start(
            _process_spec(state, "persistent", password), lambda s, line: lines.append(line)
        )
        return handle.host_port, _ping_until(handle.host_port, password), handle

    port, client, handle = run()
    client.set("kept", "on disk")
    client.close()
    handle.stop(5)
    assert not pid_alive(handle.process.pid)  # a process cannot outlive its app host
    kept = persistent_dir(state, "cache")
    assert json.loads((kept / "port.json").read_text())["port"] == port
    assert not list(kept.glob("*.conf"))  # the file holding the password does not stay
    assert not (state / "run").exists() or not any((state / "run").iterdir())

    again_port, client, handle = run()
    assert again_port == port
    assert client.get("kept") == b"on disk"
    client.close()
    handle.stop(5)

    # Its port taken by another program meanwhile: a new one, said in its log.
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        moved, client, handle = run()
    assert moved != port
    assert any(f"port {port} of its earlier runs is now used" in line for line in lines)
    assert client.get("kept") == b"on disk"
    client.close()
    handle.stop(5)

    # A session one shares nothing of it.
    session = ProcessRuntime().start(_process_spec(state, "session", password), lambda s, ln: None)
    client = _ping_until(session.host_port, password)
    assert client.get("kept") is None
    client.close()
    session.stop(5)

    # `down` keeps it, `down --volumes` removes it (no engine needed for that).
    no_engine = {"APPHOST_CONTAINER_RUNTIME": "docker", "DOCKER_HOST": "unix:///nonexistent.sock"}
    down(None, False, lambda line: None, environ=no_engine, state_dirs=[state])
    assert (kept / "port.json").exists()
    said: list[str] = []
    down(None, True, said.append, environ=no_engine, state_dirs=[state])
    assert not (state / "volumes").exists()
    assert any("process data" in line for line in said), said


PROCESS_APPHOST = """
    from apphost_sdk import DistributedApplication


    def make_builder(args):
        builder = DistributedApplication.create_builder(args)
        cache = builder.add_redis("cache").with_lifetime("persistent")
        if builder.configuration.get_str("Test:Volume"):
            cache.with_data_volume()
        return builder


    if __name__ == "__main__":
        make_builder(None).build().run()
"""


def test_down_volumes_refuses_while_an_app_host_runs_processes_from_the_state_folder(
    tmp_path: Path, isolated_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("APPHOST_CONTAINER_RUNTIME", "process")
    host = App(tmp_path / "procapp", isolated_env)
    write_file(host.path, PROCESS_APPHOST)
    proc = host.background("--Test:Volume=1")
    try:
        assert (host.state_dir / "volumes").is_dir()
        no_engine = {"APPHOST_CONTAINER_RUNTIME": "docker", "DOCKER_HOST": "unix:///x.sock"}
        # ``down`` itself, past the CLI's check of the caller's state folder.
        with pytest.raises(ApphostError) as caught:
            down(None, True, lambda line: None, environ=no_engine, state_dirs=[host.state_dir])
        message = str(caught.value)
        assert f"pid {proc.pid} uses data in {host.state_dir / 'volumes'}" in message
        assert f"apphost stop {host.path}" in message
        assert (host.state_dir / "volumes").is_dir()
    finally:
        _stop(proc)


def test_a_persistent_redis_on_the_process_runtime_through_the_app_model(
    tmp_path: Path, isolated_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("APPHOST_CONTAINER_RUNTIME", "process")
    host = App(tmp_path / "procapp", isolated_env)
    write_file(host.path, PROCESS_APPHOST)
    kept_dir = persistent_dir(host.state_dir, "cache")

    with host.start() as running:
        port, password = _endpoint(running)
        client = _redis(port, password)
        client.set("kept", "across runs")
        client.close()
    assert (kept_dir / "port.json").exists()
    with host.start() as running:
        assert _endpoint(running) == (port, password)
        client = _redis(port, password)
        assert client.get("kept") == b"across runs"
        client.close()

    no_engine = {"DOCKER_HOST": "unix:///nonexistent.sock"}
    kept = host.cli("down", str(host.path), **no_engine)
    assert kept.returncode == 0, kept.stderr
    assert (kept_dir / "port.json").exists()
    gone = host.cli("down", str(host.path), "--volumes", **no_engine)
    assert gone.returncode == 0, gone.stderr
    assert not (host.state_dir / "volumes").exists()
    with host.start() as running:
        client = _redis(*_endpoint(running))
        assert client.get("kept") is None  # its data went with `down --volumes`
        client.close()
