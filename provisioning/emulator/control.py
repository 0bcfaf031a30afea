"""A handle on an emulator subprocess: start it, read its endpoint, drive its control API.

For tests and offline pipelines that need an Azure Resource Manager to talk to:
``with EmulatorProcess.start("--create-delay", "0.5") as emu: ... emu.endpoint ...``.
``emu.configuration`` is what to pass to services (``Azure__Emulator__CaFile`` and the
emulator credential), ``emu.token()`` an Entra ID token the emulated caches accept.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any

_PROJECT_ROOT = Path(__file__).resolve().parents[2]


class EmulatorProcess:
    """A running ``python -m provisioning.emulator`` and its ``/_emulator/`` control endpoints
    (reset, config, faults, request log)."""

    def __init__(
        self,
        endpoint: str,
        process: subprocess.Popen[str] | None = None,
        startup: dict[str, Any] | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.process = process
        startup = startup or {}
        #: The emulator's start-up JSON line, parsed (pass it on when re-wrapping the process).
        self.startup: dict[str, Any] = startup
        data_plane = startup.get("dataPlane") or {}
        #: Whether the emulated caches have live TLS servers behind them.
        self.data_plane_available: bool = bool(data_plane.get("available"))
        #: Why they do not (the emulator's words), or None.
        self.data_plane_reason: str | None = data_plane.get("reason")
        #: The emulator CA's PEM file (None without a data plane).
        self.ca_file: Path | None = Path(data_plane["caFile"]) if data_plane.get("caFile") else None
        #: Configuration for services, environment form (``Azure__Emulator__CaFile``, ...).
        self.configuration: dict[str, str] = dict(startup.get("configuration") or {})

    @classmethod
    def start(cls, *args: str) -> EmulatorProcess:
        """Start the emulator on a free loopback port with ``args`` (e.g. ``--create-delay``)
        and return once it accepts requests."""
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(_PROJECT_ROOT), *sys.path])}
        proc = subprocess.Popen(
            [sys.executable, "-m", "provisioning.emulator", "--port", "0", *args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line:
            proc.kill()
            stderr = proc.stderr.read() if proc.stderr else ""
            raise RuntimeError(f"the ARM emulator did not start: {stderr.strip()}")
        startup = json.loads(line)
        return cls(startup["endpoint"], proc, startup)

    def stop(self) -> None:
        """Stop the subprocess (SIGTERM, then SIGKILL after 10 s)."""
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()

    def __enter__(self) -> EmulatorProcess:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _post(self, path: str, body: dict[str, Any]) -> Any:
        request = urllib.request.Request(
            self.endpoint + path,
            data=json.dumps(body).encode(),
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read() or b"null")

    def reset(self, **delays: float) -> None:
        """Forget every resource, fault and logged request; then apply ``delays``
        (``create_delay``, ``update_delay``, ``delete_delay`` in seconds) if given."""
        self._post("/_emulator/reset", {})
        if delays:
            self.configure(**delays)

    def configure(self, **delays: float) -> None:
        """Change how long creates, updates and deletes take."""
        self._post("/_emulator/config", delays)

    def fault(self, spec: str) -> None:
        """Inject a fault, e.g. ``throttle`` or ``create-failed`` (see ``--fault``)."""
        self._post("/_emulator/faults", {"spec": spec})

    def token(self, object_id: str | None = None) -> dict[str, Any]:
        """A fresh Entra ID token for ``object_id`` (default: the emulator credential's
        principal) from ``POST /_emulator/token``: ``{"accessToken", "expiresOn",
        "objectId"}``. The caches that grant that object id accept it as its password."""
        body: dict[str, Any] = {"scopes": ["https://redis.azure.com/.default"]}
        if object_id is not None:
            body["objectId"] = object_id
        return dict(self._post("/_emulator/token", body))

    def requests(self) -> list[dict[str, Any]]:
        """Every request received since the last reset: method, path, status."""
        with urllib.request.urlopen(self.endpoint + "/_emulator/requests", timeout=10) as r:
            return list(json.loads(r.read()))
