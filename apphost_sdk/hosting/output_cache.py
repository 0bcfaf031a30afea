"""Redis output caching for Starlette/FastAPI, as Aspire's ``AddRedisOutputCache``.

Register the store with ``builder.add_redis_output_cache("cache")``, add the middleware, and
opt routes in::

    app.add_middleware(OutputCacheMiddleware, host=host)

    @app.get("/products")
    @output_cache(expiration=timedelta(seconds=30), vary_by_query=("q",), tags=("products",))
    async def products(q: str = "") -> list[str]: ...

Nothing is cached without a policy (the decorator, or ``default_policy=OutputCachePolicy()``
for every route; ``@output_cache(no_store=True)`` opts a route out). Only GET/HEAD requests
without ``Authorization`` nor a signed-in ``scope["user"]`` and 200 responses without
``Set-Cookie`` are stored; add this middleware before ``AuthenticationMiddleware`` with
``add_middleware`` (so it runs inside it and sees the user). Hits carry an
``Age`` header, a matching ``If-None-Match`` gets 304, and ``Cache-Control: only-if-cached``
on a miss gets 504, as in ASP.NET. Concurrent misses for one key run the endpoint once per
process; the others wait and get the same response. Streaming responses pass through as they
come and are stored only when their body fits ``max_body_bytes``. Redis being unreachable
never fails a request: it is logged and the endpoint runs.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, MutableMapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeVar

import redis.asyncio as aioredis

from ..caching.output_policy import (
    DEFAULT_EXPIRATION,
    DEFAULT_MAX_BODY_BYTES,
    OutputCachePolicy,
    StoredResponse,
    cache_key,
    request_cacheable,
    response_cacheable,
)
from ..caching.output_store import RedisOutputCacheStore
from .redis_integration import (
    ConfigureOptions,
    ConfigureSettings,
    RedisRegistration,
    register_redis,
)

if TYPE_CHECKING:
    from .builder import Host, HostApplicationBuilder

__all__ = [
    "OutputCacheMiddleware",
    "OutputCachePolicy",
    "RedisOutputCacheStore",
    "output_cache",
    "register_output_cache",
]

_log = logging.getLogger("apphost_sdk.hosting.output_cache")
_F = TypeVar("_F")
#: The attribute ``output_cache`` sets on an endpoint (function or endpoint class).
POLICY_ATTRIBUTE = "__apphost_output_cache__"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def output_cache(
    policy: OutputCachePolicy | None = None,
    *,
    expiration: timedelta | float = DEFAULT_EXPIRATION,
    vary_by_query: Iterable[str] | str = ("*",),
    vary_by_header: Iterable[str] | str = (),
    vary_by_host: bool = True,
    tags: Iterable[str] | str = (),
    no_store: bool = False,
) -> Callable[[_F], _F]:
    """Mark a Starlette/FastAPI endpoint as output-cached (ASP.NET's ``[OutputCache]``).

    Pass a ready ``policy`` or its fields; the fields are checked now, so a bad value fails
    at import, naming the field. Works above or below ``@app.get``.
    """
    chosen = policy or OutputCachePolicy(
        expiration=expiration,
        vary_by_query=vary_by_query,
        vary_by_header=vary_by_header,
        vary_by_host=vary_by_host,
        tags=tags,
        no_store=no_store,
    )

    def mark(endpoint: _F) -> _F:
        try:
            setattr(endpoint, POLICY_ATTRIBUTE, chosen)
        except (AttributeError, TypeError):
            raise TypeError(
                f"@output_cache cannot mark {endpoint!r}: decorate the endpoint function or "
                "endpoint class itself"
            ) from None
        return endpoint

    return mark


def register_output_cache(
    builder: HostApplicationBuilder,
    name: str,
    *,
    keyed: bool = False,
    configure_settings: ConfigureSettings | None = None,
    configure_options: ConfigureOptions | None = None,
) -> RedisRegistration:
    """Register the Redis clients of ``name`` and a ``RedisOutputCacheStore`` on them
    (``builder.add_redis_output_cache(name)``). As in Aspire, no instance name applies."""
    registration = register_redis(
        builder,
        name,
        keyed=keyed,
        cache=False,
        configure_settings=configure_settings,
        configure_options=configure_options,
    )
    key = registration.key
    if not builder.services.is_registered(RedisOutputCacheStore, key):
        builder.services.add_singleton(
            RedisOutputCacheStore,
            lambda s: RedisOutputCacheStore(s.resolve(aioredis.Redis, key)),
            key=key,
        )
    return registration


class _Capture:
    """What the endpoint sent, kept while it stays storable."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.chunks: list[bytes] = []
        self.size = 0
        self.storable = False
        self.complete = False

    def observe(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            self.status = int(message["status"])
            self.headers = [(bytes(k), bytes(v)) for k, v in message.get("headers", ())]
            self.storable = response_cacheable(self.status, self.headers) and not message.get(
                "trailers", False
            )
        elif kind == "http.response.body" and self.storable:
            body = bytes(message.get("body", b""))
            self.size += len(body)
            if self.size > self.limit:  # too big to store: keep streaming, stop buffering
                self.storable = False
                self.chunks.clear()
            else:
                self.chunks.append(body)
            self.complete = not message.get("more_body", False)
        else:
            self.storable = False  # pathsend, trailers, ...: served, never stored


class OutputCacheMiddleware:
    """ASGI middleware serving and storing responses of routes with an output-cache policy.

    Give the ``store`` itself, or the ``host`` (and ``key`` for a keyed registration) whose
    ``RedisOutputCacheStore`` is resolved per request, so that it follows the lifespan's
    reconnects. ``default_policy`` applies to routes without their own. Add it before
    Starlette's ``AuthenticationMiddleware`` (inside it), so signed-in users pass through.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        store: RedisOutputCacheStore | None = None,
        host: Host | None = None,
        key: str | None = None,
        default_policy: OutputCachePolicy | None = None,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if (store is None) == (host is None):
            raise ValueError(
                "OutputCacheMiddleware needs exactly one of store= (a RedisOutputCacheStore) "
                "or host= (a Host with register_output_cache / add_redis_output_cache)"
            )
        if max_body_bytes < 0:
            raise ValueError(f"max_body_bytes must be >= 0, not {max_body_bytes}")
        self.app = app
        self._store = store
        self._host = host
        self._key = key
        self.default_policy = default_policy
        self.max_body_bytes = max_body_bytes
        self._clock = clock
        self._inflight: dict[str, asyncio.Future[StoredResponse | None]] = {}

    @property
    def store(self) -> RedisOutputCacheStore:
        """The store in use (resolved from the host's services when given a host)."""
        if self._store is not None:
            return self._store
        assert self._host is not None
        services = self._host.services
        if not services.is_registered(RedisOutputCacheStore, self._key):
            how = (
                "builder.add_redis_output_cache(name)"
                if self._key is None
                else f"builder.add_keyed_redis_output_cache({self._key!r})"
            )
            raise LookupError(
                "OutputCacheMiddleware(host=...): the host has no RedisOutputCacheStore"
                f"{'' if self._key is None else f' with key {self._key!r}'}; register one with "
                f"{how} before build()"
            )
        return services.resolve(RedisOutputCacheStore, self._key)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers: Sequence[tuple[bytes, bytes]] = scope.get("headers") or ()
        method = str(scope["method"])
        cacheable = request_cacheable(method, headers) and not _signed_in(scope)
        policy = self._policy_for(scope) if cacheable else None
        key = None if policy is None or policy.no_store else self._key_of(policy, scope)
        if policy is None or key is None:
            await self.app(scope, receive, send)
            return
        flight = self._inflight.get(key)
        if flight is not None:  # another request of this process fetches or runs it
            entry = await asyncio.shield(flight)
            if entry is not None:
                await self._serve(entry, method, headers, send)
            elif _only_if_cached(headers):  # the leader stored nothing: still a miss
                await _send_simple(send, 504)
            else:
                await self.app(scope, receive, send)
            return
        await self._lead(key, policy, scope, receive, send)

    async def _lead(
        self, key: str, policy: OutputCachePolicy, scope: Scope, receive: Receive, send: Send
    ) -> None:
        """Look the key up, else run the endpoint and store its response; waiters share it."""
        flight: asyncio.Future[StoredResponse | None] = asyncio.get_running_loop().create_future()
        self._inflight[key] = flight
        headers: Sequence[tuple[bytes, bytes]] = scope.get("headers") or ()
        method = str(scope["method"])
        entry: StoredResponse | None = None
        try:
            store = self.store
            entry = await self._lookup(store, key)
            if entry is not None:
                flight.set_result(entry)
                await self._serve(entry, method, headers, send)
                return
            if _only_if_cached(headers):
                await _send_simple(send, 504)
                return
            entry = await self._run(key, policy, store, scope, receive, send)
        finally:
            if not flight.done():
                flight.set_result(entry)
            self._inflight.pop(key, None)

    async def _run(
        self,
        key: str,
        policy: OutputCachePolicy,
        store: RedisOutputCacheStore,
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> StoredResponse | None:
        capture = _Capture(self.max_body_bytes)

        async def capturing_send(message: Message) -> None:
            capture.observe(message)
            await send(message)

        await self.app(scope, receive, capturing_send)
        if not (capture.storable and capture.complete):
            return None
        entry = StoredResponse(
            status=capture.status,
            headers=tuple((k, v) for k, v in capture.headers if k.lower() != b"age"),
            body=b"".join(capture.chunks),
            created=self._clock(),
            tags=policy.tags,
        )
        try:
            await store.set(key, entry.encode(), expiration=policy.expiration, tags=policy.tags)
        except Exception as exc:  # the response was served; only the caching failed
            _log.warning("output cache: storing an entry failed: %s", _describe(exc))
            return None
        return entry

    async def _lookup(self, store: RedisOutputCacheStore, key: str) -> StoredResponse | None:
        try:
            data = await store.get(key)
        except Exception as exc:
            _log.warning("output cache: reading an entry failed, running the endpoint: %s", exc)
            return None
        if data is None:
            return None
        entry = StoredResponse.decode(data)
        if entry is None:
            _log.warning("output cache: an entry is not in our format; treated as a miss")
        return entry

    async def _serve(
        self, entry: StoredResponse, method: str, headers: Sequence[tuple[bytes, bytes]], send: Send
    ) -> None:
        out = [(k, v) for k, v in entry.headers]
        out.append((b"age", str(entry.age(self._clock())).encode()))
        etag = entry.header(b"etag")
        if etag is not None and _etag_matches(headers, etag):
            kept = [(k, v) for k, v in out if k.lower() not in _NOT_IN_304]
            await send({"type": "http.response.start", "status": 304, "headers": kept})
            await send({"type": "http.response.body", "body": b""})
            return
        await send({"type": "http.response.start", "status": entry.status, "headers": out})
        body = b"" if method.upper() == "HEAD" else entry.body
        await send({"type": "http.response.body", "body": body})

    def _policy_for(self, scope: Scope) -> OutputCachePolicy | None:
        endpoint = _find_endpoint(scope.get("app", self.app), scope)
        policy = getattr(endpoint, POLICY_ATTRIBUTE, None)
        if isinstance(policy, OutputCachePolicy):
            return policy
        return self.default_policy

    @staticmethod
    def _key_of(policy: OutputCachePolicy, scope: Scope) -> str | None:
        headers: Sequence[tuple[bytes, bytes]] = scope.get("headers") or ()
        host = next((v for k, v in headers if k == b"host"), None)
        if host is not None:
            host_text = host.decode("latin-1")
        else:
            server = scope.get("server") or ("", None)
            host_text = f"{server[0]}:{server[1]}" if server[1] is not None else str(server[0])
        return cache_key(
            policy,
            method=str(scope["method"]),
            scheme=str(scope.get("scheme", "http")),
            host=host_text,
            path=str(scope.get("root_path", "")) + str(scope["path"]),
            query_string=bytes(scope.get("query_string", b"")),
            headers=headers,
        )


_NOT_IN_304 = frozenset({b"content-length", b"content-type", b"content-encoding"})


def _find_endpoint(app: Any, scope: Scope, depth: int = 0) -> Any:
    """The endpoint Starlette's router would pick for ``scope`` (fully matching), or None."""
    from starlette.routing import Match

    routes = getattr(getattr(app, "router", app), "routes", None)
    if not routes or depth > 8:
        return None
    for route in routes:
        try:
            match, child = route.matches(scope)
        except Exception:  # a custom route that cannot judge this scope
            continue
        if match is not Match.FULL:
            continue
        nested = getattr(route, "routes", None)
        if nested is not None and not hasattr(route, "endpoint"):
            return _find_endpoint(route, {**scope, **child}, depth + 1)
        return getattr(route, "endpoint", None)
    return None


def _signed_in(scope: Scope) -> bool:
    """Whether Starlette's ``AuthenticationMiddleware`` (running outside us) set a signed-in
    ``scope["user"]``: as ASP.NET's default policy, their responses are never cached."""
    return bool(getattr(scope.get("user"), "is_authenticated", False))


def _header_values(headers: Sequence[tuple[bytes, bytes]], name: bytes) -> list[bytes]:
    return [v for k, v in headers if k.lower() == name]


def _only_if_cached(headers: Sequence[tuple[bytes, bytes]]) -> bool:
    return any(
        part.strip().lower() == b"only-if-cached"
        for value in _header_values(headers, b"cache-control")
        for part in value.split(b",")
    )


def _etag_matches(headers: Sequence[tuple[bytes, bytes]], etag: bytes) -> bool:
    weak = etag.removeprefix(b"W/")
    for value in _header_values(headers, b"if-none-match"):
        for candidate in value.split(b","):
            tag = candidate.strip()
            if tag == b"*" or tag.removeprefix(b"W/") == weak:
                return True
    return False


async def _send_simple(send: Send, status: int) -> None:
    await send(
        {"type": "http.response.start", "status": status, "headers": [(b"content-length", b"0")]}
    )
    await send({"type": "http.response.body", "body": b""})


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"
