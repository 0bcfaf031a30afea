"""The rest of the cache API: batches, strings, add, tracing, client checks, pure helpers."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
import redis

from apphost_sdk.caching import DistributedCache, core
from apphost_sdk.caching import DistributedCacheEntryOptions as Options
from apphost_sdk.caching.tracing import create_tracer

from .monitor import executed
from .redis_process import RedisProcess


def test_get_many_and_set_many(
    mode: dict[str, Any], open_cache: Callable[..., Any], raw: redis.Redis
) -> None:
    cache = open_cache(instance_name="p:", **mode)
    cache.set_many({f"k{i}": f"v{i}".encode() for i in range(5)}, Options(sliding_expiration=100))
    cache.set_many([("e", b"")])
    assert cache.get_many(["k0", "missing", "k4", "e", "k0"]) == [b"v0", None, b"v4", b"", b"v0"]
    assert cache.get_many([]) == []
    assert 99 <= raw.ttl("p:k3") <= 100
    assert raw.ttl("p:e") == -1


def test_get_many_is_one_round_trip_and_slides(
    open_cache: Callable[..., Any], raw: redis.Redis
) -> None:
    cache = open_cache("sync")
    cache.set_many({"a": b"1", "b": b"2"}, Options(sliding_expiration=timedelta(milliseconds=5500)))
    cache.get_many(["warm-up"])
    raw.pexpire("a", 10)
    commands = executed(raw, lambda: cache.get_many(["a", "b"]))
    top_level = [c for c in commands if not c.startswith(("HMGET", "PEXPIRE", "EXPIRE", "HELLO"))]
    assert len(top_level) == 1 and top_level[0].startswith("EVALSHA")
    assert 5000 < raw.pttl("a") <= 5500


def test_set_is_one_atomic_command(open_cache: Callable[..., Any], raw: redis.Redis) -> None:
    cache = open_cache("sync")
    cache.set("warm", b"x", Options(sliding_expiration=5))
    commands = executed(raw, lambda: cache.set("k", b"x", Options(sliding_expiration=5)))
    assert [c.split(" ")[0] for c in commands] == ["EVALSHA", "HSET", "EXPIRE"]
    commands = executed(raw, lambda: cache.set("k", b"x"))
    assert [c.split(" ")[0] for c in commands] == ["HSET"]


def test_set_without_scripting_uses_multi_exec(
    open_cache: Callable[..., Any], raw: redis.Redis, noscript_user: dict[str, str]
) -> None:
    cache = open_cache("sync", **noscript_user)
    cache.set("k", b"x", Options(sliding_expiration=5))
    commands = executed(raw, lambda: cache.set("k", b"x", Options(sliding_expiration=5)))
    assert [c.split(" ")[0] for c in commands] == ["MULTI", "HSET", "EXPIRE", "EXEC"]
    assert cache.uses_scripts is False


def test_strings(twin: Any, raw: redis.Redis) -> None:
    twin.set_string("s", "grüße")
    assert raw.hget("s", "data") == "grüße".encode()
    assert twin.get_string("s") == "grüße"
    assert twin.get_string("nope") is None


def test_add_only_when_absent(
    mode: dict[str, Any], open_cache: Callable[..., Any], raw: redis.Redis
) -> None:
    cache = open_cache(**mode)
    assert cache.add("a", b"1", Options(absolute_expiration_relative_to_now=50)) is True
    assert cache.add("a", b"2") is False
    assert cache.get("a") == b"1"
    assert 49 <= raw.ttl("a") <= 50


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_cold_get_loads_the_script_once(
    kind: str, open_cache: Callable[..., Any], raw: redis.Redis
) -> None:
    cache = open_cache(kind)
    raw.hset("k", mapping={"absexp": -1, "sldexp": -1, "data": b"v"})
    raw.script_flush()
    commands = executed(raw, lambda: cache.get("k"))
    top_level = [c.split(" ")[0] for c in commands if not c.startswith(("HMGET", "EXPIRE"))]
    assert top_level == ["EVALSHA", "SCRIPT", "EVALSHA"]
    assert cache.get("k") == b"v"


def test_values_must_be_bytes(twin: Any) -> None:
    with pytest.raises(TypeError, match="bytes"):
        twin.set("k", "text")


def test_decoding_clients_are_refused(redis_server: RedisProcess) -> None:
    client = redis.Redis(port=redis_server.port, decode_responses=True)
    with pytest.raises(ValueError, match="decode_responses"):
        DistributedCache(client)


def test_instance_name_must_be_text(redis_server: RedisProcess) -> None:
    client = redis.Redis(port=redis_server.port)
    with pytest.raises(TypeError, match="instance_name must be a str, not bytes"):
        DistributedCache(client, instance_name=b"p:")  # type: ignore[arg-type]
    client.close()


def test_absolute_expiration_must_be_a_datetime() -> None:
    with pytest.raises(TypeError, match="absolute_expiration must be a datetime, not float"):
        Options(absolute_expiration=1.5)  # type: ignore[arg-type]
    assert Options(absolute_expiration=None).absolute_expiration is None


def test_from_connection_string(redis_server: RedisProcess, raw: redis.Redis) -> None:
    with DistributedCache.from_connection_string(
        redis_server.connection_string, instance_name="x:"
    ) as cache:
        cache.set("k", b"v")
        assert raw.hget("x:k", "data") == b"v"
        assert repr(cache) == "DistributedCache(instance_name='x:')"


def test_tracing_spans(redis_server: RedisProcess, raw: redis.Redis) -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from apphost_sdk.caching.tracing import CacheTracer

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = CacheTracer(provider.get_tracer("test"), redis_server.host, redis_server.port, 0)
    assert create_tracer("h", 1) is not None
    cache = DistributedCache(redis.Redis(port=redis_server.port), tracer=tracer)
    cache.set("k", b"secret-value")
    cache.get("k")
    spans = exporter.get_finished_spans()
    assert [s.name for s in spans] == ["cache set", "cache get"]
    assert spans[1].attributes is not None
    assert spans[1].attributes["db.system.name"] == "redis"
    assert spans[1].attributes["server.port"] == redis_server.port
    assert "secret-value" not in str([dict(s.attributes or {}) for s in spans])
    cache.client.close()


def test_pure_core_conversions() -> None:
    assert core.timedelta_to_ticks(timedelta(days=1, microseconds=3)) == 864_000_000_030
    assert core.ticks_to_datetime(core.UNIX_EPOCH_TICKS).year == 1970
    assert core.plan_refresh(core.CacheEntry(None, None, b""), 0) is None
    assert core.plan_refresh(core.CacheEntry(5, None, b""), 0) is None
    plan = core.plan_set(b"k", b"v", Options(sliding_expiration=timedelta(microseconds=1)), 0)
    assert plan.ttl_seconds == 0 and plan.sliding == 10
    assert core.parse_entry([None, None]) == core.CacheEntry(None, None, None)
    data, commands = core.plan_reads(
        [b"a", b"b", b"c"],
        [[None, None, None], [b"-1", b"-1", b"x"], [b"-1", b"50000000", b"y"]],
        0,
    )
    assert data == [None, b"x", b"y"]
    assert commands == [(b"EXPIRE", b"c", 5)]


# -- keys that are not str (issue 11): one TypeError naming the argument, in both twins -------

_NOT_STR_KEYS = [(5, "int"), (b"k", "bytes"), (None, "NoneType"), (1.5, "float")]


@pytest.mark.parametrize(("key", "type_name"), _NOT_STR_KEYS)
def test_keys_must_be_str_in_every_method(
    twin: Any, raw: redis.Redis, key: object, type_name: str
) -> None:
    """Every method of both twins refuses a key that is not a str with the same
    ``TypeError`` (not an ``AttributeError`` from deep inside), before any round trip."""
    message = f"key must be a str, got {type_name}"
    calls: list[Callable[[], Any]] = [
        lambda: twin.get(key),
        lambda: twin.get_string(key),
        lambda: twin.refresh(key),
        lambda: twin.set(key, b"v"),
        lambda: twin.set_string(key, "v"),
        lambda: twin.add(key, b"v"),
        lambda: twin.remove(key),
        lambda: twin.set_many({key: b"v"}),
        lambda: twin.set_many([("ok", b"v"), (key, b"v")]),
        lambda: twin.full_key(key),
    ]
    for call in calls:
        with pytest.raises(TypeError, match=f"^{message}$"):
            call()
    with pytest.raises(TypeError, match=rf"^keys\[1\] must be a str, got {type_name}$"):
        twin.get_many(["ok", key])
    assert raw.keys() == []  # nothing half-written by set_many


def test_get_many_refuses_one_str_and_non_iterables(twin: Any) -> None:
    # A str is an iterable of its characters: it would have read one entry per character.
    for keys, type_name in (("abc", "str"), (b"abc", "bytes"), (5, "int")):
        with pytest.raises(
            TypeError, match=f"^keys must be an iterable of str keys .*{type_name}$"
        ):
            twin.get_many(keys)


def test_set_many_refuses_malformed_items(twin: Any) -> None:
    with pytest.raises(TypeError, match=r"^items must be a mapping .*got str$"):
        twin.set_many("ab")
    with pytest.raises(TypeError, match=r"^items\[0\] must be a \(key, value\) pair, got int$"):
        twin.set_many([5])
    with pytest.raises(TypeError, match=r"^value must be bytes, got str"):
        twin.set_many({"k": "text"})


def test_keys_that_are_not_utf8_text_are_a_value_error(twin: Any) -> None:
    with pytest.raises(ValueError, match="key is not valid Unicode text"):
        twin.get("lone \ud800 surrogate")


def test_str_subclasses_are_keys(twin: Any, raw: redis.Redis) -> None:
    class Key(str):
        pass

    twin.set(Key("sub"), b"v")
    assert twin.get("sub") == b"v" and raw.exists("sub") == 1
