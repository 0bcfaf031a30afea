"""The dashboard's in-memory telemetry store: bounded per-resource buffers, thread-safe, no I/O.

Every resource gets its own buffers (console lines, log records, spans, metric points), so one
chatty service cannot evict another's data (Aspire shares one ring per kind, dotnet/aspire#4173).
The oldest entries go first and are counted, for the pages' "N older entries dropped" note.
Adding is O(1) per item (plus its attributes); the queries may walk the buffers.

The app host ``reserve``s its resources' names, so they always have buckets; other names (any
OTLP sender can make one up) share ``max_resources`` buckets, the least recently used going
first. An optional ``mask`` (the app host's ``SecretMasker.mask``) is applied to every text
kept, so a secret a service logs or puts in a span never reaches a page.
"""

from __future__ import annotations

import heapq
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol, TypeVar

import attrs

from ..errors import ConfigurationError
from .models import (
    Attributes,
    ConsoleLine,
    Instrument,
    LogRecord,
    MetricPoint,
    Page,
    Span,
    SpanEvent,
    TraceSummary,
)

#: The kinds of data ``dropped`` knows, as the pages name them.
KINDS = ("console", "logs", "spans", "metrics")

#: Longest name kept (span, event, scope, meter, instrument, unit, description, severity text,
#: attribute key); longer ones are cut with "…". The OTLP decoder reads up to twice this (and
#: twice the other caps) so that masking, which comes first, never meets a secret cut in two.
MAX_NAME = 256

#: A log body or console line may be this many times ``max_attribute_length`` before it is cut:
#: bodies are messages and stack traces, longer than attribute values, but must stay bounded.
BODY_LENGTH_FACTOR = 16

_ELLIPSIS = "…"
_POSITIVE = [attrs.validators.instance_of(int), attrs.validators.ge(1)]


@attrs.frozen
class Limits:
    """How much the store keeps per resource; the oldest entries are dropped first."""

    console_lines: int = attrs.field(default=10_000, validator=_POSITIVE)
    log_records: int = attrs.field(default=10_000, validator=_POSITIVE)
    spans: int = attrs.field(default=10_000, validator=_POSITIVE)
    metric_points: int = attrs.field(default=10_000, validator=_POSITIVE)
    max_attributes: int = attrs.field(default=128, validator=_POSITIVE)  # per span/log/point
    max_attribute_length: int = attrs.field(default=4096, validator=_POSITIVE)  # cut with "…"
    #: Buckets of names not reserved (OTLP-only senders); the least recently used goes first.
    max_resources: int = attrs.field(default=256, validator=_POSITIVE)

    @classmethod
    def from_configuration(cls, get: Callable[[str], str | None]) -> Limits:
        """Read ``Dashboard:Limits:*`` (``ConsoleLines``, ``LogRecords``, ``Spans``,
        ``MetricPoints``, ``MaxAttributes``, ``MaxAttributeLength``, ``MaxResources``) through
        ``get``; unset keys keep their defaults, a bad value raises ConfigurationError."""
        values: dict[str, int] = {}
        for field, key in _CONFIG_KEYS.items():
            raw = get(key)
            if raw is None or not raw.strip():
                continue
            values[field] = _positive_int(key, raw, getattr(_DEFAULTS, field))
        return cls(**values)


_DEFAULTS = Limits()
_CONFIG_KEYS = {
    "console_lines": "Dashboard:Limits:ConsoleLines",
    "log_records": "Dashboard:Limits:LogRecords",
    "spans": "Dashboard:Limits:Spans",
    "metric_points": "Dashboard:Limits:MetricPoints",
    "max_attributes": "Dashboard:Limits:MaxAttributes",
    "max_attribute_length": "Dashboard:Limits:MaxAttributeLength",
    "max_resources": "Dashboard:Limits:MaxResources",
}


def _positive_int(key: str, raw: str, default: int) -> int:
    """``raw`` as a whole number >= 1, or a ConfigurationError that says what to write."""
    text = raw.strip().replace("_", "")
    value = int(text) if text.isdigit() else 0
    if value < 1:
        env = key.replace(":", "__")
        raise ConfigurationError(
            f"{key} must be a whole number of at least 1 (the default is {default}), "
            f"got {raw!r}; set it in appsettings.json, as the environment variable {env}, "
            f"or as --{key}={default}"
        )
    return value


class _Sequenced(Protocol):
    @property
    def seq(self) -> int: ...


_T = TypeVar("_T", bound=_Sequenced)


@attrs.define
class _Bucket:
    """One resource's buffers (each oldest first, in seq order) and what they dropped."""

    console: deque[ConsoleLine] = attrs.Factory(deque)
    logs: deque[LogRecord] = attrs.Factory(deque)
    spans: deque[Span] = attrs.Factory(deque)
    metrics: deque[MetricPoint] = attrs.Factory(deque)
    dropped: dict[str, int] = attrs.Factory(lambda: dict.fromkeys(KINDS, 0))
    trace_counts: dict[str, int] = attrs.Factory(dict)  # trace id -> spans of it kept here


class TelemetryStore:
    """Bounded per-resource buffers of console lines and OTLP data, safe across threads.

    One lock guards everything; ``version`` goes up on every change and ``wait_changed`` lets
    live views (server-sent events, ``apphost logs -f``) sleep until it does.
    """

    def __init__(
        self, limits: Limits = _DEFAULTS, mask: Callable[[str], str] | None = None
    ) -> None:
        """``mask``, when given, is applied to every text kept (bodies, names, messages,
        attribute keys and values, console lines), at add time."""
        self.limits = limits
        self._mask = mask
        self._changed = threading.Condition(threading.Lock())
        self._version = 0
        self._seq = 0
        self._buckets: dict[str, _Bucket] = {}
        self._reserved: set[str] = set()
        self._unreserved: OrderedDict[str, None] = OrderedDict()  # LRU order, oldest first
        self._overflow = dict.fromkeys(KINDS, 0)  # items of evicted buckets
        self._traces: dict[str, dict[int, Span]] = {}  # trace id -> seq -> span
        self._summaries: dict[str, TraceSummary] = {}  # cache, dropped when a trace changes
        self._body_length = limits.max_attribute_length * BODY_LENGTH_FACTOR

    # -- change tracking ------------------------------------------------------------------------
    @property
    def version(self) -> int:
        """A counter that goes up by one on every change of any kind."""
        with self._changed:
            return self._version

    def wait_changed(self, version: int, timeout: float) -> int:
        """Block until ``version`` is no longer current or ``timeout`` seconds pass; return the
        current version (equal to ``version`` on timeout)."""
        with self._changed:
            self._changed.wait_for(lambda: self._version != version, timeout)
            return self._version

    def _bump(self) -> None:
        """Record a change and wake the waiters; call with the lock held."""
        self._version += 1
        self._changed.notify_all()

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def reserve(self, names: Iterable[str]) -> None:
        """Make ``names`` (the app's resources) always get buckets, outside ``max_resources``:
        made-up OTLP service names can then never lock them out or evict them."""
        with self._changed:
            for name in names:
                self._reserved.add(name)
                self._unreserved.pop(name, None)

    def _bucket(self, resource: str) -> _Bucket:
        """The bucket of ``resource``, made on first use. A name not reserved is marked as
        just used; making one beyond ``max_resources`` first evicts the least recently used
        one (what it held counted as dropped). Call with the lock held."""
        bucket = self._buckets.get(resource)
        if resource in self._reserved:
            if bucket is None:
                bucket = self._buckets[resource] = _Bucket()
            return bucket
        if bucket is not None:
            self._unreserved.move_to_end(resource)
            return bucket
        while len(self._unreserved) >= self.limits.max_resources:
            oldest, _ = self._unreserved.popitem(last=False)
            self._evict(oldest)
        self._unreserved[resource] = None
        bucket = self._buckets[resource] = _Bucket()
        return bucket

    def _evict(self, resource: str) -> None:
        """Forget a bucket, counting what it held (and had dropped) in the overall dropped
        counts. Call with the lock held."""
        bucket = self._buckets.pop(resource, None)
        if bucket is None:
            return
        held = {
            "console": len(bucket.console),
            "logs": len(bucket.logs),
            "spans": len(bucket.spans),
            "metrics": len(bucket.metrics),
        }
        for kind in KINDS:
            self._overflow[kind] += held[kind] + bucket.dropped[kind]
        for span in bucket.spans:
            self._forget_span(bucket, span)

    # -- console --------------------------------------------------------------------------------
    def add_console_line(
        self, resource: str, stream: str, text: str, timestamp: float | None = None
    ) -> ConsoleLine:
        """Keep one console line of ``resource`` (masked again when the store masks: harmless,
        and no caller can forget it)."""
        if self._mask is not None:
            text = self._mask(text)
        text = _cut(text, self._body_length)
        when = time.time() if timestamp is None else timestamp
        with self._changed:
            bucket = self._bucket(resource)
            line = ConsoleLine(resource, self._next_seq(), when, stream, text)
            _push(bucket.console, line, self.limits.console_lines, bucket, "console")
            self._bump()
            return line

    def console_lines(
        self,
        resource: str | None = None,
        *,
        after: int = 0,
        since: float | None = None,
        limit: int | None = None,
    ) -> Page:
        """Lines of one resource (or all, merged in arrival order) newer than seq ``after`` and
        timestamp ``since``; ``limit`` keeps the newest that many."""
        keep = None if since is None else (lambda line: line.timestamp >= since)
        with self._changed:
            buckets = self._select_buckets(resource)
            items = _newest([b.console for b in buckets], after, keep, limit)
            return Page(items, self._dropped("console", resource), self._seq)

    # -- telemetry ------------------------------------------------------------------------------
    def add_spans(self, spans: Iterable[Span]) -> int:
        """Keep finished spans (masked and capped); return how many were kept."""
        prepared = [(span, self._span_changes(span)) for span in spans]  # outside the lock
        limit = self.limits.spans
        with self._changed:
            for raw, changes in prepared:
                bucket = self._bucket(raw.resource)
                span = attrs.evolve(raw, seq=self._next_seq(), **changes)
                bucket.spans.append(span)
                self._traces.setdefault(span.trace_id, {})[span.seq] = span
                bucket.trace_counts[span.trace_id] = bucket.trace_counts.get(span.trace_id, 0) + 1
                self._summaries.pop(span.trace_id, None)
                if len(bucket.spans) > limit:
                    self._forget_span(bucket, bucket.spans.popleft())
                    bucket.dropped["spans"] += 1
            if prepared:
                self._bump()
        return len(prepared)

    def add_log_records(self, records: Iterable[LogRecord]) -> int:
        """Keep log records (masked and capped); return how many were kept."""
        prepared = [(record, self._record_changes(record)) for record in records]
        limit = self.limits.log_records
        with self._changed:
            for raw, changes in prepared:
                bucket = self._bucket(raw.resource)
                record = attrs.evolve(raw, seq=self._next_seq(), **changes)
                _push(bucket.logs, record, limit, bucket, "logs")
            if prepared:
                self._bump()
        return len(prepared)

    def add_metric_points(self, points: Iterable[MetricPoint]) -> int:
        """Keep metric points (masked and capped); return how many were kept."""
        prepared = [(point, self._point_changes(point)) for point in points]
        limit = self.limits.metric_points
        with self._changed:
            for raw, changes in prepared:
                bucket = self._bucket(raw.resource)
                point = attrs.evolve(raw, seq=self._next_seq(), **changes)
                _push(bucket.metrics, point, limit, bucket, "metrics")
            if prepared:
                self._bump()
        return len(prepared)

    # -- masking and caps (no lock needed) --------------------------------------------------------
    def _leaks(self, texts: Iterable[str]) -> bool:
        """Whether masking would change any of ``texts``: one pass of the masker over them
        joined, so the common case (no secret in an item) costs one call per item."""
        if self._mask is None:
            return False
        joined = "\x00".join(texts)
        masked = self._mask(joined)
        return masked is not joined and masked != joined

    def _span_changes(self, span: Span) -> dict[str, Any]:
        """The fields of ``span`` to replace so it is masked (first, so no cut leaves the start
        of a secret) and within the caps."""
        mask = self._mask
        if mask is not None and self._leaks(_span_texts(span)):
            span = Span(
                span.resource,
                span.trace_id,
                span.span_id,
                span.parent_span_id,
                mask(span.name),
                span.kind,
                span.start_ns,
                span.end_ns,
                span.status,
                mask(span.status_message),
                _masked(span.attributes, mask),
                tuple(
                    SpanEvent(mask(e.name), e.timestamp_ns, _masked(e.attributes, mask))
                    for e in span.events
                ),
                mask(span.scope),
                mask(span.instance_id),
            )
        limits = self.limits
        events = span.events
        if events:
            events = tuple(
                e
                if len(e.name) <= MAX_NAME and _within(e.attributes, limits)
                else SpanEvent(_cut(e.name, MAX_NAME), e.timestamp_ns, _cap(e.attributes, limits))
                for e in events
            )
        return {
            "name": _cut(span.name, MAX_NAME),
            "status_message": _cut(span.status_message, self._body_length),
            "attributes": _cap(span.attributes, limits),
            "events": events,
            "scope": _cut(span.scope, MAX_NAME),
            "instance_id": _cut(span.instance_id, MAX_NAME),
        }

    def _record_changes(self, record: LogRecord) -> dict[str, Any]:
        """The fields of ``record`` to replace so it is masked and within the caps."""
        body, severity, pairs = record.body, record.severity_text, record.attributes
        scope, instance = record.scope, record.instance_id
        mask = self._mask
        if mask is not None and self._leaks((body, severity, scope, instance, *_flat(pairs))):
            body, severity, pairs = mask(body), mask(severity), _masked(pairs, mask)
            scope, instance = mask(scope), mask(instance)
        return {
            "body": _cut(body, self._body_length),
            "severity_text": _cut(severity, MAX_NAME),
            "attributes": _cap(pairs, self.limits),
            "scope": _cut(scope, MAX_NAME),
            "instance_id": _cut(instance, MAX_NAME),
        }

    def _point_changes(self, point: MetricPoint) -> dict[str, Any]:
        """The fields of ``point`` to replace so it is masked and within the caps."""
        texts = [point.meter, point.instrument, point.unit, point.description, point.instance_id]
        pairs = point.attributes
        mask = self._mask
        if mask is not None and self._leaks((*texts, *_flat(pairs))):
            texts = [mask(t) for t in texts]
            pairs = _masked(pairs, mask)
        meter, instrument, unit, description, instance = (_cut(t, MAX_NAME) for t in texts)
        return {
            "meter": meter,
            "instrument": instrument,
            "unit": unit,
            "description": description,
            "instance_id": instance,
            "attributes": _cap(pairs, self.limits),
        }

    def _forget_span(self, bucket: _Bucket, span: Span) -> None:
        """Drop an evicted span from the traces index; a trace with no span left disappears."""
        tid = span.trace_id
        spans = self._traces.get(tid)
        if spans is not None:
            spans.pop(span.seq, None)
            if not spans:
                del self._traces[tid]
        left = bucket.trace_counts.get(tid, 0) - 1
        if left > 0:
            bucket.trace_counts[tid] = left
        else:
            bucket.trace_counts.pop(tid, None)
        self._summaries.pop(tid, None)

    # -- queries --------------------------------------------------------------------------------
    def traces(self, resource: str | None = None, *, limit: int = 200) -> list[TraceSummary]:
        """Summaries of the traces kept, newest first; with ``resource``, only those that have
        a span of it."""
        with self._changed:
            if resource is None:
                ids: Iterable[str] = self._traces.keys()
            else:
                bucket = self._buckets.get(resource)
                ids = () if bucket is None else bucket.trace_counts.keys()
            # Newest first: by start time, and among equal starts the later arrival first
            # (the index is in arrival order and the sort is stable).
            summaries = [self._summary(tid) for tid in reversed(list(ids))]
        summaries.sort(key=lambda s: s.start_ns, reverse=True)
        return summaries[: max(0, limit)]

    def _summary(self, trace_id: str) -> TraceSummary:
        """The (cached) summary of one trace; call with the lock held."""
        summary = self._summaries.get(trace_id)
        if summary is None:
            summary = _summarize(trace_id, self._traces[trace_id].values())
            self._summaries[trace_id] = summary
        return summary

    def trace(self, trace_id: str) -> list[Span]:
        """The spans kept of one trace, by start time (empty if none)."""
        with self._changed:
            spans = list(self._traces.get(trace_id.lower(), {}).values())
        spans.sort(key=lambda s: (s.start_ns, s.seq))
        return spans

    def log_records(
        self,
        resource: str | None = None,
        *,
        min_severity: int = 0,
        trace_id: str | None = None,
        text: str | None = None,
        after: int = 0,
        limit: int = 1000,
    ) -> Page:
        """Log records of one resource (or all, in arrival order) newer than seq ``after``,
        at least ``min_severity``, of ``trace_id``, containing ``text`` (case-insensitive, in
        the body or an attribute); the newest ``limit`` of them."""
        needle = text.casefold() if text else None
        tid = trace_id.lower() if trace_id else None

        def keep(record: LogRecord) -> bool:
            if record.severity_number < min_severity:
                return False
            if tid is not None and record.trace_id != tid:
                return False
            return needle is None or _contains(record, needle)

        with self._changed:
            buckets = self._select_buckets(resource)
            items = _newest([b.logs for b in buckets], after, keep, limit)
            return Page(items, self._dropped("logs", resource), self._seq)

    def instruments(self, resource: str | None = None) -> list[Instrument]:
        """Instruments with their points (oldest first), sorted by resource, meter and name;
        unit, description and kind are those of the newest point."""
        with self._changed:
            names = sorted(self._buckets) if resource is None else [resource]
            grouped: dict[tuple[str, str, str], list[MetricPoint]] = {}
            for name in names:
                bucket = self._buckets.get(name)
                if bucket is None:
                    continue
                for point in bucket.metrics:
                    key = (point.resource, point.meter, point.instrument)
                    grouped.setdefault(key, []).append(point)
        out = []
        for (res, meter, name), points in sorted(grouped.items(), key=lambda kv: kv[0]):
            last = points[-1]
            out.append(
                Instrument(res, meter, name, last.unit, last.description, last.kind, tuple(points))
            )
        return out

    def dropped(self, kind: str, resource: str | None = None) -> int:
        """How many entries of ``kind`` (console|logs|spans|metrics) were dropped for one
        resource, or in all (including what evicted buckets held and had dropped)."""
        if kind not in KINDS:
            raise ValueError(f"unknown kind {kind!r}; use one of {', '.join(KINDS)}")
        with self._changed:
            return self._dropped(kind, resource)

    def _dropped(self, kind: str, resource: str | None) -> int:
        if resource is None:
            return self._overflow[kind] + sum(b.dropped[kind] for b in self._buckets.values())
        bucket = self._buckets.get(resource)
        return 0 if bucket is None else bucket.dropped[kind]

    def resource_names(self) -> list[str]:
        """The resources that have data in the store, sorted."""
        with self._changed:
            return sorted(self._buckets)

    def clear(self, resource: str | None = None) -> None:
        """Forget the data (and dropped counts) of one resource, or of all; seq numbers keep
        growing, so readers' ``after`` stays valid, and reserved names stay reserved."""
        with self._changed:
            if resource is None:
                self._buckets.clear()
                self._unreserved.clear()
                self._traces.clear()
                self._summaries.clear()
                self._overflow = dict.fromkeys(KINDS, 0)
            else:
                self._unreserved.pop(resource, None)
                bucket = self._buckets.pop(resource, None)
                if bucket is None:
                    return
                for span in bucket.spans:
                    self._forget_span(bucket, span)
            self._bump()

    def _select_buckets(self, resource: str | None) -> list[_Bucket]:
        if resource is None:
            return list(self._buckets.values())
        bucket = self._buckets.get(resource)
        return [] if bucket is None else [bucket]


# -- helpers ------------------------------------------------------------------------------------
def _push(buffer: deque[_T], item: _T, limit: int, bucket: _Bucket, kind: str) -> None:
    """Append ``item``, dropping (and counting) the oldest beyond ``limit``."""
    buffer.append(item)
    if len(buffer) > limit:
        buffer.popleft()
        bucket.dropped[kind] += 1


def _neg_seq(item: _Sequenced) -> int:
    return -item.seq


def _newest(
    buffers: list[deque[_T]],
    after: int,
    keep: Callable[[_T], bool] | None,
    limit: int | None,
) -> tuple[_T, ...]:
    """The newest ``limit`` items (all when None) with seq > ``after`` that ``keep`` accepts,
    merged across ``buffers`` by seq, oldest first. Walks from the newest end, so a follow-up
    query (``after`` = last seen) costs only what is new."""
    if limit is not None and limit <= 0:
        return ()
    if not buffers:
        return ()
    merged: Iterator[_T] = (
        reversed(buffers[0])
        if len(buffers) == 1
        else heapq.merge(*(reversed(b) for b in buffers), key=_neg_seq)
    )
    out: list[_T] = []
    for item in merged:
        if item.seq <= after:
            break
        if keep is None or keep(item):
            out.append(item)
            if limit is not None and len(out) >= limit:
                break
    out.reverse()
    return tuple(out)


def _cut(value: str, length: int) -> str:
    """``value`` cut to ``length`` characters, the last one an ellipsis, when longer."""
    return value if len(value) <= length else value[: length - 1] + _ELLIPSIS


def _within(attributes: Attributes, limits: Limits) -> bool:
    """Whether ``attributes`` already fit the count and length caps (the common case)."""
    if len(attributes) > limits.max_attributes:
        return False
    longest = limits.max_attribute_length
    return all(len(v) <= longest and len(k) <= MAX_NAME for k, v in attributes)


def _cap(attributes: Attributes, limits: Limits) -> Attributes:
    """``attributes`` within the caps: the first ``max_attributes`` kept, long keys and
    values cut."""
    if _within(attributes, limits):
        return attributes
    longest = limits.max_attribute_length
    return tuple(
        (_cut(k, MAX_NAME), _cut(v, longest)) for k, v in attributes[: limits.max_attributes]
    )


def _flat(attributes: Attributes) -> Iterator[str]:
    """The keys and values of ``attributes``, in one sequence."""
    for key, value in attributes:
        yield key
        yield value


def _masked(attributes: Attributes, mask: Callable[[str], str]) -> Attributes:
    """``attributes`` with ``mask`` applied to every key and value."""
    return tuple((mask(k), mask(v)) for k, v in attributes)


def _span_texts(span: Span) -> Iterator[str]:
    """Every text of a span that masking covers."""
    yield span.name
    yield span.status_message
    yield span.scope
    yield span.instance_id
    yield from _flat(span.attributes)
    for event in span.events:
        yield event.name
        yield from _flat(event.attributes)


def _contains(record: LogRecord, needle: str) -> bool:
    """Whether a record's body, severity text or an attribute key/value contains ``needle``."""
    if needle in record.body.casefold() or needle in record.severity_text.casefold():
        return True
    return any(needle in k.casefold() or needle in v.casefold() for k, v in record.attributes)


def _summarize(trace_id: str, spans: Iterable[Span]) -> TraceSummary:
    """A trace's row: named after its root span (or its earliest when the root is missing)."""
    ordered = sorted(spans, key=lambda s: (s.start_ns, s.seq))
    ids = {s.span_id for s in ordered}
    root = next((s for s in ordered if not s.parent_span_id), None)
    if root is None:
        root = next((s for s in ordered if s.parent_span_id not in ids), ordered[0])
    start = ordered[0].start_ns
    end = max(s.end_ns for s in ordered)
    resources = tuple(dict.fromkeys(s.resource for s in ordered))
    return TraceSummary(
        trace_id=trace_id,
        name=f"{root.resource}: {root.name}",
        resources=resources,
        span_count=len(ordered),
        start_ns=start,
        duration_ns=max(0, end - start),
        has_error=any(s.status == "Error" for s in ordered),
    )
