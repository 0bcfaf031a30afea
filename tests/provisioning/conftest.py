"""Fixtures for the Azure provisioning tests: one ARM emulator subprocess per session, reset
before each test, and helpers to configure the provisioner against it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from apphost_sdk.configuration import Configuration

ROOT = Path(__file__).resolve().parents[2]
SUBSCRIPTION = "11111111-2222-3333-4444-555555555555"
CREATE_DELAY = 0.6


class Emulator:
    """Handle on the running emulator: endpoint, request log, faults, timing."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint

    def _post(self, path: str, body: dict[str, Any]) -> Any:
        request = urllib.request.Request(
            self.endpoint + path,
            data=json.dumps(body).encode(),
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read() or b"null")

    def reset(self) -> None:
        self._post("/_emulator/reset", {})
        self.configure(create_delay=CREATE_DELAY, update_delay=0.3, delete_delay=0.3)

    def configure(self, **settings: float) -> None:
        self._post("/_emulator/config", settings)

    def fault(self, spec: str) -> None:
        self._post("/_emulator/faults", {"spec": spec})

    def requests(self) -> list[dict[str, Any]]:
        with urllib.request.urlopen(self.endpoint + "/_emulator/requests", timeout=10) as r:
            return list(json.loads(r.read()))

    def count(self, method: str | None = None, contains: str = "", suffix: str = "") -> int:
        """Requests received with ``method`` whose path contains / ends with the given text."""
        return sum(
            1
            for r in self.requests()
            if (method is None or r["method"] == method)
            and contains.lower() in r["path"].lower()
            and r["path"].lower().endswith(suffix.lower())
        )

    def cache_puts(self) -> list[int]:
        """Statuses of the PUTs on caches themselves (not their child resources)."""
        return [
            r["status"]
            for r in self.requests()
            if r["method"] == "PUT"
            and re.search(r"/microsoft\.cache/redis/[^/]+$", r["path"], re.I)
        ]

    def writes(self) -> list[dict[str, Any]]:
        """PUT/PATCH/DELETE and POSTs other than reads-by-POST (checkNameAvailability)."""
        return [
            r
            for r in self.requests()
            if r["method"] in ("PUT", "PATCH", "DELETE")
            or (r["method"] == "POST" and "checknameavailability" not in r["path"].lower())
        ]

    def settings(self, **overrides: str) -> Configuration:
        values = {
            "Azure:SubscriptionId": SUBSCRIPTION,
            "Azure:Location": "westus",
            "Azure:CredentialSource": "Emulator",
            "Azure:ResourceManagerEndpoint": self.endpoint,
            "Azure:PollIntervalSeconds": "0.05",
            "Azure:RetryBaseDelaySeconds": "0.02",
            "Azure:RetryMaxDelaySeconds": "0.2",
        }
        values.update({f"Azure:{k}": v for k, v in overrides.items()})
        return Configuration(values)


@pytest.fixture(scope="session")
def emulator_process() -> Iterator[Emulator]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "provisioning.emulator", "--port", "0", "--create-delay", "0.6"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        proc.kill()
        raise RuntimeError("emulator did not start: " + (proc.stderr.read() if proc.stderr else ""))
    info = json.loads(line)
    assert info["endpoint"].startswith("http://127.0.0.1:")
    try:
        yield Emulator(info["endpoint"])
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture
def emulator(emulator_process: Emulator) -> Emulator:
    emulator_process.reset()
    return emulator_process


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "state"
    directory.mkdir()
    return directory


def wait_until(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")
