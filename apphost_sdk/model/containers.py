"""``ContainerResource``: any image, run on a container engine (``builder.add_container``).

Everything about the container is an annotation (image, entrypoint, arguments, endpoints,
mounts, environment, lifetime, health check, connection string); the container runtime reads
them and knows nothing of what the image is.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from .annotations import (
    ArgsAnnotation,
    ConnectionStringAnnotation,
    ContainerImageAnnotation,
    ContainerNameAnnotation,
    ContainerRuntimeArgsAnnotation,
    DockerfileBuildAnnotation,
    EndpointAnnotation,
    EntrypointAnnotation,
    HealthCheckAnnotation,
    Lifetime,
    LifetimeAnnotation,
    MountAnnotation,
)
from .arguments import (
    optional_port,
    optional_str,
    require_args,
    require_bool,
    require_env_name,
    require_path,
    require_str,
    require_url_path,
    short_repr,
    wrong_type,
    wrong_value,
)
from .resources import ParameterResource, Resource
from .values import template_problem

if TYPE_CHECKING:
    from .builder import DistributedApplicationBuilder

C = TypeVar("C", bound="ContainerResource")

# Docker's rules: a tag is up to 128 word characters, dots and hyphens, not starting with either;
# a volume or container name starts with a letter or digit (and must not be able to leave its
# folder).
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_VOLUME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_ENDPOINT_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,62}$")
_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*$")


def parse_image(where: str, image: object, tag: object) -> tuple[str, str | None]:
    """``(image, tag)`` from ``with_image(image, tag)``: the tag may be in the image
    (``redis:8.6``) or given apart, not both. Raises naming the fix."""
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
                f"pass it in one place only, e.g. with_image({image.rsplit(':', 1)[0]!r}, {tag!r})",
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
    return image, tag


def require_lifetime(where: str, lifetime: object) -> Lifetime:
    """``session`` or ``persistent``."""
    if not isinstance(lifetime, str):
        raise wrong_type(
            where,
            "lifetime",
            "'session' or 'persistent'",
            lifetime,
            "pass with_lifetime('session') or with_lifetime('persistent')",
        )
    if lifetime not in ("session", "persistent"):
        raise wrong_value(
            where,
            f"{short_repr(lifetime)} is not a lifetime",
            "pass 'session' (removed when the app host stops) or 'persistent' (kept)",
        )
    return "session" if lifetime == "session" else "persistent"


def require_volume_name(where: str, name: object, *, optional: bool) -> str | None:
    """A Docker volume name (or None when ``optional``)."""
    fix = "pass a volume name such as 'cache-data'" + (
        ", or None to derive one" if optional else ""
    )
    volume = (
        optional_str(name, where, "name", fix)
        if optional
        else require_str(name, where, "name", fix)
    )
    if volume is not None and not _VOLUME.fullmatch(volume):
        raise wrong_value(
            where,
            f"{short_repr(volume)} is not a volume name (letters, digits, '_', '.' and '-', "
            "starting with a letter or digit)",
            fix,
        )
    return volume


def require_target_path(where: str, target: object) -> str:
    """An absolute path inside the container."""
    fix = "pass an absolute path inside the container, such as '/data'"
    path = require_path(target, where, "target", fix)
    if not path.startswith("/"):
        raise wrong_value(where, f"{short_repr(path)} is not an absolute container path", fix)
    return path


def require_endpoint(where: str, name: object, scheme: object) -> tuple[str, str]:
    """An endpoint's name (letters, digits, '-' and '_') and scheme (``tcp``, ``http``, ...)."""
    fix = "pass a name such as 'http' or 'tcp'"
    name = require_str(name, where, "name", fix)
    if not _ENDPOINT_NAME.fullmatch(name):
        raise wrong_value(
            where,
            f"{short_repr(name)} is not an endpoint name (letters, digits, '-' and '_', "
            "starting with a letter)",
            fix,
        )
    scheme = require_str(scheme, where, "scheme", "pass 'tcp', 'http' or 'https'")
    if not _SCHEME.fullmatch(scheme):
        raise wrong_value(where, f"{short_repr(scheme)} is not a scheme", "pass e.g. 'tcp'")
    return name, scheme


class ContainerResource(Resource):
    """A container of any image; the generic API Aspire's ``AddContainer`` has."""

    kind = "container"

    def __init__(
        self, builder: DistributedApplicationBuilder, name: str, image: str, tag: str = "latest"
    ) -> None:
        super().__init__(builder, name)
        where = f"add_container({name!r})"
        image, parsed_tag = parse_image(where, image, None if tag == "latest" else tag)
        self.annotations.append(ContainerImageAnnotation(image, parsed_tag or "latest"))
        self.annotations.append(LifetimeAnnotation("session"))

    # -- image ----------------------------------------------------------------------------
    @property
    def image(self) -> str:
        """The image name (without registry override and tag)."""
        a = self.annotation(ContainerImageAnnotation)
        return a.image if a is not None else ""

    @property
    def tag(self) -> str:
        """The image tag."""
        a = self.annotation(ContainerImageAnnotation)
        return a.tag if a is not None else "latest"

    def with_image(self: C, image: str, tag: str | None = None) -> C:
        """Use another image (``name`` or ``name:tag``); the tag defaults to the current one."""
        image, tag = parse_image(f"{self.name}.with_image", image, tag)
        current = self.annotation(ContainerImageAnnotation)
        registry = current.registry if current is not None else None
        self.replace_annotation(ContainerImageAnnotation(image, tag or self.tag, registry=registry))
        return self

    def with_image_registry(self: C, registry: str) -> C:
        """Pull the image from ``registry`` (e.g. ``myregistry.azurecr.io``)."""
        where = f"{self.name}.with_image_registry"
        fix = "pass a registry host such as 'ghcr.io' or 'localhost:5000'"
        registry = require_str(registry, where, "registry", fix)
        if any(c.isspace() for c in registry) or registry.startswith("/") or "://" in registry:
            raise wrong_value(where, f"{short_repr(registry)} is not a registry host", fix)
        current = self.annotation(ContainerImageAnnotation)
        assert current is not None
        self.replace_annotation(
            ContainerImageAnnotation(current.image, current.tag, registry.rstrip("/"))
        )
        return self

    @property
    def lifetime(self) -> Lifetime:
        """``session`` or ``persistent``."""
        a = self.annotation(LifetimeAnnotation)
        return a.lifetime if a is not None else "session"

    def with_lifetime(self: C, lifetime: Lifetime) -> C:
        """``session`` (removed when the app host stops) or ``persistent`` (kept and reused)."""
        value = require_lifetime(f"{self.name}.with_lifetime", lifetime)
        self.replace_annotation(LifetimeAnnotation(value))
        return self

    # -- command --------------------------------------------------------------------------
    def with_entrypoint(self: C, command: str) -> C:
        """Replace the image's ENTRYPOINT with ``command`` (a program path)."""
        where = f"{self.name}.with_entrypoint"
        command = require_str(command, where, "command", "pass a program such as '/bin/sh'")
        self.replace_annotation(EntrypointAnnotation(command))
        return self

    def with_args(self: C, *args: str | ParameterResource) -> C:
        """Add arguments; all of them, in order, replace the image's CMD (never put secrets
        here: pass them with ``with_environment``)."""
        where = f"{self.name}.with_args"
        checked: list[str | ParameterResource] = []
        for i, a in enumerate(args):
            if isinstance(a, ParameterResource):
                if a.secret:
                    raise wrong_value(
                        where,
                        f"argument {i + 1} is the secret parameter {a.name}, and arguments are "
                        "visible to anyone who can list processes or inspect the container",
                        f"pass it with with_environment('NAME', {a.name}) instead",
                    )
                checked.append(a)
            else:
                checked.extend(require_args([a], where))
        self.annotations.append(ArgsAnnotation(tuple(checked)))
        return self

    # -- endpoints ------------------------------------------------------------------------
    def with_endpoint(
        self: C,
        target_port: int,
        *,
        name: str = "tcp",
        port: int | None = None,
        scheme: str = "tcp",
        env: str | None = None,
    ) -> C:
        """Expose ``target_port`` (where the program listens) as endpoint ``name`` on host port
        ``port`` (a free one when None); ``env`` tells the program its port."""
        where = f"{self.name}.with_endpoint"
        if target_port is None:
            raise wrong_type(where, "target_port", "an int from 1 to 65535", None, "pass e.g. 5432")
        self._add_endpoint(where, target_port, name, port, scheme, env)
        return self

    def with_http_endpoint(
        self: C,
        target_port: int | None = None,
        *,
        name: str = "http",
        port: int | None = None,
        env: str | None = None,
    ) -> C:
        """An HTTP endpoint; with no ``target_port`` the program listens on the allocated
        port, which ``env`` tells it."""
        where = f"{self.name}.with_http_endpoint"
        if target_port is None and env is None:
            raise wrong_value(
                where,
                "without target_port the program cannot know which port to listen on",
                "pass target_port=8080 (the port the image listens on), or env='PORT'",
            )
        self._add_endpoint(where, target_port, name, port, "http", env)
        return self

    def _add_endpoint(
        self,
        where: str,
        target_port: object,
        name: object,
        port: object,
        scheme: object,
        env: object,
    ) -> None:
        target = optional_port(target_port, where, "target_port", 8080)
        host = optional_port(port, where, "port", 8080)
        name, scheme = require_endpoint(where, name, scheme)
        if env is not None:
            env = require_env_name(env, where, "env", "PORT")
        # A second endpoint of the same name is a build() error (reported with the others).
        self.annotations.append(EndpointAnnotation(name, target, host, scheme, env))

    def with_http_health_check(self: C, path: str = "/health", endpoint: str = "http") -> C:
        """Count it healthy only when ``GET path`` on ``endpoint`` answers 2xx."""
        where = f"{self.name}.with_http_health_check"
        path = require_url_path(path, where)
        endpoint = require_str(endpoint, where, "endpoint", "pass an endpoint name, e.g. 'http'")
        self.annotations.append(HealthCheckAnnotation("http", endpoint, path))
        return self

    def with_connection_string(self: C, template: str, endpoint: str = "tcp") -> C:
        """What ``with_reference(this)`` injects as ``ConnectionStrings__{name}``: a template
        over ``endpoint`` with ``{host}``, ``{port}`` and ``{param:NAME}``, e.g.
        ``"{host}:{port},password={param:pg-password}"``."""
        where = f"{self.name}.with_connection_string"
        template = require_str(
            template, where, "template", "pass e.g. 'postgres://{host}:{port}/db'"
        )
        problem = template_problem(template)
        if problem:
            raise wrong_value(where, problem, "use {host}, {port} or {param:NAME}")
        endpoint = require_str(endpoint, where, "endpoint", "pass an endpoint name, e.g. 'tcp'")
        self.replace_annotation(ConnectionStringAnnotation(template, endpoint))
        return self

    # -- mounts and engine options --------------------------------------------------------
    def with_volume(self: C, name: str | None, target: str, read_only: bool = False) -> C:
        """Mount the named volume ``name`` (None: one derived from the app and resource) at
        ``target``; volumes outlive the app host until ``apphost down --volumes``."""
        where = f"{self.name}.with_volume"
        volume = require_volume_name(where, name, optional=True)
        target = require_target_path(where, target)
        read_only = require_bool(read_only, where, "read_only")
        self.replace_annotation(
            MountAnnotation(volume, target, "volume", read_only),
            same=MountAnnotation,
            target=target,
        )
        return self

    def with_bind_mount(
        self: C, source: str | os.PathLike[str], target: str, read_only: bool = False
    ) -> C:
        """Mount the folder or file ``source`` of this machine (relative to the app host) at
        ``target``; a missing source is reported by ``build()``."""
        where = f"{self.name}.with_bind_mount"
        path = require_path(
            source, where, "source", "pass a folder such as 'data' (relative to the app host)"
        )
        target = require_target_path(where, target)
        read_only = require_bool(read_only, where, "read_only")
        self.replace_annotation(
            MountAnnotation(self._resolve(path), target, "bind", read_only),
            same=MountAnnotation,
            target=target,
        )
        return self

    def _resolve(self, path: str) -> str:
        p = Path(path).expanduser()
        return str(p if p.is_absolute() else Path(self.builder.app_host_directory) / p)

    def with_container_name(self: C, name: str) -> C:
        """Give the container this fixed name (default: derived from the app and the run)."""
        where = f"{self.name}.with_container_name"
        name = require_str(name, where, "name", "pass a name such as 'my-redis'")
        if not _VOLUME.fullmatch(name) or len(name) > 128:
            raise wrong_value(
                where,
                f"{short_repr(name)} is not a container name (letters, digits, '_', '.' and '-',"
                " starting with a letter or digit)",
                "pass a name such as 'my-redis'",
            )
        self.replace_annotation(ContainerNameAnnotation(name))
        return self

    def with_container_runtime_args(self: C, *args: str) -> C:
        """Extra ``docker run`` options (``--memory 256m``, ``--cpus 1``, ``--user 1000``,
        ``--add-host``, ``--cap-add``, ``--shm-size``, ``--read-only``, ``--privileged``,
        ``--init``, ``--label``); others are reported by ``build()``."""
        checked = require_args(args, f"{self.name}.with_container_runtime_args")
        self.annotations.append(ContainerRuntimeArgsAnnotation(tuple(checked)))
        return self


class DockerfileResource(ContainerResource):
    """A container whose image is built from a Dockerfile (``builder.add_dockerfile``)."""

    kind = "dockerfile"

    def __init__(
        self,
        builder: DistributedApplicationBuilder,
        name: str,
        context: str,
        dockerfile: str | None,
    ) -> None:
        super().__init__(builder, name, f"apphost-build/{name.lower()}", "latest")
        self.annotations.append(
            DockerfileBuildAnnotation(Path(context), dockerfile or "Dockerfile")
        )
