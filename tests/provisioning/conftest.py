"""Fixtures for the Azure provisioning tests: one ARM emulator subprocess per session, reset
before each test, and helpers to configure the provisioner against it."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from apphost_sdk.configuration import Configuration
from provisioning.emulator.control import EmulatorProcess
from provisioning.managed_spec import ManagedRedisRequest, ManagedRedisSpec
from provisioning.spec import AzureRedisRequest, CacheSpec

ROOT = Path(__file__).resolve().parents[2]
SUBSCRIPTION = "11111111-2222-3333-4444-555555555555"
CREATE_DELAY = 0.6


class AzureCache:
    """Stand-in for the app model's Azure cache: exactly the contract ``provisioning`` reads
    (``to_azure_request()`` and ``is_container``), nothing recognised by class name."""

    def __init__(
        self,
        name: str,
        *,
        is_container: bool = False,
        use_access_keys: bool = False,
        existing_name: str | None = None,
        existing_resource_group: str | None = None,
        infrastructure_callbacks: list[Callable[[CacheSpec], None]] | None = None,
    ) -> None:
        self.name = name
        self.is_container = is_container
        self.use_access_keys = use_access_keys
        self.existing_name = existing_name
        self.existing_resource_group = existing_resource_group
        self.infrastructure_callbacks = list(infrastructure_callbacks or [])

    def to_azure_request(self) -> AzureRedisRequest:
        return AzureRedisRequest(
            resource_name=self.name,
            use_access_keys=self.use_access_keys,
            existing_name=self.existing_name,
            existing_resource_group=self.existing_resource_group,
            infrastructure_callbacks=tuple(self.infrastructure_callbacks),
        )


class AzureManagedRedis:
    """Stand-in for the app model's Azure Managed Redis: the same duck-typed contract as
    :class:`AzureCache`, returning a ``ManagedRedisRequest``."""

    def __init__(
        self,
        name: str,
        *,
        is_container: bool = False,
        use_access_keys: bool = False,
        existing_name: str | None = None,
        existing_resource_group: str | None = None,
        infrastructure_callbacks: list[Callable[[ManagedRedisSpec], None]] | None = None,
    ) -> None:
        self.name = name
        self.is_container = is_container
        self.use_access_keys = use_access_keys
        self.existing_name = existing_name
        self.existing_resource_group = existing_resource_group
        self.infrastructure_callbacks = list(infrastructure_callbacks or [])

    def to_azure_request(self) -> ManagedRedisRequest:
        return ManagedRedisRequest(
            resource_name=self.name,
            use_access_keys=self.use_access_keys,
            existing_name=self.existing_name,
            existing_resource_group=self.existing_resource_group,
            infrastructure_callbacks=tuple(self.infrastructure_callbacks),
        )


class Emulator(EmulatorProcess):
    """The emulator with the queries these tests make of its request log."""

    def reset(self, **delays: float) -> None:
        super().reset(create_delay=CREATE_DELAY, update_delay=0.3, delete_delay=0.3)

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

    def cluster_puts(self) -> list[int]:
        """Statuses of the PUTs on Managed Redis clusters themselves (not their databases)."""
        return [
            r["status"]
            for r in self.requests()
            if r["method"] == "PUT"
            and re.search(r"/microsoft\.cache/redisenterprise/[^/]+$", r["path"], re.I)
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
    started = EmulatorProcess.start("--create-delay", str(CREATE_DELAY))
    assert started.endpoint.startswith("http://127.0.0.1:")
    emulator = Emulator(started.endpoint, started.process, started.startup)
    with emulator:
        yield emulator


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
