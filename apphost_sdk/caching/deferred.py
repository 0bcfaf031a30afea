"""Clients that learn on first use whether the server is a Redis Cluster.

``ClusterMode=auto`` asks the server (``INFO cluster``). When it cannot be asked yet (Redis is
not up, or the caller runs on an event loop that must not block), these plain-client subclasses
are handed out instead: their first command asks, then either carry on as the plain client or
forward every command and pipeline to a ``RedisCluster`` opened with the same arguments. A
failed question (Redis still down) raises that command's connection error and is asked again
by the next command, so a service started before Redis works once Redis is up.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import redis
import redis.asyncio as aioredis
import redis.asyncio.cluster as aiocluster
import redis.cluster

__all__ = [
    "PROBE_UNREACHABLE",
    "DeferredAsyncRedis",
    "DeferredRedis",
    "cluster_delegate",
    "settled_client",
]

#: Errors meaning the server cannot be asked yet (down, unreachable, refusing the login).
PROBE_UNREACHABLE = (redis.ConnectionError, redis.TimeoutError, OSError)


class DeferredRedis(redis.Redis):
    """A ``redis.Redis`` whose first command decides (``decide()``) whether it is a cluster;
    a cluster's commands then go to ``open_cluster()``'s ``RedisCluster``."""

    def __init__(
        self,
        *,
        decide: Callable[[], bool],
        open_cluster: Callable[[], redis.cluster.RedisCluster],
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._decide = decide
        self._open_cluster = open_cluster
        self._settled = False
        self._settle_lock = threading.Lock()
        self.apphost_cluster_client: redis.cluster.RedisCluster | None = None

    def settle(self) -> redis.Redis | redis.cluster.RedisCluster:
        """The client commands go to, asking the server first when not known yet (its
        connection errors propagate; the next call asks again)."""
        if not self._settled:
            with self._settle_lock:
                if not self._settled:
                    if self._decide():
                        self.apphost_cluster_client = self._open_cluster()
                    self._settled = True
        return self.apphost_cluster_client or self

    def execute_command(self, *args: Any, **options: Any) -> Any:
        target = self.settle()
        if target is self:
            return super().execute_command(*args, **options)
        return target.execute_command(*args, **options)

    def pipeline(self, transaction: bool = True, shard_hint: Any = None) -> Any:
        target = self.settle()
        if target is self:
            return super().pipeline(transaction, shard_hint)
        return target.pipeline(transaction=transaction, shard_hint=shard_hint)

    def close(self) -> None:
        if self.apphost_cluster_client is not None:
            self.apphost_cluster_client.close()
        super().close()


class DeferredAsyncRedis(aioredis.Redis):
    """The asyncio twin of ``DeferredRedis``: its first command awaits ``decide()``, so the
    question never blocks the event loop. ``pipeline()`` before any command (or ``settle``)
    assumes a single endpoint; the caches always settle first."""

    def __init__(
        self,
        *,
        decide: Callable[[], Awaitable[bool]],
        open_cluster: Callable[[], aiocluster.RedisCluster],
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._decide = decide
        self._open_cluster = open_cluster
        self._settled = False
        self._settle_lock: asyncio.Lock | None = None
        self.apphost_cluster_client: aiocluster.RedisCluster | None = None

    @property
    def settled(self) -> bool:
        """Whether the server has been asked successfully."""
        return self._settled

    async def settle(self) -> aioredis.Redis | aiocluster.RedisCluster:
        """The client commands go to, asking the server first (without blocking the loop)."""
        if not self._settled:
            if self._settle_lock is None:
                self._settle_lock = asyncio.Lock()
            async with self._settle_lock:
                if not self._settled:
                    if await self._decide():
                        self.apphost_cluster_client = self._open_cluster()
                    self._settled = True
        return self.apphost_cluster_client or self

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        target = await self.settle()
        if target is self:
            return await super().execute_command(*args, **options)
        return await target.execute_command(*args, **options)

    def pipeline(self, transaction: bool = True, shard_hint: Any = None) -> Any:
        if self.apphost_cluster_client is not None:
            return self.apphost_cluster_client.pipeline(
                transaction=transaction, shard_hint=shard_hint
            )
        return super().pipeline(transaction, shard_hint)

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        if self.apphost_cluster_client is not None:
            await self.apphost_cluster_client.aclose()
        await super().aclose(close_connection_pool)


def cluster_delegate(client: Any) -> Any:
    """The ``RedisCluster`` a deferred client forwards to, or None (undecided or plain)."""
    return getattr(client, "apphost_cluster_client", None)


def settled_client(client: Any) -> Any:
    """``client``, or the ``RedisCluster`` it forwards to once it knows."""
    return cluster_delegate(client) or client
