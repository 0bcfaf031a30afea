"""Executables and Python apps: programs run as child processes of the app host.

Like containers they are only annotations: an ``ExecutableAnnotation`` whose ``resolve()`` finds
the program when the app starts, arguments, endpoints (a port handed over in a variable),
environment and health checks.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ApphostError
from .annotations import (
    ArgsAnnotation,
    EndpointAnnotation,
    EnvironmentAnnotation,
    ExecutableAnnotation,
    HealthCheckAnnotation,
    OtlpExporterAnnotation,
)
from .arguments import (
    optional_port,
    require_args,
    require_env_name,
    require_url_path,
    wrong_value,
)
from .containers import require_endpoint
from .resources import ParameterResource, Resource

if TYPE_CHECKING:
    from .builder import DistributedApplicationBuilder

_BIN = "Scripts" if os.name == "nt" else "bin"
_EXE = ".exe" if os.name == "nt" else ""


def find_tool(name: str, app_directory: Path | None = None) -> str | None:
    """A program by name: the app's ``.venv``, else the app host's own environment, else PATH."""
    candidates: list[Path] = []
    if app_directory is not None:
        candidates.append(app_directory / ".venv" / _BIN / f"{name}{_EXE}")
    candidates.append(Path(sys.executable).parent / f"{name}{_EXE}")
    candidates.append(Path(sys.prefix) / _BIN / f"{name}{_EXE}")
    for c in candidates:
        if c.is_file() and os.access(c, os.X_OK):
            return str(c)
    return shutil.which(name)


def python_interpreter(app_directory: Path) -> str:
    """The app's own ``.venv`` interpreter when it has one, else the app host's."""
    venv = app_directory / ".venv" / _BIN / f"python{_EXE}"
    return str(venv) if venv.exists() else sys.executable


class ExecutableResource(Resource):
    """A program run as a child process of the app host, with its output streamed."""

    kind = "executable"

    def __init__(
        self,
        builder: DistributedApplicationBuilder,
        name: str,
        command: str,
        working_directory: str,
        args: list[str],
    ) -> None:
        super().__init__(builder, name)
        self.command = command
        self.working_directory = working_directory
        self.annotations.append(ExecutableAnnotation(Path(working_directory), self._resolve))
        # A service of the app: in run mode it is pointed at the dashboard's OTLP receiver.
        self.annotations.append(OtlpExporterAnnotation())
        if args:
            self.annotations.append(ArgsAnnotation(tuple(args)))

    @property
    def args(self) -> list[str]:
        """The literal arguments added so far."""
        return [str(a) for ann in self.annotations_of(ArgsAnnotation) for a in ann.args]

    def _working_directory(self) -> Path:
        cwd = Path(self.working_directory)
        if not cwd.is_dir():
            raise ApphostError(f"working directory {cwd} does not exist; create it or fix the path")
        return cwd

    def _resolve(self) -> list[str]:
        """The program to run: a path (relative to the working directory) or a name found in
        the app host's environment or on PATH."""
        cwd = self._working_directory()
        command = self.command
        if os.sep not in command and (os.altsep is None or os.altsep not in command):
            found = find_tool(command, cwd)
            if found is None:
                raise ApphostError(
                    f"command {command!r} was not found in {cwd / '.venv'}, the app host's "
                    "environment or on PATH; install it"
                )
            return [found]
        if not os.path.isabs(command):
            command = str(cwd / command)
        return [command]

    def with_http_endpoint(
        self, port: int | None = None, env: str = "PORT", *, name: str = "http"
    ) -> ExecutableResource:
        """Give it an HTTP port (a free one unless ``port``) in the variable ``env``; it counts
        as healthy once the port accepts connections."""
        where = f"{self.name}.with_http_endpoint"
        self._endpoint(where, port, env, name, "http")
        if self.annotation(HealthCheckAnnotation) is None:
            self.annotations.append(HealthCheckAnnotation("tcp", name))
        return self

    def with_endpoint(
        self, port: int | None = None, *, env: str, name: str = "tcp", scheme: str = "tcp"
    ) -> ExecutableResource:
        """Another endpoint (a free port unless ``port``), handed to the program in ``env``."""
        self._endpoint(f"{self.name}.with_endpoint", port, env, name, scheme)
        return self

    def _endpoint(
        self, where: str, port: object, env: object, name: object, scheme: object
    ) -> None:
        port = optional_port(port, where, example=8000)
        env = require_env_name(env, where, "env", "PORT")
        name, scheme = require_endpoint(where, name, scheme)
        self.replace_annotation(
            EndpointAnnotation(name, None, port, scheme, env),
            same=EndpointAnnotation,
            name=name,
        )

    @property
    def http_endpoint(self) -> EndpointAnnotation | None:
        """The ``http`` endpoint, when there is one."""
        for e in self.annotations_of(EndpointAnnotation):
            if e.name == "http":
                return e
        return None

    def with_http_health_check(self, path: str = "/health") -> ExecutableResource:
        """Count it healthy only when ``GET path`` on its HTTP endpoint answers 2xx."""
        where = f"{self.name}.with_http_health_check"
        path = require_url_path(path, where)
        if self.http_endpoint is None:
            raise wrong_value(
                where,
                "the resource has no HTTP endpoint",
                f"call {self.name}.with_http_endpoint() before with_http_health_check()",
            )
        self.replace_annotation(HealthCheckAnnotation("http", "http", path))
        return self

    def with_args(self, *args: str) -> ExecutableResource:
        """Append command-line arguments."""
        self.annotations.append(ArgsAnnotation(tuple(require_args(args, f"{self.name}.with_args"))))
        return self


def _app_directory_problem(r: ExecutableResource, method: str) -> str | None:
    """A Python app's folder that does not exist (checked by ``build()``, before anything
    starts, rather than when the app is started)."""
    cwd = Path(r.working_directory)
    if cwd.is_dir():
        return None
    what = "is not a folder" if cwd.exists() else "does not exist"
    return (
        f"{r.name}: the app_directory {cwd} {what}: create it or fix the app_directory passed "
        f"to {method}({r.name!r}, ...)"
    )


class PythonAppResource(ExecutableResource):
    """A Python script run with the app's own ``.venv`` when it has one."""

    kind = "python-app"

    def problems(self, value_of: Callable[[ParameterResource], str | None]) -> list[str]:
        """The app's folder and script must exist."""
        out = super().problems(value_of)
        folder = _app_directory_problem(self, "add_python_app")
        if folder is not None:
            return [*out, folder]
        script = Path(self.working_directory) / self.command
        if not script.is_file():
            what = "is not a file" if script.exists() else "does not exist"
            out.append(
                f"{self.name}: the script {script} {what}: create it or fix the script passed "
                f"to add_python_app({self.name!r}, ...) (a path relative to the app_directory)"
            )
        return out

    def _resolve(self) -> list[str]:
        cwd = self._working_directory()
        script = cwd / self.command
        if not script.is_file():
            raise ApphostError(f"script {script} does not exist; fix add_python_app()")
        return [python_interpreter(cwd), "-u", str(script)]


class PythonModuleResource(ExecutableResource):
    """``python -m package.module`` run with the app's own ``.venv`` when it has one."""

    kind = "python-module"

    def problems(self, value_of: Callable[[ParameterResource], str | None]) -> list[str]:
        """The app's folder must exist."""
        folder = _app_directory_problem(self, "add_python_module")
        return [*super().problems(value_of), *([folder] if folder is not None else [])]

    def _resolve(self) -> list[str]:
        cwd = self._working_directory()
        return [python_interpreter(cwd), "-u", "-m", self.command]


class UvicornAppResource(ExecutableResource):
    """An ASGI app served by uvicorn (found in the app's ``.venv``, the app host's environment
    or PATH) on an HTTP endpoint."""

    kind = "uvicorn-app"

    def __init__(
        self, builder: DistributedApplicationBuilder, name: str, app: str, working_directory: str
    ) -> None:
        super().__init__(builder, name, "uvicorn", working_directory, [app])
        self.annotations.append(EnvironmentAnnotation("UVICORN_HOST", "127.0.0.1"))
        self.with_http_endpoint()

    def problems(self, value_of: Callable[[ParameterResource], str | None]) -> list[str]:
        """The app's folder must exist."""
        folder = _app_directory_problem(self, "add_uvicorn_app")
        return [*super().problems(value_of), *([folder] if folder is not None else [])]

    def with_http_endpoint(
        self, port: int | None = None, env: str = "UVICORN_PORT", *, name: str = "http"
    ) -> ExecutableResource:
        """The HTTP port uvicorn listens on (a free one unless ``port``), handed over in
        ``UVICORN_PORT``, which uvicorn reads itself."""
        return super().with_http_endpoint(port, env, name=name)

    def _resolve(self) -> list[str]:
        cwd = self._working_directory()
        found = find_tool("uvicorn", cwd)
        if found is None:
            raise ApphostError(
                f"uvicorn was not found in {cwd / '.venv'}, the app host's environment or on "
                "PATH; install it (pip install uvicorn)"
            )
        return [found]
