"""The local dashboard: a Starlette app served by uvicorn on loopback, with Aspire's pages
(resources, console logs, structured logs, traces, metrics), resource commands and the OTLP/HTTP
receiver that services send their telemetry to.

It reads resources through :class:`apphost_sdk.dashboard.source.DashboardSource` and telemetry
from :class:`apphost_sdk.telemetry.store.TelemetryStore`; it imports nothing of orchestration,
runtimes, integrations or the CLI.
"""
