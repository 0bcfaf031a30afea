"""Decoding of OTLP/HTTP export requests (protobuf and JSON) into the store's value objects.

Sans-I/O: the OTLP receiver hands over the body and its content type and gets spans, log records
or metric points back, or an :class:`OtlpError` carrying the HTTP status to answer with.
OTLP/JSON writes trace and span ids as hex, where ``google.protobuf.json_format`` expects
base64 (the "OTLP/JSON trap"), so ids are turned into base64 before parsing.

Everything is capped while it is read, so a hostile 4 MiB body cannot become a huge object
graph: ``MAX_EVENTS`` events per span (links are not kept), ``max_attributes`` per item,
``MAX_ITEMS`` spans/records/points per request, and texts at ``READ_FACTOR`` times the store's
caps (``MAX_NAME``, ``max_attribute_length``, bodies): the store masks secrets and then cuts to
its caps, so no cut here can leave the start of a secret for the masker to miss.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterable
from itertools import islice
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
from .store import BODY_LENGTH_FACTOR, MAX_NAME, Limits

# The store's Limits are the attribute caps; the default when the caller passes none.
_DEFAULT_LIMITS = Limits()

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

#: Texts are read up to this many times the store's caps (see the module docstring).
READ_FACTOR = 2
#: Longest service, span, event, scope and instrument name, unit, description or attribute key
#: read; longer ones are cut with "…" (the store cuts them again, to ``MAX_NAME``).
NAME_READ = READ_FACTOR * MAX_NAME
#: Most events kept per span; the rest are counted in the span's ``DROPPED_EVENTS`` attribute.
MAX_EVENTS = 128
#: Most spans, log records or metric points in one request; bigger requests get 400.
MAX_ITEMS = 50_000
#: The attribute that says how many events of a span were dropped (by the sender or here).
DROPPED_EVENTS = "apphost.dropped_events"
TRACE_ID_BYTES = 16
SPAN_ID_BYTES = 8

_ELLIPSIS = "…"
#: JSON keys of fields the conversion never reads: dropped before parsing, so their size
#: costs nothing (histogram buckets, exemplars, quantiles, links).
_UNREAD_KEYS = frozenset(
    {
        "links",
        "bucketCounts",
        "bucket_counts",
        "explicitBounds",
        "explicit_bounds",
        "exemplars",
        "positive",
        "negative",
        "quantileValues",
        "quantile_values",
    }
)
#: JSON keys of the lists whose length is the request's item count.
_ITEM_KEYS = frozenset({"spans", "logRecords", "log_records", "dataPoints", "data_points"})


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


class _Caps:
    """How long (``READ_FACTOR`` times the store's caps) and how many of each thing one
    decode reads, from the store's limits."""

    __slots__ = ("attributes", "body", "length")

    def __init__(self, limits: Limits | None) -> None:
        limits = limits or _DEFAULT_LIMITS
        self.attributes = limits.max_attributes
        self.length = READ_FACTOR * limits.max_attribute_length
        self.body = READ_FACTOR * limits.max_attribute_length * BODY_LENGTH_FACTOR


def decode(
    signal: str, body: bytes, content_type: str, *, limits: Limits | None = None
) -> list[Span] | list[LogRecord] | list[MetricPoint]:
    """Decode an export request of ``signal`` (traces|logs|metrics) into value objects, with
    attributes capped by ``limits`` (the store's; the defaults when None)."""
    if signal == "traces":
        return decode_traces(body, content_type, limits=limits)
    if signal == "logs":
        return decode_logs(body, content_type, limits=limits)
    if signal == "metrics":
        return decode_metrics(body, content_type, limits=limits)
    raise ValueError(f"unknown OTLP signal {signal!r}; use one of {', '.join(SIGNALS)}")


def decode_traces(body: bytes, content_type: str, *, limits: Limits | None = None) -> list[Span]:
    """The spans of an ExportTraceServiceRequest."""
    caps = _Caps(limits)
    request = _parse("traces", body, content_type, caps)
    assert isinstance(request, ExportTraceServiceRequest)
    _check_items(
        "traces", sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)
    )
    return list(_spans(request, caps))


def decode_logs(body: bytes, content_type: str, *, limits: Limits | None = None) -> list[LogRecord]:
    """The log records of an ExportLogsServiceRequest."""
    caps = _Caps(limits)
    request = _parse("logs", body, content_type, caps)
    assert isinstance(request, ExportLogsServiceRequest)
    _check_items(
        "logs", sum(len(sl.log_records) for rl in request.resource_logs for sl in rl.scope_logs)
    )
    return list(_log_records(request, caps))


def decode_metrics(
    body: bytes, content_type: str, *, limits: Limits | None = None
) -> list[MetricPoint]:
    """The data points of an ExportMetricsServiceRequest."""
    caps = _Caps(limits)
    request = _parse("metrics", body, content_type, caps)
    assert isinstance(request, ExportMetricsServiceRequest)
    _check_items(
        "metrics",
        sum(_point_count(sm) for rm in request.resource_metrics for sm in rm.scope_metrics),
    )
    return list(_metric_points(request, caps))


def success_body(signal: str, content_type: str) -> tuple[bytes, str]:
    """An empty Export*ServiceResponse of ``signal`` in the request's encoding, with its
    content type."""
    response = _RESPONSES[signal]()
    if media_type(content_type) == JSON:
        return json_format.MessageToJson(response).encode(), JSON
    return response.SerializeToString(), PROTOBUF


# -- parsing ------------------------------------------------------------------------------------
def _parse(signal: str, body: bytes, content_type: str, caps: _Caps) -> Message:
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
        _prepare_json(document, caps, _ItemCount(signal))
        json_format.ParseDict(document, request, ignore_unknown_fields=True)
    except json_format.ParseError as exc:
        raise OtlpError(400, f"body is not a valid OTLP/JSON {name}: {exc}") from exc
    except RecursionError:
        raise OtlpError(400, f"body nests too deeply; send an OTLP/JSON {name}") from None
    return request


class _ItemCount:
    """The spans/records/points seen so far in one JSON request, refused past ``MAX_ITEMS``."""

    __slots__ = ("seen", "signal")

    def __init__(self, signal: str) -> None:
        self.signal = signal
        self.seen = 0

    def add(self, count: int) -> None:
        self.seen += count
        _check_items(self.signal, self.seen)


_ITEM_NOUNS = {"traces": "spans", "logs": "log records", "metrics": "metric points"}


def _check_items(signal: str, count: int) -> None:
    """OtlpError 400 when one request holds more than ``MAX_ITEMS`` items."""
    if count > MAX_ITEMS:
        noun = _ITEM_NOUNS[signal]
        raise OtlpError(
            400,
            f"request holds more than {MAX_ITEMS:,} {noun} (at least {count:,}); export "
            "smaller batches (e.g. lower OTEL_BSP_MAX_EXPORT_BATCH_SIZE or "
            "OTEL_BLRP_MAX_EXPORT_BATCH_SIZE)",
        )


def _prepare_json(node: Any, caps: _Caps, items: _ItemCount) -> None:
    """Make an OTLP/JSON document ready for ``json_format``, in place and before it is parsed
    (so nothing oversized reaches the slow parser): hex ids become base64 (``json_format``
    expects base64 for bytes), fields never read are dropped, attribute lists, events and
    AnyValue arrays are cut to the caps (cut events counted in ``droppedEventsCount``), and
    items are counted. Attribute names sit under ``"key"``, never as JSON keys, so only OTLP
    fields match."""
    if isinstance(node, list):
        for item in node:
            if isinstance(item, (dict, list)):
                _prepare_json(item, caps, items)
        return
    if not isinstance(node, dict):
        return
    for key in [k for k in node if k in _UNREAD_KEYS]:
        del node[key]
    for key, value in list(node.items()):
        if key in _ID_KEYS:
            if isinstance(value, str):
                node[key] = _hex_to_base64(key, value)
        elif key == "value" or key == "body":
            _prune_any(value, _Budget(caps.length if key == "value" else caps.body))
        elif isinstance(value, list):
            if key == "attributes":
                value = node[key] = _json_attributes(value, caps, resource=False)
            elif key == "events" and len(value) > MAX_EVENTS:
                _add_dropped_events(node, len(value) - MAX_EVENTS)
                value = node[key] = value[:MAX_EVENTS]
            elif key in _ITEM_KEYS:
                items.add(len(value))
            _prepare_json(value, caps, items)
        elif isinstance(value, dict):
            if key == "resource" and isinstance(value.get("attributes"), list):
                value["attributes"] = _json_attributes(value["attributes"], caps, resource=True)
            _prepare_json(value, caps, items)


def _json_attributes(pairs: list[Any], caps: _Caps, *, resource: bool) -> list[Any]:
    """An attribute list cut to ``max_attributes``; of a resource, only the identity keys are
    kept (nothing else of it is read), wherever they are in the list."""
    if not resource:
        return pairs[: caps.attributes]
    kept = [p for p in pairs if isinstance(p, dict) and p.get("key") in _IDENTITY_KEYS]
    return kept[: len(_IDENTITY_KEYS)]


def _add_dropped_events(span: dict[str, Any], extra: int) -> None:
    """Count ``extra`` cut events in a JSON span's dropped events count (a uint32)."""
    key = "dropped_events_count" if "dropped_events_count" in span else "droppedEventsCount"
    before = span.get(key) or 0
    try:
        count = int(before) + extra
    except (TypeError, ValueError):
        return  # json_format reports the bad value
    span[key] = min(count, 2**32 - 1)


def _prune_any(value: Any, budget: _Budget) -> None:
    """Cut, in place, the arrays and key/value lists inside a JSON AnyValue to ``budget``
    values in all: each shows as at least one character, and the shown text is cut at that
    length anyway."""
    if not isinstance(value, dict):
        return
    for key in ("arrayValue", "array_value", "kvlistValue", "kvlist_value"):
        inner = value.get(key)
        if not isinstance(inner, dict) or not isinstance(inner.get("values"), list):
            continue
        pairs = key.startswith("kv")
        kept = []
        for item in inner["values"]:
            if not budget.take():
                break
            kept.append(item)
            if isinstance(item, dict):
                _prune_any(item.get("value") if pairs else item, budget)
        inner["values"] = kept


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
_IDENTITY_KEYS = ("service.name", "service.instance.id")


def _identity(resource: Resource) -> tuple[str, str]:
    """``(service.name, service.instance.id)`` of a resource, with OTel's fallback name."""
    name = instance = ""
    for kv in resource.attributes:
        if kv.key == "service.name":
            name = display(kv.value, MAX_NAME)  # a bucket's key: never masked, cut here
        elif kv.key == "service.instance.id":
            instance = display(kv.value, NAME_READ)
    return name or UNKNOWN_SERVICE, instance


def _id(raw: bytes, size: int, what: str, *, optional: bool = False) -> str:
    """A trace or span id as hex, or OtlpError 400 naming the rule when it has another size."""
    if len(raw) == size or (optional and not raw):
        return raw.hex()
    empty = " or empty" if optional else ""
    raise OtlpError(
        400,
        f"a {what} of {len(raw)} bytes: OTLP {what}s are {size} bytes{empty} ({size * 2} hex "
        "characters in OTLP/JSON); fix the exporter that sent it",
    )


def _spans(request: ExportTraceServiceRequest, caps: _Caps) -> Iterable[Span]:
    for resource_spans in request.resource_spans:
        resource, instance = _identity(resource_spans.resource)
        for scope_spans in resource_spans.scope_spans:
            scope = _cut(scope_spans.scope.name, NAME_READ)
            for s in scope_spans.spans:
                trace_id = _id(s.trace_id, TRACE_ID_BYTES, "trace id")
                span_id = _id(s.span_id, SPAN_ID_BYTES, "span id")
                parent = _id(s.parent_span_id, SPAN_ID_BYTES, "parent span id", optional=True)
                events = tuple(
                    SpanEvent(
                        _cut(e.name, NAME_READ), e.time_unix_nano, _attributes(e.attributes, caps)
                    )
                    for e in islice(s.events, MAX_EVENTS)
                )
                pairs = _attributes(s.attributes, caps)
                dropped = s.dropped_events_count + max(0, len(s.events) - MAX_EVENTS)
                if dropped:
                    pairs = (*pairs[: caps.attributes - 1], (DROPPED_EVENTS, str(dropped)))
                yield Span(
                    resource=resource,
                    trace_id=trace_id,
                    span_id=span_id,
                    parent_span_id=parent,
                    name=_cut(s.name, NAME_READ),
                    kind=_name(SPAN_KINDS, s.kind),
                    start_ns=s.start_time_unix_nano,
                    end_ns=s.end_time_unix_nano,
                    status=_name(STATUS_CODES, s.status.code),
                    status_message=_cut(s.status.message, caps.body),
                    attributes=pairs,
                    events=events,
                    scope=scope,
                    instance_id=instance,
                )


def _log_records(request: ExportLogsServiceRequest, caps: _Caps) -> Iterable[LogRecord]:
    for resource_logs in request.resource_logs:
        resource, instance = _identity(resource_logs.resource)
        for scope_logs in resource_logs.scope_logs:
            scope = _cut(scope_logs.scope.name, NAME_READ)
            for r in scope_logs.log_records:
                yield LogRecord(
                    resource=resource,
                    timestamp_ns=r.time_unix_nano or r.observed_time_unix_nano,
                    severity_number=int(r.severity_number),
                    severity_text=_cut(r.severity_text, NAME_READ),
                    body=display(r.body, caps.body),
                    attributes=_attributes(r.attributes, caps),
                    trace_id=_id(r.trace_id, TRACE_ID_BYTES, "trace id", optional=True),
                    span_id=_id(r.span_id, SPAN_ID_BYTES, "span id", optional=True),
                    scope=scope,
                    instance_id=instance,
                )


def _point_count(scope_metrics: Any) -> int:
    """How many data points the metrics of one scope hold."""
    total = 0
    for metric in scope_metrics.metrics:
        kind_field = metric.WhichOneof("data")
        if kind_field is not None:
            total += len(getattr(metric, kind_field).data_points)
    return total


def _metric_points(request: ExportMetricsServiceRequest, caps: _Caps) -> Iterable[MetricPoint]:
    for resource_metrics in request.resource_metrics:
        resource, instance = _identity(resource_metrics.resource)
        for scope_metrics in resource_metrics.scope_metrics:
            meter = _cut(scope_metrics.scope.name, NAME_READ)
            for metric in scope_metrics.metrics:
                kind_field = metric.WhichOneof("data")
                if kind_field is None:
                    continue
                kind, read = _POINT_READERS[kind_field]
                instrument = _cut(metric.name, NAME_READ)
                unit = _cut(metric.unit, NAME_READ)
                description = _cut(metric.description, NAME_READ)
                for point in getattr(metric, kind_field).data_points:
                    value, count = read(point)
                    yield MetricPoint(
                        resource=resource,
                        meter=meter,
                        instrument=instrument,
                        unit=unit,
                        description=description,
                        kind=kind,
                        timestamp_ns=point.time_unix_nano,
                        value=value,
                        attributes=_attributes(point.attributes, caps),
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


def _cut(value: str, length: int | None) -> str:
    """``value`` cut to ``length`` characters (None: no cut), the last one an ellipsis."""
    if length is None or len(value) <= length:
        return value
    return value[: length - 1] + _ELLIPSIS


def attributes(pairs: Iterable[KeyValue], limits: Limits | None = None) -> Attributes:
    """OTLP key/values as ``(key, display string)`` pairs, in the order received: the first
    ``max_attributes`` of them, keys and values read up to ``READ_FACTOR`` times ``MAX_NAME``
    and ``max_attribute_length`` (of the default limits when None)."""
    return _attributes(pairs, _Caps(limits))


def _attributes(pairs: Iterable[KeyValue], caps: _Caps) -> Attributes:
    """``attributes`` with the caps already worked out (called once per span, record, point)."""
    length = caps.length
    return tuple(
        (_cut(kv.key, NAME_READ), display(kv.value, length))
        for kv in islice(pairs, caps.attributes)
    )


class _Budget:
    """How many more values of an array or key/value list to show, and their text's length."""

    __slots__ = ("left", "length")

    def __init__(self, length: int | None) -> None:
        self.length = length
        self.left = -1 if length is None else length  # -1: unbounded

    def take(self) -> bool:
        """Whether one more value may be shown (counting it)."""
        if self.length is None:
            return True
        if self.left <= 0:
            return False
        self.left -= 1
        return True


def display(value: AnyValue, limit: int | None = None) -> str:
    """An AnyValue as a page shows it: strings as they are, booleans as true/false, numbers as
    written, bytes as base64, arrays and key/value lists as JSON; empty when unset. With
    ``limit`` the text is cut at that many characters, and no more of a big array or bytes
    value is read than that can show."""
    which = value.WhichOneof("value")
    if which == "string_value":
        return _cut(value.string_value, limit)
    if which == "bytes_value":
        raw = value.bytes_value
        if limit is not None:
            raw = raw[: limit // 4 * 3 + 3]
        return _cut(base64.b64encode(raw).decode("ascii"), limit)
    if which in ("array_value", "kvlist_value"):
        return _cut(json.dumps(_plain(value, _Budget(limit)), ensure_ascii=False), limit)
    plain = _plain(value, _Budget(limit))
    if plain is None:
        return ""
    if isinstance(plain, bool):
        return "true" if plain else "false"
    return str(plain)


def _plain(value: AnyValue, budget: _Budget) -> Any:
    """An AnyValue as plain Python data (JSON-ready: bytes become base64 strings), with no
    more nested values than ``budget`` allows."""
    which = value.WhichOneof("value")
    if which == "string_value":
        return _cut(value.string_value, budget.length)
    if which == "bool_value":
        return value.bool_value
    if which == "int_value":
        return value.int_value
    if which == "double_value":
        return value.double_value
    if which == "array_value":
        return [_plain(v, budget) for v in _taken(value.array_value.values, budget)]
    if which == "kvlist_value":
        return {
            _cut(kv.key, NAME_READ): _plain(kv.value, budget)
            for kv in _taken(value.kvlist_value.values, budget)
        }
    if which == "bytes_value":
        raw = value.bytes_value
        if budget.length is not None:
            raw = raw[: budget.length // 4 * 3 + 3]
        return base64.b64encode(raw).decode("ascii")
    return None


def _taken(values: Iterable[Any], budget: _Budget) -> Iterable[Any]:
    """``values`` while ``budget`` lasts."""
    for v in values:
        if not budget.take():
            return
        yield v
