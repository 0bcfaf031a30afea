"""``HybridCache``: an in-process L1 over the Redis distributed cache (L2), for threads.

As .NET's ``HybridCache``: L1, then an in-flight call for the same key, then L2, then the
factory (once per key per process, however many threads ask). Beyond .NET: ``set``,
``remove`` and ``remove_by_tag`` reach every other process's L1 through Redis pub/sub, and a
process that lost its subscription drops its L1 rather than serve what it may have missed.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import Any, TypeVar

from redis.exceptions import RedisError

from . import core, hybrid_core
from .hybrid_base import MISS, TAG_RECORD_OPTIONS, HybridBase
from .hybrid_core import HybridCacheEntryFlags, HybridCacheOptions, ResolvedEntry
from .hybrid_invalidation import InvalidationListener
from .serializers import Serializer
from .sync_cache import DistributedCache

__all__ = ["HybridCache"]

_log = logging.getLogger("apphost_sdk.caching")
_F = HybridCacheEntryFlags
_T = TypeVar("_T")


class _Flight:
    """One factory call other threads wait for: its value or its exception."""

    __slots__ = ("done", "error", "owner", "value")

    def __init__(self) -> None:
        self.owner = threading.get_ident()
        self.done = threading.Event()
        self.value: Any = None
        self.error: BaseException | None = None

    def wait(self) -> Any:
        self.done.wait()
        if self.error is not None:
            raise self.error
        return self.value


class HybridCache(HybridBase):
    """L1 (bounded LRU, this process) plus L2 (``distributed``; None for L1 only).

    ``serializer`` turns values into bytes (default JSON; ``BytesSerializer``,
    ``StrSerializer`` or your own ``Serializer``). ``invalidation`` (default on with an L2)
    publishes our ``set``/``remove``/``remove_by_tag`` on the instance's channel and subscribes
    to it, so that other processes' writes evict our L1 (off: neither, as .NET);
    construction waits up to ``subscribe_timeout`` seconds for that subscription, so
    create (resolve) it at startup, not inside an async endpoint, where it would block the
    event loop. A ``set``/``remove`` (here or elsewhere) landing while a factory runs wins:
    the factory's value is returned but not cached. A factory calling ``get_or_create``
    for its own key is a ``RuntimeError`` (it would wait for itself forever).
    """

    def __init__(
        self,
        distributed: DistributedCache | None = None,
        *,
        options: HybridCacheOptions | None = None,
        serializer: Serializer | None = None,
        invalidation: bool = True,
        subscribe_timeout: float = 2.0,
        clock: Callable[[], int] = core.now_ticks,
    ) -> None:
        if distributed is not None and not isinstance(distributed, DistributedCache):
            raise TypeError(
                "distributed must be a DistributedCache (AsyncHybridCache takes an "
                f"AsyncDistributedCache), got {type(distributed).__name__}"
            )
        name = distributed.instance_name if distributed is not None else ""
        super().__init__(instance_name=name, options=options, serializer=serializer, clock=clock)
        self.distributed = distributed
        self._flights: dict[tuple[str, int], _Flight] = {}
        self._flight_lock = threading.Lock()
        self._listener: InvalidationListener | None = None
        if distributed is not None and invalidation:
            self._live = False
            self._listener = InvalidationListener(distributed.client, self._channel, self)
            if not self._listener.start(subscribe_timeout):
                _log.warning(
                    "hybrid cache: not subscribed to invalidations within %ss; L1 is not "
                    "read until the subscription is in place",
                    subscribe_timeout,
                )

    # -- reads ----------------------------------------------------------------------------
    def get_or_create(
        self,
        key: str,
        factory: Callable[[], _T],
        *,
        expiration: timedelta | float | None = None,
        local_expiration: timedelta | float | None = None,
        tags: Iterable[str] = (),
        flags: HybridCacheEntryFlags | None = None,
        serializer: Serializer | None = None,
    ) -> _T:
        """The cached value of ``key``, else ``factory()``'s (cached with ``tags``).

        Concurrent calls for one missing key share one ``factory`` call; its exception reaches
        them all and nothing is cached. With ``DISABLE_UNDERLYING_DATA`` a miss returns None
        without calling ``factory``.
        """
        entry = self._entry(expiration, local_expiration, flags)
        tag_tuple = self._tags_of(tags)
        ser = self._serializer(serializer)
        if not self._cacheable(key):
            return None if entry.flags & _F.DISABLE_UNDERLYING_DATA else factory()  # type: ignore[return-value]
        value = self._read_local(key, entry.flags, ser)
        if value is not MISS:
            return value
        slot = (key, entry.flags.value)
        with self._flight_lock:
            flight = self._flights.get(slot)
            leader = flight is None
            if flight is None:
                flight = self._flights[slot] = _Flight()
        if not leader:
            if flight.owner == threading.get_ident() and not flight.done.is_set():
                raise RuntimeError(f"get_or_create({key!r}) called from its own factory")
            return flight.wait()
        frame = None
        token = self._generation(key)
        try:
            value, frame = self._fill(key, factory, entry, tag_tuple, ser, token)
        except BaseException as exc:
            flight.error = exc
            raise
        else:
            flight.value = value
        finally:
            with self._flight_lock:
                self._flights.pop(slot, None)
            flight.done.set()
        if frame is not None and self._still(key, token):
            self._write_l2(frame, quiet=True)
        return value

    def _fill(
        self,
        key: str,
        factory: Callable[[], Any],
        entry: ResolvedEntry,
        tags: tuple[str, ...],
        ser: Serializer,
        token: tuple[int, int],
    ) -> tuple[Any, hybrid_core.Frame | None]:
        """L2, else the factory; L1 written and the frame still to write to L2 returned,
        unless ``key`` was invalidated since ``token`` (then the value is only returned)."""
        now = self._clock()
        if self.distributed is not None and not entry.flags & _F.DISABLE_DISTRIBUTED_CACHE_READ:
            value = self._read_l2(key, entry, ser, now, token)
            if value is not MISS:
                return value, None
        if entry.flags & _F.DISABLE_UNDERLYING_DATA:
            return None, None
        value = factory()
        payload = ser.dumps(value)
        if self._too_big(payload):
            return value, None
        if not self._still(key, token):
            return value, None
        frame = self._frame(key, payload, tags, entry, now)
        expires = now + entry.local_expiration
        self._write_local(key, value, payload, now, expires, tags, entry.flags)
        skip_l2 = self.distributed is None or entry.flags & _F.DISABLE_DISTRIBUTED_CACHE_WRITE
        return value, None if skip_l2 else frame

    def _read_l2(
        self,
        key: str,
        entry: ResolvedEntry,
        ser: Serializer,
        now: int,
        token: tuple[int, int] | None = None,
    ) -> Any:
        """The L2 value (checked against tag times, read from L2 when unknown) or ``MISS``;
        L2 errors are misses, as in .NET."""
        assert self.distributed is not None
        try:
            data = self.distributed.get(key)
            if data is None:
                return MISS
            frame = self._decode(key, data, now)
            if frame is None:
                return MISS
            unknown = self._tag_fetch_list(frame, now)
            if unknown:
                records = self.distributed.get_many(
                    [hybrid_core.tag_record_key(t) for t in unknown]
                )
                self._learn_tags(unknown, records, now)
        except RedisError as exc:
            _log.warning("hybrid cache: L2 read failed (%s); treated as a miss", exc)
            return MISS
        return self._accept_l2(key, frame, ser, entry, now, token)

    # -- writes ---------------------------------------------------------------------------
    def set(
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
        if not self._cacheable(key):
            return
        payload = self._serializer(serializer).dumps(value)
        if self._too_big(payload):
            return
        now = self._clock()
        self._bump(key)  # fills in flight must not overwrite this value
        self._write_local(
            key, value, payload, now, now + entry.local_expiration, tag_tuple, entry.flags
        )
        if self.distributed is not None and not entry.flags & _F.DISABLE_DISTRIBUTED_CACHE_WRITE:
            self._write_l2(self._frame(key, payload, tag_tuple, entry, now), quiet=False)
            self._bump(key)  # nor may fills that read the old L2 value meanwhile
        self._publish("K", key, now)

    def _write_l2(self, frame: hybrid_core.Frame, *, quiet: bool) -> None:
        """Write ``frame``; after a factory call a failure is only logged (as .NET)."""
        assert self.distributed is not None
        try:
            self.distributed.set(
                frame.key, hybrid_core.encode_frame(frame), self._l2_options(frame)
            )
        except RedisError as exc:
            if not quiet:
                raise
            _log.warning("hybrid cache: L2 write failed (%s); the value stays in L1 only", exc)

    def remove(self, key: str) -> None:
        """Forget ``key`` here, in L2, and in every other process's L1."""
        self._bump(key)
        self.local.remove(key)
        if self.distributed is not None:
            self.distributed.remove(key)
            self._bump(key)
            self.local.remove(key)
        self._publish("K", key, self._clock())

    def remove_by_tag(self, tag: str) -> None:
        """Make every entry tagged ``tag`` (``*``: every entry) created until now a miss,
        here, in L2 (a tag record) and in every other process's L1."""
        if not isinstance(tag, str) or not tag:
            raise ValueError(f"tag must be a non-empty str, got {tag!r}")
        now = self._clock()
        self._invalidate_tag_locally(tag, now)
        if self.distributed is not None:
            self.distributed.set(
                hybrid_core.tag_record_key(tag),
                hybrid_core.encode_tag_record(now),
                TAG_RECORD_OPTIONS,
            )
        self._publish("T", tag, now)

    def _publish(self, kind: str, name: str, ticks: int) -> None:
        if self._listener is None or self.distributed is None:
            return
        try:
            self.distributed.client.publish(self._channel, self._message(kind, name, ticks))
        except RedisError as exc:
            _log.warning("hybrid cache: could not publish an invalidation (%s)", exc)

    # -- lifetime -------------------------------------------------------------------------
    def close(self) -> None:
        """Stop listening for invalidations (the distributed cache is closed by its owner)."""
        if self._listener is not None:
            self._listener.stop()
            self._listener = None

    def __enter__(self) -> HybridCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        name = self.distributed.instance_name if self.distributed is not None else None
        return f"HybridCache(instance_name={name!r}, l1={len(self.local)})"
