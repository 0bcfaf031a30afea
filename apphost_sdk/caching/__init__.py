"""Caches for Python services: a distributed cache that shares entries with .NET's
``IDistributedCache``, a hybrid (L1 + Redis) cache, and output caching rules.

``DistributedCache`` (blocking) and ``AsyncDistributedCache`` (asyncio) store entries exactly as
.NET's Redis cache does, so Python and .NET services can read each other's entries.
``HybridCache`` / ``AsyncHybridCache`` add a bounded in-process L1 with stampede protection and
cross-process invalidation. ``OutputCachePolicy`` and ``RedisOutputCacheStore`` back the ASGI
output cache (``apphost_sdk.hosting.OutputCacheMiddleware``).
"""

from __future__ import annotations

from .async_cache import AsyncDistributedCache
from .async_hybrid_cache import AsyncHybridCache
from .hybrid_cache import HybridCache
from .hybrid_core import HybridCacheEntryFlags, HybridCacheEntryOptions, HybridCacheOptions
from .options import DistributedCacheEntryOptions
from .output_policy import OutputCachePolicy
from .output_store import RedisOutputCacheStore
from .serializers import BytesSerializer, JsonSerializer, Serializer, StrSerializer
from .shared import AsyncRedisClient, RedisClient
from .sync_cache import DistributedCache

__all__ = [
    "AsyncDistributedCache",
    "AsyncHybridCache",
    "AsyncRedisClient",
    "BytesSerializer",
    "DistributedCache",
    "DistributedCacheEntryOptions",
    "HybridCache",
    "HybridCacheEntryFlags",
    "HybridCacheEntryOptions",
    "HybridCacheOptions",
    "JsonSerializer",
    "OutputCachePolicy",
    "RedisClient",
    "RedisOutputCacheStore",
    "Serializer",
    "StrSerializer",
]
