"""The resource base and the value resources (parameters, connection strings).

A resource is a name plus annotations (``annotations``). Each ``with_*`` method adds or replaces
annotations and returns the resource, so calls chain as in Aspire:
``builder.add_redis("cache").with_host_port(6380).with_data_volume()``. Resource types (containers,
executables, Redis, Azure) live in modules of their own and only add annotations.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, ClassVar, Literal, TypeVar

import attrs

from ..errors import ModelArgumentError
from .annotations import (
    Annotation,
    ConfigurationValueAnnotation,
    EndpointAnnotation,
    EnvironmentAnnotation,
    OtlpExporterAnnotation,
    ParameterDefaultAnnotation,
)
from .arguments import (
    optional_connection_name,
    require_bool,
    require_env_name,
    wrong_type,
    wrong_value,
)
from .values import EndpointReference, EnvValue, has_connection_info

if TYPE_CHECKING:
    from .builder import DistributedApplicationBuilder

R = TypeVar("R", bound="Resource")
A = TypeVar("A", bound=Annotation)
WaitKind = Literal["healthy", "start", "completion"]


@attrs.frozen
class Reference(Annotation):
    """``consumer.with_reference(target)``: inject target's connection info into consumer."""

    target: Resource = attrs.field(eq=False)
    connection_name: str
    optional: bool = False


@attrs.frozen
class Wait(Annotation):
    """``consumer.wait_for*(target)``: consumer starts only once target reaches ``kind``."""

    target: Resource = attrs.field(eq=False)
    kind: WaitKind = "healthy"
    exit_code: int = 0


class Resource:
    """Base of every resource: a name, the builder it belongs to, and its annotations."""

    #: A short type name shown in status and errors (``redis``, ``container``, ...).
    kind: ClassVar[str] = "resource"
    #: A server that runs until the app stops (nothing may wait for it to complete).
    runs_until_stopped: ClassVar[bool] = False
    #: How to fix a bad name, when the user did not choose it (a side container's).
    rename_hint: str | None = None

    def __init__(self, builder: DistributedApplicationBuilder, name: str) -> None:
        self.name = name
        self.builder = builder
        self.annotations: list[Annotation] = []

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"

    # -- annotations ----------------------------------------------------------------------
    def annotations_of(self, cls: type[A]) -> list[A]:
        """Every annotation of type ``cls``, in the order they were added."""
        return [a for a in self.annotations if isinstance(a, cls)]

    def annotation(self, cls: type[A]) -> A | None:
        """The last annotation of type ``cls``, or None."""
        for a in reversed(self.annotations):
            if isinstance(a, cls):
                return a
        return None

    def add_annotation(self: R, annotation: Annotation) -> R:
        """Add an annotation (the extension point for resource types of other packages)."""
        if not isinstance(annotation, Annotation):
            raise wrong_type(
                f"{self.name}.add_annotation",
                "annotation",
                "an Annotation",
                annotation,
                "pass an instance of a class from apphost_sdk.model.annotations",
            )
        self.annotations.append(annotation)
        return self

    def replace_annotation(
        self: R, annotation: Annotation, same: type[Annotation] | None = None, **match: object
    ) -> R:
        """Put ``annotation`` in place of the first one of type ``same`` (default: its own type)
        whose attributes equal ``match``; append it when there is none."""
        cls = same or type(annotation)
        for i, a in enumerate(self.annotations):
            if isinstance(a, cls) and all(getattr(a, k) == v for k, v in match.items()):
                self.annotations[i] = annotation
                return self
        self.annotations.append(annotation)
        return self

    def remove_annotations(self, cls: type[Annotation], **match: object) -> None:
        """Remove every annotation of type ``cls`` whose attributes equal ``match``."""
        self.annotations = [
            a
            for a in self.annotations
            if not (isinstance(a, cls) and all(getattr(a, k) == v for k, v in match.items()))
        ]

    # -- views ----------------------------------------------------------------------------
    @property
    def references(self) -> list[Reference]:
        """The ``with_reference`` calls, in order."""
        return self.annotations_of(Reference)

    @property
    def waits(self) -> list[Wait]:
        """The ``wait_for*`` calls, in order."""
        return self.annotations_of(Wait)

    @property
    def environment(self) -> dict[str, EnvValue]:
        """The ``with_environment`` variables by name (the last value of each)."""
        return {a.name: a.value for a in self.annotations_of(EnvironmentAnnotation)}

    @property
    def has_connection_info(self) -> bool:
        """Whether a reference to this resource injects anything."""
        return has_connection_info(self)

    def get_endpoint(self, name: str) -> EndpointReference:
        """A reference to the endpoint ``name`` (a URL when used as an environment value)."""
        names = [e.name for e in self.annotations_of(EndpointAnnotation)]
        if name not in names:
            raise wrong_value(
                f"{self.name}.get_endpoint",
                f"{self.name} has no endpoint {name!r} (it has: {', '.join(names) or 'none'})",
                "add it with with_endpoint()/with_http_endpoint() first, or use one of those",
            )
        return EndpointReference(self, name)

    # -- relations ------------------------------------------------------------------------
    def with_reference(
        self: R, resource: Resource, connection_name: str | None = None, optional: bool = False
    ) -> R:
        """Inject ``resource``'s connection info into this one (``ConnectionStrings__…`` etc.).

        The reference also makes this resource start after ``resource`` has started, because
        its endpoint is known only then.
        """
        where = f"{self.name}.with_reference"
        require_resource(resource, where)
        name = optional_connection_name(connection_name, where)
        require_bool(optional, where, "optional")
        self.annotations.append(Reference(resource, name or resource.name, optional))
        return self

    def wait_for(self: R, resource: Resource) -> R:
        """Start only once ``resource`` is Running and Healthy."""
        require_resource(resource, f"{self.name}.wait_for")
        self.annotations.append(Wait(resource, "healthy"))
        return self

    def wait_for_start(self: R, resource: Resource) -> R:
        """Start only once ``resource`` is Running (health not required)."""
        require_resource(resource, f"{self.name}.wait_for_start")
        self.annotations.append(Wait(resource, "start"))
        return self

    def wait_for_completion(self: R, resource: Resource, exit_code: int = 0) -> R:
        """Start only once ``resource`` has exited with ``exit_code``."""
        where = f"{self.name}.wait_for_completion"
        require_resource(resource, where)
        if isinstance(exit_code, bool) or not isinstance(exit_code, int):
            raise wrong_type(
                where, "exit_code", "an int", exit_code, "pass the expected exit code, e.g. 0"
            )
        self.annotations.append(Wait(resource, "completion", exit_code))
        return self

    def with_environment(self: R, name: str, value: EnvValue) -> R:
        """Set an environment variable for this resource (a parameter keeps secrets masked;
        ``other.get_endpoint("http")`` gives that endpoint's URL as this resource reaches it)."""
        where = f"{self.name}.with_environment"
        require_env_name(name, where, "the variable name", "MY_VAR")
        if not isinstance(value, (str, ParameterResource, EndpointReference)):
            raise wrong_type(
                f"{where}({name!r}, ...)",
                "the value",
                "a string, a parameter or an endpoint",
                value,
                "pass a string, or builder.add_parameter(...) for a secret or configured value",
                secret=True,
            )
        self.replace_annotation(EnvironmentAnnotation(name, value), name=name)
        return self

    def with_otlp_exporter(self: R) -> R:
        """Point this resource's OpenTelemetry SDK at the dashboard in run mode (the ``OTEL_*``
        variables, as Aspire's ``WithOtlpExporter``); executables and Python apps have it
        already, a container of your own service needs it."""
        if self.annotation(OtlpExporterAnnotation) is None:
            self.annotations.append(OtlpExporterAnnotation())
        return self

    def parameters(self) -> list[ParameterResource]:
        """Parameters this resource's type needs besides those in its annotations (a Redis
        password); ``build()`` checks they have values."""
        return []

    def problems(self, value_of: Callable[[ParameterResource], str | None]) -> list[str]:
        """Problems of this resource's own values, each naming the fix (checked by ``build()``;
        ``value_of`` gives a parameter's configured value, never to be put in a message)."""
        return []

    def dependencies(self) -> list[Resource]:
        """Resources this one must wait for: through waits, references, and endpoints given as
        environment values (known only once their resource runs)."""
        endpoints = [
            v.resource for v in self.environment.values() if isinstance(v, EndpointReference)
        ]
        out: list[Resource] = []
        targets = [
            *(w.target for w in self.waits),
            *(r.target for r in self.references),
            *endpoints,
        ]
        for target in targets:
            if target not in out:
                out.append(target)
        return out


def require_resource(value: object, where: str) -> None:
    """Raise a clear error unless ``value`` is a resource (not, say, its name)."""
    if not isinstance(value, Resource):
        raise ModelArgumentError(
            f"{where}: expected a resource returned by a builder.add_*() call, "
            f"got {type(value).__name__}; pass the resource itself, e.g. the value of "
            "builder.add_redis('cache'), not its name"
        )


class ParameterResource(Resource):
    """A named value, secret or not, from the code, configuration (``Parameters:{name}``) or,
    for secrets without a value, generated once and kept in the app's state directory."""

    kind = "parameter"

    def __init__(
        self,
        builder: DistributedApplicationBuilder,
        name: str,
        value: str | None = None,
        secret: bool = False,
    ) -> None:
        super().__init__(builder, name)
        where = f"add_parameter({name!r})"
        if value is not None and not isinstance(value, str):
            raise wrong_type(
                where,
                "value",
                "None or a string",
                value,
                "pass the value as a string, or None to read configuration Parameters:" + name,
                secret=True,
            )
        self.explicit_value = value
        self.secret = require_bool(secret, where, "secret")

    @property
    def state_key(self) -> str:
        """Where a generated value is kept in the app's secrets file."""
        own = self.annotation(ParameterDefaultAnnotation)
        return own.state_key if own is not None else f"parameter:{self.name}"

    def __repr__(self) -> str:
        return f"ParameterResource({self.name!r}, secret={self.secret})"


class ConnectionStringResource(Resource):
    """An existing service's connection string read from ``ConnectionStrings:{name}``."""

    kind = "connection-string"

    def __init__(self, builder: DistributedApplicationBuilder, name: str) -> None:
        super().__init__(builder, name)
        self.annotations.append(ConfigurationValueAnnotation(f"ConnectionStrings:{name}"))
