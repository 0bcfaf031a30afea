"""``RedisOutputCacheStore``: output-cache entries and their tags in Redis (asyncio).

The layout follows ASP.NET's ``RedisOutputCacheStore`` with our own prefixes (the values use
our frame, not .NET's, so the two must not read each other's keys):

- a value is a STRING ``{instance}__PYOCV_{key}`` whose TTL is the entry's lifetime;
- a tag is a ZSET ``{instance}__PYOCT_{tag}``: member = entry key, score = expiry (Unix ms);
- the SET ``{instance}__PYOCT`` lists the tags, so ``collect_garbage`` can trim them.

Writing an entry trims its tags' expired members, so tag sets stay bounded without a timer.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import Any

from .deferred import DeferredAsyncRedis
from .shared import AsyncRedisClient

__all__ = ["RedisOutputCacheStore"]

_EVICT_BATCH = 500


class RedisOutputCacheStore:
    """Stores framed responses by key with a lifetime and tags; evicts by tag.

    ``client`` is a ``redis.asyncio`` client (standalone or cluster), not owned: close it
    yourself (the host does for registered stores). ``clock`` returns Unix seconds.
    """

    def __init__(
        self,
        client: AsyncRedisClient,
        *,
        instance_name: str = "",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self.instance_name = instance_name
        self._clock = clock
        self._value_prefix = f"{instance_name}__PYOCV_"
        self._tag_prefix = f"{instance_name}__PYOCT_"
        self._tags_key = f"{instance_name}__PYOCT"

    def __repr__(self) -> str:
        return f"RedisOutputCacheStore(instance_name={self.instance_name!r})"

    async def _settle(self) -> None:
        """Let a deferred client learn whether it is a cluster (awaited, never blocking the
        loop) before a pipeline is built: an undecided one would pipe to a single endpoint."""
        client = self._client
        if isinstance(client, DeferredAsyncRedis) and not client.settled:
            await client.settle()

    async def get(self, key: str) -> bytes | None:
        """The stored value of ``key``, or None."""
        await self._settle()
        value = await self._client.get(self._value_prefix + key)
        return value if value is None or isinstance(value, bytes) else str(value).encode()

    async def set(
        self, key: str, value: bytes, *, expiration: timedelta, tags: Iterable[str] = ()
    ) -> None:
        """Store ``value`` for ``expiration`` and add ``key`` to each tag (one round trip)."""
        await self._settle()
        ttl_ms = max(1, int(expiration / timedelta(milliseconds=1)))
        now_ms = int(self._clock() * 1000)
        value_key = self._value_prefix + key
        pipe = self._client.pipeline(transaction=False)
        pipe.set(value_key, value, px=ttl_ms)
        for tag in dict.fromkeys(tags):
            tag_key = self._tag_prefix + tag
            pipe.zadd(tag_key, {value_key: now_ms + ttl_ms})
            pipe.zremrangebyscore(tag_key, "-inf", now_ms)
            pipe.sadd(self._tags_key, tag)
        await pipe.execute()

    async def evict_by_tag(self, tag: str) -> int:
        """Remove every entry tagged ``tag``; returns how many live entries were removed."""
        await self._settle()
        tag_key = self._tag_prefix + tag
        removed = 0
        while True:
            members: list[Any] = list(await self._client.zrange(tag_key, 0, _EVICT_BATCH - 1))
            if not members:
                break
            pipe = self._client.pipeline(transaction=False)
            for member in members:
                pipe.delete(member)  # one key per command: entries may live in other slots
            pipe.zrem(tag_key, *members)
            results = await pipe.execute()
            removed += sum(int(r) for r in results[:-1])
        await self._client.srem(self._tags_key, tag)
        return removed

    async def collect_garbage(self) -> int:
        """Trim expired members from every tag set and forget empty tags; returns how many
        members were trimmed. Not needed for correctness, only to bound memory."""
        now_ms = int(self._clock() * 1000)
        trimmed = 0
        tags = await self._client.smembers(self._tags_key)
        for tag in tags:
            tag_key = self._tag_prefix + (tag.decode() if isinstance(tag, bytes) else str(tag))
            trimmed += int(await self._client.zremrangebyscore(tag_key, "-inf", now_ms))
            if not await self._client.zcard(tag_key):
                await self._client.srem(self._tags_key, tag)
        return trimmed
