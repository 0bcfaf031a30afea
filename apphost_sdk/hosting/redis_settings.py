"""Settings of a Redis client integration, bound from configuration as Aspire does.

Precedence (later wins): section ``Aspire:StackExchange:Redis``, then
``Aspire:StackExchange:Redis:{name}``, then ``ConnectionStrings:{name}`` for the connection
string, then the ``configure_settings`` callback.
"""

from __future__ import annotations

import attrs

from ..configuration import Configuration
from ..connection_strings import RedisConnectionOptions
from ..errors import ConfigurationError

__all__ = [
    "CLUSTER_MODES",
    "SECTION",
    "RedisSettings",
    "bind_connection_options",
    "bind_settings",
]

SECTION = "Aspire:StackExchange:Redis"

#: Values of ``ClusterMode``: ask the server (default), always Redis Cluster, never.
CLUSTER_MODES = ("auto", "cluster", "standalone")


@attrs.define
class RedisSettings:
    """What a Redis integration reads from configuration (a callback may change it).

    ``connection_string`` may carry a password, so it is left out of ``repr``.

    ``cluster_mode`` (key ``ClusterMode``) says how clients are created, as
    StackExchange.Redis decides by asking the server: ``auto`` (default) sends ``INFO cluster``
    once, when the first client is created, and uses a Redis Cluster client
    (``redis.cluster.RedisCluster``) when the server says ``cluster_enabled:1`` (Azure Managed
    Redis with the OSSCluster policy), else a plain client (EnterpriseCluster, NoCluster,
    plain Redis); ``cluster`` always uses the cluster client; ``standalone`` always a plain
    client, and refuses a server that turns out to be a cluster node (a plain client would
    meet MOVED replies there).

    Under ``auto`` resolving a client never fails because Redis is not up yet, and never
    blocks an event loop: when the answer is not known, the blocking client (after one failed
    attempt) and the asyncio client (always, without trying) are deferred clients
    (``apphost_sdk.caching.deferred``) that ask on their first command, the asyncio one with
    redis.asyncio. Until Redis answers, commands raise its connection errors, as a plain
    client would; once it does, they go to a plain or a cluster client accordingly, so a
    service started before Redis works once Redis is up. ``cache_lifespan`` and the async
    health check ask beforehand, so asyncio clients resolved after them are the final type.
    """

    connection_string: str | None = attrs.field(default=None, repr=False)
    disable_health_checks: bool = False
    disable_tracing: bool = False
    disable_auto_activation: bool = True
    instance_name: str = ""
    cluster_mode: str = "auto"


def _apply_section(settings: RedisSettings, section: Configuration, prefix: str) -> None:
    settings.connection_string = section.get_str(
        f"{prefix}ConnectionString", settings.connection_string
    )
    settings.disable_health_checks = section.get_bool(
        f"{prefix}DisableHealthChecks", settings.disable_health_checks
    )
    settings.disable_tracing = section.get_bool(f"{prefix}DisableTracing", settings.disable_tracing)
    settings.disable_auto_activation = section.get_bool(
        f"{prefix}DisableAutoActivation", settings.disable_auto_activation
    )
    settings.instance_name = section.get_str(f"{prefix}InstanceName", settings.instance_name) or ""
    mode = section.get_str(f"{prefix}ClusterMode")
    if mode is not None:
        settings.cluster_mode = checked_cluster_mode(mode, f"{prefix}ClusterMode")


def checked_cluster_mode(value: str, where: str) -> str:
    """``value`` lowercased when it is one of ``CLUSTER_MODES``; else an error naming ``where``."""
    mode = value.strip().casefold()
    if mode not in CLUSTER_MODES:
        raise ConfigurationError(
            f"{where} must be one of {', '.join(CLUSTER_MODES)}, not {value!r}"
        )
    return mode


def bind_settings(config: Configuration, name: str) -> RedisSettings:
    """Bind the general section, then the named one, then ``ConnectionStrings:{name}``."""
    settings = RedisSettings()
    _apply_section(settings, config, f"{SECTION}:")
    _apply_section(settings, config, f"{SECTION}:{name}:")
    settings.connection_string = config.get_str(
        f"ConnectionStrings:{name}", settings.connection_string
    )
    return settings


def bind_connection_options(
    config: Configuration, name: str, options: RedisConnectionOptions
) -> RedisConnectionOptions:
    """Apply ``...:ConfigurationOptions`` sections (general, then named); abortConnect=false.

    Keys may be .NET ``ConfigurationOptions`` property names or connection-string keys.
    """
    for path in (f"{SECTION}:ConfigurationOptions", f"{SECTION}:{name}:ConfigurationOptions"):
        section = config.get_section(path)
        if len(section):
            try:
                options = options.with_values(section.to_dict(), aliases=True)
            except ConfigurationError as exc:  # names the key, never a value
                raise ConfigurationError(f"{path}: {exc}") from None
    if options.abort_connect is None:
        options = attrs.evolve(options, abort_connect=False)
    return options
