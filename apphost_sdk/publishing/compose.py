"""The Docker Compose publisher: ``docker-compose.yaml`` and ``.env`` from the app model.

References resolve as run mode resolves them for a container on the app's network (the
model's own ``reference_environment``), with the service name as host and the container's port;
parameter values become Compose variables (``${CACHE_PASSWORD}``) listed in ``.env``, secrets
with an empty value for the operator to fill, so the files stay deterministic and secret-free.
Publishing again into the same folder keeps the values already filled in ``.env``.
A literal ``$`` is written ``$$`` so Compose passes it through to the container.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

from ..integrations.redis import RedisResource
from ..model.annotations import (
    ArgsAnnotation,
    ArgsCallbackAnnotation,
    ConfigurationValueAnnotation,
    ContainerImageAnnotation,
    ContainerNameAnnotation,
    DockerfileBuildAnnotation,
    EndpointAnnotation,
    EntrypointAnnotation,
    EnvironmentCallbackAnnotation,
    ExecutableAnnotation,
    HealthCheckAnnotation,
    MountAnnotation,
    ProvisioningAnnotation,
    RunAsAnnotation,
)
from ..model.executables import ExecutableResource
from ..model.names import env_prefix
from ..model.resources import ParameterResource, Resource
from ..model.values import (
    EndpointReference,
    ReferenceContext,
    ResolvedEndpoint,
    reference_environment,
)
from .context import PublishContext, PublishError
from .dockerfiles import (
    container_environment,
    container_ports,
    dockerfile_name,
    entrypoint,
    is_python_app,
    python_dockerfile,
    user_dockerfile,
)

COMPOSE_FILE = "docker-compose.yaml"
ENV_FILE = ".env"
#: Health check timing: Compose's defaults (30 s) would make ``wait_for`` needlessly slow.
HEALTH_TIMING = {"interval": "2s", "timeout": "5s", "retries": 30}

#: The first lines of ``.env``: what to fill in, and that URI passwords are not encoded.
ENV_HEADER = (
    "# Variables of docker-compose.yaml. Fill in every empty value (passwords, connection",
    "# strings) before `docker compose up`; keep this file private. Values you fill in are",
    "# kept when the app is published again.",
    "# Passwords are put into *_URI values (redis://:PASSWORD@host:port) as they are, not",
    "# URL-encoded: use URL-safe passwords (letters, digits and - . _ ~ only).",
)
_ENV_LINE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$")
_TOKEN = re.compile(r"ZZAPPHOSTVAR(\d+)ZZ")
_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
_YAML_WORDS = {"y", "n", "yes", "no", "true", "false", "on", "off", "null", "~"}


class _Model(Protocol):
    """The built app model (or its builder): resources in the order they were added."""

    @property
    def resources(self) -> Sequence[Resource]: ...


# --------------------------------------------------------------------------- variables


class _Variables:
    """Compose variables: parameter values and connection strings known only at deploy time.

    The model's callbacks receive placeholder tokens (letters and digits, which survive URL
    quoting); :meth:`render` escapes literal ``$`` and turns tokens into ``${VAR}``.
    """

    def __init__(self) -> None:
        self.names: list[str] = []
        self.secret: dict[str, bool] = {}
        self.values: dict[str, str] = {}
        self._owner: dict[str, str] = {}

    def add(self, name: str, owner: str, secret: bool, value: str | None = None) -> str:
        """Register variable ``name`` (for ``owner``) and return its token."""
        if name in self._owner and self._owner[name] != owner:
            raise PublishError(
                f"{owner} and {self._owner[name]} both become the Compose variable {name}: "
                "rename one of them"
            )
        if name not in self._owner:
            self._owner[name] = owner
            self.names.append(name)
            self.secret[name] = secret
            if value is not None and not secret:
                if "\n" in value or "\r" in value:
                    raise PublishError(
                        f"the value of {owner} spans several lines, which .env cannot hold: "
                        "make it one line"
                    )
                self.values[name] = value
        return f"ZZAPPHOSTVAR{self.names.index(name)}ZZ"

    def parameter(self, p: ParameterResource) -> str:
        """The token of a parameter (a secret's value is never written)."""
        value = p.explicit_value
        if value is None:
            value = p.builder.configuration.get_str(f"Parameters:{p.name}")
        return self.add(env_prefix(p.name), f"parameter {p.name}", p.secret, value)

    def connection_string(self, name: str) -> str:
        """The token of the connection string of ``name`` (filled in by the operator)."""
        return self.add(f"{env_prefix(name)}_CONNECTION_STRING", f"connection string {name}", True)

    def render(self, text: str) -> str:
        """``text`` for the compose file: ``$`` escaped, tokens as variables; a value that is
        exactly a secret is required (``${VAR:?}``), so Compose refuses to start without it."""
        text = text.replace("$", "$$")
        whole = _TOKEN.fullmatch(text)
        if whole is not None:
            name = self.names[int(whole.group(1))]
            return f"${{{name}:?}}" if self.secret[name] else f"${{{name}}}"
        return _TOKEN.sub(lambda m: f"${{{self.names[int(m.group(1))]}}}", text)

    def env_file(self, existing: Mapping[str, str] | None = None) -> str:
        """``.env``: every variable, sorted; secrets and unknown values empty.

        ``existing`` holds the values of the ``.env`` already in the output folder: a variable
        that still exists keeps its non-empty value there (the operator filled it in), new
        variables get the model's value or stay empty, and dropped names disappear.
        """
        kept = existing or {}
        lines = list(ENV_HEADER)
        lines += [f"{n}={kept.get(n) or self.values.get(n, '')}" for n in sorted(self.names)]
        return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- the writer


def write_compose(model: _Model, context: PublishContext) -> None:
    """Add ``docker-compose.yaml``, ``.env`` and generated Dockerfiles to ``context.files``.

    Raises :class:`PublishError` naming what Compose cannot run: a plain executable, or a bind
    mount outside the app host's folder.
    """
    writer = _ComposeWriter(list(model.resources), context)
    services = writer.services()
    document: dict[str, Any] = {"services": services}
    if writer.volumes:
        document["volumes"] = {name: {} for name in sorted(writer.volumes)}
    header = (
        "# Generated by `apphost publish --publisher docker-compose`: change the app host, "
        "not this file.\n# Fill in .env, then run `docker compose up -d`.\n"
    )
    context.add_file(COMPOSE_FILE, header + to_yaml(document))
    existing = read_env_file(context.output_dir / ENV_FILE)
    context.add_file(ENV_FILE, writer.variables.env_file(existing))
    for name, text in sorted(writer.dockerfiles.items()):
        context.add_file(name, text)


def read_env_file(path: Path) -> dict[str, str]:
    """The ``NAME=value`` lines of an existing ``.env`` (empty when there is none), so that
    publishing again keeps what the operator filled in. Comments and other lines are skipped."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise PublishError(
            f"cannot read the existing {path} ({reason}): fix or remove it, then publish again"
        ) from None
    values: dict[str, str] = {}
    for line in text.splitlines():
        match = _ENV_LINE.match(line)
        if match is not None:
            values[match.group(1)] = match.group(2)
    return values


def _runs(resource: Resource) -> Resource:
    """What runs in the resource's place (``run_as_container``), else the resource."""
    run_as = resource.annotation(RunAsAnnotation)
    return run_as.resource if run_as is not None else resource


class _ComposeWriter:
    """Turns resources into services, collecting variables, volumes and Dockerfiles."""

    def __init__(self, resources: list[Resource], context: PublishContext) -> None:
        self.resources = resources
        self.context = context
        self.variables = _Variables()
        self.volumes: set[str] = set()
        self.dockerfiles: dict[str, str] = {}
        self.reference_context = ReferenceContext(
            in_container=True,
            endpoint=self._endpoint,
            parameter=self.variables.parameter,
            configuration=self._configuration,
        )

    # -- what a resource is ---------------------------------------------------------------
    def is_service(self, r: Resource) -> bool:
        """Whether ``r`` runs as a Compose service."""
        runs = _runs(r)
        return any(
            runs.annotation(cls) is not None
            for cls in (ContainerImageAnnotation, DockerfileBuildAnnotation, ExecutableAnnotation)
        )

    def _external(self, r: Resource) -> bool:
        """A connection string from configuration, or an Azure resource that publishes no
        container: its connection string is a variable the operator fills in."""
        if r.annotation(ConfigurationValueAnnotation) is not None:
            return True
        return r.annotation(ProvisioningAnnotation) is not None and not self.is_service(r)

    def _endpoint(self, resource: Resource, name: str) -> ResolvedEndpoint:
        runs = _runs(resource)
        scheme = next(
            (e.scheme for e in runs.annotations_of(EndpointAnnotation) if e.name == name), "tcp"
        )
        return ResolvedEndpoint(resource.name, container_ports(runs)[name], scheme)

    def _configuration(self, key: str) -> str:
        _, _, name = key.partition(":")
        return self.variables.connection_string(name or key)

    # -- services -------------------------------------------------------------------------
    def services(self) -> dict[str, Any]:
        for r in self.resources:  # every parameter is listed in .env, used or not
            if isinstance(r, ParameterResource):
                self.variables.parameter(r)
            elif self._external(r):
                self.variables.connection_string(r.name)
        out: dict[str, Any] = {}
        for r in self.resources:
            if isinstance(r, ParameterResource) or not self.is_service(r):
                continue
            out[r.name] = self.service(r)
        return out

    def service(self, r: Resource) -> dict[str, Any]:
        runs = _runs(r)
        if isinstance(runs, ExecutableResource):
            return self._python_service(r, runs)
        return self._container_service(r, runs)

    def _container_service(self, r: Resource, runs: Resource) -> dict[str, Any]:
        s: dict[str, Any] = {}
        build = runs.annotation(DockerfileBuildAnnotation)
        if build is not None:
            s["build"] = {
                "context": self._inside(r, build.context, "build context"),
                "dockerfile": build.dockerfile,
            }
        else:
            image = runs.annotation(ContainerImageAnnotation)
            assert image is not None
            s["image"] = image.reference
        name = runs.annotation(ContainerNameAnnotation)
        if name is not None:
            s["container_name"] = name.name
        ep = runs.annotation(EntrypointAnnotation)
        if ep is not None:
            s["entrypoint"] = [self.variables.render(ep.command)]
        args = self._args(runs)
        if args is not None:
            s["command"] = args
        env: dict[str, str] = {}
        for e in runs.annotations_of(EndpointAnnotation):
            if e.env:
                env[e.env] = str(container_ports(runs)[e.name])
        for cb in runs.annotations_of(EnvironmentCallbackAnnotation):
            env.update(cb.callback(self.reference_context))
        self._finish(r, runs, s, env, python=False)
        volumes = self._mounts(r, runs)
        if volumes:
            s["volumes"] = volumes
        return s

    def _python_service(self, r: Resource, runs: ExecutableResource) -> dict[str, Any]:
        if not is_python_app(runs):
            entrypoint(runs)  # raises the error naming the plain executable
        folder = runs.working_directory
        build: dict[str, Any] = {"context": self.context.relative_path(folder)}
        if user_dockerfile(runs) is None:
            name = dockerfile_name(runs)
            self.dockerfiles[name] = python_dockerfile(runs)
            generated = self.context.output_dir / name
            build["dockerfile"] = _posix_relpath(generated, folder)
        else:
            build["dockerfile"] = "Dockerfile"
        s: dict[str, Any] = {"build": build}
        args = self._args(runs)
        if args and user_dockerfile(runs) is None:  # the user's Dockerfile owns its command
            s["command"] = args
        env = container_environment(runs)
        for cb in runs.annotations_of(EnvironmentCallbackAnnotation):
            env.update(cb.callback(self.reference_context))
        self._finish(r, runs, s, env, python=True)
        return s

    def _args(self, runs: Resource) -> list[str] | None:
        found = False
        args: list[str] = []
        for a in runs.annotations:
            if isinstance(a, ArgsAnnotation):
                found = True
                args += [self.reference_context.value(v) for v in a.args]
            elif isinstance(a, ArgsCallbackAnnotation):
                found = True
                args += a.callback()
        return [self.variables.render(a) for a in args] if found else None

    def _finish(
        self, r: Resource, runs: Resource, s: dict[str, Any], env: dict[str, str], python: bool
    ) -> None:
        """Environment (own and injected), ports, dependencies and the health check."""
        sources = [r] if runs is r else [r, runs]
        for source in sources:
            for ref in source.references:
                env.update(self._reference(ref.target, ref.connection_name))
            for k, v in source.environment.items():
                if k == "UVICORN_HOST" and python:
                    continue  # the container listens on every interface (its image says so)
                env[k] = self.reference_context.value(v)
        if env:
            s["environment"] = {k: self.variables.render(env[k]) for k in sorted(env)}
        ports = [
            f"{e.port}:{container_ports(runs)[e.name]}"
            for e in runs.annotations_of(EndpointAnnotation)
            if e.port is not None
        ]
        if ports:
            s["ports"] = ports
        depends = self._depends_on(sources)
        if depends:
            s["depends_on"] = depends
        health = self._healthcheck(runs, python)
        if health is not None:
            s["healthcheck"] = health

    def _reference(self, target: Resource, connection_name: str) -> dict[str, str]:
        if self.is_service(target):
            # a run_as_container stand-in has the Azure resource's name: the same service
            return reference_environment(_runs(target), self.reference_context, connection_name)
        if target.annotation(ProvisioningAnnotation) is not None:
            token = self.variables.connection_string(target.name)
            return {f"ConnectionStrings__{connection_name}": token}
        return reference_environment(target, self.reference_context, connection_name)

    def _depends_on(self, sources: list[Resource]) -> dict[str, Any]:
        conditions: dict[str, str] = {}
        for source in sources:
            for w in source.waits:
                if not self.is_service(w.target):
                    continue
                if w.kind == "completion":
                    if w.exit_code != 0:
                        raise PublishError(
                            f"{source.name} waits for {w.target.name} to exit with code "
                            f"{w.exit_code}, which Docker Compose cannot express (only success, "
                            "code 0): wait for exit code 0 or use wait_for_start"
                        )
                    cond = "service_completed_successfully"
                elif w.kind == "healthy" and self._healthcheck(_runs(w.target), None):
                    cond = "service_healthy"
                else:
                    cond = "service_started"
                conditions[w.target.name] = cond
            targets = [ref.target for ref in source.references]
            targets += [
                v.resource for v in source.environment.values() if isinstance(v, EndpointReference)
            ]
            for t in targets:
                if self.is_service(t) and t is not source:
                    conditions.setdefault(t.name, "service_started")
        return {name: {"condition": conditions[name]} for name in sorted(conditions)}

    def _healthcheck(self, runs: Resource, python: bool | None) -> dict[str, Any] | None:
        """A Compose health check from the resource's: Redis PING with its password, an HTTP
        GET, or (Python apps) a TCP connect. None when the image has no tool for it."""
        if python is None:
            python = isinstance(runs, ExecutableResource)
        check = runs.annotation(HealthCheckAnnotation)
        if check is None:
            return None
        test: list[str] | None = None
        if isinstance(runs, RedisResource):
            ping = "redis-cli ping"
            if runs.password is not None:
                ping = 'REDISCLI_AUTH="$$REDIS_PASSWORD" redis-cli ping'
            test = ["CMD-SHELL", f'test "$$({ping})" = PONG']
        elif check.kind in ("http", "tcp") and check.endpoint in container_ports(runs):
            port = container_ports(runs)[check.endpoint]
            url = f"http://127.0.0.1:{port}{check.path or '/'}"
            if python and check.kind == "http":
                code = f"import urllib.request; urllib.request.urlopen({url!r}, timeout=4)"
                test = ["CMD", "python", "-c", code]
            elif python:
                code = f"import socket; socket.create_connection(('127.0.0.1', {port}), 4)"
                test = ["CMD", "python", "-c", code]
            elif check.kind == "http":
                test = [
                    "CMD-SHELL",
                    f"wget -q -O /dev/null {url} || curl -fsS -o /dev/null {url}",
                ]
        if test is None:
            return None
        return {"test": test, **HEALTH_TIMING}

    def _mounts(self, r: Resource, runs: Resource) -> list[str]:
        out: list[str] = []
        for m in runs.annotations_of(MountAnnotation):
            suffix = ":ro" if m.read_only else ""
            if m.kind == "volume":
                name = m.source or f"{r.name}-{_slug(m.target)}"
                self.volumes.add(name)
                out.append(f"{name}:{m.target}{suffix}")
            else:
                assert m.source is not None
                out.append(f"{self._inside(r, m.source, 'bind mount')}:{m.target}{suffix}")
        return out

    def _inside(self, r: Resource, path: object, what: str) -> str:
        """``path`` relative to the compose file; it must be inside the app host's folder so
        the published folder can be moved to another machine with it."""
        if not self.context.inside_app_host(str(path)):
            raise PublishError(
                f"{r.name}: the {what} {path} is outside the app host's folder "
                f"{self.context.app_host_dir}, so a published Docker Compose app cannot carry "
                "it: move it inside that folder (or use a named volume)"
            )
        rel = self.context.relative_path(str(path))
        return rel if rel.startswith(".") else f"./{rel}"


def _posix_relpath(path: object, start: object) -> str:
    """``path`` relative to ``start``, with ``/``."""
    rel = os.path.relpath(os.path.abspath(str(path)), os.path.abspath(str(start)))
    return PurePosixPath(*rel.split(os.sep)).as_posix()


def _slug(target: str) -> str:
    """A volume name part from a mount target (``/data`` -> ``data``)."""
    return re.sub(r"[^a-z0-9]+", "-", target.lower()).strip("-") or "data"


# --------------------------------------------------------------------------- YAML


def _key(key: str) -> str:
    if _PLAIN_KEY.fullmatch(key) and key.lower() not in _YAML_WORDS:
        return key
    return json.dumps(key)


def _scalar(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a YAML double-quoted scalar
    if isinstance(value, Mapping) and not value:
        return "{}"
    if isinstance(value, list):  # flow sequence of scalars
        return "[" + ", ".join(_scalar(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} to YAML")


def to_yaml(value: Mapping[str, Any], indent: int = 0) -> str:
    """A mapping as block YAML (nested mappings indented by two spaces; strings double-quoted,
    sequences of scalars in flow style), in the mapping's own order."""
    pad = " " * indent
    lines: list[str] = []
    for k, v in value.items():
        if isinstance(v, Mapping) and v:
            lines.append(f"{pad}{_key(k)}:")
            lines.append(to_yaml(v, indent + 2).rstrip("\n"))
        else:
            lines.append(f"{pad}{_key(k)}: {_scalar(v)}")
    return "\n".join(lines) + "\n"


__all__ = ["COMPOSE_FILE", "ENV_FILE", "ENV_HEADER", "read_env_file", "to_yaml", "write_compose"]
