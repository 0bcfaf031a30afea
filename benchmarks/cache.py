"""Benchmark the distributed cache against raw redis-py on one local redis-server.

Starts its own ``redis-server`` on a free loopback port, measures side by side in one run, and
prints ratios with the targets of issue 5. Run: ``python benchmarks/cache.py``. Each pair is
measured call by call, interleaved, and compared by median latency, so a noisy shared machine
disturbs both sides alike; absolute numbers vary, the ratios are what count.
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
from collections.abc import Awaitable, Callable
from pathlib import Path

import redis
import redis.asyncio as aioredis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from apphost_sdk.caching import (
    AsyncDistributedCache,
    DistributedCache,
    DistributedCacheEntryOptions,
)

VALUE = b"x" * 100
N_KEYS = 100


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


def compare(
    ours: Callable[[], object], base: Callable[[], object], rounds: int, ops: int = 1
) -> tuple[float, float]:
    """Ops/s of ``ours`` and ``base`` from their median latency, calls interleaved one by one.

    Interleaving makes load bursts on a shared machine hit both sides alike; the median
    ignores the bursts themselves.
    """
    clock = time.perf_counter
    for _ in range(50):
        ours()
        base()
    gc.collect()
    a: list[float] = []
    b: list[float] = []
    for _ in range(rounds):
        start = clock()
        ours()
        middle = clock()
        base()
        a.append(middle - start)
        b.append(clock() - middle)
    return ops / statistics.median(a), ops / statistics.median(b)


async def acompare(
    ours: Callable[[], Awaitable[object]],
    base: Callable[[], Awaitable[object]],
    rounds: int,
    ops: int = 1,
) -> tuple[float, float]:
    """Async twin of ``compare``."""
    clock = time.perf_counter
    for _ in range(50):
        await ours()
        await base()
    gc.collect()
    a: list[float] = []
    b: list[float] = []
    for _ in range(rounds):
        start = clock()
        await ours()
        middle = clock()
        await base()
        a.append(middle - start)
        b.append(clock() - middle)
    return ops / statistics.median(a), ops / statistics.median(b)


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


def sync_suite(port: int, rounds: int) -> dict[str, tuple[float, float]]:
    """Pairs of (cache ops/s, baseline ops/s) for the blocking client."""
    raw = redis.Redis(port=port)
    cache = DistributedCache(redis.Redis(port=port))
    sliding = DistributedCacheEntryOptions(sliding_expiration=3600)
    relative = DistributedCacheEntryOptions(absolute_expiration_relative_to_now=3600)
    raw.set("raw", VALUE)
    cache.set("plain", VALUE)
    cache.set("sliding", VALUE, sliding)
    keys = [f"k{i}" for i in range(N_KEYS)]
    cache.set_many({k: VALUE for k in keys})

    def many_loop() -> None:
        for k in keys:
            cache.get(k)

    many_rounds = max(20, rounds // 40)
    results = {
        "get": compare(lambda: cache.get("plain"), lambda: raw.get("raw"), rounds),
        "set": compare(lambda: cache.set("plain", VALUE), lambda: raw.set("raw", VALUE), rounds),
        "set with expiry": compare(
            lambda: cache.set("rel", VALUE, relative),
            lambda: raw.set("raw", VALUE, ex=3600),
            rounds,
        ),
        "sliding get": compare(lambda: cache.get("sliding"), lambda: raw.get("raw"), rounds),
        "get_many(100)": compare(lambda: cache.get_many(keys), many_loop, many_rounds, N_KEYS),
    }
    raw.close()
    cache.client.close()
    return results


async def async_suite(port: int, rounds: int) -> dict[str, tuple[float, float]]:
    """Pairs of (cache ops/s, baseline ops/s) for the asyncio client."""
    raw = aioredis.Redis(port=port)
    cache = AsyncDistributedCache(aioredis.Redis(port=port))
    sliding = DistributedCacheEntryOptions(sliding_expiration=3600)
    await raw.set("araw", VALUE)
    await cache.set("aplain", VALUE)
    await cache.set("asliding", VALUE, sliding)
    keys = [f"ak{i}" for i in range(N_KEYS)]
    await cache.set_many({k: VALUE for k in keys})

    async def many_loop() -> None:
        for k in keys:
            await cache.get(k)

    many_rounds = max(20, rounds // 40)
    results = {
        "async get": await acompare(lambda: cache.get("aplain"), lambda: raw.get("araw"), rounds),
        "async set": await acompare(
            lambda: cache.set("aplain", VALUE), lambda: raw.set("araw", VALUE), rounds
        ),
        "async sliding get": await acompare(
            lambda: cache.get("asliding"), lambda: raw.get("araw"), rounds
        ),
        "async get_many(100)": await acompare(
            lambda: cache.get_many(keys), many_loop, many_rounds, N_KEYS
        ),
    }
    await raw.aclose()
    await cache.client.aclose()
    return results


TARGETS = {
    "get": 0.85,
    "set": 0.85,
    "set with expiry": 0.85,
    "sliding get": 0.8,
    "get_many(100)": 10.0,
    "async get": 0.85,
    "async set": 0.85,
    "async sliding get": 0.8,
    "async get_many(100)": 10.0,
}
BASELINES = {
    "get": "raw GET",
    "set": "raw SET",
    "set with expiry": "raw SET EX",
    "sliding get": "raw GET",
    "get_many(100)": "100 x get",
}


def main(argv: list[str] | None = None) -> int:
    """Run both suites and print the table; exit status 1 when a target is missed."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3000, help="interleaved calls per pair")
    args = parser.parse_args(argv)
    started = time.monotonic()
    port = _free_port()
    with tempfile.TemporaryDirectory() as directory:
        proc = _start_server(port, directory)
        try:
            ceiling = redis_benchmark(port)
            results = sync_suite(port, args.rounds)
            results.update(asyncio.run(async_suite(port, args.rounds)))
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    if ceiling:
        print(
            "ceiling redis-benchmark -c 1: "
            + ", ".join(f"{k} {v:,.0f} ops/s" for k, v in ceiling.items())
        )
    print(f"{'measure':22} {'cache ops/s':>12} {'baseline ops/s':>15} {'ratio':>7} target  met")
    all_met = True
    for name, (ours, base) in results.items():
        ratio = ours / base
        target = TARGETS[name]
        met = ratio >= target
        all_met &= met
        label = BASELINES.get(name.removeprefix("async "), "")
        print(
            f"{name:22} {ours:12,.0f} {base:15,.0f} {ratio:7.2f} >={target:<5} "
            f"{'yes' if met else 'NO'}  (vs {label})"
        )
    print(f"total run time {time.monotonic() - started:.1f} s")
    return 0 if all_met else 1


if __name__ == "__main__":
    raise SystemExit(main())
