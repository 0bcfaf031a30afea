"""The OTLP/HTTP receiver of the dashboard's OTLP port, as an ASGI app: ``POST /v1/traces``,
``/v1/logs`` and ``/v1/metrics`` with the API key header, decoded into the telemetry store.

Inflating, decoding and storing run on a worker thread: a 4 MiB body takes a while to decode,
and on the event loop it would stall every other exporter (and the UI's answers) meanwhile."""

from __future__ import annotations

import threading
import zlib
from collections.abc import Sequence

from starlette.concurrency import run_in_threadpool
from starlette.types import Receive, Scope, Send

from ..telemetry import otlp
from ..telemetry.models import LogRecord, MetricPoint, Span
from ..telemetry.store import TelemetryStore
from . import auth

#: The header carrying the OTLP API key, as Aspire's dashboard expects it.
OTLP_KEY_HEADER = b"x-otlp-api-key"


class OtlpReceiver:
    """ASGI app of the OTLP port: ``POST /v1/traces|logs|metrics`` with the API key header,
    protobuf or JSON bodies (gzip allowed) of at most ``otlp.MAX_BODY`` bytes, into the store.
    A missing or wrong key gets a bare 401; the body is not read before the key and type pass."""

    def __init__(self, store: TelemetryStore, api_key: str) -> None:
        self.store = store
        self.api_key = api_key
        #: At most two requests decode at once: a 4 MiB JSON body briefly takes ~100 MB.
        self._decoding = threading.BoundedSemaphore(2)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        signal = path[len("/v1/") :] if path.startswith("/v1/") else ""
        if signal not in otlp.SIGNALS:
            await _answer(
                send,
                404,
                b"not found: OTLP/HTTP paths are /v1/traces, /v1/logs, "
                b"/v1/metrics (the dashboard's pages are on its UI port)",
            )
            return
        if scope["method"] != "POST":
            await _answer(send, 405, b"use POST", [(b"allow", b"POST")])
            return
        headers = scope["headers"]
        if not auth.secret_matches(_header(headers, OTLP_KEY_HEADER), self.api_key):
            await _answer(send, 401, b"")
            return
        content_type = _header(headers, b"content-type") or ""
        encoding = (_header(headers, b"content-encoding") or "identity").strip().lower()
        try:
            otlp.media_type(content_type)
            if encoding not in ("", "identity", "gzip"):
                raise otlp.OtlpError(
                    415, f"unsupported Content-Encoding {encoding!r}; use gzip or none"
                )
            body = await _read_body(headers, receive)
            await run_in_threadpool(self._ingest, signal, body, content_type, encoding)
        except otlp.OtlpError as exc:
            await _answer(send, exc.status, exc.message.encode())
            return
        reply, reply_type = otlp.success_body(signal, content_type)
        await _answer(send, 200, reply, [(b"content-type", reply_type.encode())])

    def _ingest(self, signal: str, body: bytes, content_type: str, encoding: str) -> None:
        """Inflate, decode and store one request (on a worker thread: CPU-bound work)."""
        if encoding == "gzip":
            body = _inflate(body)
        with self._decoding:  # bounds the transient parse memory of concurrent requests
            items = otlp.decode(signal, body, content_type, limits=self.store.limits)
        self._keep(signal, items)

    def _keep(self, signal: str, items: Sequence[Span | LogRecord | MetricPoint]) -> None:
        if signal == "traces":
            self.store.add_spans(i for i in items if isinstance(i, Span))
        elif signal == "logs":
            self.store.add_log_records(i for i in items if isinstance(i, LogRecord))
        else:
            self.store.add_metric_points(i for i in items if isinstance(i, MetricPoint))


def _header(headers: Sequence[tuple[bytes, bytes]], name: bytes) -> str | None:
    for key, value in headers:
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def _too_big() -> otlp.OtlpError:
    return otlp.OtlpError(
        400,
        f"request body over {otlp.MAX_BODY} bytes; export smaller batches "
        "(OTEL_BSP_MAX_EXPORT_BATCH_SIZE)",
    )


async def _read_body(headers: Sequence[tuple[bytes, bytes]], receive: Receive) -> bytes:
    """The request body as sent, refused (OtlpError 400) as soon as it is known to exceed
    MAX_BODY: from Content-Length before reading, else while reading."""
    length = _header(headers, b"content-length")
    if length is not None and length.strip().isdigit() and int(length) > otlp.MAX_BODY:
        raise _too_big()
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise otlp.OtlpError(400, "the client went away before sending the whole body")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > otlp.MAX_BODY:
            raise _too_big()
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _inflate(body: bytes) -> bytes:
    """A gzip body inflated, refused (OtlpError 400) beyond MAX_BODY or when corrupt."""
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        data = inflater.decompress(body, otlp.MAX_BODY + 1)
    except zlib.error as exc:
        raise otlp.OtlpError(400, f"the gzip body cannot be inflated: {exc}") from None
    if len(data) > otlp.MAX_BODY or inflater.unconsumed_tail:
        raise _too_big()
    return data


async def _answer(
    send: Send,
    status: int,
    body: bytes,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    """A complete response. An unread request body is discarded by uvicorn, never buffered
    here (closing at once instead would make the client's pending write reset the answer)."""
    all_headers = list(headers or [])
    if not any(k == b"content-type" for k, _ in all_headers):
        all_headers.append((b"content-type", b"text/plain; charset=utf-8"))
    all_headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": all_headers})
    await send({"type": "http.response.body", "body": body})
