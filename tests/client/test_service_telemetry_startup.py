"""What ``configure_opentelemetry()`` adds to start-up; deferring its exporters loses nothing.

The OTLP/HTTP exporters (``requests``, ``urllib3``, the protobuf classes) are built on the SDK's
export threads at the first export, not by ``configure_opentelemetry()`` on the main thread.
These cases check that through ``sys.modules`` (not timings, which are noisy here) in a fresh
interpreter each (global providers are set once per process), and that telemetry made before
any exporter exists still reaches a real OTLP/HTTP receiver, with the metric temporality and
histogram aggregation the ``OTEL_*`` variables ask for.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator

import pytest

from .test_service_telemetry import (
    OtlpReceiver,
    _attributes,
    _clean_environ,
    _otel_environ,
    _run_python,
)

#: Modules only the real exporters bring in: none may be imported by configure_opentelemetry().
EXPORTER_MODULES = (
    "requests",
    "urllib3",
    "google.protobuf",
    "opentelemetry.proto",
    "opentelemetry.exporter.otlp.proto.http.trace_exporter",
    "opentelemetry.exporter.otlp.proto.http._log_exporter",
    "opentelemetry.exporter.otlp.proto.http.metric_exporter",
)
CUMULATIVE, DELTA = 2, 1  # AggregationTemporality values in OTLP


def _with_loaded(code: str) -> str:
    """``code`` (dedented) after a ``loaded()`` telling which ``EXPORTER_MODULES`` are loaded."""
    return (
        f"import sys\nEXPORTER_MODULES = {EXPORTER_MODULES!r}\n"
        "def loaded():\n    return [m for m in EXPORTER_MODULES if m in sys.modules]\n"
    ) + textwrap.dedent(code)


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    server = OtlpReceiver()
    yield server
    server.stop()


def test_configure_builds_no_exporter_on_the_main_thread(receiver: OtlpReceiver) -> None:
    """All three providers are set, yet no exporter module is imported; with nothing emitted
    not even shutdown builds one."""
    output = _run_python(
        _with_loaded(
            """
        from opentelemetry import _logs, metrics, trace
        from apphost_sdk.hosting import configure_opentelemetry

        assert loaded() == [], loaded()  # a clean start: the test means something
        handles = configure_opentelemetry()
        assert handles.signals == ("traces", "metrics", "logs"), handles.signals
        assert trace.get_tracer_provider() is handles.tracer_provider
        assert metrics.get_meter_provider() is handles.meter_provider
        assert _logs.get_logger_provider() is handles.logger_provider
        assert loaded() == [], loaded()
        handles.shutdown()
        assert loaded() == [], loaded()
        print("ok")
        """
        ),
        _otel_environ(receiver, delay_ms=60_000),
    )
    assert "ok" in output
    assert receiver.requests == {"traces": [], "logs": [], "metrics": []}


def test_telemetry_made_before_any_export_is_flushed_on_shutdown(receiver: OtlpReceiver) -> None:
    """A span, a log record and measurements made right after configure (minute-long export
    intervals: no exporter exists yet) all arrive when the handles shut down."""
    _run_python(
        _with_loaded(
            """
        import logging
        from opentelemetry import metrics, trace
        from apphost_sdk.hosting import configure_opentelemetry

        handles = configure_opentelemetry()
        with trace.get_tracer("startup").start_as_current_span("first"):
            logging.getLogger("startup").warning("first record")
        metrics.get_meter("startup").create_counter("startup.count").add(3)
        assert loaded() == [], loaded()  # queued, not exported
        handles.shutdown()
        """
        ),
        _otel_environ(receiver, delay_ms=60_000),
    )
    [(_, span)] = receiver.spans()
    assert span.name == "first"
    [(_, record)] = receiver.log_records()
    assert record.body.string_value == "first record"
    assert record.trace_id == span.trace_id and record.span_id == span.span_id
    [count] = receiver.metrics()["startup.count"]
    assert [p.as_int for p in count.sum.data_points] == [3]
    assert receiver.rejected == 0


def test_the_export_threads_build_the_exporters_while_the_service_runs(
    receiver: OtlpReceiver,
) -> None:
    """With the app host's short intervals the SDK's own threads build the exporters and send
    what was made at start-up while the main thread just waits (here: on stdin)."""
    script = _with_loaded(
        """
        import logging
        from opentelemetry import metrics, trace
        from apphost_sdk.hosting import configure_opentelemetry

        handles = configure_opentelemetry()
        with trace.get_tracer("startup").start_as_current_span("early"):
            logging.getLogger("startup").warning("early record")
        metrics.get_meter("startup").create_counter("startup.count").add(1)
        print("emitted", flush=True)
        sys.stdin.read()  # until the test has seen the exports
        assert "requests" in sys.modules  # built by an export thread meanwhile
        handles.shutdown()
        """
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script],
        env=_clean_environ(**_otel_environ(receiver, delay_ms=100)),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert child.stdout is not None and child.stdin is not None
        seen = []
        for line in iter(child.stdout.readline, ""):
            seen.append(line)
            if line.strip() == "emitted":
                break
        else:
            raise AssertionError("the child ended before emitting:\n" + "".join(seen))
        receiver.wait_for(
            lambda: (
                bool(receiver.spans())
                and bool(receiver.log_records())
                and "startup.count" in receiver.metrics()
            )
        )
        child.stdin.close()
        assert child.wait(timeout=30) == 0, child.stdout.read()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        if child.stdout is not None:
            child.stdout.close()
    assert [s.name for _, s in receiver.spans()] == ["early"]
    assert [r.body.string_value for _, r in receiver.log_records()] == ["early record"]


@pytest.mark.parametrize(
    ("preferences", "temporality", "histogram"),
    [
        ({}, CUMULATIVE, "histogram"),
        (
            {
                "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE": "delta",
                "OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION": (
                    "base2_exponential_bucket_histogram"
                ),
            },
            DELTA,
            "exponential_histogram",
        ),
    ],
)
def test_metric_preferences_are_the_exporters(
    receiver: OtlpReceiver, preferences: dict[str, str], temporality: int, histogram: str
) -> None:
    """The deferred metric exporter tells the reader what ``OTLPMetricExporter`` would:
    temporality and histogram aggregation from the ``OTEL_EXPORTER_OTLP_METRICS_*`` variables."""
    _run_python(
        """
        from opentelemetry import metrics
        from apphost_sdk.hosting import configure_opentelemetry

        handles = configure_opentelemetry()
        meter = metrics.get_meter("startup")
        meter.create_counter("startup.count").add(2, {"kind": "a"})
        meter.create_histogram("startup.duration", unit="s").record(0.25)
        handles.shutdown()
        """,
        {**_otel_environ(receiver, delay_ms=60_000), **preferences},
    )
    found = receiver.metrics()
    [count] = found["startup.count"]
    assert count.sum.aggregation_temporality == temporality
    assert [(_attributes(p), p.as_int) for p in count.sum.data_points] == [({"kind": "a"}, 2)]
    [duration] = found["startup.duration"]
    assert duration.WhichOneof("data") == histogram
    data = getattr(duration, histogram)
    assert data.aggregation_temporality == temporality
    assert [(p.count, p.sum) for p in data.data_points] == [(1, 0.25)]


def test_an_exporter_that_cannot_be_built_is_reported_once(receiver: OtlpReceiver) -> None:
    """When the exporter cannot be built at the first export (``requests`` unavailable here),
    the service keeps running and says once per signal what to fix."""
    output = _run_python(
        """
        import logging, sys
        logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")
        sys.modules["requests"] = None  # import requests now raises ImportError
        from opentelemetry import metrics, trace
        from apphost_sdk.hosting import configure_opentelemetry

        handles = configure_opentelemetry()
        for _ in range(3):
            with trace.get_tracer("t").start_as_current_span("lost"):
                logging.getLogger("t").warning("a record")
            handles.force_flush()
        metrics.get_meter("t").create_counter("c").add(1)
        handles.shutdown()
        print("exited cleanly")
        """,
        _otel_environ(receiver, delay_ms=60_000),
    )
    assert "exited cleanly" in output
    for signal_name in ("traces", "metrics", "logs"):
        assert output.count(f"OpenTelemetry {signal_name} are not exported") == 1, output
    assert "opentelemetry-exporter-otlp-proto-http" in output
    assert "Traceback" not in output
    assert receiver.requests == {"traces": [], "logs": [], "metrics": []}
