"""Decoding of OTLP/HTTP export requests (protobuf and JSON) into the store's value objects.

Sans-I/O: the OTLP receiver hands over the body and its content type and gets spans, log records
or metric points back, or an :class:`OtlpError` carrying the HTTP status to answer with.
OTLP/JSON writes trace and span ids as hex, where ``google.protobuf.json_format`` expects
base64 (the "OTLP/JSON trap"), so ids are turned into base64 before parsing.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterable
from typing import Any

# protobuf ships no type hints (types-protobuf is not a dependency): these names are Any.
from google.protobuf import json_format  # type: ignore[import-untyped]
from google.protobuf.message import DecodeError, Message  # type: ignore[import-untyped]
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from .models import Attributes, LogRecord, MetricPoint, Span, SpanEvent

#: The signals of OTLP/HTTP, as in the paths ``/v1/{signal}``.
SIGNALS = ("traces", "logs", "metrics")

#: Largest request body accepted (as Aspire's dashboard): bigger ones get 400.
MAX_BODY = 4 * 1024 * 1024

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
_ACCEPTED = f"{PROTOBUF} or {JSON}"

#: Span kinds and status codes by their OTLP enum numbers, named as in models.py.
SPAN_KINDS = ("Unspecified", "Internal", "Server", "Client", "Producer", "Consumer")
STATUS_CODES = ("Unset", "Ok", "Error")

#: JSON keys (camelCase and proto names) that hold hex ids, in spans, links, logs, exemplars.
_ID_KEYS = frozenset({"traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id"})

_REQUESTS: dict[str, type[Message]] = {
    "traces": ExportTraceServiceRequest,
    "logs": ExportLogsServiceRequest,
    "metrics": ExportMetricsServiceRequest,
}
_RESPONSES: dict[str, type[Message]] = {
    "traces": ExportTraceServiceResponse,
    "logs": ExportLogsServiceResponse,
    "metrics": ExportMetricsServiceResponse,
}

UNKNOWN_SERVICE = "unknown_service"


class OtlpError(Exception):
    """A request the receiver refuses: ``status`` is the HTTP status to answer (415 for an
    unsupported content type, 400 for a bad or too large body), ``message`` says what to fix."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def media_type(content_type: str) -> str:
    """The accepted media type ``content_type`` names (parameters such as charset ignored),
    or OtlpError 415 naming what is accepted."""
    media = content_type.split(";", 1)[0].strip().lower()
    if media not in (PROTOBUF, JSON):
        shown = media or "no Content-Type"
        raise OtlpError(
            415,
            f"unsupported content type {shown!r}: OTLP/HTTP bodies must be {_ACCEPTED} "
            "(set OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf)",
        )
    return media


def decode(
    signal: str, body: bytes, content_type: str
) -> list[Span] | list[LogRecord] | list[MetricPoint]:
    """Decode an export request of ``signal`` (traces|logs|metrics) into value objects."""
    if signal == "traces":
        return decode_traces(body, content_type)
    if signal == "logs":
        return decode_logs(body, content_type)
    if signal == "metrics":
        return decode_metrics(body, content_type)
    raise ValueError(f"unknown OTLP signal {signal!r}; use one of {', '.join(SIGNALS)}")


def decode_traces(body: bytes, content_type: str) -> list[Span]:
    """The spans of an ExportTraceServiceRequest."""
    request = _parse("traces", body, content_type)
    assert isinstance(request, ExportTraceServiceRequest)
    return list(_spans(request))


def decode_logs(body: bytes, content_type: str) -> list[LogRecord]:
    """The log records of an ExportLogsServiceRequest."""
    request = _parse("logs", body, content_type)
    assert isinstance(request, ExportLogsServiceRequest)
    return list(_log_records(request))


def decode_metrics(body: bytes, content_type: str) -> list[MetricPoint]:
    """The data points of an ExportMetricsServiceRequest."""
    request = _parse("metrics", body, content_type)
    assert isinstance(request, ExportMetricsServiceRequest)
    return list(_metric_points(request))


def success_body(signal: str, content_type: str) -> tuple[bytes, str]:
    """An empty Export*ServiceResponse of ``signal`` in the request's encoding, with its
    content type."""
    response = _RESPONSES[signal]()
    if media_type(content_type) == JSON:
        return json_format.MessageToJson(response).encode(), JSON
    return response.SerializeToString(), PROTOBUF


# -- parsing ------------------------------------------------------------------------------------
def _parse(signal: str, body: bytes, content_type: str) -> Message:
    """The request message in ``body``, or OtlpError 415/400 saying what to fix."""
    media = media_type(content_type)
    if len(body) > MAX_BODY:
        raise OtlpError(
            400,
            f"request body is {len(body)} bytes, over the {MAX_BODY // (1024 * 1024)} MiB limit; "
            "export smaller batches (e.g. lower OTEL_BSP_MAX_EXPORT_BATCH_SIZE)",
        )
    request_type = _REQUESTS[signal]
    name = request_type.DESCRIPTOR.name
    request = request_type()
    if media == PROTOBUF:
        try:
            request.ParseFromString(body)
        except DecodeError as exc:
            raise OtlpError(
                400, f"body is not a valid protobuf {name} ({exc}); send an OTLP {signal} export"
            ) from exc
        return request
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise OtlpError(
            400, f"body is not valid UTF-8 JSON ({exc}); send an OTLP/JSON {name}"
        ) from exc
    except RecursionError:
        raise OtlpError(400, f"body nests too deeply; send an OTLP/JSON {name}") from None
    if not isinstance(document, dict):
        raise OtlpError(400, f"body is JSON but not an object; send an OTLP/JSON {name}")
    try:
        _hex_ids_to_base64(document)
        json_format.ParseDict(document, request, ignore_unknown_fields=True)
    except json_format.ParseError as exc:
        raise OtlpError(400, f"body is not a valid OTLP/JSON {name}: {exc}") from exc
    except RecursionError:
        raise OtlpError(400, f"body nests too deeply; send an OTLP/JSON {name}") from None
    return request


def _hex_ids_to_base64(node: Any) -> None:
    """Rewrite, in place, every hex trace/span id of an OTLP/JSON document as base64, which is
    what ``json_format`` expects for bytes fields. Attribute names sit under ``"key"``, never
    as JSON keys, so only id fields match."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in _ID_KEYS and isinstance(value, str):
                node[key] = _hex_to_base64(key, value)
            elif isinstance(value, (dict, list)):
                _hex_ids_to_base64(value)
    elif isinstance(node, list):
        for item in node:
            if isinstance(item, (dict, list)):
                _hex_ids_to_base64(item)


def _hex_to_base64(key: str, value: str) -> str:
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raise json_format.ParseError(
            f"{key} {value[:40]!r} is not hex; OTLP/JSON writes trace ids as 32 and span ids "
            "as 16 hex characters (not base64)"
        ) from None
    return base64.b64encode(raw).decode("ascii")


# -- conversion ---------------------------------------------------------------------------------
def _identity(resource: Resource) -> tuple[str, str]:
    """``(service.name, service.instance.id)`` of a resource, with OTel's fallback name."""
    name = instance = ""
    for kv in resource.attributes:
        if kv.key == "service.name":
            name = display(kv.value)
        elif kv.key == "service.instance.id":
            instance = display(kv.value)
    return name or UNKNOWN_SERVICE, instance


def _spans(request: ExportTraceServiceRequest) -> Iterable[Span]:
    for resource_spans in request.resource_spans:
        resource, instance = _identity(resource_spans.resource)
        for scope_spans in resource_spans.scope_spans:
            scope = scope_spans.scope.name
            for s in scope_spans.spans:
                events = tuple(
                    SpanEvent(e.name, e.time_unix_nano, attributes(e.attributes)) for e in s.events
                )
                yield Span(
                    resource=resource,
                    trace_id=s.trace_id.hex(),
                    span_id=s.span_id.hex(),
                    parent_span_id=s.parent_span_id.hex(),
                    name=s.name,
                    kind=_name(SPAN_KINDS, s.kind),
                    start_ns=s.start_time_unix_nano,
                    end_ns=s.end_time_unix_nano,
                    status=_name(STATUS_CODES, s.status.code),
                    status_message=s.status.message,
                    attributes=attributes(s.attributes),
                    events=events,
                    scope=scope,
                    instance_id=instance,
                )


def _log_records(request: ExportLogsServiceRequest) -> Iterable[LogRecord]:
    for resource_logs in request.resource_logs:
        resource, instance = _identity(resource_logs.resource)
        for scope_logs in resource_logs.scope_logs:
            scope = scope_logs.scope.name
            for r in scope_logs.log_records:
                yield LogRecord(
                    resource=resource,
                    timestamp_ns=r.time_unix_nano or r.observed_time_unix_nano,
                    severity_number=int(r.severity_number),
                    severity_text=r.severity_text,
                    body=display(r.body),
                    attributes=attributes(r.attributes),
                    trace_id=r.trace_id.hex(),
                    span_id=r.span_id.hex(),
                    scope=scope,
                    instance_id=instance,
                )


def _metric_points(request: ExportMetricsServiceRequest) -> Iterable[MetricPoint]:
    for resource_metrics in request.resource_metrics:
        resource, instance = _identity(resource_metrics.resource)
        for scope_metrics in resource_metrics.scope_metrics:
            meter = scope_metrics.scope.name
            for metric in scope_metrics.metrics:
                kind_field = metric.WhichOneof("data")
                if kind_field is None:
                    continue
                kind, read = _POINT_READERS[kind_field]
                for point in getattr(metric, kind_field).data_points:
                    value, count = read(point)
                    yield MetricPoint(
                        resource=resource,
                        meter=meter,
                        instrument=metric.name,
                        unit=metric.unit,
                        description=metric.description,
                        kind=kind,
                        timestamp_ns=point.time_unix_nano,
                        value=value,
                        attributes=attributes(point.attributes),
                        count=count,
                        instance_id=instance,
                    )


def _number(point: Any) -> tuple[float, int | None]:
    """A Sum or Gauge point's value."""
    if point.WhichOneof("value") == "as_int":
        return float(point.as_int), None
    return point.as_double, None


def _mean(point: Any) -> tuple[float, int | None]:
    """A histogram's (or summary's) mean and sample count; the mean is 0 without samples."""
    count = int(point.count)
    total = point.sum if _has_sum(point) else 0.0
    return (total / count if count else 0.0), count


def _has_sum(point: Any) -> bool:
    try:
        return bool(point.HasField("sum"))
    except ValueError:  # Summary's sum is not optional
        return True


_POINT_READERS: dict[str, tuple[str, Callable[[Any], tuple[float, int | None]]]] = {
    "sum": ("Sum", _number),
    "gauge": ("Gauge", _number),
    "histogram": ("Histogram", _mean),
    "exponential_histogram": ("ExponentialHistogram", _mean),
    "summary": ("Summary", _mean),
}


def _name(names: tuple[str, ...], number: int) -> str:
    return names[number] if 0 <= number < len(names) else names[0]


def attributes(pairs: Iterable[KeyValue]) -> Attributes:
    """OTLP key/values as ``(key, display string)`` pairs, in the order received."""
    return tuple((kv.key, display(kv.value)) for kv in pairs)


def display(value: AnyValue) -> str:
    """An AnyValue as a page shows it: strings as they are, booleans as true/false, numbers as
    written, bytes as base64, arrays and key/value lists as JSON; empty when unset."""
    which = value.WhichOneof("value")
    if which == "string_value":
        return value.string_value
    if which in ("array_value", "kvlist_value"):
        return json.dumps(_plain(value), ensure_ascii=False)
    plain = _plain(value)
    if plain is None:
        return ""
    if isinstance(plain, bool):
        return "true" if plain else "false"
    return str(plain)


def _plain(value: AnyValue) -> Any:
    """An AnyValue as plain Python data (JSON-ready: bytes become base64 strings)."""
    which = value.WhichOneof("value")
    if which == "string_value":
        return value.string_value
    if which == "bool_value":
        return value.bool_value
    if which == "int_value":
        return value.int_value
    if which == "double_value":
        return value.double_value
    if which == "array_value":
        return [_plain(v) for v in value.array_value.values]
    if which == "kvlist_value":
        return {kv.key: _plain(kv.value) for kv in value.kvlist_value.values}
    if which == "bytes_value":
        return base64.b64encode(value.bytes_value).decode("ascii")
    return None
