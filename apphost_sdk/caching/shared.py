"""Small helpers both cache twins share (script digests, client checks, item iteration)."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Generic, TypeVar

from redis.exceptions import NoPermissionError, ResponseError

from . import core
from .core import READ_SCRIPT, WRITE_SCRIPT
from .options import DistributedCacheEntryOptions
from .tracing import CacheTracer

__all__ = [
    "ADD_ATTEMPTS",
    "READ_SHA",
    "WRITE_SHA",
    "CacheBase",
    "Items",
    "check_client",
    "is_cluster",
    "items_of",
    "queue_write",
    "scripting_unavailable",
]

_log = logging.getLogger("apphost_sdk.caching")

READ_SHA = hashlib.sha1(READ_SCRIPT).hexdigest().encode()
WRITE_SHA = hashlib.sha1(WRITE_SCRIPT).hexdigest().encode()

Items = Mapping[str, bytes] | Iterable[tuple[str, bytes]]

#: How often ``add`` without scripting retries its WATCH/MULTI/EXEC when the key changed.
ADD_ATTEMPTS = 16

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


def queue_write(pipe: Any, plan: core.SetPlan) -> None:
    """Queue what ``plan`` writes on a pipeline: HSET, and EXPIRE when it has a TTL."""
    pipe.execute_command("HSET", plan.key, *plan.hset_args())
    if plan.ttl_seconds is not None:
        pipe.execute_command("EXPIRE", plan.key, plan.ttl_seconds)


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


ClientT = TypeVar("ClientT")


class CacheBase(Generic[ClientT]):
    """State, keys and the scripting switch both cache twins share; the twins add the I/O."""

    def __init__(
        self,
        client: ClientT,
        *,
        instance_name: str = "",
        tracer: CacheTracer | None = None,
        clock: Callable[[], int] = core.now_ticks,
        owns_client: bool = False,
    ) -> None:
        if not isinstance(instance_name, str):
            raise TypeError(f"instance_name must be a str, not {type(instance_name).__name__}")
        check_client(client)
        self._client = client
        self._prefix = instance_name.encode("utf-8")
        self._instance_name = instance_name
        self._tracer = tracer
        self._clock = clock
        self._owns_client = owns_client
        self._scripting = True
        self._cluster = is_cluster(client)

    @property
    def client(self) -> ClientT:
        """The underlying redis-py client (``redis.Redis`` or ``redis.asyncio.Redis``)."""
        return self._client

    @property
    def instance_name(self) -> str:
        """The prefix put in front of every key."""
        return self._instance_name

    @property
    def uses_scripts(self) -> bool:
        """False once the server refused Lua scripting (reads of sliding entries take 2 trips)."""
        return self._scripting

    def __repr__(self) -> str:
        return f"{type(self).__name__}(instance_name={self._instance_name!r})"

    def full_key(self, key: str) -> bytes:
        """The Redis key of ``key``: the instance name and the key, UTF-8, concatenated."""
        return self._prefix + key.encode("utf-8")

    _key = full_key

    def _plans(
        self, items: Items, options: DistributedCacheEntryOptions | None
    ) -> list[core.SetPlan]:
        """What ``set_many`` writes: one plan per item, all at the same instant."""
        now = self._clock()
        return [core.plan_set(self._key(k), v, options, now) for k, v in items_of(items)]

    def _scripting_failed(self, exc: ResponseError) -> None:
        """Re-raise data errors; switch to the script-free path when scripting is refused."""
        if not scripting_unavailable(exc):
            raise exc
        _log.debug("Lua scripting unavailable (%s); using the script-free commands", exc)
        self._scripting = False
