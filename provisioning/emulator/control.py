"""A handle on an emulator subprocess: start it, read its endpoint, drive its control API.

For tests and offline pipelines that need an Azure Resource Manager to talk to:
``with EmulatorProcess.start("--create-delay", "0.5") as emu: ... emu.endpoint ...``.
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

    def __init__(self, endpoint: str, process: subprocess.Popen[str] | None = None) -> None:
        self.endpoint = endpoint
        self.process = process

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
        return cls(json.loads(line)["endpoint"], proc)

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

    def requests(self) -> list[dict[str, Any]]:
        """Every request received since the last reset: method, path, status."""
        with urllib.request.urlopen(self.endpoint + "/_emulator/requests", timeout=10) as r:
            return list(json.loads(r.read()))
