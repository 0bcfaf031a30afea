"""FastAPI / Starlette glue: a lifespan that opens and closes the host's caches, and dependencies.

``app = FastAPI(lifespan=cache_lifespan(host))`` then
``cache: AsyncDistributedCache = Depends(get_distributed_cache)`` in an endpoint, or
``Depends(keyed_distributed_cache("chat"))`` for a keyed cache.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from starlette.requests import Request

from ..caching import AsyncDistributedCache
from .builder import Host
from .redis_integration import RedisRegistration

__all__ = ["cache_lifespan", "get_distributed_cache", "keyed_distributed_cache"]

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
        cache = host.services.resolve(AsyncDistributedCache, key)
        try:
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


def get_distributed_cache(request: Request) -> AsyncDistributedCache:
    """FastAPI dependency: the unkeyed ``AsyncDistributedCache`` of the lifespan's host."""
    return _host_of(request).services.resolve(AsyncDistributedCache)


def keyed_distributed_cache(key: str) -> Callable[[Request], AsyncDistributedCache]:
    """A FastAPI dependency returning the cache registered under ``key``."""

    def dependency(request: Request) -> AsyncDistributedCache:
        return _host_of(request).services.resolve(AsyncDistributedCache, key)

    return dependency
