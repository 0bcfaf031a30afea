"""Build-time validation of the application model: every problem found, before anything starts."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from ..errors import ValidationError
from ..masking import MIN_SECRET_LENGTH
from .names import env_prefix, name_problem
from .resources import (
    AzureRedisResource,
    ConnectionStringResource,
    ExecutableResource,
    ParameterResource,
    RedisResource,
    Resource,
)

if TYPE_CHECKING:
    from .builder import DistributedApplicationBuilder


def validate(builder: DistributedApplicationBuilder) -> None:
    """Raise ``ValidationError`` listing every problem of the model, each naming its fix."""
    problems: list[str] = []
    problems += _name_problems(builder.resources)
    problems += _relation_problems(builder)
    problems += _cycle_problems(builder.resources)
    problems += _port_problems(builder.resources)
    problems += _value_problems(builder)
    if problems:
        raise ValidationError(problems)


def _name_problems(resources: list[Resource]) -> list[str]:
    problems: list[str] = []
    seen: dict[str, str] = {}
    for r in resources:
        issue = name_problem(r.name)
        if issue:
            problems.append(f"{issue} (rename the {r.kind} resource)")
            continue
        key = r.name.casefold()
        if key in seen:
            problems.append(
                f"resource name {r.name!r} is used twice (also {seen[key]!r}; names are "
                "case-insensitive): give one of them another name"
            )
        else:
            seen[key] = r.name
    return problems


def _relation_problems(builder: DistributedApplicationBuilder) -> list[str]:
    problems: list[str] = []
    for r in builder.resources:
        for ref in r.references:
            t = ref.target
            if t is r:
                problems.append(f"{r.name} references itself: remove with_reference({r.name})")
            elif t.builder is not builder or t not in builder.resources:
                problems.append(
                    f"{r.name} references {t.name!r}, which belongs to another builder: add it "
                    "to this builder and reference that resource"
                )
            elif not t.has_connection_info:
                if isinstance(t, ExecutableResource):
                    hint = f"call {t.name}.with_http_endpoint() or use wait_for({t.name}) instead"
                elif isinstance(t, ParameterResource):
                    hint = f"pass it with {r.name}.with_environment(NAME, {t.name}) instead"
                else:
                    hint = f"use wait_for({t.name}) instead"
                problems.append(
                    f"{r.name} references {t.name}, a {t.kind} that has no connection info: {hint}"
                )
        problems += _connection_name_clashes(r)
        for p in _parameters_used_by(r):
            if p.builder is not builder or p not in builder.resources:
                problems.append(
                    f"{r.name} uses parameter {p.name!r}, which belongs to another builder: add "
                    "it to this builder with add_parameter() and use that one"
                )
        for w in r.waits:
            t = w.target
            verb = {"healthy": "wait_for", "start": "wait_for_start"}.get(
                w.kind, "wait_for_completion"
            )
            if t is r:
                problems.append(f"{r.name} waits for itself: remove {verb}({r.name})")
            elif t.builder is not builder or t not in builder.resources:
                problems.append(
                    f"{r.name} waits for {t.name!r}, which belongs to another builder: add it "
                    "to this builder and wait for that resource"
                )
            elif w.kind == "completion" and not isinstance(t, ExecutableResource):
                problems.append(
                    f"{r.name} waits for {t.name} to complete, but a {t.kind} runs until the "
                    f"app stops: use wait_for({t.name})"
                )
            elif isinstance(t, ParameterResource):
                problems.append(f"{r.name} waits for parameter {t.name}, which never runs")
    return problems


def _connection_name_clashes(r: Resource) -> list[str]:
    """References of one resource whose injected variables would overwrite each other."""
    problems: list[str] = []
    seen: dict[str, Resource] = {}
    for ref in r.references:
        key = env_prefix(ref.connection_name)
        other = seen.setdefault(key, ref.target)
        if other is not ref.target:
            problems.append(
                f"{r.name} references {other.name} and {ref.target.name} under the same "
                f"connection name ({key}_*): pass another connection_name to one of the "
                "with_reference() calls"
            )
    return problems


def _parameters_used_by(r: Resource) -> list[ParameterResource]:
    """Parameters whose values this resource needs: environment values and its password."""
    params = [v for v in r.environment.values() if isinstance(v, ParameterResource)]
    params += [p for p, _redis in _redis_passwords([r])]
    return params


def _redis_passwords(
    resources: Iterable[Resource],
) -> list[tuple[ParameterResource, RedisResource]]:
    """The password parameters of the Redis servers run locally for ``resources``."""
    found: list[tuple[ParameterResource, RedisResource]] = []
    for r in resources:
        redis = redis_in_run_mode(r)
        if redis is not None and redis.password_parameter is not None:
            found.append((redis.password_parameter, redis))
    return found


def _cycle_problems(resources: list[Resource]) -> list[str]:
    """Find dependency cycles (self-loops are reported by ``_relation_problems``)."""
    problems: list[str] = []
    color: dict[int, int] = {}  # 0 new, 1 on stack, 2 done
    reported: set[frozenset[str]] = set()

    def visit(r: Resource, stack: list[Resource]) -> None:
        color[id(r)] = 1
        stack.append(r)
        for dep in r.dependencies():
            if dep is r:
                continue
            state = color.get(id(dep), 0)
            if state == 0:
                visit(dep, stack)
            elif state == 1:
                cycle = [*stack[stack.index(dep) :], dep]
                key = frozenset(x.name for x in cycle)
                if key not in reported:
                    reported.add(key)
                    path = " -> ".join(x.name for x in cycle)
                    problems.append(
                        f"dependency cycle: {path} (through wait_for/with_reference); "
                        "remove one of these waits or references"
                    )
        stack.pop()
        color[id(r)] = 2

    for r in resources:
        if color.get(id(r), 0) == 0:
            visit(r, [])
    return problems


def redis_in_run_mode(r: Resource) -> RedisResource | None:
    """The Redis resource that runs locally for ``r`` in run mode, if any."""
    if isinstance(r, RedisResource):
        return r
    if isinstance(r, AzureRedisResource) and r.container is not None:
        return r.container
    return None


def _port_problems(resources: list[Resource]) -> list[str]:
    problems: list[str] = []
    used: dict[int, str] = {}
    for r in resources:
        port: int | None = None
        redis = redis_in_run_mode(r)
        if redis is not None:
            port = redis.host_port
        elif isinstance(r, ExecutableResource) and r.http_endpoint is not None:
            port = r.http_endpoint.port
        if port is None:
            continue
        if port in used:
            problems.append(
                f"host port {port} is fixed for both {used[port]} and {r.name}: give one of "
                "them another port, or none to get a free one"
            )
        else:
            used[port] = r.name
    return problems


def _value_problems(builder: DistributedApplicationBuilder) -> list[str]:
    problems: list[str] = []
    config = builder.configuration
    required: set[int] = set()
    for r in builder.resources:
        for ref in r.references:
            if not ref.optional:
                required.add(id(ref.target))
        for value in r.environment.values():
            if isinstance(value, ParameterResource):
                required.add(id(value))
    required.update(id(p) for p, _redis in _redis_passwords(builder.resources))
    problems += _secret_problems(builder)
    for r in builder.resources:
        if (
            isinstance(r, ConnectionStringResource)
            and id(r) in required
            and config.get_str(f"ConnectionStrings:{r.name}") is None
        ):
            problems.append(
                f"connection string {r.name} has no value: set ConnectionStrings:{r.name} in "
                f"appsettings.json or the environment variable ConnectionStrings__{r.name}"
            )
        if (
            isinstance(r, ParameterResource)
            and not r.secret
            and r.explicit_value is None
            and id(r) in required
            and config.get_str(f"Parameters:{r.name}") is None
        ):
            problems.append(
                f"parameter {r.name} has no value: pass value=..., set Parameters:{r.name} "
                f"in appsettings.json or the environment variable Parameters__{r.name}"
            )
    return problems


def _parameter_value(builder: DistributedApplicationBuilder, p: ParameterResource) -> str | None:
    if p.explicit_value is not None:
        return p.explicit_value
    return builder.configuration.get_str(f"Parameters:{p.name}")


def _secret_problems(builder: DistributedApplicationBuilder) -> list[str]:
    """Secrets the SDK could not keep secret. Messages name the parameter, never its value."""
    problems: list[str] = []
    passwords = {id(p): redis.name for p, redis in _redis_passwords(builder.resources)}
    for r in builder.resources:
        if not isinstance(r, ParameterResource):
            continue
        value = _parameter_value(builder, r)
        if value is None or not (r.secret or id(r) in passwords):
            continue
        if len(value) < MIN_SECRET_LENGTH:
            problems.append(
                f"parameter {r.name} is a secret shorter than {MIN_SECRET_LENGTH} characters, "
                "which cannot be masked in output: give it a longer value"
            )
        if id(r) in passwords and "," in value:
            problems.append(
                f"parameter {r.name}, the password of {passwords[id(r)]}, contains a comma, "
                "which StackExchange.Redis connection strings cannot carry: choose another"
            )
    return problems
