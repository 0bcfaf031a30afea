"""Record the commands a Redis server executes (MONITOR), scripts' inner commands included."""

from __future__ import annotations

import time
from collections.abc import Callable

import redis

_HANDSHAKE = {"HELLO", "CLIENT", "AUTH", "SELECT", "PING"}


def executed(client: redis.Redis, action: Callable[[], object]) -> list[str]:
    """Run ``action`` and return the commands the server ran meanwhile (no handshakes)."""
    marker = f"apphost-marker-{time.monotonic_ns()}"
    with client.monitor() as monitor:
        action()
        client.echo(marker)
        commands: list[str] = []
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            command = str(monitor.next_command()["command"])
            if marker in command:
                return commands
            if command.split(" ", 1)[0] not in _HANDSHAKE:
                commands.append(command)
    raise AssertionError("MONITOR did not report the marker")


def expiry_commands(client: redis.Redis, action: Callable[[], object]) -> list[str]:
    """Only the EXPIRE/PEXPIRE commands ``action`` caused."""
    return [c for c in executed(client, action) if c.split(" ", 1)[0] in {"EXPIRE", "PEXPIRE"}]
