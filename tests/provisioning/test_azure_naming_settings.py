"""Names, settings and credentials: everything checked before any Azure call."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

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
    generated_name_collisions,
    generated_resource_group,
    target_collisions,
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
    spec = requests[0].build_spec("a")
    assert requests[0].use_access_keys and isinstance(spec, CacheSpec) and spec.capacity == 2
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


# -- two resources of one app that would get one Azure name (issue 11) ------------------------


@pytest.mark.parametrize(
    ("resource", "azure_name"),
    [
        ("cache", "cache-yqn2s7xf3gwng"),
        ("my-cache", "mycache-yqn2s7xf3gwng"),
        ("Cache-Two", "cachetwo-yqn2s7xf3gwng"),
        ("a" * 60 + "-bcd", "a" * 49 + "-yqn2s7xf3gwng"),
    ],
)
def test_names_that_fit_keep_the_azure_names_they_always_had(
    resource: str, azure_name: str
) -> None:
    """Golden values of the naming rule as released: nothing provisioned may be renamed."""
    assert cache_name_for(resource, SUB, "rg1") == azure_name


def test_generated_name_collisions_name_both_resources() -> None:
    long_a, long_b = "x" * 49 + "-one", "x" * 49 + "-two"
    problems = generated_name_collisions(["my-cache", "other", "mycache", long_a, long_b])
    assert problems == [
        "Azure caches my-cache and mycache would both be named mycache-<suffix> in Azure (the "
        "generated name drops hyphens and keeps the first 49 characters): rename mycache or "
        "my-cache so that they differ there",
        f"Azure caches {long_a} and {long_b} would both be named {'x' * 49}-<suffix> in Azure "
        "(the generated name drops hyphens and keeps the first 49 characters): rename "
        f"{long_b} or {long_a} so that they differ there",
    ]
    assert cache_name_for(long_a, SUB, "rg") == cache_name_for(long_b, SUB, "rg")
    # 48 shared characters are not a collision
    assert generated_name_collisions(["y" * 48 + "a", "y" * 48 + "b", "cache", "cache2"]) == []


def test_an_existing_cache_named_like_a_generated_one_is_a_collision() -> None:
    generated = cache_name_for("cache", SUB, "rg1")
    problems = target_collisions(
        [
            ("cache", "rg1", generated, False),
            ("imported", "RG1", generated.upper(), True),
            ("alias-1", "rg1", "shared", True),
            ("alias-2", "rg1", "shared", True),  # two references to one existing cache: fine
            ("elsewhere", "rg2", generated, True),  # another group: another cache
        ]
    )
    assert problems == [
        f"Azure cache imported uses the existing cache {generated.upper()} in resource group "
        f"RG1, which is the name generated for cache, so both would act on one cache: rename "
        "cache or point imported.as_existing() at another cache"
    ]


@pytest.mark.parametrize(
    ("first", "second"), [("my-cache", "mycache"), ("c" * 49 + "-east", "c" * 49 + "-west")]
)
def test_plan_and_provision_refuse_colliding_names_before_any_call(
    emulator: Any, state_dir: Any, first: str, second: str
) -> None:
    from provisioning.provisioner import Provisioner
    from provisioning.run_mode import provision_for_run

    requests = [AzureRedisRequest(first), AzureRedisRequest("fine"), AzureRedisRequest(second)]
    settings = ProvisioningSettings.from_configuration(emulator.settings(), "shop")
    provisioner = Provisioner(settings, state_dir, "shop")
    try:
        for attempt in (provisioner.plan, provisioner.provision):
            with pytest.raises(ConfigurationError) as info:
                attempt(requests)
            message = str(info.value)
            assert f"Azure caches {first} and {second} would both be named" in message
            assert f"rename {second} or {first}" in message
    finally:
        provisioner.close()
    with pytest.raises(ConfigurationError, match=f"Azure caches {first} and {second}"):
        provision_for_run(requests, emulator.settings(), state_dir, "shop", lambda n, t: None)
    assert emulator.requests() == []  # refused before any Azure call


def test_the_apps_own_caches_are_checked_at_build(tmp_path: Any) -> None:
    """The model's ``build()`` reports the pair before anything starts or any call is made."""
    from apphost_sdk.errors import ValidationError
    from apphost_sdk.orchestration.app import DistributedApplication

    builder = DistributedApplication.create_builder([])
    builder.add_azure_redis("my-cache")
    builder.add_azure_redis("mycache").run_as_container()
    builder.add_azure_redis("imported").as_existing("mycache", "rg1")  # not generated: fine
    builder.add_azure_redis("x" * 49 + "-a")
    builder.add_azure_redis("x" * 49 + "-b")
    with pytest.raises(ValidationError) as info:
        builder.build()
    assert info.value.problems == [
        "Azure caches my-cache and mycache would both be named mycache-<suffix> in Azure (the "
        "generated name drops hyphens and keeps the first 49 characters): rename mycache or "
        "my-cache so that they differ there",
        f"Azure caches {'x' * 49}-a and {'x' * 49}-b would both be named {'x' * 49}-<suffix> in "
        "Azure (the generated name drops hyphens and keeps the first 49 characters): rename "
        f"{'x' * 49}-b or {'x' * 49}-a so that they differ there",
    ]
