"""Decoding OTLP/HTTP bodies as the real OpenTelemetry SDK and the OTLP/JSON spec write them."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from google.protobuf import json_format
from opentelemetry._logs import SeverityNumber
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue, KeyValueList
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.metrics.view import ExponentialBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

from apphost_sdk.telemetry.models import LogRecord, MetricPoint, Span
from apphost_sdk.telemetry.otlp import (
    MAX_BODY,
    OtlpError,
    decode,
    decode_logs,
    decode_metrics,
    decode_traces,
    display,
    success_body,
)

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
RESOURCE = Resource.create({"service.name": "api", "service.instance.id": "api-1f3a"})


# -- what the real SDK produces -----------------------------------------------------------------
def _sdk_spans() -> list[ReadableSpan]:
    """A server span with a client child and an event, recorded by the real SDK."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=RESOURCE)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("tests.web", "1.0")
    with tracer.start_as_current_span("GET /items", kind=SpanKind.SERVER) as server:
        server.set_attribute("http.route", "/items")
        server.set_attribute("http.status_code", 500)
        server.set_attribute("retry", True)
        server.set_attribute("ratio", 0.25)
        server.set_attribute("tags", ["a", "b"])
        server.add_event("cache.miss", {"key": "items:1"})
        with tracer.start_as_current_span("GET", kind=SpanKind.CLIENT) as client:
            client.set_attribute("db.system", "redis")
        server.set_status(Status(StatusCode.ERROR, "boom"))
    provider.shutdown()
    return list(exporter.get_finished_spans())


def _to_otlp_json(message: Any) -> bytes:
    """``message`` as OTLP/JSON: ``json_format`` output with the ids rewritten as hex."""
    document = json.loads(json_format.MessageToJson(message))
    _base64_ids_to_hex(document)
    return json.dumps(document).encode()


def _both_encodings(message: Any) -> list[tuple[bytes, str]]:
    """``message`` as the protobuf and the OTLP/JSON body of a request."""
    return [(message.SerializeToString(), PROTOBUF), (_to_otlp_json(message), JSON)]


def _base64_ids_to_hex(node: Any) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("traceId", "spanId", "parentSpanId") and isinstance(value, str):
                node[key] = base64.b64decode(value).hex()
            else:
                _base64_ids_to_hex(value)
    elif isinstance(node, list):
        for item in node:
            _base64_ids_to_hex(item)


def test_spans_of_the_real_sdk_decode_from_protobuf() -> None:
    sdk = {s.name: s for s in _sdk_spans()}
    body = encode_spans(list(sdk.values())).SerializeToString()

    spans = {s.name: s for s in decode_traces(body, PROTOBUF)}

    server, client = spans["GET /items"], spans["GET"]
    server_ctx = sdk["GET /items"].get_span_context()
    assert server_ctx is not None
    assert server.trace_id == format(server_ctx.trace_id, "032x")
    assert server.span_id == format(server_ctx.span_id, "016x")
    assert server.parent_span_id == ""
    assert client.trace_id == server.trace_id
    assert client.parent_span_id == server.span_id
    assert (server.resource, server.instance_id, server.scope) == ("api", "api-1f3a", "tests.web")
    assert (server.kind, client.kind) == ("Server", "Client")
    assert (server.status, server.status_message, client.status) == ("Error", "boom", "Unset")
    assert dict(server.attributes) == {
        "http.route": "/items",
        "http.status_code": "500",
        "retry": "true",
        "ratio": "0.25",
        "tags": '["a", "b"]',
    }
    assert [(e.name, dict(e.attributes)) for e in server.events] == [
        ("cache.miss", {"key": "items:1"})
    ]
    assert server.start_ns <= client.start_ns <= client.end_ns <= server.end_ns
    assert server.duration_ns > 0


def test_json_with_hex_ids_decodes_like_protobuf() -> None:
    request = encode_spans(_sdk_spans())

    from_json = decode("traces", _to_otlp_json(request), "application/json; charset=utf-8")

    assert from_json == decode("traces", request.SerializeToString(), PROTOBUF)


def test_json_with_base64_ids_is_refused_naming_the_trap() -> None:
    """``json_format`` alone writes base64 ids; OTLP/JSON wants hex, and saying so helps."""
    body = json_format.MessageToJson(encode_spans(_sdk_spans())).encode()

    with pytest.raises(OtlpError) as caught:
        decode_traces(body, JSON)

    assert caught.value.status == 400
    assert "hex" in caught.value.message and "traceId" in caught.value.message


def test_log_records_of_the_real_sdk_decode_with_their_trace() -> None:
    exporter = InMemoryLogRecordExporter()
    provider = LoggerProvider(resource=RESOURCE)
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    logger = provider.get_logger("tests.orders")
    tracer_provider = TracerProvider(resource=RESOURCE)
    with tracer_provider.get_tracer("t").start_as_current_span("work") as span:
        logger.emit(
            severity_number=SeverityNumber.WARN,
            severity_text="WARN",
            body="order 42 is late",
            attributes={"order.id": 42},
        )
    logger.emit(severity_number=SeverityNumber.INFO, severity_text="INFO", body="no trace here")
    provider.shutdown()
    request = encode_logs(exporter.get_finished_logs())

    for body, content_type in _both_encodings(request):
        late, plain = decode_logs(body, content_type)
        assert isinstance(late, LogRecord)
        assert (late.resource, late.instance_id) == ("api", "api-1f3a")
        assert late.body == "order 42 is late"
        assert (late.severity_number, late.severity_text) == (13, "WARN")
        assert late.trace_id == format(span.get_span_context().trace_id, "032x")
        assert late.span_id == format(span.get_span_context().span_id, "016x")
        assert dict(late.attributes)["order.id"] == "42"
        assert late.timestamp_ns > 0
        assert (plain.severity_number, plain.trace_id, plain.span_id) == (9, "", "")


def test_metrics_of_the_real_sdk_decode_as_points() -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(
        resource=RESOURCE,
        metric_readers=[reader],
        views=[
            View(
                instrument_name="payload.size", aggregation=ExponentialBucketHistogramAggregation()
            )
        ],
    )
    meter = provider.get_meter("tests.meter", "2.0")
    requests = meter.create_counter("requests", unit="{request}", description="Requests served")
    requests.add(3, {"route": "/items"})
    requests.add(2, {"route": "/items"})
    meter.create_up_down_counter("queue.depth").add(-4)
    latency = meter.create_histogram("latency", unit="ms")
    for ms in (10.0, 20.0, 60.0):
        latency.record(ms)
    size = meter.create_histogram("payload.size", unit="By")
    for n in (100, 300):
        size.record(n)
    meter.create_gauge("temperature").set(21.5)
    data = reader.get_metrics_data()
    assert data is not None
    request = encode_metrics(data)

    for body, content_type in _both_encodings(request):
        points = {p.instrument: p for p in decode_metrics(body, content_type)}
        assert set(points) == {"requests", "queue.depth", "latency", "payload.size", "temperature"}
        count = points["requests"]
        assert isinstance(count, MetricPoint)
        assert (count.resource, count.meter, count.kind, count.value) == (
            "api",
            "tests.meter",
            "Sum",
            5.0,
        )
        assert (count.unit, count.description, count.count) == (
            "{request}",
            "Requests served",
            None,
        )
        assert dict(count.attributes) == {"route": "/items"}
        assert (points["queue.depth"].kind, points["queue.depth"].value) == ("Sum", -4.0)
        assert (points["latency"].kind, points["latency"].value) == ("Histogram", 30.0)
        assert points["latency"].count == 3
        exp = points["payload.size"]
        assert (exp.kind, exp.value, exp.count) == ("ExponentialHistogram", 200.0, 2)
        assert (points["temperature"].kind, points["temperature"].value) == ("Gauge", 21.5)
        assert all(p.instance_id == "api-1f3a" and p.timestamp_ns > 0 for p in points.values())
    provider.shutdown()


# -- OTLP/JSON as the spec's examples write it ---------------------------------------------------
SPEC_TRACE = """{
  "resourceSpans": [{
    "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "my.service"}}]},
    "scopeSpans": [{
      "scope": {"name": "my.library", "version": "1.0.0",
                "attributes": [{"key": "my.scope.attribute", "value": {"stringValue": "x"}}]},
      "spans": [{
        "traceId": "5B8EFFF798038103D269B633813FC60C",
        "spanId": "EEE19B7EC3C1B174",
        "parentSpanId": "EEE19B7EC3C1B173",
        "name": "I'm a server span",
        "startTimeUnixNano": "1544712660000000000",
        "endTimeUnixNano": "1544712661000000000",
        "kind": "SPAN_KIND_SERVER",
        "attributes": [{"key": "my.span.attr", "value": {"stringValue": "some value"}}],
        "links": [{"traceId": "5b8efff798038103d269b633813fc60d", "spanId": "eee19b7ec3c1b175"}],
        "status": {"code": 1},
        "someFutureField": {"ignored": true}
      }]
    }]
  }]
}"""

SPEC_LOGS = """{
  "resourceLogs": [{
    "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "my.service"}}]},
    "scopeLogs": [{
      "scope": {"name": "my.library"},
      "logRecords": [{
        "timeUnixNano": "1544712660300000000",
        "observedTimeUnixNano": "1544712660300000000",
        "severityNumber": 10,
        "severityText": "Information",
        "traceId": "5b8efff798038103d269b633813fc60c",
        "spanId": "eee19b7ec3c1b174",
        "body": {"stringValue": "Example log record"},
        "attributes": [
          {"key": "string.attribute", "value": {"stringValue": "some string"}},
          {"key": "boolean.attribute", "value": {"boolValue": true}},
          {"key": "int.attribute", "value": {"intValue": "10"}},
          {"key": "double.attribute", "value": {"doubleValue": 637.704}},
          {"key": "array.attribute", "value": {"arrayValue": {"values": [
            {"stringValue": "many"}, {"stringValue": "values"}]}}},
          {"key": "map.attribute",
           "value": {"kvlistValue": {"values": [{"key": "some.map.key",
                                                 "value": {"stringValue": "some value"}}]}}}
        ]
      }]
    }]
  }]
}"""

SPEC_METRICS = """{
  "resourceMetrics": [{
    "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "my.service"}}]},
    "scopeMetrics": [{
      "scope": {"name": "my.library"},
      "metrics": [
        {"name": "my.counter", "unit": "1", "description": "I am a Counter",
         "sum": {"aggregationTemporality": 1, "isMonotonic": true,
                 "dataPoints": [{"asDouble": 5, "timeUnixNano": "1544712660300000000",
                                 "attributes": [{"key": "my.counter.attr",
                                                 "value": {"stringValue": "some value"}}]}]}},
        {"name": "my.gauge", "unit": "1", "gauge": {"dataPoints": [
          {"asInt": "10", "timeUnixNano": "1544712660300000000"}]}},
        {"name": "my.histogram", "unit": "1", "histogram": {"aggregationTemporality": 1,
          "dataPoints": [{"timeUnixNano": "1544712660300000000", "count": 2, "sum": 2,
                          "bucketCounts": [1, 1], "explicitBounds": [1], "min": 0, "max": 2,
                          "exemplars": [{"asDouble": 2, "timeUnixNano": "1544712660300000000",
                                         "traceId": "5b8efff798038103d269b633813fc60c",
                                         "spanId": "eee19b7ec3c1b174"}]}]}},
        {"name": "my.summary", "summary": {"dataPoints": [
          {"timeUnixNano": "1544712660300000000", "count": "4", "sum": 10}]}}
      ]
    }]
  }]
}"""


def test_spec_style_trace_json_with_upper_case_hex_and_enum_names() -> None:
    [span] = decode_traces(SPEC_TRACE.encode(), JSON)

    assert span == Span(
        resource="my.service",
        trace_id="5b8efff798038103d269b633813fc60c",
        span_id="eee19b7ec3c1b174",
        parent_span_id="eee19b7ec3c1b173",
        name="I'm a server span",
        kind="Server",
        start_ns=1544712660000000000,
        end_ns=1544712661000000000,
        status="Ok",
        attributes=(("my.span.attr", "some value"),),
        scope="my.library",
    )


def test_spec_style_logs_json_shows_every_value_type() -> None:
    [record] = decode("logs", SPEC_LOGS.encode(), JSON)

    assert isinstance(record, LogRecord)
    assert (record.body, record.severity_number, record.severity_text) == (
        "Example log record",
        10,
        "Information",
    )
    assert record.trace_id == "5b8efff798038103d269b633813fc60c"
    assert dict(record.attributes) == {
        "string.attribute": "some string",
        "boolean.attribute": "true",
        "int.attribute": "10",
        "double.attribute": "637.704",
        "array.attribute": '["many", "values"]',
        "map.attribute": '{"some.map.key": "some value"}',
    }


def test_spec_style_metrics_json_gives_values_means_and_counts() -> None:
    points = {p.instrument: p for p in decode_metrics(SPEC_METRICS.encode(), JSON)}

    assert (points["my.counter"].kind, points["my.counter"].value) == ("Sum", 5.0)
    assert (points["my.gauge"].kind, points["my.gauge"].value) == ("Gauge", 10.0)
    histogram = points["my.histogram"]
    assert (histogram.kind, histogram.value, histogram.count) == ("Histogram", 1.0, 2)
    summary = points["my.summary"]
    assert (summary.kind, summary.value, summary.count) == ("Summary", 2.5, 4)
    assert points["my.counter"].timestamp_ns == 1544712660300000000


def test_a_resource_without_service_name_is_unknown_service() -> None:
    body = (
        '{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "' + "01" * 16 + '", '
        '"spanId": "' + "02" * 8 + '"}]}]}]}'
    ).encode()

    [span] = decode_traces(body, JSON)

    assert (span.resource, span.trace_id, span.kind, span.status) == (
        "unknown_service",
        "01" * 16,
        "Unspecified",
        "Unset",
    )


def test_an_empty_request_decodes_to_nothing() -> None:
    assert decode("metrics", b"", PROTOBUF) == []
    assert decode("metrics", b"{}", JSON) == []


def test_any_value_display_strings() -> None:
    nested = AnyValue(
        kvlist_value=KeyValueList(
            values=[
                KeyValue(key="n", value=AnyValue(int_value=-3)),
                KeyValue(
                    key="l",
                    value=AnyValue(
                        array_value=ArrayValue(
                            values=[AnyValue(bool_value=False), AnyValue(double_value=1e20)]
                        )
                    ),
                ),
                KeyValue(key="b", value=AnyValue(bytes_value=b"\x00\xff")),
            ]
        )
    )
    assert display(nested) == '{"n": -3, "l": [false, 1e+20], "b": "AP8="}'
    assert display(AnyValue(bytes_value=b"hi")) == "aGk="
    assert display(AnyValue(double_value=2.0)) == "2.0"
    assert display(AnyValue(string_value="é ✓")) == "é ✓"
    assert display(AnyValue()) == ""


# -- refusals -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "content_type", ["text/plain", "", "application/grpc", "application/protobuf"]
)
def test_other_content_types_get_415_naming_what_is_accepted(content_type: str) -> None:
    with pytest.raises(OtlpError) as caught:
        decode("traces", b"", content_type)

    assert caught.value.status == 415
    assert "application/x-protobuf" in caught.value.message
    assert "application/json" in caught.value.message


def test_content_type_parameters_and_case_are_ignored() -> None:
    assert decode("logs", b"", "Application/X-Protobuf; charset=binary") == []


@pytest.mark.parametrize(
    ("body", "content_type", "says"),
    [
        (b"\xff\xff\xff", PROTOBUF, "protobuf ExportTraceServiceRequest"),
        (b"{not json", JSON, "JSON"),
        (b"\xff\xfe", JSON, "UTF-8"),
        (b'{"resourceSpans": 3}', JSON, "ExportTraceServiceRequest"),
        (b"[]", JSON, "not an object"),
        (b'{"a":' * 100_000 + b"1" + b"}" * 100_000, JSON, "nests too deeply"),
        (b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"spanId": "xyz"}]}]}]}', JSON, "hex"),
    ],
)
def test_bad_bodies_get_400_saying_what_is_wrong(body: bytes, content_type: str, says: str) -> None:
    with pytest.raises(OtlpError) as caught:
        decode("traces", body, content_type)

    assert caught.value.status == 400
    assert says in caught.value.message


def test_bodies_over_the_limit_get_400() -> None:
    with pytest.raises(OtlpError) as caught:
        decode("traces", b"\x00" * (MAX_BODY + 1), PROTOBUF)

    assert caught.value.status == 400
    assert "4 MiB" in caught.value.message


def test_unknown_signal_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="traces, logs, metrics"):
        decode("profiles", b"", PROTOBUF)


# -- answers ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("signal", "response_type"),
    [
        ("traces", ExportTraceServiceResponse),
        ("logs", ExportLogsServiceResponse),
        ("metrics", ExportMetricsServiceResponse),
    ],
)
def test_success_body_is_an_empty_response_in_the_request_encoding(
    signal: str, response_type: type[Any]
) -> None:
    body, content_type = success_body(signal, PROTOBUF)
    assert content_type == PROTOBUF
    assert response_type.FromString(body) == response_type()

    body, content_type = success_body(signal, "application/json; charset=utf-8")
    assert content_type == JSON
    assert json_format.Parse(body, response_type()) == response_type()
