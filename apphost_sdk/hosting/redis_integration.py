"""Registering Redis clients and distributed caches with a ``HostApplicationBuilder``.

Each registration owns its bound settings and connection options; clients and caches are
singletons created on first use (``disable_auto_activation=False`` connects at build time).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import redis
import redis.asyncio as aioredis
import redis.sentinel

from ..caching import AsyncDistributedCache, DistributedCache
from ..caching.tracing import CacheTracer, create_tracer
from ..connection_strings import RedisConnectionOptions
from ..errors import ConfigurationError
from .redis_settings import SECTION, RedisSettings, bind_connection_options, bind_settings

if TYPE_CHECKING:
    from .builder import HostApplicationBuilder

__all__ = ["RedisRegistration", "register_redis"]

_log = logging.getLogger("apphost_sdk.hosting")

ConfigureSettings = Callable[[RedisSettings], object]
ConfigureOptions = Callable[[RedisConnectionOptions], "RedisConnectionOptions | None"]


class RedisRegistration:
    """One Redis connection of the app: settings, options, and how to open clients.

    Returned by ``add_redis_client`` and the cache variants so that
    ``.with_azure_authentication(credential)`` can be chained.
    """

    def __init__(
        self, name: str, key: str | None, settings: RedisSettings, options: RedisConnectionOptions
    ) -> None:
        self.name = name
        self.key = key
        self.settings = settings
        self.options = options
        self._credential: Any = None
        self._entra_requested = False

    def __repr__(self) -> str:
        return f"RedisRegistration(name={self.name!r}, key={self.key!r}, options={self.options!r})"

    @property
    def health_check_name(self) -> str:
        """``StackExchange.Redis`` (unkeyed) or ``StackExchange.Redis_{name}`` (keyed)."""
        return "StackExchange.Redis" if self.key is None else f"StackExchange.Redis_{self.key}"

    def with_azure_authentication(self, credential: Any | None = None) -> RedisRegistration:
        """Authenticate with Microsoft Entra ID using ``credential`` (default: Default...).

        Without this call Entra ID is still used for Azure hosts without a password.
        """
        self._entra_requested = True
        self._credential = credential
        return self

    @property
    def uses_entra_id(self) -> bool:
        """Whether connections authenticate with Entra ID tokens."""
        return self._entra_requested or (self.options.is_azure and self.options.password is None)

    def redis_kwargs(self, *, for_async: bool = False) -> dict[str, Any]:
        """Keyword arguments for redis-py (credential provider included when Entra ID is on)."""
        options = self.options
        if self.uses_entra_id and options.is_azure and not options.tls:
            options = options.with_values({"ssl": "true"})  # Azure requires TLS with tokens
        kwargs = options.to_redis_kwargs(for_async=for_async)
        if self.uses_entra_id:
            from .azure_auth import create_entra_credential_provider

            if options.password is not None:
                _log.debug(
                    "Redis %s: Entra ID is on; the connection-string password is unused", self.name
                )
            kwargs.pop("password", None)
            kwargs.pop("username", None)
            kwargs["credential_provider"] = create_entra_credential_provider(self._credential)
        return kwargs

    def create_client(self) -> redis.Redis:
        """A new blocking client (a Sentinel master when ``serviceName`` is set)."""
        kwargs = self.redis_kwargs()
        if self.options.service_name:
            return _sentinel_master(self.options, kwargs, redis.sentinel.Sentinel)
        return redis.Redis(**kwargs)

    def create_async_client(self) -> aioredis.Redis:
        """A new asyncio client (a Sentinel master when ``serviceName`` is set)."""
        kwargs = self.redis_kwargs(for_async=True)
        if self.options.service_name:
            from redis.asyncio.sentinel import Sentinel

            return _sentinel_master(self.options, kwargs, Sentinel)
        return aioredis.Redis(**kwargs)

    def tracer(self) -> CacheTracer | None:
        """A span factory for this connection, or None (tracing disabled or not installed)."""
        if self.settings.disable_tracing:
            return None
        endpoint = self.options.primary_endpoint
        return create_tracer(
            endpoint.host,
            endpoint.resolved_port(self.options.tls),
            self.options.default_database or 0,
        )


def _sentinel_master(
    options: RedisConnectionOptions, kwargs: dict[str, Any], sentinel_type: Any
) -> Any:
    kwargs = dict(kwargs)
    kwargs.pop("host")
    kwargs.pop("port")
    sentinels = [(e.host, e.port or 26379) for e in options.endpoints]
    return sentinel_type(sentinels, **kwargs).master_for(options.service_name)


def register_redis(
    builder: HostApplicationBuilder,
    name: str,
    *,
    keyed: bool,
    cache: bool,
    configure_settings: ConfigureSettings | None,
    configure_options: ConfigureOptions | None,
) -> RedisRegistration:
    """Bind settings, validate the endpoint, and register clients (and caches) as singletons."""
    key = name if keyed else None
    existing = builder._redis.get(key)
    if existing is not None and existing.name != name:
        raise ConfigurationError(
            f"an unkeyed Redis connection is already registered for {existing.name!r}; "
            f"use the keyed variant for {name!r}"
        )
    if existing is None:
        registration = _create_registration(
            builder, name, key, configure_settings, configure_options
        )
        builder._redis[key] = registration
        _register_clients(builder, registration)
    else:
        registration = existing
        if configure_settings is not None or configure_options is not None:
            _log.warning(
                "Redis connection %s is already registered; the configure callbacks of this "
                "later registration are ignored (pass them to the first one)",
                name,
            )
    if cache and not builder.services.is_registered(DistributedCache, key):
        _register_caches(builder, registration)
    return registration


def _create_registration(
    builder: HostApplicationBuilder,
    name: str,
    key: str | None,
    configure_settings: ConfigureSettings | None,
    configure_options: ConfigureOptions | None,
) -> RedisRegistration:
    config = builder.configuration
    settings = bind_settings(config, name)
    if configure_settings is not None:
        configure_settings(settings)
    if not settings.connection_string:
        raise ConfigurationError(
            f"Redis connection {name!r} has no connection string: set ConnectionStrings:{name} "
            f"or {SECTION}:{name}:ConnectionString (environment: ConnectionStrings__{name})"
        )
    try:
        options = RedisConnectionOptions.parse(settings.connection_string)
    except ConfigurationError as exc:  # the parser names the key, never a value
        raise ConfigurationError(
            f"Redis connection {name!r} (ConnectionStrings:{name} or "
            f"{SECTION}:{name}:ConnectionString): {exc}"
        ) from None
    options = bind_connection_options(config, name, options)
    if configure_options is not None:
        changed = configure_options(options)
        if changed is not None:
            options = changed
    if not options.endpoints:
        raise ConfigurationError(
            f"Redis connection {name!r} names no endpoint: check ConnectionStrings:{name} "
            f"or {SECTION}:{name}:ConnectionString"
        )
    return RedisRegistration(name, key, settings, options)


def _register_clients(builder: HostApplicationBuilder, registration: RedisRegistration) -> None:
    services, key = builder.services, registration.key
    services.add_singleton(
        redis.Redis, lambda _s: registration.create_client(), key=key, close=lambda c: c.close()
    )
    services.add_singleton(
        aioredis.Redis,
        lambda _s: registration.create_async_client(),
        key=key,
        close=lambda c: c.aclose(),
    )
    services.add_instance(RedisRegistration, registration, key=key)
    if not registration.settings.disable_health_checks:

        def check() -> bool:
            return bool(services.resolve(redis.Redis, key).ping())

        async def check_async() -> bool:
            return bool(await services.resolve(aioredis.Redis, key).ping())

        builder.health.add(registration.health_check_name, check, async_check=check_async)


def _register_caches(builder: HostApplicationBuilder, registration: RedisRegistration) -> None:
    services, key = builder.services, registration.key
    tracer = registration.tracer()
    instance_name = registration.settings.instance_name
    services.add_singleton(
        DistributedCache,
        lambda s: DistributedCache(
            s.resolve(redis.Redis, key), instance_name=instance_name, tracer=tracer
        ),
        key=key,
    )
    services.add_singleton(
        AsyncDistributedCache,
        lambda s: AsyncDistributedCache(
            s.resolve(aioredis.Redis, key), instance_name=instance_name, tracer=tracer
        ),
        key=key,
    )
