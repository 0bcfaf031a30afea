"""FastAPI / Starlette glue: a lifespan that opens and closes the host's caches, and dependencies.

``app = FastAPI(lifespan=cache_lifespan(host))``, then in an ``async def`` endpoint
``cache: AsyncDistributedCache = Depends(get_distributed_cache)`` (await every call), and in a
plain ``def`` endpoint, which FastAPI runs in a worker thread,
``cache: DistributedCache = Depends(get_sync_distributed_cache)``. Keyed caches:
``Depends(keyed_distributed_cache("chat"))`` / ``Depends(keyed_sync_distributed_cache("chat"))``.

Using the wrong one is an error at the first call, never a silent no-op: the asyncio cache
called from a sync endpoint (where its coroutine could not be awaited) raises ``RuntimeError``
pointing to ``get_sync_distributed_cache``, and the blocking cache of these dependencies
called from an async endpoint (where it would stall the event loop) raises ``RuntimeError``
pointing to ``get_distributed_cache``.
"""

from __future__ import annotations

import contextlib
import logging
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from starlette.requests import Request

from ..caching import AsyncDistributedCache, DistributedCache
from .builder import Host
from .redis_integration import RedisRegistration

__all__ = [
    "cache_lifespan",
    "get_distributed_cache",
    "get_sync_distributed_cache",
    "keyed_distributed_cache",
    "keyed_sync_distributed_cache",
]

_log = logging.getLogger("apphost_sdk.hosting")
STATE_KEY = "apphost"


def cache_lifespan(
    host: Host,
) -> Callable[[Any], contextlib.AbstractAsyncContextManager[dict[str, Any]]]:
    """A Starlette/FastAPI ``lifespan``: connects the registered async caches at startup
    (logging, not failing, when Redis is down unless ``abortConnect=true``) and closes every
    service of ``host`` at shutdown. Request handlers reach the host via ``request.state``.
    """

    @contextlib.asynccontextmanager
    async def lifespan(_app: Any) -> AsyncIterator[dict[str, Any]]:
        await _open_caches(host)
        try:
            yield {STATE_KEY: host}
        finally:
            await host.aclose()

    return lifespan


async def _open_caches(host: Host) -> None:
    for key, registration in _registrations(host):
        if not host.services.is_registered(AsyncDistributedCache, key):
            continue
        try:
            await registration.cluster_enabled_async()  # asks the server off the event loop
            cache = host.services.resolve(AsyncDistributedCache, key)
            await cache.ping()
        except Exception as exc:
            if registration.options.abort_connect:
                raise
            _log.warning("Redis connection %s is not reachable yet: %s", registration.name, exc)


def _registrations(host: Host) -> list[tuple[str | None, RedisRegistration]]:
    services = host.services
    return [
        (key, services.resolve(RedisRegistration, key))
        for service_type, key in services.registered()
        if service_type is RedisRegistration
    ]


def _host_of(request: Request) -> Host:
    host = getattr(request.state, STATE_KEY, None)
    if not isinstance(host, Host):
        raise RuntimeError(
            "no apphost Host in request.state: pass cache_lifespan(host) as the app's lifespan"
        )
    return host


async def get_distributed_cache(request: Request) -> AsyncDistributedCache:
    """FastAPI dependency for ``async def`` endpoints: the unkeyed ``AsyncDistributedCache``
    of the lifespan's host (await its calls). In a ``def`` endpoint use
    ``get_sync_distributed_cache``."""
    return _async_cache(request, None)


async def get_sync_distributed_cache(request: Request) -> DistributedCache:
    """FastAPI dependency for plain ``def`` endpoints (run in a worker thread): the unkeyed
    blocking ``DistributedCache`` of the lifespan's host. Called from an ``async def``
    endpoint it raises, as it would block the event loop: use ``get_distributed_cache``."""
    return _sync_cache(request, None)


def keyed_distributed_cache(key: str) -> Callable[[Request], Awaitable[AsyncDistributedCache]]:
    """A FastAPI dependency (``async def`` endpoints) returning the ``AsyncDistributedCache``
    registered under ``key``."""

    async def dependency(request: Request) -> AsyncDistributedCache:
        return _async_cache(request, key)

    return dependency


def keyed_sync_distributed_cache(key: str) -> Callable[[Request], Awaitable[DistributedCache]]:
    """A FastAPI dependency (plain ``def`` endpoints) returning the blocking
    ``DistributedCache`` registered under ``key``."""

    async def dependency(request: Request) -> DistributedCache:
        return _sync_cache(request, key)

    return dependency


def _async_cache(request: Request, key: str | None) -> AsyncDistributedCache:
    cache = _host_of(request).services.resolve(AsyncDistributedCache, key)
    # Resolved on the event loop (the dependency is async): the cache learns its loop, so a
    # call from a sync endpoint's worker thread is recognised as one.
    cache._check_call("get_distributed_cache")
    return cache


#: Per host cache, its view that refuses calls on an event loop's thread (made once).
_SYNC_VIEWS: weakref.WeakKeyDictionary[DistributedCache, DistributedCache] = (
    weakref.WeakKeyDictionary()
)


def _sync_cache(request: Request, key: str | None) -> DistributedCache:
    cache = _host_of(request).services.resolve(DistributedCache, key)
    view = _SYNC_VIEWS.get(cache)
    if view is None:
        fix = (
            "in an async def endpoint use Depends(get_distributed_cache) and await it"
            if key is None
            else f"in an async def endpoint use Depends(keyed_distributed_cache({key!r})) and "
            "await it"
        )
        view = _SYNC_VIEWS.setdefault(cache, cache._refusing_event_loops(fix))
    return view
