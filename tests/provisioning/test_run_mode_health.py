"""The run-mode health check of a provisioned Azure cache: a PING through the connection info
its consumers get, against a real TLS ``redis-server`` of the emulator's data plane. Healthy
only when that PING answers; otherwise the reason says why, never with the key."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from apphost_sdk.configuration import Configuration
from apphost_sdk.integrations.azure_data_plane import CachePinger
from provisioning.emulator.data_plane import DataPlane

CACHE_ID = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Cache/Redis/health"
KEY = "health-check-primary-key-0123456789abcdefgh="


@pytest.fixture(scope="module")
def cache() -> Iterator[tuple[DataPlane, str]]:
    plane = DataPlane()
    assert plane.available, plane.unavailable_reason
    try:
        address = plane.address_for(CACHE_ID)
        plane.start(CACHE_ID, port=6380, cluster=False, keys=[KEY, KEY[::-1]])
        assert plane.wait_ready(CACHE_ID) == "ready", plane.failure(CACHE_ID)
        yield plane, address
    finally:
        plane.close()


def emulated(plane: DataPlane, ca: bool = True) -> Configuration:
    values = {"Azure:CredentialSource": "Emulator"}
    if ca:
        values["Azure:Emulator:CaFile"] = str(plane.ca_file)
    return Configuration(values)


def test_ping_with_the_key_through_the_emulator_ca_is_healthy(
    cache: tuple[DataPlane, str],
) -> None:
    plane, address = cache
    pinger = CachePinger(address, 6380, KEY, emulated(plane), "app")
    try:
        assert pinger.failure() is None
        assert pinger.failure() is None  # the connection is reused
    finally:
        pinger.close()


def test_a_refused_key_is_the_reason_and_the_key_is_not_shown(
    cache: tuple[DataPlane, str],
) -> None:
    plane, address = cache
    wrong = "not-the-key-of-this-cache-0123456789abcdef="
    reason = CachePinger(address, 6380, wrong, emulated(plane), "app").failure()
    assert reason == f"PING on {address}:6380 was refused with the access key"
    assert wrong not in reason


def test_a_missing_ca_says_which_setting_to_give(cache: tuple[DataPlane, str]) -> None:
    plane, address = cache
    reason = CachePinger(address, 6380, KEY, emulated(plane, ca=False), "app").failure()
    assert reason is not None and "CERTIFICATE_VERIFY_FAILED" in reason
    assert "set Azure:Emulator:CaFile" in reason and KEY not in reason


def test_nothing_listening_is_a_connection_failure(cache: tuple[DataPlane, str]) -> None:
    plane, address = cache
    reason = CachePinger(address, 6390, KEY, emulated(plane), "app").failure()
    assert reason is not None and reason.startswith(f"PING on {address}:6390 failed:")
