"""A Django ``CACHES`` backend storing entries in .NET's ``IDistributedCache`` format.

    CACHES = {"default": {
        "BACKEND": "apphost_sdk.caching.django.RedisDistributedCache",
        "LOCATION": os.environ["ConnectionStrings__cache"],   # or a redis:// URL
        "KEY_FUNCTION": "apphost_sdk.caching.django.plain_key",  # keys as .NET sees them
        "OPTIONS": {"INSTANCE_NAME": "shop:", "SERIALIZER": "pickle"},  # or "bytes" / "text"
    }}

Django timeouts become absolute expirations relative to now; entries written by .NET with a
sliding expiration slide when Django reads them. ``SERIALIZER`` "text" or "bytes" stores the
value unchanged so .NET reads it with ``GetString`` / ``Get``; "pickle" (default) stores any
object, for Python readers only.
"""

from __future__ import annotations

import pickle
import threading
from collections.abc import Iterable
from typing import Any

from django.core.cache.backends.base import DEFAULT_TIMEOUT, BaseCache

from .options import DistributedCacheEntryOptions
from .sync_cache import DistributedCache

__all__ = ["RedisDistributedCache", "plain_key"]

_SERIALIZERS = ("pickle", "bytes", "text")


def plain_key(key: str, key_prefix: str, version: int) -> str:
    """A ``KEY_FUNCTION`` that keeps keys as given (plus ``KEY_PREFIX``), ignoring versions."""
    return f"{key_prefix}{key}"


class RedisDistributedCache(BaseCache):
    """Django cache backend over ``DistributedCache`` (one shared connection pool)."""

    def __init__(self, server: str | list[str], params: dict[str, Any]) -> None:
        super().__init__(params)
        location = server[0] if isinstance(server, (list, tuple)) else server
        if not location:
            raise ValueError("RedisDistributedCache needs a LOCATION (a Redis connection string)")
        self._location = location
        options = params.get("OPTIONS", {}) or {}
        self._instance_name = str(options.get("INSTANCE_NAME", ""))
        self._serializer = str(options.get("SERIALIZER", "pickle")).lower()
        if self._serializer not in _SERIALIZERS:
            raise ValueError(f"SERIALIZER must be one of {', '.join(_SERIALIZERS)}")
        self._cache: DistributedCache | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"RedisDistributedCache(instance_name={self._instance_name!r})"

    @property
    def distributed_cache(self) -> DistributedCache:
        """The underlying cache, opened on first use."""
        if self._cache is None:
            with self._lock:
                if self._cache is None:
                    self._cache = DistributedCache.from_connection_string(
                        self._location, instance_name=self._instance_name
                    )
        return self._cache

    # -- value and expiry conversion ------------------------------------------------------
    def _dumps(self, value: Any) -> bytes:
        if self._serializer == "pickle":
            return pickle.dumps(value, pickle.HIGHEST_PROTOCOL)
        if self._serializer == "text":
            return str(value).encode("utf-8")
        if not isinstance(value, (bytes, bytearray, memoryview)):
            raise TypeError("SERIALIZER 'bytes' stores bytes values only")
        return bytes(value)

    def _loads(self, data: bytes) -> Any:
        if self._serializer == "pickle":
            return pickle.loads(data)
        if self._serializer == "text":
            return data.decode("utf-8")
        return data

    def _entry_options(self, timeout: Any) -> tuple[bool, DistributedCacheEntryOptions | None]:
        """``(expired, options)`` for a Django timeout: None never expires, <= 0 at once."""
        if timeout is DEFAULT_TIMEOUT:
            timeout = self.default_timeout
        if timeout is None:
            return False, None
        if timeout <= 0:
            return True, None
        return False, DistributedCacheEntryOptions(absolute_expiration_relative_to_now=timeout)

    def _full(self, key: str, version: int | None) -> str:
        return str(self.make_and_validate_key(key, version=version))

    # -- the BaseCache API ----------------------------------------------------------------
    def add(
        self, key: str, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> bool:
        """Store only when absent (atomic); True when stored."""
        name = self._full(key, version)
        expired, options = self._entry_options(timeout)
        if expired:
            return not self.has_key(key, version)
        return self.distributed_cache.add(name, self._dumps(value), options)

    def get(self, key: str, default: Any = None, version: int | None = None) -> Any:
        """The value, or ``default``; a sliding entry's expiry slides."""
        data = self.distributed_cache.get(self._full(key, version))
        return default if data is None else self._loads(data)

    def set(
        self, key: str, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> None:
        """Store ``value``; a timeout <= 0 deletes the entry instead, as Django specifies."""
        name = self._full(key, version)
        expired, options = self._entry_options(timeout)
        if expired:
            self.distributed_cache.remove(name)
            return
        self.distributed_cache.set(name, self._dumps(value), options)

    def touch(self, key: str, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None) -> bool:
        """Give an existing entry a new timeout; False when it does not exist."""
        name = self._full(key, version)
        data = self.distributed_cache.get(name)
        if data is None:
            return False
        expired, options = self._entry_options(timeout)
        if expired:
            self.distributed_cache.remove(name)
        else:
            self.distributed_cache.set(name, data, options)
        return True

    def delete(self, key: str, version: int | None = None) -> bool:
        """Delete the entry; True when it existed."""
        cache = self.distributed_cache
        return bool(cache.client.delete(cache.full_key(self._full(key, version))))

    def has_key(self, key: str, version: int | None = None) -> bool:
        """Whether the entry exists (without sliding its expiry)."""
        cache = self.distributed_cache
        return bool(cache.client.exists(cache.full_key(self._full(key, version))))

    def get_many(self, keys: Iterable[str], version: int | None = None) -> dict[str, Any]:
        """Found entries only, read in one round trip."""
        keys = list(keys)
        names = [self._full(k, version) for k in keys]
        values = self.distributed_cache.get_many(names)
        return {k: self._loads(v) for k, v in zip(keys, values, strict=True) if v is not None}

    def set_many(
        self, data: dict[str, Any], timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> list[str]:
        """Store all entries in one round trip; returns the keys that failed (none)."""
        expired, options = self._entry_options(timeout)
        if expired:
            self.delete_many(data, version)
            return []
        items = [(self._full(k, version), self._dumps(v)) for k, v in data.items()]
        self.distributed_cache.set_many(items, options)
        return []

    def delete_many(self, keys: Iterable[str], version: int | None = None) -> None:
        """Delete several entries in one command."""
        cache = self.distributed_cache
        names = [cache.full_key(self._full(k, version)) for k in keys]
        if names:
            cache.client.delete(*names)

    def clear(self) -> None:
        """Delete every entry under this backend's instance name (and ``KEY_PREFIX``)."""
        cache = self.distributed_cache
        pattern = _glob_escape(cache.full_key(self.key_prefix)) + b"*"
        batch: list[bytes] = []
        for name in cache.client.scan_iter(match=pattern, count=500):
            batch.append(name)
            if len(batch) >= 500:
                cache.client.delete(*batch)
                batch.clear()
        if batch:
            cache.client.delete(*batch)

    def close(self, **kwargs: Any) -> None:
        """Keep the pool open across requests (Django calls this after every request)."""


def _glob_escape(raw: bytes) -> bytes:
    out = bytearray()
    for byte in raw:
        if byte in b"*?[]\\":
            out += b"\\"
        out.append(byte)
    return bytes(out)
