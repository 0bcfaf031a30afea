"""The conformance cases of .NET's Redis ``IDistributedCache``, against a real redis-server.

Every case runs against both twins (sync and async) and, where scripting matters, with and
without Lua scripting (an ACL user denied ``@scripting`` forces the fallback).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import redis

from apphost_sdk.caching import DistributedCacheEntryOptions as Options
from apphost_sdk.caching import core

from .monitor import expiry_commands

NOW = 638_700_000_000_000_123  # an arbitrary instant in .NET ticks, deliberately not ms-aligned
VALUE = b"\x00\x01value\xff"
KINDS = ["sync", "async"]


def fixed_clock() -> int:
    return NOW


# -- 1. invalid options ----------------------------------------------------------------------


@pytest.mark.parametrize("field", ["absolute_expiration_relative_to_now", "sliding_expiration"])
@pytest.mark.parametrize("value", [timedelta(0), timedelta(seconds=-1), 0, -0.5])
def test_non_positive_durations_are_errors(field: str, value: Any) -> None:
    with pytest.raises(ValueError, match=field):
        Options(**{field: value})


@pytest.mark.parametrize("kind", KINDS)
def test_absolute_expiration_not_in_future_is_an_error(
    kind: str, open_cache: Callable[..., Any], raw: redis.Redis
) -> None:
    cache = open_cache(kind)
    past = datetime.now(timezone.utc) - timedelta(seconds=1)
    with pytest.raises(ValueError, match="absolute_expiration must be in the future"):
        cache.set("k", VALUE, Options(absolute_expiration=past))
    exact = open_cache(kind, clock=fixed_clock)
    with pytest.raises(ValueError):
        exact.set("k", VALUE, Options(absolute_expiration=core.ticks_to_datetime(NOW - 3)))
    assert raw.exists("k") == 0


# -- 2. sub-second ttl -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        Options(absolute_expiration_relative_to_now=timedelta(milliseconds=500)),
        Options(sliding_expiration=timedelta(milliseconds=999)),
        Options(sliding_expiration=10, absolute_expiration_relative_to_now=0.2),
    ],
)
def test_sub_second_ttl_deletes_at_once(
    mode: dict[str, Any], open_cache: Callable[..., Any], raw: redis.Redis, options: Options
) -> None:
    cache = open_cache(**mode)
    cache.set("short", VALUE, options)
    assert raw.exists("short") == 0
    assert cache.get("short") is None


# -- 3. and 4. sliding expiry over time --------------------------------------------------------


def _read_every_half_second(
    cache: Any, reads: int, start: float
) -> list[tuple[float, float, bytes | None]]:
    """Reads as ``(worst-case gap since the previous read, seconds since start, value)``.

    The server handled each read somewhere between the times taken before and after it, so
    the worst-case gap runs from the previous read's start to this read's end. Callers only
    judge reads that came on time, so a stalled, loaded machine cannot fake a failure.
    """
    seen = []
    previous_start = start
    for i in range(1, reads + 1):
        time.sleep(max(0.0, start + 0.5 * i - time.monotonic()))
        before = time.monotonic()
        value = cache.get("slide")
        after = time.monotonic()
        seen.append((after - previous_start, after - start if value else before - start, value))
        previous_start = before
    return seen


@pytest.mark.parametrize("kind", KINDS)
def test_sliding_capped_by_absolute(
    kind: str, open_cache: Callable[..., Any], raw: redis.Redis
) -> None:
    cache = open_cache(kind)
    start = time.monotonic()
    cache.set("slide", VALUE, Options(sliding_expiration=1, absolute_expiration_relative_to_now=3))
    seen = _read_every_half_second(cache, 8, start)
    on_time = True
    for gap, elapsed, value in seen:
        on_time = on_time and gap < 0.9
        if elapsed < 2.7 and on_time:
            assert value == VALUE, f"gone too early at {elapsed:.2f}s"
        if elapsed > 3.3:
            assert value is None, f"still alive at {elapsed:.2f}s"
    assert raw.exists("slide") == 0


@pytest.mark.parametrize("kind", KINDS)
def test_sliding_stays_alive_while_read(
    kind: str, open_cache: Callable[..., Any], raw: redis.Redis
) -> None:
    cache = open_cache(kind)
    start = time.monotonic()
    cache.set("slide", VALUE, Options(sliding_expiration=1))
    seen = _read_every_half_second(cache, 6, start)
    assert all(value == VALUE for gap, _elapsed, value in seen if gap < 0.9)
    assert any(value == VALUE for _gap, elapsed, value in seen if elapsed > 2.5)
    assert 0 < raw.pttl("slide") <= 1000
    time.sleep(1.3)
    assert cache.get("slide") is None
    assert raw.exists("slide") == 0


# -- 5. to 7. format details -------------------------------------------------------------------


def test_empty_value_round_trips(twin: Any, raw: redis.Redis) -> None:
    twin.set("empty", b"")
    assert twin.get("empty") == b""
    assert raw.hget("empty", "data") == b""
    assert twin.get("missing") is None


def test_no_options_never_expires(
    mode: dict[str, Any], open_cache: Callable[..., Any], raw: redis.Redis
) -> None:
    cache = open_cache(**mode)
    cache.set("forever", VALUE)
    assert raw.ttl("forever") == -1
    assert raw.hgetall("forever") == {b"absexp": b"-1", b"sldexp": b"-1", b"data": VALUE}
    assert raw.type("forever") == b"hash"


def test_instance_name_prefix_byte_for_byte(
    twin: Any, open_cache: Callable[..., Any], raw: redis.Redis
) -> None:
    kind = "async" if hasattr(twin, "_loop") else "sync"
    prefixed = open_cache(kind, instance_name="Shop:")
    prefixed.set("ключ", VALUE)
    expected_key = b"Shop:" + "ключ".encode()
    assert raw.keys() == [expected_key]
    assert prefixed.full_key("ключ") == expected_key
    assert twin.get("ключ") is None  # no prefix: a different key
    assert twin.get("Shop:ключ") == VALUE  # plain concatenation, no separator added
    prefixed.remove("ключ")
    assert raw.exists(expected_key) == 0


# -- what set writes, exactly -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "absexp", "sldexp", "ttl"),
    [
        (Options(absolute_expiration_relative_to_now=90), NOW + 900_000_000, -1, 90),
        (Options(sliding_expiration=timedelta(seconds=1, microseconds=500_000)), -1, 15_000_000, 1),
        (
            Options(sliding_expiration=30, absolute_expiration_relative_to_now=10),
            NOW + 100_000_000,
            300_000_000,
            10,
        ),
        (
            Options(sliding_expiration=5, absolute_expiration_relative_to_now=60),
            NOW + 600_000_000,
            50_000_000,
            5,
        ),
        (
            Options(
                absolute_expiration=core.ticks_to_datetime(NOW + 123_456_780),
                absolute_expiration_relative_to_now=7,
            ),
            NOW + 70_000_000,
            -1,
            7,
        ),
    ],
)
def test_set_writes_what_dotnet_writes(
    mode: dict[str, Any],
    open_cache: Callable[..., Any],
    raw: redis.Redis,
    options: Options,
    absexp: int,
    sldexp: int,
    ttl: int,
) -> None:
    cache = open_cache(clock=fixed_clock, **mode)
    cache.set("k", VALUE, options)
    assert raw.hgetall("k") == {
        b"absexp": str(absexp).encode(),
        b"sldexp": str(sldexp).encode(),
        b"data": VALUE,
    }
    assert raw.ttl("k") == ttl


def test_absolute_datetime_is_stored_in_exact_utc_ticks(twin: Any, raw: redis.Redis) -> None:
    when = datetime.now(timezone(timedelta(hours=5, minutes=30))) + timedelta(
        days=1, microseconds=7
    )
    twin.set("k", VALUE, Options(absolute_expiration=when))
    expected = core.UNIX_EPOCH_TICKS + core.timedelta_to_ticks(
        when - datetime(1970, 1, 1, tzinfo=timezone.utc)
    )
    assert int(raw.hget("k", "absexp")) == expected
    assert 86_390 <= raw.ttl("k") <= 86_400


# -- 8. entries written by .NET ------------------------------------------------------------------


def dotnet_write(
    raw: redis.Redis, key: str, absexp: int, sldexp: int, data: bytes | None, ttl: int | None = None
) -> None:
    """Write an entry by raw commands exactly as .NET's RedisCache does (HSET + EXPIRE)."""
    fields: dict[str, Any] = {"absexp": absexp, "sldexp": sldexp}
    if data is not None:
        fields["data"] = data
    raw.hset(key, mapping=fields)
    if ttl is not None:
        raw.expire(key, ttl)


@pytest.mark.parametrize(
    ("absexp", "sldexp", "expected"),
    [
        (-1, 200_000_000, "EXPIRE k 20"),  # whole seconds: EXPIRE
        (-1, 12_345_678_901, "PEXPIRE k 1234567"),  # 1234.5678901 s: PEXPIRE, truncated
        (NOW + 55_000_003, 600_000_000, "PEXPIRE k 5500"),  # absolute closer than sliding
        (NOW + 10_000_003, 600_000_000, "EXPIRE k 1"),  # 1000 ms exactly after truncation
        (NOW + 9_999_999, 600_000_000, "PEXPIRE k 999"),
        (NOW + 600_000_000, 600_000_000, "EXPIRE k 60"),  # remaining == sliding
        (NOW + 1_000_000_000_000, 600_000_000, "EXPIRE k 60"),  # far absolute
        (NOW - 15_000_000, 600_000_000, "PEXPIRE k -1500"),  # expired absolute: deletes
        (NOW - 5_000, 600_000_000, "EXPIRE k 0"),  # -0.5 ms truncates to 0 (never "-0")
        (NOW + 5_000, 600_000_000, "EXPIRE k 0"),
        (NOW - 20_000_000, 600_000_000, "EXPIRE k -2"),
    ],
)
def test_refresh_of_dotnet_entries_sets_the_ttl_dotnet_would(
    mode: dict[str, Any],
    open_cache: Callable[..., Any],
    raw: redis.Redis,
    absexp: int,
    sldexp: int,
    expected: str,
) -> None:
    cache = open_cache(clock=fixed_clock, **mode)
    dotnet_write(raw, "k", absexp, sldexp, VALUE)
    commands = expiry_commands(raw, lambda: cache.get("k"))
    normalized = [c.replace('"', "") for c in commands]
    assert normalized == [expected]
    # the pure core agrees with what went over the wire
    planned = core.plan_refresh(
        core.CacheEntry(None if absexp == -1 else absexp, sldexp, VALUE), NOW
    )
    assert planned is not None and f"{planned[0].decode()} k {planned[1]}" == expected
    # refresh (no data) sends the same command
    dotnet_write(raw, "k", absexp, sldexp, VALUE)
    assert [c.replace('"', "") for c in expiry_commands(raw, lambda: cache.refresh("k"))] == [
        expected
    ]


def test_dotnet_entry_reads_back_value_and_expiry(twin: Any, raw: redis.Redis) -> None:
    now = core.now_ticks()
    dotnet_write(raw, "k", now + 600_000_000, -1, "héllo".encode(), ttl=60)
    assert twin.get_string("k") == "héllo"
    ttl_before = raw.pttl("k")
    twin.refresh("k")  # only an absolute expiry: refresh leaves it alone
    assert 0 < raw.pttl("k") <= ttl_before
    assert 59_000 <= raw.pttl("k") <= 60_000


def test_dotnet_entry_without_expiry_fields(
    mode: dict[str, Any], open_cache: Callable[..., Any], raw: redis.Redis
) -> None:
    cache = open_cache(**mode)
    raw.hset("onlydata", "data", VALUE)  # missing fields read like -1
    assert expiry_commands(raw, lambda: cache.get("onlydata")) == []
    assert cache.get("onlydata") == VALUE
    raw.hset("nodata", mapping={"absexp": -1, "sldexp": -1})
    assert cache.get("nodata") is None


def test_expired_absolute_with_sliding_is_deleted_on_read(
    mode: dict[str, Any], open_cache: Callable[..., Any], raw: redis.Redis
) -> None:
    cache = open_cache(**mode)
    dotnet_write(raw, "late", core.now_ticks() - 10_000_000, 600_000_000, VALUE)
    cache.get("late")
    assert raw.exists("late") == 0


def test_remove_deletes_the_whole_hash(twin: Any, raw: redis.Redis) -> None:
    dotnet_write(raw, "k", -1, -1, VALUE)
    twin.remove("k")
    assert raw.exists("k") == 0
    twin.remove("k")  # removing a missing key is fine


def test_python_entries_read_by_dotnet_rules(
    mode: dict[str, Any], open_cache: Callable[..., Any], raw: redis.Redis
) -> None:
    """What Python writes, .NET's algorithm (run on the raw fields) reads the same way."""
    cache = open_cache(clock=fixed_clock, **mode)
    cache.set(
        "k",
        VALUE,
        Options(
            sliding_expiration=timedelta(seconds=2.5), absolute_expiration_relative_to_now=3600
        ),
    )
    fields = raw.hgetall("k")
    entry = core.parse_entry([fields[b"absexp"], fields[b"sldexp"], fields[b"data"]])
    assert entry == core.CacheEntry(NOW + 36_000_000_000, 25_000_000, VALUE)
    assert core.plan_refresh(entry, NOW) == (b"PEXPIRE", 2500)
    assert raw.ttl("k") == 2


def test_wrong_type_key_is_an_error_not_a_fallback(twin: Any, raw: redis.Redis) -> None:
    raw.set("str", "x")
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        twin.get("str")
    assert twin.uses_scripts is True
