"""Drive ``DistributedCache`` and ``AsyncDistributedCache`` through one blocking facade.

The conformance tests run every case against both twins; the async one runs on a private
event loop that lives as long as the facade.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import redis
import redis.asyncio as aioredis

from apphost_sdk.caching import AsyncDistributedCache, DistributedCache, core


class AsyncFacade:
    """Calls an ``AsyncDistributedCache`` method and waits for it on a private loop."""

    def __init__(self, cache: AsyncDistributedCache, loop: asyncio.AbstractEventLoop) -> None:
        self.cache = cache
        self._loop = loop

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.cache, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            result = attr(*args, **kwargs)
            if asyncio.iscoroutine(result):
                return self._loop.run_until_complete(result)
            return result

        return call

    def close(self) -> None:
        self._loop.run_until_complete(self.cache.client.aclose())
        self._loop.close()


def open_twin(
    kind: str,
    host: str,
    port: int,
    *,
    instance_name: str = "",
    clock: Callable[[], int] = core.now_ticks,
    **redis_kwargs: Any,
) -> Any:
    """A sync cache, or an async one behind ``AsyncFacade``."""
    if kind == "sync":
        client = redis.Redis(host=host, port=port, **redis_kwargs)
        return DistributedCache(client, instance_name=instance_name, clock=clock)
    loop = asyncio.new_event_loop()
    aclient = aioredis.Redis(host=host, port=port, **redis_kwargs)
    cache = AsyncDistributedCache(aclient, instance_name=instance_name, clock=clock)
    return AsyncFacade(cache, loop)


def close_twin(twin: Any) -> None:
    """Close what ``open_twin`` opened."""
    if isinstance(twin, AsyncFacade):
        twin.close()
    else:
        twin.client.close()
