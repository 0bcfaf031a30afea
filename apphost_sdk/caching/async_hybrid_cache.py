"""``AsyncHybridCache``: the asyncio twin of ``HybridCache`` over ``AsyncDistributedCache``.

Same rules, frame and messages (``hybrid_base``/``hybrid_core``); concurrent tasks asking for
one missing key share one factory call, which runs in its own task: a caller that is
cancelled does not cancel it for the others.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Iterable
from datetime import timedelta
from typing import Any, TypeVar

from redis.exceptions import RedisError

from . import core, hybrid_core
from .async_cache import AsyncDistributedCache
from .hybrid_base import MISS, TAG_RECORD_OPTIONS, HybridBase
from .hybrid_core import HybridCacheEntryFlags, HybridCacheOptions, ResolvedEntry
from .hybrid_invalidation import AsyncInvalidationListener
from .serializers import Serializer

__all__ = ["AsyncHybridCache"]

_log = logging.getLogger("apphost_sdk.caching")
_F = HybridCacheEntryFlags
_T = TypeVar("_T")


class AsyncHybridCache(HybridBase):
    """L1 (bounded LRU, this process) plus L2 (``distributed``; None for L1 only), awaited.

    Arguments as ``HybridCache``'s. The invalidation listener starts on the first call (or
    ``await cache.start()``) on the running loop, and again on another loop if the cache is
    later used there (dropping L1: messages were missed); close with ``await cache.aclose()``.
    A ``set``/``remove`` landing while a factory runs wins (the factory's value is returned,
    not cached), and waits for a fill's background L2 write of that key first. A factory
    calling ``get_or_create`` for its own key is a ``RuntimeError``, not a deadlock.
    """

    def __init__(
        self,
        distributed: AsyncDistributedCache | None = None,
        *,
        options: HybridCacheOptions | None = None,
        serializer: Serializer | None = None,
        invalidation: bool = True,
        subscribe_timeout: float = 2.0,
        clock: Callable[[], int] = core.now_ticks,
    ) -> None:
        if distributed is not None and not isinstance(distributed, AsyncDistributedCache):
            raise TypeError(
                "distributed must be an AsyncDistributedCache (HybridCache takes a "
                f"DistributedCache), got {type(distributed).__name__}"
            )
        name = distributed.instance_name if distributed is not None else ""
        super().__init__(instance_name=name, options=options, serializer=serializer, clock=clock)
        self.distributed = distributed
        self._subscribe_timeout = subscribe_timeout
        self._flights: dict[tuple[str, int], asyncio.Task[Any]] = {}
        self._background: set[asyncio.Task[Any]] = set()
        self._pending_writes: dict[str, asyncio.Task[Any]] = {}
        self._listener: AsyncInvalidationListener | None = None
        if distributed is not None and invalidation:
            self._live = False
            self._listener = AsyncInvalidationListener(distributed.client, self._channel, self)

    async def start(self) -> None:
        """Subscribe to invalidations now (otherwise the first call does)."""
        listener = self._listener
        if listener is None or listener.started:
            return
        if not await listener.start(self._subscribe_timeout):
            _log.warning(
                "hybrid cache: not subscribed to invalidations within %ss; L1 is not read "
                "until the subscription is in place",
                self._subscribe_timeout,
            )

    # -- reads ----------------------------------------------------------------------------
    async def get_or_create(
        self,
        key: str,
        factory: Callable[[], Awaitable[_T]],
        *,
        expiration: timedelta | float | None = None,
        local_expiration: timedelta | float | None = None,
        tags: Iterable[str] = (),
        flags: HybridCacheEntryFlags | None = None,
        serializer: Serializer | None = None,
    ) -> _T:
        """The cached value of ``key``, else the awaited ``factory()``'s (cached with ``tags``).

        ``factory`` is a zero-argument coroutine function (a plain function returning the
        value works too, untyped).
        Concurrent calls for one missing key share one ``factory`` call; its exception
        reaches them all and nothing is cached. With ``DISABLE_UNDERLYING_DATA`` a miss
        returns None without calling ``factory``.
        """
        entry = self._entry(expiration, local_expiration, flags)
        tag_tuple = self._tags_of(tags)
        ser = self._serializer(serializer)
        if self._listener is not None and not self._listener.started:
            await self.start()
        if not self._cacheable(key):
            if entry.flags & _F.DISABLE_UNDERLYING_DATA:
                return None  # type: ignore[return-value]
            return await _call(factory)
        value = self._read_local(key, entry.flags, ser)
        if value is not MISS:
            return value
        slot = (key, entry.flags.value)
        flight = self._flights.get(slot)
        if flight is not None and flight is asyncio.current_task():
            raise RuntimeError(f"get_or_create({key!r}) called from its own factory")
        if flight is None:
            flight = asyncio.get_running_loop().create_task(
                self._fill(key, factory, entry, tag_tuple, ser, self._generation(key))
            )
            self._flights[slot] = flight
            flight.add_done_callback(lambda t: self._landed(slot, t))
        return await asyncio.shield(flight)

    def _landed(self, slot: tuple[str, int], task: asyncio.Task[Any]) -> None:
        if self._flights.get(slot) is task:
            del self._flights[slot]
        if not task.cancelled():
            task.exception()  # retrieved: every caller may have been cancelled

    async def _fill(
        self,
        key: str,
        factory: Callable[[], Any],
        entry: ResolvedEntry,
        tags: tuple[str, ...],
        ser: Serializer,
        token: tuple[int, int],
    ) -> Any:
        """L2, else the factory (L1 written; L2 written in the background), the writes
        skipped when ``key`` was invalidated since ``token``."""
        now = self._clock()
        if self.distributed is not None and not entry.flags & _F.DISABLE_DISTRIBUTED_CACHE_READ:
            value = await self._read_l2(key, entry, ser, now, token)
            if value is not MISS:
                return value
        if entry.flags & _F.DISABLE_UNDERLYING_DATA:
            return None
        value = await _call(factory)
        payload = ser.dumps(value)
        if self._too_big(payload) or not self._still(key, token):
            return value
        self._write_local(key, value, payload, now, now + entry.local_expiration, tags, entry.flags)
        if self.distributed is not None and not entry.flags & _F.DISABLE_DISTRIBUTED_CACHE_WRITE:
            frame = self._frame(key, payload, tags, entry, now)
            task = asyncio.get_running_loop().create_task(self._write_l2(frame, quiet=True))
            self._background.add(task)
            self._pending_writes[key] = task
            task.add_done_callback(lambda t: self._written(key, t))
        return value

    def _written(self, key: str, task: asyncio.Task[Any]) -> None:
        self._background.discard(task)
        if self._pending_writes.get(key) is task:
            del self._pending_writes[key]

    async def _settle(self, key: str) -> None:
        """Wait for a fill's background L2 write of ``key`` (so a set/remove lands after)."""
        task = self._pending_writes.get(key)
        if task is not None and task.get_loop() is asyncio.get_running_loop():
            await asyncio.gather(task, return_exceptions=True)

    async def _read_l2(
        self,
        key: str,
        entry: ResolvedEntry,
        ser: Serializer,
        now: int,
        token: tuple[int, int] | None = None,
    ) -> Any:
        """The L2 value (checked against tag times) or ``MISS``; L2 errors are misses."""
        assert self.distributed is not None
        try:
            data = await self.distributed.get(key)
            if data is None:
                return MISS
            frame = self._decode(key, data, now)
            if frame is None:
                return MISS
            unknown = self._tag_fetch_list(frame, now)
            if unknown:
                records = await self.distributed.get_many(
                    [hybrid_core.tag_record_key(t) for t in unknown]
                )
                self._learn_tags(unknown, records, now)
        except RedisError as exc:
            _log.warning("hybrid cache: L2 read failed (%s); treated as a miss", exc)
            return MISS
        return self._accept_l2(key, frame, ser, entry, now, token)

    # -- writes ---------------------------------------------------------------------------
    async def set(
        self,
        key: str,
        value: Any,
        *,
        expiration: timedelta | float | None = None,
        local_expiration: timedelta | float | None = None,
        tags: Iterable[str] = (),
        flags: HybridCacheEntryFlags | None = None,
        serializer: Serializer | None = None,
    ) -> None:
        """Store ``value`` in L1 and L2 (as the flags allow); other processes evict theirs."""
        entry = self._entry(expiration, local_expiration, flags)
        tag_tuple = self._tags_of(tags)
        await self.start()
        if not self._cacheable(key):
            return
        payload = self._serializer(serializer).dumps(value)
        if self._too_big(payload):
            return
        await self._settle(key)
        now = self._clock()
        expires = now + entry.local_expiration
        self._bump(key)  # fills in flight must not overwrite this value
        self._write_local(key, value, payload, now, expires, tag_tuple, entry.flags)
        if self.distributed is not None and not entry.flags & _F.DISABLE_DISTRIBUTED_CACHE_WRITE:
            await self._write_l2(self._frame(key, payload, tag_tuple, entry, now), quiet=False)
            self._bump(key)  # nor may fills that read the old L2 value meanwhile
        await self._publish("K", key, now)

    async def _write_l2(self, frame: hybrid_core.Frame, *, quiet: bool) -> None:
        """Write ``frame``; after a factory call a failure is only logged (as .NET)."""
        assert self.distributed is not None
        try:
            await self.distributed.set(
                frame.key, hybrid_core.encode_frame(frame), self._l2_options(frame)
            )
        except RedisError as exc:
            if not quiet:
                raise
            _log.warning("hybrid cache: L2 write failed (%s); the value stays in L1 only", exc)

    async def remove(self, key: str) -> None:
        """Forget ``key`` here, in L2, and in every other process's L1."""
        await self.start()
        await self._settle(key)
        self._bump(key)
        self.local.remove(key)
        if self.distributed is not None:
            await self.distributed.remove(key)
            self._bump(key)
            self.local.remove(key)
        await self._publish("K", key, self._clock())

    async def remove_by_tag(self, tag: str) -> None:
        """Make every entry tagged ``tag`` (``*``: every entry) created until now a miss,
        here, in L2 (a tag record) and in every other process's L1."""
        if not isinstance(tag, str) or not tag:
            raise ValueError(f"tag must be a non-empty str, got {tag!r}")
        await self.start()
        now = self._clock()
        self._invalidate_tag_locally(tag, now)
        if self.distributed is not None:
            await self.distributed.set(
                hybrid_core.tag_record_key(tag),
                hybrid_core.encode_tag_record(now),
                TAG_RECORD_OPTIONS,
            )
        await self._publish("T", tag, now)

    async def _publish(self, kind: str, name: str, ticks: int) -> None:
        if self._listener is None or self.distributed is None:
            return
        try:
            await self.distributed.client.publish(self._channel, self._message(kind, name, ticks))
        except RedisError as exc:
            _log.warning("hybrid cache: could not publish an invalidation (%s)", exc)

    # -- lifetime -------------------------------------------------------------------------
    async def aclose(self) -> None:
        """Stop listening and finish background L2 writes (the L2 cache is its owner's)."""
        loop = asyncio.get_running_loop()
        pending = [t for t in self._background if t.get_loop() is loop]
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        if self._listener is not None:
            await self._listener.stop()
            self._listener = None

    async def __aenter__(self) -> AsyncHybridCache:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        name = self.distributed.instance_name if self.distributed is not None else None
        return f"AsyncHybridCache(instance_name={name!r}, l1={len(self.local)})"


async def _call(factory: Callable[[], Any]) -> Any:
    """``factory()``, awaited when it returns an awaitable."""
    result = factory()
    if inspect.isawaitable(result):
        result = await result
    return result
