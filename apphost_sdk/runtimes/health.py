"""Generic health probes (TCP connect, HTTP GET) and port helpers."""

from __future__ import annotations

import socket


def http_ok(host: str, port: int, path: str, timeout: float = 2.0) -> bool:
    """Return True when ``GET http://host:port{path}`` answers 2xx."""
    return http_failure(host, port, path, timeout) is None


def http_failure(host: str, port: int, path: str, timeout: float) -> str | None:
    """``GET http://host:port{path}``: None when it answers 2xx, else why not (for a health
    check's reason)."""
    import http.client  # here: 20 ms of imports that the start-up path need not wait for

    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path)
        status = conn.getresponse().status
    except ConnectionRefusedError:
        return f"connection refused on port {port}"
    except TimeoutError:
        return f"GET {path} timed out after {timeout:g} s"
    except http.client.HTTPException as exc:
        return f"GET {path} got no valid HTTP answer ({type(exc).__name__}: {exc})"
    except OSError as exc:
        return f"GET {path} failed: {exc.strerror or exc}"
    finally:
        conn.close()
    return None if 200 <= status < 300 else f"GET {path} answered {status}"


def tcp_accepts(host: str, port: int, timeout: float = 0.5) -> bool:
    """Return True when something accepts TCP connections on host:port."""
    return tcp_failure(host, port, timeout) is None


def tcp_failure(host: str, port: int, timeout: float) -> str | None:
    """Connect to host:port: None when something accepts, else why not (for a health check's
    reason)."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except ConnectionRefusedError:
        return f"connection refused on port {port}"
    except TimeoutError:
        return f"connecting to port {port} timed out after {timeout:g} s"
    except OSError as exc:
        return f"cannot connect to port {port}: {exc.strerror or exc}"


def free_port(host: str = "127.0.0.1") -> int:
    """Ask the kernel for a currently free TCP port on ``host``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """Return True when ``port`` can be bound on ``host`` right now.

    SO_REUSEADDR, as servers set it: connections of a server that just
    stopped linger in TIME_WAIT, which must not count as "in use"; a listener still does.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True
