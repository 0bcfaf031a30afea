"""A local emulator of the Azure Resource Manager contract for Microsoft.Cache/redis and
Microsoft.Cache/redisEnterprise, with a live TLS ``redis-server`` behind every cache.

Run ``python -m provisioning.emulator --port 0`` and read the endpoint from its first output
line, or call :func:`start` in-process. It serves only loopback addresses: it accepts unsigned
tokens and must never be reachable from the network.
"""

from __future__ import annotations

from .data_plane import DataPlane
from .faults import Fault, FaultSpecError, parse_fault
from .server import EmulatorServer
from .store import Settings, Store

__all__ = [
    "DataPlane",
    "EmulatorServer",
    "Fault",
    "FaultSpecError",
    "Settings",
    "Store",
    "parse_fault",
    "start",
]


def start(
    host: str = "127.0.0.1",
    port: int = 0,
    settings: Settings | None = None,
    faults: list[Fault] | None = None,
    data_plane: DataPlane | None = None,
) -> EmulatorServer:
    """Start an emulator on a background thread and return it (``.endpoint``, ``.shutdown()``).

    Pass ``DataPlane()`` for live servers behind the caches (close it when done); without one
    the emulator serves the control plane only."""
    from ..settings import is_loopback_host

    if not is_loopback_host(host):
        raise ValueError(f"the emulator only listens on loopback addresses, not {host!r}")
    server = EmulatorServer((host, port), Store(settings, faults, data_plane=data_plane))
    server.start_background()
    return server
