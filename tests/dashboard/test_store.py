"""The dashboard's telemetry store: per-resource limits, dropped counts, merge order, change
notification, the traces index and the configuration of its limits."""

from __future__ import annotations

import threading
import time

import attrs
import pytest

from apphost_sdk.errors import ConfigurationError
from apphost_sdk.masking import SecretMasker
from apphost_sdk.telemetry.models import (
    ConsoleLine,
    LogRecord,
    MetricPoint,
    Page,
    Span,
    SpanEvent,
)
from apphost_sdk.telemetry.store import MAX_NAME, Limits, TelemetryStore


def span(
    resource: str,
    trace: str,
    span_id: str,
    parent: str = "",
    *,
    start: int = 0,
    end: int = 10,
    name: str = "op",
    status: str = "Unset",
    attributes: tuple[tuple[str, str], ...] = (),
) -> Span:
    return Span(
        resource, trace, span_id, parent, name, "Server", start, end, status, "", attributes
    )


def log(resource: str, body: str, severity: int = 9, trace: str = "") -> LogRecord:
    return LogRecord(resource, 0, severity, "", body, trace_id=trace)


def texts(page: Page) -> list[str]:
    return [x.text for x in page.items if isinstance(x, ConsoleLine)]


def bodies_of(page: Page) -> list[str]:
    return [x.body for x in page.items if isinstance(x, LogRecord)]


def point(resource: str, instrument: str, value: float, meter: str = "m") -> MetricPoint:
    return MetricPoint(resource, meter, instrument, "ms", "d", "Gauge", 0, value)


# -- limits per resource ------------------------------------------------------------------------
def test_a_chatty_resource_never_evicts_another_resources_data() -> None:
    store = TelemetryStore(Limits(console_lines=3, log_records=3, spans=3, metric_points=3))
    store.add_console_line("quiet", "stdout", "hello")
    store.add_log_records([log("quiet", "started")])
    store.add_spans([span("quiet", "t0", "s0")])
    store.add_metric_points([point("quiet", "up", 1)])

    for i in range(100):
        store.add_console_line("chatty", "stdout", f"line {i}")
    store.add_log_records(log("chatty", f"record {i}") for i in range(100))
    store.add_spans(span("chatty", f"t{i + 1}", f"s{i + 1}") for i in range(100))
    store.add_metric_points(point("chatty", "load", i) for i in range(100))

    assert texts(store.console_lines("quiet")) == ["hello"]
    assert bodies_of(store.log_records("quiet")) == ["started"]
    assert [t.trace_id for t in store.traces("quiet")] == ["t0"]
    assert [p.value for i in store.instruments("quiet") for p in i.points] == [1]
    chatty = store.console_lines("chatty")
    assert texts(chatty) == ["line 97", "line 98", "line 99"]
    assert chatty.dropped == 97
    assert store.log_records("chatty").dropped == 97
    for kind in ("console", "logs", "spans", "metrics"):
        assert store.dropped(kind, "chatty") == 97
        assert store.dropped(kind, "quiet") == 0
        assert store.dropped(kind) == 97
    assert store.resource_names() == ["chatty", "quiet"]


def test_names_beyond_max_resources_evict_the_least_recently_used_bucket() -> None:
    store = TelemetryStore(Limits(max_resources=2))
    store.add_console_line("a", "stdout", "x")
    store.add_spans([span("b", "t1", "s1"), span("b", "t2", "s2")])
    store.add_log_records([log("a", "a is used again")])  # b is now the least recently used

    assert store.add_spans([span("c", "t3", "s3")]) == 1  # the newcomer is kept, b goes

    assert store.resource_names() == ["a", "c"]
    assert [t.trace_id for t in store.traces()] == ["t3"]
    assert store.trace("t1") == [] and store.dropped("spans") == 2
    assert store.dropped("spans", "b") == 0  # b is gone: its drops count under no resource

    line = store.add_console_line("d", "stderr", "never lost")  # evicts a (1 line, 1 record)
    assert line.seq > 0
    assert texts(store.console_lines("d")) == ["never lost"]
    assert store.resource_names() == ["c", "d"]
    assert [store.dropped(k) for k in ("console", "logs", "spans", "metrics")] == [1, 1, 2, 0]


def test_an_evicted_buckets_own_drops_stay_counted() -> None:
    store = TelemetryStore(Limits(max_resources=1, console_lines=2))
    for i in range(5):
        store.add_console_line("a", "stdout", f"line {i}")
    assert store.dropped("console") == 3

    store.add_console_line("b", "stdout", "evicts a")

    assert store.dropped("console") == 5  # 3 dropped earlier + the 2 a still held
    assert store.console_lines().dropped == 5


def test_reserved_names_always_get_buckets_outside_max_resources() -> None:
    store = TelemetryStore(Limits(max_resources=1))
    store.reserve(["api", "cache"])
    for i in range(50):  # a sender making up service names
        store.add_spans([span(f"spoof{i}", f"t{i}", f"s{i}")])
    store.add_console_line("api", "stdout", "api is up")
    store.add_spans([span("cache", "tc", "c1")])
    for i in range(50, 60):
        store.add_spans([span(f"spoof{i}", f"t{i}", f"s{i}")])

    assert store.resource_names() == ["api", "cache", "spoof59"]
    assert texts(store.console_lines("api")) == ["api is up"]
    assert [t.trace_id for t in store.traces("cache")] == ["tc"]
    assert store.dropped("spans") == 59


def test_reserving_a_name_already_in_use_takes_it_out_of_the_lru() -> None:
    store = TelemetryStore(Limits(max_resources=1))
    store.add_console_line("api", "stdout", "early line")  # before reserve: an OTLP-like name
    store.reserve(["api"])

    store.add_console_line("other", "stdout", "x")
    store.add_console_line("another", "stdout", "y")

    assert texts(store.console_lines("api")) == ["early line"]
    assert store.resource_names() == ["another", "api"]


def test_a_cleared_name_frees_its_place_in_max_resources() -> None:
    store = TelemetryStore(Limits(max_resources=2))
    store.add_console_line("a", "stdout", "x")
    store.add_console_line("b", "stdout", "y")
    store.clear("a")

    store.add_console_line("c", "stdout", "z")  # room was freed: b stays

    assert store.resource_names() == ["b", "c"]
    assert store.dropped("console") == 0


def test_attribute_count_and_length_are_capped_on_add() -> None:
    store = TelemetryStore(Limits(max_attributes=2, max_attribute_length=5))
    many = (("a", "1"), ("b", "123456789"), ("c", "3"))
    event = SpanEvent("e", 1, many)
    store.add_spans([attrs.evolve(span("api", "t", "s", attributes=many), events=(event,))])
    store.add_log_records([LogRecord("api", 0, 9, "", "x" * 200, attributes=many)])
    store.add_metric_points([MetricPoint("api", "m", "i", "", "", "Sum", 0, 1.0, many)])

    [kept] = store.trace("t")
    assert kept.attributes == (("a", "1"), ("b", "1234…"))
    assert kept.events[0].attributes == (("a", "1"), ("b", "1234…"))
    [record] = store.log_records().items
    assert isinstance(record, LogRecord)
    assert record.attributes == (("a", "1"), ("b", "1234…"))
    assert len(record.body) == 5 * 16 and record.body.endswith("…")  # bodies get 16x the length
    assert store.instruments()[0].points[0].attributes == (("a", "1"), ("b", "1234…"))


def test_attributes_within_the_caps_are_kept_as_they_are() -> None:
    store = TelemetryStore()
    pairs = (("http.route", "/items"), ("n", "1"))
    store.add_spans([span("api", "t", "s", attributes=pairs)])

    assert store.trace("t")[0].attributes is pairs


# -- masking ------------------------------------------------------------------------------------
SECRET = "hunter2-Pa55word"


def masked_store(**limits: int) -> TelemetryStore:
    return TelemetryStore(Limits(**limits), mask=SecretMasker([SECRET]).mask)


def test_every_text_of_a_span_is_masked() -> None:
    store = masked_store()
    event = SpanEvent(f"retry {SECRET}", 1, ((f"k{SECRET}", f"pw={SECRET}"),))
    leaky = Span(
        "api",
        "t",
        "s",
        "",
        f"GET /login?p={SECRET}",
        "Server",
        0,
        1,
        "Error",
        f"auth failed for {SECRET}",
        (("db.password", SECRET), (SECRET, "as a key")),
        (event,),
        f"scope-{SECRET}",
        f"api-{SECRET}",
    )
    store.add_spans([leaky])

    [kept] = store.trace("t")
    assert SECRET not in repr(kept)
    assert kept.name == "GET /login?p=***"
    assert kept.status_message == "auth failed for ***"
    assert kept.attributes == (("db.password", "***"), ("***", "as a key"))
    assert kept.events == (SpanEvent("retry ***", 1, (("k***", "pw=***"),)),)
    assert (kept.scope, kept.instance_id) == ("scope-***", "api-***")
    assert SECRET not in repr(store.traces())


def test_every_text_of_log_records_metric_points_and_console_lines_is_masked() -> None:
    store = masked_store()
    store.add_log_records(
        [
            LogRecord(
                "api",
                0,
                17,
                f"ERROR {SECRET}",
                f"connecting with {SECRET}",
                ((f"x.{SECRET}", SECRET),),
                scope=f"lib {SECRET}",
            )
        ]
    )
    store.add_metric_points(
        [
            MetricPoint(
                "api",
                f"m {SECRET}",
                f"i {SECRET}",
                f"u {SECRET}",
                f"d {SECRET}",
                "Sum",
                0,
                1.0,
                (("conn", f"redis://:{SECRET}@cache"),),
                instance_id=SECRET,
            )
        ]
    )
    line = store.add_console_line("api", "stdout", f"password is {SECRET}")

    [record] = store.log_records().items
    assert isinstance(record, LogRecord)
    assert (record.body, record.severity_text) == ("connecting with ***", "ERROR ***")
    assert (record.attributes, record.scope) == ((("x.***", "***"),), "lib ***")
    [instrument] = store.instruments()
    [point_kept] = instrument.points
    assert (point_kept.meter, point_kept.instrument, point_kept.unit) == ("m ***", "i ***", "u ***")
    assert point_kept.description == "d ***" and point_kept.instance_id == "***"
    assert point_kept.attributes == (("conn", "redis://:***@cache"),)
    assert line.text == "password is ***"
    assert SECRET not in repr(store.console_lines()) + repr(store.log_records())
    assert SECRET not in repr(store.instruments())


def test_masking_comes_before_cutting_so_no_start_of_a_secret_is_left() -> None:
    store = masked_store(max_attribute_length=20)
    value = "x" * 10 + SECRET  # 26 characters: a cut at 20 would keep "hunter2-P"
    store.add_spans([span("api", "t", "s", attributes=(("v", value),))])
    store.add_log_records([log("api", "y" * 310 + SECRET)])  # bodies are cut at 16 x 20

    assert store.trace("t")[0].attributes == (("v", "x" * 10 + "***"),)
    [record] = store.log_records().items
    assert isinstance(record, LogRecord) and record.body == "y" * 310 + "***"


def test_items_without_secrets_are_kept_as_they_are_when_masking() -> None:
    store = masked_store()
    pairs = (("http.route", "/items"),)
    store.add_spans([span("api", "t", "s", attributes=pairs)])

    assert store.trace("t")[0].attributes is pairs


def test_long_names_are_cut_in_the_store() -> None:
    store = TelemetryStore()
    long = "n" * 1_000
    store.add_spans([span("api", "t", "s", name=long, attributes=((long, "v"),))])

    [kept] = store.trace("t")
    assert len(kept.name) == MAX_NAME and kept.name.endswith("…")
    assert len(kept.attributes[0][0]) == MAX_NAME


# -- order and paging ---------------------------------------------------------------------------
def test_all_resources_merge_in_arrival_order_with_after_and_limit() -> None:
    store = TelemetryStore()
    lines = [
        store.add_console_line(
            r, "stderr" if r == "b" else "stdout", f"{r}{i}", timestamp=100.0 + i
        )
        for i, r in enumerate("abacba")
    ]
    assert [line.seq for line in lines] == sorted(line.seq for line in lines)
    assert len({line.seq for line in lines}) == 6

    page = store.console_lines()
    assert texts(page) == ["a0", "b1", "a2", "c3", "b4", "a5"]
    assert page.last_seq == lines[-1].seq
    assert texts(store.console_lines(after=lines[2].seq)) == ["c3", "b4", "a5"]
    assert texts(store.console_lines(limit=2)) == ["b4", "a5"]
    assert texts(store.console_lines("b")) == ["b1", "b4"]
    assert texts(store.console_lines(since=103.0)) == ["c3", "b4", "a5"]
    assert store.console_lines(limit=0).items == ()
    assert store.console_lines("nobody") == store.console_lines("nobody", after=99)
    assert store.console_lines("nobody").items == ()
    assert isinstance(page.items[0], ConsoleLine) and page.items[0].stream == "stdout"


def test_seq_is_shared_by_every_kind() -> None:
    store = TelemetryStore()
    first = store.add_console_line("a", "stdout", "x")
    store.add_spans([span("a", "t", "s")])
    store.add_log_records([log("a", "y")])
    store.add_metric_points([point("a", "i", 1)])

    [record] = store.log_records().items
    assert isinstance(record, LogRecord)
    seqs = [first.seq, store.trace("t")[0].seq, record.seq, store.instruments()[0].points[0].seq]
    assert seqs == [1, 2, 3, 4]
    assert store.log_records().last_seq == 4


def test_log_records_filter_by_severity_trace_and_text() -> None:
    store = TelemetryStore()
    store.add_log_records(
        [
            log("api", "Order 7 placed", 9, trace="aa" * 16),
            log("api", "cache miss", 5, trace="aa" * 16),
            log("worker", "order 7 FAILED", 17, trace="bb" * 16),
            LogRecord("worker", 0, 13, "WARN", "slow", attributes=(("order.id", "7"),)),
        ]
    )

    def bodies(
        resource: str | None = None,
        min_severity: int = 0,
        trace_id: str | None = None,
        text: str | None = None,
        limit: int = 1000,
    ) -> list[str]:
        page = store.log_records(
            resource, min_severity=min_severity, trace_id=trace_id, text=text, limit=limit
        )
        return bodies_of(page)

    assert bodies() == ["Order 7 placed", "cache miss", "order 7 FAILED", "slow"]
    assert bodies(min_severity=13) == ["order 7 FAILED", "slow"]
    assert bodies(trace_id="AA" * 16) == ["Order 7 placed", "cache miss"]
    assert bodies(text="ORDER 7") == ["Order 7 placed", "order 7 FAILED"]
    assert bodies(text="order.id") == ["slow"]
    assert bodies(text="warn") == ["slow"]
    assert bodies(resource="worker", min_severity=17) == ["order 7 FAILED"]
    assert bodies(limit=1, min_severity=9) == ["slow"]


def test_instruments_group_points_per_resource_meter_and_name() -> None:
    store = TelemetryStore()
    store.add_metric_points(
        [point("api", "latency", 1), point("worker", "latency", 5), point("api", "latency", 2)]
    )
    store.add_metric_points(
        [MetricPoint("api", "m", "latency", "s", "newer", "Histogram", 0, 3.0, count=4)]
    )
    store.add_metric_points([point("api", "queue", 9, meter="a")])

    found = store.instruments()
    assert [(i.resource, i.meter, i.name) for i in found] == [
        ("api", "a", "queue"),
        ("api", "m", "latency"),
        ("worker", "m", "latency"),
    ]
    latency = found[1]
    assert [p.value for p in latency.points] == [1, 2, 3]
    assert (latency.unit, latency.description, latency.kind) == ("s", "newer", "Histogram")
    assert [i.resource for i in store.instruments("worker")] == ["worker"]
    assert store.instruments("nobody") == []


# -- change notification ------------------------------------------------------------------------
def test_version_goes_up_on_every_change() -> None:
    store = TelemetryStore()
    versions = [store.version]
    store.add_console_line("a", "stdout", "x")
    versions.append(store.version)
    store.add_spans([span("a", "t", "s"), span("a", "t", "s2")])
    versions.append(store.version)
    store.add_spans([])
    versions.append(store.version)  # nothing kept, nothing changed
    store.clear("a")
    versions.append(store.version)

    assert versions == [0, 1, 2, 2, 3]


def test_wait_changed_wakes_on_a_change_from_another_thread() -> None:
    store = TelemetryStore()
    start = store.version
    woke: list[int] = []
    waiter = threading.Thread(target=lambda: woke.append(store.wait_changed(start, 30.0)))
    waiter.start()

    store.add_console_line("a", "stdout", "wake up")
    waiter.join(timeout=30.0)

    assert not waiter.is_alive()
    assert woke == [start + 1]


def test_wait_changed_returns_at_once_when_already_changed_and_times_out_otherwise() -> None:
    store = TelemetryStore()
    store.add_console_line("a", "stdout", "x")

    assert store.wait_changed(0, 30.0) == 1  # already changed: no wait
    began = time.monotonic()
    assert store.wait_changed(1, 0.05) == 1
    assert time.monotonic() - began >= 0.04


# -- the traces index ---------------------------------------------------------------------------
def test_traces_span_resources_and_are_summarized_newest_first() -> None:
    store = TelemetryStore()
    store.add_spans(
        [
            span("cache", "t1", "c1", "r1", start=20, end=30, name="GET"),
            span("api", "t1", "r1", start=10, end=50, name="GET /items"),
            span("api", "t2", "x1", start=100, end=110, status="Error"),
            span("worker", "t3", "w2", "gone", start=60, end=70, name="orphan"),
        ]
    )

    summaries = store.traces()
    assert [s.trace_id for s in summaries] == ["t2", "t3", "t1"]
    t1 = summaries[2]
    assert (t1.name, t1.resources, t1.span_count) == ("api: GET /items", ("api", "cache"), 2)
    assert (t1.start_ns, t1.duration_ns, t1.has_error) == (10, 40, False)
    assert summaries[0].has_error
    assert summaries[1].name == "worker: orphan"  # no root kept: the earliest span names it
    assert [s.trace_id for s in store.traces("cache")] == ["t1"]
    assert [s.trace_id for s in store.traces(limit=1)] == ["t2"]
    assert [s.span_id for s in store.trace("t1")] == ["r1", "c1"]
    assert store.trace("nope") == []


def test_evicted_spans_leave_the_traces_index() -> None:
    store = TelemetryStore(Limits(spans=2))
    store.add_spans([span("api", "t1", "a1", start=1), span("cache", "t1", "c1", "a1", start=2)])
    store.add_spans([span("api", "t1", "a2", "a1", start=3)])
    assert store.traces()[0].span_count == 3

    store.add_spans([span("api", "t2", "b1", start=4)])  # evicts api's a1
    assert [s.span_id for s in store.trace("t1")] == ["c1", "a2"]
    assert store.traces()[1].name == "cache: op"  # a1 is gone: c1's parent is not kept

    store.add_spans([span("api", "t2", "b2", "b1", start=5)])  # evicts api's a2
    assert [t.trace_id for t in store.traces("api")] == ["t2"]
    assert [t.trace_id for t in store.traces()] == ["t2", "t1"]  # cache still has t1

    store.add_spans([span("cache", "t3", "c3", start=6), span("cache", "t3", "c4", start=7)])
    assert [t.trace_id for t in store.traces()] == ["t3", "t2"]
    assert store.trace("t1") == []
    assert (store.dropped("spans", "api"), store.dropped("spans", "cache")) == (2, 1)


def test_traces_index_stays_bounded_under_churn() -> None:
    store = TelemetryStore(Limits(spans=50))
    for i in range(2_000):
        store.add_spans([span(f"svc{i % 3}", f"t{i}", f"s{i}", start=i)])

    assert len(store.traces(limit=10_000)) == 150
    assert len(store._traces) == 150
    assert all(len(b.trace_counts) == 50 for b in store._buckets.values())


def test_clear_one_resource_or_all_keeps_seq_growing() -> None:
    store = TelemetryStore(Limits(console_lines=1))
    store.add_console_line("a", "stdout", "x")
    store.add_console_line("a", "stdout", "y")
    store.add_spans([span("a", "t", "s1"), span("b", "t", "s2")])
    store.add_log_records([log("b", "z")])

    store.clear("a")
    assert store.resource_names() == ["b"]
    assert store.dropped("console") == 0
    assert [s.span_id for s in store.trace("t")] == ["s2"]
    assert store.traces()[0].resources == ("b",)
    store.clear("never-seen")

    store.clear()
    assert store.resource_names() == []
    assert store.traces() == [] and store.log_records().items == ()
    assert store.add_console_line("a", "stdout", "again").seq == 6


def test_dropped_names_the_kinds_it_knows() -> None:
    with pytest.raises(ValueError, match="console, logs, spans, metrics"):
        TelemetryStore().dropped("traces")


# -- cost ---------------------------------------------------------------------------------------
def test_adding_spans_to_a_full_store_costs_little_cpu() -> None:
    """Far above 5,000 spans/s with eviction on: this thread's CPU time, not wall time, so other
    processes on a busy machine do not count."""
    store = TelemetryStore(Limits(spans=1_000))
    batches = [
        [span(f"svc{b % 4}", f"{b:030x}{i:02x}", f"{i:016x}", start=b) for i in range(100)]
        for b in range(200)
    ]
    began = time.thread_time()
    for batch in batches:
        store.add_spans(batch)
    spent = time.thread_time() - began

    assert store.dropped("spans") == 20_000 - 4 * 1_000
    assert spent < 2.0, f"adding 20,000 spans took {spent:.2f} s of CPU"


# -- configuration ------------------------------------------------------------------------------
def test_limits_from_configuration() -> None:
    values = {
        "Dashboard:Limits:ConsoleLines": "500",
        "Dashboard:Limits:Spans": " 2_000 ",
        "Dashboard:Limits:LogRecords": "",
    }

    limits = Limits.from_configuration(values.get)

    assert (limits.console_lines, limits.spans, limits.log_records) == (500, 2_000, 10_000)
    assert Limits.from_configuration(lambda key: None) == Limits()


@pytest.mark.parametrize("raw", ["0", "-5", "lots", "1.5", "1e4"])
def test_bad_limits_name_the_key_and_what_to_write(raw: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        Limits.from_configuration({"Dashboard:Limits:MetricPoints": raw}.get)

    message = str(caught.value)
    assert "Dashboard:Limits:MetricPoints" in message
    assert "whole number of at least 1" in message
    assert repr(raw) in message
    assert "Dashboard__Limits__MetricPoints" in message


def test_limits_refuse_non_positive_values_in_code() -> None:
    with pytest.raises(ValueError, match="spans"):
        Limits(spans=0)
