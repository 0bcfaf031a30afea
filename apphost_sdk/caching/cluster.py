"""Redis Cluster or a single endpoint: asking the server, and opening the matching client.

Azure Managed Redis with the OSSCluster clustering policy (its default) is a Redis Cluster: a
plain client gets MOVED replies for keys of other shards. EnterpriseCluster, NoCluster and
plain Redis look like one endpoint. As StackExchange.Redis does, we ask the server once
(``INFO cluster`` -> ``cluster_enabled``) and open ``redis.cluster.RedisCluster`` (or its
asyncio twin) with the same TLS, auth and credential-provider arguments when it is a cluster.
When the server cannot be asked now (it is down, or an event loop must not block), a
``deferred`` client asks on its first command instead.
"""

from __future__ import annotations

import logging
from typing import Any

import redis
import redis.asyncio as aioredis
import redis.asyncio.cluster as aiocluster
import redis.cluster
from redis.exceptions import RedisClusterException, ResponseError

from ..connection_strings import RedisConnectionOptions
from ..errors import ConfigurationError
from .deferred import PROBE_UNREACHABLE, DeferredAsyncRedis, DeferredRedis

__all__ = [
    "cluster_kwargs",
    "create_async_cluster_client",
    "create_cluster_client",
    "open_async_client",
    "open_client",
    "probe_cluster_enabled",
    "probe_cluster_enabled_async",
]

_WHERE = "the Redis connection string"
_NOT_A_CLUSTER = (
    "cluster=True was passed but the server is not a Redis Cluster: pass cluster=None (ask "
    "the server) or cluster=False"
)

_log = logging.getLogger("apphost_sdk.caching")


def _probe_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    probe = dict(kwargs)
    probe.pop("db", None)  # SELECT is refused by cluster nodes; INFO needs no database
    probe["single_connection_client"] = True
    return probe


def _cluster_info_refused(kwargs: dict[str, Any], exc: ResponseError) -> bool:
    """The answer when ``CLUSTER INFO`` is refused too: not a cluster (warning when unclear)."""
    if "disabled" not in str(exc).casefold():
        _log.warning(
            "could not tell whether %s:%s is a Redis Cluster (%s); assuming a single "
            "endpoint (set ClusterMode to cluster or standalone to skip the check)",
            kwargs.get("host"),
            kwargs.get("port"),
            exc,
        )
    return False


def probe_cluster_enabled(kwargs: dict[str, Any]) -> bool:
    """Whether the server at ``kwargs`` (redis-py arguments) is a Redis Cluster node.

    One short-lived connection: ``INFO cluster``, or ``CLUSTER INFO`` when INFO is refused
    (an ACL without ``INFO``); connection errors propagate (the caller retries later).
    """
    client = redis.Redis(**_probe_kwargs(kwargs))
    try:
        try:
            info = client.info("cluster")
            return str(info.get("cluster_enabled", "0")).strip() == "1"
        except ResponseError as exc:
            _log.debug("INFO cluster refused (%s); asking CLUSTER INFO", exc)
        try:
            client.execute_command("CLUSTER", "INFO")
            return True
        except ResponseError as exc:
            return _cluster_info_refused(kwargs, exc)
    finally:
        client.close()


async def probe_cluster_enabled_async(kwargs: dict[str, Any]) -> bool:
    """``probe_cluster_enabled`` over redis.asyncio (``kwargs`` for an asyncio client): the
    event loop keeps running while the server is asked."""
    client = aioredis.Redis(**_probe_kwargs(kwargs))
    try:
        try:
            info = await client.info("cluster")
            return str(info.get("cluster_enabled", "0")).strip() == "1"
        except ResponseError as exc:
            _log.debug("INFO cluster refused (%s); asking CLUSTER INFO", exc)
        try:
            await client.execute_command("CLUSTER", "INFO")
            return True
        except ResponseError as exc:
            return _cluster_info_refused(kwargs, exc)
    finally:
        await client.aclose()


def cluster_kwargs(where: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """``kwargs`` of a plain client made fit for ``RedisCluster`` (no ``host``/``port``/``db``).

    A cluster has only database 0: ``defaultDatabase`` set to anything else is an error
    naming ``where`` the connection string comes from.
    """
    result = dict(kwargs)
    result.pop("host", None)
    result.pop("port", None)
    db = result.pop("db", 0)
    if db:
        raise ConfigurationError(
            f"{where} names a Redis Cluster, which has only database 0: remove "
            f"defaultDatabase={db} from it"
        )
    return result


def _nodes(options: RedisConnectionOptions) -> list[tuple[str, int]]:
    return [(e.host, e.resolved_port(options.tls)) for e in options.endpoints]


def create_cluster_client(
    options: RedisConnectionOptions, kwargs: dict[str, Any], *, where: str, not_a_cluster: str
) -> redis.cluster.RedisCluster:
    """A blocking ``RedisCluster`` starting from every endpoint of the connection string.

    A server that is not a cluster node is a ``ConfigurationError`` saying ``not_a_cluster``
    (the fix); ``where`` names the connection string in errors.
    """
    nodes = [redis.cluster.ClusterNode(h, p) for h, p in _nodes(options)]
    try:
        return redis.cluster.RedisCluster(startup_nodes=nodes, **cluster_kwargs(where, kwargs))
    except RedisClusterException as exc:
        if "cluster mode is not enabled" in str(exc).casefold():
            raise ConfigurationError(not_a_cluster) from None
        raise


def create_async_cluster_client(
    options: RedisConnectionOptions, kwargs: dict[str, Any], *, where: str
) -> aiocluster.RedisCluster:
    """An asyncio ``RedisCluster`` (it learns the cluster's nodes on its first command)."""
    nodes = [aiocluster.ClusterNode(h, p) for h, p in _nodes(options)]
    return aiocluster.RedisCluster(startup_nodes=nodes, **cluster_kwargs(where, kwargs))


def open_client(
    options: RedisConnectionOptions, kwargs: dict[str, Any], *, cluster: bool | None
) -> redis.Redis | redis.cluster.RedisCluster:
    """A blocking client for ``options`` (redis-py ``kwargs``): ``cluster`` None asks the
    server now (a ``DeferredRedis`` asking on first use when it cannot be reached), True is a
    ``RedisCluster``, False a plain ``Redis``."""

    def open_cluster() -> redis.cluster.RedisCluster:
        return create_cluster_client(options, kwargs, where=_WHERE, not_a_cluster=_NOT_A_CLUSTER)

    if cluster is None:
        try:
            cluster = probe_cluster_enabled(kwargs)
        except PROBE_UNREACHABLE as exc:
            _log.warning(
                "Redis at %s:%s is not reachable yet (%s): whether it is a Redis Cluster is "
                "asked on the first command",
                kwargs.get("host"),
                kwargs.get("port"),
                type(exc).__name__,
            )
            return DeferredRedis(
                decide=lambda: probe_cluster_enabled(kwargs), open_cluster=open_cluster, **kwargs
            )
    if cluster:
        return open_cluster()
    return redis.Redis(**kwargs)


def open_async_client(
    options: RedisConnectionOptions, kwargs: dict[str, Any], *, cluster: bool | None
) -> aioredis.Redis | aiocluster.RedisCluster:
    """The asyncio twin of ``open_client``; ``cluster`` None gives a ``DeferredAsyncRedis``
    that asks the server (asynchronously) on its first command, never blocking here."""
    if cluster is None:
        return DeferredAsyncRedis(
            decide=lambda: probe_cluster_enabled_async(kwargs),
            open_cluster=lambda: create_async_cluster_client(options, kwargs, where=_WHERE),
            **kwargs,
        )
    if cluster:
        return create_async_cluster_client(options, kwargs, where=_WHERE)
    return aioredis.Redis(**kwargs)
