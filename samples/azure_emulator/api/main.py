"""A FastAPI service with two distributed caches: ``cache`` (Azure Managed Redis) and ``legacy``
(Azure Cache for Redis). ``PUT /{cache}/{key}`` stores the body, ``GET /{cache}/{key}`` reads
it back, ``GET /health`` runs both caches' health checks.

The app host injects ``ConnectionStrings__cache`` and ``ConnectionStrings__legacy``; without a
password in them the caches authenticate with Microsoft Entra ID, and a Managed Redis database
with the OSS clustering policy is reached through a cluster-aware client.
"""

from __future__ import annotations

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, PlainTextResponse

from apphost_sdk.caching import AsyncDistributedCache
from apphost_sdk.hosting import HealthStatus, HostApplicationBuilder
from apphost_sdk.hosting.asgi import cache_lifespan, keyed_distributed_cache

builder = HostApplicationBuilder()
builder.add_keyed_redis_distributed_cache("cache")
builder.add_keyed_redis_distributed_cache("legacy")
host = builder.build()

app = FastAPI(lifespan=cache_lifespan(host))
CACHES = {"cache": keyed_distributed_cache("cache"), "legacy": keyed_distributed_cache("legacy")}


async def _cache(name: str, request: Request) -> AsyncDistributedCache:
    dependency = CACHES.get(name)
    if dependency is None:
        raise HTTPException(404, f"no cache {name!r}; use 'cache' or 'legacy'")
    return await dependency(request)


@app.put("/{name}/{key}")
async def put(name: str, key: str, request: Request) -> dict[str, str]:
    cache = await _cache(name, request)
    await cache.set(key, await request.body())
    return {"stored": key, "in": name}


@app.get("/{name}/{key}")
async def get(name: str, key: str, request: Request) -> PlainTextResponse:
    cache = await _cache(name, request)
    value = await cache.get(key)
    if value is None:
        raise HTTPException(404, f"{key!r} is not in {name}")
    return PlainTextResponse(value.decode())


@app.get("/health")
async def health() -> JSONResponse:
    report = await host.health.check_async()
    status = 200 if report.status is HealthStatus.HEALTHY else 503
    return JSONResponse(report.to_dict(), status_code=status)
