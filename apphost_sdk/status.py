"""The status file of a running app host (``status.json`` in its state folder), typed.

The app host writes an ``AppStatus``; the CLI (``status``, ``start``, ``stop``) reads the JSON
back. A leaf module: both sides import it, it imports neither.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from typing import Any

import attrs


class AppPhase(str, enum.Enum):
    """Where an app host run is: built, starting, ready (all healthy), stopping, stopped or
    failed."""

    BUILT = "built"
    STARTING = "starting"
    READY = "ready"
    STOPPING = "stopping"
    STOPPED = "stopped"
    FAILED = "failed"

    @property
    def is_running(self) -> bool:
        """True while the app host runs (its pid may be signalled by ``apphost stop``)."""
        return self in (AppPhase.STARTING, AppPhase.READY)

    def __str__(self) -> str:
        return self.value


@attrs.frozen
class ResourceStatus:
    """One resource in the status file: its snapshot (JSON form: ``name``, ``kind``,
    ``state``, ``health``, ``healthReason`` (why it is not healthy, else null), ``endpoint``,
    ``exitCode``, ``message``, ``runtime``, ``stoppedByCommand`` (stopped by ``apphost
    resource``/the dashboard, not a failure), ``heldBackBy`` (the stopped resources a Waiting
    one waits for)) and what a reference to it injects, raw (the file is 0600) and masked (safe
    to show)."""

    snapshot: Mapping[str, object]
    injects: Mapping[str, str] = attrs.field(factory=dict, repr=False)
    injects_masked: Mapping[str, str] = attrs.field(factory=dict)

    def to_json(self) -> dict[str, object]:
        return {
            **self.snapshot,
            "injects": dict(self.injects),
            "injectsMasked": dict(self.injects_masked),
        }


@attrs.frozen
class AppStatus:
    """The whole status file of one run."""

    app: str
    app_id: str
    app_host: str
    pid: int
    pid_start: str
    phase: AppPhase
    error: str | None
    updated: str
    resources: Sequence[ResourceStatus] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "app": self.app,
            "appId": self.app_id,
            "appHost": self.app_host,
            "pid": self.pid,
            "pidStart": self.pid_start,
            "phase": self.phase.value,
            "error": self.error,
            "updated": self.updated,
            "resources": [r.to_json() for r in self.resources],
        }


def phase_of(status: Mapping[str, Any] | None) -> AppPhase | None:
    """The phase recorded in a status file's JSON, or None when it is missing or unknown."""
    if not isinstance(status, Mapping):
        return None
    try:
        return AppPhase(status.get("phase"))
    except ValueError:
        return None
