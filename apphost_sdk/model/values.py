"""Values known only at run time, and how the model asks for them (pure, no I/O).

Annotations that need a run's values (a parameter's generated secret, the port allocated to an
endpoint) receive one of the context objects below. The orchestrator builds them; the model
only describes what it needs. A reference resolves per consumer, as in Aspire: a process on this
machine reaches a container at ``localhost:{host port}``; a container on the app's network
reaches it at ``{resource name}:{target port}``; a container reaches a host process through the
engine's host gateway.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Union

import attrs

from .annotations import (
    ConfigurationValueAnnotation,
    ConnectionStringAnnotation,
    EndpointAnnotation,
    ProvisioningAnnotation,
    ReferenceEnvironmentAnnotation,
    RunAsAnnotation,
)

if TYPE_CHECKING:
    from .resources import ParameterResource, Resource

#: The host name containers use for this machine (mapped to the engine's host gateway).
HOST_GATEWAY_NAME = "host.docker.internal"


@attrs.frozen
class EndpointReference:
    """One endpoint of one resource (``resource.get_endpoint("http")``), resolved per consumer
    when used as an environment value: its URL (``scheme://host:port``)."""

    resource: Resource = attrs.field(eq=False)
    name: str


EnvValue = Union[str, "ParameterResource", EndpointReference]


@attrs.frozen
class ResolvedEndpoint:
    """Where one consumer reaches one endpoint."""

    host: str
    port: int
    scheme: str = "tcp"

    @property
    def host_for_url(self) -> str:
        """The host as written before ``:port`` (an IPv6 address in brackets)."""
        return f"[{self.host}]" if ":" in self.host else self.host

    @property
    def url(self) -> str:
        """``scheme://host:port``."""
        return f"{self.scheme}://{self.host_for_url}:{self.port}"


@attrs.frozen
class ReferenceContext:
    """What a consumer's environment is computed from.

    ``in_container`` says where the consumer runs; ``endpoint(resource, name)`` resolves an
    endpoint as that consumer reaches it; ``parameter(p)`` is a parameter's value;
    ``configuration(key)`` a configuration value.
    """

    in_container: bool
    endpoint: Callable[[Resource, str], ResolvedEndpoint] = attrs.field(eq=False)
    parameter: Callable[[ParameterResource], str] = attrs.field(eq=False)
    configuration: Callable[[str], str | None] = attrs.field(eq=False)

    def value(self, v: EnvValue) -> str:
        """The string value of an environment or argument value."""
        from .resources import ParameterResource

        if isinstance(v, ParameterResource):
            return self.parameter(v)
        if isinstance(v, EndpointReference):
            return self.endpoint(v.resource, v.name).url
        return v


@attrs.frozen
class HealthProbeContext:
    """What a resource's own health probe gets: where this machine reaches the endpoint, and
    parameter values (e.g. the password to PING with)."""

    host: str
    port: int
    parameter: Callable[[ParameterResource], str] = attrs.field(eq=False)


@attrs.frozen
class ProvisionContext:
    """What a provisioning callback gets: the app's configuration and state folder, a way to
    report progress (``status(text)``) and the app host's stop event to honour."""

    app_name: str
    configuration: object
    state_dir: Path
    status: Callable[[str], None] = attrs.field(eq=False)
    cancel: object = attrs.field(eq=False)


@attrs.frozen
class ProcessContext:
    """What a process-fallback recipe gets: the port to listen on, the addresses to bind
    (loopback, plus the engine's host gateway when containers must reach it), a private folder
    for this run (removed when the resource stops), a folder per mount target, and parameter
    values."""

    resource_name: str
    port: int
    bind_addresses: tuple[str, ...]
    scratch_dir: Path
    mount_dirs: Mapping[str, Path]
    parameter: Callable[[ParameterResource], str] = attrs.field(eq=False)


# --------------------------------------------------------------------------- templates

_FIELD = re.compile(r"^(host|port|param:[A-Za-z][A-Za-z0-9-]*)$")


def _fields(template: str) -> list[str]:
    """The placeholders of a template, whole (``str.format`` parses ``{param:x}`` as the field
    ``param`` with the format spec ``x``)."""
    return [
        (f if not spec else f"{f}:{spec}") + (f"!{conversion}" if conversion else "")
        for _, f, spec, conversion in string.Formatter().parse(template)
        if f is not None
    ]


def template_problem(template: str) -> str | None:
    """Why ``template`` is not a valid connection-string template, or None.

    Placeholders are ``{host}``, ``{port}`` and ``{param:NAME}``; ``{{`` and ``}}`` are literal
    braces.
    """
    try:
        fields = _fields(template)
    except ValueError as exc:
        return f"{template!r} is not a valid template ({exc}); write literal braces as {{{{ }}}}"
    for f in fields:
        if not _FIELD.fullmatch(f):
            return (
                f"placeholder {{{f}}} in {template!r} is not one of {{host}}, {{port}} or "
                "{param:NAME}"
            )
    return None


def template_parameters(template: str) -> list[str]:
    """The parameter names a template uses (``{param:NAME}``)."""
    try:
        fields = _fields(template)
    except ValueError:
        return []
    return [f[6:] for f in fields if f.startswith("param:")]


def render_template(
    template: str, endpoint: ResolvedEndpoint, parameter: Callable[[str], str]
) -> str:
    """Fill a template with the endpoint as the consumer reaches it and parameter values
    (``parameter(name)``)."""
    out: list[str] = []
    for literal, name, spec, _ in string.Formatter().parse(template):
        out.append(literal)
        if name is None:
            continue
        field = f"{name}:{spec}" if spec else name
        if field == "host":
            out.append(endpoint.host_for_url)
        elif field == "port":
            out.append(str(endpoint.port))
        else:
            out.append(parameter(field[6:]))
    return "".join(out)


# --------------------------------------------------------------------------- references


def has_connection_info(resource: Resource) -> bool:
    """True when a reference to ``resource`` injects something: a connection string, its own
    reference variables, provisioned outputs, or an HTTP(S) endpoint for service discovery."""
    kinds = (
        ReferenceEnvironmentAnnotation,
        ConnectionStringAnnotation,
        ConfigurationValueAnnotation,
        ProvisioningAnnotation,
        RunAsAnnotation,
    )
    if any(isinstance(a, kinds) for a in resource.annotations):
        return True
    return any(e.scheme in ("http", "https") for e in resource.annotations_of(EndpointAnnotation))


def reference_environment(
    target: Resource, context: ReferenceContext, connection_name: str
) -> dict[str, str]:
    """The variables a reference to ``target`` injects into a consumer (Aspire's names):
    the resource's own variables, or ``ConnectionStrings__{name}``, plus
    ``services__{name}__{endpoint}__0`` for each HTTP(S) endpoint."""
    env: dict[str, str] = {}
    own = target.annotation(ReferenceEnvironmentAnnotation)
    if own is not None:
        env.update(own.callback(context, connection_name))
    else:
        cs = target.annotation(ConnectionStringAnnotation)
        if cs is not None:
            params = {p.name: p for p in target.builder.resources if p.kind == "parameter"}
            endpoint = context.endpoint(target, cs.endpoint)
            value = render_template(
                cs.template,
                endpoint,
                lambda name: context.parameter(params[name]),  # type: ignore[arg-type]
            )
            env[f"ConnectionStrings__{connection_name}"] = value
        config = target.annotation(ConfigurationValueAnnotation)
        if config is not None:
            configured = context.configuration(config.key)
            if configured is not None:
                env[f"ConnectionStrings__{connection_name}"] = configured
    for e in target.annotations_of(EndpointAnnotation):
        if e.scheme in ("http", "https"):
            url = context.endpoint(target, e.name).url
            env[f"services__{connection_name}__{e.name}__0"] = url
    return env
