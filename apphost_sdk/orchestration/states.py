"""Resource states and the snapshot the console, status file and CLI show."""

from __future__ import annotations

import enum

import attrs


class State(str, enum.Enum):
    """A resource's lifecycle state, named as in Aspire."""

    NOT_STARTED = "NotStarted"
    WAITING = "Waiting"
    PROVISIONING = "Provisioning"
    PROVISIONED = "Provisioned"
    STARTING = "Starting"
    RUNNING = "Running"
    STOPPING = "Stopping"
    EXITED = "Exited"
    FINISHED = "Finished"
    FAILED_TO_START = "FailedToStart"
    FAILED_TO_PROVISION = "Failed to provision"

    @property
    def is_failure(self) -> bool:
        return self in (State.FAILED_TO_START, State.FAILED_TO_PROVISION)


class DependencyStatus(enum.Enum):
    """Whether one wait or reference of a resource is met, still pending, failed, or held: its
    target was stopped by a command (or is itself held back by one), so the dependent waits
    for someone to start it again and counts as settled meanwhile."""

    MET = "met"
    PENDING = "pending"
    FAILED = "failed"
    HELD = "held"


class Health(str, enum.Enum):
    """Health beside the state; ``Unknown`` until the first check."""

    UNKNOWN = "Unknown"
    HEALTHY = "Healthy"
    UNHEALTHY = "Unhealthy"


@attrs.frozen
class ResourceSnapshot:
    """What is known of one resource at one moment (no secret values)."""

    name: str
    kind: str
    state: State
    health: Health = Health.UNKNOWN
    endpoint: str | None = None
    exit_code: int | None = None
    message: str | None = None
    runtime: str | None = None
    #: Why it is not healthy (yet), from its last failed health check: "GET /health answered
    #: 404", "connection refused on port 8080", "its health probe failed"; None when healthy.
    health_reason: str | None = None
    #: Stopped by a stop command (Exited, or Stopping): no failure, and settled for start-up.
    stopped_by_command: bool = False
    #: The command-stopped resources a Waiting resource waits for (and nothing else): it is
    #: held back, settled for start-up, and goes on once they are started again.
    held_back_by: tuple[str, ...] = ()

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "kind": self.kind,
            "state": self.state.value,
            "health": self.health.value,
            "healthReason": self.health_reason,
            "endpoint": self.endpoint,
            "exitCode": self.exit_code,
            "message": self.message,
            "runtime": self.runtime,
            "stoppedByCommand": self.stopped_by_command,
            "heldBackBy": list(self.held_back_by),
        }
