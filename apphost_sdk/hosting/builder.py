"""``HostApplicationBuilder`` and ``Host``: the service-side host, as in .NET's generic host.

The builder layers configuration (``appsettings.json``, ``appsettings.{Environment}.json``,
environment variables with ``__``, ``--Key=Value`` arguments), sets up ``logging``, and
collects services and health checks; ``build()`` returns the ``Host`` that owns them.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..caching.hybrid_core import HybridCacheOptions
from ..caching.serializers import Serializer
from ..configuration import Configuration, load_layered
from .health import HealthChecks
from .hybrid_registration import register_hybrid_cache
from .output_cache import register_output_cache
from .redis_integration import (
    ConfigureOptions,
    ConfigureSettings,
    RedisRegistration,
    register_redis,
)
from .services import ServiceRegistry
from .telemetry import TelemetryHandles, configure_opentelemetry

__all__ = ["Host", "HostApplicationBuilder"]

_log = logging.getLogger("apphost_sdk.hosting")

_LEVELS = {
    "trace": logging.DEBUG,
    "debug": logging.DEBUG,
    "information": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
    "none": logging.CRITICAL + 10,
}


def tracing_available() -> bool:
    """Whether the OpenTelemetry API is installed (spans are emitted only then)."""
    try:
        import opentelemetry.trace  # noqa: F401
    except ImportError:
        return False
    return True


class HostApplicationBuilder:
    """Builds a service's host from configuration; register integrations, then ``build()``.

    ``args`` are command-line arguments (``--Key=Value`` become configuration); None means
    none, as in .NET. The environment name comes from ``environment`` or the variables
    ``APPHOST_ENVIRONMENT``, ``DOTNET_ENVIRONMENT``, ``ASPNETCORE_ENVIRONMENT`` (default
    ``Production``); ``content_root`` is where ``appsettings*.json`` live (default: cwd).
    """

    def __init__(
        self,
        args: Sequence[str] | None = None,
        *,
        environment: str | None = None,
        content_root: str | os.PathLike[str] | None = None,
        environ: Mapping[str, str] | None = None,
        configure_logging: bool = True,
    ) -> None:
        env = os.environ if environ is None else environ
        self._environ = env
        self.environment = (
            environment
            or env.get("APPHOST_ENVIRONMENT")
            or env.get("DOTNET_ENVIRONMENT")
            or env.get("ASPNETCORE_ENVIRONMENT")
            or "Production"
        )
        self.content_root = Path(content_root) if content_root is not None else Path.cwd()
        self.configuration: Configuration
        self.configuration, self.args = load_layered(
            self.content_root, self.environment, list(args or []), environ=env
        )
        self.services = ServiceRegistry()
        self.health = HealthChecks()
        self.tracing_enabled = tracing_available()
        self._redis: dict[str | None, RedisRegistration] = {}
        if configure_logging:
            apply_logging_configuration(self.configuration)

    def __repr__(self) -> str:
        return f"HostApplicationBuilder(environment={self.environment!r})"

    # -- Service defaults -----------------------------------------------------------------
    def add_service_defaults(self) -> HostApplicationBuilder:
        """Export traces, metrics and logs over OTLP/HTTP as the app host's ``OTEL_*`` say.

        Aspire's ``AddServiceDefaults``: with ``OTEL_EXPORTER_OTLP_ENDPOINT`` set (the app host
        sets it to its dashboard), global OpenTelemetry providers and a root ``logging``
        handler are set up, so the cache's spans and ``logging`` records reach the dashboard;
        providers set already are kept. Flushed on ``host.close()``. Returns the builder.
        """
        if not self.services.is_registered(TelemetryHandles):
            handles = configure_opentelemetry(self._environ)
            self.services.add_singleton(
                TelemetryHandles, lambda _services: handles, close=TelemetryHandles.shutdown
            )
            self.services.get(TelemetryHandles)  # created now, so host.close() shuts it down
        return self

    # -- Redis integrations ---------------------------------------------------------------
    def add_redis_client(
        self,
        connection_name: str,
        configure_settings: ConfigureSettings | None = None,
        configure_options: ConfigureOptions | None = None,
    ) -> RedisRegistration:
        """Register ``redis.Redis`` and ``redis.asyncio.Redis`` for ``connection_name``."""
        return register_redis(
            self,
            connection_name,
            keyed=False,
            cache=False,
            configure_settings=configure_settings,
            configure_options=configure_options,
        )

    def add_keyed_redis_client(
        self,
        name: str,
        configure_settings: ConfigureSettings | None = None,
        configure_options: ConfigureOptions | None = None,
    ) -> RedisRegistration:
        """Register Redis clients under the key ``name`` (``services.get_keyed``)."""
        return register_redis(
            self,
            name,
            keyed=True,
            cache=False,
            configure_settings=configure_settings,
            configure_options=configure_options,
        )

    def add_redis_distributed_cache(
        self,
        connection_name: str,
        configure_settings: ConfigureSettings | None = None,
        configure_options: ConfigureOptions | None = None,
    ) -> RedisRegistration:
        """Register ``DistributedCache``/``AsyncDistributedCache`` (and the clients) unkeyed."""
        return register_redis(
            self,
            connection_name,
            keyed=False,
            cache=True,
            configure_settings=configure_settings,
            configure_options=configure_options,
        )

    def add_keyed_redis_distributed_cache(
        self,
        name: str,
        configure_settings: ConfigureSettings | None = None,
        configure_options: ConfigureOptions | None = None,
    ) -> RedisRegistration:
        """Register the caches under the key ``name`` (truly keyed, unlike Aspire's)."""
        return register_redis(
            self,
            name,
            keyed=True,
            cache=True,
            configure_settings=configure_settings,
            configure_options=configure_options,
        )

    def add_redis_hybrid_cache(
        self,
        connection_name: str,
        configure_settings: ConfigureSettings | None = None,
        configure_options: ConfigureOptions | None = None,
        *,
        options: HybridCacheOptions | None = None,
        serializer: Serializer | None = None,
    ) -> RedisRegistration:
        """Register ``HybridCache`` and ``AsyncHybridCache`` (a local L1 over this Redis as L2,
        invalidated across processes), and the distributed caches, unkeyed."""
        return register_hybrid_cache(
            self,
            connection_name,
            keyed=False,
            options=options,
            serializer=serializer,
            configure_settings=configure_settings,
            configure_options=configure_options,
        )

    def add_keyed_redis_hybrid_cache(
        self,
        name: str,
        configure_settings: ConfigureSettings | None = None,
        configure_options: ConfigureOptions | None = None,
        *,
        options: HybridCacheOptions | None = None,
        serializer: Serializer | None = None,
    ) -> RedisRegistration:
        """Register the hybrid caches under the key ``name`` (``services.get_keyed``)."""
        return register_hybrid_cache(
            self,
            name,
            keyed=True,
            options=options,
            serializer=serializer,
            configure_settings=configure_settings,
            configure_options=configure_options,
        )

    def add_redis_output_cache(
        self,
        connection_name: str,
        configure_settings: ConfigureSettings | None = None,
        configure_options: ConfigureOptions | None = None,
    ) -> RedisRegistration:
        """Register a ``RedisOutputCacheStore`` (and the clients) for ``OutputCacheMiddleware``
        (Aspire's ``AddRedisOutputCache``)."""
        return register_output_cache(
            self,
            connection_name,
            configure_settings=configure_settings,
            configure_options=configure_options,
        )

    def add_keyed_redis_output_cache(
        self,
        name: str,
        configure_settings: ConfigureSettings | None = None,
        configure_options: ConfigureOptions | None = None,
    ) -> RedisRegistration:
        """Register the output-cache store under the key ``name`` (middleware: ``key=name``)."""
        return register_output_cache(
            self,
            name,
            keyed=True,
            configure_settings=configure_settings,
            configure_options=configure_options,
        )

    def build(self) -> Host:
        """Create the host; connections with ``disable_auto_activation=False`` connect now."""
        host = Host(self.configuration, self.services, self.health, self.environment)
        for registration in self._redis.values():
            if not registration.settings.disable_auto_activation:
                host._activate(registration)
        return host


class Host:
    """The built host: ``configuration``, ``services``, ``health``; close it when done."""

    def __init__(
        self,
        configuration: Configuration,
        services: ServiceRegistry,
        health: HealthChecks,
        environment: str,
    ) -> None:
        self.configuration = configuration
        self.services = services
        self.health = health
        self.environment = environment

    def __repr__(self) -> str:
        return f"Host(environment={self.environment!r}, checks={self.health.names})"

    def _activate(self, registration: RedisRegistration) -> None:
        import redis
        from redis.exceptions import RedisClusterException

        try:  # creating the client may ask the server whether it is a Redis Cluster
            self.services.resolve(redis.Redis, registration.key).ping()
        except (redis.RedisError, RedisClusterException) as exc:
            if registration.options.abort_connect:
                raise
            _log.warning("Redis connection %s is not reachable yet: %s", registration.name, exc)

    def close(self) -> None:
        """Close every service this host created (async clients: use ``aclose``)."""
        self.services.close()

    async def aclose(self) -> None:
        """Close every service, awaiting async clients."""
        await self.services.aclose()

    def __enter__(self) -> Host:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> Host:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def apply_logging_configuration(config: Configuration) -> None:
    """Apply ``Logging:LogLevel:Default`` and ``Logging:LogLevel:{logger}`` to ``logging``.

    A root handler is added only when none exists, so apps keep their own logging setup.
    """
    section = config.get_section("Logging:LogLevel")
    levels: dict[str, Any] = {}
    for name, value in section.to_dict().items():
        level = _LEVELS.get(value.strip().casefold())
        if level is not None:
            levels[name] = level
    default = next((v for k, v in levels.items() if k.casefold() == "default"), None)
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if default is not None:
        root.setLevel(default)
    for name, level in levels.items():
        if name.casefold() != "default":
            logging.getLogger(name).setLevel(level)
