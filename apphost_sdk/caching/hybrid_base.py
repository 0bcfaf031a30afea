"""State and decisions both hybrid-cache twins share: L1, tag times, messages, frames.

Nothing here does I/O; ``HybridCache`` and ``AsyncHybridCache`` add the Redis round trips
(and the thread or task that listens for invalidations) around these methods.
"""

from __future__ import annotations

import logging
import re
import secrets
import threading
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import Any

from . import core, hybrid_core
from .hybrid_core import (
    ALL_TAGS,
    Frame,
    FrameError,
    HybridCacheEntryFlags,
    HybridCacheOptions,
    Message,
    ResolvedEntry,
)
from .hybrid_invalidation import Listener
from .hybrid_l1 import IMMUTABLE_TYPES, LocalCache, LocalEntry
from .options import DistributedCacheEntryOptions
from .serializers import JsonSerializer, Serializer

__all__ = ["MISS", "HybridBase", "Miss"]

_log = logging.getLogger("apphost_sdk.caching")
_CONTROL = re.compile(r"[\x00-\x1f]")
_F = HybridCacheEntryFlags
TAG_RECORD_OPTIONS = DistributedCacheEntryOptions(
    absolute_expiration_relative_to_now=hybrid_core.TAG_RECORD_LIFETIME
)


class Miss:
    """The type of ``MISS``: "no value here" (None is a value)."""

    def __repr__(self) -> str:
        return "MISS"


MISS = Miss()


class HybridBase(Listener):
    """L1, the tag book, the serializer and the rules; the twins add I/O.

    ``instance_name`` names the pub/sub channel (``{instance}__apphost_hybrid__``).
    """

    def __init__(
        self,
        *,
        instance_name: str,
        options: HybridCacheOptions | None,
        serializer: Serializer | None,
        clock: Callable[[], int],
    ) -> None:
        self.options = options if options is not None else HybridCacheOptions()
        if serializer is not None and not isinstance(serializer, Serializer):
            raise TypeError(
                f"serializer must have dumps(value) -> bytes and loads(bytes), got "
                f"{type(serializer).__name__}"
            )
        self.serializer: Serializer = serializer if serializer is not None else JsonSerializer()
        self._clock = clock
        self._sender = secrets.token_hex(8)
        self._channel = hybrid_core.channel_name(instance_name)
        self.local = LocalCache(self.options.local_max_entries, self.options.local_max_bytes)
        self._tags = hybrid_core.TagBook(core.timedelta_to_ticks(self.options.tag_refresh))
        self._default_entry = hybrid_core.resolve_entry(
            self.options.default_entry_options, None, None, None
        )
        #: Whether L1 may be read: invalidations arrive (or none can: no listener).
        self._live = True
        self._subscriptions = 0
        # Invalidation generations: a fill captures them first and writes L1/L2 only if
        # nothing invalidated its key meanwhile (else it could store what it read before).
        self._gen_lock = threading.Lock()
        self._gen_all = 0
        self._gen_keys: dict[str, int] = {}

    @property
    def channel(self) -> bytes:
        """The pub/sub channel invalidations travel on."""
        return self._channel

    @property
    def receiving_invalidations(self) -> bool:
        """False while the invalidation listener is disconnected (L1 is then not read)."""
        return self._live

    # -- per-call rules -------------------------------------------------------------------
    def _entry(
        self,
        expiration: timedelta | float | None,
        local_expiration: timedelta | float | None,
        flags: HybridCacheEntryFlags | None,
    ) -> ResolvedEntry:
        if expiration is None and local_expiration is None and flags is None:
            return self._default_entry
        return hybrid_core.resolve_entry(
            self.options.default_entry_options, expiration, local_expiration, flags
        )

    def _cacheable(self, key: object) -> bool:
        """Whether ``key`` may be cached (else the factory runs each time, as in .NET)."""
        if not isinstance(key, str):
            raise TypeError(f"key must be a str, got {type(key).__name__}")
        if key and len(key) <= self.options.maximum_key_length and not _CONTROL.search(key):
            return True
        problem = hybrid_core.key_problem(key, self.options.maximum_key_length)
        _log.warning("hybrid cache: %s; not cached (the factory runs every time)", problem)
        return False

    @staticmethod
    def _tags_of(tags: Iterable[str]) -> tuple[str, ...]:
        return () if tags == () else hybrid_core.validate_tags(tags)

    def _serializer(self, serializer: Serializer | None) -> Serializer:
        return self.serializer if serializer is None else serializer

    # -- invalidation generations --------------------------------------------------------
    def _generation(self, key: str) -> tuple[int, int]:
        """A token for ``key`` that changes whenever ``key`` (or everything) is invalidated."""
        with self._gen_lock:
            return self._gen_all, self._gen_keys.get(key, 0)

    def _still(self, key: str, token: tuple[int, int]) -> bool:
        """Whether nothing invalidated ``key`` since ``token`` was taken (fills may write)."""
        return self._generation(key) == token

    def _bump(self, key: str | None) -> None:
        """Record an invalidation of ``key`` (None: of every key, e.g. a tag or a reconnect)."""
        with self._gen_lock:
            if key is None:
                self._gen_all += 1
                self._gen_keys.clear()  # the global counter now voids every older token
            else:
                self._gen_keys[key] = self._gen_keys.get(key, 0) + 1

    # -- L1 -------------------------------------------------------------------------------
    def _read_local(self, key: str, flags: HybridCacheEntryFlags, ser: Serializer) -> Any:
        """The L1 value of ``key`` or ``MISS`` (L1 is skipped while invalidations are lost)."""
        if not self._live or flags & _F.DISABLE_LOCAL_CACHE_READ:
            return MISS
        entry = self.local.get(key, self._clock())
        if entry is None:
            return MISS
        if self._tags.is_stale(entry.created, entry.tags):
            self.local.remove(key)
            return MISS
        return entry.value if entry.has_value else ser.loads(entry.payload)

    def _write_local(
        self,
        key: str,
        value: Any,
        payload: bytes,
        created: int,
        expires: int,
        tags: tuple[str, ...],
        flags: HybridCacheEntryFlags,
    ) -> None:
        if flags & _F.DISABLE_LOCAL_CACHE_WRITE:
            return
        keep = type(value) in IMMUTABLE_TYPES
        entry = LocalEntry(payload, created, expires, tags, value if keep else None, keep)
        self.local.set(key, entry)

    def _too_big(self, payload: bytes) -> bool:
        if len(payload) <= self.options.maximum_payload_bytes:
            return False
        _log.warning(
            "hybrid cache: a value of %d bytes exceeds maximum_payload_bytes (%d); not cached",
            len(payload),
            self.options.maximum_payload_bytes,
        )
        return True

    # -- L2 frames ------------------------------------------------------------------------
    def _decode(self, key: str, data: bytes, now: int) -> Frame | None:
        """The frame of ``data`` when it is one for ``key`` and not expired, else None."""
        try:
            frame = hybrid_core.decode_frame(data, key)
        except FrameError as exc:
            _log.debug("hybrid cache: the L2 value of a key is not usable (%s): a miss", exc)
            return None
        return frame if frame.expires > now else None

    def _tag_fetch_list(self, frame: Frame, now: int) -> list[str]:
        """The tags (``*`` included) whose invalidation times must be read before deciding."""
        return self._tags.unknown(frame.tags, now)

    def _learn_tags(self, tags: list[str], records: list[bytes | None], now: int) -> None:
        for tag, data in zip(tags, records, strict=True):
            self._tags.record(tag, hybrid_core.decode_tag_record(data), now)

    def _accept_l2(
        self,
        key: str,
        frame: Frame,
        ser: Serializer,
        entry: ResolvedEntry,
        now: int,
        token: tuple[int, int] | None = None,
    ) -> Any:
        """The value of a fresh L2 frame, or ``MISS`` when a tag voids it; written to L1
        unless ``key`` was invalidated since ``token`` was taken."""
        if self._tags.is_stale(frame.created, frame.tags):
            return MISS
        value = ser.loads(frame.payload)
        if token is not None and not self._still(key, token):
            return value
        expires = min(now + entry.local_expiration, frame.expires)
        self._write_local(
            key, value, frame.payload, frame.created, expires, frame.tags, entry.flags
        )
        return value

    def _frame(
        self, key: str, payload: bytes, tags: tuple[str, ...], entry: ResolvedEntry, now: int
    ) -> Frame:
        return Frame(key, now, now + entry.expiration, tags, payload)

    def _l2_options(self, frame: Frame) -> DistributedCacheEntryOptions:
        remaining_us = max((frame.expires - self._clock()) // 10, 1000)
        return DistributedCacheEntryOptions(
            absolute_expiration_relative_to_now=timedelta(microseconds=remaining_us)
        )

    # -- invalidation ---------------------------------------------------------------------
    def _message(self, kind: str, name: str, ticks: int) -> bytes:
        return hybrid_core.encode_message(Message(self._sender, kind, ticks, name))

    def _invalidate_tag_locally(self, tag: str, ticks: int) -> None:
        self._bump(None)
        self._tags.record(tag, ticks, self._clock())
        if tag == ALL_TAGS:
            self.local.clear()
        else:
            self.local.remove_tag(tag)

    def on_message(self, data: bytes) -> None:
        """Apply another process's invalidation to L1 (our own messages are ignored)."""
        message = hybrid_core.decode_message(data)
        if message is None or message.sender == self._sender:
            return
        if message.kind == "K":
            self._bump(message.name)
            self.local.remove(message.name)
        else:
            self._invalidate_tag_locally(message.name, message.ticks)

    def on_subscribed(self) -> None:
        """Subscribed: after a reconnect, messages may have been missed, so drop L1 and the
        remembered tag times; then trust L1 again."""
        self._subscriptions += 1
        if self._subscriptions > 1:
            self._bump(None)  # fills in flight may hold what they read before the drop
        if self._subscriptions > 1 or not self._live:
            self.local.clear()
            self._tags.forget()
        self._live = True

    def on_disconnected(self) -> None:
        """Invalidations can no longer arrive: stop reading L1 and drop it."""
        self._live = False
        self._bump(None)
        self.local.clear()
        self._tags.forget()
