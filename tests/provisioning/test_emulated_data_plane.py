"""The caches the provisioner creates on the ARM emulator really answer: real azure-mgmt clients
over HTTP provision them, real TLS redis-servers serve them, and clients reach them only as
Azure would let them (access keys, Entra ID tokens of granted principals), through the emulator
CA. The service side (``HostApplicationBuilder``) uses them as a service of the app host would,
and deleting a cache stops its servers."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis
import redis.asyncio.cluster as aiocluster
import redis.cluster
from azure.core.exceptions import HttpResponseError
from azure.mgmt.redis import models as classic_models
from azure.mgmt.redisenterprise import models as managed_models
from conftest import Emulator
from redis.backoff import NoBackoff
from redis.retry import Retry

from apphost_sdk.caching import AsyncDistributedCache, DistributedCache
from apphost_sdk.configuration import Configuration
from apphost_sdk.hosting import HealthStatus, HostApplicationBuilder
from apphost_sdk.hosting.asgi import cache_lifespan
from apphost_sdk.integrations.azure_data_plane import emulator_environment
from provisioning.arm import ArmClients, create_clients
from provisioning.credentials import (
    EMULATOR_OBJECT_ID,
    REDIS_SCOPE,
    EmulatorCredential,
    redis_credential,
)
from provisioning.managed_spec import ManagedRedisRequest, ManagedRedisSpec
from provisioning.outputs import CacheOutputs
from provisioning.provisioner import Provisioner
from provisioning.run_mode import provision_for_run
from provisioning.settings import ProvisioningSettings
from provisioning.spec import AzureRedisRequest

APP = "shop"
POLL = {"polling_interval": 0.05}
NO_RETRY = Retry(NoBackoff(), 0)  # a refused login or connection fails at once


def provision(
    emulator: Emulator, state_dir: Path, *requests: AzureRedisRequest | ManagedRedisRequest
) -> dict[str, CacheOutputs]:
    """Provision ``requests`` concurrently, as ``apphost run`` does."""
    return provision_for_run(list(requests), emulator.settings(), state_dir, APP, lambda *_: None)


def provision_with_keys(emulator: Emulator, state_dir: Path) -> tuple[CacheOutputs, CacheOutputs]:
    """A classic cache and a Managed Redis (OSS cluster, the default), both with access keys."""
    outputs = provision(
        emulator,
        state_dir,
        AzureRedisRequest("legacy", use_access_keys=True),
        ManagedRedisRequest("kv", use_access_keys=True),
    )
    return outputs["legacy"], outputs["kv"]


def arm(emulator: Emulator) -> tuple[str, ArmClients]:
    """The app's resource group and the real azure-mgmt clients, pointed at the emulator."""
    settings = ProvisioningSettings.from_configuration(emulator.settings(), APP)
    return settings.resource_group, create_clients(settings, EmulatorCredential())


def connect(emulator: Emulator, outputs: CacheOutputs, **kwargs: Any) -> redis.Redis:
    """A plain TLS client of the cache's host and port, trusting the emulator CA."""
    kwargs.setdefault("port", outputs.ssl_port)
    return redis.Redis(
        host=outputs.host_name,
        ssl=True,
        ssl_ca_certs=str(emulator.ca_file),
        socket_timeout=5,
        retry=NO_RETRY,
        **kwargs,
    )


def cluster_client(emulator: Emulator, outputs: CacheOutputs, **kwargs: Any) -> Any:
    """A Redis Cluster client that finds the nodes from the cache's single endpoint."""
    return redis.cluster.RedisCluster(
        host=outputs.host_name,
        port=outputs.ssl_port,
        ssl=True,
        ssl_ca_certs=str(emulator.ca_file),
        socket_timeout=5,
        **kwargs,
    )


def node_ports(emulator: Emulator, outputs: CacheOutputs, **auth: Any) -> list[int]:
    """The ports of the Managed Redis cluster's primaries (all on the cache's own address),
    asked as the ``auth`` (password, username) given."""
    cluster = cluster_client(emulator, outputs, **auth)
    try:
        primaries = cluster.get_primaries()
        assert {n.host for n in primaries} == {outputs.host_name}
        return sorted(n.port for n in primaries)
    finally:
        cluster.close()


def refused_login(client: redis.Redis) -> None:
    """Assert that ``client`` cannot log in (wrong, revoked or disabled credentials)."""
    try:
        with pytest.raises(redis.AuthenticationError):
            client.ping()
    finally:
        client.close()


def user_of(client: redis.Redis) -> str:
    """The ACL user the connection is authenticated as, from CLIENT INFO (the emulated caches
    deny ACL commands, ACL WHOAMI included, to data users)."""
    try:
        return str(client.client_info()["user"])
    finally:
        client.close()


def enterprise_cluster(spec: ManagedRedisSpec) -> None:
    """``configure_infrastructure`` callback: one endpoint that is not a Redis Cluster."""
    spec.clustering_policy = "EnterpriseCluster"


def test_access_keys_answer_over_verified_tls_and_follow_regeneration(
    emulator: Emulator, state_dir: Path
) -> None:
    assert emulator.ca_file is not None, emulator.data_plane_reason
    classic, managed = provision_with_keys(emulator, state_dir)
    assert (classic.ssl_port, managed.ssl_port) == (6380, 10000)
    assert managed.clustering_policy == "OSSCluster"
    for cache in (classic, managed):
        assert cache.host_name.startswith("127.") and cache.primary_key
    assert classic.host_name != managed.host_name

    # the classic cache: a single server answering on 6380 with the primary key
    client = connect(emulator, classic, password=classic.primary_key)
    assert client.set("greeting", "hello") and client.get("greeting") == b"hello"
    client.close()
    # the OSS cluster: 50 keys through one endpoint land on several nodes
    cluster = cluster_client(emulator, managed, password=managed.primary_key)
    try:
        for i in range(50):
            cluster.set(f"key-{i}", i)
        assert [cluster.get(f"key-{i}") for i in range(50)] == [b"%d" % i for i in range(50)]
        sizes = [n.redis_connection.dbsize() for n in cluster.get_primaries()]
    finally:
        cluster.close()
    assert len(sizes) == 3 and sum(sizes) == 50
    assert sum(1 for s in sizes if s > 0) > 1, sizes

    # without the emulator CA the certificate is not trusted
    for cache in (classic, managed):
        untrusted = redis.Redis(
            host=cache.host_name,
            port=cache.ssl_port,
            ssl=True,
            password=cache.primary_key,
            socket_timeout=5,
            retry=NO_RETRY,
        )
        with pytest.raises(redis.ConnectionError, match="certificate verify failed"):
            untrusted.ping()
        untrusted.close()

    # regenerating the primary key through the SDK: the old key is refused, the new one works
    group, clients = arm(emulator)
    try:
        old = classic.primary_key
        regenerated = clients.redis.redis.regenerate_key(
            group, classic.name, classic_models.RedisRegenerateKeyParameters(key_type="Primary")
        )
        listed = clients.redis.redis.list_keys(group, classic.name)
        assert regenerated.primary_key == listed.primary_key != old
        refused_login(connect(emulator, classic, password=old))
        assert connect(emulator, classic, password=listed.primary_key).get("greeting") == b"hello"

        ports = node_ports(emulator, managed, password=managed.primary_key)
        clients.enterprise.databases.begin_regenerate_key(
            group,
            managed.name,
            "default",
            managed_models.RegenerateKeyParameters(key_type="Primary"),
            **POLL,
        ).result()
        new = clients.enterprise.databases.list_keys(group, managed.name, "default").primary_key
        assert new != managed.primary_key
        for port in ports:  # every node of the cluster follows the key change
            refused_login(connect(emulator, managed, port=port, password=managed.primary_key))
            assert connect(emulator, managed, port=port, password=new).ping()
        cluster = cluster_client(emulator, managed, password=new)
        try:
            assert cluster.get("key-7") == b"7"
        finally:
            cluster.close()
    finally:
        clients.close()


def test_entra_id_tokens_of_the_granted_principal_only(emulator: Emulator, state_dir: Path) -> None:
    outputs = provision(
        emulator, state_dir, AzureRedisRequest("legacy"), ManagedRedisRequest("amr")
    )
    classic, managed = outputs["legacy"], outputs["amr"]
    for cache in (classic, managed):
        assert cache.primary_key is None and cache.principal_object_id == EMULATOR_OBJECT_ID
        assert cache.connection_string == f"{cache.host_name}:{cache.ssl_port},ssl=true"

    config = Configuration(
        {"Azure:CredentialSource": "Emulator", "Azure:ResourceManagerEndpoint": emulator.endpoint}
    )
    token = redis_credential(config, APP).get_token(REDIS_SCOPE).token
    entra = {"username": EMULATOR_OBJECT_ID, "password": token}
    assert user_of(connect(emulator, classic, **entra)) == EMULATOR_OBJECT_ID
    ports = node_ports(emulator, managed, **entra)
    assert len(ports) == 3 and managed.ssl_port in ports
    for port in ports:  # the principal is known on every node of the cluster
        assert user_of(connect(emulator, managed, port=port, **entra)) == EMULATOR_OBJECT_ID
    cluster = cluster_client(emulator, managed, **entra)
    try:
        cluster.set("entra", "yes")
        assert cluster.get("entra") == b"yes"
    finally:
        cluster.close()

    # a valid token of a principal without an access policy assignment is refused
    stranger = emulator.token(object_id="3c2b1a09-8f7e-4d6c-9b5a-41302f1e0d9c")
    assert stranger["objectId"] != EMULATOR_OBJECT_ID
    for cache in (classic, managed):
        refused_login(
            connect(
                emulator, cache, username=stranger["objectId"], password=stranger["accessToken"]
            )
        )
        # the granted principal's name with another principal's token is refused too
        refused_login(
            connect(emulator, cache, username=EMULATOR_OBJECT_ID, password=stranger["accessToken"])
        )
        # access keys are disabled: the default user is off, with or without a password
        refused_login(connect(emulator, cache))
        refused_login(connect(emulator, cache, password="any-key"))

    group, clients = arm(emulator)
    try:
        with pytest.raises(HttpResponseError, match="Access keys authentication is disabled"):
            clients.enterprise.databases.list_keys(group, managed.name, "default")
    finally:
        clients.close()


def service_builder(emulator: Emulator, outputs: CacheOutputs) -> HostApplicationBuilder:
    """A service's host, configured from the environment the app host gives a service that
    references ``outputs`` (its connection string and the emulator's ``Azure__*`` settings)."""
    environ = {
        "ConnectionStrings__cache": outputs.connection_string,
        **emulator_environment(emulator.settings()),
    }
    assert environ["Azure__CredentialSource"] == "Emulator"
    assert environ["Azure__Emulator__CaFile"] == str(emulator.ca_file)
    return HostApplicationBuilder(
        environ=environ, content_root=Path("/nonexistent"), configure_logging=False
    )


def test_service_side_uses_managed_redis_with_entra_id_in_both_clustering_policies(
    emulator: Emulator, state_dir: Path
) -> None:
    outputs = provision(
        emulator,
        state_dir,
        ManagedRedisRequest("amr"),
        ManagedRedisRequest("ent", infrastructure_callbacks=(enterprise_cluster,)),
    )
    oss, ent = outputs["amr"], outputs["ent"]
    assert (oss.clustering_policy, ent.clustering_policy) == ("OSSCluster", "EnterpriseCluster")

    builder = service_builder(emulator, oss)
    registration = builder.add_redis_distributed_cache("cache")
    assert registration.uses_entra_id and registration.uses_emulator_tls
    keys = [f"entry-{i}" for i in range(30)]
    with builder.build() as app:
        cache = app.services.get(DistributedCache)
        assert registration.cluster_enabled()
        assert isinstance(cache.client, redis.cluster.RedisCluster)
        for k in keys:
            cache.set(k, k.encode())
        assert [cache.get(k) for k in keys] == [k.encode() for k in keys]
        assert app.health.check().status is HealthStatus.HEALTHY

    async def run_async() -> tuple[list[bytes | None], HealthStatus, object]:
        app = builder.build()
        async with cache_lifespan(app)(None):
            cache = app.services.get(AsyncDistributedCache)
            for k in keys:
                await cache.set(f"async-{k}", b"twin")
            values = [await cache.get(f"async-{k}") for k in keys]
            values.append(await cache.get(keys[0]))  # written by the sync cache
            report = await app.health.check_async()
            return values, report.status, app.services.get(aioredis.Redis)

    values, status, async_client = asyncio.run(run_async())
    assert values == [b"twin"] * len(keys) + [keys[0].encode()]
    assert status is HealthStatus.HEALTHY
    assert isinstance(async_client, aiocluster.RedisCluster)

    # EnterpriseCluster: one endpoint that is not a Redis Cluster, so a plain client
    builder = service_builder(emulator, ent)
    plain = builder.add_redis_distributed_cache("cache")
    with builder.build() as app:
        cache = app.services.get(DistributedCache)
        assert not plain.cluster_enabled()
        assert type(cache.client) is redis.Redis
        for k in keys:
            cache.set(k, b"enterprise")
        assert cache.get_many(keys) == [b"enterprise"] * len(keys)
        assert cache.client.client_info()["user"] == EMULATOR_OBJECT_ID
        assert app.health.check().status is HealthStatus.HEALTHY


def test_destroy_stops_the_servers(emulator: Emulator, state_dir: Path) -> None:
    classic, managed = provision_with_keys(emulator, state_dir)
    assert managed.primary_key is not None
    endpoints = [(classic.host_name, 6380)] + [
        (managed.host_name, p) for p in node_ports(emulator, managed, password=managed.primary_key)
    ]
    for endpoint in endpoints:
        socket.create_connection(endpoint, timeout=5).close()

    settings = ProvisioningSettings.from_configuration(emulator.settings(), APP)
    provisioner = Provisioner(settings, state_dir, APP)
    try:
        assert sorted(provisioner.destroy()) == sorted([classic.name, managed.name])
    finally:
        provisioner.close()
    for endpoint in endpoints:
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(endpoint, timeout=5).close()
