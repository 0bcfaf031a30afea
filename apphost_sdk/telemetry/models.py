"""Small immutable value objects for console lines and telemetry, as the store keeps them.

Attribute values are kept as strings (what a page shows); ids are lower-case hex, as in the
OTLP/JSON encoding and Aspire's URLs.
"""

from __future__ import annotations

import attrs

#: Attribute key/value pairs in the order received.
Attributes = tuple[tuple[str, str], ...]


@attrs.frozen
class ConsoleLine:
    """One line a resource wrote to stdout or stderr. ``seq`` is unique and increasing across
    the whole store, so lines of several resources merge in the order they arrived."""

    resource: str
    seq: int
    timestamp: float  # seconds since the epoch, when the app host received it
    stream: str  # "stdout" | "stderr"
    text: str


@attrs.frozen
class SpanEvent:
    name: str
    timestamp_ns: int
    attributes: Attributes = ()


@attrs.frozen
class Span:
    """One finished span. ``resource`` is the sending service's ``service.name``."""

    resource: str
    trace_id: str  # 32 hex chars
    span_id: str  # 16 hex chars
    parent_span_id: str  # "" for a root span
    name: str
    kind: str  # Unspecified | Internal | Server | Client | Producer | Consumer
    start_ns: int
    end_ns: int
    status: str = "Unset"  # Unset | Ok | Error
    status_message: str = ""
    attributes: Attributes = ()
    events: tuple[SpanEvent, ...] = ()
    scope: str = ""
    instance_id: str = ""  # service.instance.id
    seq: int = 0  # set by the store

    @property
    def duration_ns(self) -> int:
        return max(0, self.end_ns - self.start_ns)


@attrs.frozen
class TraceSummary:
    """One row of the traces page: a trace's root (or earliest) span and its extent."""

    trace_id: str
    name: str  # "{resource}: {root span name}"
    resources: tuple[str, ...]
    span_count: int
    start_ns: int
    duration_ns: int
    has_error: bool


@attrs.frozen
class LogRecord:
    """One OpenTelemetry log record."""

    resource: str
    timestamp_ns: int
    severity_number: int  # 1-24 (TRACE 1, DEBUG 5, INFO 9, WARN 13, ERROR 17, FATAL 21); 0 unset
    severity_text: str
    body: str
    attributes: Attributes = ()
    trace_id: str = ""
    span_id: str = ""
    scope: str = ""
    instance_id: str = ""
    seq: int = 0  # set by the store


@attrs.frozen
class MetricPoint:
    """One data point of one instrument. Histograms keep their mean in ``value`` and their
    sample count in ``count``."""

    resource: str
    meter: str
    instrument: str
    unit: str
    description: str
    kind: str  # Sum | Gauge | Histogram | ExponentialHistogram | Summary
    timestamp_ns: int
    value: float
    attributes: Attributes = ()
    count: int | None = None
    instance_id: str = ""
    seq: int = 0  # set by the store


@attrs.frozen
class Instrument:
    """An instrument of one resource with the points kept for it, oldest first."""

    resource: str
    meter: str
    name: str
    unit: str
    description: str
    kind: str
    points: tuple[MetricPoint, ...]


@attrs.frozen
class Page:
    """A query's answer: the items (oldest first) and how many older ones were dropped by the
    buffers' limits (for the "N older entries dropped" note)."""

    items: tuple[object, ...]
    dropped: int
    last_seq: int  # the highest seq in the store when answered: ask again with after=last_seq
