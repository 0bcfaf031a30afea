"""Names, settings and credentials: everything checked before any Azure call."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from conftest import AzureCache

from apphost_sdk.configuration import Configuration
from apphost_sdk.errors import ConfigurationError
from provisioning.app_model import requests_from_app
from provisioning.credentials import (
    EMULATOR_OBJECT_ID,
    EmulatorCredential,
    create_credential,
    current_principal,
    decode_claims,
)
from provisioning.errors import AuthenticationFailedError
from provisioning.naming import (
    access_policy_assignment_name,
    cache_name_for,
    generated_resource_group,
    validate_cache_name,
)
from provisioning.settings import ProvisioningSettings
from provisioning.spec import AzureRedisRequest, CacheSpec

SUB = "11111111-2222-3333-4444-555555555555"


def test_cache_names_are_deterministic_and_scoped_to_subscription_and_group() -> None:
    a = cache_name_for("my-cache", SUB, "rg1")
    assert a == cache_name_for("my-cache", SUB, "RG1")  # group ids are case-insensitive
    assert a.startswith("mycache-") and len(a) == len("mycache-") + 13
    assert a != cache_name_for("my-cache", SUB, "rg2")
    assert a != cache_name_for("my-cache", "99999999-2222-3333-4444-555555555555", "rg1")
    validate_cache_name(a)


def test_long_names_are_cut_to_63_keeping_the_suffix() -> None:
    name = cache_name_for("a" * 60 + "-bcd", SUB, "rg1")
    assert len(name) == 63
    assert name.endswith(cache_name_for("x", SUB, "rg1").split("-")[1])


@pytest.mark.parametrize("bad", ["", "1cache", "my--cache", "cache-", "my_cache", "a" * 65])
def test_invalid_resource_names_are_rejected(bad: str) -> None:
    with pytest.raises(ConfigurationError, match="invalid"):
        cache_name_for(bad, SUB, "rg1")


@pytest.mark.parametrize("bad", ["-x", "x-", "a--b", "a" * 64, "bad_name", ""])
def test_existing_cache_names_follow_azure_rules(bad: str) -> None:
    with pytest.raises(ConfigurationError, match="Azure cache name"):
        validate_cache_name(bad)


def test_assignment_names_are_stable_uuids() -> None:
    one = access_policy_assignment_name("/subscriptions/s/x", "oid", "Data Contributor")
    assert one == access_policy_assignment_name("/SUBSCRIPTIONS/s/X", "OID", "data contributor")
    assert one != access_policy_assignment_name("/subscriptions/s/x", "other", "Data Contributor")


def test_missing_settings_are_listed_in_both_forms() -> None:
    with pytest.raises(ConfigurationError) as info:
        ProvisioningSettings.from_configuration(Configuration({}), "app")
    message = str(info.value)
    for part in ("Azure__SubscriptionId", "Azure__Location", '"SubscriptionId"', '"Location"'):
        assert part in message


def test_generated_resource_group_and_creation_default() -> None:
    config = Configuration({"Azure:SubscriptionId": SUB, "Azure:Location": "westus"})
    settings = ProvisioningSettings.from_configuration(config, "shop")
    assert settings.resource_group == generated_resource_group("rg-aspire", "shop", SUB)
    assert settings.resource_group.startswith("rg-aspire-shop-")
    assert settings.allow_resource_group_creation is True
    named = Configuration({**config.to_dict(), "Azure__ResourceGroup": "mine"})
    settings = ProvisioningSettings.from_configuration(named, "shop")
    assert settings.resource_group == "mine" and not settings.allow_resource_group_creation
    assert settings.credential_source == "Default"
    assert settings.provisioning_timeout == 3600.0


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"Azure:ResourceManagerEndpoint": "http://example.com"}, "plain http"),
        (
            {
                "Azure:ResourceManagerEndpoint": "https://management.azure.com",
                "Azure:CredentialSource": "Emulator",
            },
            "loopback",
        ),
        ({"Azure:CredentialSource": "Magic"}, "not supported"),
        ({"Azure:SubscriptionId": "not-a-guid"}, "not a subscription id"),
        ({"Azure:ResourceGroup": "bad/name"}, "resource group name"),
    ],
)
def test_bad_settings_are_clear_errors(extra: dict[str, str], message: str) -> None:
    values = {"Azure:SubscriptionId": SUB, "Azure:Location": "westus", **extra}
    with pytest.raises(ConfigurationError, match=message):
        ProvisioningSettings.from_configuration(Configuration(values), "app")


def test_http_is_accepted_on_loopback_with_the_emulator_credential() -> None:
    values = {
        "Azure:SubscriptionId": SUB,
        "Azure:Location": "westus",
        "Azure:ResourceManagerEndpoint": "http://127.0.0.1:1234/",
        "Azure:CredentialSource": "emulator",
    }
    settings = ProvisioningSettings.from_configuration(Configuration(values), "app")
    assert settings.endpoint_is_loopback and settings.credential_source == "Emulator"
    assert isinstance(create_credential(settings), EmulatorCredential)
    principal = current_principal(create_credential(settings), settings)
    assert principal.object_id == EMULATOR_OBJECT_ID


def test_emulator_token_is_jwt_shaped_and_unsigned() -> None:
    token = EmulatorCredential().get_token("https://management.azure.com/.default")
    signature = token.token.split(".")[2]
    assert signature == ""
    claims = decode_claims(token.token)
    assert claims["oid"] == EMULATOR_OBJECT_ID and claims["exp"] == token.expires_on
    assert "token=" not in repr(token)


def test_sign_in_failure_is_one_clear_error() -> None:
    class Broken:
        def get_token(self, *scopes: str) -> None:
            raise RuntimeError("AzureCliCredential: Please run 'az login' to set up an account")

    values = {"Azure:SubscriptionId": SUB, "Azure:Location": "westus"}
    settings = ProvisioningSettings.from_configuration(Configuration(values), "app")
    with pytest.raises(AuthenticationFailedError, match="sign in again"):
        current_principal(Broken(), settings)


def test_spec_defaults_callbacks_and_validation() -> None:
    def bigger(spec: CacheSpec) -> None:
        spec.sku_name, spec.capacity = "Standard", 2
        spec.redis_configuration["maxmemory-policy"] = "allkeys-lru"
        spec.redis_configuration["notify-keyspace-events"] = True  # type: ignore[assignment]
        spec.tags["team"] = "a"

    spec = AzureRedisRequest("cache", infrastructure_callbacks=(bigger,)).build_spec("app")
    assert (spec.sku_name, spec.family, spec.capacity) == ("Standard", "C", 2)
    assert spec.redis_configuration["aad-enabled"] == "true"
    assert spec.redis_configuration["notify-keyspace-events"] == "true"
    assert spec.tags == {"aspire-resource-name": "cache", "apphost-app": "app", "team": "a"}
    keys = AzureRedisRequest("cache", use_access_keys=True).build_spec("app")
    assert "aad-enabled" not in keys.redis_configuration
    assert (keys.minimum_tls_version, keys.enable_non_ssl_port) == ("1.2", False)

    def wrong(spec: CacheSpec) -> None:
        spec.sku_name, spec.family, spec.capacity = "Premium", "C", 9

    with pytest.raises(ConfigurationError, match=r"family must be 'P'.*capacity 9"):
        AzureRedisRequest("cache", infrastructure_callbacks=(wrong,)).build_spec("app")


def test_requests_from_a_duck_typed_app() -> None:
    def cb(spec: CacheSpec) -> None:
        spec.capacity = 2

    app = SimpleNamespace(
        model=SimpleNamespace(
            resources=[
                AzureCache("cache", use_access_keys=True, infrastructure_callbacks=[cb]),
                AzureCache("local", is_container=True),
                SimpleNamespace(name="api"),
            ]
        )
    )
    requests = requests_from_app(app)
    assert [r.resource_name for r in requests] == ["cache"]
    assert requests[0].use_access_keys and requests[0].build_spec("a").capacity == 2
    assert len(requests_from_app(app, include_containers=True)) == 2


def test_resources_are_recognised_by_contract_not_by_class_name() -> None:
    class AzureRedisResource(SimpleNamespace):
        """Named like the model class, but without ``to_azure_request``: not a cache."""

    app = SimpleNamespace(
        model=SimpleNamespace(
            resources=[
                AzureRedisResource(name="by-name", kind="azure-redis", is_container=False),
                SimpleNamespace(name="not-callable", to_azure_request=None, is_container=False),
                SimpleNamespace(
                    name="any-class",
                    is_container=False,
                    to_azure_request=lambda: AzureRedisRequest("any-class"),
                ),
            ]
        )
    )
    assert [r.resource_name for r in requests_from_app(app)] == ["any-class"]


def test_a_request_of_the_wrong_type_is_a_clear_error() -> None:
    wrong = SimpleNamespace(name="cache", is_container=False, to_azure_request=lambda: "cache")
    app = SimpleNamespace(model=SimpleNamespace(resources=[wrong]))
    with pytest.raises(TypeError, match=r"returned str, not provisioning\.spec\.AzureRedisRequest"):
        requests_from_app(app)


def test_a_container_cache_is_not_asked_for_a_request_in_run_mode() -> None:
    class Local(AzureCache):
        def to_azure_request(self) -> AzureRedisRequest:
            raise AssertionError("run mode replaces this cache by a container")

    app = SimpleNamespace(model=SimpleNamespace(resources=[Local("local", is_container=True)]))
    assert requests_from_app(app) == []


@pytest.mark.parametrize(
    "key",
    [
        "ProvisioningTimeoutMinutes",
        "PollIntervalSeconds",
        "RetryBaseDelaySeconds",
        "RetryMaxDelaySeconds",
    ],
)
@pytest.mark.parametrize("value", ["nan", "NaN", "inf", "-inf", "Infinity"])
def test_numeric_settings_must_be_finite(key: str, value: str) -> None:
    values = {"Azure:SubscriptionId": SUB, "Azure:Location": "westus", f"Azure:{key}": value}
    with pytest.raises(ConfigurationError, match=f"Azure:{key} must be positive"):
        ProvisioningSettings.from_configuration(Configuration(values), "app")
