"""Dockerfiles for Python apps, shared by the manifest and Docker Compose publishers.

A Python app (``add_python_app``, ``add_python_module``, ``add_uvicorn_app``) publishes as a
container built from its folder: the user's own ``Dockerfile`` when the folder has one, else a
generated ``NAME.Dockerfile`` that installs ``requirements.txt`` or the ``pyproject.toml``
project (uvicorn itself for a uvicorn app with neither) and runs the same command as run mode.
It copies the whole folder (``COPY . .``), so keep ``.env`` files and virtual environments out
of it. The base image is the build argument ``PYTHON_IMAGE`` (default ``python:3.12-slim``),
so an offline machine can build on a local one.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..model.annotations import ArgsAnnotation, EndpointAnnotation
from ..model.executables import (
    ExecutableResource,
    PythonAppResource,
    PythonModuleResource,
    UvicornAppResource,
)
from ..model.resources import ParameterResource, Resource
from .context import PublishError

#: The base image of generated Dockerfiles (override with ``--build-arg PYTHON_IMAGE=...``).
DEFAULT_PYTHON_IMAGE = "python:3.12-slim"
#: The first port given to an endpoint whose port the app host allocates in run mode.
DEFAULT_CONTAINER_PORT = 8000
#: Where the app's folder is copied inside the image.
APP_DIR = "/app"

PYTHON_APP_TYPES = (PythonAppResource, PythonModuleResource, UvicornAppResource)


def is_python_app(resource: Resource) -> bool:
    """True for the Python app types that publish as a container built from their folder."""
    return isinstance(resource, PYTHON_APP_TYPES)


def app_folder(resource: ExecutableResource) -> Path:
    """The Python app's folder (the build context)."""
    return Path(resource.working_directory)


def user_dockerfile(resource: ExecutableResource) -> Path | None:
    """The app folder's own ``Dockerfile``, which is used instead of a generated one."""
    own = app_folder(resource) / "Dockerfile"
    return own if own.is_file() else None


def dockerfile_name(resource: Resource) -> str:
    """The generated Dockerfile's name, written beside the manifest or compose file."""
    return f"{resource.name}.Dockerfile"


def container_ports(resource: Resource) -> dict[str, int]:
    """The port each endpoint listens on inside the container, by endpoint name.

    A fixed target port (a container's) or fixed port is kept; an endpoint whose port run mode
    allocates gets the next free one from 8000, so the image and its consumers agree on it.
    """
    endpoints = resource.annotations_of(EndpointAnnotation)
    fixed = {e.name: e.target_port or e.port for e in endpoints if e.target_port or e.port}
    used = set(fixed.values())
    out: dict[str, int] = {}
    candidate = DEFAULT_CONTAINER_PORT
    for e in endpoints:
        port = fixed.get(e.name)
        if port is None:
            while candidate in used:
                candidate += 1
            port = candidate
            used.add(port)
        out[e.name] = port
    return out


def literal_args(resource: Resource) -> list[str] | None:
    """The resource's arguments when all are literal strings, else None (a parameter's value
    is known only at deploy time, so it cannot be baked into the image)."""
    args: list[str | ParameterResource] = [
        a for ann in resource.annotations_of(ArgsAnnotation) for a in ann.args
    ]
    if any(isinstance(a, ParameterResource) for a in args):
        return None
    return [str(a) for a in args]


def entrypoint(resource: ExecutableResource) -> list[str]:
    """The program run mode starts, as the image's ENTRYPOINT (its arguments are the CMD)."""
    if isinstance(resource, UvicornAppResource):
        return ["python", "-m", "uvicorn"]
    if isinstance(resource, PythonModuleResource):
        return ["python", "-u", "-m", resource.command]
    if isinstance(resource, PythonAppResource):
        return ["python", "-u", Path(resource.command).as_posix()]
    raise PublishError(
        f"{resource.name} is a plain executable ({resource.command}), which has no container "
        "image to publish: use add_python_app/add_python_module/add_uvicorn_app, or "
        "add_dockerfile for another program"
    )


def container_environment(resource: ExecutableResource) -> dict[str, str]:
    """Variables the image sets: each endpoint's port variable, and for uvicorn the address
    to listen on (every interface: the container's port is reached from outside)."""
    ports = container_ports(resource)
    env: dict[str, str] = {}
    for e in resource.annotations_of(EndpointAnnotation):
        if e.env:
            env[e.env] = str(ports[e.name])
    if isinstance(resource, UvicornAppResource):
        env["UVICORN_HOST"] = "0.0.0.0"
    return env


def python_dockerfile(resource: Resource) -> str:
    """The Dockerfile text of a Python app: its own ``Dockerfile`` when the app folder has one,
    else a generated one (deterministic: the same app gives the same text)."""
    if not isinstance(resource, PYTHON_APP_TYPES):
        raise PublishError(
            f"{resource.name} is not a Python app (add_python_app, add_python_module or "
            "add_uvicorn_app): it has no generated Dockerfile"
        )
    own = user_dockerfile(resource)
    if own is not None:
        return own.read_text(encoding="utf-8")
    folder = app_folder(resource)
    lines = [
        f"# Generated by `apphost publish` for the Python app {resource.name!r}: change the",
        "# app host rather than this file. Build on another base image with",
        "# --build-arg PYTHON_IMAGE=IMAGE.",
        f"ARG PYTHON_IMAGE={DEFAULT_PYTHON_IMAGE}",
        "FROM ${PYTHON_IMAGE}",
        "ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 PIP_DISABLE_PIP_VERSION_CHECK=1",
        f"WORKDIR {APP_DIR}",
    ]
    has_requirements = (folder / "requirements.txt").is_file()
    has_project = (folder / "pyproject.toml").is_file()
    if has_requirements:
        lines += [
            "COPY requirements.txt ./",
            "RUN python -m pip install --no-cache-dir -r requirements.txt",
        ]
    elif isinstance(resource, UvicornAppResource) and not has_project:
        # nothing else would install the server run mode starts
        lines.append("RUN python -m pip install --no-cache-dir uvicorn")
    lines.append("COPY . .")
    if has_project:
        lines.append("RUN python -m pip install --no-cache-dir .")
    env = container_environment(resource)
    if env:
        lines.append("ENV " + " ".join(f"{k}={v}" for k, v in sorted(env.items())))
    for port in sorted(set(container_ports(resource).values())):
        lines.append(f"EXPOSE {port}")
    lines.append(f"ENTRYPOINT {json.dumps(entrypoint(resource))}")
    args = literal_args(resource)
    if args:
        lines.append(f"CMD {json.dumps(args)}")
    return "\n".join(lines) + "\n"


__all__ = [
    "APP_DIR",
    "DEFAULT_CONTAINER_PORT",
    "DEFAULT_PYTHON_IMAGE",
    "PYTHON_APP_TYPES",
    "app_folder",
    "container_environment",
    "container_ports",
    "dockerfile_name",
    "entrypoint",
    "is_python_app",
    "literal_args",
    "python_dockerfile",
    "user_dockerfile",
]
