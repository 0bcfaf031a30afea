"""Registering ``HybridCache``/``AsyncHybridCache`` with a ``HostApplicationBuilder``.

The hybrid caches sit on the connection's distributed caches (registered too, as by
``add_redis_distributed_cache``); they are singletons created on first use and closed with
the host (their invalidation listener stops; the Redis clients are closed by their owners).
"""

from __future__ import annotations

import logging
import weakref
from typing import TYPE_CHECKING, Any

from ..caching.async_cache import AsyncDistributedCache
from ..caching.async_hybrid_cache import AsyncHybridCache
from ..caching.hybrid_cache import HybridCache
from ..caching.hybrid_core import HybridCacheOptions
from ..caching.serializers import Serializer
from ..caching.sync_cache import DistributedCache
from .redis_integration import (
    ConfigureOptions,
    ConfigureSettings,
    RedisRegistration,
    register_redis,
)

if TYPE_CHECKING:
    from .builder import HostApplicationBuilder

__all__ = ["register_hybrid_cache"]

_log = logging.getLogger("apphost_sdk.hosting")
#: Per builder and service key: the (options, serializer) of the first registration.
_FIRST: weakref.WeakKeyDictionary[Any, dict[str | None, tuple[Any, Any]]] = (
    weakref.WeakKeyDictionary()
)


def register_hybrid_cache(
    builder: HostApplicationBuilder,
    name: str,
    *,
    keyed: bool = False,
    options: HybridCacheOptions | None = None,
    serializer: Serializer | None = None,
    configure_settings: ConfigureSettings | None = None,
    configure_options: ConfigureOptions | None = None,
) -> RedisRegistration:
    """Register the Redis connection ``name``, its distributed caches and hybrid caches
    (under the key ``name`` when ``keyed``); the channel follows its ``InstanceName``."""
    registration = register_redis(
        builder,
        name,
        keyed=keyed,
        cache=True,
        configure_settings=configure_settings,
        configure_options=configure_options,
    )
    services, key = builder.services, registration.key
    first = _FIRST.setdefault(builder, {})
    if services.is_registered(HybridCache, key):
        if first.get(key, (options, serializer)) != (options, serializer):
            _log.warning(
                "Redis connection %s already has a hybrid cache; the options/serializer of "
                "this later registration are ignored (pass them to the first one)",
                name,
            )
        return registration
    first[key] = (options, serializer)
    services.add_singleton(
        HybridCache,
        lambda s: HybridCache(
            s.resolve(DistributedCache, key), options=options, serializer=serializer
        ),
        key=key,
        close=lambda cache: cache.close(),
    )
    services.add_singleton(
        AsyncHybridCache,
        lambda s: AsyncHybridCache(
            s.resolve(AsyncDistributedCache, key), options=options, serializer=serializer
        ),
        key=key,
        close=lambda cache: cache.aclose(),
    )
    return registration
