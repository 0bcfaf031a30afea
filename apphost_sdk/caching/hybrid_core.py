"""The hybrid cache's rules, free of I/O: flags, options, the L2 frame, tags, messages.

``HybridCache`` and ``AsyncHybridCache`` both decide here what to store, what a stored frame
means and whether an entry is still valid, so the two twins cannot drift apart (as h11 keeps
HTTP's rules apart from sockets). Times are integer .NET UTC ticks (100 ns), as ``core``.

L2 frame (the ``data`` field of an ordinary distributed-cache entry; all integers little
endian). It is our own format: entries written by .NET's ``HybridCache`` read as misses.

=======  ====================  ==========================================================
bytes    field                 notes
=======  ====================  ==========================================================
4        magic ``AHC\\x01``     "apphost hybrid cache", format version 1
8        created               int64 ticks: when the value was produced
8        expires               int64 ticks: the end of the entry's whole (L2) life
2        key length            uint16, then the key in UTF-8 (another key is a miss)
2        tag count             uint16, then per tag: uint16 length + UTF-8
4        payload length        uint32, then the serialized value
4        trailer ``\\x01CHA``   a reader rejects leftover or missing bytes
=======  ====================  ==========================================================

Tag invalidation records live in L2 under ``{instance}__apphost_hct__{tag}`` (8 bytes, int64
ticks; kept 1000 days). Invalidation messages travel on the pub/sub channel
``{instance}__apphost_hybrid__``: ``{sender} K {ticks} {key}`` (a key was set or removed) or
``{sender} T {ticks} {tag}`` (a tag, ``*`` meaning everything, was invalidated).
"""

from __future__ import annotations

import enum
import struct
import threading
from collections.abc import Iterable, Sequence
from datetime import timedelta
from typing import Any

import attrs

from .core import timedelta_to_ticks

__all__ = [
    "ALL_TAGS",
    "DEFAULT_EXPIRATION",
    "TAG_RECORD_LIFETIME",
    "Frame",
    "FrameError",
    "HybridCacheEntryFlags",
    "HybridCacheEntryOptions",
    "HybridCacheOptions",
    "Message",
    "ResolvedEntry",
    "TagBook",
    "channel_name",
    "decode_frame",
    "decode_message",
    "decode_tag_record",
    "encode_frame",
    "encode_message",
    "encode_tag_record",
    "key_problem",
    "resolve_entry",
    "tag_record_key",
    "validate_tags",
]

#: The tag that stands for every entry (``remove_by_tag("*")``); reserved at write time.
ALL_TAGS = "*"
DEFAULT_EXPIRATION = timedelta(minutes=5)
TAG_RECORD_LIFETIME = timedelta(days=1000)

_MAGIC = b"AHC\x01"
_TRAILER = b"\x01CHA"
_HEADER = struct.Struct("<4sqq")
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_TICKS = struct.Struct("<q")
_MIN_FRAME = _HEADER.size + 2 + 2 + 4 + len(_TRAILER)


class HybridCacheEntryFlags(enum.Flag):
    """What one call may skip, bit for bit as .NET's ``HybridCacheEntryFlags``."""

    NONE = 0
    DISABLE_LOCAL_CACHE_READ = 1
    DISABLE_LOCAL_CACHE_WRITE = 2
    DISABLE_LOCAL_CACHE = 3
    DISABLE_DISTRIBUTED_CACHE_READ = 4
    DISABLE_DISTRIBUTED_CACHE_WRITE = 8
    DISABLE_DISTRIBUTED_CACHE = 12
    DISABLE_UNDERLYING_DATA = 16
    DISABLE_COMPRESSION = 32  # declared, as in .NET; nothing is compressed


def _timedelta(value: Any) -> timedelta | None:
    if value is None or isinstance(value, timedelta):
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"expected a timedelta or a number of seconds, not {type(value).__name__}")
    return timedelta(seconds=value)


def _positive(_inst: Any, attribute: Any, value: timedelta | None) -> None:
    if isinstance(value, timedelta) and value <= timedelta(0):
        raise ValueError(f"{attribute.name} must be positive, not {value}")


def _flags(value: Any) -> HybridCacheEntryFlags | None:
    if value is None or isinstance(value, HybridCacheEntryFlags):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return HybridCacheEntryFlags(value)
    raise TypeError(f"flags must be HybridCacheEntryFlags, not {type(value).__name__}")


@attrs.frozen
class HybridCacheEntryOptions:
    """Per-entry options; None means "use the cache's default" (as .NET's nullable fields).

    ``expiration`` is the whole (L2) lifetime; ``local_expiration`` the L1 one, capped by
    ``expiration``. Durations accept a ``timedelta`` or seconds and must be positive.
    """

    expiration: timedelta | None = attrs.field(
        default=None, converter=_timedelta, validator=_positive
    )
    local_expiration: timedelta | None = attrs.field(
        default=None, converter=_timedelta, validator=_positive
    )
    flags: HybridCacheEntryFlags | None = attrs.field(default=None, converter=_flags)


def _at_least_one(_inst: Any, attribute: Any, value: int) -> None:
    if value < 1:
        raise ValueError(f"{attribute.name} must be at least 1, not {value}")


@attrs.frozen
class HybridCacheOptions:
    """Cache-wide settings: defaults per entry, size limits, and tag-record freshness.

    ``maximum_payload_bytes`` (1 MiB) and ``maximum_key_length`` (1024) are .NET's; values or
    keys beyond them are not cached. L1 holds at most ``local_max_entries`` entries and
    ``local_max_bytes`` serialized bytes. ``tag_refresh`` is how long a tag's invalidation
    time read from L2 is trusted before it is read again (.NET keeps it forever).
    """

    default_entry_options: HybridCacheEntryOptions = HybridCacheEntryOptions()
    maximum_payload_bytes: int = attrs.field(default=1 << 20, validator=_at_least_one)
    maximum_key_length: int = attrs.field(default=1024, validator=_at_least_one)
    local_max_entries: int = attrs.field(default=10_000, validator=_at_least_one)
    local_max_bytes: int = attrs.field(default=64 << 20, validator=_at_least_one)
    tag_refresh: timedelta = attrs.field(
        default=timedelta(seconds=30), converter=_timedelta, validator=_positive
    )


@attrs.frozen
class ResolvedEntry:
    """The effective options of one call, in ticks."""

    expiration: int
    local_expiration: int
    flags: HybridCacheEntryFlags


def resolve_entry(
    defaults: HybridCacheEntryOptions,
    expiration: timedelta | float | None,
    local_expiration: timedelta | float | None,
    flags: HybridCacheEntryFlags | None,
) -> ResolvedEntry:
    """Per-call values over the defaults; L1 life defaults to, and is capped by, the L2 one."""
    call = HybridCacheEntryOptions(expiration, local_expiration, flags)
    whole = call.expiration or defaults.expiration or DEFAULT_EXPIRATION
    local = call.local_expiration or defaults.local_expiration or whole
    chosen = call.flags if call.flags is not None else defaults.flags
    return ResolvedEntry(
        timedelta_to_ticks(whole),
        timedelta_to_ticks(min(local, whole)),
        chosen if chosen is not None else HybridCacheEntryFlags.NONE,
    )


def key_problem(key: object, maximum_length: int) -> str | None:
    """Why ``key`` cannot be cached (empty, too long, control characters), or None.

    Such keys are not errors in .NET: the factory runs every time. A non-str key is a
    ``TypeError`` (a programming error, not data).
    """
    if not isinstance(key, str):
        raise TypeError(f"key must be a str, got {type(key).__name__}")
    if not key:
        return "the key is empty"
    if len(key) > maximum_length:
        return f"the key is longer than maximum_key_length ({maximum_length})"
    if any(ord(c) < 0x20 for c in key):
        return "the key holds a control character (0x00-0x1F)"
    return None


def validate_tags(tags: Iterable[str]) -> tuple[str, ...]:
    """Tags as a tuple of distinct non-empty strings; ``*`` is reserved (an error naming it)."""
    if isinstance(tags, (str, bytes)):
        raise TypeError("tags must be an iterable of str (a tuple or list), not one str")
    result: list[str] = []
    for i, tag in enumerate(tags):
        if not isinstance(tag, str):
            raise TypeError(f"tags[{i}] must be a str, got {type(tag).__name__}")
        if not tag or tag == ALL_TAGS:
            raise ValueError(f"tags[{i}] is {tag!r}: tags must be non-empty and not '*'")
        if tag not in result:
            result.append(tag)
    return tuple(result)


# -- the L2 frame ---------------------------------------------------------------------------
class FrameError(ValueError):
    """A stored value is not a valid frame for the key (read as a miss)."""


@attrs.frozen
class Frame:
    """One decoded L2 entry."""

    key: str
    created: int
    expires: int
    tags: tuple[str, ...]
    payload: bytes


def _text(data: bytes) -> bytes:
    return _U16.pack(len(data)) + data


def encode_frame(frame: Frame) -> bytes:
    """The bytes stored in L2 for ``frame`` (see the module docstring)."""
    key = frame.key.encode("utf-8")
    parts = [_HEADER.pack(_MAGIC, frame.created, frame.expires), _text(key)]
    parts.append(_U16.pack(len(frame.tags)))
    parts.extend(_text(t.encode("utf-8")) for t in frame.tags)
    parts += [_U32.pack(len(frame.payload)), frame.payload, _TRAILER]
    return b"".join(parts)


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        end = self.pos + n
        if end > len(self.data):
            raise FrameError("the frame is truncated")
        chunk = self.data[self.pos : end]
        self.pos = end
        return chunk

    def u16(self) -> int:
        return int(_U16.unpack(self.take(2))[0])

    def text(self) -> str:
        try:
            return self.take(self.u16()).decode("utf-8")
        except UnicodeDecodeError:
            raise FrameError("a key or tag is not UTF-8") from None


def decode_frame(data: bytes, key: str) -> Frame:
    """Parse a stored frame for ``key``; anything else is a ``FrameError`` saying why."""
    if len(data) < _MIN_FRAME:
        raise FrameError("too short to be a hybrid cache frame")
    magic, created, expires = _HEADER.unpack_from(data)
    if magic != _MAGIC:
        raise FrameError("not a hybrid cache frame (a plain or .NET HybridCache value?)")
    reader = _Reader(data)
    reader.pos = _HEADER.size
    stored_key = reader.text()
    if stored_key != key:
        raise FrameError("the frame belongs to another key")
    tags = tuple(reader.text() for _ in range(reader.u16()))
    payload = reader.take(int(_U32.unpack(reader.take(4))[0]))
    if reader.take(len(_TRAILER)) != _TRAILER or reader.pos != len(data):
        raise FrameError("the frame has a bad trailer or leftover bytes")
    return Frame(stored_key, created, expires, tags, payload)


# -- tags -----------------------------------------------------------------------------------
def tag_record_key(tag: str) -> str:
    """The distributed-cache key (before the instance name) of a tag's invalidation time."""
    return f"__apphost_hct__{tag}"


def encode_tag_record(ticks: int) -> bytes:
    """A tag record's value: int64 LE ticks."""
    return _TICKS.pack(ticks)


def decode_tag_record(data: bytes | None) -> int:
    """A tag record's ticks; absent or malformed reads as never invalidated (0)."""
    if data is None or len(data) != _TICKS.size:
        return 0
    return int(_TICKS.unpack(data)[0])


class TagBook:
    """When each tag (and ``*``) was last invalidated, as far as this process knows.

    Times come from this process's ``remove_by_tag``, from other processes' messages and from
    L2 records; a time read from L2 is trusted for ``refresh`` ticks, then read again. An entry
    created at or before the invalidation of ``*`` or of one of its tags is stale. Thread-safe.
    """

    def __init__(self, refresh_ticks: int) -> None:
        self._refresh = refresh_ticks
        self._times: dict[str, tuple[int, int]] = {}  # tag -> (invalidated, learned at)
        self._lock = threading.Lock()

    def record(self, tag: str, ticks: int, now: int) -> None:
        """Remember that ``tag`` was invalidated at ``ticks`` (the latest time wins)."""
        with self._lock:
            known = self._times.get(tag)
            self._times[tag] = (max(ticks, known[0] if known else 0), now)

    def unknown(self, tags: Sequence[str], now: int) -> list[str]:
        """Of ``*`` and ``tags``, those whose time is unknown or older than the refresh."""
        with self._lock:
            out = []
            for tag in (ALL_TAGS, *tags):
                known = self._times.get(tag)
                if known is None or now - known[1] > self._refresh:
                    out.append(tag)
            return out

    def is_stale(self, created: int, tags: Sequence[str]) -> bool:
        """Whether an entry made at ``created`` with ``tags`` was invalidated since."""
        times = self._times
        if not times:
            return False
        known = times.get(ALL_TAGS)
        if known is not None and created <= known[0]:
            return True
        for tag in tags:
            known = times.get(tag)
            if known is not None and created <= known[0]:
                return True
        return False

    def forget(self) -> None:
        """Drop every remembered time (after missed messages: read them again)."""
        with self._lock:
            self._times.clear()


# -- invalidation messages ------------------------------------------------------------------
def channel_name(instance_name: str) -> bytes:
    """The pub/sub channel of the caches sharing ``instance_name``."""
    return f"{instance_name}__apphost_hybrid__".encode()


@attrs.frozen
class Message:
    """One invalidation: ``kind`` ``K`` (a key) or ``T`` (a tag) from ``sender``."""

    sender: str
    kind: str
    ticks: int
    name: str


def encode_message(message: Message) -> bytes:
    """The bytes published for ``message``."""
    return f"{message.sender} {message.kind} {message.ticks} {message.name}".encode()


def decode_message(data: bytes) -> Message | None:
    """Parse a published message; None for anything that is not one of ours."""
    try:
        sender, kind, ticks, name = data.decode("utf-8").split(" ", 3)
        if kind not in ("K", "T"):
            return None
        return Message(sender, kind, int(ticks), name)
    except (UnicodeDecodeError, ValueError):
        return None
