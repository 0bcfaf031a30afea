"""``DistributedApplicationBuilder``: collects resources and configuration, then builds the app."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import attrs

from ..configuration import Configuration, load_layered
from ..errors import ModelArgumentError
from .arguments import require_args, require_name, require_path
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
        argv = sys.argv[1:] if args is None else _check_args(args)
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
        require_name(name, "add_redis", "cache")
        r = RedisResource(self, name, port=port, password=password)
        self._add(r)
        return r

    def add_azure_redis(self, name: str) -> AzureRedisResource:
        """An Azure Cache for Redis (Entra ID auth by default); ``run_as_container()`` runs a
        local Redis instead in run mode."""
        require_name(name, "add_azure_redis", "cache")
        r = AzureRedisResource(self, name)
        self._add(r)
        return r

    def add_parameter(
        self, name: str, value: str | None = None, secret: bool = False
    ) -> ParameterResource:
        """A named value: ``value``, else configuration ``Parameters:{name}``, else (secrets
        only) one generated on first run and kept in the app's state directory."""
        require_name(name, "add_parameter", "cache-password")
        p = ParameterResource(self, name, value, secret)
        self._add(p)
        return p

    def add_connection_string(self, name: str) -> ConnectionStringResource:
        """An existing service whose connection string is configuration
        ``ConnectionStrings:{name}``."""
        require_name(name, "add_connection_string", "db")
        r = ConnectionStringResource(self, name)
        self._add(r)
        return r

    def add_executable(
        self,
        name: str,
        command: str | os.PathLike[str],
        working_directory: str | os.PathLike[str],
        *args: str,
    ) -> ExecutableResource:
        """Any program, run from ``working_directory`` (relative to the app host)."""
        require_name(name, "add_executable", "worker")
        where = f"add_executable({name!r})"
        command = require_path(
            command, where, "command", "pass the program to run, such as 'python' or './run.sh'"
        )
        directory = require_path(
            working_directory,
            where,
            "working_directory",
            "pass the folder to run it from, such as '.' (relative to the app host)",
        )
        r = ExecutableResource(
            self, name, command, self._resolve(directory), require_args(args, where)
        )
        self._add(r)
        return r

    def add_python_app(
        self,
        name: str,
        app_directory: str | os.PathLike[str],
        script: str | os.PathLike[str],
        *args: str,
    ) -> PythonAppResource:
        """A Python script in ``app_directory`` (relative to the app host), run with the app's
        own ``.venv`` interpreter when it has one, else with this interpreter."""
        require_name(name, "add_python_app", "api")
        where = f"add_python_app({name!r})"
        directory = require_path(
            app_directory,
            where,
            "app_directory",
            "pass the app's folder, such as 'api' (relative to the app host)",
        )
        script = require_path(
            script, where, "script", "pass the script's file name in that folder, such as 'app.py'"
        )
        r = PythonAppResource(
            self, name, script, self._resolve(directory), require_args(args, where)
        )
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


def _check_args(args: object) -> list[str]:
    """``create_builder(args)``: a list of ``--Key=Value`` strings. Values may be secret, so a
    bad one is named by its position and type only."""
    fix = "pass a list of strings such as ['--Key=Value'], or None for sys.argv[1:]"
    if not isinstance(args, (list, tuple)):
        raise ModelArgumentError(
            f"create_builder(args): args must be a list, got {type(args).__name__}; {fix}"
        )
    for i, a in enumerate(args):
        if not isinstance(a, str):
            raise ModelArgumentError(
                f"create_builder(args): args[{i}] must be a string, got {type(a).__name__}; {fix}"
            )
    return list(args)
