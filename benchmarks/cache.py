"""Benchmark the distributed cache against raw redis-py on one local redis-server.

Starts its own ``redis-server`` on a free loopback port and prints, in one run, the rate of
each cache call beside the same work done with raw redis-py, with the targets of issue 12:
``get`` (plain and sliding entries) against a raw ``GET`` and against the very ``EVALSHA`` of
the read script sent raw (our own Python overhead), sync and async. Run:
``python benchmarks/cache.py`` (``--rounds 12 --calls 2000`` by default).

Method: each round runs ``--calls`` calls of every side of a comparison, the sides taking
turns every ``CHUNK`` calls (in an order that rotates), so load bursts on a shared machine
hit all sides alike. A
side's rate is its median over the rounds; a ratio is the median of the rounds' ratios (each
taken within one round, so a slow stretch of the machine cancels out). Absolute numbers vary;
the ratios count.

Suites are plain functions ``(port, rounds, calls) -> list[Row]`` listed in ``SUITES`` (async
ones in ``ASYNC_SUITES``): benchmarks of other caches (hybrid, output cache) add theirs there.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import redis
import redis.asyncio as aioredis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from apphost_sdk.caching import (
    AsyncDistributedCache,
    DistributedCache,
    DistributedCacheEntryOptions,
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
    sides: Mapping[str, Callable[[], object]], rounds: int, calls: int, ops: int = 1
) -> Rates:
    """Ops/s of each side in each of ``rounds`` rounds of ``calls`` calls, interleaved.

    Within a round the sides take turns every ``CHUNK`` calls, so a burst of load on the
    machine hits every side of the comparison, not one.
    """
    clock = time.perf_counter
    names = list(sides)
    for name in names:  # warm up connections, scripts and caches
        for _ in range(50):
            sides[name]()
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


def _get_rows(prefix: str, r: Rates) -> list[Row]:
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


def sync_get_suite(port: int, rounds: int, calls: int) -> list[Row]:
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


def sync_write_suite(port: int, rounds: int, calls: int) -> list[Row]:
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


async def async_get_suite(port: int, rounds: int, calls: int) -> list[Row]:
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


async def async_write_suite(port: int, rounds: int, calls: int) -> list[Row]:
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


Suite = Callable[[int, int, int], list[Row]]
AsyncSuite = Callable[[int, int, int], Coroutine[Any, Any, list[Row]]]

#: Blocking suites, run in this order. Benchmarks of other caches add their functions here
#: (e.g. a hybrid-cache suite: ``get_or_create`` hits against ``DistributedCache.get``).
SUITES: dict[str, Suite] = {
    "get": sync_get_suite,
    "write": sync_write_suite,
}
#: Asyncio suites, run after the blocking ones in one event loop.
ASYNC_SUITES: dict[str, AsyncSuite] = {
    "async get": async_get_suite,
    "async write": async_write_suite,
}


async def _run_async(port: int, rounds: int, calls: int, only: set[str] | None) -> list[Row]:
    rows: list[Row] = []
    for name, suite in ASYNC_SUITES.items():
        if only is None or name in only:
            rows.extend(await suite(port, rounds, calls))
    return rows


def run_all(
    rounds: int, calls: int, only: set[str] | None = None
) -> tuple[dict[str, float], list[Row]]:
    """Start a redis-server, run the chosen suites (all by default), stop the server."""
    port = _free_port()
    rows: list[Row] = []
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
        ratio = row.ratio
        met = ratio >= row.target
        all_met &= met
        print(
            f"{row.measure:20} {statistics.median(row.ours):11,.0f}  {row.baseline:12} "
            f"{statistics.median(row.base):9,.0f} "
            f"{ratio:6.3f} >={row.target:<5} {'yes' if met else 'NO'}"
        )
    print(
        f"{args.rounds} rounds x {args.calls} calls; "
        f"total run time {time.monotonic() - started:.1f} s"
    )
    return 0 if all_met else 1


if __name__ == "__main__":
    raise SystemExit(main())
