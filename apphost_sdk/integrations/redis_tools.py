"""Redis Insight and Redis Commander: side containers built with the generic container API.

One of each per app (as in Aspire), connected to every Redis of the app without the user
typing a host, port or password: their variables are computed when they start, with each Redis
resolved as a container on the app's network reaches it. Passwords travel in the environment.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Literal

from ..model.annotations import EnvironmentCallbackAnnotation, RunAsAnnotation
from ..model.containers import ContainerResource
from ..model.values import ReferenceContext

if TYPE_CHECKING:
    from .redis import RedisResource

Tool = Literal["insight", "commander"]

INSIGHT_IMAGE = ("docker.io/redis/redisinsight", "2.70")
INSIGHT_PORT = 5540
COMMANDER_IMAGE = ("docker.io/rediscommander/redis-commander", "latest")
COMMANDER_PORT = 8081


class RedisInsightResource(ContainerResource):
    """Redis Insight, preconfigured with every Redis of the app (``RI_REDIS_*`` variables)."""

    kind = "redis-insight"
    #: A developer tool: left out of published artifacts, as Aspire does.
    exclude_from_manifest = True


class RedisCommanderResource(ContainerResource):
    """Redis Commander, preconfigured with every Redis of the app (``REDIS_HOSTS``)."""

    kind = "redis-commander"
    #: A developer tool: left out of published artifacts, as Aspire does.
    exclude_from_manifest = True


def app_redis_resources(any_resource: RedisResource) -> list[RedisResource]:
    """Every Redis of the app in run mode: ``add_redis`` ones and Azure caches run as
    containers."""
    from .redis import RedisResource

    found: list[RedisResource] = []
    for r in any_resource.builder.resources:
        candidates = [r] + [a.resource for a in r.annotations_of(RunAsAnnotation)]
        found += [c for c in candidates if isinstance(c, RedisResource) and c not in found]
    return found


def _insight_environment(redis: RedisResource) -> Callable[[ReferenceContext], Mapping[str, str]]:
    def environment(context: ReferenceContext) -> Mapping[str, str]:
        env = {"RI_ACCEPT_TERMS_AND_CONDITIONS": "true"}
        for i, r in enumerate(app_redis_resources(redis), start=1):
            endpoint = context.endpoint(r, "tcp")
            env[f"RI_REDIS_HOST{i}"] = endpoint.host
            env[f"RI_REDIS_PORT{i}"] = str(endpoint.port)
            env[f"RI_REDIS_ALIAS{i}"] = r.name
            if r.password is not None:
                env[f"RI_REDIS_PASSWORD{i}"] = context.parameter(r.password)
        return env

    return environment


def _commander_environment(
    redis: RedisResource,
) -> Callable[[ReferenceContext], Mapping[str, str]]:
    def environment(context: ReferenceContext) -> Mapping[str, str]:
        hosts = []
        for r in app_redis_resources(redis):
            endpoint = context.endpoint(r, "tcp")
            entry = f"{r.name}:{endpoint.host}:{endpoint.port}:0"
            if r.password is not None:
                entry += f":{context.parameter(r.password)}"
            hosts.append(entry)
        return {"REDIS_HOSTS": ",".join(hosts)}

    return environment


def add_redis_tool(
    redis: RedisResource, tool: Tool, configure: Callable[[ContainerResource], object] | None
) -> ContainerResource:
    """Add (once per app) the tool's container; ``configure`` customises it (image, port)."""
    from ..model.arguments import require_callable

    require_callable(
        configure,
        f"{redis.name}.with_redis_{tool}",
        "configure",
        "pass a function that receives the container resource, or nothing",
        optional=True,
    )
    builder = redis.builder
    cls = RedisInsightResource if tool == "insight" else RedisCommanderResource
    existing = next((r for r in builder.resources if isinstance(r, cls)), None)
    if existing is not None:
        if configure is not None:
            configure(existing)
        return existing
    if tool == "insight":
        image, tag = INSIGHT_IMAGE
        resource: ContainerResource = RedisInsightResource(
            builder, f"{redis.name}-insight", image, tag
        )
        resource.with_http_endpoint(INSIGHT_PORT)
        resource.annotations.append(EnvironmentCallbackAnnotation(_insight_environment(redis)))
    else:
        image, tag = COMMANDER_IMAGE
        resource = RedisCommanderResource(builder, f"{redis.name}-commander", image, tag)
        resource.with_http_endpoint(COMMANDER_PORT)
        resource.annotations.append(EnvironmentCallbackAnnotation(_commander_environment(redis)))
    resource.rename_hint = f"it is named after {redis.name}: shorten that name"
    builder.add_resource(resource)

    def wait_for_every_redis() -> None:
        for r in app_redis_resources(redis):
            owner = next(
                (
                    o
                    for o in builder.resources
                    if o is r or any(a.resource is r for a in o.annotations_of(RunAsAnnotation))
                ),
                r,
            )
            if all(w.target is not owner for w in resource.waits):
                resource.wait_for(owner)

    builder.before_build(wait_for_every_redis)
    if configure is not None:
        configure(resource)
    return resource
