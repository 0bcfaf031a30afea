"""The running orchestrator as the dashboard and the control channel see it
(:class:`~apphost_sdk.dashboard.source.DashboardSource`): resource views with secrets masked, and
the start/stop/restart commands."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..dashboard.source import (
    COMMANDS,
    CommandResult,
    CommandView,
    EndpointView,
    EnvVarView,
    RelationView,
    ResourceView,
)
from ..masking import SecretMasker

if TYPE_CHECKING:
    from .orchestrator import Orchestrator


class OrchestratorSource:
    """Adapts one :class:`Orchestrator` to the dashboard's contract. Every text that leaves
    here (environment values, messages, health reasons) goes through the app's masker."""

    def __init__(self, orchestrator: Orchestrator, masker: SecretMasker) -> None:
        self._orchestrator = orchestrator
        self._masker = masker

    def resources(self) -> list[ResourceView]:
        orch = self._orchestrator
        mask = self._masker.mask
        views = []
        for snap in orch.snapshots():
            details = orch.details(snap.name)
            states = orch.command_states(snap.name)
            environment = []
            for key, value in sorted(details.environment.items()):
                shown = mask(value)
                environment.append(EnvVarView(key, shown, shown != value))
            views.append(
                ResourceView(
                    name=snap.name,
                    kind=snap.kind,
                    state=snap.state.value,
                    health=snap.health.value,
                    health_reason=mask(snap.health_reason) if snap.health_reason else None,
                    endpoints=tuple(EndpointView(n, u) for n, u in details.endpoints),
                    started_at=details.started_at,
                    exit_code=snap.exit_code,
                    message=mask(snap.message) if snap.message else None,
                    runtime=snap.runtime,
                    environment=tuple(environment),
                    relations=tuple(RelationView(t, k) for t, k in details.relations),
                    commands=tuple(CommandView(c, bool(states.get(c))) for c in COMMANDS),
                )
            )
        return views

    def version(self) -> int:
        return self._orchestrator.version

    def execute(self, resource: str, command: str) -> CommandResult:
        orch = self._orchestrator
        actions = {
            "start": orch.start_resource,
            "stop": orch.stop_resource,
            "restart": orch.restart_resource,
        }
        action = actions.get(command)
        if action is None:
            return CommandResult(
                False, f"unknown command {command!r}; use one of: {', '.join(COMMANDS)}"
            )
        result = action(resource)
        return CommandResult(result.ok, self._masker.mask(result.message))

    def reveal(self, resource: str, variable: str) -> str | None:
        try:
            details = self._orchestrator.details(resource)
        except KeyError:
            return None
        return details.environment.get(variable)
