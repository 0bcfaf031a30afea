"""Listening for other processes' invalidations on Redis pub/sub (a thread, or a task).

Each listener subscribes to one channel and reports three things to its cache: a message, a
subscription confirmed (the first one, and every one after a reconnect: messages published
while disconnected are lost, so the cache then drops its L1), and a lost connection (the
cache stops trusting its L1 until the next confirmation). On a Redis Cluster the clients'
``pubsub()`` subscribes on the node owning the channel's slot; PUBLISH reaches every node.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any

__all__ = ["AsyncInvalidationListener", "InvalidationListener", "Listener", "SilentConnectionError"]

_log = logging.getLogger("apphost_sdk.caching")

#: How long one wait for a message lasts, so that ``stop`` is noticed promptly.
POLL_SECONDS = 0.2
#: After this much silence the listener pings; no pong within ``PONG_WITHIN`` is a lost
#: connection (a silently dead socket must not leave L1 trusted forever).
PING_AFTER = 5.0
PONG_WITHIN = 2.0
_BACKOFF_START = 0.05
_BACKOFF_MAX = 2.0


class Listener:
    """The callbacks a listener reports to (a cache implements them)."""

    def on_message(self, data: bytes) -> None:
        """One published message."""

    def on_subscribed(self) -> None:
        """The subscription is (again) in place."""

    def on_disconnected(self) -> None:
        """The connection was lost; messages may be missed until ``on_subscribed``."""


def _dispatch(message: dict[str, Any] | None, listener: Listener) -> bool:
    """Hand one pub/sub reply to ``listener``; True when it confirmed the subscription."""
    if message is None:
        return False
    kind = message.get("type")
    if kind in ("subscribe", b"subscribe"):
        listener.on_subscribed()
        return True
    if kind in ("message", b"message"):
        data = message.get("data")
        if isinstance(data, bytes):
            listener.on_message(data)
    return False


class SilentConnectionError(ConnectionError):
    """The subscription stayed silent and did not answer a ping in time."""


class _Heartbeat:
    """When to ping a silent subscription, and when its silence means it is dead."""

    def __init__(self, ping_after: float, pong_within: float) -> None:
        self._ping_after = ping_after
        self._pong_within = pong_within
        self._heard = time.monotonic()
        self._pinged: float | None = None

    def heard(self) -> None:
        """Any reply (message, pong, confirmation) proves the connection alive."""
        self._heard = time.monotonic()
        self._pinged = None

    def should_ping(self) -> bool:
        """True when a ping is due (then it counts as sent); raises when one went unanswered."""
        now = time.monotonic()
        if self._pinged is not None:
            if now - self._pinged > self._pong_within:
                raise SilentConnectionError(
                    f"no pong within {self._pong_within}s of a ping on the invalidation channel"
                )
            return False
        if now - self._heard > self._ping_after:
            self._pinged = now
            return True
        return False


class _ListenerBase:
    """What both invalidation listeners keep: where to subscribe, whom to tell, and the
    heartbeat timings."""

    def __init__(
        self,
        client: Any,
        channel: bytes,
        listener: Listener,
        ping_after: float,
        pong_within: float,
    ) -> None:
        self._ping_after = ping_after
        self._pong_within = pong_within
        self._client = client
        self._channel = channel
        self._listener = listener


class InvalidationListener(_ListenerBase):
    """A daemon thread subscribed to ``channel`` on ``client`` (sync, plain or cluster).

    It pings after ``ping_after`` seconds of silence and treats a missing pong within
    ``pong_within`` seconds as a lost connection.
    """

    def __init__(
        self,
        client: Any,
        channel: bytes,
        listener: Listener,
        *,
        ping_after: float = PING_AFTER,
        pong_within: float = PONG_WITHIN,
    ) -> None:
        super().__init__(client, channel, listener, ping_after, pong_within)
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"hybrid-cache-invalidation {channel!r}", daemon=True
        )

    def start(self, wait: float = 2.0) -> bool:
        """Start listening; True once subscribed within ``wait`` seconds."""
        self._thread.start()
        return self._ready.wait(wait)

    def stop(self) -> None:
        """Stop listening and wait for the thread (at most a poll interval or so)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(POLL_SECONDS * 10)

    def _run(self) -> None:
        backoff = _BACKOFF_START
        while not self._stop.is_set():
            pubsub = None
            try:
                pubsub = self._client.pubsub()
                pubsub.subscribe(self._channel)
                beat = _Heartbeat(self._ping_after, self._pong_within)
                while not self._stop.is_set():
                    reply = pubsub.get_message(timeout=POLL_SECONDS)
                    if reply is not None:
                        beat.heard()
                    elif beat.should_ping():
                        pubsub.ping()
                    if _dispatch(reply, self._listener):
                        self._ready.set()
                        backoff = _BACKOFF_START
            except Exception as exc:  # any failure means messages may be lost: say so
                if self._stop.is_set():
                    break
                _log.debug("hybrid cache invalidation listener lost its connection: %r", exc)
                self._listener.on_disconnected()
            finally:
                if pubsub is not None:
                    try:
                        pubsub.close()
                    except Exception:  # closing a broken connection
                        pass
            self._stop.wait(backoff)
            backoff = min(backoff * 2, _BACKOFF_MAX)


class AsyncInvalidationListener(_ListenerBase):
    """A task on the running loop subscribed to ``channel`` on an asyncio ``client``; it
    health-checks a silent subscription as ``InvalidationListener`` does."""

    def __init__(
        self,
        client: Any,
        channel: bytes,
        listener: Listener,
        *,
        ping_after: float = PING_AFTER,
        pong_within: float = PONG_WITHIN,
    ) -> None:
        super().__init__(client, channel, listener, ping_after, pong_within)
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def started(self) -> bool:
        """Whether the listening task runs on the running loop (False before ``start``, and
        after the loop it ran on ended: ``asyncio.run`` twice with one cache)."""
        task = self._task
        if task is None or task.done():
            return False
        try:
            return task.get_loop() is asyncio.get_running_loop()
        except RuntimeError:
            return False

    async def start(self, wait: float = 2.0) -> bool:
        """Listen on the running loop (again, when the task ran on another loop: messages
        were missed meanwhile, so the listener is told it was disconnected); True once
        subscribed within ``wait`` seconds."""
        if not self.started:
            if self._task is not None:
                self._abandon()
                self._listener.on_disconnected()
            self._ready = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._run())
        try:
            await asyncio.wait_for(self._ready.wait(), wait)
        except asyncio.TimeoutError:
            return False
        return True

    def _abandon(self) -> None:
        """Cancel a task of another (maybe closed) loop without awaiting it."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            try:
                task.cancel()
            except RuntimeError:  # its loop is closed: the task can never run again
                pass

    async def stop(self) -> None:
        """Cancel the task and wait for it to end (when it runs on this loop)."""
        if not self.started:
            self._abandon()
            return
        task, self._task = self._task, None
        assert task is not None
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass

    async def _run(self) -> None:
        backoff = _BACKOFF_START
        while True:
            pubsub = None
            try:
                pubsub = self._client.pubsub()
                await pubsub.subscribe(self._channel)
                beat = _Heartbeat(self._ping_after, self._pong_within)
                while True:
                    reply = await pubsub.get_message(timeout=POLL_SECONDS)
                    if reply is not None:
                        beat.heard()
                    elif beat.should_ping():
                        await pubsub.ping()
                    if _dispatch(reply, self._listener):
                        self._ready.set()
                        backoff = _BACKOFF_START
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any failure means messages may be lost: say so
                _log.debug("hybrid cache invalidation listener lost its connection: %r", exc)
                self._listener.on_disconnected()
            finally:
                if pubsub is not None:
                    try:
                        await asyncio.shield(pubsub.aclose())
                    except Exception:  # closing a broken connection
                        pass
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, _BACKOFF_MAX)
