"""Fixtures of the service-side tests: one real redis-server for the session."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from .redis_process import RedisProcess
from .twins import close_twin, open_twin

KINDS = ["sync", "async"]


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisProcess]:
    """A redis-server on a free loopback port, stopped at the end of the session."""
    server = RedisProcess()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def raw(redis_server: RedisProcess) -> Iterator[redis.Redis]:
    """A plain redis-py client on a flushed database (the way .NET or a test pokes at keys)."""
    client = redis.Redis(host=redis_server.host, port=redis_server.port)
    client.flushall()
    client.script_flush()
    yield client
    client.close()


@pytest.fixture(params=["sync", "async"])
def twin(
    request: pytest.FixtureRequest, redis_server: RedisProcess, raw: redis.Redis
) -> Iterator[Any]:
    """Each test runs against ``DistributedCache`` and ``AsyncDistributedCache``."""
    cache = open_twin(request.param, redis_server.host, redis_server.port)
    yield cache
    close_twin(cache)


@pytest.fixture
def open_cache(redis_server: RedisProcess, raw: redis.Redis) -> Iterator[Callable[..., Any]]:
    """Open more twins (instance name, clock, ...); all closed after the test."""
    opened: list[Any] = []

    def factory(kind: str, **kwargs: Any) -> Any:
        cache = open_twin(kind, redis_server.host, redis_server.port, **kwargs)
        opened.append(cache)
        return cache

    yield factory
    for cache in opened:
        close_twin(cache)


@pytest.fixture(scope="session")
def noscript_user(redis_server: RedisProcess) -> Iterator[dict[str, str]]:
    """Credentials of a user who may do everything except run scripts."""
    admin = redis.Redis(host=redis_server.host, port=redis_server.port)
    admin.execute_command(
        "ACL", "SETUSER", "noscript", "on", ">noscript-pw", "~*", "&*", "+@all", "-@scripting"
    )
    yield {"username": "noscript", "password": "noscript-pw"}
    admin.execute_command("ACL", "DELUSER", "noscript")
    admin.close()


@pytest.fixture(
    params=[(k, s) for k in KINDS for s in (True, False)],
    ids=lambda p: f"{p[0]}-{'lua' if p[1] else 'nolua'}",
)
def mode(request: pytest.FixtureRequest, noscript_user: dict[str, str]) -> dict[str, Any]:
    kind, scripting = request.param
    return {"kind": kind, **({} if scripting else noscript_user)}
