"""Build-time validation of the application model: every problem found, before anything starts."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import ValidationError
from ..masking import MIN_SECRET_LENGTH
from .annotations import (
    ArgsAnnotation,
    ConnectionStringAnnotation,
    ContainerImageAnnotation,
    ContainerRuntimeArgsAnnotation,
    DockerfileBuildAnnotation,
    EndpointAnnotation,
    ExecutableAnnotation,
    HealthCheckAnnotation,
    MountAnnotation,
    RunAsAnnotation,
)
from .names import env_prefix, name_problem
from .resources import ConnectionStringResource, ParameterResource, Resource
from .runtime_args import parse_runtime_args
from .values import EndpointReference, template_parameters

if TYPE_CHECKING:
    from .builder import DistributedApplicationBuilder


def validate(builder: DistributedApplicationBuilder) -> None:
    """Raise ``ValidationError`` listing every problem of the model, each naming its fix."""
    problems: list[str] = []
    problems += _name_problems(builder.resources)
    problems += _relation_problems(builder)
    problems += _cycle_problems(builder.resources)
    problems += _port_problems(builder.resources)
    problems += _container_problems(builder)
    problems += _value_problems(builder)
    problems += _azure_name_problems(builder)
    if problems:
        raise ValidationError(problems)


def _name_problems(resources: list[Resource]) -> list[str]:
    problems: list[str] = []
    seen: dict[str, str] = {}
    for r in resources:
        issue = name_problem(r.name)
        if issue:
            problems.append(f"{issue} ({r.rename_hint or f'rename the {r.kind} resource'})")
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
                if t.annotation(ExecutableAnnotation) is not None:
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
            elif w.kind == "completion" and not _can_complete(t):
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


def _can_complete(r: Resource) -> bool:
    """Executables and plain containers can exit on their own; servers such as Redis run until
    the app stops."""
    if r.annotation(RunAsAnnotation) is not None or r.runs_until_stopped:
        return False
    return any(
        r.annotation(cls) is not None for cls in (ExecutableAnnotation, ContainerImageAnnotation)
    )


def run_mode_resource(r: Resource) -> Resource:
    """The resource that runs in ``r``'s place in run mode (``run_as_container``), else ``r``."""
    run_as = r.annotation(RunAsAnnotation)
    return run_as.resource if run_as is not None else r


def _parameters_used_by(r: Resource) -> list[ParameterResource]:
    """Parameters whose values this resource needs: environment values, arguments, connection
    string templates and those its type names (a Redis password)."""
    r = run_mode_resource(r)
    params = [v for v in r.environment.values() if isinstance(v, ParameterResource)]
    for a in r.annotations_of(ArgsAnnotation):
        params += [v for v in a.args if isinstance(v, ParameterResource)]
    cs = r.annotation(ConnectionStringAnnotation)
    if cs is not None:
        by_name = {p.name: p for p in r.builder.resources if isinstance(p, ParameterResource)}
        params += [by_name[n] for n in template_parameters(cs.template) if n in by_name]
    params += [p for p in r.parameters() if p not in params]
    return params


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


def _port_problems(resources: list[Resource]) -> list[str]:
    problems: list[str] = []
    used: dict[int, str] = {}
    for r in resources:
        for e in run_mode_resource(r).annotations_of(EndpointAnnotation):
            if e.port is None:
                continue
            if e.port in used and used[e.port] != r.name:
                problems.append(
                    f"host port {e.port} is fixed for both {used[e.port]} and {r.name}: give one "
                    "of them another port, or none to get a free one"
                )
            elif e.port in used:
                problems.append(
                    f"host port {e.port} is fixed for two endpoints of {r.name}: give one of "
                    "them another port, or none to get a free one"
                )
            else:
                used[e.port] = r.name
    return problems


def _container_problems(builder: DistributedApplicationBuilder) -> list[str]:
    """Endpoints, mounts, builds and templates of each resource."""
    problems: list[str] = []
    parameters = {p.name for p in builder.resources if isinstance(p, ParameterResource)}
    for owner in builder.resources:
        r = run_mode_resource(owner)
        names: set[str] = set()
        for e in r.annotations_of(EndpointAnnotation):
            if e.name in names:
                problems.append(
                    f"{r.name} has two endpoints named {e.name!r}: pass another name= to one "
                    "of them"
                )
            names.add(e.name)
        is_container = any(
            r.annotation(c) is not None
            for c in (ContainerImageAnnotation, DockerfileBuildAnnotation)
        )
        if is_container and len(r.name) > 63 and name_problem(r.name) is None:
            problems.append(
                f"{r.name} is {len(r.name)} characters long, but a container's name is its DNS "
                "name on the app's network, which holds at most 63: "
                f"{r.rename_hint or 'shorten it'}"
            )
        for m in r.annotations_of(MountAnnotation):
            if m.kind == "bind" and m.source is not None:
                from pathlib import Path

                if not m.create and not Path(m.source).exists():
                    problems.append(
                        f"{r.name} binds {m.source} to {m.target}, but {m.source} does not "
                        "exist: create it or fix with_bind_mount()"
                    )
        for a in r.annotations_of(ContainerRuntimeArgsAnnotation):
            problems += [
                f"{r.name}.with_container_runtime_args: {p}" for p in parse_runtime_args(a.args)[1]
            ]
        build = r.annotation(DockerfileBuildAnnotation)
        if build is not None:
            if not build.context.is_dir():
                problems.append(
                    f"{r.name}: the build context {build.context} is not a folder: create it "
                    "or fix add_dockerfile()"
                )
            elif not (build.context / build.dockerfile).is_file():
                problems.append(
                    f"{r.name}: {build.context / build.dockerfile} does not exist: add a "
                    "Dockerfile there or pass dockerfile= to add_dockerfile()"
                )
        for check in r.annotations_of(HealthCheckAnnotation):
            if check.endpoint not in names:
                problems.append(
                    f"{r.name} has a health check on endpoint {check.endpoint!r}, which it does "
                    "not have: pass endpoint= one of: "
                    f"{', '.join(sorted(names)) or 'none (add an endpoint first)'}"
                )
        cs = r.annotation(ConnectionStringAnnotation)
        if cs is not None:
            if cs.endpoint not in names:
                problems.append(
                    f"{r.name}.with_connection_string uses endpoint {cs.endpoint!r}, which "
                    f"{r.name} does not have: add it with with_endpoint(..., name="
                    f"{cs.endpoint!r}) or pass endpoint= one of: "
                    f"{', '.join(sorted(names)) or 'none'}"
                )
            for p in template_parameters(cs.template):
                if p not in parameters:
                    problems.append(
                        f"{r.name}.with_connection_string uses {{param:{p}}}, but the app has "
                        f"no parameter {p!r}: add it with builder.add_parameter({p!r}, ...)"
                    )
        for value in r.environment.values():
            if isinstance(value, EndpointReference) and value.resource not in [
                x for x in builder.resources
            ]:
                problems.append(
                    f"{r.name} uses an endpoint of {value.resource.name!r}, which belongs to "
                    "another builder: use a resource of this builder"
                )
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
    for r in builder.resources:
        required.update(id(p) for p in _parameters_used_by(r))
    problems += _secret_problems(builder)
    if builder.execution_context.is_publish_mode:
        return problems  # the deployer supplies them: manifest parameter inputs, .env variables
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
    """Secrets the SDK could not keep secret, and each resource type's own value rules.
    Messages name the parameter, never its value."""
    problems: list[str] = []
    for r in builder.resources:
        if not isinstance(r, ParameterResource) or not r.secret:
            continue
        value = _parameter_value(builder, r)
        if value is not None and len(value) < MIN_SECRET_LENGTH:
            problems.append(
                f"parameter {r.name} is a secret shorter than {MIN_SECRET_LENGTH} characters, "
                "which cannot be masked in output: give it a longer value"
            )
    problems += _password_character_problems(builder)
    for r in builder.resources:
        problems += run_mode_resource(r).problems(lambda p: _parameter_value(builder, p))
    return problems


def _password_character_problems(builder: DistributedApplicationBuilder) -> list[str]:
    """Secret parameters and those a resource type needs (a Redis password) that no service
    could use: a value that starts or ends with whitespace (connection-string parsers, .NET's
    and ours, trim it, so clients send another password), holds a NUL character (which no
    environment variable, argument or C string carries) or another control character (a
    secret printed across lines cannot be recognised and masked, and config files, terminals
    and connection strings each treat them their own way)."""
    checked: list[ParameterResource] = [
        p for p in builder.resources if isinstance(p, ParameterResource) and p.secret
    ]
    for r in builder.resources:
        checked += [p for p in run_mode_resource(r).parameters() if p not in checked]
    problems: list[str] = []
    for p in checked:
        value = _parameter_value(builder, p)
        if value is None:
            continue
        where = f"parameter {p.name} (its value is not shown)"
        fix = f"remove it from Parameters:{p.name} or the value= passed to add_parameter()"
        if value != value.strip():
            problems.append(
                f"{where} starts or ends with whitespace, which connection strings drop, so "
                f"clients would send another password: {fix}"
            )
        if "\0" in value:
            problems.append(
                f"{where} contains a NUL character, which no environment variable or "
                f"argument can carry: {fix}"
            )
        elif any(ord(c) < 0x20 or ord(c) == 0x7F for c in value.strip()):
            problems.append(
                f"{where} contains a control character (a line break, tab or the like), "
                f"which output masking and connection strings cannot handle safely: {fix}"
            )
    return problems


def _azure_name_problems(builder: DistributedApplicationBuilder) -> list[str]:
    """Azure caches of the app whose generated Azure names would be one (``my-cache`` and
    ``mycache``, or long names sharing their start): ``plan`` would say "create" twice and
    ``provision`` fail. Azure resources are those with a callable ``to_azure_request()``; the
    naming rule is ``provisioning``'s, imported only when there are two of them (the
    ``provisioning`` package may be absent)."""
    requests: list[object] = []
    for r in builder.resources:
        to_request = getattr(r, "to_azure_request", None)
        if not callable(to_request) or name_problem(r.name) is not None:
            continue
        try:
            requests.append(to_request())
        except ImportError:
            return []
    if len(requests) < 2:
        return []
    try:
        from provisioning.app_model import generated_name_problems
    except ImportError:
        return []
    return generated_name_problems(requests)
