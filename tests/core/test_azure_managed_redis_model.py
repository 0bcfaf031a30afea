"""``add_azure_managed_redis``: the app-model side (Aspire 13's ``AddAzureManagedRedis``).

Provisioning against the ARM emulator and the run-mode data plane are tested in
tests/provisioning; here: the resource, its arguments, ``run_as_container`` and the settings a
service is handed against the emulator.
"""

from __future__ import annotations

from typing import Any

import pytest

from apphost_sdk.configuration import Configuration
from apphost_sdk.errors import ModelArgumentError, ModelValueError, ValidationError
from apphost_sdk.integrations.azure_data_plane import emulator_environment
from apphost_sdk.integrations.azure_managed_redis import AzureManagedRedisResource
from apphost_sdk.integrations.redis import RedisResource
from apphost_sdk.model.annotations import ProvisioningAnnotation, RunAsAnnotation
from apphost_sdk.orchestration.app import DistributedApplication


def test_defaults_are_a_provisioned_resource() -> None:
    b = DistributedApplication.create_builder([])
    cache = b.add_azure_managed_redis("cache")
    assert isinstance(cache, AzureManagedRedisResource)
    assert cache.kind == "azure-managed-redis"
    assert cache.annotation(ProvisioningAnnotation) is not None
    assert not cache.is_container and not cache.use_access_keys
    assert cache.existing_name is None


def test_fluent_methods_chain_and_keep_the_type() -> None:
    b = DistributedApplication.create_builder([])
    seen: list[Any] = []
    cache = (
        b.add_azure_managed_redis("cache")
        .with_access_key_authentication()
        .configure_infrastructure(seen.append)
        .as_existing("my-cluster", "rg-1")
    )
    assert isinstance(cache, AzureManagedRedisResource)
    assert cache.use_access_keys
    assert (cache.existing_name, cache.existing_resource_group) == ("my-cluster", "rg-1")
    assert cache.infrastructure_callbacks == [seen.append]


def test_run_as_container_replaces_it_by_a_local_redis() -> None:
    b = DistributedApplication.create_builder([])
    configured: list[RedisResource] = []
    cache = b.add_azure_managed_redis("cache").run_as_container(configured.append)
    assert cache.is_container
    assert cache.annotation(ProvisioningAnnotation) is None
    run_as = cache.annotation(RunAsAnnotation)
    assert run_as is not None and isinstance(run_as.resource, RedisResource)
    assert configured == [run_as.resource]


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("bad--name", "not an Azure cluster name"),
        ("-lead", "not an Azure cluster name"),
        ("trail-", "not an Azure cluster name"),
        ("x" * 61, "1-60 letters"),
        ("under_score", "not an Azure cluster name"),
    ],
)
def test_as_existing_refuses_names_azure_refuses(name: str, why: str) -> None:
    b = DistributedApplication.create_builder([])
    with pytest.raises(ModelValueError) as info:
        b.add_azure_managed_redis("cache").as_existing(name)
    message = str(info.value)
    assert "cache.as_existing" in message and why in message
    assert "as the Azure portal shows it" in message


def test_bad_arguments_name_the_call_and_the_fix() -> None:
    b = DistributedApplication.create_builder([])
    cache = b.add_azure_managed_redis("cache")
    with pytest.raises(ModelArgumentError, match=r"cache\.configure_infrastructure"):
        cache.configure_infrastructure(5)  # type: ignore[arg-type]
    with pytest.raises(ModelArgumentError, match=r"cache\.run_as_container"):
        cache.run_as_container(5)  # type: ignore[arg-type]
    with pytest.raises(ModelValueError, match="resource group name"):
        cache.as_existing("ok", "rg.")
    with pytest.raises(ModelArgumentError, match="add_azure_managed_redis"):
        b.add_azure_managed_redis(None)  # type: ignore[arg-type]


def test_a_name_used_twice_is_refused() -> None:
    b = DistributedApplication.create_builder([])
    b.add_azure_managed_redis("cache")
    b.add_azure_redis("cache")
    with pytest.raises(ValidationError, match="cache"):
        b.build()


def test_services_get_the_emulator_settings_only_against_the_emulator() -> None:
    emulated = Configuration(
        {
            "Azure:CredentialSource": "Emulator",
            "Azure:ResourceManagerEndpoint": "http://127.0.0.1:5999",
            "Azure:Emulator:CaFile": "/tmp/ca.pem",
            "Azure:SubscriptionId": "11111111-2222-3333-4444-555555555555",
        }
    )
    assert emulator_environment(emulated) == {
        "Azure__CredentialSource": "Emulator",
        "Azure__ResourceManagerEndpoint": "http://127.0.0.1:5999",
        "Azure__Emulator__CaFile": "/tmp/ca.pem",
    }
    real = Configuration({"Azure:CredentialSource": "AzureCli"})
    assert emulator_environment(real) == {}


def test_generated_azure_names_collide_only_within_one_azure_type() -> None:
    b = DistributedApplication.create_builder([])
    b.add_azure_redis("my-cache")
    b.add_azure_managed_redis("mycache")  # another Azure type: a distinct name
    b.build()
    b = DistributedApplication.create_builder([])
    b.add_azure_managed_redis("my-cache")
    b.add_azure_managed_redis("mycache")
    with pytest.raises(ValidationError, match="my-cache and mycache would both be named mycache-"):
        b.build()
