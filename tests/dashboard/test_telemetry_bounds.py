"""Hostile OTLP bodies stay small: event, attribute and array bombs decode into bounded items
quickly, ids of the wrong size and oversized requests are refused, and long texts are cut
(after masking, so no cut leaves the start of a secret)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord as ProtoLogRecord
from opentelemetry.proto.trace.v1.trace_pb2 import Span as ProtoSpan

from apphost_sdk.masking import SecretMasker
from apphost_sdk.telemetry.models import LogRecord
from apphost_sdk.telemetry.otlp import (
    DROPPED_EVENTS,
    MAX_BODY,
    MAX_EVENTS,
    MAX_ITEMS,
    NAME_READ,
    OtlpError,
    decode_logs,
    decode_metrics,
    decode_traces,
)
from apphost_sdk.telemetry.store import MAX_NAME, Limits, TelemetryStore

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
TRACE = "5b" * 16
SPAN = "ee" * 8
#: Span.events is field 11 (length-delimited): one event named "e" is these five bytes.
ONE_EVENT = b"\x5a\x03\x12\x01e"
#: Span.attributes is field 9: one empty key/value is these two bytes.
ONE_ATTRIBUTE = b"\x4a\x00"


def traces_request(*spans: ProtoSpan, service: str = "api") -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    name = resource_spans.resource.attributes.add(key="service.name")
    name.value.string_value = service
    resource_spans.scope_spans.add().spans.extend(spans)
    return request


def proto_span(extra: bytes = b"", **fields: object) -> ProtoSpan:
    """A span with valid ids (unless ``fields`` say otherwise) and raw protobuf ``extra``
    appended: repeated fields written many times make a bomb without building it here."""
    base = ProtoSpan(trace_id=bytes.fromhex(TRACE), span_id=bytes.fromhex(SPAN), name="bomb")
    for key, value in fields.items():
        setattr(base, key, value)
    return ProtoSpan.FromString(base.SerializeToString() + extra)


def bomb_body(unit: bytes, dropped_by_sender: int = 0) -> tuple[bytes, int]:
    """A traces request of one span holding as many ``unit``s as fit in MAX_BODY, and how
    many that is."""
    head = traces_request(proto_span(dropped_events_count=dropped_by_sender))
    count = (MAX_BODY - len(head.SerializeToString()) - 64) // len(unit)
    body = traces_request(
        proto_span(unit * count, dropped_events_count=dropped_by_sender)
    ).SerializeToString()
    assert MAX_BODY - 1024 < len(body) <= MAX_BODY
    return body, count


def json_span(**fields: object) -> dict[str, object]:
    return {"traceId": TRACE, "spanId": SPAN, "name": "bomb", **fields}


def json_traces(*spans: dict[str, object], resource: list[object] | None = None) -> bytes:
    attributes = resource or [{"key": "service.name", "value": {"stringValue": "api"}}]
    document = {
        "resourceSpans": [
            {"resource": {"attributes": attributes}, "scopeSpans": [{"spans": list(spans)}]}
        ]
    }
    return json.dumps(document).encode()


def rss_mib() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096 / 2**20


# -- bombs --------------------------------------------------------------------------------------
def test_a_4_mib_event_bomb_decodes_quickly_into_a_bounded_span() -> None:
    body, events_sent = bomb_body(ONE_EVENT, dropped_by_sender=7)

    began = time.thread_time()
    [span] = decode_traces(body, PROTOBUF)
    spent = time.thread_time() - began

    assert len(span.events) == MAX_EVENTS
    assert dict(span.attributes)[DROPPED_EVENTS] == str(events_sent - MAX_EVENTS + 7)
    assert spent < 1.0, f"decoding took {spent:.2f} s of CPU"


def test_a_json_event_bomb_is_cut_before_parsing() -> None:
    events = [{}] * 1_000_000  # ~3 MiB of "{}, "
    body = json_traces(json_span(events=events, droppedEventsCount=2))
    assert len(body) <= MAX_BODY

    began = time.thread_time()
    [span] = decode_traces(body, JSON)
    spent = time.thread_time() - began

    assert len(span.events) == MAX_EVENTS
    assert dict(span.attributes)[DROPPED_EVENTS] == str(1_000_000 - MAX_EVENTS + 2)
    assert spent < 2.0, f"decoding took {spent:.2f} s of CPU"


#: Run in a fresh interpreter, so the heap left by other tests cannot blur the measure.
_RSS_PROBE = """
import sys
sys.path[:0] = sys.argv[1:3]
from test_telemetry_bounds import ONE_EVENT, PROTOBUF, bomb_body, decode_traces, rss_mib
body, _ = bomb_body(ONE_EVENT)
decode_traces(body, PROTOBUF)  # warm up the allocator
before = rss_mib()
kept = [decode_traces(body, PROTOBUF) for _ in range(8)]
assert all(len(spans[0].events) == 128 for spans in kept)
print(rss_mib() - before)
"""


def test_decoding_event_bombs_keeps_memory_flat() -> None:
    here = Path(__file__).resolve().parent
    probe = subprocess.run(
        [sys.executable, "-c", _RSS_PROBE, str(here), str(here.parent.parent)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert probe.returncode == 0, probe.stderr

    grown = float(probe.stdout)
    # Unbounded, each decode keeps ~800,000 events (~35 MiB); bounded, 128 of them.
    assert grown < 16, f"RSS grew {grown:.1f} MiB over 8 decodes of a 4 MiB event bomb"


def test_an_attribute_bomb_keeps_max_attributes() -> None:
    body, _ = bomb_body(ONE_ATTRIBUTE)

    began = time.thread_time()
    [span] = decode_traces(body, PROTOBUF, limits=Limits(max_attributes=10))
    spent = time.thread_time() - began

    assert len(span.attributes) == 10
    assert spent < 1.0, f"decoding took {spent:.2f} s of CPU"


def test_the_dropped_events_note_fits_in_max_attributes() -> None:
    pairs = [KeyValue(key=f"k{i}", value=AnyValue(string_value="v")) for i in range(5)]
    span = proto_span(ONE_EVENT * 3, dropped_events_count=1)
    span.attributes.extend(pairs)
    body = traces_request(span).SerializeToString()

    [decoded] = decode_traces(body, PROTOBUF, limits=Limits(max_attributes=3))

    assert decoded.attributes == (("k0", "v"), ("k1", "v"), (DROPPED_EVENTS, "1"))
    assert len(decoded.events) == 3


def test_a_huge_array_value_is_read_no_further_than_it_shows() -> None:
    values = ArrayValue(values=[AnyValue(int_value=7)] * 500_000)
    span = proto_span()
    span.attributes.add(key="big").value.array_value.CopyFrom(values)
    body = traces_request(span).SerializeToString()
    store = TelemetryStore(Limits(max_attribute_length=100))

    began = time.thread_time()
    store.add_spans(decode_traces(body, PROTOBUF, limits=store.limits))
    spent = time.thread_time() - began

    [kept] = store.trace(TRACE)
    value = dict(kept.attributes)["big"]
    assert len(value) == 100 and value.startswith("[7, 7") and value.endswith("…")
    assert spent < 1.0, f"decoding took {spent:.2f} s of CPU"


def test_a_huge_json_array_value_is_cut_before_parsing() -> None:
    big = {"arrayValue": {"values": [{"intValue": "7"}] * 200_000}}
    body = json_traces(json_span(attributes=[{"key": "big", "value": big}]))

    began = time.thread_time()
    [span] = decode_traces(body, JSON, limits=Limits(max_attribute_length=100))
    spent = time.thread_time() - began

    assert dict(span.attributes)["big"].startswith("[7, 7")
    assert spent < 1.0, f"decoding took {spent:.2f} s of CPU"


# -- ids ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({"trace_id": b"\x01"}, "trace ids are 16 bytes"),
        ({"trace_id": b""}, "trace ids are 16 bytes"),
        ({"span_id": b"\x01" * 16}, "span ids are 8 bytes"),
        ({"parent_span_id": b"\x01" * 3}, "parent span ids are 8 bytes or empty"),
    ],
)
def test_spans_with_ids_of_the_wrong_size_get_400_naming_the_rule(
    fields: dict[str, bytes], says: str
) -> None:
    body = traces_request(proto_span(**fields)).SerializeToString()

    with pytest.raises(OtlpError) as caught:
        decode_traces(body, PROTOBUF)

    assert caught.value.status == 400
    assert says in caught.value.message


def test_json_ids_of_the_wrong_size_are_refused_too() -> None:
    with pytest.raises(OtlpError) as caught:
        decode_traces(json_traces(json_span(traceId="abcd")), JSON)

    assert caught.value.status == 400
    assert "32 hex characters" in caught.value.message


def test_log_records_may_have_no_ids_but_not_wrong_ones() -> None:
    def logs_body(**ids: bytes) -> bytes:
        request = ExportLogsServiceRequest()
        request.resource_logs.add().scope_logs.add().log_records.append(ProtoLogRecord(**ids))
        return request.SerializeToString()

    [record] = decode_logs(logs_body(), PROTOBUF)
    assert (record.trace_id, record.span_id) == ("", "")
    with pytest.raises(OtlpError, match="trace ids are 16 bytes or empty"):
        decode_logs(logs_body(trace_id=b"\x01" * 4), PROTOBUF)
    with pytest.raises(OtlpError, match="span ids are 8 bytes or empty"):
        decode_logs(logs_body(span_id=b"\x01" * 4), PROTOBUF)


# -- per-request item cap -----------------------------------------------------------------------
def test_a_request_with_too_many_spans_gets_400_saying_to_export_smaller_batches() -> None:
    body = traces_request(*[proto_span()] * (MAX_ITEMS + 1)).SerializeToString()
    assert len(body) <= MAX_BODY

    with pytest.raises(OtlpError) as caught:
        decode_traces(body, PROTOBUF)

    assert caught.value.status == 400
    assert "export smaller batches" in caught.value.message
    assert f"{MAX_ITEMS:,} spans" in caught.value.message


def test_a_json_request_with_too_many_points_is_refused_before_parsing() -> None:
    points = [{}] * 200_000
    document = {
        "resourceMetrics": [
            {"scopeMetrics": [{"metrics": [{"name": "n", "gauge": {"dataPoints": points}}]}]}
        ]
    }

    began = time.thread_time()
    with pytest.raises(OtlpError) as caught:
        decode_metrics(json.dumps(document).encode(), JSON)
    spent = time.thread_time() - began

    assert caught.value.status == 400 and "metric points" in caught.value.message
    assert spent < 1.0, f"refusing took {spent:.2f} s of CPU"


# -- texts --------------------------------------------------------------------------------------
def test_long_names_are_read_bounded_and_kept_at_max_name() -> None:
    long = "n" * 100_000
    span = proto_span(name=long)
    span.status.message = "m" * 1_000_000
    span.events.add(name=long)
    span.attributes.add(key=long).value.string_value = "v" * 100_000
    body = traces_request(span, service="s" * 10_000).SerializeToString()
    store = TelemetryStore()

    [decoded] = decode_traces(body, PROTOBUF)
    store.add_spans([decoded])

    assert len(decoded.name) == NAME_READ and len(decoded.resource) == MAX_NAME
    [kept] = store.trace(TRACE)
    body_length = store.limits.max_attribute_length * 16
    assert (len(kept.name), len(kept.events[0].name)) == (MAX_NAME, MAX_NAME)
    assert len(kept.status_message) == body_length and kept.status_message.endswith("…")
    [(key, value)] = kept.attributes
    assert (len(key), len(value)) == (MAX_NAME, store.limits.max_attribute_length)


def test_a_secret_across_the_cut_leaves_no_start_behind() -> None:
    secret = "s3cret-" + "q" * 20
    store = TelemetryStore(Limits(max_attribute_length=32), mask=SecretMasker([secret]).mask)
    record = ProtoLogRecord(body=AnyValue(string_value="b" * 500 + secret))
    record.attributes.add(key="conn").value.string_value = "x" * 20 + secret
    request = ExportLogsServiceRequest()
    request.resource_logs.add().scope_logs.add().log_records.append(record)

    store.add_log_records(decode_logs(request.SerializeToString(), PROTOBUF, limits=store.limits))

    [kept] = store.log_records().items
    assert isinstance(kept, LogRecord)
    assert kept.attributes == (("conn", "x" * 20 + "***"),)
    assert kept.body == "b" * 500 + "***"
    assert "s3c" not in repr(kept)
