"""Resources of the application model and their fluent configuration methods.

Each ``with_*`` method changes the resource and returns it, so calls chain as in Aspire:
``builder.add_redis("cache").with_host_port(6380).with_data_volume()``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeVar

import attrs

from ..runtimes.base import Persistence

if TYPE_CHECKING:
    from .builder import DistributedApplicationBuilder

R = TypeVar("R", bound="Resource")
WaitKind = Literal["healthy", "start", "completion"]

DEFAULT_REDIS_IMAGE = "docker.io/library/redis"
DEFAULT_REDIS_TAG = "8.6"


@attrs.frozen
class Reference:
    """``consumer.with_reference(target)``: inject target's connection info into consumer."""

    target: Resource
    connection_name: str
    optional: bool = False


@attrs.frozen
class Wait:
    """``consumer.wait_for*(target)``: consumer starts only once target reaches ``kind``."""

    target: Resource
    kind: WaitKind = "healthy"
    exit_code: int = 0


class Resource:
    """Base of every resource: a name, references, waits and environment variables."""

    kind: ClassVar[str] = "resource"
    #: Whether other resources can reference it (it has connection info).
    has_connection_info: ClassVar[bool] = False

    def __init__(self, builder: DistributedApplicationBuilder, name: str) -> None:
        self.name = name
        self.builder = builder
        self.references: list[Reference] = []
        self.waits: list[Wait] = []
        self.environment: dict[str, str | ParameterResource] = {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"

    # -- relations ------------------------------------------------------------------------
    def with_reference(
        self: R, resource: Resource, connection_name: str | None = None, optional: bool = False
    ) -> R:
        """Inject ``resource``'s connection info into this one (``ConnectionStrings__…`` etc.).

        The reference also makes this resource start after ``resource`` has started, because
        its endpoint is known only then.
        """
        _require_resource(resource, f"{self.name}.with_reference")
        self.references.append(Reference(resource, connection_name or resource.name, optional))
        return self

    def wait_for(self: R, resource: Resource) -> R:
        """Start only once ``resource`` is Running and Healthy."""
        _require_resource(resource, f"{self.name}.wait_for")
        self.waits.append(Wait(resource, "healthy"))
        return self

    def wait_for_start(self: R, resource: Resource) -> R:
        """Start only once ``resource`` is Running (health not required)."""
        _require_resource(resource, f"{self.name}.wait_for_start")
        self.waits.append(Wait(resource, "start"))
        return self

    def wait_for_completion(self: R, resource: Resource, exit_code: int = 0) -> R:
        """Start only once ``resource`` has exited with ``exit_code``."""
        _require_resource(resource, f"{self.name}.wait_for_completion")
        self.waits.append(Wait(resource, "completion", exit_code))
        return self

    def with_environment(self: R, name: str, value: str | ParameterResource) -> R:
        """Set an environment variable for this resource (a parameter keeps secrets masked)."""
        if not isinstance(name, str) or not name or "=" in name:
            raise ValueError(f"{self.name}.with_environment: {name!r} is not a variable name")
        if not isinstance(value, (str, ParameterResource)):
            raise TypeError(
                f"{self.name}.with_environment({name!r}, …): the value must be a str or a "
                f"parameter from add_parameter(), not {type(value).__name__}"
            )
        self.environment[name] = value
        return self

    def dependencies(self) -> list[Resource]:
        """Resources this one must wait for, through waits and references."""
        out: list[Resource] = []
        for target in [*(w.target for w in self.waits), *(r.target for r in self.references)]:
            if target not in out:
                out.append(target)
        return out


def _require_resource(value: object, where: str) -> None:
    if not isinstance(value, Resource):
        raise TypeError(
            f"{where}: expected a resource returned by a builder.add_*() call, "
            f"got {type(value).__name__}"
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
        self.explicit_value = value
        self.secret = secret

    def __repr__(self) -> str:
        return f"ParameterResource({self.name!r}, secret={self.secret})"


class ConnectionStringResource(Resource):
    """An existing service's connection string read from ``ConnectionStrings:{name}``."""

    kind = "connection-string"
    has_connection_info = True


class RedisResource(Resource):
    """A local Redis server, run as a container or as a ``redis-server`` process."""

    kind = "redis"
    has_connection_info = True

    def __init__(
        self,
        builder: DistributedApplicationBuilder,
        name: str,
        port: int | None = None,
        password: ParameterResource | None = None,
    ) -> None:
        super().__init__(builder, name)
        self.host_port: int | None = None
        self.password_parameter: ParameterResource | None = password
        self.password_enabled = True
        self.image = DEFAULT_REDIS_IMAGE
        self.tag = DEFAULT_REDIS_TAG
        self.data_volume: str | None = None
        self.bind_mount: str | None = None
        self.persistence: Persistence | None = None
        self.lifetime: Literal["session", "persistent"] = "session"
        self.args: list[str] = []
        if port is not None:
            self.with_host_port(port)

    def with_host_port(self, port: int | None) -> RedisResource:
        """Publish on this fixed host port instead of a free one (None: a free one)."""
        if port is not None and (not isinstance(port, int) or not 1 <= port <= 65535):
            raise ValueError(f"{self.name}.with_host_port: {port!r} is not a port (1-65535)")
        self.host_port = port
        return self

    def with_password(self, password: ParameterResource | None) -> RedisResource:
        """Use this parameter as the password; ``None`` turns authentication off."""
        if password is not None and not isinstance(password, ParameterResource):
            raise TypeError(
                f"{self.name}.with_password: pass a parameter from "
                "builder.add_parameter(name, secret=True), or None"
            )
        self.password_parameter = password
        self.password_enabled = password is not None
        return self

    def with_data_volume(self, name: str | None = None) -> RedisResource:
        """Keep ``/data`` in a named volume (derived from app and resource when not given) and
        turn on persistence, so data survives restarts."""
        self.data_volume = name or ""
        if self.persistence is None:
            self.persistence = Persistence()
        return self

    def with_data_bind_mount(self, path: str | os.PathLike[str]) -> RedisResource:
        """Keep ``/data`` in a folder of this machine (relative to the app host) and turn on
        persistence."""
        p = Path(path)
        if not p.is_absolute():
            p = Path(self.builder.app_host_directory) / p
        self.bind_mount = str(p)
        if self.persistence is None:
            self.persistence = Persistence()
        return self

    def with_persistence(
        self, interval: timedelta = timedelta(seconds=60), keys_changed_threshold: int = 1
    ) -> RedisResource:
        """Snapshot to disk every ``interval`` when at least ``keys_changed_threshold`` keys
        changed (``--save``)."""
        seconds = int(interval.total_seconds())
        if seconds < 1 or keys_changed_threshold < 1:
            raise ValueError(
                f"{self.name}.with_persistence: interval must be at least 1 second and "
                "keys_changed_threshold at least 1"
            )
        self.persistence = Persistence(seconds, keys_changed_threshold)
        return self

    def with_image(self, image: str, tag: str | None = None) -> RedisResource:
        """Use another image (``name`` or ``name:tag``); the tag defaults to the current one."""
        if not image or not isinstance(image, str):
            raise ValueError(f"{self.name}.with_image: give an image name")
        last = image.rsplit("/", 1)[-1]
        if tag is None and ":" in last:
            image, tag = image.rsplit(":", 1)
        self.image = image
        self.tag = tag or self.tag
        return self

    def with_lifetime(self, lifetime: Literal["session", "persistent"]) -> RedisResource:
        """``session`` (removed when the app host stops) or ``persistent`` (kept and reused)."""
        if lifetime not in ("session", "persistent"):
            raise ValueError(
                f"{self.name}.with_lifetime: {lifetime!r} must be 'session' or 'persistent'"
            )
        self.lifetime = lifetime
        return self

    def with_args(self, *args: str) -> RedisResource:
        """Append arguments to ``redis-server`` (never put secrets here)."""
        self.args.extend(str(a) for a in args)
        return self


class AzureRedisResource(Resource):
    """An Azure Cache for Redis: provisioned in Azure, or replaced by a local Redis in run mode
    with ``run_as_container()``."""

    kind = "azure-redis"
    has_connection_info = True

    def __init__(self, builder: DistributedApplicationBuilder, name: str) -> None:
        super().__init__(builder, name)
        self.container: RedisResource | None = None
        self.use_access_keys = False
        self.existing_name: str | None = None
        self.existing_resource_group: str | None = None
        self.infrastructure_callbacks: list[Callable[[Any], None]] = []

    @property
    def is_container(self) -> bool:
        """True when run mode replaces this cache by a local Redis."""
        return self.container is not None

    def run_as_container(
        self, configure: Callable[[RedisResource], object] | None = None
    ) -> AzureRedisResource:
        """In run mode, run a local Redis instead; ``configure`` receives that Redis resource."""
        self.container = RedisResource(self.builder, self.name)
        if self.builder.execution_context.is_run_mode and configure is not None:
            configure(self.container)
        return self

    def with_access_key_authentication(self) -> AzureRedisResource:
        """Keep access keys on; the connection string then carries the primary key."""
        self.use_access_keys = True
        return self

    def as_existing(self, name: str, resource_group: str | None = None) -> AzureRedisResource:
        """Use an existing cache by its Azure name; it is never created or deleted."""
        if not name or not isinstance(name, str):
            raise ValueError(f"{self.name}.as_existing: give the existing cache's Azure name")
        self.existing_name = name
        self.existing_resource_group = resource_group
        return self

    def configure_infrastructure(self, callback: Callable[[Any], None]) -> AzureRedisResource:
        """Change the provisioned cache's spec (SKU, tags, TLS, …) before it is applied."""
        if not callable(callback):
            raise TypeError(f"{self.name}.configure_infrastructure: pass a callable")
        self.infrastructure_callbacks.append(callback)
        return self


@attrs.frozen
class HttpEndpoint:
    """An HTTP endpoint of an executable: a port (fixed or free) given to it in ``env``."""

    port: int | None
    env: str
    health_path: str | None = None


class ExecutableResource(Resource):
    """A program run as a child process of the app host, with its output streamed."""

    kind = "executable"

    def __init__(
        self,
        builder: DistributedApplicationBuilder,
        name: str,
        command: str,
        working_directory: str,
        args: list[str],
    ) -> None:
        super().__init__(builder, name)
        self.command = command
        self.working_directory = working_directory
        self.args = list(args)
        self.http_endpoint: HttpEndpoint | None = None

    @property
    def has_connection_info(self) -> bool:  # type: ignore[override]
        """An executable can be referenced once it has an HTTP endpoint."""
        return self.http_endpoint is not None

    def with_http_endpoint(self, port: int | None = None, env: str = "PORT") -> ExecutableResource:
        """Give it an HTTP port (a free one unless ``port``) in the variable ``env``; it counts
        as healthy once the port accepts connections."""
        if port is not None and (not isinstance(port, int) or not 1 <= port <= 65535):
            raise ValueError(f"{self.name}.with_http_endpoint: {port!r} is not a port (1-65535)")
        self.http_endpoint = HttpEndpoint(port, env)
        return self

    def with_http_health_check(self, path: str = "/health") -> ExecutableResource:
        """Count it healthy only when ``GET path`` on its HTTP endpoint answers 2xx."""
        if self.http_endpoint is None:
            raise ValueError(f"{self.name}.with_http_health_check: call with_http_endpoint() first")
        self.http_endpoint = attrs.evolve(self.http_endpoint, health_path=path)
        return self

    def with_args(self, *args: str) -> ExecutableResource:
        """Append command-line arguments."""
        self.args.extend(str(a) for a in args)
        return self


class PythonAppResource(ExecutableResource):
    """A Python script run with the app's own ``.venv`` when it has one."""

    kind = "python-app"
