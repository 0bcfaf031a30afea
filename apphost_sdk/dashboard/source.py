"""What the dashboard needs of a running app host: its resources as views, and commands.

The orchestration side implements :class:`DashboardSource`; the dashboard and the control
channel depend only on this contract (arrows point from orchestration to here).
"""

from __future__ import annotations

from typing import Protocol

import attrs

#: The commands every resource has, as in Aspire.
COMMANDS = ("start", "stop", "restart")


@attrs.frozen
class EndpointView:
    name: str
    url: str  # http://localhost:8080 or tcp://localhost:6379


@attrs.frozen
class EnvVarView:
    """One environment variable a resource was started with. ``value`` is already masked when
    ``secret`` is true; the real value is only had from :meth:`DashboardSource.reveal`."""

    name: str
    value: str
    secret: bool


@attrs.frozen
class RelationView:
    """An edge of the resource graph: this resource references or waits for ``target``."""

    target: str
    kind: str  # "reference" | "wait" (healthy) | "wait-start" | "wait-completion"


@attrs.frozen
class CommandView:
    name: str  # start | stop | restart
    enabled: bool


@attrs.frozen
class ResourceView:
    """One row of the resources page (no secret values)."""

    name: str
    kind: str
    state: str  # Aspire's state names: Running, Exited, Waiting, ...
    health: str  # Healthy | Unhealthy | Unknown
    health_reason: str | None = None
    endpoints: tuple[EndpointView, ...] = ()
    started_at: float | None = None  # seconds since the epoch
    exit_code: int | None = None
    message: str | None = None
    runtime: str | None = None
    environment: tuple[EnvVarView, ...] = ()
    relations: tuple[RelationView, ...] = ()
    commands: tuple[CommandView, ...] = ()


@attrs.frozen
class CommandResult:
    """A command's outcome. ``ok`` means the resource reached the command's state (Running
    for start and restart, Exited for stop), not just that the command was accepted."""

    ok: bool
    message: str


class DashboardSource(Protocol):
    """The running app host, as the dashboard and the control channel see it."""

    def resources(self) -> list[ResourceView]:
        """Every resource, in the order the app host added them."""
        ...

    def version(self) -> int:
        """A number that changes whenever ``resources()`` would answer differently."""
        ...

    def execute(self, resource: str, command: str) -> CommandResult:
        """Run ``command`` (start, stop, restart) on ``resource`` and wait for its outcome."""
        ...

    def reveal(self, resource: str, variable: str) -> str | None:
        """The real value of one environment variable, for an explicit "show"; None when the
        resource or variable does not exist."""
        ...
