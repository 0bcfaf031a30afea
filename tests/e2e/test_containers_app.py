"""Redis containers through the app model: ``add_azure_redis("cache").run_as_container()`` run by
the real builder and orchestrator on the Docker engine, as an app host (or its test fixture)
would; plus runtime selection when the engine does not answer."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from apphost_sdk.errors import ResourceStartError
from apphost_sdk.model.builder import DistributedApplicationBuilder
from apphost_sdk.orchestration.app import DistributedApplication
from apphost_sdk.runtimes.cleanup import remove_app_objects
from apphost_sdk.runtimes.engines import Engine
from apphost_sdk.state import app_identity

from .conftest import (
    QUICKSTART,
    TEST_IMAGE,
    TEST_TAG,
    apphost_cli,
    pid_alive,
    wait_until,
    write_file,
)

#: An app host whose shape the test picks with ``--Test:*`` configuration keys.
APPHOST = f"""
    from apphost_sdk import DistributedApplication


    def make_builder(args):
        builder = DistributedApplication.create_builder(args)
        cfg = builder.configuration

        def configure(redis):
            redis.with_image("{TEST_IMAGE}", "{TEST_TAG}")
            if cfg.get_str("Test:Persistent"):
                redis.with_lifetime("persistent")
            if cfg.get_str("Test:Volume"):
                redis.with_data_volume()
            if cfg.get_str("Test:MaxMemory"):
                redis.with_args("--maxmemory", cfg.get_str("Test:MaxMemory"))

        cache = builder.add_azure_redis("cache").run_as_container(configure)
        if cfg.get_str("Test:Keep"):
            keep = builder.add_redis("keep").with_image("{TEST_IMAGE}", "{TEST_TAG}")
            keep.with_lifetime("persistent").with_data_volume()
        if cfg.get_str("Test:Network"):  # a container that talks to the cache by name
            builder.add_container("peer", "{TEST_IMAGE}", "{TEST_TAG}").with_reference(cache)
        if cfg.get_str("Test:Probe"):
            builder.add_python_app("probe", "probe", "probe.py", cfg.get_str("Test:Probe"))\\
                .with_reference(cache).wait_for(cache)
        return builder


    if __name__ == "__main__":
        make_builder(None).build().run()
"""

#: A host process that references the cache: records its environment and PINGs Redis through
#: the injected connection string and through CACHE_URI, then stays up.
PROBE = """
    import json, os, sys, time
    import redis

    record = {"env": {k: v for k, v in os.environ.items()
                      if k.startswith(("ConnectionStrings__", "CACHE_"))}}
    cs = os.environ["ConnectionStrings__cache"]
    hostport, _, options = cs.partition(",")
    host, _, port = hostport.rpartition(":")
    password = options.partition("password=")[2]
    try:
        record["cs_ping"] = redis.Redis(host=host, port=int(port), password=password).ping()
    except Exception as exc:
        record["cs_ping"] = repr(exc)
    try:
        record["uri_ping"] = redis.Redis.from_url(os.environ["CACHE_URI"]).ping()
    except Exception as exc:
        record["uri_ping"] = repr(exc)
    with open(sys.argv[1] + ".tmp", "w") as fh:
        json.dump(record, fh)
    os.replace(sys.argv[1] + ".tmp", sys.argv[1])
    time.sleep(120)
"""


class AppHost:
    """One app-host file in its own folder (so its own app id) and how to run it."""

    def __init__(self, folder: Path) -> None:
        self.path = write_file(folder / "apphost.py", APPHOST)
        write_file(folder / "probe" / "probe.py", PROBE)
        self.app_name, self.app_id = app_identity(self.path)

    def builder(self, *args: str) -> DistributedApplicationBuilder:
        import runpy

        namespace = runpy.run_path(str(self.path))
        builder = namespace["make_builder"](list(args))
        assert isinstance(builder, DistributedApplicationBuilder)
        return builder

    def start(self, *args: str) -> DistributedApplication:
        return self.builder(*args).build().start(timeout=60, quiet=False)


@pytest.fixture
def apphost(tmp_path: Path, engine: Engine, monkeypatch: pytest.MonkeyPatch) -> Iterator[AppHost]:
    """An app host on the docker runtime; everything created for it is removed afterwards."""
    monkeypatch.setenv("APPHOST_CONTAINER_RUNTIME", "docker")
    host = AppHost(tmp_path / "e2eapp")
    yield host
    remove_app_objects(engine.client.api, host.app_id, True)


def _containers(api: Any, app_id: str, *labels: str) -> list[dict[str, Any]]:
    flt = {"label": [f"apphost-sdk.app-id={app_id}", *labels]}
    return list(api.containers(all=True, filters=flt))


def _networks(api: Any, app_id: str) -> list[dict[str, Any]]:
    return list(api.networks(filters={"label": [f"apphost-sdk.app-id={app_id}"]}))


def _volumes(api: Any, app_id: str) -> list[dict[str, Any]]:
    found = api.volumes(filters={"label": [f"apphost-sdk.app-id={app_id}"]}) or {}
    return list(found.get("Volumes") or [])


def _cache(app: DistributedApplication) -> tuple[int, str]:
    """(host port, password) of the cache, from what a reference injects."""
    env = app.environment_for("probe") if _has(app, "probe") else None
    cs = app.connection_string("cache")
    assert cs is not None
    hostport, _, options = cs.partition(",")
    assert hostport.startswith("localhost:")
    password = options.partition("password=")[2]
    if env is not None:
        assert env["ConnectionStrings__cache"] == cs
    return int(hostport.rpartition(":")[2]), password


def _has(app: DistributedApplication, name: str) -> bool:
    return any(s.name == name for s in app.snapshots())


def _redis(port: int, password: str) -> redis.Redis:
    return redis.Redis(host="127.0.0.1", port=port, password=password, socket_timeout=5)


def test_run_as_container_uses_docker_and_wires_a_python_app(
    apphost: AppHost,
    engine: Engine,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    api = engine.client.api
    monkeypatch.setenv("APPHOST_CONTAINER_RUNTIME", "auto")  # the default: the engine answers
    probe_out = tmp_path / "probe.json"
    with apphost.start(f"--Test:Probe={probe_out}") as app:
        snaps = {s.name: s for s in app.snapshots()}
        assert snaps["cache"].runtime == engine.kind == "docker"
        port, password = _cache(app)
        assert len(password) == 22
        record = json.loads(wait_until(lambda: probe_out.exists() and probe_out.read_text()))
        env = record["env"]
        assert env["ConnectionStrings__cache"] == f"localhost:{port},password={password}"
        assert env["CACHE_HOST"] == "localhost"
        assert env["CACHE_PORT"] == str(port)
        assert env["CACHE_PASSWORD"] == password
        assert env["CACHE_URI"] == f"redis://:{password}@localhost:{port}"
        assert record["cs_ping"] is True and record["uri_ping"] is True

        [container] = _containers(api, apphost.app_id)
        info = api.inspect_container(container["Id"])
        exposed = {
            "Path": info["Path"],
            "Args": info["Args"],
            "Cmd": info["Config"]["Cmd"],
            "Entrypoint": info["Config"]["Entrypoint"],
            "Labels": info["Config"]["Labels"],
        }
        assert password not in json.dumps(exposed)
        assert f"REDIS_PASSWORD={password}" in info["Config"]["Env"]
        labels = info["Config"]["Labels"]
        assert labels["apphost-sdk.managed"] == "true"
        assert labels["apphost-sdk.app-id"] == apphost.app_id
        assert labels["apphost-sdk.app-name"] == apphost.app_name
        assert labels["apphost-sdk.resource"] == "cache"
        assert labels["apphost-sdk.lifetime"] == "session"
        assert labels["apphost-sdk.creator-pid"] == str(os.getpid())
        assert labels["apphost-sdk.creator-start"]
        assert labels["apphost-sdk.session"]
        assert labels["apphost-sdk.config-hash"]
        assert json.loads(labels["apphost-sdk.host-port"]) == {"tcp": port}
        bindings = info["HostConfig"]["PortBindings"]["6379/tcp"]
        assert bindings == [{"HostIp": "127.0.0.1", "HostPort": str(port)}]
        # No other container talks to it: it stays on the default bridge, with no run network.
        assert _networks(api, apphost.app_id) == []
        probe_pid = int(str(snaps["probe"].runtime).removeprefix("pid "))
    assert _containers(api, apphost.app_id) == []
    assert _networks(api, apphost.app_id) == []
    assert not pid_alive(probe_pid)
    assert password not in capfd.readouterr().out


def test_persistent_container_is_reused_and_recreated_when_its_settings_change(
    apphost: AppHost, engine: Engine, capfd: pytest.CaptureFixture[str]
) -> None:
    api = engine.client.api
    with apphost.start("--Test:Persistent=1") as app:
        port, password = _cache(app)
        [first] = _containers(api, apphost.app_id)
        client = _redis(port, password)
        client.set("kept", "yes")
        run_id = client.info("server")["run_id"]
        client.close()
    # As in Aspire, the app host's stop leaves it running; no run network is left.
    [after] = _containers(api, apphost.app_id)
    assert after["Id"] == first["Id"] and after["State"] == "running"
    assert _networks(api, apphost.app_id) == []

    with apphost.start("--Test:Persistent=1") as app:
        assert _cache(app) == (port, password)
        [again] = _containers(api, apphost.app_id)
        assert again["Id"] == first["Id"]
        client = _redis(port, password)
        assert client.get("kept") == b"yes"
        assert client.info("server")["run_id"] == run_id  # the same server, never restarted
        client.close()
    out = capfd.readouterr().out
    assert "reusing persistent container" in out and "(running, port" in out

    with apphost.start("--Test:Persistent=1", "--Test:MaxMemory=64mb") as app:
        new_port, new_password = _cache(app)
        [recreated] = _containers(api, apphost.app_id)
        assert recreated["Id"] != first["Id"]
        assert (new_port, new_password) == (port, password)  # its port was free: kept
        client = _redis(new_port, new_password)
        assert client.config_get("maxmemory")["maxmemory"] == str(64 * 1024 * 1024)
        client.close()
    out = capfd.readouterr().out
    [line] = [ln for ln in out.splitlines() if "configuration changed" in ln]
    assert "args" in line and "recreating" in line


def test_data_volume_keeps_a_key_across_runs(apphost: AppHost, engine: Engine) -> None:
    with apphost.start("--Test:Volume=1") as app:
        client = _redis(*_cache(app))
        client.set("survivor", "42")
        client.close()
        first = _containers(api := engine.client.api, apphost.app_id)[0]["Id"]
    assert _containers(api, apphost.app_id) == []  # a session container, removed
    assert len(_volumes(api, apphost.app_id)) == 1
    with apphost.start("--Test:Volume=1") as app:
        assert _containers(api, apphost.app_id)[0]["Id"] != first
        client = _redis(*_cache(app))
        assert client.get("survivor") == b"42"
        client.close()


def _run_in_background(apphost: AppHost, tmp_path: Path, *args: str) -> subprocess.Popen[bytes]:
    """``python apphost.py ARGS`` as a user runs it; returns once its status says ready."""
    proc = subprocess.Popen(
        [sys.executable, str(apphost.path), *args],
        cwd=apphost.path.parent,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    status_file = tmp_path / "state" / apphost.app_id / "status.json"

    def ready() -> bool:
        try:
            status = json.loads(status_file.read_text())
        except (OSError, ValueError):
            return False
        return bool(status.get("pid") == proc.pid and status.get("phase") == "ready")

    try:
        wait_until(ready, timeout=60, what="the app host to be ready")
    except BaseException:
        proc.kill()
        proc.wait(10)
        raise
    return proc


def test_ctrl_c_removes_session_container_and_network(
    apphost: AppHost, engine: Engine, tmp_path: Path
) -> None:
    api = engine.client.api
    proc = _run_in_background(apphost, tmp_path, "--Test:Network=1")
    try:
        assert len(_containers(api, apphost.app_id)) == 2
        [network] = _networks(api, apphost.app_id)
        sessions = {c["Labels"]["apphost-sdk.session"] for c in _containers(api, apphost.app_id)}
        assert sessions == {network["Labels"]["apphost-sdk.session"]}
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) in (0, 130)  # a clean stop (130: as shells report a Ctrl-C)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert _containers(api, apphost.app_id) == []
    assert _networks(api, apphost.app_id) == []


def test_killed_app_host_orphans_are_removed_and_down_removes_the_rest(
    apphost: AppHost, engine: Engine, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    api = engine.client.api
    # A real app host process with a session container and a persistent one, SIGKILLed.
    proc = _run_in_background(apphost, tmp_path, "--Test:Keep=1", "--Test:Network=1")
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    by_resource = {c["Labels"]["apphost-sdk.resource"]: c for c in _containers(api, apphost.app_id)}
    assert set(by_resource) == {"cache", "keep", "peer"}  # left behind by the killed app host
    orphans = {by_resource["cache"]["Id"], by_resource["peer"]["Id"]}
    persistent = by_resource["keep"]["Id"]
    assert len(_networks(api, apphost.app_id)) == 1

    with apphost.start("--Test:Keep=1", "--Test:Network=1"):
        ids = {c["Id"] for c in _containers(api, apphost.app_id)}
        assert not orphans & ids
        assert persistent in ids
        assert len(_networks(api, apphost.app_id)) == 1  # this run's only
    out = capfd.readouterr().out
    assert any("left behind by an earlier app host" in ln for ln in out.splitlines())
    assert [c["Id"] for c in _containers(api, apphost.app_id)] == [persistent]

    kept = apphost_cli("down", str(apphost.path))
    assert kept.returncode == 0, kept.stderr
    assert [c["Id"] for c in _containers(api, apphost.app_id)] == [persistent]

    removed = apphost_cli("down", str(apphost.path), "--volumes")
    assert removed.returncode == 0, removed.stderr
    assert "volume" in removed.stdout
    assert _containers(api, apphost.app_id) == []
    assert _volumes(api, apphost.app_id) == []
    assert _networks(api, apphost.app_id) == []


# --------------------------------------------------------------------------- no engine


def test_explicit_docker_without_engine_fails_naming_what_was_tried(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    done = apphost_cli(
        "start",
        str(QUICKSTART),
        "--json",
        env={"APPHOST_CONTAINER_RUNTIME": "docker", "DOCKER_HOST": "unix:///nonexistent.sock"},
    )
    assert done.returncode != 0
    assert done.stdout == ""
    reason = done.stderr.splitlines()[0]
    assert reason.startswith("apphost start: cache failed: APPHOST_CONTAINER_RUNTIME=docker")
    assert "unix:///nonexistent.sock" in reason
    assert "APPHOST_CONTAINER_RUNTIME=process" in reason  # how to get going anyway
    assert "Traceback" not in done.stderr


def test_explicit_docker_without_engine_raises_from_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("APPHOST_CONTAINER_RUNTIME", "docker")
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent.sock")
    host = AppHost(tmp_path / "noengine")
    with pytest.raises(ResourceStartError) as caught:
        host.start()
    message = str(caught.value)
    assert message.count("no docker engine answers") == 1
    assert "unix:///nonexistent.sock" in message


def test_auto_without_engine_falls_back_to_process_saying_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("APPHOST_CONTAINER_RUNTIME", "auto")
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent.sock")
    host = AppHost(tmp_path / "fallback")
    with host.start() as app:
        assert app.snapshots()[0].runtime == "process"
        client = _redis(*_cache(app))
        assert client.ping()
        client.close()
    out = capfd.readouterr().out
    why = [ln for ln in out.splitlines() if "no container engine answers" in ln]
    assert len(why) == 1, out
    assert "unix:///nonexistent.sock" in why[0] and "local processes" in why[0]


STOCK_MISSING = """
from apphost_sdk import DistributedApplication

builder = DistributedApplication.create_builder([])
# The stock image under a tag no machine has: what an offline engine meets with the default.
builder.add_redis("cache").with_image("{image}", "0.0-apphost-missing")
"""


def test_auto_with_an_engine_that_cannot_get_the_stock_image_falls_back_to_processes(
    tmp_path: Path,
    engine: Engine,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("APPHOST_CONTAINER_RUNTIME", "auto")
    path = write_file(
        tmp_path / "offline" / "apphost.py", STOCK_MISSING.format(image="docker.io/library/redis")
    )
    import runpy

    builder = runpy.run_path(str(path))["builder"]
    with builder.build().start(timeout=60) as app:
        assert app.snapshots()[0].runtime == "process"
        assert _redis(*_cache(app)).ping()
    out = capfd.readouterr().out
    assert "0.0-apphost-missing is not available locally" in out
    assert "cache run as local processes instead" in out


def test_a_custom_image_that_cannot_be_had_is_never_silently_replaced(
    tmp_path: Path, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("APPHOST_CONTAINER_RUNTIME", "auto")
    path = write_file(
        tmp_path / "custom" / "apphost.py", STOCK_MISSING.format(image="example.invalid/redis-mods")
    )
    import runpy

    builder = runpy.run_path(str(path))["builder"]
    with pytest.raises(ResourceStartError, match="with_image"):
        builder.build().start(timeout=60, quiet=True)
