"""Health checks: named checks run together into a report, sync or async.

A check returns None/True (healthy), False (unhealthy) or a ``HealthStatus``, or raises
(unhealthy, the exception type and message become the description).
"""

from __future__ import annotations

import asyncio
import enum
import inspect
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import attrs

__all__ = ["HealthCheckResult", "HealthChecks", "HealthReport", "HealthStatus"]

SyncCheck = Callable[[], Any]
AsyncCheck = Callable[[], Awaitable[Any]]


class HealthStatus(enum.Enum):
    """As ASP.NET Core's ``HealthStatus``; ordered from worst to best."""

    UNHEALTHY = "Unhealthy"
    DEGRADED = "Degraded"
    HEALTHY = "Healthy"

    @property
    def rank(self) -> int:
        """0 for Unhealthy, 1 for Degraded, 2 for Healthy."""
        return list(HealthStatus).index(self)


@attrs.frozen
class HealthCheckResult:
    """The outcome of one check."""

    status: HealthStatus
    description: str | None = None
    duration_ms: float = 0.0


@attrs.frozen
class HealthReport:
    """All checks' results; ``status`` is the worst of them (Healthy when there are none)."""

    entries: Mapping[str, HealthCheckResult]

    @property
    def status(self) -> HealthStatus:
        """The worst status of all entries."""
        return min(
            (e.status for e in self.entries.values()),
            default=HealthStatus.HEALTHY,
            key=lambda s: s.rank,
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form: overall status plus each check's status, description, duration."""
        return {
            "status": self.status.value,
            "checks": {
                name: {
                    "status": e.status.value,
                    "description": e.description,
                    "duration_ms": round(e.duration_ms, 3),
                }
                for name, e in self.entries.items()
            },
        }


def _interpret(value: Any) -> HealthStatus:
    if isinstance(value, HealthStatus):
        return value
    if value is False:
        return HealthStatus.UNHEALTHY
    return HealthStatus.HEALTHY


def _failure(exc: BaseException, started: float) -> HealthCheckResult:
    return HealthCheckResult(
        HealthStatus.UNHEALTHY,
        f"{type(exc).__name__}: {exc}",
        (time.perf_counter() - started) * 1000,
    )


@attrs.define
class _Check:
    sync: SyncCheck | None
    async_: AsyncCheck | None
    timeout: float


class HealthChecks:
    """The registry of named checks (``app.health``)."""

    def __init__(self) -> None:
        self._checks: dict[str, _Check] = {}

    def add(
        self,
        name: str,
        check: SyncCheck | None = None,
        *,
        async_check: AsyncCheck | None = None,
        timeout: float = 5.0,
    ) -> None:
        """Register a check by name; give a sync check, an async one, or both."""
        if check is None and async_check is None:
            raise ValueError("a health check needs a sync or an async callable")
        if name in self._checks:
            raise ValueError(f"a health check named {name!r} is already registered")
        self._checks[name] = _Check(check, async_check, timeout)

    @property
    def names(self) -> list[str]:
        """Registered check names, in registration order."""
        return list(self._checks)

    def check(self) -> HealthReport:
        """Run every check in this thread (async-only checks in a private event loop)."""
        results: dict[str, HealthCheckResult] = {}
        for name, spec in self._checks.items():
            started = time.perf_counter()
            try:
                if spec.sync is not None:
                    value = spec.sync()
                else:
                    assert spec.async_ is not None
                    value = asyncio.run(_with_timeout(spec.async_, spec.timeout))
                results[name] = HealthCheckResult(
                    _interpret(value), None, (time.perf_counter() - started) * 1000
                )
            except Exception as exc:
                results[name] = _failure(exc, started)
        return HealthReport(results)

    async def check_async(self) -> HealthReport:
        """Run every check concurrently (sync-only checks in worker threads)."""
        names = list(self._checks)
        outcomes = await asyncio.gather(*(self._run_async(self._checks[n]) for n in names))
        return HealthReport(dict(zip(names, outcomes, strict=True)))

    @staticmethod
    async def _run_async(spec: _Check) -> HealthCheckResult:
        started = time.perf_counter()
        try:
            if spec.async_ is not None:
                value = await _with_timeout(spec.async_, spec.timeout)
            else:
                assert spec.sync is not None
                value = await asyncio.wait_for(asyncio.to_thread(spec.sync), spec.timeout)
            if inspect.isawaitable(value):
                value = await value
            return HealthCheckResult(
                _interpret(value), None, (time.perf_counter() - started) * 1000
            )
        except Exception as exc:
            return _failure(exc, started)


async def _with_timeout(check: AsyncCheck, timeout: float) -> Any:
    return await asyncio.wait_for(check(), timeout)
