"""``DistributedApplicationBuilder``: collects resources and configuration, then builds the app."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import attrs

from ..configuration import Configuration, load_layered
from ..errors import ModelArgumentError
from .arguments import require_args, require_name, require_path, require_str, wrong_type
from .containers import ContainerResource, DockerfileResource
from .executables import (
    ExecutableResource,
    PythonAppResource,
    PythonModuleResource,
    UvicornAppResource,
)
from .resources import ConnectionStringResource, ParameterResource, Resource

if TYPE_CHECKING:
    from ..integrations.azure_managed_redis import AzureManagedRedisResource
    from ..integrations.azure_redis import AzureRedisResource
    from ..integrations.redis import RedisResource

T = TypeVar("T", bound=Resource)

#: Makes the application object from a validated builder. Registered by the orchestration
#: package when it is imported (``DistributedApplication``), so the model imports nothing of it.
AppFactory = Callable[["DistributedApplicationBuilder"], Any]
_default_app_factory: AppFactory | None = None


def register_app_factory(factory: AppFactory) -> None:
    """Make ``build()`` return ``factory(builder)`` (done by ``apphost_sdk.orchestration``)."""
    global _default_app_factory
    _default_app_factory = factory


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

    def __init__(
        self, args: list[str] | None, app_host_path: Path, app_factory: AppFactory | None = None
    ) -> None:
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
        self._app_factory = app_factory
        self._before_build: list[Callable[[], None]] = []

    # -- the extension point ----------------------------------------------------------------
    def add_resource(self, resource: T) -> T:
        """Add a resource made by an integration (``add_x(builder, name)``) and return it.

        Its name is checked by ``build()`` with every other problem of the model.
        """
        if not isinstance(resource, Resource):
            raise wrong_type(
                "add_resource",
                "resource",
                "a Resource",
                resource,
                "pass an instance of a Resource subclass, e.g. ContainerResource(builder, 'x', "
                "'image')",
            )
        if resource.builder is not self:
            raise ModelArgumentError(
                f"add_resource({resource.name!r}): the resource was made for another builder; "
                "create it with this builder"
            )
        if resource in self.resources:
            return resource
        self.resources.append(resource)
        return resource

    def before_build(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` at the start of ``build()``, once every resource is added (an
        integration connects to resources added after it, as Aspire's eventing allows)."""
        self._before_build.append(callback)

    # -- resources ------------------------------------------------------------------------
    def add_redis(
        self, name: str, port: int | None = None, password: ParameterResource | None = None
    ) -> RedisResource:
        """A local Redis server (container, or ``redis-server`` process without an engine).

        A password is generated and kept across runs unless ``password`` is given.
        """
        from ..integrations.redis import add_redis

        require_name(name, "add_redis", "cache")
        return add_redis(self, name, port=port, password=password)

    def add_azure_managed_redis(self, name: str) -> AzureManagedRedisResource:
        """An Azure Managed Redis cache (``Microsoft.Cache/redisEnterprise``, port 10000, Entra
        ID by default); ``run_as_container()`` runs a local Redis instead in run mode."""
        from ..integrations.azure_managed_redis import add_azure_managed_redis

        require_name(name, "add_azure_managed_redis", "cache")
        return add_azure_managed_redis(self, name)

    def add_azure_redis(self, name: str) -> AzureRedisResource:
        """An Azure Cache for Redis (Entra ID auth by default); ``run_as_container()`` runs a
        local Redis instead in run mode. Azure is retiring it: new apps should use
        :meth:`add_azure_managed_redis`."""
        from ..integrations.azure_redis import add_azure_redis

        require_name(name, "add_azure_redis", "cache")
        return add_azure_redis(self, name)

    def add_container(self, name: str, image: str, tag: str = "latest") -> ContainerResource:
        """A container of any image (Aspire's ``AddContainer``); configure it with
        ``with_endpoint``, ``with_environment``, ``with_args``, ``with_volume`` and so on."""
        require_name(name, "add_container", "db")
        tag = require_str(tag, f"add_container({name!r})", "tag", "pass a tag such as '16'")
        return self.add_resource(ContainerResource(self, name, image, tag))

    def add_dockerfile(
        self,
        name: str,
        context_dir: str | os.PathLike[str],
        dockerfile: str | None = None,
    ) -> ContainerResource:
        """A container whose image the engine builds from ``context_dir`` (relative to the app
        host) and ``dockerfile`` (default ``Dockerfile`` in it), rebuilt when the context
        changes."""
        require_name(name, "add_dockerfile", "api")
        where = f"add_dockerfile({name!r})"
        context = require_path(
            context_dir, where, "context_dir", "pass the build context folder, such as 'api'"
        )
        if dockerfile is not None:
            dockerfile = require_path(
                dockerfile, where, "dockerfile", "pass the Dockerfile's path in the context"
            )
        return self.add_resource(DockerfileResource(self, name, self._resolve(context), dockerfile))

    def add_parameter(
        self, name: str, value: str | None = None, secret: bool = False
    ) -> ParameterResource:
        """A named value: ``value``, else configuration ``Parameters:{name}``, else (secrets
        only) one generated on first run and kept in the app's state directory."""
        require_name(name, "add_parameter", "cache-password")
        return self.add_resource(ParameterResource(self, name, value, secret))

    def add_connection_string(self, name: str) -> ConnectionStringResource:
        """An existing service whose connection string is configuration
        ``ConnectionStrings:{name}``."""
        require_name(name, "add_connection_string", "db")
        return self.add_resource(ConnectionStringResource(self, name))

    def add_executable(
        self,
        name: str,
        command: str | os.PathLike[str],
        working_directory: str | os.PathLike[str],
        *args: str,
    ) -> ExecutableResource:
        """Any program, run from ``working_directory`` (relative to the app host); a bare name
        is found in the app host's environment, then on PATH."""
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
        return self.add_resource(
            ExecutableResource(
                self, name, command, self._resolve(directory), require_args(args, where)
            )
        )

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
        directory = self._app_directory(where, app_directory)
        script = require_path(
            script, where, "script", "pass the script's file name in that folder, such as 'app.py'"
        )
        return self.add_resource(
            PythonAppResource(self, name, script, directory, require_args(args, where))
        )

    def add_python_module(
        self, name: str, app_directory: str | os.PathLike[str], module: str, *args: str
    ) -> PythonModuleResource:
        """``python -m module`` from ``app_directory``, with the app's own ``.venv`` when it
        has one."""
        require_name(name, "add_python_module", "worker")
        where = f"add_python_module({name!r})"
        directory = self._app_directory(where, app_directory)
        module = _require_dotted(where, "module", module, "package.module")
        return self.add_resource(
            PythonModuleResource(self, name, module, directory, require_args(args, where))
        )

    def add_uvicorn_app(
        self, name: str, app_directory: str | os.PathLike[str], app: str
    ) -> UvicornAppResource:
        """An ASGI app (``"module:attribute"``) served by uvicorn on an HTTP endpoint; add
        ``with_http_health_check(path)`` to count it healthy only when that path answers."""
        require_name(name, "add_uvicorn_app", "api")
        where = f"add_uvicorn_app({name!r})"
        directory = self._app_directory(where, app_directory)
        module, _, attribute = require_str(app, where, "app", "pass e.g. 'main:app'").partition(":")
        _require_dotted(where, "app", module, "main:app")
        if not attribute.isidentifier():
            raise wrong_type(where, "app", "'module:attribute'", app, "pass e.g. 'main:app'")
        return self.add_resource(UvicornAppResource(self, name, app, directory))

    def _app_directory(self, where: str, app_directory: object) -> str:
        directory = require_path(
            app_directory,
            where,
            "app_directory",
            "pass the app's folder, such as 'api' (relative to the app host)",
        )
        return self._resolve(directory)

    def _resolve(self, path: str) -> str:
        p = Path(path)
        return str(p if p.is_absolute() else self.app_host_directory / p)

    # -- build ----------------------------------------------------------------------------
    def build(self) -> Any:
        """Validate the model (raising ``ValidationError`` with every problem) and return the
        application, ready to ``run()`` or ``start()``."""
        from .validation import validate

        for callback in self._before_build:
            callback()
        validate(self)
        factory = self._app_factory or _default_app_factory
        if factory is None:
            from ..errors import ApphostError

            raise ApphostError(
                "no application type is registered; create the builder with "
                "DistributedApplication.create_builder() (from apphost_sdk)"
            )
        return factory(self)


def _require_dotted(where: str, what: str, value: object, example: str) -> str:
    text = require_str(value, where, what, f"pass e.g. {example!r}")
    if not all(part.isidentifier() for part in text.split(".")):
        raise wrong_type(where, what, "a dotted module name", value, f"pass e.g. {example!r}")
    return text


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
