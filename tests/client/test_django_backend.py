"""The Django ``CACHES`` backend, with Django configured in-process against the real server."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis

from apphost_sdk.caching import core

from .redis_process import RedisProcess


@pytest.fixture(scope="module")
def caches(redis_server: RedisProcess) -> Iterator[Any]:
    import django
    from django.conf import settings

    backend = "apphost_sdk.caching.django.RedisDistributedCache"
    if not settings.configured:
        settings.configure(
            CACHES={
                "default": {
                    "BACKEND": backend,
                    "LOCATION": redis_server.connection_string,
                    "KEY_PREFIX": "dj",
                },
                "shared": {
                    "BACKEND": backend,
                    "LOCATION": f"redis://{redis_server.host}:{redis_server.port}/0",
                    "KEY_FUNCTION": "apphost_sdk.caching.django.plain_key",
                    "TIMEOUT": None,
                    "OPTIONS": {"INSTANCE_NAME": "shop:", "SERIALIZER": "text"},
                },
            }
        )
        django.setup()
    from django.core.cache import caches as django_caches

    yield django_caches


def test_pickled_values_and_django_semantics(caches: Any, raw: redis.Redis) -> None:
    cache = caches["default"]
    cache.set("obj", {"a": [1, 2]}, timeout=120)
    assert cache.get("obj") == {"a": [1, 2]}
    fields = raw.hgetall("dj:1:obj")
    assert set(fields) == {b"absexp", b"sldexp", b"data"} and fields[b"sldexp"] == b"-1"
    assert raw.ttl("dj:1:obj") == 120
    cache.set("default-timeout", 1)
    assert raw.ttl("dj:1:default-timeout") == 300
    assert cache.add("obj", "other") is False and cache.add("new", "x") is True
    assert cache.get("missing", "fallback") == "fallback"
    cache.set("gone", 1, timeout=0)
    assert cache.get("gone") is None
    assert cache.touch("obj", 30) is True and raw.ttl("dj:1:obj") == 30
    assert cache.touch("missing") is False
    assert cache.has_key("obj") and not cache.has_key("missing")
    cache.set("n", 1)
    assert cache.incr("n", 5) == 6
    cache.set_many({"x": 1, "y": 2}, timeout=None)
    assert raw.ttl("dj:1:x") == -1
    assert cache.get_many(["x", "y", "z"]) == {"x": 1, "y": 2}
    cache.delete_many(["x", "y"])
    assert cache.get_many(["x", "y"]) == {}
    assert cache.delete("obj") is True and cache.delete("obj") is False


def test_text_values_shared_with_dotnet(caches: Any, raw: redis.Redis) -> None:
    cache = caches["shared"]
    cache.set("greeting", "héllo")
    assert raw.hgetall("shop:greeting") == {
        b"absexp": b"-1",
        b"sldexp": b"-1",
        b"data": "héllo".encode(),
    }
    # an entry .NET wrote with a sliding expiration slides when Django reads it
    raw.hset("shop:dotnet", mapping={"absexp": -1, "sldexp": 300_000_000, "data": "from .NET"})
    raw.expire("shop:dotnet", 5)
    assert cache.get("dotnet") == "from .NET"
    assert 29 <= raw.ttl("shop:dotnet") <= 30
    assert core.parse_entry(raw.hmget("shop:dotnet", "absexp", "sldexp")).sliding == 300_000_000


def test_clear_only_touches_its_own_keys(caches: Any, raw: redis.Redis) -> None:
    raw.set("unrelated", "keep")
    caches["shared"].set("a", "1")
    caches["shared"].set("b*?[", "2")
    caches["default"].set("c", 3)
    caches["shared"].clear()
    assert sorted(raw.keys()) == [b"dj:1:c", b"unrelated"]


def test_keys_that_are_not_str_behave_as_in_djangos_own_backends(
    caches: Any, raw: redis.Redis
) -> None:
    """Django's key function makes every key text (its own Redis and memcached backends take
    ``cache.set(5, ...)``), so the backend never hands a non-str key to the cache core."""
    cache = caches["default"]
    cache.set(5, "five")
    assert raw.hget("dj:1:5", "data") is not None
    assert cache.get(5) == "five" and cache.has_key(5)
    assert cache.get_many([5, "missing"]) == {5: "five"}
    cache.set_many({6: "six"})
    assert cache.delete(5) is True and cache.get(6) == "six"
    shared = caches["shared"]
    shared.set(7, "seven")
    assert raw.hget("shop:7", "data") == b"seven"
