"""Output-caching rules, free of I/O: what is cacheable, the cache key, and the stored frame.

As ASP.NET Core's default output-cache policy: only GET and HEAD requests without an
``Authorization`` header (nor a signed-in user, which the middleware checks), only 200
responses without ``Set-Cookie``, 60 s by default, varying by host and every query key unless
told otherwise. The key follows ASP.NET's layout (``METHOD␞SCHEME␞HOST`` upper-cased, ␞ and
the path as is, then ``H`` and ``Q`` vary segments; ␞ is 0x1E), except that query names keep
their case and are percent-encoded.

Stored responses use our own frame (``StoredResponse.encode``), not ASP.NET's binary entry,
so output-cache entries are not shared with .NET services (their keys use another prefix).
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterable, Sequence
from datetime import timedelta
from urllib.parse import parse_qsl, quote

import attrs

__all__ = [
    "DEFAULT_EXPIRATION",
    "DEFAULT_MAX_BODY_BYTES",
    "OutputCachePolicy",
    "StoredResponse",
    "cache_key",
    "request_cacheable",
    "response_cacheable",
]

#: ASP.NET's ``OutputCacheOptions.DefaultExpirationTimeSpan``.
DEFAULT_EXPIRATION = timedelta(seconds=60)
#: ASP.NET's ``OutputCacheOptions.MaximumBodySize``: larger bodies are served, not stored.
DEFAULT_MAX_BODY_BYTES = 64 * 1024 * 1024

_RS = "\x1e"  # record separator between key parts, as ASP.NET
_US = "\x1f"  # unit separator between values of one vary entry
_CACHEABLE_METHODS = frozenset({"GET", "HEAD"})
Headers = Sequence[tuple[bytes, bytes]]


def _expiration(value: timedelta | float) -> timedelta:
    if isinstance(value, bool) or not isinstance(value, (timedelta, int, float)):
        raise TypeError(
            f"output cache expiration must be a timedelta or seconds, not {type(value).__name__}"
        )
    result = value if isinstance(value, timedelta) else timedelta(seconds=value)
    if result <= timedelta(0):
        raise ValueError(f"output cache expiration must be positive, not {result}")
    return result


def _check_names(what: str, value: Iterable[str] | str) -> tuple[str, ...]:
    """A tuple of non-empty strings without 0x1E/0x1F (a lone string is one name)."""
    items = (value,) if isinstance(value, str) else tuple(value)
    for item in items:
        if not isinstance(item, str) or not item.strip():
            raise ValueError(f"output cache {what} must be non-empty strings, not {item!r}")
        if _RS in item or _US in item:
            raise ValueError(f"output cache {what} {item!r} contains a 0x1E/0x1F character")
    return items


def _query_keys(value: Iterable[str] | str) -> tuple[str, ...]:
    return _check_names("query keys", value)


def _header_names(value: Iterable[str] | str) -> tuple[str, ...]:
    return _check_names("header names", value)


def _tags(value: Iterable[str] | str) -> tuple[str, ...]:
    return _check_names("tags", value)


@attrs.frozen
class OutputCachePolicy:
    """How one endpoint's responses are cached (ASP.NET's ``[OutputCache]`` attributes).

    ``vary_by_query`` lists the query keys that select a distinct entry; ``("*",)`` (default)
    means every key, ``()`` none. ``vary_by_header`` lists request headers that do.
    ``vary_by_host`` keeps hosts apart (default, as ASP.NET). ``tags`` let
    ``evict_by_tag`` remove entries together. ``no_store`` opts a route out of a default policy.
    """

    expiration: timedelta = attrs.field(default=DEFAULT_EXPIRATION, converter=_expiration)
    vary_by_query: tuple[str, ...] = attrs.field(default=("*",), converter=_query_keys)
    vary_by_header: tuple[str, ...] = attrs.field(default=(), converter=_header_names)
    vary_by_host: bool = True
    tags: tuple[str, ...] = attrs.field(default=(), converter=_tags)
    no_store: bool = False

    @property
    def expiration_ms(self) -> int:
        """The lifetime in whole milliseconds (at least 1), for ``SET ... PX``."""
        return max(1, int(self.expiration / timedelta(milliseconds=1)))


def _header(headers: Headers, name: bytes) -> list[bytes]:
    return [value for key, value in headers if key.lower() == name]


def request_cacheable(method: str, headers: Headers) -> bool:
    """Whether a request may be served from or stored in the cache (GET/HEAD, no auth)."""
    return method.upper() in _CACHEABLE_METHODS and not _header(headers, b"authorization")


def response_cacheable(status: int, headers: Headers) -> bool:
    """Whether a response may be stored: a 200 without ``Set-Cookie``."""
    return status == 200 and not _header(headers, b"set-cookie")


def cache_key(
    policy: OutputCachePolicy,
    *,
    method: str,
    scheme: str,
    host: str,
    path: str,
    query_string: bytes,
    headers: Headers,
) -> str | None:
    """The entry's key under ``policy``, or None when a part holds 0x1E/0x1F (not cached).

    ``path`` includes the root path and keeps its case (Starlette routes are case-sensitive,
    unlike ASP.NET's, which upper-cases it); method, scheme and host are upper-cased. Query
    keys match ``vary_by_query`` case-insensitively but enter the key as sent (percent-encoded,
    so no name can forge a ``name=value`` boundary) and sorted, so ``?a=1&b=2`` and
    ``?b=2&a=1`` share an entry while ``?q=1`` and ``?Q=1`` (distinct to Starlette) do not;
    repeated values keep order.
    """
    host_part = host if policy.vary_by_host else "*:*"
    raw: list[str] = [method, scheme, host_part, path]
    # The host and the path are separate parts, so that no Host header can forge a path.
    parts = [f"{method}{_RS}{scheme}{_RS}{host_part}".upper(), path]
    if policy.vary_by_header:
        parts.append("H")
        for name in sorted({n.lower() for n in policy.vary_by_header}):
            values = [v.decode("latin-1") for v in _header(headers, name.encode("latin-1"))]
            raw.extend(values)
            parts.append(f"{name.upper()}={_US.join(values)}")
    if policy.vary_by_query:
        wanted = {q.upper() for q in policy.vary_by_query}
        everything = "*" in wanted
        grouped: dict[str, list[str]] = {}
        for name, value in parse_qsl(
            query_string.decode("latin-1"), keep_blank_values=True, encoding="latin-1"
        ):
            if everything or name.upper() in wanted:
                raw.extend((name, value))
                # Percent-encoded, a name holds no "=", so ``?a%3DB=c`` and ``?a=B%3Dc`` differ;
                # it keeps its case, as Starlette's query parameters are case-sensitive.
                grouped.setdefault(quote(name, safe=""), []).append(value)
        if grouped:
            parts.append("Q")
            parts.extend(f"{k}={_US.join(v)}" for k, v in sorted(grouped.items()))
    if any(_RS in part or _US in part for part in raw):
        return None
    return _RS.join(parts)


_MAGIC = b"AHOC\x01"
_LENGTH = struct.Struct(">I")


@attrs.frozen
class StoredResponse:
    """A cached response: status, headers, body, when it was stored (Unix seconds), tags.

    Frame (``encode``): ``b"AHOC\\x01"``, a 4-byte big-endian length, that many bytes of
    UTF-8 JSON ``{"s": status, "t": created, "h": [[name, value], ...], "g": [tags]}``
    (header bytes as Latin-1 strings), then the body.
    """

    status: int
    headers: tuple[tuple[bytes, bytes], ...]
    body: bytes
    created: float
    tags: tuple[str, ...] = ()

    def encode(self) -> bytes:
        """The frame stored in Redis."""
        meta = {
            "s": self.status,
            "t": self.created,
            "h": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in self.headers],
            "g": list(self.tags),
        }
        head = json.dumps(meta, separators=(",", ":")).encode()
        return _MAGIC + _LENGTH.pack(len(head)) + head + self.body

    @classmethod
    def decode(cls, data: bytes) -> StoredResponse | None:
        """Read a frame; None for anything else (another format, a truncated value)."""
        start = len(_MAGIC) + _LENGTH.size
        if len(data) < start or not data.startswith(_MAGIC):
            return None
        (length,) = _LENGTH.unpack_from(data, len(_MAGIC))
        if len(data) < start + length:
            return None
        try:
            meta = json.loads(data[start : start + length])
            headers = tuple(
                (str(k).encode("latin-1"), str(v).encode("latin-1")) for k, v in meta["h"]
            )
            return cls(
                status=int(meta["s"]),
                headers=headers,
                body=bytes(data[start + length :]),
                created=float(meta["t"]),
                tags=tuple(str(t) for t in meta["g"]),
            )
        except (ValueError, KeyError, TypeError, UnicodeEncodeError):
            return None

    def age(self, now: float) -> int:
        """Whole seconds since the response was stored, for the ``Age`` header."""
        return max(0, int(now - self.created))

    def header(self, name: bytes) -> bytes | None:
        """The first value of a header (name in lower case), or None."""
        values = _header(self.headers, name)
        return values[0] if values else None
