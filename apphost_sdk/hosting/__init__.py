"""The service side of apphost-sdk: a host builder with configuration, services and health.

``HostApplicationBuilder().add_redis_distributed_cache("cache")`` gives a service the
distributed cache the app host wired up, configured from ``ConnectionStrings__cache``;
``add_service_defaults()`` exports its traces, metrics and logs to the app host's dashboard.
"""

from __future__ import annotations

from .builder import Host, HostApplicationBuilder
from .emulator_credential import EmulatorTokenCredential
from .health import HealthCheckResult, HealthChecks, HealthReport, HealthStatus
from .health_http import asgi_health, wsgi_health
from .output_cache import OutputCacheMiddleware, output_cache, register_output_cache
from .redis_integration import RedisRegistration
from .redis_settings import RedisSettings
from .services import ServiceRegistry
from .telemetry import TelemetryHandles, configure_opentelemetry

__all__ = [
    "EmulatorTokenCredential",
    "HealthCheckResult",
    "HealthChecks",
    "HealthReport",
    "HealthStatus",
    "Host",
    "HostApplicationBuilder",
    "OutputCacheMiddleware",
    "RedisRegistration",
    "RedisSettings",
    "ServiceRegistry",
    "TelemetryHandles",
    "asgi_health",
    "configure_opentelemetry",
    "output_cache",
    "register_output_cache",
    "wsgi_health",
]
