"""The container-runtime interface: what the orchestrator needs from any way of running Redis.

The ``process`` runtime (a local ``redis-server``) and the ``docker`` runtime (Docker Engine API)
both implement it, so the orchestrator never knows which one it drives.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Literal

import attrs

#: Called from reader threads with (stream name, one line without its newline).
LineSink = Callable[[str, str], None]
Lifetime = Literal["session", "persistent"]


@attrs.frozen
class Persistence:
    """RDB snapshot settings: ``--save {interval_seconds} {keys_changed_threshold}``."""

    interval_seconds: int = 60
    keys_changed_threshold: int = 1


@attrs.frozen
class ContainerSpec:
    """Everything a runtime needs to run one Redis resource; built by the orchestrator.

    ``password`` and the values of ``environment`` may be secret: runtimes must hand them to the
    server through the environment or a 0600 file, never through process arguments or labels.
    """

    app_id: str
    app_name: str
    session_id: str
    resource_name: str
    image: str
    tag: str
    state_dir: Path
    target_port: int = 6379
    host_port: int | None = None
    password: str | None = attrs.field(default=None, repr=False)
    environment: Mapping[str, str] = attrs.field(factory=dict, repr=False)
    args: tuple[str, ...] = ()
    persistence: Persistence | None = None
    data_volume: str | None = None
    bind_mount: str | None = None
    lifetime: Lifetime = "session"
    #: Key of the HMAC that turns secrets into config-hash fields (kept in the app's state):
    #: the hash is stored in a label, and a plain hash of a weak password could be guessed.
    hash_key: str | None = attrs.field(default=None, repr=False)

    @property
    def image_ref(self) -> str:
        """The full image reference, ``image:tag``."""
        return f"{self.image}:{self.tag}"

    def redis_args(self) -> list[str]:
        """The non-secret ``redis-server`` arguments implied by persistence and ``with_args``."""
        out: list[str] = []
        if self.persistence is not None:
            out += [
                "--save",
                f"{self.persistence.interval_seconds} {self.persistence.keys_changed_threshold}",
            ]
        out += list(self.args)
        return out

    def config_hash(self) -> str:
        """A hash of the settings that define the container, without any per-run value.

        Persistent containers are reused while this stays the same. The session id and a
        dynamically allocated port are excluded; the password enters only as its own hash.
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
        pw = self._digest(self.password) if self.password else None
        return {
            "image": self.image_ref,
            "target_port": self.target_port,
            "host_port": self.host_port,
            "password": pw,
            "environment": {k: self._digest(v) for k, v in sorted(self.environment.items())},
            "args": self.redis_args(),
            "data_volume": self.data_volume,
            "bind_mount": self.bind_mount,
        }


class ContainerHandle(ABC):
    """A started Redis resource, as its runtime reports it."""

    resource_name: str
    #: Where processes on this machine reach it.
    host: str
    host_port: int
    #: Where other containers on the run's network reach it (None for the process runtime).
    network_host: str | None = None
    network_port: int | None = None

    @abstractmethod
    def exit_code(self) -> int | None:
        """The exit code once it has stopped, else None."""

    @abstractmethod
    def stop(self, grace_seconds: float = 10.0) -> None:
        """Stop it (SIGTERM, then SIGKILL after the grace period) and remove what the session
        owns; persistent resources are stopped but kept."""

    def describe(self) -> str:
        """A short human description, e.g. ``container 1a2b3c`` or ``pid 4242``."""
        return self.resource_name


class ContainerRuntime(ABC):
    """A way of running Redis resources: ``process``, ``docker`` or ``podman``."""

    name: str = "abstract"

    @abstractmethod
    def describe(self) -> str:
        """One line saying what this runtime is, e.g. the engine endpoint and version."""

    def prepare(  # noqa: B027 - an optional hook: most runtimes need no preparation
        self, specs: Sequence[ContainerSpec], progress: Callable[[str], None]
    ) -> None:
        """Do the work needed before any start (pull images in parallel, create the network).

        Raises an ``ApphostError`` naming the image or setting to fix.
        """

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
