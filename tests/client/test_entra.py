"""Entra ID token auth, against a local redis-server whose ACL user plays the principal."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
import redis
from azure.core.credentials import AccessToken

from apphost_sdk.caching import AsyncDistributedCache, DistributedCache
from apphost_sdk.hosting import HostApplicationBuilder
from apphost_sdk.hosting.azure_auth import REDIS_SCOPE

from .redis_process import RedisProcess

OID = "6c1f0e2a-0000-4000-8000-00000000beef"


class FakeCredential:
    """A TokenCredential issuing short-lived JWTs that Redis accepts as the OID's password."""

    def __init__(self, admin: redis.Redis, lifetime: int) -> None:
        self.admin = admin
        self.lifetime = lifetime
        self.issued: list[str] = []
        self.scopes: list[tuple[str, ...]] = []
        self._lock = threading.Lock()

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        with self._lock:
            expires = int(time.time()) + self.lifetime
            token = jwt.encode(
                {"oid": OID, "exp": expires, "n": len(self.issued)}, "k" * 32, algorithm="HS256"
            )
            self.admin.execute_command("ACL", "SETUSER", OID, f">{token}")
            self.issued.append(token)
            self.scopes.append(scopes)
            return AccessToken(token, expires)


@pytest.fixture
def principal(redis_server: RedisProcess) -> Iterator[redis.Redis]:
    admin = redis.Redis(host=redis_server.host, port=redis_server.port)
    admin.execute_command("ACL", "SETUSER", OID, "on", "resetpass", "~*", "&*", "+@all")
    yield admin
    admin.execute_command("ACL", "DELUSER", OID)
    admin.close()


def builder_for(redis_server: RedisProcess) -> HostApplicationBuilder:
    return HostApplicationBuilder(
        environ={"ConnectionStrings__cache": redis_server.connection_string},
        content_root=Path("/nonexistent"),
        configure_logging=False,
    )


def test_token_auth_and_refresh(redis_server: RedisProcess, principal: redis.Redis) -> None:
    credential = FakeCredential(principal, lifetime=3)
    builder = builder_for(redis_server)
    registration = builder.add_redis_distributed_cache("cache").with_azure_authentication(
        credential
    )
    assert registration.uses_entra_id
    with builder.build() as app:
        cache = app.services.get(DistributedCache)
        cache.set("k", b"v")
        assert cache.client.acl_whoami() in (OID, OID.encode())  # username = the token's oid claim
        assert credential.scopes[0] == (REDIS_SCOPE,)
        first = credential.issued[0]
        deadline = time.monotonic() + 8
        while len(credential.issued) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(credential.issued) >= 2, "token was not refreshed before expiry"
        principal.execute_command("ACL", "SETUSER", OID, f"<{first}")  # the old token stops working
        time.sleep(0.2)
        assert cache.get("k") == b"v"
        cache.client.connection_pool.disconnect()  # new connections use the new token
        assert cache.get("k") == b"v"
        assert app.health.check().status.value == "Healthy"
    assert first not in repr(registration)


def test_async_token_auth(redis_server: RedisProcess, principal: redis.Redis) -> None:
    credential = FakeCredential(principal, lifetime=3600)
    builder = builder_for(redis_server)
    builder.add_redis_distributed_cache("cache").with_azure_authentication(credential)

    async def run() -> tuple[bytes | None, Any]:
        async with builder.build() as app:
            cache = app.services.get(AsyncDistributedCache)
            await cache.set("k", b"async")
            return await cache.get("k"), await cache.client.acl_whoami()

    value, whoami = asyncio.run(run())
    assert value == b"async" and whoami in (OID, OID.encode())


def test_azure_host_without_password_uses_entra_id_and_tls() -> None:
    builder = HostApplicationBuilder(
        environ={"ConnectionStrings__cache": "mycache.redis.cache.windows.net"},
        content_root=Path("/nonexistent"),
        configure_logging=False,
    )
    registration = builder.add_redis_distributed_cache("cache")
    assert registration.uses_entra_id
    kwargs = registration.redis_kwargs()
    assert kwargs["ssl"] is True and kwargs["port"] == 6380
    assert "password" not in kwargs and kwargs["credential_provider"] is not None


def test_azure_access_key_does_not_use_entra_id() -> None:
    builder = HostApplicationBuilder(
        environ={"ConnectionStrings__cache": "c.redis.azure.net:6380,ssl=true,password=key123"},
        content_root=Path("/nonexistent"),
        configure_logging=False,
    )
    registration = builder.add_redis_client("cache")
    assert not registration.uses_entra_id
    assert registration.redis_kwargs()["password"] == "key123"
