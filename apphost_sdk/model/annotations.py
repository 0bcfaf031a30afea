"""Annotations: the typed facts a resource carries, as in Aspire's application model.

A resource is a name plus a list of annotations. Builder methods add or replace annotations;
the orchestrator and the runtimes read them and know nothing of the resource's type (Redis,
Postgres, a Python app). Every annotation is a small immutable value object; behaviour that
needs run-time values (a generated password, an allocated port) is a callback that receives a
context object (see ``values``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import attrs

if TYPE_CHECKING:
    from .resources import ParameterResource, Resource
    from .values import EnvValue, HealthProbeContext, ProcessContext, ReferenceContext

Lifetime = Literal["session", "persistent"]
MountKind = Literal["volume", "bind"]
HealthKind = Literal["tcp", "http", "probe"]


class Annotation:
    """Base of every annotation (a marker: annotations are attrs value objects)."""


@attrs.frozen
class EndpointAnnotation(Annotation):
    """A network endpoint of a resource.

    ``target_port`` is where the program listens (inside its container); None means "the port
    allocated for it" (executables, and containers told their port through ``env``). ``port`` is
    the fixed host port, None for a free one. ``env`` names a variable that receives the port the
    program must listen on.
    """

    name: str
    target_port: int | None = None
    port: int | None = None
    scheme: str = "tcp"
    env: str | None = None


@attrs.frozen
class ContainerImageAnnotation(Annotation):
    """The image a container runs: ``[registry/]image:tag``."""

    image: str
    tag: str = "latest"
    registry: str | None = None

    @property
    def reference(self) -> str:
        """The full image reference the engine is asked for."""
        name = f"{self.registry}/{self.image}" if self.registry else self.image
        return f"{name}:{self.tag}"


@attrs.frozen
class DockerfileBuildAnnotation(Annotation):
    """Build the container's image from ``context`` (an absolute folder) with ``dockerfile``."""

    context: Path
    dockerfile: str = "Dockerfile"


@attrs.frozen
class EntrypointAnnotation(Annotation):
    """Replaces the image's ENTRYPOINT."""

    command: str


@attrs.frozen
class ArgsAnnotation(Annotation):
    """Arguments (literal strings or parameters); all of them, in order, replace the image's CMD
    or follow an executable's command."""

    args: tuple[str | ParameterResource, ...]


@attrs.frozen
class ArgsCallbackAnnotation(Annotation):
    """Arguments computed at start time (they may depend on other annotations' final values)."""

    callback: Callable[[], list[str]]


@attrs.frozen
class EnvironmentAnnotation(Annotation):
    """One environment variable; a parameter's value stays masked when it is secret."""

    name: str
    value: EnvValue


@attrs.frozen
class EnvironmentCallbackAnnotation(Annotation):
    """Environment variables computed at start time from the run's values."""

    callback: Callable[[ReferenceContext], Mapping[str, str]]


@attrs.frozen
class MountAnnotation(Annotation):
    """A volume (``source`` is its name; None derives one per app and resource) or a bind mount
    (``source`` is an absolute path on this machine; ``create`` makes a missing folder instead
    of reporting it, for a resource type's own data folder)."""

    source: str | None
    target: str
    kind: MountKind = "volume"
    read_only: bool = False
    create: bool = False


@attrs.frozen
class ContainerNameAnnotation(Annotation):
    """A fixed container name instead of one derived from the app and the run."""

    name: str


@attrs.frozen
class ContainerRuntimeArgsAnnotation(Annotation):
    """Extra ``docker run`` options (a supported subset; see ``runtime_args``)."""

    args: tuple[str, ...]


@attrs.frozen
class LifetimeAnnotation(Annotation):
    """``session`` (removed when the app host stops) or ``persistent`` (kept and reused)."""

    lifetime: Lifetime = "session"


@attrs.frozen
class HealthCheckAnnotation(Annotation):
    """How to tell the resource is healthy: a TCP connect or an HTTP GET on one endpoint, or a
    probe function of the resource type's own (e.g. Redis PING with its password)."""

    kind: HealthKind
    endpoint: str
    path: str | None = None
    probe: Callable[[HealthProbeContext], bool] | None = attrs.field(default=None, eq=False)


@attrs.frozen
class ConnectionStringAnnotation(Annotation):
    """The resource's connection string, as a template over one endpoint: ``{host}``,
    ``{port}`` and ``{param:NAME}`` (see ``values.render_template``)."""

    template: str
    endpoint: str = "tcp"


@attrs.frozen
class ReferenceEnvironmentAnnotation(Annotation):
    """The variables a reference to this resource injects, computed per consumer.

    ``callback(context, connection_name)`` returns them; the context resolves endpoints as the
    consumer reaches them (``localhost:{host port}`` from a process, ``{name}:{target port}``
    from a container on the app's network).
    """

    callback: Callable[[ReferenceContext, str], Mapping[str, str]]


@attrs.frozen
class ExecutableAnnotation(Annotation):
    """Run as a child process: ``resolve()`` returns the command (and fixed leading
    arguments) and raises an ``ApphostError`` naming the fix when it cannot be found; the
    ``ArgsAnnotation`` values follow."""

    working_directory: Path
    resolve: Callable[[], list[str]] = attrs.field(eq=False)


@attrs.frozen
class ProcessFallbackAnnotation(Annotation):
    """How to run a container resource as a local process when no container engine is
    reachable (Redis: a ``redis-server`` with a generated config file).

    ``recipe(context)`` returns the launch; ``endpoint`` names the endpoint whose port the
    process listens on; a line containing ``ready_marker`` means it started, and one containing
    ``port_conflict_marker`` means its port was taken (a new one is tried). Under
    ``APPHOST_CONTAINER_RUNTIME=auto`` an engine that cannot get ``replaces_image`` (offline)
    runs the process instead; a custom image is never replaced.
    """

    recipe: Callable[[ProcessContext], ProcessLaunch] = attrs.field(eq=False)
    endpoint: str = "tcp"
    replaces_image: str | None = None
    ready_marker: str | None = None
    port_conflict_marker: str | None = None


@attrs.frozen
class ProcessLaunch:
    """What the process runtime starts: ``argv`` from ``cwd`` with ``environment`` added, after
    writing ``private_files`` (path -> text, mode 0600: they may hold secrets)."""

    argv: tuple[str, ...]
    cwd: Path
    environment: Mapping[str, str] = attrs.field(factory=dict, repr=False)
    private_files: Mapping[Path, str] = attrs.field(factory=dict, repr=False)


@attrs.frozen
class ProvisioningAnnotation(Annotation):
    """The resource is provisioned (e.g. in Azure) rather than run: ``provision(context)``
    returns its connection, reporting progress through the context."""

    provision: Callable[..., ProvisionedConnection] = attrs.field(eq=False)


@attrs.frozen
class ProvisionedConnection:
    """What provisioning produced: the environment a reference injects (by connection name),
    the endpoint to show, the secrets to mask, and a health check through the real data plane
    (returns why it failed, or None; without one the resource is healthy once provisioned)."""

    environment: Callable[[str], Mapping[str, str]] = attrs.field(eq=False)
    endpoint: str
    secrets: tuple[str, ...] = attrs.field(default=(), repr=False)
    health: Callable[[], str | None] | None = attrs.field(default=None, eq=False)


@attrs.frozen
class RunAsAnnotation(Annotation):
    """In run mode, run ``resource`` in this one's place (Azure's ``run_as_container``)."""

    resource: Resource = attrs.field(eq=False)


@attrs.frozen
class ConfigurationValueAnnotation(Annotation):
    """The resource's connection string is the configuration value ``key``
    (``add_connection_string``)."""

    key: str


@attrs.frozen
class OtlpExporterAnnotation(Annotation):
    """The resource sends OpenTelemetry data: in run mode it gets the ``OTEL_*`` variables
    that point it at the dashboard (Aspire's ``WithOtlpExporter``). Executables and Python
    apps have it; a container gets it from ``with_otlp_exporter()``."""


@attrs.frozen
class ParameterDefaultAnnotation(Annotation):
    """Where a parameter's generated value is kept in the app's state (the state key)."""

    state_key: str


__all__ = [
    "Annotation",
    "ArgsAnnotation",
    "ArgsCallbackAnnotation",
    "ConfigurationValueAnnotation",
    "ConnectionStringAnnotation",
    "ContainerImageAnnotation",
    "ContainerNameAnnotation",
    "ContainerRuntimeArgsAnnotation",
    "DockerfileBuildAnnotation",
    "EndpointAnnotation",
    "EntrypointAnnotation",
    "EnvironmentAnnotation",
    "EnvironmentCallbackAnnotation",
    "ExecutableAnnotation",
    "HealthCheckAnnotation",
    "LifetimeAnnotation",
    "MountAnnotation",
    "OtlpExporterAnnotation",
    "ParameterDefaultAnnotation",
    "ProcessFallbackAnnotation",
    "ProcessLaunch",
    "ProvisionedConnection",
    "ProvisioningAnnotation",
    "ReferenceEnvironmentAnnotation",
    "RunAsAnnotation",
]
