"""The Docker runtime against a real engine, running Redis as the orchestrator specifies it
(``redis_spec``): security, ports, persistence, data, network, logs."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis

from apphost_sdk.errors import ResourceStartError
from apphost_sdk.integrations.redis import Persistence, redis_ping
from apphost_sdk.runtimes.base import ContainerSpec, MountSpec
from apphost_sdk.runtimes.docker_runtime import (
    APP_ID,
    CONFIG_HASH,
    CREATOR_PID,
    CREATOR_START,
    ENV_NAMES,
    HOST_PORT,
    LIFETIME,
    RESOURCE,
    SESSION,
    DockerHandle,
    DockerRuntime,
    network_name,
    process_start_time,
)
from apphost_sdk.runtimes.health import free_port

PASSWORD = "Sup3rSecretPassw0rdXYZ"
MakeRuntime = Callable[[], DockerRuntime]
MakeSpec = Callable[..., ContainerSpec]


def wait_healthy(handle: DockerHandle, password: str | None, timeout: float = 20.0) -> None:
    """Poll PING through the published port until it answers."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if redis_ping(handle.host, handle.host_port, password):
            return
        time.sleep(0.05)
    raise AssertionError(f"{handle.describe()} did not answer PING on port {handle.host_port}")


def client(handle: DockerHandle, password: str | None) -> redis.Redis:
    return redis.Redis(host=handle.host, port=handle.host_port, password=password)


def containers_of(api: Any, app_id: str) -> list[dict[str, Any]]:
    return list(api.containers(all=True, filters={"label": [f"{APP_ID}={app_id}"]}))


def ignore(stream: str, line: str) -> None:
    """A log sink that drops lines."""


def aliases_on_run_network(api: Any, spec: ContainerSpec, container_id: str) -> list[str] | None:
    """The container's DNS aliases on the run's network (None: not connected to it)."""
    networks = api.inspect_container(container_id)["NetworkSettings"]["Networks"]
    endpoint = networks.get(network_name(spec.app_id, spec.session_id))
    return None if endpoint is None else list(endpoint.get("Aliases") or [])


def test_password_only_in_env_never_in_args_or_labels(
    make_runtime: MakeRuntime, redis_spec: MakeSpec, api: Any
) -> None:
    spec = redis_spec(password=PASSWORD, environment={"TOKEN": "tok-value-123"})
    assert spec.environment == {"REDIS_PASSWORD": PASSWORD, "TOKEN": "tok-value-123"}
    handle = make_runtime().start(spec, ignore)
    wait_healthy(handle, PASSWORD)
    info = api.inspect_container(handle.container_id)
    visible = json.dumps(
        {
            "Args": info["Args"],
            "Cmd": info["Config"]["Cmd"],
            "Entrypoint": info["Config"]["Entrypoint"],
            "Path": info["Path"],
            "Labels": info["Config"]["Labels"],
            "Name": info["Name"],
        }
    )
    assert PASSWORD not in visible
    assert "tok-value-123" not in visible
    assert info["Path"] == "/bin/sh"
    assert info["Args"][0] == "-c"
    assert "--requirepass" in info["Args"][1]
    assert '"$REDIS_PASSWORD"' in info["Args"][1]
    assert f"REDIS_PASSWORD={PASSWORD}" in info["Config"]["Env"]
    # The password is required: without it Redis refuses, with it PING answers.
    assert not redis_ping(handle.host, handle.host_port, None)
    assert redis_ping(handle.host, handle.host_port, PASSWORD)


def test_labels_identify_app_resource_session_and_creator(
    make_runtime: MakeRuntime, redis_spec: MakeSpec, api: Any, app_id: str
) -> None:
    import os

    spec = redis_spec(environment={"B_VAR": "secret-b", "A_VAR": "secret-a"})
    handle = make_runtime().start(spec, ignore)
    labels = api.inspect_container(handle.container_id)["Config"]["Labels"]
    assert labels[APP_ID] == app_id
    assert labels[RESOURCE] == "cache"
    assert labels[SESSION] == spec.session_id
    assert labels[LIFETIME] == "session"
    assert labels[CONFIG_HASH] == spec.config_hash()
    assert labels[CREATOR_PID] == str(os.getpid())
    assert labels[CREATOR_START] == process_start_time(os.getpid()) != ""
    assert labels[ENV_NAMES] == "A_VAR,B_VAR"
    assert json.loads(labels[HOST_PORT]) == {"tcp": handle.host_port}
    assert "secret-a" not in json.dumps(labels)


def test_port_published_on_loopback_only(
    make_runtime: MakeRuntime, redis_spec: MakeSpec, api: Any
) -> None:
    handle = make_runtime().start(redis_spec(), ignore)
    wait_healthy(handle, None)
    bindings = api.inspect_container(handle.container_id)["HostConfig"]["PortBindings"]
    assert bindings == {"6379/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(handle.host_port)}]}


def test_fixed_port_is_used(make_runtime: MakeRuntime, redis_spec: MakeSpec) -> None:
    port = free_port()
    handle = make_runtime().start(redis_spec(host_port=port), ignore)
    assert handle.host_port == port
    wait_healthy(handle, None)


def test_taken_fixed_port_is_reported_before_create(
    make_runtime: MakeRuntime, redis_spec: MakeSpec, api: Any, app_id: str
) -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        with pytest.raises(ResourceStartError, match=rf"host port {port}\b.*with_host_port"):
            make_runtime().start(redis_spec(host_port=port), ignore)
    assert containers_of(api, app_id) == []


def test_failed_start_removes_the_created_container(
    make_runtime: MakeRuntime, redis_spec: MakeSpec, api: Any, app_id: str, tmp_path: Path
) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("a file cannot be mounted on /data")
    with pytest.raises(ResourceStartError, match=r"'cache'.*did not start"):
        make_runtime().start(redis_spec(bind_mount=str(not_a_dir)), ignore)
    assert containers_of(api, app_id) == []


def test_logs_are_streamed_line_by_line(make_runtime: MakeRuntime, redis_spec: MakeSpec) -> None:
    lines: list[tuple[str, str]] = []
    ready = threading.Event()

    def sink(stream: str, line: str) -> None:
        lines.append((stream, line))
        if "Ready to accept connections" in line:
            ready.set()

    handle = make_runtime().start(redis_spec(), sink)
    assert ready.wait(20), lines
    assert all("\n" not in line for _, line in lines)
    assert handle.exit_code() is None
    handle.stop(grace_seconds=5)
    assert handle.exit_code() == 0


def test_stop_removes_session_container_and_close_removes_network(
    make_runtime: MakeRuntime, redis_spec: MakeSpec, api: Any, app_id: str
) -> None:
    runtime = make_runtime()
    spec = redis_spec()
    handle = runtime.start(spec, ignore)
    # Created on the run's network under its resource name: resolvable from its first instant.
    assert "cache" in (aliases_on_run_network(api, spec, handle.container_id) or [])
    handle.stop(grace_seconds=5)
    assert containers_of(api, app_id) == []
    runtime.close()
    assert api.networks(filters={"label": [f"{APP_ID}={app_id}"]}) == []


def test_other_containers_reach_a_resource_by_name_on_the_run_network(
    make_runtime: MakeRuntime, redis_spec: MakeSpec
) -> None:
    runtime = make_runtime()
    session = "net" + "0" * 29
    primary = runtime.start(redis_spec(session_id=session), ignore)
    replica_spec = redis_spec(
        session_id=session, resource_name="replica", server_args=("--replicaof", "cache", "6379")
    )
    replica = runtime.start(replica_spec, ignore)
    wait_healthy(replica, None)
    client(primary, None).set("k", "through-dns")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if client(replica, None).get("k") == b"through-dns":
            break
        time.sleep(0.1)
    info = client(replica, None).info("replication")
    assert info["master_host"] == "cache"
    assert info["master_link_status"] == "up"


def test_data_volume_survives_stop_and_next_run(
    make_runtime: MakeRuntime, redis_spec: MakeSpec, api: Any
) -> None:
    spec = redis_spec(password=PASSWORD, data_volume="", persistence=Persistence(60, 1))
    first = make_runtime().start(spec, ignore)
    wait_healthy(first, PASSWORD)
    client(first, PASSWORD).set("kept", "yes")
    first.stop(grace_seconds=10)

    second_spec = redis_spec(password=PASSWORD, data_volume="", persistence=Persistence(60, 1))
    second = make_runtime().start(second_spec, ignore)
    assert second.container_id != first.container_id
    wait_healthy(second, PASSWORD)
    assert client(second, PASSWORD).get("kept") == b"yes"
    mounts = api.inspect_container(second.container_id)["Mounts"]
    assert [(m["Type"], m["Destination"]) for m in mounts] == [("volume", "/data")]


def test_bind_mount_keeps_data_on_the_host(
    make_runtime: MakeRuntime, redis_spec: MakeSpec, tmp_path: Path
) -> None:
    data = tmp_path / "redis-data"
    first = make_runtime().start(redis_spec(bind_mount=str(data)), ignore)
    wait_healthy(first, None)
    client(first, None).set("kept", "on-host")
    first.stop(grace_seconds=10)
    assert (data / "dump.rdb").exists()
    second = make_runtime().start(redis_spec(bind_mount=str(data)), ignore)
    wait_healthy(second, None)
    assert client(second, None).get("kept") == b"on-host"


def test_persistent_container_is_reused_across_runs(
    make_runtime: MakeRuntime, redis_spec: MakeSpec, api: Any, app_id: str
) -> None:
    first_spec = redis_spec(password=PASSWORD, lifetime="persistent")
    first = make_runtime().start(first_spec, ignore)
    wait_healthy(first, PASSWORD)
    client(first, PASSWORD).set("in-memory", "1")
    # Created on the default bridge (it outlives the run), then joined to the run's network.
    first.wait_attached()
    networks = api.inspect_container(first.container_id)["NetworkSettings"]["Networks"]
    assert "bridge" in networks
    assert "cache" in (aliases_on_run_network(api, first_spec, first.container_id) or [])

    # A second run while it is still running: the same container, untouched.
    running_spec = redis_spec(password=PASSWORD, lifetime="persistent")
    running = make_runtime().start(running_spec, ignore)
    assert running.reused
    assert (running.container_id, running.host_port) == (first.container_id, first.host_port)
    assert client(running, PASSWORD).get("in-memory") == b"1"

    # The end of a run leaves it running, as in Aspire (only detached from that run's
    # network); the next run reuses it as it is: same process, same port, nothing restarted.
    started_at = api.inspect_container(first.container_id)["State"]["StartedAt"]
    running.stop(grace_seconds=5)
    first.stop(grace_seconds=5)
    kept = containers_of(api, app_id)
    assert [c["State"] for c in kept] == ["running"]
    assert aliases_on_run_network(api, running_spec, running.container_id) is None
    again_spec = redis_spec(password=PASSWORD, lifetime="persistent")
    again = make_runtime().start(again_spec, ignore)
    assert again.reused
    assert (again.container_id, again.host_port) == (first.container_id, first.host_port)
    assert api.inspect_container(again.container_id)["State"]["StartedAt"] == started_at
    assert client(again, PASSWORD).get("in-memory") == b"1"
    again.wait_attached()
    assert "cache" in (aliases_on_run_network(api, again_spec, again.container_id) or [])
    again.stop(grace_seconds=5)

    # Stopped by someone else (`docker stop`, an engine restart): restarted, not recreated.
    api.stop(first.container_id, timeout=5)
    restarted_spec = redis_spec(password=PASSWORD, lifetime="persistent")
    restarted = make_runtime().start(restarted_spec, ignore)
    assert restarted.reused
    assert restarted.container_id == first.container_id
    assert restarted.host_port == first.host_port
    wait_healthy(restarted, PASSWORD)
    restarted.wait_attached()
    assert "cache" in (aliases_on_run_network(api, restarted_spec, restarted.container_id) or [])


def test_changed_configuration_recreates_and_says_what_changed(
    make_runtime: MakeRuntime, redis_spec: MakeSpec, announce: list[str], api: Any, app_id: str
) -> None:
    first = make_runtime().start(redis_spec(password=PASSWORD, lifetime="persistent"), ignore)
    wait_healthy(first, PASSWORD)
    changed_spec = redis_spec(
        password=PASSWORD, lifetime="persistent", server_args=("--maxmemory", "64mb")
    )
    second = make_runtime().start(changed_spec, ignore)
    assert second.container_id != first.container_id
    assert second.changed == ("args",)
    assert second.host_port == first.host_port  # the dynamic port is kept when still free
    assert any("configuration changed (args)" in line for line in announce), announce
    wait_healthy(second, PASSWORD)
    assert client(second, PASSWORD).config_get("maxmemory")["maxmemory"] == str(64 * 1024**2)
    assert [c["Id"] for c in containers_of(api, app_id)] == [second.container_id]
    new_password = redis_spec(password="An0therPassw0rd", lifetime="persistent")
    third = make_runtime().start(new_password, ignore)
    # The password lives in the environment: that is the setting named, never its value.
    assert set(third.changed) == {"args", "environment"}
    assert not any("An0therPassw0rd" in line or PASSWORD in line for line in announce)


def test_stopped_persistent_whose_dynamic_port_was_taken_moves_to_a_new_port(
    make_runtime: MakeRuntime, redis_spec: MakeSpec, announce: list[str], api: Any
) -> None:
    first = make_runtime().start(redis_spec(lifetime="persistent"), ignore)
    first.stop(grace_seconds=5)  # left running, holding its port
    api.stop(first.container_id, timeout=5)  # then stopped by someone else
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", first.host_port))
        squatter.listen()
        second = make_runtime().start(redis_spec(lifetime="persistent"), ignore)
    assert second.host_port != first.host_port
    assert second.changed == ("host port",)
    assert any(f"port {first.host_port}" in line for line in announce)
    wait_healthy(second, None)


def test_log_chunks_are_split_into_lines() -> None:
    from apphost_sdk.runtimes.docker_runtime import _lines

    chunks = [b"one\ntw", b"o\r\n", b"", b"three"]
    assert list(_lines(iter(chunks))) == ["one", "two", "three"]


def test_app_hosts_in_folders_of_the_same_name_share_no_container_or_volume(
    tmp_path: Path,
) -> None:
    from apphost_sdk.runtimes.docker_runtime import container_name, volume_name

    data = MountSpec(None, "/data")

    def spec(app_id: str) -> ContainerSpec:
        return ContainerSpec(
            app_id=app_id,
            app_name="quickstart",
            session_id="s" * 12,
            resource_name="cache",
            image="redis",
            tag="7",
            state_dir=tmp_path,
            mounts=(data,),
            lifetime="persistent",
        )

    a, b = spec("quickstart-1111111111"), spec("quickstart-2222222222")
    assert container_name(a) != container_name(b)
    assert volume_name(a, data) != volume_name(b, data)
    assert volume_name(a, data) == "quickstart-1111111111-cache-data"
    assert volume_name(a, MountSpec("named", "/data")) == "named"
