"""Small helpers both cache twins share (script digests, client checks, item iteration)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from typing import Any

from redis.exceptions import NoPermissionError, ResponseError

from .core import READ_SCRIPT, WRITE_SCRIPT

__all__ = [
    "READ_SHA",
    "WRITE_SHA",
    "Items",
    "check_client",
    "is_cluster",
    "items_of",
    "scripting_unavailable",
]

READ_SHA = hashlib.sha1(READ_SCRIPT).hexdigest().encode()
WRITE_SHA = hashlib.sha1(WRITE_SCRIPT).hexdigest().encode()

Items = Mapping[str, bytes] | Iterable[tuple[str, bytes]]

_UNAVAILABLE = ("unknown command", "noperm", "no permissions", "scripting is disabled")


def scripting_unavailable(exc: ResponseError) -> bool:
    """Whether a server error means EVAL/EVALSHA cannot be used here (not a data error)."""
    message = str(exc).casefold()
    if "wrongtype" in message:
        return False
    if isinstance(exc, NoPermissionError) and ("eval" in message or "script" in message):
        return True
    return any(marker in message for marker in _UNAVAILABLE) and (
        "eval" in message or "script" in message
    )


def items_of(items: Items) -> Iterable[tuple[str, bytes]]:
    """``(key, value)`` pairs of a mapping or an iterable of pairs."""
    if isinstance(items, Mapping):
        return items.items()
    return items


def check_client(client: Any) -> None:
    """Refuse clients that decode replies: cache values are bytes."""
    pool = getattr(client, "connection_pool", None)
    kwargs = getattr(pool, "connection_kwargs", {}) or {}
    if kwargs.get("decode_responses"):
        raise ValueError("the cache needs a redis client created with decode_responses=False")


def is_cluster(client: Any) -> bool:
    """Whether ``client`` is a Redis Cluster client (multi-key scripts would cross slots)."""
    from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
    from redis.cluster import RedisCluster

    return isinstance(client, (RedisCluster, AsyncRedisCluster))
