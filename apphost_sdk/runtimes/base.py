"""The runtime interface: what the orchestrator hands a container engine, and what it gets back.

A ``ContainerSpec`` is generic (image, command, ports, mounts, environment, labels); the
``docker`` runtime (Docker Engine API, also Podman) runs it. A resource that can also run as a
plain process (Redis without an engine) is started by the ``process`` runtime from the recipe
its resource type provides (``ProcessSpec``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import attrs

#: Called from reader threads with (stream name, one line without its newline).
LineSink = Callable[[str, str], None]
Lifetime = Literal["session", "persistent"]


@attrs.frozen
class PortSpec:
    """One published port: ``target_port`` inside, ``host_port`` on 127.0.0.1 (None: free)."""

    name: str
    target_port: int
    host_port: int | None = None


@attrs.frozen
class MountSpec:
    """A volume (``source`` its name; None: derived per app, resource and target) or a bind
    mount (``source`` an absolute path)."""

    source: str | None
    target: str
    kind: Literal["volume", "bind"] = "volume"
    read_only: bool = False


@attrs.frozen
class BuildSpec:
    """Build the image from ``context`` with ``dockerfile`` before running it."""

    context: Path
    dockerfile: str = "Dockerfile"


@attrs.frozen
class ContainerSpec:
    """Everything a container runtime needs to run one resource; built by the orchestrator.

    The values of ``environment`` may be secret: runtimes hand them to the container through its
    environment only, never through arguments or labels (labels carry names and keyed hashes).
    """

    app_id: str
    app_name: str
    session_id: str
    resource_name: str
    image: str
    tag: str
    state_dir: Path
    ports: tuple[PortSpec, ...] = ()
    entrypoint: tuple[str, ...] | None = None
    #: None keeps the image's CMD.
    args: tuple[str, ...] | None = None
    environment: Mapping[str, str] = attrs.field(factory=dict, repr=False)
    mounts: tuple[MountSpec, ...] = ()
    lifetime: Lifetime = "session"
    container_name: str | None = None
    #: Engine options from ``with_container_runtime_args`` (already checked by the model).
    options: Mapping[str, Any] = attrs.field(factory=dict)
    build: BuildSpec | None = None
    #: Join the run's network under the resource name (False when no other container of the
    #: app talks to this one or is talked to by it: a network costs start-up time).
    network: bool = True
    #: Key of the HMAC that turns secrets into config-hash fields (kept in the app's state):
    #: the hash is stored in a label, and a plain hash of a weak password could be guessed.
    hash_key: str | None = attrs.field(default=None, repr=False)

    @property
    def image_ref(self) -> str:
        """The full image reference, ``image:tag``."""
        return f"{self.image}:{self.tag}"

    def port(self, name: str) -> PortSpec | None:
        """The port of endpoint ``name``."""
        return next((p for p in self.ports if p.name == name), None)

    def config_hash(self) -> str:
        """A hash of the settings that define the container, without any per-run value.

        Persistent containers are reused while this stays the same. The session id and
        dynamically allocated ports are excluded; secrets enter only as keyed hashes.
        """
        return hashlib.sha256(
            json.dumps(self.config_fields(), sort_keys=True).encode()
        ).hexdigest()[:16]

    def _digest(self, value: str) -> str:
        if self.hash_key:
            return hmac.new(self.hash_key.encode(), value.encode(), "sha256").hexdigest()[:16]
        return hashlib.sha256(value.encode()).hexdigest()[:16]

    def config_fields(self) -> dict[str, object]:
        """The settings ``config_hash`` covers, by name (used to say which one changed)."""
        return {
            "image": self.image_ref,
            "ports": {p.name: [p.target_port, p.host_port] for p in self.ports},
            "environment": {k: self._digest(v) for k, v in sorted(self.environment.items())},
            "entrypoint": list(self.entrypoint) if self.entrypoint is not None else None,
            "args": self._digest(json.dumps(self.args)) if self.args is not None else None,
            "mounts": [attrs.astuple(m) for m in self.mounts],
            "options": {k: str(v) for k, v in sorted(self.options.items())},
        }


@attrs.frozen
class ProcessSpec:
    """A resource run as a local process from its type's recipe (``ProcessFallbackAnnotation``).

    ``recipe(port, bind_addresses, scratch_dir, mount_dirs)`` returns ``(argv, cwd,
    environment, private_files)``.
    """

    app_id: str
    session_id: str
    resource_name: str
    state_dir: Path
    host_port: int | None
    mounts: tuple[MountSpec, ...]
    bind_addresses: tuple[str, ...]
    recipe: Callable[
        [int, tuple[str, ...], Path, Mapping[str, Path]],
        tuple[Sequence[str], Path, Mapping[str, str], Mapping[Path, str]],
    ] = attrs.field(eq=False)
    endpoint: str = "tcp"
    ready_marker: str | None = None
    port_conflict_marker: str | None = None
    #: ``persistent``: the process still stops with its app host, but its port and kept data
    #: (``{state_dir}/volumes/``) stay for the next run, until ``apphost down --volumes``.
    lifetime: Lifetime = "session"


class ContainerHandle(ABC):
    """A started resource, as its runtime reports it."""

    resource_name: str
    #: Where processes on this machine reach it.
    host: str
    #: The published host port of each endpoint, by endpoint name.
    host_ports: dict[str, int]
    #: True when it runs in a container on the app's network (reachable by its name there).
    in_container: bool = False

    @property
    def host_port(self) -> int:
        """The host port of the first endpoint."""
        return next(iter(self.host_ports.values()))

    @abstractmethod
    def exit_code(self) -> int | None:
        """The exit code once it has stopped, else None."""

    @abstractmethod
    def stop(self, grace_seconds: float = 10.0) -> None:
        """Let it go at the end of the run: stop it (SIGTERM, then SIGKILL after the grace
        period) and remove what the session owns. A persistent container is left running, as
        in Aspire, for the next run to reuse; a persistent process stops but keeps its port and
        data. Only ``apphost down --volumes`` removes persistent resources."""

    def describe(self) -> str:
        """A short human description, e.g. ``container 1a2b3c`` or ``pid 4242``."""
        return self.resource_name


class ContainerRuntime(ABC):
    """A container engine: ``docker`` or ``podman``."""

    name: str = "abstract"

    @abstractmethod
    def describe(self) -> str:
        """One line saying what this runtime is, e.g. the engine endpoint and version."""

    def prepare(  # noqa: B027 - an optional hook: most runtimes need no preparation
        self, images: Sequence[str], progress: Callable[[str], None]
    ) -> None:
        """Pull missing images in parallel before any start. Raises ``ImageUnavailableError``
        naming each image that cannot be had."""

    def host_gateway(self) -> str | None:
        """The address of this machine as containers see it (the bridge gateway), if known."""
        return None

    @abstractmethod
    def start(self, spec: ContainerSpec, on_line: LineSink) -> ContainerHandle:
        """Start one resource and stream its output lines to ``on_line``; returns once started
        (not necessarily healthy). Raises ``ResourceStartError`` naming the resource."""

    def cleanup_orphans(self) -> list[str]:
        """Remove what earlier app hosts left behind when their process died; returns what
        was removed, one description each. Persistent resources are kept."""
        return []

    def close(self) -> None:  # noqa: B027 - an optional hook
        """Release what the run itself owns (its network, client connections)."""
