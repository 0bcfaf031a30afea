"""A distributed cache for Python services that shares entries with .NET's ``IDistributedCache``.

``DistributedCache`` (blocking) and ``AsyncDistributedCache`` (asyncio) store entries exactly as
.NET's Redis cache does, so Python and .NET services can read each other's entries.
"""

from __future__ import annotations

from .async_cache import AsyncDistributedCache
from .options import DistributedCacheEntryOptions
from .shared import AsyncRedisClient, RedisClient
from .sync_cache import DistributedCache

__all__ = [
    "AsyncDistributedCache",
    "AsyncRedisClient",
    "DistributedCache",
    "DistributedCacheEntryOptions",
    "RedisClient",
]
