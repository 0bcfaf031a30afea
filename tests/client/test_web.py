"""FastAPI/Starlette lifespan and dependencies, and the ASGI/WSGI ``/health`` helpers."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from fastapi import Depends, FastAPI
from starlette.testclient import TestClient

from apphost_sdk.caching import AsyncDistributedCache, DistributedCache
from apphost_sdk.hosting import Host, HostApplicationBuilder, asgi_health, wsgi_health
from apphost_sdk.hosting.asgi import (
    cache_lifespan,
    get_distributed_cache,
    get_sync_distributed_cache,
    keyed_distributed_cache,
    keyed_sync_distributed_cache,
)

from .redis_process import RedisProcess, free_port


def build_host(environ: dict[str, str]) -> Host:
    builder = HostApplicationBuilder(
        environ=environ, content_root=Path("/nonexistent"), configure_logging=False
    )
    builder.add_redis_distributed_cache("cache")
    if "ConnectionStrings__chat" in environ:
        builder.add_keyed_redis_distributed_cache("chat")
    return builder.build()


def make_app(host: Host) -> FastAPI:
    app = FastAPI(lifespan=cache_lifespan(host))

    @app.put("/items/{key}")
    async def put(
        key: str, value: str, cache: AsyncDistributedCache = Depends(get_distributed_cache)
    ) -> dict[str, str]:
        await cache.set_string(key, value)
        return {"stored": key}

    @app.get("/items/{key}")
    async def get(
        key: str, cache: AsyncDistributedCache = Depends(get_distributed_cache)
    ) -> dict[str, Any]:
        return {"value": await cache.get_string(key)}

    @app.get("/chat/{key}")
    async def chat(
        key: str, cache: AsyncDistributedCache = Depends(keyed_distributed_cache("chat"))
    ) -> dict[str, Any]:
        await cache.set_string(key, "hi")
        return {"instance": cache.instance_name}

    return app


def test_fastapi_lifespan_and_dependencies(redis_server: RedisProcess, raw: redis.Redis) -> None:
    host = build_host(
        {
            "ConnectionStrings__cache": redis_server.connection_string,
            "ConnectionStrings__chat": redis_server.connection_string,
            "Aspire__StackExchange__Redis__chat__InstanceName": "chat:",
        }
    )
    app = asgi_health(host.health, make_app(host))
    for _run in range(2):  # the lifespan closes clients; a second run reopens them
        with TestClient(app) as client:
            assert client.put("/items/a", params={"value": "één"}).json() == {"stored": "a"}
            assert client.get("/items/a").json() == {"value": "één"}
            assert client.get("/items/zzz").json() == {"value": None}
            assert client.get("/chat/x").json() == {"instance": "chat:"}
            health = client.get("/health")
            assert health.status_code == 200
            assert health.json()["checks"]["StackExchange.Redis_chat"]["status"] == "Healthy"
            assert health.headers["content-type"] == "application/json"
    assert raw.hget("a", "data") == "één".encode()
    assert raw.exists("chat:x") == 1


def test_dependency_without_lifespan_is_a_clear_error(redis_server: RedisProcess) -> None:
    host = build_host({"ConnectionStrings__cache": redis_server.connection_string})
    app = FastAPI()

    @app.get("/")
    async def root(cache: AsyncDistributedCache = Depends(get_distributed_cache)) -> None:
        return None

    with TestClient(app) as client, pytest.raises(RuntimeError, match="cache_lifespan"):
        client.get("/")
    host.close()


@pytest.mark.anyio
async def test_bare_asgi_health_unhealthy_is_503() -> None:
    host = build_host({"ConnectionStrings__cache": f"127.0.0.1:{free_port()},connectTimeout=200"})
    transport = httpx.ASGITransport(app=asgi_health(host.health))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        response = await client.get("/health")
        assert response.status_code == 503
        assert response.json()["status"] == "Unhealthy"
        assert (await client.get("/other")).status_code == 404
    await host.aclose()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def call_wsgi(app: Any, path: str) -> tuple[str, bytes]:
    status: list[str] = []

    def start_response(s: str, headers: list[tuple[str, str]]) -> None:
        status.append(s)

    body = b"".join(
        app(
            {"PATH_INFO": path, "REQUEST_METHOD": "GET", "wsgi.input": io.BytesIO()}, start_response
        )
    )
    return status[0], body


def test_wsgi_health(redis_server: RedisProcess) -> None:
    host = build_host({"ConnectionStrings__cache": redis_server.connection_string})

    def inner(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"app"]

    app = wsgi_health(host.health, inner)
    status, body = call_wsgi(app, "/health")
    assert (
        status == "200 OK"
        and json.loads(body)["checks"]["StackExchange.Redis"]["status"] == "Healthy"
    )
    assert call_wsgi(app, "/") == ("200 OK", b"app")
    host.close()
    dead = build_host({"ConnectionStrings__cache": f"127.0.0.1:{free_port()},connectTimeout=200"})
    status, _ = call_wsgi(wsgi_health(dead.health), "/health")
    assert status == "503 Service Unavailable"
    assert call_wsgi(wsgi_health(dead.health), "/x")[0] == "404 Not Found"


# -- sync and async endpoints (issue 11): which dependency where, and misuse is an error ------


def sync_and_async_app(host: Host) -> FastAPI:
    app = FastAPI(lifespan=cache_lifespan(host))

    @app.put("/sync/{key}")
    def sync_put(
        key: str, value: str, cache: DistributedCache = Depends(get_sync_distributed_cache)
    ) -> dict[str, Any]:
        cache.set_string(key, value)
        return {"value": cache.get_string(key)}

    @app.put("/sync-chat/{key}")
    def sync_chat(
        key: str, cache: DistributedCache = Depends(keyed_sync_distributed_cache("chat"))
    ) -> dict[str, Any]:
        cache.set(key, b"hi")
        return {"instance": cache.instance_name, "value": cache.get_string(key)}

    @app.put("/async/{key}")
    async def async_put(
        key: str, value: str, cache: AsyncDistributedCache = Depends(get_distributed_cache)
    ) -> dict[str, Any]:
        await cache.set_string(key, value)
        return {"value": await cache.get_string(key)}

    # The mistakes: the asyncio cache in a def endpoint (its un-awaited set used to store
    # nothing, silently), and the blocking cache in an async def endpoint (stalls the loop).
    @app.put("/wrong/async-cache-in-sync/{key}")
    def async_cache_in_sync(
        key: str, cache: AsyncDistributedCache = Depends(get_distributed_cache)
    ) -> dict[str, str]:
        cache.set(key, b"lost")
        return {"stored": key}

    @app.put("/wrong/async-string-in-sync/{key}")
    def async_string_in_sync(
        key: str, cache: AsyncDistributedCache = Depends(keyed_distributed_cache("chat"))
    ) -> dict[str, str]:
        cache.set_string(key, "lost")
        return {"stored": key}

    @app.put("/wrong/sync-cache-in-async/{key}")
    async def sync_cache_in_async(
        key: str, cache: DistributedCache = Depends(get_sync_distributed_cache)
    ) -> dict[str, str]:
        cache.set(key, b"blocks")
        return {"stored": key}

    @app.put("/wrong/keyed-sync-cache-in-async/{key}")
    async def keyed_sync_cache_in_async(
        key: str, cache: DistributedCache = Depends(keyed_sync_distributed_cache("chat"))
    ) -> dict[str, str]:
        cache.get(key)
        return {"stored": key}

    return app


def chat_host(redis_server: RedisProcess) -> Host:
    return build_host(
        {
            "ConnectionStrings__cache": redis_server.connection_string,
            "ConnectionStrings__chat": redis_server.connection_string,
            "Aspire__StackExchange__Redis__chat__InstanceName": "chat:",
        }
    )


def test_sync_endpoints_get_the_blocking_cache(
    redis_server: RedisProcess, raw: redis.Redis
) -> None:
    app = sync_and_async_app(chat_host(redis_server))
    for _run in range(2):  # a second lifespan reopens the clients the first one closed
        with TestClient(app) as client:
            assert client.put("/sync/s", params={"value": "één"}).json() == {"value": "één"}
            assert client.put("/async/a", params={"value": "twee"}).json() == {"value": "twee"}
            assert client.put("/sync-chat/c").json() == {"instance": "chat:", "value": "hi"}
    assert raw.hget("s", "data") == "één".encode()
    assert raw.hget("a", "data") == b"twee"
    assert raw.hget("chat:c", "data") == b"hi"


@pytest.mark.parametrize(
    ("path", "fix"),
    [
        ("/wrong/async-cache-in-sync/k", "Depends(get_sync_distributed_cache)"),
        ("/wrong/async-string-in-sync/k", "keyed_sync_distributed_cache(key)"),
        ("/wrong/sync-cache-in-async/k", "Depends(get_distributed_cache) and await it"),
        ("/wrong/keyed-sync-cache-in-async/k", "Depends(keyed_distributed_cache('chat'))"),
    ],
)
def test_the_wrong_cache_for_the_endpoint_is_a_clear_error(
    redis_server: RedisProcess, raw: redis.Redis, path: str, fix: str
) -> None:
    app = sync_and_async_app(chat_host(redis_server))
    with TestClient(app) as client:
        with pytest.raises(RuntimeError, match=re.escape(fix)) as info:
            client.put(path)
        assert ("sync def" in str(info.value)) or ("async def" in str(info.value))
    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.put(path).status_code == 500
    assert raw.keys() == []


def test_the_asyncio_cache_still_runs_outside_a_server(redis_server: RedisProcess) -> None:
    """The check refuses only calls from a thread without a loop while the cache's loop runs
    elsewhere: coroutines made before a loop starts (``asyncio.run(cache.get(k))``) and on
    loops in other threads still work."""
    import asyncio
    import threading

    import redis.asyncio as aioredis

    def fresh() -> AsyncDistributedCache:
        return AsyncDistributedCache(aioredis.Redis(port=redis_server.port))

    cache = fresh()
    asyncio.run(cache.set("out", b"1"))
    assert asyncio.run(fresh().get("out")) == b"1"
    results: list[bytes | None] = []

    def in_thread() -> None:
        results.append(asyncio.run(fresh().get("out")))

    thread = threading.Thread(target=in_thread)
    thread.start()
    thread.join()
    assert results == [b"1"]


def test_the_blocking_cache_of_the_host_is_not_restricted(redis_server: RedisProcess) -> None:
    """Only the views the FastAPI dependencies hand out refuse event-loop threads; the host's
    own ``DistributedCache`` (Django, scripts, notebooks with a running loop) does not."""
    import asyncio

    host = build_host({"ConnectionStrings__cache": redis_server.connection_string})
    cache = host.services.get(DistributedCache)

    async def inside_a_loop() -> bytes | None:
        cache.set("k", b"v")
        return cache.get("k")

    assert asyncio.run(inside_a_loop()) == b"v"
    host.close()
