"""OpenTelemetry from the standard ``OTEL_*`` environment: Aspire's service defaults for Python.

The app host gives each service ``OTEL_EXPORTER_OTLP_ENDPOINT`` (its dashboard's OTLP/HTTP
receiver), ``OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf``, the API-key header, the service name
and short export intervals. ``configure_opentelemetry()`` turns that into SDK tracer, meter and
logger providers exporting with OTLP/HTTP, plus a ``logging`` handler, so spans (our cache's
included), metrics and log records reach the dashboard. Without an endpoint it does nothing;
a provider the process already has (``opentelemetry-instrument``, the user's own) is kept.

Start-up cost matters (a service is not ready until this returns), so the OTLP/HTTP exporters,
which import ``requests`` and the protobuf classes, are built on the SDK's export threads at
their first export rather than here; nothing queued before is lost (``_DeferredExporter``).
"""

from __future__ import annotations

import atexit
import functools
import logging
import os
import threading
import warnings
import weakref
from collections.abc import Callable, Mapping
from typing import Any

from ..errors import ConfigurationError

__all__ = ["SIGNALS", "TelemetryHandles", "configure_opentelemetry"]

SIGNALS = ("traces", "metrics", "logs")
SUPPORTED_PROTOCOL = "http/protobuf"

_log = logging.getLogger("apphost_sdk.hosting")
_lock = threading.Lock()


class TelemetryHandles:
    """The providers ``configure_opentelemetry`` set (None for a signal it left alone).

    ``shutdown()`` flushes and stops them and removes the ``logging`` handler; it is idempotent
    and also runs at interpreter exit, so telemetry is not lost when a service just returns.
    """

    def __init__(
        self,
        tracer_provider: Any = None,
        meter_provider: Any = None,
        logger_provider: Any = None,
        log_handler: logging.Handler | None = None,
    ) -> None:
        self.tracer_provider = tracer_provider
        self.meter_provider = meter_provider
        self.logger_provider = logger_provider
        self.log_handler = log_handler
        self._closed = False
        self._close_lock = threading.Lock()
        if self.signals:
            atexit.register(self.shutdown)

    def __repr__(self) -> str:
        return f"TelemetryHandles(signals={self.signals})"

    @property
    def signals(self) -> tuple[str, ...]:
        """The signals this process exports through these handles (``traces``, ...)."""
        providers = (self.tracer_provider, self.meter_provider, self.logger_provider)
        return tuple(s for s, p in zip(SIGNALS, providers, strict=True) if p is not None)

    def force_flush(self, timeout_millis: int = 10_000) -> None:
        """Export what is buffered now (spans, a metrics collection, log records)."""
        for provider in self._providers():
            provider.force_flush(timeout_millis)

    def shutdown(self) -> None:
        """Remove the logging handler, then flush and shut down each provider (once)."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        atexit.unregister(self.shutdown)
        if self.log_handler is not None:
            logging.getLogger().removeHandler(self.log_handler)
        for provider in self._providers():
            try:
                provider.shutdown()
            except Exception:  # one broken exporter must not keep the others from flushing
                _log.warning("OpenTelemetry %r failed to shut down", provider, exc_info=True)

    def _providers(self) -> list[Any]:
        providers = (self.tracer_provider, self.meter_provider, self.logger_provider)
        return [p for p in providers if p is not None]


def configure_opentelemetry(environ: Mapping[str, str] | None = None) -> TelemetryHandles:
    """Set global OpenTelemetry providers exporting over OTLP/HTTP, as the ``OTEL_*`` say.

    A signal is configured when ``OTEL_EXPORTER_OTLP_ENDPOINT`` or its own
    ``OTEL_EXPORTER_OTLP_{TRACES,METRICS,LOGS}_ENDPOINT`` is set, its ``OTEL_{SIGNAL}_EXPORTER``
    is unset or names ``otlp``, and no provider is set for it yet. ``OTEL_SDK_DISABLED=true``
    turns everything off. ``environ`` (default ``os.environ``) only decides *what* to
    configure; the SDK itself reads the service name, resource attributes, headers, intervals
    and sampler from the process environment. Thread-safe; calling it again adds nothing.

    Raises ``ConfigurationError`` when a protocol other than ``http/protobuf`` is asked for.
    """
    env = os.environ if environ is None else environ
    if env.get("OTEL_SDK_DISABLED", "").strip().casefold() == "true":
        return TelemetryHandles()
    wanted = [s for s in SIGNALS if _endpoint(env, s) and _exporter_is_otlp(env, s)]
    if not wanted:
        return TelemetryHandles()
    for signal in wanted:
        _check_protocol(env, signal)
    try:
        _import_sdk()
    except ImportError as exc:
        _log.warning(
            "OTEL_EXPORTER_OTLP_ENDPOINT is set but telemetry is not exported: %s. Install "
            "opentelemetry-sdk and opentelemetry-exporter-otlp-proto-http.",
            exc,
        )
        return TelemetryHandles()
    with _lock:
        return _install(wanted)


def _endpoint(env: Mapping[str, str], signal: str) -> str:
    specific = env.get(f"OTEL_EXPORTER_OTLP_{signal.upper()}_ENDPOINT", "").strip()
    return specific or env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()


def _exporter_is_otlp(env: Mapping[str, str], signal: str) -> bool:
    value = env.get(f"OTEL_{signal.upper()}_EXPORTER", "").strip()
    return not value or "otlp" in [v.strip().casefold() for v in value.split(",")]


def _check_protocol(env: Mapping[str, str], signal: str) -> None:
    """Raise unless the protocol in effect for ``signal`` is ``http/protobuf`` (or unset)."""
    specific = f"OTEL_EXPORTER_OTLP_{signal.upper()}_PROTOCOL"
    for variable in (specific, "OTEL_EXPORTER_OTLP_PROTOCOL"):
        value = env.get(variable, "").strip()
        if not value:
            continue
        if value.casefold() == SUPPORTED_PROTOCOL:
            return
        hint = {
            "grpc": " gRPC needs the opentelemetry-exporter-otlp-proto-grpc package and its own"
            " setup (for example `opentelemetry-instrument`).",
            "http/json": " The Python OTLP exporters cannot send http/json.",
        }.get(value.casefold(), "")
        raise ConfigurationError(
            f"{variable}={value!r} is not supported by add_service_defaults(), which exports "
            f"with the OTLP/HTTP protobuf exporter: set {variable}={SUPPORTED_PROTOCOL} or "
            f"leave it unset (the app host injects {SUPPORTED_PROTOCOL}).{hint}"
        )


def _import_sdk() -> None:
    """Fail with ``ImportError`` now when the SDK or the OTLP/HTTP exporter is missing."""
    import opentelemetry.exporter.otlp.proto.http
    import opentelemetry.sdk  # noqa: F401


def _is_unset(provider: object) -> bool:
    """Whether a global provider is still the API's placeholder (its proxy), not a real one.

    The API's proxies (``ProxyTracerProvider``, ``_ProxyMeterProvider``,
    ``ProxyLoggerProvider``) are told apart by name: two of them are private classes.
    """
    return type(provider).__name__.lstrip("_").startswith("Proxy")


def _install(wanted: list[str]) -> TelemetryHandles:
    """Create and set a provider for each wanted signal that has none yet (under ``_lock``)."""
    from opentelemetry import _logs, metrics, trace
    from opentelemetry.sdk.resources import Resource

    resource = Resource.create()  # OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES
    tracer_provider = meter_provider = logger_provider = None
    log_handler = None
    if "traces" in wanted and _is_unset(trace.get_tracer_provider()):
        tracer_provider = _tracer_provider(resource)
        trace.set_tracer_provider(tracer_provider)
    if "metrics" in wanted and _is_unset(metrics.get_meter_provider()):
        meter_provider = _meter_provider(resource)
        metrics.set_meter_provider(meter_provider)
    if "logs" in wanted and _is_unset(_logs.get_logger_provider()):
        logger_provider = _logger_provider(resource)
        _logs.set_logger_provider(logger_provider)
        log_handler = _log_handler(logger_provider)
    handles = TelemetryHandles(tracer_provider, meter_provider, logger_provider, log_handler)
    kept = [s for s in wanted if s not in handles.signals]
    if kept:
        _log.debug("OpenTelemetry %s: a provider is already set; leaving it", ", ".join(kept))
    return handles


def _tracer_provider(resource: Any) -> Any:
    """A ``TracerProvider`` batching spans to ``OTLPSpanExporter`` (sampler from the env).

    The exporter is deferred (see ``_DeferredExporter``): spans are queued from the start and
    the OTLP/HTTP exporter is built on the batch worker's thread at the first export.
    """
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    class DeferredSpanExporter(_DeferredExporter, SpanExporter):
        """``OTLPSpanExporter``, built when the first batch of spans is exported."""

        def export(self, spans: Any) -> SpanExportResult:
            exporter = self._exporter()
            return SpanExportResult.FAILURE if exporter is None else exporter.export(spans)

    provider = TracerProvider(resource=resource, shutdown_on_exit=False)
    provider.add_span_processor(BatchSpanProcessor(DeferredSpanExporter("traces", _otlp_spans)))
    return provider


def _meter_provider(resource: Any) -> Any:
    """A ``MeterProvider`` reading every ``OTEL_METRIC_EXPORT_INTERVAL`` into OTLP.

    The reader takes its temporality and aggregation from the exporter when it is created, so
    the deferred exporter carries exactly what ``OTLPMetricExporter`` would compute from
    ``OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE`` and
    ``..._DEFAULT_HISTOGRAM_AGGREGATION`` (the exporter package's own functions) and hands
    them to the real exporter. Where those functions are not found (another exporter
    version), the real exporter is built now instead: slower to start, never different.
    """
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import (
        MetricExporter,
        MetricExportResult,
        PeriodicExportingMetricReader,
    )

    class DeferredMetricExporter(_DeferredExporter, MetricExporter):
        """``OTLPMetricExporter``, built at the reader's first export."""

        def __init__(self, temporality: Any, aggregation: Any) -> None:
            MetricExporter.__init__(
                self, preferred_temporality=temporality, preferred_aggregation=aggregation
            )
            _DeferredExporter.__init__(
                self, "metrics", lambda: _otlp_metrics(temporality, aggregation)
            )

        def export(
            self, metrics_data: Any, timeout_millis: float = 10_000, **kwargs: Any
        ) -> MetricExportResult:
            exporter = self._exporter()
            if exporter is None:
                return MetricExportResult.FAILURE
            return exporter.export(metrics_data, timeout_millis=timeout_millis, **kwargs)

    try:
        from opentelemetry.exporter.otlp.common._aggregation import (
            _get_aggregation,
            _get_temporality,
        )
    except ImportError:
        exporter: Any = _otlp_metrics(None, None)
    else:
        exporter = DeferredMetricExporter(_get_temporality(None), _get_aggregation(None))
    reader = PeriodicExportingMetricReader(exporter)
    return MeterProvider(metric_readers=[reader], resource=resource, shutdown_on_exit=False)


def _logger_provider(resource: Any) -> Any:
    """A ``LoggerProvider`` batching log records to ``OTLPLogExporter`` (deferred, as spans)."""
    from opentelemetry.sdk._logs import LoggerProvider, export
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor

    # LogRecordExporter is the SDK's current name; older SDKs have only LogExporter.
    base: Any = getattr(export, "LogRecordExporter", None) or export.LogExporter
    result: Any = getattr(export, "LogRecordExportResult", None) or export.LogExportResult

    class DeferredLogExporter(_DeferredExporter, base):
        """``OTLPLogExporter``, built when the first batch of records is exported."""

        def export(self, batch: Any) -> Any:
            exporter = self._exporter()
            return result.FAILURE if exporter is None else exporter.export(batch)

    provider = LoggerProvider(resource=resource, shutdown_on_exit=False)
    processor = BatchLogRecordProcessor(DeferredLogExporter("logs", _otlp_logs))
    provider.add_log_record_processor(processor)
    return provider


def _otlp_spans() -> Any:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()


def _otlp_logs() -> Any:
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter

    return OTLPLogExporter()


def _otlp_metrics(temporality: Any, aggregation: Any) -> Any:
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

    return OTLPMetricExporter(preferred_temporality=temporality, preferred_aggregation=aggregation)


class _DeferredExporter:
    """Builds the real OTLP/HTTP exporter on first export and hands every call to it.

    Why: importing the OTLP/HTTP exporters costs a service ~50-60 ms at start-up (``requests``,
    ``urllib3``, ``idna``, the protobuf classes), which made services slower to become ready
    under the dashboard. The SDK's batch processors and periodic reader call ``export`` on
    their own worker threads, so building the exporter there takes that cost off the main
    thread while every span, log record and metric queued before is still exported. A
    ``force_flush``/``shutdown`` before any export builds nothing (nothing was queued, or the
    processor's own flush exports through ``export`` first). Mixed into a subclass of the
    SDK's exporter base class for the signal, which adds ``export``.
    """

    def __init__(self, signal: str, build: Callable[[], Any]) -> None:
        self._signal = signal
        self._build: Callable[[], Any] | None = build
        self._real: Any = None
        self._closed = False
        self._build_lock = threading.Lock()
        if hasattr(os, "register_at_fork"):  # a fork mid-build must not inherit a held lock
            os.register_at_fork(after_in_child=functools.partial(_renew_lock, weakref.ref(self)))

    def _exporter(self) -> Any:
        """The real exporter, built now if needed; None once shut down or when it cannot be."""
        if self._real is not None:
            return self._real
        with self._build_lock:
            if self._real is None and self._build is not None and not self._closed:
                build, self._build = self._build, None  # one attempt: a failure is warned once
                try:
                    self._real = build()
                except Exception as exc:
                    _log.warning(
                        "OpenTelemetry %s are not exported: the OTLP/HTTP exporter failed to "
                        "start (%s). Reinstall opentelemetry-exporter-otlp-proto-http and "
                        "check the OTEL_EXPORTER_OTLP_* variables.",
                        self._signal,
                        exc,
                    )
            return self._real

    def force_flush(self, timeout_millis: float = 30_000) -> bool:
        """Flush the real exporter if one was built (nothing is buffered otherwise)."""
        real = self._real
        return True if real is None else bool(real.force_flush(timeout_millis))

    def shutdown(self, *args: Any, **kwargs: Any) -> None:
        """Shut the real exporter down (same arguments) if one was built; refuse exports after."""
        with self._build_lock:
            self._closed = True
            real = self._real
        if real is not None:
            real.shutdown(*args, **kwargs)


def _renew_lock(ref: weakref.ref[_DeferredExporter]) -> None:
    """In a forked child: a fresh build lock (the parent's may have been held mid-build)."""
    exporter = ref()
    if exporter is not None:
        exporter._build_lock = threading.Lock()


def _log_handler(logger_provider: Any) -> logging.Handler | None:
    """Attach the SDK's ``LoggingHandler`` to the root logger (once) and return it.

    Records become OTLP log records carrying the active span's trace and span ids. The
    SDK's and exporters' own records are filtered out, so an export failure cannot feed
    itself; the handler's deprecation notice (it moves to a contrib package) is hidden.
    """
    from opentelemetry.sdk._logs import LoggingHandler

    root = logging.getLogger()
    if any(isinstance(h, LoggingHandler) for h in root.handlers):
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        handler = LoggingHandler(logger_provider=logger_provider)
    handler.addFilter(_not_opentelemetry)
    root.addHandler(handler)
    return handler


def _not_opentelemetry(record: logging.LogRecord) -> bool:
    return not record.name.startswith("opentelemetry")
