"""``DistributedCache``: the blocking cache over ``redis.Redis``, in .NET's storage format."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Iterable, Sequence
from typing import Any

from redis.exceptions import NoScriptError, ResponseError, WatchError

from . import core
from .options import DistributedCacheEntryOptions
from .shared import (
    ADD_ATTEMPTS,
    READ_SHA,
    WRITE_SHA,
    CacheBase,
    Items,
    RedisClient,
    check_call,
    expiry_command,
    queue_write,
)
from .tracing import traced

__all__ = ["DistributedCache"]


class DistributedCache(CacheBase[RedisClient]):
    """A Redis-backed distributed cache that .NET's ``IDistributedCache`` can share.

    Keys are ``instance_name + key``; values are bytes (see ``get_string``/``set_string``).
    Every call is one round trip, sliding reads included (Lua scripts); when the server refuses
    scripting, writes fall back to MULTI/EXEC and sliding reads to HMGET + PEXPIRE.
    """

    @classmethod
    def from_connection_string(
        cls,
        connection_string: str,
        *,
        instance_name: str = "",
        cluster: bool | None = None,
        **redis_kwargs: Any,
    ) -> DistributedCache:
        """Open a cache from a StackExchange.Redis string or ``redis://`` URL (owns the client).

        ``cluster`` None (default) asks the server once, now, whether it is a Redis Cluster
        (Azure Managed Redis' OSSCluster policy) and opens the matching client (when Redis is
        not reachable yet, the first call asks); True or False skip the question.
        """
        from ..connection_strings import RedisConnectionOptions
        from .cluster import open_client

        options = RedisConnectionOptions.parse(connection_string)
        kwargs = options.to_redis_kwargs()
        kwargs.update(redis_kwargs)
        client = open_client(options, kwargs, cluster=cluster)
        return cls(client, instance_name=instance_name, owns_client=True)

    #: When set (``_refusing_event_loops``), a call from a thread whose event loop is running
    #: is an error saying this (the fix); None accepts calls from anywhere.
    _event_loop_hint: str | None = None

    def _refusing_event_loops(self, hint: str) -> DistributedCache:
        """A view of this cache (same client and instance name) that refuses calls made on a
        thread running an event loop, where each blocking round trip would stall every other
        request; ``hint`` says what to use there instead."""
        view = copy.copy(self)
        view._event_loop_hint = hint
        view._update_fast()  # the view checks every call: no fast path
        return view

    def _fast_path_allowed(self) -> bool:
        return self._scripting and self._event_loop_hint is None

    def _check_call(self, operation: str) -> None:
        if self._event_loop_hint is None:
            return
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return
        raise RuntimeError(
            f"DistributedCache.{operation}() blocks, and it was called on the thread of a "
            f"running event loop (an async def endpoint), which it would stall: "
            f"{self._event_loop_hint}"
        )

    def _eval(self, script: bytes, sha: bytes, keys: Sequence[bytes], args: Sequence[Any]) -> Any:
        """EVALSHA, loading the script when the server does not know it yet."""
        try:
            return self._client.execute_command("EVALSHA", sha, len(keys), *keys, *args)
        except NoScriptError:
            return self._load_and_eval(script, sha, keys, args)

    def _load_and_eval(
        self, script: bytes, sha: bytes, keys: Sequence[bytes], args: Sequence[Any]
    ) -> Any:
        """SCRIPT LOAD, then EVALSHA: for when the server said NOSCRIPT."""
        self._client.script_load(script)
        return self._client.execute_command("EVALSHA", sha, len(keys), *keys, *args)

    # -- reads ----------------------------------------------------------------------------
    def get(self, key: str) -> bytes | None:
        """Return the value (``b""`` is a value), or None; slides a sliding entry's expiry."""
        run = self._run_fast
        tracer = self._tracer
        if run is not None and key.__class__ is str and (tracer is None or not tracer.recording()):
            # The fast path (settled client, scripting on, no call checks, no span): the
            # same EVALSHA as ``_get`` with nothing else around it.
            try:
                k = self._prefix + key.encode()
            except UnicodeEncodeError:
                return self._get(key)  # the full path says what is wrong with the key
            try:
                data: bytes | None = run("EVALSHA", READ_SHA, 1, k, self._clock(), b"1")
                return data
            except NoScriptError:
                return self._load_and_eval(core.READ_SCRIPT, READ_SHA, (k,), (self._clock(), b"1"))
            except ResponseError as exc:
                self._scripting_failed(exc)
                return self._read_fallback(k, True)
        return self._get(key)

    @check_call
    @traced("get", "EVALSHA")
    def _get(self, key: str) -> bytes | None:
        """``get`` with the call checks, the span and the deferred client's settling."""
        k = self._key(key)
        if self._scripting:
            try:
                try:
                    data: bytes | None = self._client.execute_command(
                        "EVALSHA", READ_SHA, 1, k, self._clock(), b"1"
                    )
                except NoScriptError:
                    data = self._load_and_eval(
                        core.READ_SCRIPT, READ_SHA, (k,), (self._clock(), b"1")
                    )
                return data
            except ResponseError as exc:
                self._scripting_failed(exc)
        return self._read_fallback(k, True)

    @check_call
    def get_string(self, key: str, encoding: str = "utf-8") -> str | None:
        """``get`` decoded as text (UTF-8, as .NET's ``GetString``)."""
        data = self.get(key)
        return None if data is None else data.decode(encoding)

    @check_call
    @traced("refresh", "EVALSHA")
    def refresh(self, key: str) -> None:
        """Reset a sliding entry's expiry without reading its value."""
        k = self._key(key)
        if self._scripting:
            try:
                self._eval(core.READ_SCRIPT, READ_SHA, (k,), (self._clock(), b"0"))
                return
            except ResponseError as exc:
                self._scripting_failed(exc)
        self._read_fallback(k, False)

    def _read_fallback(self, key: bytes, with_data: bool) -> bytes | None:
        """HMGET, then the expiry update in a second round trip (no scripting); the data."""
        now = self._clock()
        fields = (core.ABSEXP, core.SLDEXP, core.DATA) if with_data else (core.ABSEXP, core.SLDEXP)
        reply = self._client.execute_command("HMGET", key, *fields)
        data, commands = core.plan_reads((key,), (reply,), now)
        for command in commands:
            self._client.execute_command(*expiry_command(command))
        return data[0]

    @check_call
    @traced("get_many", "EVALSHA")
    def get_many(self, keys: Iterable[str]) -> list[bytes | None]:
        """Values of ``keys`` in order (None where missing), in one round trip."""
        encoded = self._keys(keys)
        if not encoded:
            return []
        if self._scripting and not self._cluster:
            try:
                return list(self._eval(core.READ_SCRIPT, READ_SHA, encoded, (self._clock(), b"m")))
            except ResponseError as exc:
                self._scripting_failed(exc)
        now = self._clock()
        pipe = self._client.pipeline(transaction=False)
        for k in encoded:
            pipe.execute_command("HMGET", k, core.ABSEXP, core.SLDEXP, core.DATA)
        data, commands = core.plan_reads(encoded, pipe.execute(), now)
        for command in commands:
            pipe.execute_command(*expiry_command(command))
        if commands:
            pipe.execute()
        return data

    # -- writes ---------------------------------------------------------------------------
    @check_call
    @traced("set", "HSET")
    def set(
        self, key: str, value: bytes, options: DistributedCacheEntryOptions | None = None
    ) -> None:
        """Store ``value`` with ``options`` in one atomic round trip (HSET + EXPIRE)."""
        plan = core.plan_set(self._key(key), value, options, self._clock())
        if plan.ttl_seconds is None:
            self._client.execute_command("HSET", plan.key, *plan.hset_args())
            return
        if self._scripting:
            try:
                self._eval(core.WRITE_SCRIPT, WRITE_SHA, (plan.key,), plan.script_args())
                return
            except ResponseError as exc:
                self._scripting_failed(exc)
        pipe = self._client.pipeline(transaction=True)
        queue_write(pipe, plan)
        pipe.execute()

    @check_call
    def set_string(
        self,
        key: str,
        value: str,
        options: DistributedCacheEntryOptions | None = None,
        encoding: str = "utf-8",
    ) -> None:
        """``set`` of text encoded as UTF-8 (as .NET's ``SetString``)."""
        self.set(key, value.encode(encoding), options)

    @check_call
    @traced("set_many", "MULTI")
    def set_many(self, items: Items, options: DistributedCacheEntryOptions | None = None) -> None:
        """Store several entries with the same options in one round trip (MULTI/EXEC)."""
        plans = self._plans(items, options)
        if not plans:
            return
        pipe = self._client.pipeline(transaction=not self._cluster)
        for plan in plans:
            queue_write(pipe, plan)
        pipe.execute()

    @check_call
    @traced("add", "EVALSHA")
    def add(
        self, key: str, value: bytes, options: DistributedCacheEntryOptions | None = None
    ) -> bool:
        """Store ``value`` only when ``key`` is absent, atomically; True when it was stored."""
        plan = core.plan_set(self._key(key), value, options, self._clock())
        if self._scripting:
            try:
                args = (*plan.script_args(), b"nx")
                return bool(self._eval(core.WRITE_SCRIPT, WRITE_SHA, (plan.key,), args))
            except ResponseError as exc:
                self._scripting_failed(exc)
        for _attempt in range(ADD_ATTEMPTS):
            pipe = self._client.pipeline(transaction=True)
            try:
                pipe.watch(plan.key)
                if pipe.exists(plan.key):
                    return False
                pipe.multi()
                queue_write(pipe, plan)
                pipe.execute()
                return True
            except WatchError:
                continue
            finally:
                pipe.reset()
        return False

    @check_call
    @traced("remove", "DEL")
    def remove(self, key: str) -> None:
        """Delete the entry (the whole hash)."""
        self._client.execute_command("DEL", self._key(key))

    # -- lifetime -------------------------------------------------------------------------
    @check_call
    def ping(self) -> bool:
        """PING the server (used by health checks)."""
        return bool(self._client.ping())

    def close(self) -> None:
        """Close the client if this cache opened it."""
        if self._owns_client:
            self._client.close()

    def __enter__(self) -> DistributedCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
