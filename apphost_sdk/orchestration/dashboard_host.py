"""What runs beside the orchestrator for one app-host run: the telemetry store (console lines and
OTLP data), the dashboard with its OTLP receiver, and the local control channel.

The dashboard's ports are bound before any resource starts, so every service is told where to
send its telemetry (``OTEL_*`` variables, as Aspire sets them in run mode). The web server itself
starts on a background thread, so the dashboard adds little to the time until the app is ready.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import sys
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..configuration import Configuration, parse_bool
from ..errors import ConfigurationError
from ..masking import SecretMasker
from ..model.resources import Resource
from ..model.values import HOST_GATEWAY_NAME
from ..state import write_private
from ..telemetry.store import Limits, TelemetryStore
from .forwarding import Forwarder
from .resource_logs import ResourceLogFiles

if TYPE_CHECKING:
    from ..control.server import ControlServer
    from ..dashboard.server import DashboardServer
    from .orchestrator import Orchestrator

#: The OTLP header carrying the API key, as Aspire's dashboard expects it.
OTLP_KEY_HEADER = "x-otlp-api-key"
#: The dashboard's ports of the latest run, in the app's state folder.
PORTS_FILE = "dashboard-ports.json"
#: Aspire's development settings: export every second, sample everything.
OTEL_DEFAULTS = {
    "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
    "OTEL_BSP_SCHEDULE_DELAY": "1000",
    "OTEL_BLRP_SCHEDULE_DELAY": "1000",
    "OTEL_METRIC_EXPORT_INTERVAL": "1000",
    "OTEL_TRACES_SAMPLER": "always_on",
    "OTEL_METRICS_EXEMPLAR_FILTER": "trace_based",
    "OTEL_TRACES_EXPORTER": "otlp",
    "OTEL_LOGS_EXPORTER": "otlp",
    "OTEL_METRICS_EXPORTER": "otlp",
    "OTEL_PYTHON_LOGGING_AUTO_INSTRUMENTATION_ENABLED": "true",
}


def dashboard_enabled(configuration: Configuration, args: list[str]) -> bool:
    """Whether this run serves a dashboard: on unless ``--no-dashboard`` or
    ``Dashboard:Enabled=false`` (``APPHOST_DASHBOARD_ENABLED=false``)."""
    if "--no-dashboard" in args:
        return False
    for raw, where in (
        (configuration.get_str("Dashboard:Enabled"), "Dashboard:Enabled"),
        (os.environ.get("APPHOST_DASHBOARD_ENABLED"), "APPHOST_DASHBOARD_ENABLED"),
    ):
        if raw is None or raw == "":
            continue
        value = parse_bool(raw)
        if value is None:
            raise ConfigurationError(f"{where}={raw!r} is not a boolean; write true or false")
        return value
    return True


def configured_port(configuration: Configuration, key: str, variable: str) -> int:
    """A port from configuration ``key`` or environment ``variable``: 0 (a free one) when
    neither is set; a clear error for anything but 1-65535."""
    for raw, where in ((configuration.get_str(key), key), (os.environ.get(variable), variable)):
        if raw is None or raw.strip() == "":
            continue
        try:
            port = int(raw)
        except ValueError:
            port = -1
        if not 0 < port < 65536:
            raise ConfigurationError(
                f"{where}={raw!r} is not a port; write a number from 1 to 65535, or leave it "
                "unset for a free port"
            )
        return port
    return 0


class DashboardHost:
    """The store, dashboard and control channel of one run (see the module docstring)."""

    def __init__(
        self,
        configuration: Configuration,
        args: list[str],
        state_dir: Path,
        app_id: str,
        masker: SecretMasker,
        otlp_api_key: Callable[[], str],
        info: Callable[[str], None],
    ) -> None:
        self.masker = masker
        # Everything kept is masked on the way in: a service's log record or span attribute
        # that quotes a password shows *** on every page, as its console output does.
        self.store = TelemetryStore(
            Limits.from_configuration(configuration.get_str), mask=masker.mask
        )
        self.files = ResourceLogFiles(state_dir)
        self.enabled = dashboard_enabled(configuration, args)
        self._configuration = configuration
        self._state_dir = state_dir
        self._app_id = app_id
        self._info = info
        self._otlp_api_key = otlp_api_key
        self.token = secrets.token_hex(16)
        self.api_key = ""
        self.dashboard: DashboardServer | None = None
        self.control: ControlServer | None = None
        self._forwarders: dict[str, Forwarder | None] = {}
        self._lock = threading.Lock()
        self._gateway: Callable[[], str | None] = lambda: None
        #: Stable per app: a persistent container's configuration must not change per run.
        self._instance = app_id[:8]
        #: The dashboard is bound before the orchestrator exists; it reads resources through
        #: this until ``start`` points it at the orchestrator.
        self._source = _LateSource()

    # -- life cycle ---------------------------------------------------------------------
    def bind(self) -> None:
        """Bind the dashboard's ports (before any resource starts, so their URLs are known)."""
        if not self.enabled:
            return
        from ..dashboard.server import DashboardServer

        self.api_key = self._otlp_api_key()
        self.masker.add(self.api_key)
        ui = configured_port(self._configuration, "Dashboard:Port", "APPHOST_DASHBOARD_PORT")
        otlp = configured_port(
            self._configuration, "Dashboard:OtlpPort", "APPHOST_DASHBOARD_OTLP_PORT"
        )
        # Unconfigured ports: the previous run's when still free, so a bookmark keeps working
        # and a persistent container's OTLP endpoint (part of its configuration) stays valid.
        remembered = _read_ports(self._state_dir)
        attempts = [(ui or remembered.get("ui", 0), otlp or remembered.get("otlp", 0))]
        if attempts[0] != (ui, otlp):
            attempts.append((ui, otlp))
        error: OSError | None = None
        for ui_port, otlp_port in attempts:
            server = DashboardServer(
                self._source,
                self.store,
                token=self.token,
                otlp_api_key=self.api_key,
                ui_port=ui_port,
                otlp_port=otlp_port,
            )
            try:
                server.bind()
            except OSError as exc:
                error = exc
                continue
            self.dashboard = server
            _write_ports(self._state_dir, server.ui_port, server.otlp_port)
            return
        assert error is not None
        raise ConfigurationError(
            f"the dashboard cannot listen: {error.strerror or error}; choose another port with "
            "Dashboard:Port / APPHOST_DASHBOARD_PORT (and Dashboard:OtlpPort), or run with "
            "--no-dashboard"
        ) from None

    def start(self, orchestrator: Orchestrator) -> None:
        """Serve the dashboard (on a background thread) and the control channel for the
        running ``orchestrator``."""
        from ..control.server import ControlServer, control_socket_path
        from .dashboard_source import OrchestratorSource

        source = OrchestratorSource(orchestrator, self.masker)
        # The app's own resources always have room in the store, whatever OTLP senders call
        # themselves.
        self.store.reserve(snap.name for snap in orchestrator.snapshots())
        self._source.target = source
        self._gateway = orchestrator.engine_gateway
        if self.dashboard is not None:
            threading.Thread(
                target=self._serve, args=(self.dashboard,), name="apphost-dashboard", daemon=True
            ).start()
        path = control_socket_path(self._state_dir, self._app_id)
        try:
            control = ControlServer(path, source, self.store)
            control.start()
        except OSError as exc:
            self._info(
                f"`apphost logs` and `apphost resource` will not reach this run: cannot listen "
                f"on {path}: {exc.strerror or exc}"
            )
        else:
            self.control = control

    def _serve(self, dashboard: DashboardServer) -> None:
        """Start serving; a dashboard that cannot start is said once and closed (its ports
        then refuse, so exporters fail fast instead of hanging), and the run goes on."""
        try:
            dashboard.start()
        except Exception as exc:
            self._info(
                self.masker.mask(f"the dashboard could not start: {type(exc).__name__}: {exc}")
            )
            dashboard.stop()
            with self._lock:
                if self.dashboard is dashboard:
                    self.dashboard = None

    def announce(self, detached: bool, quiet: bool = False) -> None:
        """Tell the user where the dashboard is: the login URL, token included, on their own
        terminal; only the plain URL in the background log (the token is a secret there)."""
        if self.dashboard is None:
            return
        if quiet:
            pass
        elif detached or not _is_terminal(sys.stdout):
            self._info(
                f"dashboard: {self.dashboard.ui_url} (its login URL: `apphost status "
                "APPHOST.py --show-secrets`)"
            )
        else:
            self._info(f"dashboard: {self.dashboard.login_url}")
        # Masked from here on: logs and pages never show it again.
        self.masker.add(self.token)

    def stop(self) -> None:
        """Stop serving (the store stays readable until the run object goes away)."""
        with self._lock:
            forwarders = [f for f in self._forwarders.values() if f is not None]
            self._forwarders.clear()
        for forwarder in forwarders:
            forwarder.close()
        if self.control is not None:
            self.control.stop()
            self.control = None
        if self.dashboard is not None:
            self.dashboard.stop()
        self.files.close()

    # -- what services get --------------------------------------------------------------
    def on_line(self, resource: str, stream: str, line: str) -> None:
        """A resource's console line, masked, into its bounded buffer and its file."""
        entry = self.store.add_console_line(resource, stream, line)  # masked by the store
        self.files.write(resource, stream, entry.text, entry.timestamp)

    def service_environment(self, resource: Resource, in_container: bool) -> Mapping[str, str]:
        """The ``OTEL_*`` variables a service started by the app host receives."""
        env = {
            "OTEL_SERVICE_NAME": resource.name,
            "OTEL_RESOURCE_ATTRIBUTES": f"service.instance.id={resource.name}-{self._instance}",
        }
        if self.dashboard is None:
            return env
        # 127.0.0.1, not localhost: the receiver listens on IPv4 loopback only, and where
        # localhost means ::1 first another local user could listen there for the key.
        host = "127.0.0.1"
        if in_container:
            host = HOST_GATEWAY_NAME
            self._listen_on_gateway()
        env.update(OTEL_DEFAULTS)
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = f"http://{host}:{self.dashboard.otlp_port}"
        env["OTEL_EXPORTER_OTLP_HEADERS"] = f"{OTLP_KEY_HEADER}={self.api_key}"
        return env

    def _listen_on_gateway(self) -> None:
        """Let containers reach the OTLP receiver: relay the engine's bridge gateway address
        (never all interfaces) to the loopback receiver, which still requires the key."""
        assert self.dashboard is not None
        gateway = self._gateway()
        if gateway is None:
            return
        with self._lock:
            if gateway in self._forwarders:
                return
            port = self.dashboard.otlp_port
            try:
                self._forwarders[gateway] = Forwarder(gateway, port, port)
            except OSError as exc:
                self._forwarders[gateway] = None
                self._info(
                    f"containers cannot send telemetry: cannot listen on {gateway}:{port}: "
                    f"{exc.strerror or exc}"
                )

    def status(self, show_secrets: bool = True) -> dict[str, Any] | None:
        """The ``dashboard`` part of the status file (which is 0600: secrets in)."""
        if self.dashboard is None:
            return None
        return {
            "url": self.dashboard.ui_url,
            "loginUrl": self.dashboard.login_url,
            "otlpEndpoint": self.dashboard.otlp_url,
            "otlpApiKey": self.api_key,
        }


def _is_terminal(stream: Any) -> bool:
    """Whether ``stream`` is the user's terminal (redirected output is a log: no token)."""
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


def _read_ports(state_dir: Path) -> dict[str, int]:
    """The dashboard's ports of the previous run (empty when unknown or unreadable)."""
    try:
        data = json.loads((state_dir / PORTS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: v for k, v in data.items() if isinstance(v, int) and 0 < v < 65536}


def _write_ports(state_dir: Path, ui: int, otlp: int) -> None:
    with contextlib.suppress(OSError):
        write_private(state_dir / PORTS_FILE, json.dumps({"ui": ui, "otlp": otlp}))


class _LateSource:
    """Stands in for the orchestrator until it exists (the dashboard is bound before)."""

    def __init__(self) -> None:
        self.target: Any = None

    def resources(self) -> list[Any]:
        return self.target.resources() if self.target is not None else []

    def version(self) -> int:
        return self.target.version() if self.target is not None else 0

    def execute(self, resource: str, command: str) -> Any:
        from ..dashboard.source import CommandResult

        if self.target is None:
            return CommandResult(False, "the app host is still starting; try again")
        return self.target.execute(resource, command)

    def reveal(self, resource: str, variable: str) -> str | None:
        return self.target.reveal(resource, variable) if self.target is not None else None
