"""Small helpers both cache twins share (script digests, client checks, item iteration)."""

from __future__ import annotations

import functools
import hashlib
import inspect
import logging
import types
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Concatenate, Generic, ParamSpec, TypeVar, cast

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.cluster
from redis.exceptions import NoPermissionError, ResponseError

from . import core
from .core import READ_SCRIPT, WRITE_SCRIPT
from .deferred import DeferredAsyncRedis, DeferredRedis, settled_client
from .options import DistributedCacheEntryOptions
from .tracing import CacheTracer

__all__ = [
    "ADD_ATTEMPTS",
    "READ_SHA",
    "WRITE_SHA",
    "AsyncRedisClient",
    "CacheBase",
    "Items",
    "RedisClient",
    "check_call",
    "check_client",
    "coroutine_function",
    "direct_execute",
    "expiry_command",
    "is_cluster",
    "items_of",
    "queue_write",
    "scripting_unavailable",
]

_log = logging.getLogger("apphost_sdk.caching")

READ_SHA = hashlib.sha1(READ_SCRIPT).hexdigest().encode()
WRITE_SHA = hashlib.sha1(WRITE_SCRIPT).hexdigest().encode()

Items = Mapping[str, bytes] | Iterable[tuple[str, bytes]]

#: The clients the blocking cache works over: one endpoint, or a Redis Cluster.
RedisClient = redis.Redis | redis.cluster.RedisCluster
#: The clients the asyncio cache works over.
AsyncRedisClient = redis.asyncio.Redis | redis.asyncio.cluster.RedisCluster

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
    if isinstance(items, (str, bytes, bytearray, memoryview)) or not isinstance(items, Iterable):
        raise TypeError(
            "items must be a mapping of str keys to bytes values or an iterable of (key, "
            f"value) pairs, got {type(items).__name__}"
        )
    return items


def queue_write(pipe: Any, plan: core.SetPlan) -> None:
    """Queue what ``plan`` writes on a pipeline: HSET, and EXPIRE when it has a TTL."""
    pipe.execute_command("HSET", plan.key, *plan.hset_args())
    if plan.ttl_seconds is not None:
        pipe.execute_command("EXPIRE", plan.key, plan.ttl_seconds)


def expiry_command(command: tuple[bytes, bytes, int]) -> tuple[str, bytes, int]:
    """A ``core.plan_reads`` expiry command with a text name: cluster clients look commands
    up by name to route them, and refuse a bytes one."""
    return (command[0].decode("ascii"), command[1], command[2])


def check_client(client: Any) -> None:
    """Refuse clients that decode replies: cache values are bytes (cluster clients too)."""
    pool = getattr(client, "connection_pool", None)
    kwargs = getattr(pool, "connection_kwargs", None)
    if kwargs is None:
        nodes = getattr(client, "nodes_manager", None)  # RedisCluster (sync and asyncio)
        kwargs = getattr(nodes, "connection_kwargs", None)
    if (kwargs or {}).get("decode_responses"):
        raise ValueError("the cache needs a redis client created with decode_responses=False")


def is_cluster(client: Any) -> bool:
    """Whether ``client`` is (or, deferred, forwards to) a Redis Cluster client: multi-key
    scripts would cross slots."""
    return isinstance(
        settled_client(client), (redis.cluster.RedisCluster, redis.asyncio.cluster.RedisCluster)
    )


def direct_execute(client: Any) -> Callable[..., Any] | None:
    """The ``execute_command`` a settled client's commands end in, for the caches' fast path:
    a deferred client's forwarding (and its settled check) is skipped once it knows whether it
    talks to a cluster. None while a deferred client has not asked the server yet."""
    if isinstance(client, (DeferredRedis, DeferredAsyncRedis)):
        if not client._settled:
            return None
        target = client.apphost_cluster_client
        if target is not None:
            return cast(Callable[..., Any], target.execute_command)
        base = redis.Redis if isinstance(client, DeferredRedis) else redis.asyncio.Redis
        return types.MethodType(base.execute_command, client)
    return cast(Callable[..., Any], client.execute_command)


_F = TypeVar("_F", bound=Callable[..., Any])


def coroutine_function(func: _F) -> _F:
    """Mark a plain function returning a coroutine as a coroutine function for
    ``inspect.iscoroutinefunction`` (Python 3.12+; a no-op before)."""
    mark = getattr(inspect, "markcoroutinefunction", None)
    return cast(_F, mark(func)) if mark is not None else func


ClientT = TypeVar("ClientT")
_P = ParamSpec("_P")
_R = TypeVar("_R")
_C = TypeVar("_C", bound="CacheBase[Any]")


def check_call(func: Callable[Concatenate[_C, _P], _R]) -> Callable[Concatenate[_C, _P], _R]:
    """Run the instance's ``_check_call`` when the method is called, before its body: for
    the async twin that is before a coroutine exists, so a call that could never be awaited
    (from a sync endpoint's worker thread) is an error at once rather than a silent no-op.

    A method named ``_get`` (the full path behind a fast public ``get``) reports as ``get``.
    Once the client is settled, the instance's fast path is switched on (``_update_fast``).
    """
    name = func.__name__.lstrip("_")

    @functools.wraps(func)
    def call(self: _C, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        self._check_call(name)
        client = self._client
        if self._run_fast is None:
            if isinstance(client, DeferredRedis):
                client.settle()  # the body reads ``_cluster`` before its first command
            elif isinstance(client, DeferredAsyncRedis) and not client.settled:
                return cast(_R, _settled_then(self, client, func(self, *args, **kwargs)))
            self._update_fast()
        return func(self, *args, **kwargs)

    if inspect.iscoroutinefunction(func):
        coroutine_function(call)  # still a coroutine function to inspect.iscoroutinefunction()
    return call


async def _settled_then(cache: CacheBase[Any], client: DeferredAsyncRedis, body: Any) -> Any:
    """Await ``body`` once ``client`` knows whether it talks to a cluster."""
    try:
        await client.settle()
    except BaseException:
        body.close()  # never awaited: no "coroutine was never awaited" warning
        raise
    cache._update_fast()
    return await body


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
        self._update_fast()

    #: Where ``get``'s fast path sends its EVALSHA (the settled client's ``execute_command``),
    #: or None while calls need the full path: a deferred client not settled yet, scripting
    #: refused, a view with call checks. The tracer is asked per call (it may start recording).
    _run_fast: Callable[..., Any] | None = None

    def _fast_path_allowed(self) -> bool:
        """Whether ``get`` may skip the call checks (the twins add their own conditions)."""
        return self._scripting

    def _update_fast(self) -> None:
        """Switch ``get``'s fast path on or off after the client settled or a switch moved."""
        self._run_fast = direct_execute(self._client) if self._fast_path_allowed() else None

    @property
    def _cluster(self) -> bool:
        """Whether the client is a Redis Cluster client (asked anew: a deferred client learns
        it on first use)."""
        return is_cluster(self._client)

    @property
    def client(self) -> ClientT:
        """The underlying redis-py client (``redis.Redis`` or ``redis.asyncio.Redis``, or
        their ``RedisCluster`` twins against a Redis Cluster, also once a deferred client
        has learnt that it talks to one)."""
        return cast(ClientT, settled_client(self._client))

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
        """The Redis key of ``key``: the instance name and the key, UTF-8, concatenated.

        A ``key`` that is not a ``str`` is a ``TypeError`` (``key must be a str, got int``).
        """
        return core.encode_key(self._prefix, key)

    _key = full_key

    def _keys(self, keys: Iterable[str]) -> list[bytes]:
        """The Redis keys of ``get_many``'s ``keys``, each checked as ``full_key`` does."""
        return core.encode_keys(self._prefix, keys)

    def _plans(
        self, items: Items, options: DistributedCacheEntryOptions | None
    ) -> list[core.SetPlan]:
        """What ``set_many`` writes: one plan per item, all at the same instant."""
        now = self._clock()
        plans = []
        for i, item in enumerate(items_of(items)):
            try:
                k, v = item
            except (TypeError, ValueError):
                raise TypeError(
                    f"items[{i}] must be a (key, value) pair, got {type(item).__name__}"
                ) from None
            plans.append(core.plan_set(core.encode_key(self._prefix, k, "key"), v, options, now))
        return plans

    def _check_call(self, operation: str) -> None:
        """Refuse a call from the wrong kind of thread (see each twin); nothing by default."""

    def _scripting_failed(self, exc: ResponseError) -> None:
        """Re-raise data errors; switch to the script-free path when scripting is refused."""
        if not scripting_unavailable(exc):
            raise exc
        _log.debug("Lua scripting unavailable (%s); using the script-free commands", exc)
        self._scripting = False
        self._run_fast = None
