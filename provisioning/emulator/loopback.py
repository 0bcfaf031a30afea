"""Loopback addresses for emulated caches: one ``127.0.0.x`` per cache, so every cache keeps
Azure's port (6380, 10000) and its certificate can name its address.

An address is leased with a lock file (``flock``) in a per-user folder of the temp directory,
so several emulators on one machine never pick the same address; an address where a needed
port is already taken (by anything) is skipped.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import stat
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

_FIRST = int(ipaddress.IPv4Address("127.0.0.2"))
_CANDIDATES = 4096  # 127.0.0.2 .. about 127.0.16.x


class NoFreeAddressError(RuntimeError):
    """No loopback address with the needed ports free was found."""


def _candidates() -> Iterator[str]:
    """127.0.0.2 upward, skipping network (.0) and broadcast-looking (.255) addresses."""
    value, given = _FIRST, 0
    while given < _CANDIDATES:
        address = ipaddress.IPv4Address(value)
        value += 1
        if address.packed[-1] in (0, 255):
            continue
        given += 1
        yield str(address)


def ports_free(address: str, ports: Sequence[int]) -> bool:
    """Whether every port in ``ports`` can be bound on ``address`` right now."""
    for port in ports:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            # As redis-server does: a port held only by TIME_WAIT connections is usable.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((address, port))
            except OSError as exc:
                if exc.errno == errno.EADDRNOTAVAIL:
                    raise NoFreeAddressError(
                        f"the loopback address {address} cannot be used on this machine "
                        "(the emulator's data plane needs 127.0.0.0/8 routed to loopback, "
                        "as on Linux; on macOS add aliases with "
                        f"`sudo ifconfig lo0 alias {address}`)"
                    ) from None
                return False
    return True


class LoopbackLeases:
    """Hands out loopback addresses with ``ports`` free, each held until :meth:`release`."""

    def __init__(self, ports: Sequence[int], lock_dir: Path | None = None) -> None:
        self.ports = tuple(ports)
        uid = os.getuid() if hasattr(os, "getuid") else 0
        self.lock_dir = lock_dir or Path(tempfile.gettempdir()) / f"apphost-emulator-ips-{uid}"
        self._held: dict[str, int] = {}  # address -> open lock file descriptor

    def lease(self) -> str:
        """A loopback address no other lease (in any process) holds, with the ports free."""
        self._ensure_lock_dir()
        for address in _candidates():
            if address in self._held:
                continue
            fd = self._try_lock(address)
            if fd is None:
                continue
            try:
                free = ports_free(address, self.ports)
            except BaseException:
                os.close(fd)
                raise
            if free:
                self._held[address] = fd
                return address
            os.close(fd)
        raise NoFreeAddressError(
            f"no loopback address from 127.0.0.2 on has the ports {list(self.ports)} free; "
            "stop other emulators or Redis servers listening on them"
        )

    def _ensure_lock_dir(self) -> None:
        """Create the lock folder, refusing one that is a link or belongs to someone else."""
        self.lock_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = os.lstat(self.lock_dir)
        owner = os.getuid() if hasattr(os, "getuid") else info.st_uid
        if stat.S_ISLNK(info.st_mode) or info.st_uid != owner:
            raise NoFreeAddressError(
                f"{self.lock_dir} (where emulators lease loopback addresses) is a symbolic "
                "link or belongs to another user; remove it and start the emulator again"
            )

    def _try_lock(self, address: str) -> int | None:
        """An open descriptor holding the lock of ``address``, or None when it is taken."""
        fd = os.open(self.lock_dir / f"{address}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        if sys.platform == "win32":  # pragma: no cover - the data plane needs Linux or macOS
            return fd
        import fcntl

        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return None
        return fd

    def release(self, address: str) -> None:
        """Give ``address`` back (no-op when it is not held)."""
        fd = self._held.pop(address, None)
        if fd is not None:
            os.close(fd)

    def release_all(self) -> None:
        """Give every address back."""
        for address in list(self._held):
            self.release(address)
