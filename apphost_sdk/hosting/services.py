"""A small service registry with lazily created singletons, keyed or not.

``services.get(DistributedCache)`` and ``services.get_keyed(DistributedCache, "chat")`` mirror
.NET's ``GetRequiredService`` / ``GetRequiredKeyedService``; instances are created on first use
and closed, newest first, when the host closes.
"""

from __future__ import annotations

import inspect
import logging
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

import attrs

__all__ = ["ServiceRegistry"]

_T = TypeVar("_T")
_log = logging.getLogger("apphost_sdk.hosting")


@attrs.define
class _Registration:
    factory: Callable[[ServiceRegistry], Any]
    close: Callable[[Any], Any] | None
    instance: Any = None
    created: bool = False


class ServiceRegistry:
    """Singletons by (type, key); a missing service is a ``LookupError`` naming type and key."""

    def __init__(self) -> None:
        self._registrations: dict[tuple[type, str | None], _Registration] = {}
        self._created: list[_Registration] = []
        self._lock = threading.RLock()

    def add_singleton(
        self,
        service_type: type[_T],
        factory: Callable[[ServiceRegistry], _T],
        *,
        key: str | None = None,
        close: Callable[[_T], object] | Callable[[_T], Awaitable[object]] | None = None,
        replace: bool = False,
    ) -> None:
        """Register ``factory`` (called once, on first ``get``); ``close`` runs at shutdown."""
        with self._lock:
            slot = (service_type, key)
            if slot in self._registrations and not replace:
                raise ValueError(f"{_describe(service_type, key)} is already registered")
            self._registrations[slot] = _Registration(factory, cast(Any, close))

    def add_instance(self, service_type: type[_T], instance: _T, *, key: str | None = None) -> None:
        """Register an existing object (not closed by the registry)."""
        self.add_singleton(service_type, lambda _services: instance, key=key)

    def is_registered(self, service_type: type, key: str | None = None) -> bool:
        """Whether ``service_type`` (under ``key``) can be resolved."""
        return (service_type, key) in self._registrations

    def registered(self) -> list[tuple[type, str | None]]:
        """Every registered ``(type, key)`` pair, in registration order."""
        return list(self._registrations)

    def get(self, service_type: type[_T]) -> _T:
        """The unkeyed singleton of ``service_type``, created on first use."""
        return self.resolve(service_type)

    def get_keyed(self, service_type: type[_T], key: str) -> _T:
        """The singleton registered for ``key``, created on first use."""
        return self.resolve(service_type, key)

    def resolve(self, service_type: type[_T], key: str | None = None) -> _T:
        """The singleton of ``service_type`` under ``key`` (None: unkeyed), created on first use.

        ``get`` and ``get_keyed`` in one call, for code that holds an optional key.
        """
        registration = self._registrations.get((service_type, key))
        if registration is None:
            raise LookupError(f"no service registered for {_describe(service_type, key)}")
        if not registration.created:
            with self._lock:
                if not registration.created:
                    registration.instance = registration.factory(self)
                    registration.created = True
                    self._created.append(registration)
        return cast(_T, registration.instance)

    def close(self) -> None:
        """Close created services, newest first; async closers are skipped (use ``aclose``)."""
        while self._created:
            registration = self._created.pop()
            self._reset(registration)
            if registration.close is None:
                continue
            result = registration.close(registration.instance)
            if inspect.isawaitable(result):
                _log.debug("an async service was closed without awaiting; use aclose()")
                cast(Any, result).close()

    async def aclose(self) -> None:
        """Close created services, newest first, awaiting async closers."""
        while self._created:
            registration = self._created.pop()
            self._reset(registration)
            if registration.close is None:
                continue
            result = registration.close(registration.instance)
            if inspect.isawaitable(result):
                await result

    @staticmethod
    def _reset(registration: _Registration) -> None:
        registration.created = False


def _describe(service_type: type, key: str | None) -> str:
    name = getattr(service_type, "__qualname__", repr(service_type))
    return name if key is None else f"{name} with key {key!r}"
