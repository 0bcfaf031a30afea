"""``DistributedApplicationBuilder``: collects resources and configuration, then builds the app."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import attrs

from ..configuration import Configuration, load_layered
from .resources import (
    AzureRedisResource,
    ConnectionStringResource,
    ExecutableResource,
    ParameterResource,
    PythonAppResource,
    RedisResource,
    Resource,
)

if TYPE_CHECKING:
    from ..orchestration.app import DistributedApplication


@attrs.frozen
class ExecutionContext:
    """Whether the app host runs the app locally (``run``) or writes deployment artefacts."""

    operation: Literal["run", "publish"] = "run"

    @property
    def is_run_mode(self) -> bool:
        return self.operation == "run"

    @property
    def is_publish_mode(self) -> bool:
        return self.operation == "publish"


class DistributedApplicationBuilder:
    """Builds the application model of one app host (see ``DistributedApplication``)."""

    def __init__(self, args: list[str] | None, app_host_path: Path) -> None:
        self.app_host_path = app_host_path
        self.app_host_directory = (
            app_host_path.parent if app_host_path.suffix == ".py" else app_host_path
        )
        self.environment = os.environ.get("APPHOST_ENVIRONMENT") or "Development"
        argv = list(sys.argv[1:] if args is None else args)
        self.configuration: Configuration
        self.configuration, self.args = load_layered(
            self.app_host_directory, self.environment, argv
        )
        publisher = self.configuration.get_str("publisher")
        self.execution_context = ExecutionContext("publish" if publisher else "run")
        self.resources: list[Resource] = []

    def _add(self, resource: Resource) -> None:
        self.resources.append(resource)

    # -- resources ------------------------------------------------------------------------
    def add_redis(
        self, name: str, port: int | None = None, password: ParameterResource | None = None
    ) -> RedisResource:
        """A local Redis server (container, or ``redis-server`` process without an engine).

        A password is generated and kept across runs unless ``password`` is given.
        """
        r = RedisResource(self, name, port=port, password=password)
        self._add(r)
        return r

    def add_azure_redis(self, name: str) -> AzureRedisResource:
        """An Azure Cache for Redis (Entra ID auth by default); ``run_as_container()`` runs a
        local Redis instead in run mode."""
        r = AzureRedisResource(self, name)
        self._add(r)
        return r

    def add_parameter(
        self, name: str, value: str | None = None, secret: bool = False
    ) -> ParameterResource:
        """A named value: ``value``, else configuration ``Parameters:{name}``, else (secrets
        only) one generated on first run and kept in the app's state directory."""
        p = ParameterResource(self, name, value, secret)
        self._add(p)
        return p

    def add_connection_string(self, name: str) -> ConnectionStringResource:
        """An existing service whose connection string is configuration
        ``ConnectionStrings:{name}``."""
        r = ConnectionStringResource(self, name)
        self._add(r)
        return r

    def add_executable(
        self, name: str, command: str, working_directory: str, *args: str
    ) -> ExecutableResource:
        """Any program, run from ``working_directory`` (relative to the app host)."""
        r = ExecutableResource(
            self, name, command, self._resolve(working_directory), [str(a) for a in args]
        )
        self._add(r)
        return r

    def add_python_app(
        self, name: str, app_directory: str, script: str, *args: str
    ) -> PythonAppResource:
        """A Python script in ``app_directory`` (relative to the app host), run with the app's
        own ``.venv`` interpreter when it has one, else with this interpreter."""
        directory = self._resolve(app_directory)
        r = PythonAppResource(self, name, script, directory, [str(a) for a in args])
        self._add(r)
        return r

    def _resolve(self, path: str) -> str:
        p = Path(path)
        return str(p if p.is_absolute() else self.app_host_directory / p)

    # -- build ----------------------------------------------------------------------------
    def build(self) -> DistributedApplication:
        """Validate the model (raising ``ValidationError`` with every problem) and return the
        application, ready to ``run()`` or ``start()``."""
        from ..orchestration.app import DistributedApplication
        from .validation import validate

        validate(self)
        return DistributedApplication(self)
