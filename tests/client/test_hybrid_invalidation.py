"""Cross-process L1 invalidation over Redis pub/sub: a second real process, dropping L1
after a lost subscription (CLIENT KILL, or a silently dead socket), the asyncio twin, and a
Redis Cluster."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator

import pytest
import redis
import redis.asyncio as aioredis
import redis.asyncio.cluster as aiocluster
import redis.cluster

from apphost_sdk.caching.async_cache import AsyncDistributedCache
from apphost_sdk.caching.async_hybrid_cache import AsyncHybridCache
from apphost_sdk.caching.hybrid_cache import HybridCache
from apphost_sdk.caching.hybrid_invalidation import InvalidationListener, Listener
from apphost_sdk.caching.sync_cache import DistributedCache

from .hybrid_helpers import ChildCache
from .redis_cluster import RedisClusterProcess
from .redis_process import RedisProcess

#: Seconds for another process's L1 to forget, loose for a loaded CI machine (the 100 ms p99
#: is measured by benchmarks/cache.py's invalidation suite).
LIMIT = 1.0


@pytest.fixture
def client(redis_server: RedisProcess, raw: redis.Redis) -> Iterator[redis.Redis]:
    c = redis.Redis(host=redis_server.host, port=redis_server.port)
    yield c
    c.close()


@pytest.fixture
def child(redis_server: RedisProcess, raw: redis.Redis) -> Iterator[ChildCache]:
    proc = ChildCache(redis_server.host, redis_server.port, "xp:")
    yield proc
    proc.close()


def eventually(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.005)


def evicted_within(child: ChildCache, key: str, action: Callable[[], None]) -> float:
    """Seconds from ``action`` starting to the child's L1 dropping ``key``."""
    assert child.ask(f"wait {key}") == "waiting"
    start = time.monotonic()
    action()
    answer = child.read()
    assert answer.startswith("gone "), answer
    return float(answer.split()[1]) - start


def test_another_process_forgets_promptly(client: redis.Redis, child: ChildCache) -> None:
    with HybridCache(DistributedCache(client, instance_name="xp:")) as cache:
        cache.set("k", "v1", tags=["t"])
        # From L2, now in the child's L1. The set's own invalidation message may reach the child
        # after its first read (a loaded machine) and evict it: read again until it stays.
        eventually(
            lambda: json.loads(child.ask("get k")) == "v1" and json.loads(child.ask("has k"))
        )
        assert evicted_within(child, "k", lambda: cache.set("k", "v2")) < LIMIT
        assert json.loads(child.ask("get k")) == "v2"
        assert evicted_within(child, "k", lambda: cache.remove("k")) < LIMIT
        assert json.loads(child.ask("get k t")) == "factory-in-child"
        assert evicted_within(child, "k", lambda: cache.remove_by_tag("t")) < LIMIT
        assert json.loads(child.ask("get other")) == "factory-in-child"
        assert evicted_within(child, "other", lambda: cache.remove_by_tag("*")) < LIMIT
        # our own messages do not evict our own L1
        cache.set("mine", 1)
        time.sleep(0.05)
        assert "mine" in cache.local


def test_a_lost_subscription_drops_l1(client: redis.Redis) -> None:
    l2 = DistributedCache(client, instance_name="rc:")
    with HybridCache(l2) as cache, HybridCache(l2, invalidation=False) as silent:
        assert cache.get_or_create("k", lambda: "old") == "old"
        silent.set("k", "new")  # no message: as if it were published while we were away
        assert cache.get_or_create("k", lambda: "x") == "old"  # L1 does not know
        client.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
        eventually(lambda: cache._subscriptions >= 2 and cache.receiving_invalidations)
        assert len(cache.local) == 0
        assert cache.get_or_create("k", lambda: "x") == "new"
        # the new subscription works
        with HybridCache(l2) as other:
            other.set("k", "newer")
        eventually(lambda: "k" not in cache.local)
        assert cache.get_or_create("k", lambda: "x") == "newer"


class FreezingProxy:
    """A TCP proxy to Redis that can go silent without closing anything (a dead network)."""

    def __init__(self, host: str, port: int) -> None:
        self._target = (host, port)
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self.frozen = threading.Event()
        self._closed = threading.Event()
        self._sockets: list[socket.socket] = [self._server]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                near, _ = self._server.accept()
            except OSError:
                return
            far = socket.create_connection(self._target)
            self._sockets += [near, far]
            for a, b in ((near, far), (far, near)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        while not self._closed.is_set():
            try:
                data = src.recv(65536)
                if not data:
                    return
                if not self.frozen.is_set():  # frozen: bytes vanish, nobody is told
                    dst.sendall(data)
            except OSError:
                return

    def close(self) -> None:
        self._closed.set()
        for s in self._sockets:
            try:
                s.close()
            except OSError:
                pass


class Recorder(Listener):
    def __init__(self) -> None:
        self.subscribed = 0
        self.disconnected = threading.Event()

    def on_subscribed(self) -> None:
        self.subscribed += 1

    def on_disconnected(self) -> None:
        self.disconnected.set()


def test_a_silently_dead_subscription_is_noticed(redis_server: RedisProcess) -> None:
    proxy = FreezingProxy(redis_server.host, redis_server.port)
    client = redis.Redis(host="127.0.0.1", port=proxy.port)
    recorder = Recorder()
    listener = InvalidationListener(
        client, b"dead:__apphost_hybrid__", recorder, ping_after=0.3, pong_within=0.3
    )
    try:
        assert listener.start(5)
        time.sleep(1.0)  # pings answered while the network is fine
        assert not recorder.disconnected.is_set()
        proxy.frozen.set()
        assert recorder.disconnected.wait(5), "a silent subscription was trusted"
    finally:
        listener.stop()
        client.close()
        proxy.close()


def test_async_invalidation_and_reconnect(client: redis.Redis, redis_server: RedisProcess) -> None:
    async def run() -> None:
        aclient = aioredis.Redis(host=redis_server.host, port=redis_server.port)
        l2 = AsyncDistributedCache(aclient, instance_name="ax:")
        async with AsyncHybridCache(l2) as a, AsyncHybridCache(l2) as b:
            await a.start()
            await b.start()
            assert await b.get_or_create("k", _const("v1"), tags=["t"]) == "v1"
            assert await a.get_or_create("k", _const("x")) == "v1"
            start = time.monotonic()
            await b.set("k", "v2")
            while "k" in a.local:
                await asyncio.sleep(0.001)
            assert time.monotonic() - start < LIMIT
            assert await a.get_or_create("k", _const("x")) == "v2"
            await b.remove_by_tag("t")  # v2 was stored without tags: it stays
            assert await a.get_or_create("k", _const("x")) == "v2"
            # a lost subscription drops L1
            client.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
            deadline = time.monotonic() + 5
            while a._subscriptions < 2 or b._subscriptions < 2:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.01)
            assert len(a.local) == 0 and a.receiving_invalidations
        await aclient.aclose()

    asyncio.run(run())


def _const(value: object) -> Callable[[], Awaitable[object]]:
    async def factory() -> object:
        return value

    return factory


@pytest.fixture
def cluster(redis_cluster: RedisClusterProcess) -> RedisClusterProcess:
    redis_cluster.each_node("FLUSHALL")
    return redis_cluster


def test_invalidation_over_a_redis_cluster(cluster: RedisClusterProcess) -> None:
    kwargs = cluster.node_kwargs()
    node = redis.cluster.ClusterNode(cluster.host, cluster.port)
    one = redis.cluster.RedisCluster(startup_nodes=[node], **kwargs)
    two = redis.cluster.RedisCluster(startup_nodes=[node], **kwargs)
    try:
        with (
            HybridCache(DistributedCache(one, instance_name="cl:")) as a,
            HybridCache(DistributedCache(two, instance_name="cl:")) as b,
        ):
            keys = [f"key-{i}" for i in range(20)]  # spread over the 3 masters
            for k in keys:
                a.set(k, k, tags=["all"])
            assert [b.get_or_create(k, lambda: "x") for k in keys] == keys
            a.set("key-3", "changed", tags=["all"])
            eventually(lambda: "key-3" not in b.local, timeout=LIMIT * 10)
            assert b.get_or_create("key-3", lambda: "x") == "changed"
            a.remove_by_tag("all")
            eventually(lambda: len(b.local) == 0, timeout=LIMIT * 10)
            assert b.get_or_create("key-5", lambda: "fresh") == "fresh"
    finally:
        one.close()
        two.close()

    async def run_async() -> list[object]:
        aone = aiocluster.RedisCluster(host=cluster.host, port=cluster.port, **kwargs)
        atwo = aiocluster.RedisCluster(host=cluster.host, port=cluster.port, **kwargs)
        try:
            async with (
                AsyncHybridCache(AsyncDistributedCache(aone, instance_name="acl:")) as a,
                AsyncHybridCache(AsyncDistributedCache(atwo, instance_name="acl:")) as b,
            ):
                await a.start()
                await b.start()
                await a.set("k", "v1")
                first = await b.get_or_create("k", _const("x"))
                await a.remove("k")
                deadline = time.monotonic() + 1
                while "k" in b.local:
                    assert time.monotonic() < deadline
                    await asyncio.sleep(0.002)
                return [first, await b.get_or_create("k", _const("fresh"))]
        finally:
            await aone.aclose()
            await atwo.aclose()

    assert asyncio.run(run_async()) == ["v1", "fresh"]


def test_async_cache_used_on_a_second_loop_listens_again(
    client: redis.Redis, redis_server: RedisProcess
) -> None:
    l2 = DistributedCache(client, instance_name="loops:")
    cache = AsyncHybridCache()  # replaced below; keeps mypy's type of the name

    async def first() -> None:
        nonlocal cache
        aclient = aioredis.Redis(host=redis_server.host, port=redis_server.port)
        cache = AsyncHybridCache(AsyncDistributedCache(aclient, instance_name="loops:"))
        assert await cache.get_or_create("k", _const("v1")) == "v1"
        assert "k" in cache.local

    async def second() -> object:
        assert "k" in cache.local
        assert await cache.get_or_create("k", _const("x")) == "v1"  # listening again: from L2
        assert cache.local.keys() == ["k"] and cache.receiving_invalidations
        with HybridCache(l2) as writer:
            writer.set("k", "v2")
        deadline = time.monotonic() + 1
        while "k" in cache.local:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.002)
        value = await cache.get_or_create("k", _const("x"))
        await cache.aclose()
        assert cache.distributed is not None
        await cache.distributed.client.aclose()
        return value

    asyncio.run(first())
    assert asyncio.run(second()) == "v2"
