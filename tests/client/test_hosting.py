"""HostApplicationBuilder: configuration binding, keyed services, health checks, activation."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis

from apphost_sdk.caching import AsyncDistributedCache, DistributedCache
from apphost_sdk.errors import ConfigurationError
from apphost_sdk.hosting import HealthStatus, HostApplicationBuilder, RedisSettings

from .redis_process import RedisProcess, free_port

SECRET = "Hunter2Hunter2xyz"


def make_builder(
    environ: dict[str, str], args: list[str] | None = None, root: Path | None = None
) -> HostApplicationBuilder:
    return HostApplicationBuilder(
        args, environ=environ, content_root=root or Path("/nonexistent"), configure_logging=False
    )


def test_distributed_cache_from_injected_connection_string(
    redis_server: RedisProcess, raw: redis.Redis
) -> None:
    builder = make_builder({"ConnectionStrings__cache": redis_server.connection_string})
    builder.add_redis_distributed_cache("cache")
    with builder.build() as app:
        cache = app.services.get(DistributedCache)
        assert app.services.get(DistributedCache) is cache  # singleton
        cache.set("k", b"v")
        assert raw.hget("k", "data") == b"v"
        assert app.services.get(redis.Redis) is cache.client


def test_configuration_precedence(tmp_path: Path, redis_server: RedisProcess) -> None:
    (tmp_path / "appsettings.json").write_text(
        json.dumps(
            {
                "Aspire": {
                    "StackExchange": {
                        "Redis": {
                            "DisableTracing": True,
                            "InstanceName": "general:",
                            "ConnectionString": "wrong:1",
                            "cache": {"InstanceName": "named:", "DisableHealthChecks": True},
                        }
                    }
                }
            }
        )
    )
    environ = {
        "Aspire__StackExchange__Redis__cache__DisableHealthChecks": "false",
        "ConnectionStrings__cache": redis_server.connection_string,
    }
    seen: list[RedisSettings] = []
    builder = make_builder(
        environ, ["--Aspire:StackExchange:Redis:cache:DisableAutoActivation=false"], tmp_path
    )
    registration = builder.add_redis_distributed_cache("cache", configure_settings=seen.append)
    settings = registration.settings
    assert settings.connection_string == redis_server.connection_string  # ConnectionStrings wins
    assert settings.instance_name == "named:"  # named section over general
    assert settings.disable_tracing is True  # general section applies to every name
    assert settings.disable_health_checks is False  # environment over appsettings.json
    assert settings.disable_auto_activation is False  # command line
    assert seen == [settings]
    assert builder.health.names == ["StackExchange.Redis"]


def test_settings_callback_runs_last(redis_server: RedisProcess) -> None:
    def configure(settings: RedisSettings) -> None:
        settings.connection_string = redis_server.connection_string
        settings.instance_name = "cb:"

    builder = make_builder({"ConnectionStrings__cache": "elsewhere:1"})
    registration = builder.add_redis_distributed_cache("cache", configure_settings=configure)
    assert registration.options.endpoints[0].port == redis_server.port
    assert builder.build().services.get(DistributedCache).instance_name == "cb:"


def test_missing_connection_string_names_both_keys() -> None:
    with pytest.raises(ConfigurationError) as info:
        make_builder({}).add_redis_distributed_cache("cache")
    assert "ConnectionStrings:cache" in str(info.value)
    assert "Aspire:StackExchange:Redis:cache:ConnectionString" in str(info.value)


def test_connection_string_with_no_endpoint() -> None:
    with pytest.raises(ConfigurationError, match="no endpoint"):
        make_builder({"ConnectionStrings__cache": f"password={SECRET}"}).add_redis_client("cache")


def test_secrets_stay_out_of_reprs_and_errors(redis_server: RedisProcess) -> None:
    builder = make_builder(
        {"ConnectionStrings__cache": f"127.0.0.1:{redis_server.port},password={SECRET}"}
    )
    registration = builder.add_redis_distributed_cache("cache")
    assert SECRET not in repr(registration) + repr(registration.settings) + repr(
        registration.options
    )
    with pytest.raises(ConfigurationError) as info:
        make_builder({"ConnectionStrings__cache": f"h,pasword={SECRET}"}).add_redis_client("cache")
    assert SECRET not in str(info.value)


def test_configuration_options_section_and_callback(redis_server: RedisProcess) -> None:
    environ = {
        "ConnectionStrings__cache": redis_server.connection_string,
        "Aspire__StackExchange__Redis__ConfigurationOptions__ConnectTimeout": "1234",
        "Aspire__StackExchange__Redis__cache__ConfigurationOptions__ClientName": "orders",
    }
    builder = make_builder(environ)
    registration = builder.add_redis_client(
        "cache", configure_options=lambda o: o.with_values({"defaultDatabase": "2"})
    )
    options = registration.options
    assert (options.connect_timeout, options.name, options.default_database) == (1234, "orders", 2)
    assert options.abort_connect is False  # Aspire's default
    with builder.build() as app:
        client = app.services.get(redis.Redis)
        assert client.client_getname() == "orders"
        assert client.connection_pool.connection_kwargs["db"] == 2


def test_keyed_caches_are_really_keyed(redis_server: RedisProcess, raw: redis.Redis) -> None:
    environ = {
        "ConnectionStrings__chat": redis_server.connection_string,
        "ConnectionStrings__orders": redis_server.connection_string,
        "Aspire__StackExchange__Redis__chat__InstanceName": "chat:",
        "Aspire__StackExchange__Redis__orders__InstanceName": "orders:",
    }
    builder = make_builder(environ)
    builder.add_keyed_redis_distributed_cache("chat")
    builder.add_keyed_redis_distributed_cache("orders")
    assert builder.health.names == ["StackExchange.Redis_chat", "StackExchange.Redis_orders"]
    with builder.build() as app:
        chat = app.services.get_keyed(DistributedCache, "chat")
        orders = app.services.get_keyed(DistributedCache, "orders")
        assert chat is not orders
        chat.set("k", b"c")
        orders.set("k", b"o")
        assert raw.hget("chat:k", "data") == b"c" and raw.hget("orders:k", "data") == b"o"
        with pytest.raises(LookupError, match="DistributedCache"):
            app.services.get(DistributedCache)  # Aspire's defect (an unkeyed cache) not copied
        assert isinstance(app.services.get_keyed(redis.Redis, "chat"), redis.Redis)


def test_second_unkeyed_connection_is_refused(redis_server: RedisProcess) -> None:
    environ = {
        "ConnectionStrings__a": redis_server.connection_string,
        "ConnectionStrings__b": redis_server.connection_string,
    }
    builder = make_builder(environ)
    first = builder.add_redis_client("a")
    assert (
        builder.add_redis_distributed_cache("a") is first
    )  # client then cache share one connection
    with pytest.raises(ConfigurationError, match="keyed"):
        builder.add_redis_distributed_cache("b")


def test_second_registration_warns_that_its_callbacks_are_ignored(
    redis_server: RedisProcess, caplog: pytest.LogCaptureFixture
) -> None:
    connection = f"127.0.0.1:{redis_server.port},password={SECRET}"
    builder = make_builder({"ConnectionStrings__cache": connection})
    first = builder.add_redis_client("cache")
    with caplog.at_level(logging.WARNING, logger="apphost_sdk.hosting"):
        assert builder.add_redis_distributed_cache("cache") is first
        assert not caplog.records  # no callbacks: nothing dropped, nothing said
        again = builder.add_redis_distributed_cache(
            "cache", configure_options=lambda o: o.with_values({"defaultDatabase": "3"})
        )
    assert again is first and first.options.default_database is None
    assert len(caplog.records) == 1
    assert "cache" in caplog.text and "ignored" in caplog.text
    assert SECRET not in caplog.text


def test_services_resolve_keyed_and_unkeyed(redis_server: RedisProcess) -> None:
    environ = {
        "ConnectionStrings__a": redis_server.connection_string,
        "ConnectionStrings__b": redis_server.connection_string,
    }
    builder = make_builder(environ)
    builder.add_redis_client("a")
    builder.add_keyed_redis_client("b")
    with builder.build() as app:
        assert app.services.resolve(redis.Redis) is app.services.get(redis.Redis)
        keyed = app.services.resolve(redis.Redis, "b")
        assert keyed is app.services.get_keyed(redis.Redis, "b")
        assert keyed is not app.services.get(redis.Redis)
        with pytest.raises(LookupError, match="Redis with key 'c'"):
            app.services.resolve(redis.Redis, "c")


def test_health_checks(redis_server: RedisProcess) -> None:
    dead = free_port()
    environ = {
        "ConnectionStrings__cache": redis_server.connection_string,
        "ConnectionStrings__dead": f"127.0.0.1:{dead},connectTimeout=200",
    }
    builder = make_builder(environ)
    builder.add_redis_distributed_cache("cache")
    builder.add_keyed_redis_client("dead")
    app = builder.build()
    report = app.health.check()
    assert report.entries["StackExchange.Redis"].status is HealthStatus.HEALTHY
    assert report.entries["StackExchange.Redis_dead"].status is HealthStatus.UNHEALTHY
    assert "ConnectionError" in (report.entries["StackExchange.Redis_dead"].description or "")
    assert report.status is HealthStatus.UNHEALTHY

    async def run() -> Any:
        try:
            return await app.health.check_async()
        finally:
            await app.aclose()

    async_report = asyncio.run(run())
    assert async_report.to_dict()["checks"]["StackExchange.Redis"]["status"] == "Healthy"
    assert async_report.status is HealthStatus.UNHEALTHY


def test_disable_health_checks_and_tracing(redis_server: RedisProcess) -> None:
    environ = {
        "ConnectionStrings__cache": redis_server.connection_string,
        "Aspire__StackExchange__Redis__DisableHealthChecks": "true",
        "Aspire__StackExchange__Redis__DisableTracing": "true",
    }
    builder = make_builder(environ)
    builder.add_redis_distributed_cache("cache")
    assert builder.health.names == []
    with builder.build() as app:
        assert app.services.get(DistributedCache)._tracer is None
    traced = make_builder({"ConnectionStrings__cache": redis_server.connection_string})
    traced.add_redis_distributed_cache("cache")
    assert traced.tracing_enabled
    with traced.build() as app:
        assert app.services.get(DistributedCache)._tracer is not None


def test_auto_activation(caplog: pytest.LogCaptureFixture) -> None:
    dead = free_port()
    environ = {
        "ConnectionStrings__cache": f"127.0.0.1:{dead},connectTimeout=200,password={SECRET}",
        "Aspire__StackExchange__Redis__DisableAutoActivation": "false",
    }
    builder = make_builder(environ)
    builder.add_redis_client("cache")
    with caplog.at_level(logging.WARNING), builder.build():
        pass
    assert "not reachable" in caplog.text and SECRET not in caplog.text
    strict = make_builder(
        {**environ, "ConnectionStrings__cache": f"127.0.0.1:{dead},abortConnect=true"}
    )
    strict.add_redis_client("cache")
    with pytest.raises(redis.ConnectionError):
        strict.build()


def test_async_cache_from_services(redis_server: RedisProcess, raw: redis.Redis) -> None:
    builder = make_builder({"ConnectionStrings__cache": redis_server.connection_string})
    builder.add_redis_distributed_cache("cache")

    async def run() -> bytes | None:
        async with builder.build() as app:
            cache = app.services.get(AsyncDistributedCache)
            assert app.services.get(aioredis.Redis) is cache.client
            await cache.set("k", b"async")
            return await cache.get("k")

    assert asyncio.run(run()) == b"async"


def test_layered_configuration_and_logging(tmp_path: Path) -> None:
    (tmp_path / "appsettings.json").write_text(
        '{"Logging": {"LogLevel": {"apphost.test": "Error"}}, "A": "json"}'
    )
    (tmp_path / "appsettings.Staging.json").write_text('{"A": "staging", "B": "staging"}')
    builder = HostApplicationBuilder(
        ["--B=cli", "positional"],
        environ={"DOTNET_ENVIRONMENT": "Staging", "C__D": "env"},
        content_root=tmp_path,
    )
    assert builder.environment == "Staging"
    config = builder.configuration
    assert (config["A"], config["B"], config["c:d"]) == ("staging", "cli", "env")
    assert builder.args == ["positional"]
    assert logging.getLogger("apphost.test").level == logging.ERROR


def test_out_of_range_options_name_where_they_came_from() -> None:
    """The parser's error (naming the key, never the value) says which setting held it."""
    with pytest.raises(ConfigurationError) as info:
        make_builder(
            {"ConnectionStrings__cache": f"h,password={SECRET},keepAlive=99999999999"}
        ).add_redis_client("cache")
    message = str(info.value)
    assert message.startswith("Redis connection 'cache' (ConnectionStrings:cache or ")
    assert "key keepAlive is out of range" in message and SECRET not in message
    environ = {
        "ConnectionStrings__cache": "h:6379",
        "Aspire__StackExchange__Redis__cache__ConfigurationOptions__ConnectTimeout": "-5",
    }
    with pytest.raises(ConfigurationError) as info:
        make_builder(environ).add_redis_client("cache")
    assert str(info.value).startswith(
        "Aspire:StackExchange:Redis:cache:ConfigurationOptions: connection string key "
        "connectTimeout is out of range"
    )
