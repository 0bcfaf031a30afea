"""``ClusterMode=auto`` when Redis is not up yet, and on an event loop: clients resolve without
asking the server, ask on first use (asynchronously on a loop), and work once Redis is up."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import redis.asyncio as aioredis
import redis.asyncio.cluster as aiocluster
import redis.cluster

from apphost_sdk.caching import AsyncDistributedCache, DistributedCache
from apphost_sdk.caching.deferred import DeferredAsyncRedis, DeferredRedis
from apphost_sdk.hosting import HostApplicationBuilder

from .redis_cluster import RedisClusterProcess
from .redis_process import RedisProcess, free_port

KEYS = [f"deferred-{i}" for i in range(60)]


def make_builder(environ: dict[str, str]) -> HostApplicationBuilder:
    return HostApplicationBuilder(
        environ=environ, content_root=Path("/nonexistent"), configure_logging=False
    )


def test_sync_client_resolved_before_redis_starts_works_once_it_is_up() -> None:
    port = free_port()
    builder = make_builder(
        {"ConnectionStrings__cache": f"127.0.0.1:{port},connectTimeout=300,connectRetry=0"}
    )
    registration = builder.add_redis_distributed_cache("cache")
    with builder.build() as app:
        client = app.services.get(redis.Redis)  # Redis is down: no ConnectionError here
        cache = app.services.get(DistributedCache)
        assert isinstance(client, DeferredRedis) and registration._cluster is None
        with pytest.raises(redis.ConnectionError):
            cache.get("k")
        server = RedisProcess(port=port)
        try:
            cache.set("k", b"v")
            assert cache.get("k") == b"v" and client.exists("k") == 1
            assert registration._cluster is False and cache.client is client
        finally:
            server.stop()


def test_sync_client_resolved_before_a_cluster_starts_uses_the_cluster() -> None:
    port = free_port()
    password = "late-pw"
    environ = {
        "ConnectionStrings__cache": (
            f"127.0.0.1:{port},password={password},connectTimeout=300,connectRetry=0"
        )
    }
    builder = make_builder(environ)
    registration = builder.add_redis_distributed_cache("cache")
    with builder.build() as app:
        cache = app.services.get(DistributedCache)
        with pytest.raises(redis.ConnectionError):
            cache.get("k")
        cluster = RedisClusterProcess(password=password, first_port=port)
        try:
            cache.set_many({k: b"late" for k in KEYS})  # keys on every shard: no MOVED
            assert cache.get_many(KEYS) == [b"late"] * len(KEYS)
            assert registration._cluster is True
            assert isinstance(cache.client, redis.cluster.RedisCluster)
            assert app.services.get(redis.cluster.RedisCluster) is cache.client
        finally:
            cluster.stop()


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A port that accepts connections and never answers (a hung Redis)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.05)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield int(listener.getsockname()[1])
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    listener.close()


async def _ticks_during(coro: object, seconds_hint: float) -> tuple[int, BaseException | None]:
    """How often a 10 ms ticker ran while ``coro`` ran (0 means the loop was blocked)."""
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    error: BaseException | None = None
    try:
        await asyncio.wait_for(coro, seconds_hint * 10)  # type: ignore[arg-type]
    except Exception as exc:
        error = exc
    task.cancel()
    return ticks, error


@pytest.mark.parametrize("how", ["registration", "from_connection_string"])
def test_async_paths_never_block_the_event_loop(silent_server: int, how: str) -> None:
    cs = f"127.0.0.1:{silent_server},syncTimeout=1000,connectTimeout=1000,connectRetry=0"

    async def run() -> tuple[float, int, BaseException | None]:
        started = time.monotonic()
        if how == "registration":
            builder = make_builder({"ConnectionStrings__cache": cs})
            builder.add_redis_distributed_cache("cache")
            app = builder.build()
            cache = app.services.get(AsyncDistributedCache)
        else:
            app = None
            cache = AsyncDistributedCache.from_connection_string(cs)
        resolved_in = time.monotonic() - started
        assert isinstance(cache._client, DeferredAsyncRedis)
        ticks, error = await _ticks_during(cache.get("k"), 1.0)
        await cache.aclose()
        if app is not None:
            await app.aclose()
        return resolved_in, ticks, error

    resolved_in, ticks, error = asyncio.run(run())
    assert resolved_in < 0.5  # no probe while resolving
    assert isinstance(error, (redis.TimeoutError, redis.ConnectionError))
    assert ticks >= 20  # the loop kept running during the ~1 s probe timeout


def test_async_client_resolved_before_redis_starts_works_once_it_is_up() -> None:
    port = free_port()
    builder = make_builder(
        {"ConnectionStrings__cache": f"127.0.0.1:{port},connectTimeout=300,connectRetry=0"}
    )
    registration = builder.add_redis_distributed_cache("cache")

    async def run() -> tuple[bytes | None, int]:
        async with builder.build() as app:
            client = app.services.get(aioredis.Redis)
            cache = app.services.get(AsyncDistributedCache)
            with pytest.raises(redis.ConnectionError):
                await cache.get("k")
            server = await asyncio.to_thread(RedisProcess, port=port)
            try:
                await cache.set("k", b"v")
                assert registration._cluster is False and cache.client is client
                return await cache.get("k"), await client.exists("k")
            finally:
                await asyncio.to_thread(server.stop)

    assert asyncio.run(run()) == (b"v", 1)


def test_async_deferred_client_forwards_to_a_cluster(redis_cluster: RedisClusterProcess) -> None:
    redis_cluster.each_node("FLUSHALL")
    builder = make_builder({"ConnectionStrings__cache": redis_cluster.connection_string})
    builder.add_redis_distributed_cache("cache")

    async def run() -> list[bytes | None]:
        async with builder.build() as app:
            client = app.services.get(aioredis.Redis)
            assert isinstance(client, DeferredAsyncRedis)  # nothing asked while resolving
            with pytest.raises(LookupError, match="cluster_enabled_async"):
                app.services.get(aiocluster.RedisCluster)
            cache = app.services.get(AsyncDistributedCache)
            await cache.set_many({k: b"fwd" for k in KEYS})
            assert isinstance(cache.client, aiocluster.RedisCluster)
            assert app.services.get(aiocluster.RedisCluster) is cache.client
            return await cache.get_many(KEYS)

    assert asyncio.run(run()) == [b"fwd"] * len(KEYS)
