"""Runtimes: container engines (Docker, Podman) and local processes for resources whose type
provides a process recipe."""

from .base import ContainerHandle, ContainerRuntime, ContainerSpec, LineSink, ProcessSpec

__all__ = ["ContainerHandle", "ContainerRuntime", "ContainerSpec", "LineSink", "ProcessSpec"]
