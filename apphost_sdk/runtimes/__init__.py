"""Runtimes that run Redis resources: a local ``redis-server`` process or a container engine."""

from .base import ContainerHandle, ContainerRuntime, ContainerSpec, LineSink, Persistence

__all__ = ["ContainerHandle", "ContainerRuntime", "ContainerSpec", "LineSink", "Persistence"]
