"""OpenTelemetry spans for cache operations, only when ``opentelemetry-api`` is installed.

Each cache call becomes one CLIENT span named after the operation (``cache get``) with the
database semantic-convention attributes; keys and values are never recorded.
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


class CacheTracer:
    """Opens spans for one Redis endpoint; create it with ``create_tracer``."""

    def __init__(self, tracer: Any, host: str, port: int, db: int) -> None:
        self._tracer = tracer
        self._attributes = {
            "db.system": "redis",
            "db.system.name": "redis",
            "server.address": host,
            "server.port": port,
            "db.namespace": str(db),
        }

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
    return CacheTracer(trace.get_tracer("apphost_sdk.caching"), host, port, db)


def traced(
    operation: str, command: str
) -> Callable[[Callable[Concatenate[_S, _P], _T]], Callable[Concatenate[_S, _P], _T]]:
    """Wrap a sync cache method in a span when the instance has a tracer."""

    def wrap(func: Callable[Concatenate[_S, _P], _T]) -> Callable[Concatenate[_S, _P], _T]:
        @functools.wraps(func)
        def inner(self: _S, *args: _P.args, **kwargs: _P.kwargs) -> _T:
            tracer = self._tracer
            if tracer is None:
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
    """Wrap an async cache method in a span when the instance has a tracer."""

    def wrap(
        func: Callable[Concatenate[_S, _P], Awaitable[_T]],
    ) -> Callable[Concatenate[_S, _P], Awaitable[_T]]:
        @functools.wraps(func)
        async def inner(self: _S, *args: _P.args, **kwargs: _P.kwargs) -> _T:
            tracer = self._tracer
            if tracer is None:
                return await func(self, *args, **kwargs)
            with tracer.span(operation, command):
                return await func(self, *args, **kwargs)

        return inner

    return wrap
