"""Choosing the container runtime: ``APPHOST_CONTAINER_RUNTIME=auto|docker|podman|process``.

- ``process``: no engine; resources with a process recipe (Redis) run as local processes.
- ``docker`` / ``podman``: that engine, found the way the docker CLI finds it; when it does not
  answer, one ``RuntimeUnavailableError`` names every endpoint tried and how to start the engine.
- ``auto`` (default): the first engine that answers, else ``process`` with one line saying why.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping

from ..errors import ConfigurationError, RuntimeUnavailableError
from .base import ContainerRuntime
from .engines import Discovery, Wanted, find_engine, start_hint

CHOICES = ("auto", "docker", "podman", "process")


def wanted_engine(choice: str) -> Wanted:
    """The engine kind a runtime choice asks for (``auto`` and ``process``: any engine)."""
    if choice == "docker":
        return "docker"
    if choice == "podman":
        return "podman"
    return "any"


def requested_runtime(environ: Mapping[str, str] | None = None) -> str:
    """Return the runtime the user asked for (``auto`` when unset); bad values are an error."""
    env = os.environ if environ is None else environ
    value = (env.get("APPHOST_CONTAINER_RUNTIME") or "auto").strip().lower()
    if value not in CHOICES:
        raise ConfigurationError(
            f"APPHOST_CONTAINER_RUNTIME={value!r} is not one of {', '.join(CHOICES)}"
        )
    return value


def _discover(wanted: Wanted, env: Mapping[str, str]) -> Discovery | str:
    """Find an engine, or return why none can be used (the ``docker`` package missing)."""
    try:
        import docker  # noqa: F401  (only checking that it is installed)
    except ImportError:
        return "the Python package 'docker' is not installed (pip install 'docker>=7.1')"
    return find_engine(wanted, env)


def select_runtime(
    announce: Callable[[str], None], environ: dict[str, str] | None = None
) -> ContainerRuntime | None:
    """Return the container engine to use, or None for local processes (``process``, or
    ``auto`` with no engine answering, said in one line)."""
    choice = requested_runtime(environ)
    if choice == "process":
        return None
    env: Mapping[str, str] = os.environ if environ is None else environ
    wanted = wanted_engine(choice)
    found = _discover(wanted, env)
    if not isinstance(found, str) and found.engine is not None:
        from .docker_runtime import DockerRuntime

        return DockerRuntime(found.engine, announce)
    why = found if isinstance(found, str) else f"tried {found.tried()}"
    if choice == "auto":
        announce(
            f"no container engine answers ({why}); resources that can run as local processes "
            "(Redis) run that way"
        )
        return None
    raise RuntimeUnavailableError(
        f"APPHOST_CONTAINER_RUNTIME={choice}, but no {choice} engine answers ({why}). "
        f"To fix: {start_hint(wanted)}; or set APPHOST_CONTAINER_RUNTIME=process to run Redis "
        "as a local process"
    )
