"""Values set in ``configure_infrastructure`` on ``ManagedRedisSpec`` and ``CacheSpec``: wrong
types and spellings are reported together, each naming the field, the expected type and an
example, instead of a traceback or silent nonsense. Also: the emulator credential's token
request ignores HTTP(S)_PROXY (the emulator is on loopback)."""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest
from conftest import Emulator

from apphost_sdk.errors import ConfigurationError
from provisioning.credentials import (
    EMULATOR_OBJECT_ID,
    REDIS_SCOPE,
    EmulatorCredential,
    decode_claims,
)
from provisioning.managed_spec import ManagedRedisRequest, ManagedRedisSpec
from provisioning.spec import AzureRedisRequest, CacheSpec


def managed_error(configure: Callable[[ManagedRedisSpec], None]) -> str:
    request = ManagedRedisRequest("cache", infrastructure_callbacks=(configure,))
    with pytest.raises(ConfigurationError) as info:
        request.build_spec("shop")
    message = str(info.value)
    assert message.startswith("cache: invalid Azure Managed Redis configuration: ")
    return message


def classic_error(configure: Callable[[CacheSpec], None]) -> str:
    request = AzureRedisRequest("legacy", infrastructure_callbacks=(configure,))
    with pytest.raises(ConfigurationError) as info:
        request.build_spec("shop")
    message = str(info.value)
    assert message.startswith("legacy: invalid cache configuration: ")
    return message


def test_wrong_types_on_managed_spec_are_all_reported_with_an_example() -> None:
    def bad(spec: Any) -> None:
        spec.modules = "RedisJSON"
        spec.tags = None
        spec.zones = "123"

    message = managed_error(bad)
    assert "modules must be a list such as ['RedisJSON'], not 'RedisJSON'" in message
    assert "more than once" not in message  # not split into letters
    assert "tags must be a dict of strings such as {'team': 'shop'}, not None" in message
    assert "zones must be a list of zone numbers such as ['1', '2', '3'], not '123'" in message


def test_none_modules_and_zones_and_bad_zone_values() -> None:
    def none(spec: Any) -> None:
        spec.modules = None
        spec.zones = None

    message = managed_error(none)
    assert "modules must be a list such as ['RedisJSON'], not None" in message
    assert "zones must be a list" in message and "not None" in message

    def zones(spec: ManagedRedisSpec) -> None:
        spec.zones = ["1", "4", "1", "eastus-1"]

    message = managed_error(zones)
    assert "zones[1] '4' must be '1', '2' or '3'" in message
    assert "zones[3] 'eastus-1' must be" in message
    assert "zones lists '1' more than once" in message


def test_valid_values_are_normalised() -> None:
    def good(spec: Any) -> None:
        spec.modules = ({"name": "RedisBloom", "args": None}, "RedisJSON")
        spec.zones = (1, "2")
        spec.tags = {"team": "shop"}

    spec = ManagedRedisRequest("cache", infrastructure_callbacks=(good,)).build_spec("shop")
    assert spec.modules == [
        {"name": "RedisBloom", "args": ""},  # args None means no arguments
        {"name": "RedisJSON", "args": ""},
    ]
    assert spec.zones == ["1", "2"]
    assert spec.tags == {"team": "shop", "aspire-resource-name": "cache", "apphost-app": "shop"}


def test_bad_module_items_and_tag_values_name_the_item() -> None:
    def bad(spec: Any) -> None:
        spec.modules = [{"name": "RedisJSON", "args": 3}, 7]
        spec.tags = {"team": 1}

    message = managed_error(bad)
    assert "modules[0] (RedisJSON) args must be a string" in message and "not 3" in message
    assert "modules[1] must be a module name or a dict such as" in message
    assert "tag 'team' must map a string to a string" in message


def test_sku_and_choices_in_the_wrong_case_get_a_hint() -> None:
    def cased(spec: ManagedRedisSpec) -> None:
        spec.sku_name = "balanced_b0"
        spec.clustering_policy = "osscluster"
        spec.eviction_policy = "volatile-lru"

    message = managed_error(cased)
    assert "sku_name 'balanced_b0'" in message and "did you mean 'Balanced_B0'?" in message
    assert "did you mean 'OSSCluster'?" in message
    assert "did you mean 'VolatileLRU'?" in message
    # an unknown size keeps the family's sizes as the hint
    assert "B0, B1, B3" in managed_error(lambda s: setattr(s, "sku_name", "Balanced_B2"))


def test_classic_spec_reports_wrong_types_instead_of_a_traceback() -> None:
    def bad(spec: Any) -> None:
        spec.tags = None
        spec.zones = "12"
        spec.redis_configuration = None
        spec.sku_name = "basic"

    message = classic_error(bad)
    assert "tags must be a dict of strings such as {'team': 'shop'}, not None" in message
    assert "zones must be a list of zone numbers such as ['1', '2', '3'], not '12'" in message
    assert "redis_configuration must be a dict such as" in message and "not None" in message
    assert "sku_name 'basic' must be Basic, Standard or Premium (did you mean 'Basic'?)" in message

    def zones(spec: Any) -> None:
        spec.zones = None

    assert "zones must be a list" in classic_error(zones)

    def good(spec: Any) -> None:
        spec.zones = [1]

    assert AzureRedisRequest("legacy", infrastructure_callbacks=(good,)).build_spec(
        "shop"
    ).zones == ["1"]


def test_emulator_token_ignores_a_dead_http_proxy(
    emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")  # nothing listens on port 9
    # urlopen's default opener read the proxy variables when first used: rebuild it now
    urllib.request.install_opener(urllib.request.build_opener())
    try:
        token = EmulatorCredential(endpoint=emulator.endpoint).get_token(REDIS_SCOPE)
    finally:
        urllib.request.install_opener(None)  # built again, from the restored variables
    assert decode_claims(token.token)["oid"] == EMULATOR_OBJECT_ID
    assert token.expires_on > time.time() + 60
