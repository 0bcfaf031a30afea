"""The .NET ``RedisCache`` storage format and expiry rules, free of I/O.

Both ``DistributedCache`` and ``AsyncDistributedCache`` call these functions to decide what to
send and how to read what comes back, so the two twins cannot drift apart. All expiry
arithmetic is in integer .NET ticks (100 ns) so values written by .NET read back exactly.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

import attrs

from .options import DistributedCacheEntryOptions

__all__ = [
    "ABSEXP",
    "DATA",
    "NOT_PRESENT",
    "READ_SCRIPT",
    "SLDEXP",
    "WRITE_SCRIPT",
    "CacheEntry",
    "SetPlan",
    "datetime_to_ticks",
    "encode_key",
    "encode_keys",
    "now_ticks",
    "parse_entry",
    "plan_reads",
    "plan_refresh",
    "plan_set",
    "ticks_to_datetime",
    "timedelta_to_ticks",
]

ABSEXP = b"absexp"
SLDEXP = b"sldexp"
DATA = b"data"
NOT_PRESENT = -1
TICKS_PER_SECOND = 10_000_000
TICKS_PER_MILLISECOND = 10_000
UNIX_EPOCH_TICKS = 621_355_968_000_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def now_ticks() -> int:
    """The current UTC time in .NET ticks."""
    return UNIX_EPOCH_TICKS + time.time_ns() // 100


def timedelta_to_ticks(value: timedelta) -> int:
    """Convert exactly (timedelta has microsecond resolution; a tick is 100 ns)."""
    return ((value.days * 86_400 + value.seconds) * 1_000_000 + value.microseconds) * 10


def datetime_to_ticks(value: datetime) -> int:
    """UTC ticks of ``value``; a naive datetime is read as local time."""
    aware = value if value.tzinfo is not None else value.astimezone()
    return UNIX_EPOCH_TICKS + timedelta_to_ticks(aware - _EPOCH)


def ticks_to_datetime(ticks: int) -> datetime:
    """The UTC datetime of a tick count (truncated to microseconds)."""
    return _EPOCH + timedelta(microseconds=(ticks - UNIX_EPOCH_TICKS) // 10)


def encode_key(prefix: bytes, key: object, argument: str = "key") -> bytes:
    """The Redis key of ``key``: ``prefix`` and the key in UTF-8, as .NET's ``RedisCache``.

    Both twins (and every method of each) encode keys here, so a key that is not a ``str``
    (bytes, an int, None) is the same ``TypeError`` naming ``argument`` everywhere.
    """
    if not isinstance(key, str):
        raise TypeError(f"{argument} must be a str, got {type(key).__name__}")
    try:
        return prefix + key.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(
            f"{argument} is not valid Unicode text (it holds a lone surrogate): pass a str "
            "that can be encoded as UTF-8"
        ) from None


def encode_keys(prefix: bytes, keys: object, argument: str = "keys") -> list[bytes]:
    """``encode_key`` of each of ``keys`` (an iterable of str, never one str: a str is an
    iterable of its characters, which would read one entry per character)."""
    if isinstance(keys, (str, bytes, bytearray, memoryview)) or not isinstance(keys, Iterable):
        raise TypeError(
            f"{argument} must be an iterable of str keys (a list, say), got {type(keys).__name__}"
        )
    return [encode_key(prefix, k, f"{argument}[{i}]") for i, k in enumerate(keys)]


def _trunc_div(a: int, b: int) -> int:
    """Integer division truncating toward zero, as C# does."""
    q = abs(a) // b
    return q if a >= 0 else -q


@attrs.frozen
class SetPlan:
    """What ``set`` writes: the hash fields and the TTL in seconds (None: no EXPIRE)."""

    key: bytes
    absolute: int
    sliding: int
    data: bytes
    ttl_seconds: int | None

    def hset_args(self) -> tuple[bytes | int, ...]:
        """Field/value arguments of the HSET command."""
        return (ABSEXP, self.absolute, SLDEXP, self.sliding, DATA, self.data)

    def script_args(self) -> tuple[bytes | int, ...]:
        """ARGV of ``WRITE_SCRIPT``."""
        ttl: bytes | int = b"" if self.ttl_seconds is None else self.ttl_seconds
        return (self.absolute, self.sliding, self.data, ttl)


def plan_set(
    key: bytes, value: bytes, options: DistributedCacheEntryOptions | None, now: int
) -> SetPlan:
    """Decide the HSET fields and EXPIRE of a ``set`` at ``now`` (ticks).

    An absolute expiration that is not in the future is a ``ValueError``, as in .NET.
    """
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise TypeError(
            f"value must be bytes, got {type(value).__name__} (cache values are bytes; "
            "set_string() stores text)"
        )
    absolute: int | None = None
    sliding: int | None = None
    if options is not None:
        if options.absolute_expiration_relative_to_now is not None:
            absolute = now + timedelta_to_ticks(options.absolute_expiration_relative_to_now)
        elif options.absolute_expiration is not None:
            absolute = datetime_to_ticks(options.absolute_expiration)
            if absolute <= now:
                raise ValueError(
                    "absolute_expiration must be in the future, not "
                    f"{options.absolute_expiration.isoformat()}"
                )
        if options.sliding_expiration is not None:
            sliding = timedelta_to_ticks(options.sliding_expiration)
    ttl: int | None
    if absolute is not None and sliding is not None:
        ttl = min(absolute - now, sliding)
    elif absolute is not None:
        ttl = absolute - now
    else:
        ttl = sliding
    return SetPlan(
        key,
        NOT_PRESENT if absolute is None else absolute,
        NOT_PRESENT if sliding is None else sliding,
        bytes(value),
        None if ttl is None else _trunc_div(ttl, TICKS_PER_SECOND),
    )


@attrs.frozen
class CacheEntry:
    """What HMGET returned: expiries in ticks (None when absent or -1) and the data."""

    absolute: int | None
    sliding: int | None
    data: bytes | None


def _ticks_field(raw: Any) -> int | None:
    if raw is None or raw is False:
        return None
    value = int(raw)
    return None if value == NOT_PRESENT else value


def parse_entry(values: Sequence[Any]) -> CacheEntry:
    """Read an ``HMGET absexp sldexp [data]`` reply; a missing field reads like -1."""
    data = values[2] if len(values) > 2 else None
    return CacheEntry(_ticks_field(values[0]), _ticks_field(values[1]), data)


def plan_refresh(entry: CacheEntry, now: int) -> tuple[bytes, int] | None:
    """The expiry command a read of ``entry`` at ``now`` sends, or None (no sliding window).

    Returns ``(b"PEXPIRE", ms)`` or ``(b"EXPIRE", seconds)`` as StackExchange.Redis's
    ``KeyExpire(TimeSpan)`` does; a value <= 0 deletes the key.
    """
    if entry.sliding is None:
        return None
    expiry = entry.sliding
    if entry.absolute is not None:
        remaining = entry.absolute - now
        if remaining <= entry.sliding:
            expiry = remaining
    ms = _trunc_div(expiry, TICKS_PER_MILLISECOND)
    if ms % 1000 != 0:
        return (b"PEXPIRE", ms)
    return (b"EXPIRE", ms // 1000)


def plan_reads(
    keys: Sequence[bytes], replies: Sequence[Sequence[Any]], now: int
) -> tuple[list[bytes | None], list[tuple[bytes, bytes, int]]]:
    """Read the ``HMGET`` replies of ``keys`` at ``now`` (the script-free path).

    Returns the data values (None where missing) and the expiry commands to send after them,
    each ``(command, key, value)`` as ``plan_refresh`` decides.
    """
    data: list[bytes | None] = []
    commands: list[tuple[bytes, bytes, int]] = []
    for key, reply in zip(keys, replies, strict=True):
        entry = parse_entry(reply)
        data.append(entry.data)
        command = plan_refresh(entry, now)
        if command is not None:
            commands.append((command[0], key, command[1]))
    return data, commands


# The read script: HMGET plus the sliding-expiry update of ``plan_refresh`` in one round trip.
# KEYS = the keys; ARGV[1] = now in ticks (decimal); ARGV[2] = mode:
#   "1" one key, return its data (nil when missing); "0" one key, refresh only (returns nil);
#   "m" many keys, return the list of data values (nil where missing).
# Only the data travels back: the expiry work is done here, so the reply is as small as GET's.
# Ticks exceed 2^53, so abs - now is computed on two exact halves of the decimal strings.
READ_SCRIPT = b"""
local mode = ARGV[2]
local function read(key, with_data)
  local r
  if with_data then
    r = redis.call('HMGET', key, 'absexp', 'sldexp', 'data')
  else
    r = redis.call('HMGET', key, 'absexp', 'sldexp')
  end
  local sld = r[2]
  if not sld or sld == '-1' then return r end
  sld = tonumber(sld)
  local expiry = sld
  local abs = r[1]
  if abs and abs ~= '-1' then
    local now = ARGV[1]
    local ah = tonumber(string.sub(abs, 1, -10)) or 0
    local nh = tonumber(string.sub(now, 1, -10)) or 0
    local remaining = (ah - nh) * 1000000000
      + (tonumber(string.sub(abs, -9)) - tonumber(string.sub(now, -9)))
    if remaining <= sld then expiry = remaining end
  end
  local ms
  if expiry >= 0 then ms = math.floor(expiry / 10000) else ms = math.ceil(expiry / 10000) end
  if ms == 0 then ms = 0 end -- no '-0': Redis rejects it as an integer
  if ms % 1000 ~= 0 then
    redis.call('PEXPIRE', key, string.format('%.0f', ms))
  else
    redis.call('EXPIRE', key, string.format('%.0f', ms / 1000))
  end
  return r
end
if mode == '1' then return read(KEYS[1], true)[3] end
if mode == 'm' then
  local out = {}
  for i, key in ipairs(KEYS) do out[i] = read(key, true)[3] end
  return out
end
read(KEYS[1], false)
return false
"""

# The write script (what .NET up to 8 sent): HSET and, when ARGV[4] is not empty, EXPIRE.
# ARGV = absexp, sldexp, data, ttl seconds or "", and "nx" to write only when the key is absent.
WRITE_SCRIPT = b"""
if ARGV[5] == 'nx' and redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'absexp', ARGV[1], 'sldexp', ARGV[2], 'data', ARGV[3])
if ARGV[4] ~= '' then redis.call('EXPIRE', KEYS[1], ARGV[4]) end
return 1
"""
