"""Serializers of hybrid-cache values: a ``Serializer`` protocol and bytes, str and JSON.

A serializer turns a value into the bytes stored in L2 (and kept in L1 for mutable values)
and back. JSON is the default, as in .NET for types other than string and byte arrays.
"""

from __future__ import annotations

import json
from typing import Any, Protocol, runtime_checkable

__all__ = ["BytesSerializer", "JsonSerializer", "Serializer", "StrSerializer"]


@runtime_checkable
class Serializer(Protocol):
    """Turns values into bytes and back; ``loads(dumps(v))`` must equal ``v``."""

    def dumps(self, value: Any) -> bytes:
        """The bytes of ``value`` (a ``TypeError`` naming the type when it cannot)."""
        ...

    def loads(self, data: bytes) -> Any:
        """The value of ``data``."""
        ...


class BytesSerializer:
    """Values are bytes, stored as they are (``bytearray``/``memoryview`` become bytes)."""

    def dumps(self, value: Any) -> bytes:
        if isinstance(value, (bytes, bytearray, memoryview)):
            return bytes(value)
        raise TypeError(f"BytesSerializer stores bytes, not {type(value).__name__}")

    def loads(self, data: bytes) -> bytes:
        return bytes(data)


class StrSerializer:
    """Values are text, stored as UTF-8 (``encoding`` to choose another)."""

    def __init__(self, encoding: str = "utf-8") -> None:
        self.encoding = encoding

    def dumps(self, value: Any) -> bytes:
        if not isinstance(value, str):
            raise TypeError(f"StrSerializer stores str, not {type(value).__name__}")
        return value.encode(self.encoding)

    def loads(self, data: bytes) -> str:
        return data.decode(self.encoding)


class JsonSerializer:
    """Values are JSON (compact UTF-8); tuples read back as lists, as JSON has no tuples."""

    def dumps(self, value: Any) -> bytes:
        try:
            return json.dumps(
                value, ensure_ascii=False, separators=(",", ":"), allow_nan=False
            ).encode("utf-8")
        except (TypeError, ValueError) as exc:
            raise TypeError(
                f"JsonSerializer cannot store this {type(value).__name__} ({exc}): pass a "
                "serializer= that can (a Serializer with dumps/loads)"
            ) from None

    def loads(self, data: bytes) -> Any:
        return json.loads(data.decode("utf-8"))
