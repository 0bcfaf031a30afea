"""Health probes shared by the runtimes and the orchestrator."""

from __future__ import annotations

import socket


def _resp_command(*parts: str) -> bytes:
    """Encode one command in the Redis protocol (RESP2 array of bulk strings)."""
    out = [f"*{len(parts)}\r\n".encode()]
    for p in parts:
        data = p.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


def redis_ping(host: str, port: int, password: str | None, timeout: float = 1.0) -> bool:
    """Return True when Redis at host:port answers PING (authenticating with ``password``).

    Speaks the two commands over a raw socket: the app host would otherwise import redis-py
    (a quarter of a second) only to probe health.
    """
    request = (_resp_command("AUTH", password) if password else b"") + _resp_command("PING")
    expected = (b"+OK\r\n" if password else b"") + b"+PONG\r\n"
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(request)
            reply = b""
            while len(reply) < len(expected) and not reply.startswith(b"-"):
                chunk = sock.recv(256)
                if not chunk:
                    break
                reply += chunk
    except OSError:
        return False
    return reply == expected


def tcp_accepts(host: str, port: int, timeout: float = 0.5) -> bool:
    """Return True when something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def free_port(host: str = "127.0.0.1") -> int:
    """Ask the kernel for a currently free TCP port on ``host``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """Return True when ``port`` can be bound on ``host`` right now.

    SO_REUSEADDR, as servers (redis-server included) set it: connections of a server that just
    stopped linger in TIME_WAIT, which must not count as "in use"; a listener still does.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True
