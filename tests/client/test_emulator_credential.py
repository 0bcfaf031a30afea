"""The service side's emulator credential, against a tiny real token endpoint, and an Entra ID
login on a real redis-server whose ACL user ``<oid>`` has the issued token as password."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis.auth.token import JWToken

from apphost_sdk.caching import AsyncDistributedCache, DistributedCache
from apphost_sdk.errors import ConfigurationError
from apphost_sdk.hosting import HostApplicationBuilder
from apphost_sdk.hosting.azure_auth import REDIS_SCOPE, OneShotEntraCredentials
from apphost_sdk.hosting.emulator_credential import (
    EmulatorTokenCredential,
    EmulatorTokenError,
    credential_from_configuration,
)

from .conftest import TokenServer
from .redis_process import RedisProcess, free_port


def make_builder(environ: dict[str, str]) -> HostApplicationBuilder:
    return HostApplicationBuilder(
        environ=environ, content_root=Path("/nonexistent"), configure_logging=False
    )


def test_get_token_follows_the_endpoint_contract(token_server: TokenServer) -> None:
    credential = EmulatorTokenCredential(token_server.url + "/")
    before = int(time.time())
    token = credential.get_token(REDIS_SCOPE)
    assert token_server.requests == [{"scopes": [REDIS_SCOPE]}]
    assert token.token == token_server.issued[0]
    assert before + 3500 <= token.expires_on <= int(time.time()) + 3600
    assert token.token not in repr(token) and "***" in repr(token)
    parsed = JWToken(token.token)  # what redis-entraid does with it: alg "none" is accepted
    assert parsed.try_get("oid") == TokenServer.DEFAULT_OID
    assert parsed.try_get("aud") == "https://redis.azure.com"
    other = EmulatorTokenCredential(token_server.url, object_id="0000-other").get_token(REDIS_SCOPE)
    assert token_server.requests[-1] == {"scopes": [REDIS_SCOPE], "objectId": "0000-other"}
    assert JWToken(other.token).try_get("oid") == "0000-other"
    assert OneShotEntraCredentials(credential).get_credentials()[0] == TokenServer.DEFAULT_OID


@pytest.mark.parametrize("variable", ["HTTP_PROXY", "http_proxy", "ALL_PROXY"])
def test_proxy_variables_never_divert_the_loopback_emulator(
    token_server: TokenServer, monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.setenv(variable, "http://127.0.0.1:9")  # the discard port: nothing answers
    token = EmulatorTokenCredential(token_server.url, timeout=5).get_token(REDIS_SCOPE)
    assert token.token == token_server.issued[-1]


def test_unreachable_endpoint_is_a_clear_error() -> None:
    dead = free_port()
    credential = EmulatorTokenCredential(f"http://127.0.0.1:{dead}", timeout=2)
    with pytest.raises(EmulatorTokenError) as err:
        credential.get_token(REDIS_SCOPE)
    message = str(err.value)
    assert f"127.0.0.1:{dead}/_emulator/token" in message
    assert "Azure:ResourceManagerEndpoint" in message


def test_wrong_path_is_a_clear_error(token_server: TokenServer) -> None:
    with pytest.raises(EmulatorTokenError, match="answered 404"):
        EmulatorTokenCredential(token_server.url + "/elsewhere").get_token(REDIS_SCOPE)


@pytest.mark.parametrize(
    "endpoint",
    [
        "https://management.azure.com",
        "http://10.0.0.5:8080",
        "http://emulator.example.com:1234",
        "ftp://127.0.0.1:21",
        "127.0.0.1:8080",
    ],
)
def test_non_loopback_endpoint_is_refused(endpoint: str) -> None:
    with pytest.raises(ConfigurationError, match="Azure:ResourceManagerEndpoint"):
        EmulatorTokenCredential(endpoint)


@pytest.mark.parametrize("endpoint", ["http://127.0.0.1:1", "http://localhost:1", "http://[::1]:1"])
def test_loopback_endpoints_are_accepted(endpoint: str) -> None:
    assert EmulatorTokenCredential(endpoint).endpoint == endpoint


def test_configuration_selects_the_credential(token_server: TokenServer) -> None:
    def config(environ: dict[str, str]) -> object:
        return credential_from_configuration(make_builder(environ).configuration)

    assert config({}) is None
    assert config({"Azure__CredentialSource": "AzureCli"}) is None
    chosen = config(
        {"Azure__CredentialSource": "emulator", "Azure__ResourceManagerEndpoint": token_server.url}
    )
    assert isinstance(chosen, EmulatorTokenCredential) and chosen.endpoint == token_server.url
    with pytest.raises(ConfigurationError, match="needs Azure:ResourceManagerEndpoint"):
        config({"Azure__CredentialSource": "Emulator"})
    builder = make_builder(
        {
            "ConnectionStrings__cache": "127.0.0.1:6379",
            "Azure__CredentialSource": "Emulator",
            "Azure__ResourceManagerEndpoint": "https://management.azure.com/",
        }
    )
    with pytest.raises(ConfigurationError, match="loopback"):
        builder.add_redis_client("cache")


@pytest.fixture
def principal(redis_server: RedisProcess, token_server: TokenServer) -> Iterator[redis.Redis]:
    """Tokens the endpoint issues become passwords of their oid on the session's server."""
    admin = redis.Redis(host=redis_server.host, port=redis_server.port)

    def register(oid: str, token: str, _exp: int) -> None:
        admin.execute_command("ACL", "SETUSER", oid, "on", f">{token}", "~*", "&*", "+@all")

    token_server.on_issue = register
    yield admin
    admin.execute_command("ACL", "DELUSER", TokenServer.DEFAULT_OID)
    admin.close()


def test_entra_login_with_the_emulator_credential(
    redis_server: RedisProcess, token_server: TokenServer, principal: redis.Redis
) -> None:
    builder = make_builder(
        {
            "ConnectionStrings__cache": redis_server.connection_string,
            "Azure__CredentialSource": "Emulator",
            "Azure__ResourceManagerEndpoint": token_server.url,
        }
    )
    registration = builder.add_redis_distributed_cache("cache").with_azure_authentication()
    assert registration.uses_entra_id
    assert isinstance(registration.credential, EmulatorTokenCredential)
    with builder.build() as app:
        cache = app.services.get(DistributedCache)
        cache.set("emulated", b"entra")
        assert cache.get("emulated") == b"entra"
        assert cache.client.acl_whoami() in (
            TokenServer.DEFAULT_OID,
            TokenServer.DEFAULT_OID.encode(),
        )
    assert token_server.requests and token_server.requests[0]["scopes"] == [REDIS_SCOPE]
    for token in token_server.issued:
        assert token not in repr(registration)

    async def run() -> bytes | None:
        async with builder.build() as app:
            return await app.services.get(AsyncDistributedCache).get("emulated")

    assert asyncio.run(run()) == b"entra"


def test_a_token_of_an_unknown_principal_is_refused(
    redis_server: RedisProcess, token_server: TokenServer
) -> None:
    """Without an ACL user for the oid (no access policy assignment) the login fails."""
    builder = make_builder(
        {
            "ConnectionStrings__cache": redis_server.connection_string + ",connectRetry=0",
            "Azure__CredentialSource": "Emulator",
            "Azure__ResourceManagerEndpoint": token_server.url,
        }
    )
    builder.add_redis_client("cache").with_azure_authentication()
    with builder.build() as app:
        report = app.health.check()
    assert report.status.value == "Unhealthy"
    description = report.entries["StackExchange.Redis"].description or ""
    assert token_server.issued and token_server.issued[0] not in description
