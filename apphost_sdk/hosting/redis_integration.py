"""Registering Redis clients and distributed caches with a ``HostApplicationBuilder``.

Each registration owns its bound settings and connection options; clients and caches are
singletons created on first use (``disable_auto_activation=False`` connects at build time).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

import redis
import redis.asyncio as aioredis
import redis.asyncio.cluster as aiocluster
import redis.cluster
import redis.sentinel

from ..caching import AsyncDistributedCache, DistributedCache
from ..caching.cluster import (
    create_async_cluster_client,
    create_cluster_client,
    probe_cluster_enabled,
    probe_cluster_enabled_async,
)
from ..caching.deferred import (
    PROBE_UNREACHABLE,
    DeferredAsyncRedis,
    DeferredRedis,
    cluster_delegate,
)
from ..caching.shared import AsyncRedisClient, RedisClient
from ..caching.tracing import CacheTracer, create_tracer
from ..connection_strings import RedisConnectionOptions
from ..errors import ConfigurationError
from .emulator_credential import credential_from_configuration
from .emulator_tls import is_loopback_host, read_emulator_ca
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
    ``.with_azure_authentication(credential)`` can be chained. ``emulator_ca`` is the checked
    ``Azure:Emulator:CaFile`` (trusted for loopback TLS hosts only) and ``default_credential``
    the Entra credential configuration selects (``Azure:CredentialSource=Emulator``) for when
    ``with_azure_authentication`` is given none.
    """

    def __init__(
        self,
        name: str,
        key: str | None,
        settings: RedisSettings,
        options: RedisConnectionOptions,
        *,
        emulator_ca: str | None = None,
        default_credential: Any = None,
    ) -> None:
        self.name = name
        self.key = key
        self.settings = settings
        self.options = options
        self.emulator_ca = emulator_ca
        self._default_credential = default_credential
        self._credential: Any = None
        self._fallback_credential: Any = None
        self._entra_requested = False
        self._cluster: bool | None = None
        self._cluster_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"RedisRegistration(name={self.name!r}, key={self.key!r}, options={self.options!r})"

    @property
    def health_check_name(self) -> str:
        """``StackExchange.Redis`` (unkeyed) or ``StackExchange.Redis_{name}`` (keyed)."""
        return "StackExchange.Redis" if self.key is None else f"StackExchange.Redis_{self.key}"

    def with_azure_authentication(self, credential: Any | None = None) -> RedisRegistration:
        """Authenticate with Microsoft Entra ID using ``credential`` (default: the emulator
        credential under ``Azure:CredentialSource=Emulator``, else ``DefaultAzureCredential``).

        Without this call Entra ID is still used for Azure hosts without a password.
        """
        self._entra_requested = True
        self._credential = credential
        return self

    @property
    def uses_emulator_tls(self) -> bool:
        """Whether the emulator's CA applies: it is configured and this is TLS to loopback."""
        return (
            self.emulator_ca is not None
            and self.options.tls
            and bool(self.options.endpoints)
            and is_loopback_host(self.options.endpoints[0].host)
        )

    @property
    def is_azure(self) -> bool:
        """An Azure Redis host, or an emulated Azure cache (loopback TLS with the emulator CA)."""
        return self.options.is_azure or self.uses_emulator_tls

    @property
    def uses_entra_id(self) -> bool:
        """Whether connections authenticate with Entra ID tokens."""
        return self._entra_requested or (self.is_azure and self.options.password is None)

    @property
    def credential(self) -> Any:
        """The Entra credential in use: the one given, else the configured default (or None,
        meaning ``DefaultAzureCredential``)."""
        return self._credential if self._credential is not None else self._default_credential

    def redis_kwargs(self, *, for_async: bool = False) -> dict[str, Any]:
        """Keyword arguments for redis-py (credential provider included when Entra ID is on)."""
        kwargs = self._base_kwargs(for_async)
        if self.uses_entra_id:
            from .azure_auth import create_entra_credential_provider

            kwargs["credential_provider"] = create_entra_credential_provider(
                self._entra_credential()
            )
        return kwargs

    def _entra_credential(self) -> Any:
        """``credential``, or one ``DefaultAzureCredential`` shared by this connection's
        clients and its cluster probe (one token cache, not one per client)."""
        credential = self.credential
        if credential is None:
            if self._fallback_credential is None:
                from azure.identity import DefaultAzureCredential

                self._fallback_credential = DefaultAzureCredential()
            credential = self._fallback_credential
        return credential

    def _base_kwargs(self, for_async: bool) -> dict[str, Any]:
        """redis-py arguments without a credential provider (TLS, emulator CA, auth)."""
        options = self.options
        if self.uses_entra_id and options.is_azure and not options.tls:
            options = options.with_values({"ssl": "true"})  # Azure requires TLS with tokens
        kwargs = options.to_redis_kwargs(for_async=for_async)
        if self.uses_emulator_tls:
            kwargs["ssl_ca_certs"] = self.emulator_ca
        if self.uses_entra_id:
            if options.password is not None:
                _log.debug(
                    "Redis %s: Entra ID is on; the connection-string password is unused", self.name
                )
            kwargs.pop("password", None)
            kwargs.pop("username", None)
        return kwargs

    # -- cluster mode ---------------------------------------------------------------------
    def cluster_enabled(self) -> bool:
        """Whether clients of this connection are Redis Cluster clients (see ``ClusterMode``).

        ``auto`` asks the server once (connection errors propagate, so the next question asks
        again); ``standalone`` checks once where it can and refuses a cluster node, naming the
        setting. The answer is kept for the registration's lifetime. Blocking: on an event
        loop use ``cluster_enabled_async``.
        """
        if self._cluster is not None:
            return self._cluster
        with self._cluster_lock:
            if self._cluster is None:
                self._cluster = self._decide_cluster(self._fixed_mode() or self._probe())
            return self._cluster

    async def cluster_enabled_async(self) -> bool:
        """``cluster_enabled`` without blocking the event loop: a redis.asyncio probe, or a
        worker thread under Entra ID (fetching a token blocks)."""
        if self._cluster is not None:
            return self._cluster
        if self.uses_entra_id:
            return await asyncio.to_thread(self.cluster_enabled)
        fixed = self._fixed_mode()
        answer = self._decide_cluster(fixed if fixed is not None else await self._probe_async())
        self._cluster = answer
        return answer

    def _fixed_mode(self) -> Callable[[], bool] | None:
        """The answer without asking (Sentinel, ``ClusterMode=cluster``), else None."""
        mode = self.settings.cluster_mode
        if self.options.service_name or mode == "cluster":
            fixed = mode == "cluster" and not self.options.service_name
            return lambda: fixed
        return None

    def _probe(self) -> Callable[[], bool]:
        return lambda: probe_cluster_enabled(self._probe_kwargs())

    async def _probe_async(self) -> Callable[[], bool]:
        """The redis.asyncio probe's outcome, as ``_decide_cluster`` takes it."""
        try:
            clustered = await probe_cluster_enabled_async(self._base_kwargs(True))
        except Exception as exc:
            failure = exc

            def fail() -> bool:
                raise failure

            return fail
        return lambda: clustered

    def _decide_cluster(self, ask: Callable[[], bool]) -> bool:
        """``ask()`` (the server's answer, or a fixed one), checked against ``ClusterMode``."""
        mode = self.settings.cluster_mode
        if self.options.service_name or mode != "standalone":
            return ask()
        try:
            clustered = ask()
        except Exception as exc:  # best effort: an unreachable server stays lazy, as before
            _log.debug("Redis %s: cluster check skipped (%s)", self.name, type(exc).__name__)
            return False
        if clustered:
            raise ConfigurationError(
                f"Redis connection {self.name!r} has ClusterMode=standalone but "
                f"{self.options.primary_endpoint.render()} is a Redis Cluster node (a plain "
                "client would get MOVED replies): set "
                f"{SECTION}:{self.name}:ClusterMode to auto or cluster"
            )
        return False

    def _probe_kwargs(self) -> dict[str, Any]:
        kwargs = self._base_kwargs(False)
        if self.uses_entra_id:
            from .azure_auth import OneShotEntraCredentials

            kwargs["credential_provider"] = OneShotEntraCredentials(self._entra_credential())
        return kwargs

    # -- clients --------------------------------------------------------------------------
    @property
    def _where(self) -> str:
        """Where this connection's string comes from, for errors."""
        return (
            f"the connection string of Redis connection {self.name!r} "
            f"(ConnectionStrings:{self.name})"
        )

    def create_client(self) -> RedisClient:
        """A new blocking client: a Sentinel master when ``serviceName`` is set, a
        ``RedisCluster`` when the server is a cluster (``cluster_enabled``), else ``Redis``."""
        if self.options.service_name:
            return cast(
                redis.Redis,
                _sentinel_master(self.options, self.redis_kwargs(), redis.sentinel.Sentinel),
            )
        try:
            clustered = self.cluster_enabled()
        except PROBE_UNREACHABLE as exc:  # ClusterMode=auto and Redis is not up (yet)
            _log.warning(
                "Redis %s is not reachable yet (%s): whether it is a Redis Cluster is asked on "
                "the client's first command",
                self.name,
                type(exc).__name__,
            )
            return DeferredRedis(
                decide=self.cluster_enabled, open_cluster=self._open_cluster, **self.redis_kwargs()
            )
        return self._open_cluster() if clustered else redis.Redis(**self.redis_kwargs())

    def _open_cluster(self) -> redis.cluster.RedisCluster:
        return create_cluster_client(
            self.options,
            self.redis_kwargs(),
            where=self._where,
            not_a_cluster=(
                f"Redis connection {self.name!r} is configured with ClusterMode=cluster but "
                f"the server is not a Redis Cluster: set {SECTION}:{self.name}:ClusterMode "
                "to auto or standalone"
            ),
        )

    def create_async_client(self) -> AsyncRedisClient:
        """A new asyncio client, chosen as ``create_client`` does, never asking the server
        here: when the answer is not known yet (``cache_lifespan`` and the async health check
        ask beforehand, without blocking) it is a ``DeferredAsyncRedis`` whose first command
        awaits ``cluster_enabled_async``."""
        kwargs = self.redis_kwargs(for_async=True)
        if self.options.service_name:
            from redis.asyncio.sentinel import Sentinel

            return cast(aioredis.Redis, _sentinel_master(self.options, kwargs, Sentinel))
        fixed = self._fixed_mode()
        clustered = self._cluster if fixed is None else fixed()
        if clustered is None:
            return DeferredAsyncRedis(
                decide=self.cluster_enabled_async,
                open_cluster=lambda: create_async_cluster_client(
                    self.options, kwargs, where=self._where
                ),
                **kwargs,
            )
        if clustered:
            return create_async_cluster_client(self.options, kwargs, where=self._where)
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
    return RedisRegistration(
        name,
        key,
        settings,
        options,
        emulator_ca=read_emulator_ca(config),
        default_credential=credential_from_configuration(config),
    )


def _register_clients(builder: HostApplicationBuilder, registration: RedisRegistration) -> None:
    """``redis.Redis``/``aioredis.Redis`` resolve to the connection's client whatever its mode
    (a ``RedisCluster`` in cluster mode: same commands); ``redis.cluster.RedisCluster`` and its
    asyncio twin resolve to the same object, and are an error naming the mode otherwise."""
    services, key = builder.services, registration.key
    services.add_singleton(
        redis.Redis,
        lambda _s: cast(redis.Redis, registration.create_client()),
        key=key,
        close=lambda c: c.close(),
    )
    services.add_singleton(
        aioredis.Redis,
        lambda _s: cast(aioredis.Redis, registration.create_async_client()),
        key=key,
        close=lambda c: c.aclose(),
    )

    def cluster_client(s: Any) -> redis.cluster.RedisCluster:
        client: object = s.resolve(redis.Redis, key)
        if isinstance(client, DeferredRedis):
            client = client.settle()  # asks the server now (its connection errors propagate)
        if not isinstance(client, redis.cluster.RedisCluster):
            raise LookupError(_not_a_cluster(registration))
        return client

    def async_cluster_client(s: Any) -> aiocluster.RedisCluster:
        client: object = s.resolve(aioredis.Redis, key)
        if isinstance(client, DeferredAsyncRedis):
            if not client.settled:
                raise LookupError(
                    f"Redis connection {registration.name!r} has not told yet whether it is a "
                    "Redis Cluster (ClusterMode=auto): await "
                    "RedisRegistration.cluster_enabled_async() (cache_lifespan does) before "
                    "resolving redis.asyncio.cluster.RedisCluster, or resolve redis.asyncio.Redis"
                )
            client = cluster_delegate(client) or client
        if not isinstance(client, aiocluster.RedisCluster):
            raise LookupError(_not_a_cluster(registration))
        return client

    services.add_singleton(redis.cluster.RedisCluster, cluster_client, key=key)
    services.add_singleton(aiocluster.RedisCluster, async_cluster_client, key=key)
    services.add_instance(RedisRegistration, registration, key=key)
    if not registration.settings.disable_health_checks:

        def check() -> bool:
            return bool(services.resolve(redis.Redis, key).ping())

        async def check_async() -> bool:
            await registration.cluster_enabled_async()  # never probe on the event loop
            return bool(await services.resolve(aioredis.Redis, key).ping())

        builder.health.add(registration.health_check_name, check, async_check=check_async)


def _not_a_cluster(registration: RedisRegistration) -> str:
    return (
        f"Redis connection {registration.name!r} is not a Redis Cluster (ClusterMode="
        f"{registration.settings.cluster_mode}): resolve redis.Redis / redis.asyncio.Redis"
    )


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
