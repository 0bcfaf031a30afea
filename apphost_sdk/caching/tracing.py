"""OpenTelemetry spans for cache operations, only when ``opentelemetry-api`` is installed.

Each cache call becomes one CLIENT span named after the operation (``cache get``) with the
database semantic-convention attributes; keys and values are never recorded. A tracer taken
from the global provider records nothing, and costs nothing, until an OpenTelemetry SDK
provider is set: no no-op spans are opened before that.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

__all__ = ["CacheTracer", "create_tracer", "traced", "traced_async"]

_T = TypeVar("_T")
_P = ParamSpec("_P")


class _HasTracer(Protocol):
    @property
    def _tracer(self) -> CacheTracer | None: ...


_S = TypeVar("_S", bound=_HasTracer)


_NO_ATTRIBUTE = object()


def _provider_configured(api: Any, provider: Any) -> bool:
    """Whether ``provider`` (the API's global, or ``_NO_ATTRIBUTE`` when an API version has no
    such global) is a real tracer provider rather than the proxy or a no-op one."""
    if provider is _NO_ATTRIBUTE:  # ask the public function instead
        provider = api.get_tracer_provider()
        if isinstance(provider, api.ProxyTracerProvider):
            return False
    return provider is not None and not isinstance(provider, api.NoOpTracerProvider)


class CacheTracer:
    """Opens spans for one Redis endpoint; create it with ``create_tracer``.

    ``follows_global``: ``tracer`` comes from the global provider (``trace.get_tracer``), so
    spans are opened only once a real provider is set; otherwise every call is traced.
    """

    def __init__(
        self, tracer: Any, host: str, port: int, db: int, *, follows_global: bool = False
    ) -> None:
        self._tracer = tracer
        self._recording = not follows_global
        self._api: Any = None
        if follows_global:
            from opentelemetry import trace

            self._api = trace
        self._attributes = {
            "db.system": "redis",
            "db.system.name": "redis",
            "server.address": host,
            "server.port": port,
            "db.namespace": str(db),
        }

    def recording(self) -> bool:
        """Whether calls get spans: True for an explicit tracer, and for a global one once an
        SDK provider is set (remembered: a provider, once set, cannot be unset)."""
        if self._recording:
            return True
        provider = getattr(self._api, "_TRACER_PROVIDER", _NO_ATTRIBUTE)  # one global read
        if provider is None:  # no provider set: the common "not configured" case
            return False
        self._recording = _provider_configured(self._api, provider)
        return self._recording

    @contextlib.contextmanager
    def span(self, operation: str, command: str) -> Iterator[None]:
        """A span around one cache operation; exceptions are recorded by OpenTelemetry."""
        from opentelemetry.trace import SpanKind

        attributes = dict(self._attributes)
        attributes["db.operation.name"] = command
        with self._tracer.start_as_current_span(
            f"cache {operation}", kind=SpanKind.CLIENT, attributes=attributes
        ):
            yield


def create_tracer(host: str, port: int, db: int = 0) -> CacheTracer | None:
    """A tracer for the endpoint, or None when OpenTelemetry is not installed."""
    try:
        from opentelemetry import trace
    except ImportError:
        return None
    trace.get_tracer_provider()  # loads a provider named by OTEL_PYTHON_TRACER_PROVIDER
    return CacheTracer(trace.get_tracer("apphost_sdk.caching"), host, port, db, follows_global=True)


def traced(
    operation: str, command: str
) -> Callable[[Callable[Concatenate[_S, _P], _T]], Callable[Concatenate[_S, _P], _T]]:
    """Wrap a sync cache method in a span when the instance has a recording tracer."""

    def wrap(func: Callable[Concatenate[_S, _P], _T]) -> Callable[Concatenate[_S, _P], _T]:
        @functools.wraps(func)
        def inner(self: _S, *args: _P.args, **kwargs: _P.kwargs) -> _T:
            tracer = self._tracer
            if tracer is None or not tracer.recording():
                return func(self, *args, **kwargs)
            with tracer.span(operation, command):
                return func(self, *args, **kwargs)

        return inner

    return wrap


def traced_async(
    operation: str, command: str
) -> Callable[
    [Callable[Concatenate[_S, _P], Awaitable[_T]]], Callable[Concatenate[_S, _P], Awaitable[_T]]
]:
    """Wrap an async cache method in a span when the instance has a recording tracer."""

    def wrap(
        func: Callable[Concatenate[_S, _P], Awaitable[_T]],
    ) -> Callable[Concatenate[_S, _P], Awaitable[_T]]:
        @functools.wraps(func)
        async def inner(self: _S, *args: _P.args, **kwargs: _P.kwargs) -> _T:
            tracer = self._tracer
            if tracer is None or not tracer.recording():
                return await func(self, *args, **kwargs)
            with tracer.span(operation, command):
                return await func(self, *args, **kwargs)

        return inner

    return wrap
