"""The dashboard's servers: the UI on one loopback port, the OTLP/HTTP receiver on another.

``bind()`` creates the listening sockets at once (in the caller's thread), so the URLs are known
before any service starts; ``start()`` serves them with uvicorn on daemon threads (no signal
handlers, no access log); ``stop()`` ends live streams and the servers within two seconds.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .source import DashboardSource

if TYPE_CHECKING:
    from ..telemetry.store import TelemetryStore

# uvicorn, Starlette, Jinja2 and protobuf are imported by ``start()``, on the caller's
# background thread: binding the ports must not delay the app host's start.

#: How long ``stop()`` may take in all.
STOP_TIMEOUT = 2.0


def _listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (IPv4 or IPv6); never a wildcard address."""
    address = ipaddress.ip_address(host)
    if address.is_unspecified:
        raise ValueError(
            f"the dashboard never listens on all interfaces ({host}); give loopback or the "
            "container engine's gateway address"
        )
    family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
        sock.set_inheritable(False)
    except BaseException:
        sock.close()
        raise
    return sock


class DashboardServer:
    """The dashboard (UI port, 127.0.0.1) and its OTLP receiver (OTLP port, on each of
    ``otlp_hosts``), for one app-host run."""

    def __init__(
        self,
        source: DashboardSource,
        store: TelemetryStore,
        *,
        token: str,
        otlp_api_key: str,
        ui_port: int = 0,
        otlp_port: int = 0,
        otlp_hosts: Sequence[str] = ("127.0.0.1",),
        show_secrets: bool = False,
    ) -> None:
        if not token or not otlp_api_key:
            raise ValueError("the dashboard needs a login token and an OTLP API key")
        self.source = source
        self.store = store
        self._token = token
        self._otlp_api_key = otlp_api_key
        self._ui_port = ui_port
        self._otlp_port = otlp_port
        self._otlp_hosts = tuple(otlp_hosts) or ("127.0.0.1",)
        self._show_secrets = show_secrets
        self._stopping = threading.Event()
        self._ui_socket: socket.socket | None = None
        self._otlp_sockets: list[socket.socket] = []
        self._bound: tuple[int, int] | None = None  # (ui port, otlp port), kept after stop
        self._servers: list[Any] = []  # uvicorn.Server
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    # -- addresses ------------------------------------------------------------------------
    @property
    def ui_port(self) -> int:
        if self._bound is None:
            raise RuntimeError("call bind() before asking for the dashboard's ports")
        return self._bound[0]

    @property
    def otlp_port(self) -> int:
        if self._bound is None:
            raise RuntimeError("call bind() before asking for the dashboard's ports")
        return self._bound[1]

    @property
    def ui_url(self) -> str:
        """The UI's address: ``127.0.0.1``, the address bound, never ``localhost`` (which may
        resolve to ``::1`` first, where another local user could listen for the token)."""
        return f"http://127.0.0.1:{self.ui_port}"

    @property
    def login_url(self) -> str:
        """The URL that logs a browser in (a secret: it carries the token)."""
        return f"{self.ui_url}/login?t={self._token}"

    @property
    def otlp_url(self) -> str:
        """The OTLP receiver's address on loopback (``127.0.0.1``, as ``ui_url``)."""
        return f"http://127.0.0.1:{self.otlp_port}"

    # -- life cycle -----------------------------------------------------------------------
    def bind(self) -> None:
        """Listen on the UI port (127.0.0.1) and the OTLP port (each OTLP host, one port) now;
        an OSError (port in use) leaves nothing bound."""
        with self._lock:
            if self._ui_socket is not None:
                return
            if self._stopping.is_set():
                raise RuntimeError("this dashboard was stopped; make a new DashboardServer")
            sockets: list[socket.socket] = []
            try:
                ui = _listen("127.0.0.1", self._ui_port)
                sockets.append(ui)
                port = self._otlp_port
                for host in self._otlp_hosts:
                    sock = _listen(host, port)
                    sockets.append(sock)
                    port = sock.getsockname()[1]
            except BaseException:
                for sock in sockets:
                    sock.close()
                raise
            self._ui_socket = ui
            self._otlp_sockets = sockets[1:]
            self._bound = (ui.getsockname()[1], port)

    def start(self) -> None:
        """Serve the bound sockets on daemon threads (binds first if needed); returns at once."""
        import uvicorn

        from .otlp_receiver import OtlpReceiver
        from .web import Context, create_ui_app

        self.bind()
        with self._lock:
            if self._servers or self._stopping.is_set():
                return
            assert self._ui_socket is not None
            context = Context(
                self.source,
                self.store,
                self._token,
                self._stopping,
                self._ui_socket.getsockname()[1],
                self._show_secrets,
            )
            apps: list[tuple[str, Any, list[socket.socket]]] = [
                ("ui", create_ui_app(context), [self._ui_socket]),
                ("otlp", OtlpReceiver(self.store, self._otlp_api_key), self._otlp_sockets),
            ]
            for role, app, sockets in apps:
                config = uvicorn.Config(
                    app,
                    log_level="warning",
                    log_config=None,
                    access_log=False,
                    lifespan="off",
                    server_header=False,
                    timeout_graceful_shutdown=1,
                    timeout_keep_alive=30,
                )
                server = uvicorn.Server(config)
                thread = threading.Thread(
                    target=server.run,
                    kwargs={"sockets": sockets},
                    name=f"apphost-dashboard-{role}",
                    daemon=True,
                )
                self._servers.append(server)
                self._threads.append(thread)
                thread.start()

    @property
    def started(self) -> bool:
        """Whether both servers are accepting requests."""
        return bool(self._servers) and all(s.started for s in self._servers)

    def wait_started(self, timeout: float = 5.0) -> bool:
        """Wait until both servers serve (for tests and benchmarks); False on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.started:
                return True
            if self._threads and not any(t.is_alive() for t in self._threads):
                return False
            time.sleep(0.01)
        return self.started

    def stop(self) -> None:
        """End live streams and both servers, within STOP_TIMEOUT; close the sockets."""
        self._stopping.set()
        with self._lock:
            servers, threads = list(self._servers), list(self._threads)
            sockets = [s for s in [self._ui_socket, *self._otlp_sockets] if s is not None]
        for server in servers:
            server.should_exit = True
        deadline = time.monotonic() + STOP_TIMEOUT * 0.75
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        if any(t.is_alive() for t in threads):
            for server in servers:
                server.force_exit = True
            final = time.monotonic() + STOP_TIMEOUT * 0.25
            for thread in threads:
                thread.join(max(0.0, final - time.monotonic()))
        for sock in sockets:
            sock.close()
