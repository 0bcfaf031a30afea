"""The hybrid cache's L1: an in-process LRU bounded by entry count and serialized bytes.

Thread-safe (one lock; every operation is O(1) except tag eviction). Values of immutable
types are kept as objects; anything else is kept only as bytes and deserialized afresh on
each hit, so a caller mutating what it got cannot change what the next caller sees.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import attrs

__all__ = ["IMMUTABLE_TYPES", "LocalCache", "LocalEntry"]

#: Types whose instances are handed out as is from L1 (no copy needed).
IMMUTABLE_TYPES: tuple[type, ...] = (str, bytes, int, float, bool, complex, type(None), frozenset)


@attrs.frozen(slots=True)
class LocalEntry:
    """One L1 entry: the serialized ``payload`` (and the object when immutable), when it was
    created (ticks, for tag checks), when it stops being served, and its tags."""

    payload: bytes
    created: int
    expires: int
    tags: tuple[str, ...] = ()
    value: object = None
    has_value: bool = False


class LocalCache:
    """``max_entries`` entries and ``max_bytes`` payload bytes at most, least recently used
    evicted first; an entry bigger than ``max_bytes`` on its own is not kept."""

    def __init__(self, max_entries: int, max_bytes: int) -> None:
        if max_entries < 1 or max_bytes < 1:
            raise ValueError("max_entries and max_bytes must be at least 1")
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._entries: OrderedDict[str, LocalEntry] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def size_bytes(self) -> int:
        """The payload bytes held now."""
        return self._bytes

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def get(self, key: str, now: int) -> LocalEntry | None:
        """The live entry of ``key`` (now the most recently used), or None; drops it expired."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if entry.expires <= now:
                self._drop(key)
                return None
            self._entries.move_to_end(key)
            return entry

    def set(self, key: str, entry: LocalEntry) -> bool:
        """Store ``entry`` (replacing any), evicting the least recently used beyond the bounds;
        False (and nothing kept) when it alone exceeds ``max_bytes``."""
        size = len(entry.payload)
        with self._lock:
            if key in self._entries:
                self._drop(key)
            if size > self.max_bytes:
                return False
            self._entries[key] = entry
            self._bytes += size
            while len(self._entries) > self.max_entries or self._bytes > self.max_bytes:
                oldest = next(iter(self._entries))
                self._drop(oldest)
            return True

    def remove(self, key: str) -> None:
        """Forget ``key`` if present."""
        with self._lock:
            if key in self._entries:
                self._drop(key)

    def remove_tag(self, tag: str) -> int:
        """Forget every entry carrying ``tag``; how many."""
        with self._lock:
            doomed = [k for k, e in self._entries.items() if tag in e.tags]
            for key in doomed:
                self._drop(key)
            return len(doomed)

    def clear(self) -> None:
        """Forget everything."""
        with self._lock:
            self._entries.clear()
            self._bytes = 0

    def keys(self) -> list[str]:
        """The keys, least recently used first (for tests and diagnostics)."""
        with self._lock:
            return list(self._entries)

    def _drop(self, key: str) -> None:
        entry = self._entries.pop(key)
        self._bytes -= len(entry.payload)
