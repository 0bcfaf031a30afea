"""Resources of the application model and their fluent configuration methods.

Each ``with_*`` method changes the resource and returns it, so calls chain as in Aspire:
``builder.add_redis("cache").with_host_port(6380).with_data_volume()``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeVar

import attrs

from ..errors import ModelArgumentError
from ..runtimes.base import Persistence
from .arguments import (
    optional_connection_name,
    optional_port,
    optional_str,
    require_args,
    require_bool,
    require_callable,
    require_env_name,
    require_int,
    require_path,
    require_str,
    require_timedelta,
    short_repr,
    wrong_type,
    wrong_value,
)

if TYPE_CHECKING:
    from .builder import DistributedApplicationBuilder

R = TypeVar("R", bound="Resource")
WaitKind = Literal["healthy", "start", "completion"]

DEFAULT_REDIS_IMAGE = "docker.io/library/redis"
DEFAULT_REDIS_TAG = "8.6"

# Docker's rules: a tag is up to 128 word characters, dots and hyphens, not starting with either;
# a volume name starts with a letter or digit (and must not be able to leave its folder).
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_VOLUME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
# Azure's rules for a cache name and a resource group name.
_AZURE_CACHE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
_RESOURCE_GROUP = re.compile(r"^[-\w.()]{0,89}[-\w()]$")


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
        where = f"{self.name}.with_reference"
        _require_resource(resource, where)
        name = optional_connection_name(connection_name, where)
        require_bool(optional, where, "optional")
        self.references.append(Reference(resource, name or resource.name, optional))
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
        where = f"{self.name}.wait_for_completion"
        _require_resource(resource, where)
        if isinstance(exit_code, bool) or not isinstance(exit_code, int):
            raise wrong_type(
                where, "exit_code", "an int", exit_code, "pass the expected exit code, e.g. 0"
            )
        self.waits.append(Wait(resource, "completion", exit_code))
        return self

    def with_environment(self: R, name: str, value: str | ParameterResource) -> R:
        """Set an environment variable for this resource (a parameter keeps secrets masked)."""
        where = f"{self.name}.with_environment"
        require_env_name(name, where, "the variable name", "MY_VAR")
        if not isinstance(value, (str, ParameterResource)):
            raise wrong_type(
                f"{where}({name!r}, ...)",
                "the value",
                "a string or a parameter",
                value,
                "pass a string, or builder.add_parameter(...) for a secret or configured value",
                secret=True,
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
        where = f"add_redis({name!r})"
        self.host_port = optional_port(port, where)
        if password is not None:  # None here means "generate one", not "no authentication"
            self._set_password(password, where, "password")

    def with_host_port(self, port: int | None) -> RedisResource:
        """Publish on this fixed host port instead of a free one (None: a free one)."""
        self.host_port = optional_port(port, f"{self.name}.with_host_port")
        return self

    def with_password(self, password: ParameterResource | None) -> RedisResource:
        """Use this parameter as the password; ``None`` turns authentication off."""
        self._set_password(password, f"{self.name}.with_password", "the password")
        return self

    def _set_password(self, password: object, where: str, what: str) -> None:
        if password is not None and not isinstance(password, ParameterResource):
            raise wrong_type(
                where,
                what,
                "a parameter",
                password,
                f'pass builder.add_parameter("{self.name}-password", "...", secret=True) '
                "instead of a plain value, or None to turn authentication off",
                secret=True,
            )
        self.password_parameter = password
        self.password_enabled = password is not None

    def with_data_volume(self, name: str | None = None) -> RedisResource:
        """Keep ``/data`` in a named volume (derived from app and resource when not given) and
        turn on persistence, so data survives restarts."""
        where = f"{self.name}.with_data_volume"
        fix = "pass a volume name such as 'cache-data', or None to derive one"
        volume = optional_str(name, where, "name", fix)
        if volume is not None and not _VOLUME.fullmatch(volume):
            raise wrong_value(
                where,
                f"{short_repr(volume)} is not a volume name (letters, digits, '_', '.' and '-', "
                "starting with a letter or digit)",
                fix,
            )
        self.data_volume = volume or ""
        if self.persistence is None:
            self.persistence = Persistence()
        return self

    def with_data_bind_mount(self, path: str | os.PathLike[str]) -> RedisResource:
        """Keep ``/data`` in a folder of this machine (relative to the app host) and turn on
        persistence."""
        p = Path(
            require_path(
                path,
                f"{self.name}.with_data_bind_mount",
                "path",
                "pass a folder such as 'data' (relative to the app host) or an absolute path",
            )
        ).expanduser()
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
        where = f"{self.name}.with_persistence"
        interval = require_timedelta(interval, where, "interval", "timedelta(seconds=60)")
        seconds = int(interval.total_seconds())
        if seconds < 1:
            raise wrong_value(
                where,
                f"interval must be at least 1 second, got {interval!r}",
                "pass e.g. interval=timedelta(seconds=60)",
            )
        require_int(keys_changed_threshold, where, "keys_changed_threshold", 1, 1)
        self.persistence = Persistence(seconds, keys_changed_threshold)
        return self

    def with_image(self, image: str, tag: str | None = None) -> RedisResource:
        """Use another image (``name`` or ``name:tag``); the tag defaults to the current one."""
        where = f"{self.name}.with_image"
        image = require_str(image, where, "image", "pass an image such as 'redis' or 'redis:8.6'")
        if image != image.strip() or any(c.isspace() for c in image) or "@" in image:
            raise wrong_value(
                where,
                f"{short_repr(image)} is not an image name",
                "pass a name such as 'docker.io/library/redis', with no spaces or digest",
            )
        tag = optional_str(tag, where, "tag", "pass a tag such as '8.6', or None to keep it")
        last = image.rsplit("/", 1)[-1]
        if ":" in last:
            if tag is not None:
                raise wrong_value(
                    where,
                    f"the tag is given twice ({short_repr(image)} and tag={tag!r})",
                    f"pass it in one place only, e.g. with_image({image.rsplit(':', 1)[0]!r}, "
                    f"{tag!r})",
                )
            image, tag = image.rsplit(":", 1)
        if tag is not None and not _TAG.fullmatch(tag):
            raise wrong_value(
                where,
                f"{short_repr(tag)} is not an image tag (up to 128 letters, digits, '_', '.' "
                "and '-', not starting with '.' or '-')",
                "pass a tag such as '8.6'",
            )
        if not image:
            raise wrong_value(where, "the image name is empty", "pass an image such as 'redis'")
        self.image = image
        self.tag = tag or self.tag
        return self

    def with_lifetime(self, lifetime: Literal["session", "persistent"]) -> RedisResource:
        """``session`` (removed when the app host stops) or ``persistent`` (kept and reused)."""
        if not isinstance(lifetime, str):
            raise wrong_type(
                f"{self.name}.with_lifetime",
                "lifetime",
                "'session' or 'persistent'",
                lifetime,
                "pass with_lifetime('session') or with_lifetime('persistent')",
            )
        if lifetime not in ("session", "persistent"):
            raise wrong_value(
                f"{self.name}.with_lifetime",
                f"{short_repr(lifetime)} is not a lifetime",
                "pass 'session' (removed when the app host stops) or 'persistent' (kept)",
            )
        self.lifetime = lifetime
        return self

    def with_args(self, *args: str) -> RedisResource:
        """Append arguments to ``redis-server`` (never put secrets here)."""
        self.args.extend(require_args(args, f"{self.name}.with_args"))
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
        require_callable(
            configure,
            f"{self.name}.run_as_container",
            "configure",
            "pass a function that receives the Redis resource, e.g. "
            "run_as_container(lambda r: r.with_host_port(6380)), or nothing",
            optional=True,
        )
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
        where = f"{self.name}.as_existing"
        name = require_str(name, where, "name", "pass the existing cache's Azure name")
        if "--" in name or not _AZURE_CACHE.fullmatch(name):
            raise wrong_value(
                where,
                f"{short_repr(name)} is not an Azure cache name (1-63 letters, digits and "
                "hyphens, starting and ending with a letter or digit, no '--')",
                "pass the existing cache's name as the Azure portal shows it",
            )
        group_fix = "pass the cache's resource group name, or None for the configured one"
        group = optional_str(resource_group, where, "resource_group", group_fix)
        if group is not None and not _RESOURCE_GROUP.fullmatch(group):
            raise wrong_value(
                where,
                f"{short_repr(group)} is not a resource group name (1-90 letters, digits, "
                "'_', '-', '.', '(' and ')', not ending with '.')",
                group_fix,
            )
        self.existing_name = name
        self.existing_resource_group = group
        return self

    def configure_infrastructure(self, callback: Callable[[Any], None]) -> AzureRedisResource:
        """Change the provisioned cache's spec (SKU, tags, TLS, …) before it is applied."""
        require_callable(
            callback,
            f"{self.name}.configure_infrastructure",
            "callback",
            "pass a function that receives the cache's spec and changes it",
        )
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
        where = f"{self.name}.with_http_endpoint"
        port = optional_port(port, where, example=8000)
        env = require_env_name(env, where, "env", "PORT")
        self.http_endpoint = HttpEndpoint(port, env)
        return self

    def with_http_health_check(self, path: str = "/health") -> ExecutableResource:
        """Count it healthy only when ``GET path`` on its HTTP endpoint answers 2xx."""
        where = f"{self.name}.with_http_health_check"
        fix = "pass a path such as '/health'"
        path = require_str(path, where, "path", fix)
        if not path.startswith("/") or any(c.isspace() for c in path):
            raise wrong_value(
                where,
                f"{short_repr(path)} is not a URL path (it must start with '/' and have no spaces)",
                fix,
            )
        if self.http_endpoint is None:
            raise wrong_value(
                where,
                "the resource has no HTTP endpoint",
                f"call {self.name}.with_http_endpoint() before with_http_health_check()",
            )
        self.http_endpoint = attrs.evolve(self.http_endpoint, health_path=path)
        return self

    def with_args(self, *args: str) -> ExecutableResource:
        """Append command-line arguments."""
        self.args.extend(require_args(args, f"{self.name}.with_args"))
        return self


class PythonAppResource(ExecutableResource):
    """A Python script run with the app's own ``.venv`` when it has one."""

    kind = "python-app"
