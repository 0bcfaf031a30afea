"""Benchmark the distributed cache against raw redis-py on one local redis-server.

Starts its own ``redis-server`` on a free loopback port and prints, in one run, the rate of
each cache call beside the same work done with raw redis-py, with the targets of issue 12:
``get`` (plain and sliding entries) against a raw ``GET`` and against the very ``EVALSHA`` of
the read script sent raw (our own Python overhead), sync and async; a ``HybridCache`` L1 hit
against a raw ``GET`` (>= 20x); the factory calls of 100 threads (tasks, for
``AsyncHybridCache``) asking for one missing key at once (== 1, each round a fresh key); the
latency of ``remove`` reaching the L1 of a second process (p50/p99 of 200, p99 < 100 ms); and
an ``@output_cache`` endpoint spending 5 ms per miss against the same endpoint uncached,
served by uvicorn in a second process over one keep-alive connection (>= 5x requests/s). Run:
``python benchmarks/cache.py`` (``--rounds 12 --calls 2000`` by default; ``--only SUITE``).

Method: each round runs ``--calls`` calls of every side of a comparison, the sides taking
turns every ``CHUNK`` calls (in an order that rotates), so load bursts on a shared machine
hit all sides alike. A
side's rate is its median over the rounds; a ratio is the median of the rounds' ratios (each
taken within one round, so a slow stretch of the machine cancels out). Absolute numbers vary;
the ratios count.

Suites are plain functions ``(port, rounds, calls) -> list[Line]`` listed in ``SUITES`` (async
ones in ``ASYNC_SUITES``); a ``Line`` is a ratio ``Row`` or a ``Figure`` (a count, a latency).
Second processes are this script run again with a ``CHILDREN`` mode.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import http.client
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import redis
import redis.asyncio as aioredis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from apphost_sdk.caching import (
    AsyncDistributedCache,
    AsyncHybridCache,
    BytesSerializer,
    DistributedCache,
    DistributedCacheEntryOptions,
    HybridCache,
)
from apphost_sdk.caching.cluster import open_async_client, open_client
from apphost_sdk.caching.shared import READ_SHA
from apphost_sdk.caching.tracing import create_tracer
from apphost_sdk.connection_strings import RedisConnectionOptions

VALUE = b"x" * 100
N_KEYS = 100
#: ``core.now_ticks`` written out, as a raw redis-py user would compute ARGV[1].
_EPOCH_TICKS = 621_355_968_000_000_000


Rates = dict[str, list[float]]


class Row(NamedTuple):
    """One line of the table: our rates against a baseline's (one per round), the target."""

    measure: str
    ours: list[float]
    baseline: str
    base: list[float]
    target: float

    @property
    def ratio(self) -> float:
        """The median of the per-round ratios."""
        return statistics.median(o / b for o, b in zip(self.ours, self.base, strict=True))

    @property
    def met(self) -> bool:
        """Whether the median ratio reaches the target."""
        return self.ratio >= self.target

    def line(self) -> str:
        """The printed line: both medians, the ratio, the target, yes/NO."""
        return (
            f"{self.measure:20} {statistics.median(self.ours):11,.0f}  {self.baseline:12} "
            f"{statistics.median(self.base):9,.0f} "
            f"{self.ratio:6.3f} >={self.target:<5} {'yes' if self.met else 'NO'}"
        )


class Figure(NamedTuple):
    """A line that is no ratio (a count, a latency): its text, the target, whether met."""

    measure: str
    text: str
    target: str
    met: bool

    def line(self) -> str:
        """The printed line, in the table's columns as far as they fit."""
        return f"{self.measure:20} {self.text:42} {self.target:7} {'yes' if self.met else 'NO'}"


Line = Row | Figure


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_server(port: int, directory: str) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [
            shutil.which("redis-server") or "/usr/bin/redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            directory,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while True:
        try:
            redis.Redis(port=port).ping()
            return proc
        except redis.exceptions.ConnectionError:
            if time.monotonic() > deadline:
                proc.kill()
                raise
            time.sleep(0.02)


def _rotated(names: list[str], round_no: int) -> list[str]:
    shift = round_no % len(names)
    return names[shift:] + names[:shift]


#: Calls of one side timed in one go; the sides take turns chunk by chunk within a round.
CHUNK = 100


def measure(
    sides: Mapping[str, Callable[[], object]],
    rounds: int,
    calls: int,
    ops: int = 1,
    chunk: int = CHUNK,
) -> Rates:
    """Ops/s of each side in each of ``rounds`` rounds of ``calls`` calls, interleaved.

    Within a round the sides take turns every ``chunk`` calls, so a burst of load on the
    machine hits every side of the comparison, not one.
    """
    clock = time.perf_counter
    names = list(sides)
    for name in names:  # warm up connections, scripts and caches
        for _ in range(50):
            sides[name]()
    rates: Rates = {name: [] for name in names}
    chunk = min(chunk, calls)
    for round_no in range(rounds):
        gc.collect()
        spent = dict.fromkeys(names, 0.0)
        for turn in range(max(1, calls // chunk)):
            for name in _rotated(names, round_no + turn):
                func = sides[name]
                start = clock()
                for _ in range(chunk):
                    func()
                spent[name] += clock() - start
        done = max(1, calls // chunk) * chunk * ops
        for name in names:
            rates[name].append(done / spent[name])
    return rates


async def ameasure(
    sides: Mapping[str, Callable[[], Awaitable[object]]], rounds: int, calls: int, ops: int = 1
) -> Rates:
    """Async twin of ``measure``."""
    clock = time.perf_counter
    names = list(sides)
    for name in names:
        for _ in range(50):
            await sides[name]()
    rates: Rates = {name: [] for name in names}
    chunk = min(CHUNK, calls)
    for round_no in range(rounds):
        gc.collect()
        spent = dict.fromkeys(names, 0.0)
        for turn in range(max(1, calls // chunk)):
            for name in _rotated(names, round_no + turn):
                func = sides[name]
                start = clock()
                for _ in range(chunk):
                    await func()
                spent[name] += clock() - start
        done = max(1, calls // chunk) * chunk * ops
        for name in names:
            rates[name].append(done / spent[name])
    return rates


def redis_benchmark(port: int) -> dict[str, float]:
    """``redis-benchmark -c 1`` GET/SET ops/s: the ceiling for one sequential client."""
    exe = shutil.which("redis-benchmark")
    if exe is None:
        return {}
    out = subprocess.run(
        [exe, "-p", str(port), "-c", "1", "-n", "20000", "-d", "100", "-t", "get,set", "-q"],
        capture_output=True,
        text=True,
        timeout=30,
    ).stdout
    figures: dict[str, float] = {}
    for line in out.replace("\r", "\n").splitlines():
        match = re.match(r"\s*(GET|SET): ([\d.]+) requests per second", line)
        if match:
            figures[match.group(1)] = float(match.group(2))
    return figures


def _get_rows(prefix: str, r: Rates) -> list[Line]:
    """The ``get`` lines of a suite's rates (see ``sync_get_suite``)."""
    return [
        Row(f"{prefix}get", r["get"], "raw GET", r["raw GET"], 0.82),
        Row(f"{prefix}get", r["get"], "raw EVALSHA", r["raw EVALSHA"], 0.95),
        Row(f"{prefix}sliding get", r["sliding"], "raw GET", r["raw GET"], 0.78),
        Row(f"{prefix}sliding get", r["sliding"], "raw EVALSHA", r["raw EVALSHA sld"], 0.95),
        Row(f"{prefix}hosted get", r["hosted"], "raw EVALSHA", r["raw hosted"], 0.95),
    ]


def _hosted(port: int, *, for_async: bool) -> tuple[RedisConnectionOptions, dict[str, Any]]:
    """What the service side opens for ``ConnectionStrings__cache`` (ClusterMode auto)."""
    options = RedisConnectionOptions.parse(f"127.0.0.1:{port}")
    return options, options.to_redis_kwargs(for_async=for_async)


def sync_get_suite(port: int, rounds: int, calls: int) -> list[Line]:
    """``DistributedCache.get`` of a plain and a sliding entry against raw redis-py sending a
    ``GET``, and sending the cache's own ``EVALSHA`` (the same bytes on the wire)."""
    raw = redis.Redis(port=port)
    cache = DistributedCache(redis.Redis(port=port))
    # As the hosting layer builds it: a client that asked the server whether it is a
    # cluster, and the global OpenTelemetry tracer (no provider configured: no spans).
    options, kwargs = _hosted(port, for_async=False)
    hosted = DistributedCache(
        open_client(options, kwargs, cluster=None), tracer=create_tracer("127.0.0.1", port)
    )
    raw_hosted = redis.Redis(**kwargs)  # the same socket options (time-outs, keep-alive)
    cache.set("plain", VALUE)
    cache.set("sliding", VALUE, DistributedCacheEntryOptions(sliding_expiration=3600))
    raw.set("raw", VALUE)
    cache.get("plain")  # loads the read script for the raw EVALSHA
    now_ns = time.time_ns

    def evalsha(
        key: bytes, run: Callable[..., object] = raw.execute_command
    ) -> Callable[[], object]:
        return lambda: run("EVALSHA", READ_SHA, 1, key, _EPOCH_TICKS + now_ns() // 100, b"1")

    try:
        rates = measure(
            {
                "get": lambda: cache.get("plain"),
                "sliding": lambda: cache.get("sliding"),
                "hosted": lambda: hosted.get("plain"),
                "raw GET": lambda: raw.get("raw"),
                "raw EVALSHA": evalsha(b"plain"),
                "raw EVALSHA sld": evalsha(b"sliding"),
                "raw hosted": evalsha(b"plain", raw_hosted.execute_command),
            },
            rounds,
            calls,
        )
    finally:
        raw.close()
        raw_hosted.close()
        cache.client.close()
        hosted.client.close()
    return _get_rows("", rates)


def sync_write_suite(port: int, rounds: int, calls: int) -> list[Line]:
    """``set``, ``set`` with an expiry and ``get_many`` against their raw redis-py forms."""
    raw = redis.Redis(port=port)
    cache = DistributedCache(redis.Redis(port=port))
    relative = DistributedCacheEntryOptions(absolute_expiration_relative_to_now=3600)
    keys = [f"k{i}" for i in range(N_KEYS)]
    cache.set_many({k: VALUE for k in keys})

    def many_loop() -> None:
        for k in keys:
            cache.get(k)

    try:
        s = measure(
            {
                "set": lambda: cache.set("plain", VALUE),
                "raw SET": lambda: raw.set("raw", VALUE),
                "set exp": lambda: cache.set("rel", VALUE, relative),
                "raw SET EX": lambda: raw.set("raw", VALUE, ex=3600),
            },
            rounds,
            calls,
        )
        many_calls = max(2, calls // N_KEYS)
        m = measure(
            {"get_many": lambda: cache.get_many(keys), "loop": many_loop},
            rounds,
            many_calls,
            N_KEYS,
        )
    finally:
        raw.close()
        cache.client.close()
    return [
        Row("set", s["set"], "raw SET", s["raw SET"], 0.85),
        Row("set with expiry", s["set exp"], "raw SET EX", s["raw SET EX"], 0.85),
        Row("get_many(100)", m["get_many"], "100 x get", m["loop"], 10.0),
    ]


async def async_get_suite(port: int, rounds: int, calls: int) -> list[Line]:
    """``sync_get_suite`` for ``AsyncDistributedCache`` against ``redis.asyncio``."""
    raw = aioredis.Redis(port=port)
    cache = AsyncDistributedCache(aioredis.Redis(port=port))
    # As the hosting layer builds it: a deferred client (it asks on first use whether the
    # server is a cluster) and the global OpenTelemetry tracer (no provider: no spans).
    options, kwargs = _hosted(port, for_async=True)
    hosted = AsyncDistributedCache(
        open_async_client(options, kwargs, cluster=None), tracer=create_tracer("127.0.0.1", port)
    )
    raw_hosted = aioredis.Redis(**kwargs)  # the same socket options (time-outs, keep-alive)
    await cache.set("aplain", VALUE)
    await cache.set("asliding", VALUE, DistributedCacheEntryOptions(sliding_expiration=3600))
    await raw.set("araw", VALUE)
    await cache.get("aplain")  # loads the read script for the raw EVALSHA
    now_ns = time.time_ns

    def evalsha(
        key: bytes, run: Callable[..., Awaitable[object]] = raw.execute_command
    ) -> Callable[[], Awaitable[object]]:
        return lambda: run("EVALSHA", READ_SHA, 1, key, _EPOCH_TICKS + now_ns() // 100, b"1")

    try:
        rates = await ameasure(
            {
                "get": lambda: cache.get("aplain"),
                "sliding": lambda: cache.get("asliding"),
                "hosted": lambda: hosted.get("aplain"),
                "raw GET": lambda: raw.get("araw"),
                "raw EVALSHA": evalsha(b"aplain"),
                "raw EVALSHA sld": evalsha(b"asliding"),
                "raw hosted": evalsha(b"aplain", raw_hosted.execute_command),
            },
            rounds,
            calls,
        )
    finally:
        await raw.aclose()
        await raw_hosted.aclose()
        await cache.client.aclose()
        await hosted.client.aclose()
    return _get_rows("async ", rates)


async def async_write_suite(port: int, rounds: int, calls: int) -> list[Line]:
    """``sync_write_suite`` for ``AsyncDistributedCache`` (set and get_many)."""
    raw = aioredis.Redis(port=port)
    cache = AsyncDistributedCache(aioredis.Redis(port=port))
    keys = [f"ak{i}" for i in range(N_KEYS)]
    await cache.set_many({k: VALUE for k in keys})

    async def many_loop() -> None:
        for k in keys:
            await cache.get(k)

    try:
        s = await ameasure(
            {"set": lambda: cache.set("aplain", VALUE), "raw SET": lambda: raw.set("araw", VALUE)},
            rounds,
            calls,
        )
        many_calls = max(2, calls // N_KEYS)
        m = await ameasure(
            {"get_many": lambda: cache.get_many(keys), "loop": many_loop},
            rounds,
            many_calls,
            N_KEYS,
        )
    finally:
        await raw.aclose()
        await cache.client.aclose()
    return [
        Row("async set", s["set"], "raw SET", s["raw SET"], 0.85),
        Row("async get_many(100)", m["get_many"], "100 x get", m["loop"], 10.0),
    ]


def hybrid_hit_suite(port: int, rounds: int, calls: int) -> list[Line]:
    """``HybridCache.get_or_create`` answered from L1 against a raw redis-py ``GET``."""
    raw = redis.Redis(port=port)
    client = redis.Redis(port=port)
    raw.set("raw", VALUE)
    try:
        with HybridCache(DistributedCache(client), serializer=BytesSerializer()) as hybrid:
            hybrid.get_or_create("hit", lambda: VALUE)
            r = measure(
                {
                    "hybrid": lambda: hybrid.get_or_create("hit", lambda: VALUE),
                    "raw GET": lambda: raw.get("raw"),
                },
                rounds,
                calls,
            )
    finally:
        raw.close()
        client.close()
    return [Row("hybrid L1 hit", r["hybrid"], "raw GET", r["raw GET"], 20.0)]


#: Callers of one missing key at once, and the rounds (fresh keys) of the stampede suites.
STAMPEDE_CALLERS = 100
STAMPEDE_ROUNDS = 5
#: How long the stampede factory takes (a simulated query), seconds.
FACTORY_SECONDS = 0.02


def _stampede_figure(measure_name: str, counts: list[int]) -> Figure:
    text = f"factory calls, {len(counts)} rounds: {' '.join(map(str, counts))}"
    return Figure(measure_name, text, "==1", all(c == 1 for c in counts))


def stampede_suite(port: int, rounds: int, calls: int) -> list[Line]:
    """100 threads ``get_or_create`` one missing key at once: the factory must run once."""
    client = redis.Redis(port=port, max_connections=2 * STAMPEDE_CALLERS)
    counts: list[int] = []
    lock = threading.Lock()
    try:
        with HybridCache(DistributedCache(client, instance_name="stampede:")) as hybrid:
            for round_no in range(STAMPEDE_ROUNDS):
                key = f"s{round_no}-{time.time_ns()}"
                calls_made = [0]
                start = threading.Barrier(STAMPEDE_CALLERS)

                def factory(made: list[int] = calls_made) -> str:
                    with lock:
                        made[0] += 1
                    time.sleep(FACTORY_SECONDS)
                    return "value"

                def caller(key: str = key, barrier: threading.Barrier = start) -> None:
                    barrier.wait()
                    hybrid.get_or_create(key, factory)

                threads = [threading.Thread(target=caller) for _ in range(STAMPEDE_CALLERS)]
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join()
                counts.append(calls_made[0])
    finally:
        client.close()
    return [_stampede_figure(f"{STAMPEDE_CALLERS} threads 1 key", counts)]


async def async_stampede_suite(port: int, rounds: int, calls: int) -> list[Line]:
    """``stampede_suite`` for ``AsyncHybridCache``: 100 tasks on one event loop."""
    client = aioredis.Redis(port=port)
    counts: list[int] = []
    hybrid = AsyncHybridCache(AsyncDistributedCache(client, instance_name="astampede:"))
    try:
        await hybrid.start()
        for round_no in range(STAMPEDE_ROUNDS):
            key = f"a{round_no}-{time.time_ns()}"
            calls_made = [0]

            async def factory(made: list[int] = calls_made) -> str:
                made[0] += 1
                await asyncio.sleep(FACTORY_SECONDS)
                return "value"

            await asyncio.gather(
                *(hybrid.get_or_create(key, factory) for _ in range(STAMPEDE_CALLERS))
            )
            counts.append(calls_made[0])
    finally:
        await hybrid.aclose()
        await client.aclose()
    return [_stampede_figure(f"{STAMPEDE_CALLERS} tasks 1 key", counts)]


#: Samples of the cross-process invalidation latency, and its target (p99, seconds).
INVALIDATION_SAMPLES = 200
INVALIDATION_P99 = 0.1


def _child_hybrid(argv: list[str]) -> int:
    """The second process of ``invalidation_suite``: a ``HybridCache`` driven over stdin.

    For each line ``KEY`` it fills its L1 with ``KEY`` (``get_or_create``, which publishes
    nothing), prints ``held``, polls its L1 until ``KEY`` is gone and prints
    ``gone <time.monotonic_ns()>`` (CLOCK_MONOTONIC, the same clock in every process on
    Linux), or ``timeout`` after 5 s.
    """
    client = redis.Redis(port=int(argv[0]))
    with HybridCache(DistributedCache(client, instance_name=argv[1])) as hybrid:
        print("ready", flush=True)
        for line in sys.stdin:
            key = line.strip()
            if not key:
                break
            hybrid.get_or_create(key, lambda: "child")
            print("held", flush=True)
            deadline = time.monotonic() + 5
            while key in hybrid.local and time.monotonic() < deadline:
                time.sleep(0.0001)
            gone = key not in hybrid.local
            print(f"gone {time.monotonic_ns()}" if gone else "timeout", flush=True)
    client.close()
    return 0


def _child(mode: str, *args: str) -> subprocess.Popen[str]:
    """This script started again as the child ``mode`` (see ``CHILDREN``), lines both ways."""
    return subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), mode, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        bufsize=1,
    )


def _stop(proc: subprocess.Popen[str]) -> None:
    """End a child: close its stdin (it exits), else terminate it."""
    for stream in (proc.stdin, proc.stdout):
        if stream is not None:
            stream.close()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.terminate()
        proc.wait(timeout=5)


def invalidation_suite(port: int, rounds: int, calls: int) -> list[Line]:
    """From ``remove(key)`` here to another process's L1 having dropped ``key``: p50/p99."""
    child = _child("--child-hybrid", str(port), "xp:")
    client = redis.Redis(port=port)
    samples: list[float] = []
    try:
        assert child.stdin is not None and child.stdout is not None
        if child.stdout.readline().strip() != "ready":
            raise RuntimeError("the second process's HybridCache did not start")
        with HybridCache(DistributedCache(client, instance_name="xp:")) as hybrid:
            for n in range(INVALIDATION_SAMPLES):
                key = f"inv{n}"
                child.stdin.write(key + "\n")
                if child.stdout.readline().strip() != "held":
                    raise RuntimeError("the second process did not fill its L1")
                start = time.monotonic_ns()
                hybrid.remove(key)
                answer = child.stdout.readline().split()
                if answer[:1] != ["gone"]:
                    raise RuntimeError(f"the second process kept {key} in L1: {answer}")
                samples.append((int(answer[1]) - start) / 1e9)
    finally:
        client.close()
        _stop(child)
    cuts = statistics.quantiles(samples, n=100)
    p50, p99 = statistics.median(samples), cuts[98]
    text = f"p50 {p50 * 1e3:.2f} ms, p99 {p99 * 1e3:.2f} ms ({len(samples)} removes)"
    return [
        Figure(
            "invalidation xproc", text, f"<{INVALIDATION_P99 * 1e3:.0f} ms", p99 < INVALIDATION_P99
        )
    ]


#: The simulated query of the output-cache endpoints, seconds; requests per side and round.
QUERY_SECONDS = 0.005
HTTP_CALLS = 100
HTTP_CHUNK = 20


def _child_web(argv: list[str]) -> int:
    """The web server of ``output_cache_suite``: uvicorn on port ``argv[0]`` serving
    ``/cached`` (``@output_cache``) and ``/uncached``, both sleeping ``QUERY_SECONDS``, with
    the output cache on the redis-server at port ``argv[1]``."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    from apphost_sdk.hosting.output_cache import (
        OutputCacheMiddleware,
        RedisOutputCacheStore,
        output_cache,
    )

    async def query(request: Request) -> Response:
        await asyncio.sleep(QUERY_SECONDS)
        return JSONResponse({"products": ["a", "b", "c"], "path": request.url.path})

    @output_cache()
    async def cached(request: Request) -> Response:
        return await query(request)

    app = Starlette(
        routes=[Route("/cached", cached), Route("/uncached", query)],
        middleware=[
            Middleware(
                OutputCacheMiddleware,
                store=RedisOutputCacheStore(aioredis.Redis(port=int(argv[1]))),
            )
        ],
    )
    uvicorn.run(app, host="127.0.0.1", port=int(argv[0]), log_level="warning")
    return 0


def _wait_for_port(port: int, proc: subprocess.Popen[str], timeout: float = 20) -> None:
    """Return once something accepts connections on ``port``; fail if ``proc`` died."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the web server did not listen on port {port}") from None
            time.sleep(0.05)


def output_cache_suite(port: int, rounds: int, calls: int) -> list[Line]:
    """Requests/s of an ``@output_cache`` endpoint against the same endpoint uncached, each
    spending ``QUERY_SECONDS`` on a miss: uvicorn in a second process, one keep-alive HTTP
    connection, ``HTTP_CALLS`` sequential requests per side and round, interleaved."""
    web_port = _free_port()
    server = _child("--child-web", str(web_port), str(port))
    conn = http.client.HTTPConnection("127.0.0.1", web_port, timeout=10)

    def fetch(path: str) -> Callable[[], object]:
        def get() -> bytes:
            conn.request("GET", path)
            response = conn.getresponse()
            body = response.read()
            if response.status != 200:
                raise RuntimeError(f"GET {path} answered {response.status}")
            return body

        return get

    try:
        _wait_for_port(web_port, server)
        r = measure(
            {"cached": fetch("/cached"), "uncached": fetch("/uncached")},
            rounds,
            min(calls, HTTP_CALLS),
            chunk=HTTP_CHUNK,
        )
    finally:
        conn.close()
        server.terminate()
        server.wait(timeout=10)
        for stream in (server.stdin, server.stdout):
            if stream is not None:
                stream.close()
    return [Row("output-cached GET", r["cached"], "uncached GET", r["uncached"], 5.0)]


Suite = Callable[[int, int, int], list[Line]]
AsyncSuite = Callable[[int, int, int], Coroutine[Any, Any, list[Line]]]

#: Blocking suites, run in this order.
SUITES: dict[str, Suite] = {
    "get": sync_get_suite,
    "write": sync_write_suite,
    "hybrid": hybrid_hit_suite,
    "stampede": stampede_suite,
    "invalidation": invalidation_suite,
    "output cache": output_cache_suite,
}
#: Asyncio suites, run after the blocking ones in one event loop.
ASYNC_SUITES: dict[str, AsyncSuite] = {
    "async get": async_get_suite,
    "async write": async_write_suite,
    "async stampede": async_stampede_suite,
}
#: The second processes some suites start: this script run as ``cache.py MODE ARGS...``.
CHILDREN: dict[str, Callable[[list[str]], int]] = {
    "--child-hybrid": _child_hybrid,
    "--child-web": _child_web,
}


async def _run_async(port: int, rounds: int, calls: int, only: set[str] | None) -> list[Line]:
    rows: list[Line] = []
    for name, suite in ASYNC_SUITES.items():
        if only is None or name in only:
            rows.extend(await suite(port, rounds, calls))
    return rows


def run_all(
    rounds: int, calls: int, only: set[str] | None = None
) -> tuple[dict[str, float], list[Line]]:
    """Start a redis-server, run the chosen suites (all by default), stop the server."""
    port = _free_port()
    rows: list[Line] = []
    with tempfile.TemporaryDirectory() as directory:
        proc = _start_server(port, directory)
        try:
            ceiling = redis_benchmark(port)
            for name, suite in SUITES.items():
                if only is None or name in only:
                    rows.extend(suite(port, rounds, calls))
            rows.extend(asyncio.run(_run_async(port, rounds, calls, only)))
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    return ceiling, rows


def main(argv: list[str] | None = None) -> int:
    """Run the suites and print the table; exit status 1 when a target is missed."""
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in CHILDREN:
        return CHILDREN[argv[0]](argv[1:])
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=12, help="interleaved rounds per measure")
    parser.add_argument("--calls", type=int, default=2000, help="calls per side and round")
    parser.add_argument(
        "--only",
        action="append",
        choices=[*SUITES, *ASYNC_SUITES],
        help="run only this suite (repeatable)",
    )
    args = parser.parse_args(argv)
    started = time.monotonic()
    ceiling, rows = run_all(args.rounds, args.calls, set(args.only) if args.only else None)
    if ceiling:
        print(
            "ceiling redis-benchmark -c 1: "
            + ", ".join(f"{k} {v:,.0f} ops/s" for k, v in ceiling.items())
        )
    print(f"{'measure':20} {'cache ops/s':>11}  {'vs':12} {'ops/s':>9} {'ratio':>6} target  met")
    all_met = True
    for row in rows:
        all_met &= row.met
        print(row.line())
    print(
        f"{args.rounds} rounds x {args.calls} calls; "
        f"total run time {time.monotonic() - started:.1f} s"
    )
    return 0 if all_met else 1


if __name__ == "__main__":
    raise SystemExit(main())
