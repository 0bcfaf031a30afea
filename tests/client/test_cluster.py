"""The service side against a real Redis Cluster (Azure Managed Redis' OSSCluster policy), a
single endpoint, the emulator's CA, and Entra ID over every cluster node."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis
import redis.asyncio.cluster as aiocluster
import redis.cluster

from apphost_sdk.caching import (
    AsyncDistributedCache,
    DistributedCache,
    DistributedCacheEntryOptions,
)
from apphost_sdk.errors import ConfigurationError
from apphost_sdk.hosting import HealthStatus, HostApplicationBuilder
from apphost_sdk.hosting.asgi import cache_lifespan

from .conftest import TokenServer
from .redis_cluster import RedisClusterProcess, TlsFiles
from .redis_process import RedisProcess

KEYS = [f"key-{i}" for i in range(120)]
SLIDING = DistributedCacheEntryOptions(sliding_expiration=timedelta(minutes=5))


def make_builder(environ: dict[str, str]) -> HostApplicationBuilder:
    return HostApplicationBuilder(
        environ=environ, content_root=Path("/nonexistent"), configure_logging=False
    )


@pytest.fixture
def cluster(redis_cluster: RedisClusterProcess) -> RedisClusterProcess:
    redis_cluster.each_node("FLUSHALL")
    return redis_cluster


def spread(cluster: RedisClusterProcess) -> set[int]:
    """The nodes (by slot range) that KEYS fall on: more than one, or the test proves little."""
    slots = {redis.cluster.key_slot(k.encode()) for k in KEYS}
    return {s * len(cluster.ports) // 16384 for s in slots}


def test_sync_cache_and_client_over_cluster(cluster: RedisClusterProcess) -> None:
    assert len(spread(cluster)) == 3
    builder = make_builder({"ConnectionStrings__cache": cluster.connection_string})
    registration = builder.add_redis_distributed_cache("cache")
    with builder.build() as app:
        client = app.services.get(redis.Redis)
        assert isinstance(client, redis.cluster.RedisCluster)
        assert app.services.get(redis.cluster.RedisCluster) is client
        assert registration.cluster_enabled()
        cache = app.services.get(DistributedCache)
        assert cache.client is client
        for k in KEYS:
            cache.set(k, k.encode(), SLIDING)
        assert [cache.get(k) for k in KEYS] == [k.encode() for k in KEYS]
        cache.set_many({f"m-{k}": b"many" for k in KEYS})
        assert cache.get_many([f"m-{k}" for k in KEYS]) == [b"many"] * len(KEYS)
        assert cache.get_many(["nope", KEYS[0]]) == [None, KEYS[0].encode()]
        assert cache.add("added", b"1") and not cache.add("added", b"2")
        cache.refresh(KEYS[3])
        cache.remove(KEYS[3])
        assert cache.get(KEYS[3]) is None
        assert 0 < client.ttl(KEYS[4]) <= 300
        assert app.health.check().status is HealthStatus.HEALTHY
        # every node holds some of the keys: the client followed the slots, no MOVED
        for i in range(3):
            with cluster.node(i) as node:
                assert node.dbsize() > 0


def test_async_cache_over_cluster(cluster: RedisClusterProcess) -> None:
    builder = make_builder({"ConnectionStrings__cache": cluster.connection_string})
    builder.add_keyed_redis_distributed_cache("cache")

    async def run() -> tuple[list[bytes | None], list[bytes | None], Any]:
        app = builder.build()
        async with cache_lifespan(app)(None):  # asks the server off the event loop
            client = app.services.get_keyed(aioredis.Redis, "cache")
            assert isinstance(client, aiocluster.RedisCluster)
            assert app.services.get_keyed(aiocluster.RedisCluster, "cache") is client
            cache = app.services.get_keyed(AsyncDistributedCache, "cache")
            for k in KEYS:
                await cache.set(k, k.encode(), SLIDING)
            values = [await cache.get(k) for k in KEYS]
            await cache.set_many([(f"m-{k}", b"m") for k in KEYS])
            many = await cache.get_many([f"m-{k}" for k in KEYS])
            assert await cache.add("a", b"1") and not await cache.add("a", b"2")
            await cache.refresh(KEYS[0])
            await cache.remove(KEYS[0])
            assert await cache.get(KEYS[0]) is None
            report = await app.health.check_async()
            return values, many, report

    values, many, report = asyncio.run(run())
    assert values == [k.encode() for k in KEYS]
    assert many == [b"m"] * len(KEYS)
    assert report.status is HealthStatus.HEALTHY


@pytest.fixture
def noscript(cluster: RedisClusterProcess) -> Iterator[str]:
    """A user on every node who may not run scripts (the MULTI/WATCH fallbacks run)."""
    cluster.each_node(
        "ACL", "SETUSER", "noscript", "on", ">ns-pw", "~*", "&*", "+@all", "-@scripting"
    )
    yield f"{cluster.host}:{cluster.port},user=noscript,password=ns-pw"
    cluster.each_node("ACL", "DELUSER", "noscript")


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_cache_without_scripting_over_cluster(noscript: str, kind: str) -> None:
    builder = make_builder({"ConnectionStrings__cache": noscript})
    builder.add_redis_distributed_cache("cache")
    app = builder.build()

    async def run_async() -> list[Any]:
        cache = app.services.get(AsyncDistributedCache)
        try:
            await cache.set("s", b"v", SLIDING)
            added = [await cache.add("n", b"1", SLIDING), await cache.add("n", b"2", SLIDING)]
            return [await cache.get("s"), cache.uses_scripts, *added, await cache.get("n")]
        finally:
            await app.aclose()

    if kind == "async":
        result = asyncio.run(run_async())
    else:
        with app:
            cache = app.services.get(DistributedCache)
            cache.set("s", b"v", SLIDING)
            added = [cache.add("n", b"1", SLIDING), cache.add("n", b"2", SLIDING)]
            result = [cache.get("s"), cache.uses_scripts, *added, cache.get("n")]
    assert result == [b"v", False, True, False, b"1"]


def test_standalone_mode_against_a_cluster_is_a_clear_error(
    cluster: RedisClusterProcess,
) -> None:
    builder = make_builder(
        {
            "ConnectionStrings__cache": cluster.connection_string,
            "Aspire__StackExchange__Redis__cache__ClusterMode": "Standalone",
        }
    )
    builder.add_redis_distributed_cache("cache")
    with builder.build() as app, pytest.raises(ConfigurationError) as err:
        app.services.get(DistributedCache)
    message = str(err.value)
    assert "Aspire:StackExchange:Redis:cache:ClusterMode" in message and "MOVED" in message
    assert cluster.password not in message


def test_auto_mode_against_plain_redis_gives_a_plain_client(redis_server: RedisProcess) -> None:
    builder = make_builder({"ConnectionStrings__cache": redis_server.connection_string})
    registration = builder.add_redis_distributed_cache("cache")
    with builder.build() as app:
        client = app.services.get(redis.Redis)
        assert type(client) is redis.Redis and not registration.cluster_enabled()
        with pytest.raises(LookupError, match="not a Redis Cluster"):
            app.services.get(redis.cluster.RedisCluster)
        cache = app.services.get(DistributedCache)
        cache.set("plain", b"1")
        assert cache.get("plain") == b"1"


def test_cluster_mode_against_plain_redis_is_a_clear_error(redis_server: RedisProcess) -> None:
    builder = make_builder(
        {
            "ConnectionStrings__cache": redis_server.connection_string,
            "Aspire__StackExchange__Redis__ClusterMode": "cluster",
        }
    )
    builder.add_redis_client("cache")
    with builder.build() as app, pytest.raises(ConfigurationError, match="ClusterMode"):
        app.services.get(redis.Redis)


def test_explicit_cluster_mode_and_bad_values(cluster: RedisClusterProcess) -> None:
    builder = make_builder(
        {
            "ConnectionStrings__cache": cluster.connection_string,
            "Aspire__StackExchange__Redis__cache__ClusterMode": "cluster",
        }
    )
    builder.add_redis_client("cache")
    with builder.build() as app:
        assert app.services.get(redis.Redis).ping()
    bad = make_builder(
        {
            "ConnectionStrings__cache": cluster.connection_string,
            "Aspire__StackExchange__Redis__cache__ClusterMode": "sharded",
        }
    )
    with pytest.raises(ConfigurationError, match=r"cache:ClusterMode must be one of auto"):
        bad.add_redis_client("cache")
    db = make_builder(
        {"ConnectionStrings__cache": cluster.connection_string + ",defaultDatabase=2"}
    )
    db.add_redis_client("cache")
    with db.build() as app, pytest.raises(ConfigurationError, match="only database 0"):
        app.services.get(redis.Redis)


def test_unreachable_cluster_mode_detection_is_retried() -> None:
    from .redis_process import free_port

    dead = free_port()
    builder = make_builder(
        {"ConnectionStrings__cache": f"127.0.0.1:{dead},connectTimeout=200,connectRetry=0"}
    )
    registration = builder.add_redis_distributed_cache("cache")
    app = builder.build()  # auto activation is off by default: nothing connects yet
    report = app.health.check()
    assert report.status is HealthStatus.UNHEALTHY
    assert "ConnectionError" in (report.entries["StackExchange.Redis"].description or "")
    assert registration._cluster is None  # not decided: the next creation asks again
    app.close()


# -- the emulator's CA ----------------------------------------------------------------------
def emulator_environ(cluster: RedisClusterProcess, tls: TlsFiles, **extra: str) -> dict[str, str]:
    return {
        "ConnectionStrings__cache": cluster.connection_string,
        "Azure__Emulator__CaFile": str(tls.ca_file),
        **extra,
    }


def test_tls_cluster_trusts_the_emulator_ca_on_loopback(
    tls_cluster: RedisClusterProcess, cluster_tls: TlsFiles
) -> None:
    builder = make_builder(emulator_environ(tls_cluster, cluster_tls))
    registration = builder.add_redis_distributed_cache("cache")
    kwargs = registration.redis_kwargs()
    assert kwargs["ssl_ca_certs"] == str(cluster_tls.ca_file.resolve())
    assert kwargs.get("ssl_cert_reqs", "required") == "required"
    assert not registration.uses_entra_id  # a password: access keys, not Entra ID
    with builder.build() as app:
        cache = app.services.get(DistributedCache)
        assert isinstance(cache.client, redis.cluster.RedisCluster)
        for k in KEYS[:40]:
            cache.set(k, b"tls")
        assert cache.get_many(KEYS[:40]) == [b"tls"] * 40
        assert app.health.check().status is HealthStatus.HEALTHY


def test_tls_cluster_without_the_ca_is_not_trusted(tls_cluster: RedisClusterProcess) -> None:
    cs = tls_cluster.connection_string + ",connectRetry=0"
    builder = make_builder({"ConnectionStrings__cache": cs})
    builder.add_redis_client("cache")
    with builder.build() as app:
        report = app.health.check()
    assert report.status is HealthStatus.UNHEALTHY
    assert "certificate" in (report.entries["StackExchange.Redis"].description or "").casefold()


@pytest.mark.parametrize(
    "connection_string",
    [
        "mycache.westeurope.redis.azure.net:10000,ssl=true",
        "mycache.redis.cache.windows.net:6380,ssl=true,password=key",
        "10.1.2.3:6380,ssl=true,password=key",
        "redis.example.com:6380,ssl=true,password=key",
    ],
)
def test_emulator_ca_is_never_used_for_other_hosts(
    cluster_tls: TlsFiles, connection_string: str
) -> None:
    builder = make_builder(
        {
            "ConnectionStrings__cache": connection_string,
            "Azure__Emulator__CaFile": str(cluster_tls.ca_file),
        }
    )
    registration = builder.add_redis_client("cache")
    assert not registration.uses_emulator_tls
    assert "ssl_ca_certs" not in registration._base_kwargs(False)


def test_emulator_ca_needs_tls_and_makes_loopback_azure(cluster_tls: TlsFiles) -> None:
    environ = {"Azure__Emulator__CaFile": str(cluster_tls.ca_file)}
    plain = make_builder({**environ, "ConnectionStrings__cache": "127.0.0.1:6379"})
    registration = plain.add_redis_client("cache")
    assert not registration.uses_emulator_tls and not registration.uses_entra_id
    tls = make_builder({**environ, "ConnectionStrings__cache": "127.0.0.7:10000,ssl=true"})
    registration = tls.add_redis_client("cache")
    assert registration.uses_emulator_tls and registration.is_azure and registration.uses_entra_id


@pytest.mark.parametrize("content", [None, "not a certificate"])
def test_bad_emulator_ca_file_names_the_key(tmp_path: Path, content: str | None) -> None:
    path = tmp_path / "ca.pem"
    if content is not None:
        path.write_text(content)
    builder = make_builder(
        {
            "ConnectionStrings__cache": "127.0.0.1:10000,ssl=true",
            "Azure__Emulator__CaFile": str(path),
        }
    )
    with pytest.raises(ConfigurationError, match="Azure:Emulator:CaFile"):
        builder.add_redis_client("cache")


# -- Entra ID with the emulator credential, over every node ---------------------------------
@pytest.fixture
def entra_cluster(
    tls_cluster: RedisClusterProcess, token_server: TokenServer
) -> Iterator[RedisClusterProcess]:
    """Every token the endpoint issues becomes the password of its oid on every node."""

    def register(oid: str, token: str, _exp: int) -> None:
        tls_cluster.each_node("ACL", "SETUSER", oid, "on", f">{token}", "~*", "&*", "+@all")

    token_server.on_issue = register
    tls_cluster.each_node("FLUSHALL")
    yield tls_cluster
    tls_cluster.each_node("ACL", "DELUSER", TokenServer.DEFAULT_OID)


def entra_environ(
    cluster: RedisClusterProcess, tls: TlsFiles, server: TokenServer
) -> dict[str, str]:
    return {
        "ConnectionStrings__cache": f"{cluster.host}:{cluster.port},ssl=true",  # no password
        "Azure__Emulator__CaFile": str(tls.ca_file),
        "Azure__CredentialSource": "Emulator",
        "Azure__ResourceManagerEndpoint": server.url,
    }


def test_entra_id_with_the_emulator_credential_over_a_tls_cluster(
    entra_cluster: RedisClusterProcess, cluster_tls: TlsFiles, token_server: TokenServer
) -> None:
    builder = make_builder(entra_environ(entra_cluster, cluster_tls, token_server))
    registration = builder.add_redis_distributed_cache("cache")
    assert registration.uses_entra_id
    with builder.build() as app:
        cache = app.services.get(DistributedCache)
        client = cache.client
        assert isinstance(client, redis.cluster.RedisCluster)
        for k in KEYS:
            cache.set(k, b"entra", SLIDING)
        assert cache.get_many(KEYS) == [b"entra"] * len(KEYS)
        whoami = client.execute_command(
            "ACL WHOAMI", target_nodes=redis.cluster.RedisCluster.ALL_NODES
        )
        assert set(whoami.values()) <= {TokenServer.DEFAULT_OID, TokenServer.DEFAULT_OID.encode()}
        assert len(whoami) == 3
        assert app.health.check().status is HealthStatus.HEALTHY
    assert token_server.requests[0]["scopes"] == ["https://redis.azure.com/.default"]
    for token in token_server.issued:
        assert token not in repr(registration)


def test_async_entra_id_over_a_tls_cluster(
    entra_cluster: RedisClusterProcess, cluster_tls: TlsFiles, token_server: TokenServer
) -> None:
    builder = make_builder(entra_environ(entra_cluster, cluster_tls, token_server))
    builder.add_redis_distributed_cache("cache")

    async def run() -> tuple[list[bytes | None], Any]:
        app = builder.build()
        async with cache_lifespan(app)(None):
            cache = app.services.get(AsyncDistributedCache)
            for k in KEYS[:60]:
                await cache.set(k, b"a-entra")
            values = [await cache.get(k) for k in KEYS[:60]]
            return values, await cache.client.acl_whoami()

    values, whoami = asyncio.run(run())
    assert values == [b"a-entra"] * 60
    assert whoami in (TokenServer.DEFAULT_OID, TokenServer.DEFAULT_OID.encode())


def test_from_connection_string_asks_the_server(
    cluster: RedisClusterProcess, redis_server: RedisProcess
) -> None:
    with DistributedCache.from_connection_string(cluster.connection_string) as cache:
        assert isinstance(cache.client, redis.cluster.RedisCluster)
        cache.set_many({k: b"fcs" for k in KEYS})
        assert cache.get_many(KEYS) == [b"fcs"] * len(KEYS)
    with DistributedCache.from_connection_string(redis_server.connection_string) as plain:
        assert type(plain.client) is redis.Redis
    with pytest.raises(ConfigurationError, match="not a Redis Cluster"):
        DistributedCache.from_connection_string(redis_server.connection_string, cluster=True)

    async def run() -> list[bytes | None]:
        cache = AsyncDistributedCache.from_connection_string(cluster.connection_string)
        async with cache:
            assert isinstance(cache.client, aiocluster.RedisCluster)
            return [await cache.get(k) for k in KEYS[:20]]

    assert asyncio.run(run()) == [b"fcs"] * 20


def test_django_backend_over_cluster(cluster: RedisClusterProcess) -> None:
    from apphost_sdk.caching.django import RedisDistributedCache

    backend = RedisDistributedCache(cluster.connection_string, {"KEY_PREFIX": "dj"})
    try:
        backend.set_many({k: {"v": k} for k in KEYS})
        assert backend.get_many(KEYS[:30]) == {k: {"v": k} for k in KEYS[:30]}
        backend.delete_many(KEYS[:60])
        assert backend.get(KEYS[0]) is None and backend.get(KEYS[90]) == {"v": KEYS[90]}
        backend.clear()
        assert backend.get(KEYS[90]) is None
    finally:
        backend.close()
