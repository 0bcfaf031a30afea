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
    """Whether one wait or reference of a resource is met, still pending, or failed."""

    MET = "met"
    PENDING = "pending"
    FAILED = "failed"


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
        }
