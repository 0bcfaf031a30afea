"""``HybridCache`` and ``AsyncHybridCache`` against a real redis-server: stampedes, L1 bounds,
tags, flags, the frame and the serializers (Hypothesis), and the host registration."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis
from hypothesis import given, settings
from hypothesis import strategies as st

from apphost_sdk.caching.async_cache import AsyncDistributedCache
from apphost_sdk.caching.async_hybrid_cache import AsyncHybridCache
from apphost_sdk.caching.hybrid_cache import HybridCache
from apphost_sdk.caching.hybrid_core import (
    Frame,
    FrameError,
    HybridCacheEntryFlags,
    HybridCacheEntryOptions,
    HybridCacheOptions,
    decode_frame,
    decode_message,
    encode_frame,
)
from apphost_sdk.caching.hybrid_l1 import LocalCache, LocalEntry
from apphost_sdk.caching.serializers import BytesSerializer, JsonSerializer, StrSerializer
from apphost_sdk.caching.sync_cache import DistributedCache
from apphost_sdk.hosting import HostApplicationBuilder

from .redis_process import RedisProcess

F = HybridCacheEntryFlags


@pytest.fixture
def client(redis_server: RedisProcess, raw: redis.Redis) -> Iterator[redis.Redis]:
    c = redis.Redis(host=redis_server.host, port=redis_server.port)
    yield c
    c.close()


@pytest.fixture
def hybrid(client: redis.Redis) -> Iterator[HybridCache]:
    with HybridCache(DistributedCache(client, instance_name="hy:")) as cache:
        yield cache


def stored(client: redis.Redis, key: bytes) -> bytes:
    """The L2 frame of ``key`` (the ``data`` field of its distributed-cache hash)."""
    data = client.hget(key, b"data")
    assert isinstance(data, bytes)
    return data


class Counter:
    """A factory that counts its calls (thread-safe)."""

    def __init__(self, value: Any = "made", delay: float = 0.0) -> None:
        self.value = value
        self.delay = delay
        self.calls = 0
        self._lock = threading.Lock()

    def __call__(self) -> Any:
        with self._lock:
            self.calls += 1
        if self.delay:
            time.sleep(self.delay)
        return self.value


# -- stampede ---------------------------------------------------------------------------------
def test_100_threads_share_one_factory_call(hybrid: HybridCache) -> None:
    factory = Counter({"n": 1}, delay=0.1)
    barrier = threading.Barrier(100)
    results: list[Any] = []

    def worker() -> None:
        barrier.wait()
        results.append(hybrid.get_or_create("stampede", factory))

    threads = [threading.Thread(target=worker) for _ in range(100)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert factory.calls == 1
    assert results == [{"n": 1}] * 100
    # every later reader gets a fresh copy of a mutable value from L1
    first = hybrid.get_or_create("stampede", factory)
    first["n"] = 99
    assert hybrid.get_or_create("stampede", factory) == {"n": 1}
    assert factory.calls == 1


def test_failing_factory_reaches_every_thread_and_caches_nothing(hybrid: HybridCache) -> None:
    calls = 0
    barrier = threading.Barrier(20)

    def boom() -> str:
        nonlocal calls
        calls += 1
        time.sleep(0.5)  # long enough for every thread to join the flight on a loaded CI box
        raise LookupError("the database said no")

    errors: list[BaseException] = []

    def worker() -> None:
        barrier.wait(10)
        try:
            hybrid.get_or_create("bad", boom)
        except LookupError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert calls == 1 and len(errors) == 20
    assert "bad" not in hybrid.local
    assert hybrid.distributed is not None and hybrid.distributed.get("bad") is None
    assert hybrid.get_or_create("bad", lambda: "fine") == "fine"


def test_100_tasks_share_one_factory_call(client: redis.Redis, redis_server: RedisProcess) -> None:
    async def run() -> tuple[int, list[Any], int, int]:
        aclient = aioredis.Redis(host=redis_server.host, port=redis_server.port)
        calls = fails = 0

        async def factory() -> list[int]:
            nonlocal calls
            calls += 1
            await asyncio.sleep(0.05)
            return [1, 2]

        async def failing() -> str:
            nonlocal fails
            fails += 1
            await asyncio.sleep(0.05)
            raise KeyError("nope")

        async with AsyncHybridCache(AsyncDistributedCache(aclient, instance_name="ahy:")) as c:
            results = await asyncio.gather(*(c.get_or_create("k", factory) for _ in range(100)))
            errors = await asyncio.gather(
                *(c.get_or_create("f", failing) for _ in range(50)), return_exceptions=True
            )
            assert all(isinstance(e, KeyError) for e in errors)
            assert await c.get_or_create("f", _value("ok")) == "ok"
            # a cancelled caller does not cancel the shared call for the others
            slow = asyncio.ensure_future(c.get_or_create("slow", factory))
            other = asyncio.ensure_future(c.get_or_create("slow", factory))
            await asyncio.sleep(0.01)
            slow.cancel()
            assert await other == [1, 2]
        await aclient.aclose()
        return calls, list(results), fails, len(errors)

    calls, results, fails, errors = asyncio.run(run())
    assert calls == 2  # "k" once, "slow" once
    assert results == [[1, 2]] * 100
    assert fails == 1 and errors == 50
    assert client.exists(b"ahy:k") == 1


# -- invalidations during a fill (issue 12 review) ---------------------------------------
def test_a_set_during_a_slow_factory_wins_everywhere(client: redis.Redis) -> None:
    with (
        HybridCache(DistributedCache(client, instance_name="race:")) as a,
        HybridCache(DistributedCache(client, instance_name="race:")) as b,
    ):
        result: list[Any] = []
        runner = threading.Thread(
            target=lambda: result.append(b.get_or_create("k", Counter("v1-old", delay=0.3)))
        )
        runner.start()
        time.sleep(0.1)
        a.set("k", "v2-new")
        runner.join(10)
        assert result == ["v1-old"]  # the caller still gets its factory's value
        assert b.get_or_create("k", lambda: "unused") == "v2-new"
        assert decode_frame(stored(client, b"race:k"), "k").payload == b'"v2-new"'
        # the same hole after a reconnect: a fill that began before it writes nothing
        token = b._generation("k")
        b.on_subscribed()
        assert not b._still("k", token)


def test_async_set_or_remove_during_a_slow_factory_wins(
    client: redis.Redis, redis_server: RedisProcess
) -> None:
    async def run() -> None:
        ca = aioredis.Redis(host=redis_server.host, port=redis_server.port)
        cb = aioredis.Redis(host=redis_server.host, port=redis_server.port)

        async def slow() -> str:
            await asyncio.sleep(0.3)
            return "v1-old"

        async with (
            AsyncHybridCache(AsyncDistributedCache(ca, instance_name="arace:")) as a,
            AsyncHybridCache(AsyncDistributedCache(cb, instance_name="arace:")) as b,
        ):
            await a.start()
            fill = asyncio.ensure_future(b.get_or_create("k", slow))
            await asyncio.sleep(0.1)
            await a.set("k", "v2-new")
            assert await fill == "v1-old"
            await asyncio.sleep(0.05)
            assert await b.get_or_create("k", _value("unused")) == "v2-new"
            # a local remove during a fill: neither L1 nor L2 gets the old value
            fill = asyncio.ensure_future(b.get_or_create("r", slow))
            await asyncio.sleep(0.1)
            await b.remove("r")
            assert await fill == "v1-old"
            await asyncio.sleep(0.05)
            assert "r" not in b.local
            assert await b.get_or_create("r", _value("fresh")) == "fresh"
            # S3: a remove right after a fill waits for the fill's background L2 write
            assert await b.get_or_create("w", _value("w1")) == "w1"
            await b.remove("w")
            await asyncio.sleep(0.05)
            assert await cb.exists(b"arace:w") == 0
        await ca.aclose()
        await cb.aclose()

    asyncio.run(run())
    assert decode_frame(stored(client, b"arace:k"), "k").payload == b'"v2-new"'


def test_a_factory_asking_for_its_own_key_is_an_error(hybrid: HybridCache) -> None:
    def again() -> str:
        return hybrid.get_or_create("self", again)

    with pytest.raises(RuntimeError, match="called from its own factory"):
        hybrid.get_or_create("self", again)
    assert hybrid.get_or_create("self", lambda: "ok") == "ok"

    async def run() -> None:
        cache = AsyncHybridCache()

        async def again_async() -> str:
            return await cache.get_or_create("self", again_async)

        with pytest.raises(RuntimeError, match="called from its own factory"):
            await asyncio.wait_for(cache.get_or_create("self", again_async), 5)
        assert await cache.get_or_create("self", _value("ok")) == "ok"

    asyncio.run(run())


# -- L1 and L2 -------------------------------------------------------------------------------
def test_l1_is_a_bounded_lru_by_entries_and_bytes() -> None:
    cache = LocalCache(max_entries=3, max_bytes=10)
    for key in "abc":
        assert cache.set(key, LocalEntry(b"xx", 0, 100))
    assert cache.get("a", 1) is not None  # a is now the most recent
    cache.set("d", LocalEntry(b"xx", 0, 100))
    assert cache.keys() == ["c", "a", "d"]  # b, least recently used, went
    cache.set("e", LocalEntry(b"x" * 4, 0, 100))  # 4 entries > 3: c goes
    assert cache.keys() == ["a", "d", "e"] and cache.size_bytes == 8
    cache.set("f", LocalEntry(b"x" * 5, 0, 100))  # 13 bytes > 10: a, then d go
    assert cache.keys() == ["e", "f"] and cache.size_bytes == 9
    assert not cache.set("big", LocalEntry(b"x" * 11, 0, 100))
    assert "big" not in cache and cache.get("d", 100) is None  # expired at 100


def test_l1_bounds_apply_through_the_cache(client: redis.Redis) -> None:
    options = HybridCacheOptions(local_max_entries=5, maximum_payload_bytes=100)
    with HybridCache(DistributedCache(client), options=options) as cache:
        for i in range(8):
            cache.set(f"k{i}", i)
        assert cache.local.keys() == [f"k{i}" for i in range(3, 8)]
        # evicted from L1, still in L2
        assert cache.get_or_create("k0", lambda: "factory") == 0
        # too big to cache at all, but returned
        big = Counter("x" * 200)
        assert cache.get_or_create("big", big) == "x" * 200
        assert cache.get_or_create("big", big) == "x" * 200
        assert big.calls == 2 and client.exists(b"big") == 0


def test_l2_serves_another_instance_and_expirations_apply(
    client: redis.Redis, redis_server: RedisProcess
) -> None:
    now = [10**17]
    l2 = DistributedCache(client, instance_name="exp:")
    with (
        HybridCache(l2, clock=lambda: now[0]) as a,
        HybridCache(l2, invalidation=False, clock=lambda: now[0]) as b,
    ):
        a.get_or_create("k", lambda: "v", expiration=60, local_expiration=10)
        assert 55 <= client.ttl(b"exp:k") <= 60
        assert b.get_or_create("k", lambda: "other") == "v"  # from L2
        now[0] += 11 * 10**7
        assert a.local.get("k", now[0]) is None  # L1 lived 10 s
        assert a.get_or_create("k", lambda: "other") == "v"  # L2 still has it
        now[0] += 60 * 10**7
        assert a.get_or_create("k", lambda: "fresh") == "fresh"  # the frame expired


def test_set_remove_and_keys_that_skip_the_cache(hybrid: HybridCache, client: redis.Redis) -> None:
    hybrid.set("s", {"a": 1}, tags=["t"])
    assert hybrid.get_or_create("s", lambda: None) == {"a": 1}
    frame = decode_frame(stored(client, b"hy:s"), "s")
    assert frame.tags == ("t",) and frame.expires - frame.created == 300 * 10**7
    hybrid.remove("s")
    assert "s" not in hybrid.local and client.exists(b"hy:s") == 0
    counter = Counter()
    for bad in ("", "a\x00b", "x" * 1025):
        hybrid.get_or_create(bad, counter)
        hybrid.get_or_create(bad, counter)
    assert counter.calls == 6
    with pytest.raises(TypeError, match="key must be a str"):
        hybrid.get_or_create(b"k", counter)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not '\\*'"):
        hybrid.set("k", 1, tags=["*"])
    with pytest.raises(TypeError, match="not one str"):
        hybrid.set("k", 1, tags="abc")


def test_foreign_or_corrupt_l2_values_are_misses(hybrid: HybridCache, client: redis.Redis) -> None:
    assert hybrid.distributed is not None
    hybrid.distributed.set("plain", b"not a frame")
    assert hybrid.get_or_create("plain", lambda: "replaced") == "replaced"
    assert decode_frame(stored(client, b"hy:plain"), "plain").payload == b'"replaced"'
    # a frame of another key under this key (a collision) is a miss too
    other = encode_frame(Frame("other", 1, 2**62, (), b'"x"'))
    hybrid.distributed.set("mine", other)
    assert hybrid.get_or_create("mine", lambda: "mine") == "mine"


# -- tags ------------------------------------------------------------------------------------
def test_remove_by_tag_makes_older_entries_misses_everywhere(client: redis.Redis) -> None:
    l2 = DistributedCache(client, instance_name="tags:")
    quick = HybridCacheOptions(tag_refresh=1.0)
    with HybridCache(l2) as a, HybridCache(l2, invalidation=False, options=quick) as b:
        a.get_or_create("p1", lambda: "old1", tags=["products"])
        a.get_or_create("p2", lambda: "old2", tags=["products", "eu"])
        a.get_or_create("u1", lambda: "user", tags=["users"])
        assert b.get_or_create("p1", lambda: "unused") == "old1"  # b learns "products"
        time.sleep(0.002)
        a.remove_by_tag("products")
        assert client.exists(b"tags:__apphost_hct__products") == 1
        assert a.get_or_create("p1", lambda: "new1", tags=["products"]) == "new1"
        assert a.get_or_create("u1", lambda: "unused") == "user"
        # b has no listener: it trusts what it knew of the tag for tag_refresh (.NET: forever)
        assert b.get_or_create("p2", lambda: "new2", flags=F.DISABLE_LOCAL_CACHE) == "old2"
        time.sleep(1.1)
        assert b.get_or_create("p2", lambda: "new2") == "new2"
        assert b.get_or_create("p1", lambda: "unused") == "new1"
        a.remove_by_tag("*")
        assert len(a.local) == 0
        assert a.get_or_create("u1", lambda: "user2") == "user2"


def test_async_tags_flags_and_set(client: redis.Redis, redis_server: RedisProcess) -> None:
    async def run() -> None:
        aclient = aioredis.Redis(host=redis_server.host, port=redis_server.port)
        async with AsyncHybridCache(AsyncDistributedCache(aclient, instance_name="at:")) as c:
            assert await c.get_or_create("k", _value("v1"), tags=["t"]) == "v1"
            await c.remove_by_tag("t")
            assert await c.get_or_create("k", _value("v2")) == "v2"
            await c.set("s", b"\x00raw", serializer=BytesSerializer())
            assert await c.get_or_create("s", _value(b""), serializer=BytesSerializer()) == (
                b"\x00raw"
            )
            miss = await c.get_or_create("none", _value("x"), flags=F.DISABLE_UNDERLYING_DATA)
            assert miss is None
            await c.remove("s")
            assert "s" not in c.local
        await aclient.aclose()

    asyncio.run(run())
    assert client.exists(b"at:s") == 0 and client.exists(b"at:k") == 1


def _value(value: Any) -> Any:
    async def factory() -> Any:
        return value

    return factory


# -- flags -----------------------------------------------------------------------------------
def test_flags_follow_dotnet(hybrid: HybridCache, client: redis.Redis) -> None:
    assert F.DISABLE_LOCAL_CACHE == F.DISABLE_LOCAL_CACHE_READ | F.DISABLE_LOCAL_CACHE_WRITE
    assert F.DISABLE_DISTRIBUTED_CACHE.value == 12 and F.DISABLE_COMPRESSION.value == 32
    hybrid.get_or_create("nolocal", lambda: 1, flags=F.DISABLE_LOCAL_CACHE)
    assert "nolocal" not in hybrid.local and client.exists(b"hy:nolocal")
    hybrid.get_or_create("nol2", lambda: 2, flags=F.DISABLE_DISTRIBUTED_CACHE)
    assert "nol2" in hybrid.local and not client.exists(b"hy:nol2")
    # DisableUnderlyingData: a miss is None, a hit is the value, the factory never runs
    counter = Counter()
    assert hybrid.get_or_create("absent", counter, flags=F.DISABLE_UNDERLYING_DATA) is None
    assert hybrid.get_or_create("nol2", counter, flags=F.DISABLE_UNDERLYING_DATA) == 2
    assert counter.calls == 0
    # DisableLocalCacheRead skips a (stale) L1 value and reads L2
    assert hybrid.distributed is not None
    hybrid.set("both", "v1")
    hybrid.distributed.set("both", encode_frame(Frame("both", 1, 2**62, (), b'"v2"')))
    assert hybrid.get_or_create("both", counter) == "v1"
    assert hybrid.get_or_create("both", counter, flags=F.DISABLE_LOCAL_CACHE_READ) == "v2"
    # DisableDistributedCacheRead runs the factory despite L2
    hybrid.local.clear()
    assert hybrid.get_or_create("both", lambda: "v3", flags=F.DISABLE_DISTRIBUTED_CACHE_READ) == (
        "v3"
    )
    # defaults come from the options; per-call values win
    defaults = HybridCacheOptions(
        default_entry_options=HybridCacheEntryOptions(flags=F.DISABLE_LOCAL_CACHE)
    )
    with HybridCache(hybrid.distributed, options=defaults, invalidation=False) as other:
        other.get_or_create("d1", lambda: 1)
        other.get_or_create("d2", lambda: 1, flags=F.NONE)
        assert other.local.keys() == ["d2"]


def test_l1_only_cache_and_bad_arguments() -> None:
    cache = HybridCache()
    assert cache.get_or_create("k", lambda: "v") == "v"
    assert cache.get_or_create("k", lambda: "w") == "v"
    cache.remove_by_tag("*")
    assert cache.get_or_create("k", lambda: "w") == "w"
    with pytest.raises(TypeError, match="AsyncDistributedCache"):
        HybridCache(object())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="dumps"):
        HybridCache(serializer=object())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="expiration must be positive"):
        HybridCacheEntryOptions(expiration=timedelta(0))
    with pytest.raises(TypeError, match="JsonSerializer cannot store"):
        cache.set("x", object())


# -- the host --------------------------------------------------------------------------------
def test_registration_on_the_host(
    redis_server: RedisProcess, raw: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    builder = HostApplicationBuilder(
        environ={
            "ConnectionStrings__cache": redis_server.connection_string,
            "ConnectionStrings__other": redis_server.connection_string,
            "Aspire__StackExchange__Redis__cache__InstanceName": "app:",
        },
        content_root=Path("/nonexistent"),
        configure_logging=False,
    )
    builder.add_redis_hybrid_cache("cache")
    builder.add_redis_hybrid_cache("cache")  # idempotent
    with caplog.at_level(logging.WARNING, logger="apphost_sdk.hosting"):
        builder.add_redis_hybrid_cache("cache", serializer=StrSerializer())
    assert "Redis connection cache already has a hybrid cache" in caplog.text
    builder.add_keyed_redis_hybrid_cache("other")
    with builder.build() as app:
        cache = app.services.get(HybridCache)
        assert cache is app.services.get(HybridCache)
        assert cache.get_or_create("k", lambda: 7) == 7
        assert app.services.get_keyed(HybridCache, "other") is not cache
        assert isinstance(app.services.get(AsyncHybridCache), AsyncHybridCache)
    assert raw.exists(b"app:k")


# -- Hypothesis: the frame, messages and serializers ----------------------------------------
_text = st.text(max_size=40)
_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | _text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_text, inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=200, deadline=None)
@given(
    key=st.text(min_size=1, max_size=50),
    created=st.integers(0, 2**62),
    life=st.integers(1, 2**40),
    tags=st.lists(st.text(min_size=1, max_size=20), max_size=5).map(tuple),
    payload=st.binary(max_size=300),
)
def test_frames_round_trip(
    key: str, created: int, life: int, tags: tuple[str, ...], payload: bytes
) -> None:
    try:
        key.encode()
        for t in tags:
            t.encode()
    except UnicodeEncodeError:
        return
    frame = Frame(key, created, created + life, tags, payload)
    data = encode_frame(frame)
    assert decode_frame(data, key) == frame
    with pytest.raises(FrameError):
        decode_frame(data + b"x", key)
    with pytest.raises(FrameError):
        decode_frame(data[:-1], key)


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=120), key=st.text(max_size=10))
def test_frame_parser_never_crashes_on_garbage(data: bytes, key: str) -> None:
    try:
        decode_frame(data, key)
    except FrameError:
        pass
    decode_message(data)


@settings(max_examples=200, deadline=None)
@given(value=_json, raw_bytes=st.binary(max_size=100), text=st.text(max_size=100))
def test_serializers_round_trip(value: Any, raw_bytes: bytes, text: str) -> None:
    assert JsonSerializer().loads(JsonSerializer().dumps(value)) == value
    assert BytesSerializer().loads(BytesSerializer().dumps(raw_bytes)) == raw_bytes
    try:
        text.encode()
    except UnicodeEncodeError:
        return
    assert StrSerializer().loads(StrSerializer().dumps(text)) == text
