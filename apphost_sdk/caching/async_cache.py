"""``AsyncDistributedCache``: the asyncio twin of ``DistributedCache`` over ``redis.asyncio``."""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

from redis.exceptions import NoScriptError, ResponseError, WatchError

from . import core
from .deferred import PROBE_UNREACHABLE, DeferredAsyncRedis
from .options import DistributedCacheEntryOptions
from .shared import (
    ADD_ATTEMPTS,
    READ_SHA,
    WRITE_SHA,
    AsyncRedisClient,
    CacheBase,
    Items,
    check_call,
    coroutine_function,
    expiry_command,
    queue_write,
)
from .tracing import traced_async

__all__ = ["AsyncDistributedCache"]


class AsyncDistributedCache(CacheBase[AsyncRedisClient]):
    """The asyncio twin of ``DistributedCache``: same methods and storage format, awaited."""

    @classmethod
    def from_connection_string(
        cls,
        connection_string: str,
        *,
        instance_name: str = "",
        cluster: bool | None = None,
        **redis_kwargs: Any,
    ) -> AsyncDistributedCache:
        """Open a cache from a StackExchange.Redis string or ``redis://`` URL (owns the client).

        ``cluster`` None (default) asks the server once whether it is a Redis Cluster (Azure
        Managed Redis' OSSCluster policy) with redis.asyncio, on the first call or ``async
        with``, never blocking here; True or False skip the question.
        """
        from ..connection_strings import RedisConnectionOptions
        from .cluster import open_async_client

        options = RedisConnectionOptions.parse(connection_string)
        kwargs = options.to_redis_kwargs(for_async=True)
        kwargs.update(redis_kwargs)
        client = open_async_client(options, kwargs, cluster=cluster)
        return cls(client, instance_name=instance_name, owns_client=True)

    #: The event loop this cache was last called on (weakly: a closed loop may go away).
    _loop: weakref.ref[asyncio.AbstractEventLoop] | None = None

    def _check_call(self, operation: str) -> None:
        """Remember the running loop; refuse a call from a thread without one while this
        cache's loop runs in another thread (a sync endpoint's worker thread): the coroutine
        could not be awaited there, and an un-awaited call stores or reads nothing.

        A call before any loop runs (``asyncio.run(cache.get(k))``) is fine.
        """
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            bound = self._loop() if self._loop is not None else None
            if bound is not None and bound.is_running():
                raise RuntimeError(
                    f"AsyncDistributedCache.{operation}() was called from a thread without an "
                    "event loop while the cache's loop runs in another thread (a sync def "
                    "endpoint runs in a worker thread): the coroutine could never be awaited "
                    "there, so nothing would be read or stored. In a sync endpoint use "
                    "Depends(get_sync_distributed_cache) from apphost_sdk.hosting.asgi (or "
                    "keyed_sync_distributed_cache(key)), the blocking DistributedCache; "
                    "elsewhere call it on the loop's thread, e.g. "
                    f"anyio.from_thread.run(cache.{operation}, ...)"
                ) from None
            return
        if self._loop is None or self._loop() is not loop:
            self._loop = weakref.ref(loop)

    async def _eval(
        self, script: bytes, sha: bytes, keys: Sequence[bytes], args: Sequence[Any]
    ) -> Any:
        """EVALSHA, loading the script when the server does not know it yet."""
        try:
            return await self._client.execute_command("EVALSHA", sha, len(keys), *keys, *args)
        except NoScriptError:
            return await self._load_and_eval(script, sha, keys, args)

    async def _load_and_eval(
        self, script: bytes, sha: bytes, keys: Sequence[bytes], args: Sequence[Any]
    ) -> Any:
        """SCRIPT LOAD, then EVALSHA: for when the server said NOSCRIPT."""
        await self._client.script_load(script)
        return await self._client.execute_command("EVALSHA", sha, len(keys), *keys, *args)

    # -- reads ----------------------------------------------------------------------------
    @coroutine_function
    def get(self, key: str) -> Awaitable[bytes | None]:
        """Return the value (``b""`` is a value), or None; slides a sliding entry's expiry."""
        run = self._run_fast
        tracer = self._tracer
        if run is not None and key.__class__ is str and (tracer is None or not tracer.recording()):
            # The fast path (settled client, scripting on, no span) when called on the loop
            # the cache was last called on: nothing to check, one EVALSHA.
            try:
                loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
            except RuntimeError:
                loop = None
            bound = self._loop
            if loop is not None and bound is not None and bound() is loop:
                try:
                    k = self._prefix + key.encode()
                except UnicodeEncodeError:
                    pass  # the full path says what is wrong with the key
                else:
                    return self._get_fast(run, k)
        return self._get(key)

    async def _get_fast(self, run: Callable[..., Any], k: bytes) -> bytes | None:
        """The fast path's EVALSHA, with the same NOSCRIPT and no-scripting fallbacks."""
        try:
            data: bytes | None = await run("EVALSHA", READ_SHA, 1, k, self._clock(), b"1")
            return data
        except NoScriptError:
            return await self._load_and_eval(
                core.READ_SCRIPT, READ_SHA, (k,), (self._clock(), b"1")
            )
        except ResponseError as exc:
            self._scripting_failed(exc)
            return await self._read_fallback(k, True)

    @check_call
    @traced_async("get", "EVALSHA")
    async def _get(self, key: str) -> bytes | None:
        """``get`` with the call checks, the span and the deferred client's settling."""
        k = self._key(key)
        if self._scripting:
            try:
                try:
                    data: bytes | None = await self._client.execute_command(
                        "EVALSHA", READ_SHA, 1, k, self._clock(), b"1"
                    )
                except NoScriptError:
                    data = await self._load_and_eval(
                        core.READ_SCRIPT, READ_SHA, (k,), (self._clock(), b"1")
                    )
                return data
            except ResponseError as exc:
                self._scripting_failed(exc)
        return await self._read_fallback(k, True)

    @check_call
    async def get_string(self, key: str, encoding: str = "utf-8") -> str | None:
        """``get`` decoded as text (UTF-8, as .NET's ``GetStringAsync``)."""
        data = await self.get(key)
        return None if data is None else data.decode(encoding)

    @check_call
    @traced_async("refresh", "EVALSHA")
    async def refresh(self, key: str) -> None:
        """Reset a sliding entry's expiry without reading its value."""
        k = self._key(key)
        if self._scripting:
            try:
                await self._eval(core.READ_SCRIPT, READ_SHA, (k,), (self._clock(), b"0"))
                return
            except ResponseError as exc:
                self._scripting_failed(exc)
        await self._read_fallback(k, False)

    async def _read_fallback(self, key: bytes, with_data: bool) -> bytes | None:
        """HMGET, then the expiry update in a second round trip (no scripting); the data."""
        now = self._clock()
        fields = (core.ABSEXP, core.SLDEXP, core.DATA) if with_data else (core.ABSEXP, core.SLDEXP)
        reply = await self._client.execute_command("HMGET", key, *fields)
        data, commands = core.plan_reads((key,), (reply,), now)
        for command in commands:
            await self._client.execute_command(*expiry_command(command))
        return data[0]

    @check_call
    @traced_async("get_many", "EVALSHA")
    async def get_many(self, keys: Iterable[str]) -> list[bytes | None]:
        """Values of ``keys`` in order (None where missing), in one round trip."""
        encoded = self._keys(keys)
        if not encoded:
            return []
        if self._scripting and not self._cluster:
            try:
                return list(
                    await self._eval(core.READ_SCRIPT, READ_SHA, encoded, (self._clock(), b"m"))
                )
            except ResponseError as exc:
                self._scripting_failed(exc)
        now = self._clock()
        pipe = self._client.pipeline(transaction=False)
        for k in encoded:
            pipe.execute_command("HMGET", k, core.ABSEXP, core.SLDEXP, core.DATA)
        data, commands = core.plan_reads(encoded, await pipe.execute(), now)
        for command in commands:
            pipe.execute_command(*expiry_command(command))
        if commands:
            await pipe.execute()
        return data

    # -- writes ---------------------------------------------------------------------------
    @check_call
    @traced_async("set", "HSET")
    async def set(
        self, key: str, value: bytes, options: DistributedCacheEntryOptions | None = None
    ) -> None:
        """Store ``value`` with ``options`` in one atomic round trip (HSET + EXPIRE)."""
        plan = core.plan_set(self._key(key), value, options, self._clock())
        if plan.ttl_seconds is None:
            await self._client.execute_command("HSET", plan.key, *plan.hset_args())
            return
        if self._scripting:
            try:
                await self._eval(core.WRITE_SCRIPT, WRITE_SHA, (plan.key,), plan.script_args())
                return
            except ResponseError as exc:
                self._scripting_failed(exc)
        pipe = self._client.pipeline(transaction=True)
        queue_write(pipe, plan)
        await pipe.execute()

    @check_call
    async def set_string(
        self,
        key: str,
        value: str,
        options: DistributedCacheEntryOptions | None = None,
        encoding: str = "utf-8",
    ) -> None:
        """``set`` of text encoded as UTF-8 (as .NET's ``SetStringAsync``)."""
        await self.set(key, value.encode(encoding), options)

    @check_call
    @traced_async("set_many", "MULTI")
    async def set_many(
        self, items: Items, options: DistributedCacheEntryOptions | None = None
    ) -> None:
        """Store several entries with the same options in one round trip (MULTI/EXEC)."""
        plans = self._plans(items, options)
        if not plans:
            return
        pipe = self._client.pipeline(transaction=not self._cluster)
        for plan in plans:
            queue_write(pipe, plan)
        await pipe.execute()

    @check_call
    @traced_async("add", "EVALSHA")
    async def add(
        self, key: str, value: bytes, options: DistributedCacheEntryOptions | None = None
    ) -> bool:
        """Store ``value`` only when ``key`` is absent, atomically; True when it was stored."""
        plan = core.plan_set(self._key(key), value, options, self._clock())
        if self._scripting:
            try:
                args = (*plan.script_args(), b"nx")
                return bool(await self._eval(core.WRITE_SCRIPT, WRITE_SHA, (plan.key,), args))
            except ResponseError as exc:
                self._scripting_failed(exc)
        for _attempt in range(ADD_ATTEMPTS):
            pipe = self._client.pipeline(transaction=True)
            try:
                await pipe.watch(plan.key)
                if await pipe.execute_command("EXISTS", plan.key):  # immediate while watching
                    return False
                pipe.multi()
                queue_write(pipe, plan)
                await pipe.execute()
                return True
            except WatchError:
                continue
            finally:
                await pipe.reset()
        return False

    @check_call
    @traced_async("remove", "DEL")
    async def remove(self, key: str) -> None:
        """Delete the entry (the whole hash)."""
        await self._client.execute_command("DEL", self._key(key))

    # -- lifetime -------------------------------------------------------------------------
    @check_call
    async def ping(self) -> bool:
        """PING the server (used by health checks)."""
        return bool(await self._client.ping())

    async def aclose(self) -> None:
        """Close the client if this cache opened it."""
        if self._owns_client:
            await self._client.aclose()

    async def __aenter__(self) -> AsyncDistributedCache:
        """Ask a deferred client whether it talks to a cluster (a server still down is asked
        again by the first call)."""
        if isinstance(self._client, DeferredAsyncRedis):
            with contextlib.suppress(*PROBE_UNREACHABLE):
                await self._client.settle()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
