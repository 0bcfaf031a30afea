"""Azure Managed Redis provisioning through the real azure-mgmt-redisenterprise client,
against the ARM emulator over HTTP."""

from __future__ import annotations

import json
import stat
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import SUBSCRIPTION, Emulator, wait_until

from apphost_sdk.configuration import Configuration
from apphost_sdk.errors import ConfigurationError
from provisioning.arm import create_clients
from provisioning.credentials import (
    EMULATOR_OBJECT_ID,
    REDIS_SCOPE,
    EmulatorCredential,
    decode_claims,
    redis_credential,
)
from provisioning.errors import (
    NameNotAvailableError,
    ProductRetiredError,
    ProvisioningError,
    ProvisioningTimeoutError,
)
from provisioning.managed_spec import ManagedRedisRequest, ManagedRedisSpec
from provisioning.naming import (
    access_policy_assignment_name,
    cluster_name_for,
    managed_database_id,
)
from provisioning.outputs import CacheOutputs
from provisioning.provisioner import PlanAction, Provisioner, ProvisioningCancelled
from provisioning.run_mode import provision_for_run
from provisioning.settings import ProvisioningSettings
from provisioning.spec import AzureRedisRequest

APP = "shop"


def _single(spec: ManagedRedisSpec) -> None:
    spec.clustering_policy = "NoCluster"


#: For tests where the clustering policy does not matter: one redis-server behind the cache
#: instead of a three-node cluster keeps them fast on a small machine.
SINGLE = (_single,)


def run(
    emulator: Emulator,
    state_dir: Path,
    *requests: Any,
    statuses: list[tuple[str, str]] | None = None,
    **overrides: str,
) -> dict[str, CacheOutputs]:
    seen = statuses if statuses is not None else []
    return provision_for_run(
        list(requests),
        emulator.settings(**overrides),
        state_dir,
        APP,
        lambda name, text: seen.append((name, text)),
    )


def sdk(emulator: Emulator) -> tuple[ProvisioningSettings, Any]:
    settings = ProvisioningSettings.from_configuration(emulator.settings(), APP)
    return settings, create_clients(settings, EmulatorCredential())


def name_of(settings: ProvisioningSettings, resource: str) -> str:
    return cluster_name_for(resource, settings.subscription_id, settings.resource_group)


def index_of(emulator: Emulator, method: str, suffix: str) -> int:
    log = emulator.requests()
    return next(
        i for i, r in enumerate(log) if r["method"] == method and r["path"].endswith(suffix)
    )


def test_defaults_cluster_then_database_then_assignment(
    emulator: Emulator, state_dir: Path
) -> None:
    statuses: list[tuple[str, str]] = []
    outputs = run(emulator, state_dir, ManagedRedisRequest("cache"), statuses=statuses)["cache"]
    settings, clients = sdk(emulator)
    name = name_of(settings, "cache")
    ops = clients.enterprise
    cluster = ops.redis_enterprise.get(settings.resource_group, name)
    # the emulator refuses a cluster PUT without publicNetworkAccess (api 2025-07-01): a 201
    # and the value read back show it was sent
    assert emulator.cluster_puts() == [201]
    assert (cluster.sku.name, cluster.minimum_tls_version) == ("Balanced_B0", "1.2")
    assert (cluster.public_network_access, cluster.high_availability) == ("Enabled", "Enabled")
    assert cluster.tags == {"aspire-resource-name": "cache", "apphost-app": APP}
    database = ops.databases.get(settings.resource_group, name, "default")
    assert (database.port, database.client_protocol) == (10000, "Encrypted")
    assert database.access_keys_authentication == "Disabled"
    assert (database.clustering_policy, database.eviction_policy) == ("OSSCluster", "VolatileLRU")
    assignment = access_policy_assignment_name(
        managed_database_id(cluster.id), EMULATOR_OBJECT_ID, "default"
    )
    got = ops.access_policy_assignment.get(settings.resource_group, name, "default", assignment)
    assert got.access_policy_name == "default" and got.user.object_id == EMULATOR_OBJECT_ID
    # written after the database exists
    assert index_of(emulator, "PUT", f"/{name}/databases/default") < index_of(
        emulator, "PUT", f"/accessPolicyAssignments/{assignment}"
    )
    assert outputs.kind == "managed-redis" and outputs.clustering_policy == "OSSCluster"
    assert outputs.ssl_port == 10000 and outputs.host_name == cluster.host_name
    assert outputs.connection_string == f"{cluster.host_name}:10000,ssl=true"
    assert outputs.password is None and outputs.principal_object_id == EMULATOR_OBJECT_ID
    assert emulator.count("POST", "/listKeys") == 0
    texts = [t for n, t in statuses if n == "cache"]
    assert any(t.startswith("Provisioning (Creating") for t in texts)
    assert any(t.startswith("Provisioning database (Creating") for t in texts)
    assert texts[-1] == "Provisioned"
    clients.close()


def test_access_keys_outputs_and_secret_storage(emulator: Emulator, state_dir: Path) -> None:
    outputs = run(
        emulator,
        state_dir,
        ManagedRedisRequest("kv", use_access_keys=True, infrastructure_callbacks=SINGLE),
    )["kv"]
    settings, clients = sdk(emulator)
    database = clients.enterprise.databases.get(
        settings.resource_group, name_of(settings, "kv"), "default"
    )
    assert database.access_keys_authentication == "Enabled"
    key = outputs.primary_key
    assert key and len(key) == 44
    assert outputs.connection_string == f"{outputs.host_name}:10000,ssl=true,password={key}"
    assert key not in repr(outputs) and key not in json.dumps(outputs.public_dict())
    assert outputs.public_dict(show_secrets=True)["primaryKey"] == key
    assert emulator.count("PUT", "/accessPolicyAssignments/") == 0
    record = state_dir / "azure" / "kv.json"
    assert key not in record.read_text()
    assert stat.S_IMODE((state_dir / "azure" / "kv.secrets.json").stat().st_mode) == 0o600
    clients.close()


def test_unchanged_rerun_of_mixed_kinds_makes_no_write(emulator: Emulator, state_dir: Path) -> None:
    requests = (
        ManagedRedisRequest("cache", infrastructure_callbacks=SINGLE),
        ManagedRedisRequest("kv", use_access_keys=True, infrastructure_callbacks=SINGLE),
        AzureRedisRequest("legacy"),
    )
    first = run(emulator, state_dir, *requests)
    assert {o.kind for o in first.values()} == {"managed-redis", "redis"}
    before = len(emulator.requests())
    second = run(emulator, state_dir, *requests)
    new = emulator.requests()[before:]
    # the cluster and its database per Managed Redis, the cache per Azure Cache for Redis
    assert [r["method"] for r in new] == ["GET"] * 5
    assert sum(r["path"].lower().endswith("/databases/default") for r in new) == 2
    assert second == first
    # without the state record: reads only, still no write
    for name in ("cache", "kv"):
        (state_dir / "azure" / f"{name}.json").unlink()
    writes = len(emulator.writes())
    third = run(emulator, state_dir, requests[0])
    assert len(emulator.writes()) == writes
    assert third["cache"] == first["cache"]


def test_rerun_notices_a_changed_host_name_and_a_deleted_database(
    emulator: Emulator, state_dir: Path
) -> None:
    request = ManagedRedisRequest("cache", infrastructure_callbacks=SINGLE)
    first = run(emulator, state_dir, request)["cache"]
    record_path = state_dir / "azure" / "cache.json"
    record = json.loads(record_path.read_text())
    record["outputs"]["host_name"] = "moved.westus.redis.azure.net"  # as if Azure moved it
    record_path.write_text(json.dumps(record))
    writes = len(emulator.writes())
    assert run(emulator, state_dir, request)["cache"] == first  # not the stale host
    assert len(emulator.writes()) == writes
    # the database deleted out of band: recreated (and access granted again), not reused
    settings, clients = sdk(emulator)
    name = name_of(settings, "cache")
    databases = clients.enterprise.databases
    databases.begin_delete(settings.resource_group, name, "default", polling=False)

    def gone() -> bool:
        try:
            databases.get(settings.resource_group, name, "default")
        except Exception:
            return True
        return False

    wait_until(gone)
    again = run(emulator, state_dir, request)["cache"]
    assert emulator.count("PUT", suffix="/databases/default") == 2
    assert emulator.count("PUT", "/accessPolicyAssignments/") == 2
    assert again.host_name == first.host_name and again.ssl_port == 10000
    clients.close()


class _Stateless:
    """The real SDK's access policy assignment operations, with ``provisioningState`` left
    out of what they return (as an API version or a proxy that drops it would)."""

    def __init__(self, real: Any) -> None:
        self.real = real

    @staticmethod
    def _strip(found: Any) -> Any:
        if found is not None:
            found.provisioning_state = None
        return found

    def get(self, *args: Any, **kwargs: Any) -> Any:
        return self._strip(self.real.get(*args, **kwargs))

    def begin_create_update(self, *args: Any, **kwargs: Any) -> Any:
        created = self._strip(self.real.begin_create_update(*args, **kwargs).result())

        class Done:
            def result(self) -> Any:
                return created

        return Done()


def provision_with(provisioner: Provisioner, *requests: Any) -> dict[str, CacheOutputs]:
    try:
        return provisioner.provision(list(requests))
    finally:
        provisioner.close()


def test_assignment_without_a_provisioning_state_counts_once_it_grants(
    emulator: Emulator, state_dir: Path
) -> None:
    # a short timeout: before the fix, a missing state waited for it, then failed
    config = emulator.settings(ProvisioningTimeoutMinutes="0.05")
    settings = ProvisioningSettings.from_configuration(config, APP)
    request = ManagedRedisRequest("cache", infrastructure_callbacks=SINGLE)

    def stateless() -> Provisioner:
        provisioner = Provisioner(settings, state_dir, APP)
        ops = provisioner.clients.enterprise
        ops.access_policy_assignment = _Stateless(ops.access_policy_assignment)
        return provisioner

    first = provision_with(stateless(), request)["cache"]
    assert emulator.count("PUT", "/accessPolicyAssignments/") == 1
    (state_dir / "azure" / "cache.json").unlink()  # no fast path: the assignment is read
    writes = len(emulator.writes())
    assert provision_with(stateless(), request)["cache"] == first
    assert len(emulator.writes()) == writes


def test_assignment_timeout_says_to_run_again(emulator: Emulator, state_dir: Path) -> None:
    request = ManagedRedisRequest("cache", infrastructure_callbacks=SINGLE)
    run(emulator, state_dir, request)
    settings, clients = sdk(emulator)
    name = name_of(settings, "cache")
    ops = clients.enterprise.access_policy_assignment
    (assignment,) = list(ops.list(settings.resource_group, name, "default"))
    ops.begin_delete(settings.resource_group, name, "default", assignment.name, polling=False)
    clients.close()
    (state_dir / "azure" / "cache.json").unlink()
    emulator.configure(policy_delay=60.0)  # the new assignment stays Updating
    with pytest.raises(ProvisioningTimeoutError) as info:
        run(emulator, state_dir, request, ProvisioningTimeoutMinutes="0.02")
    message = str(info.value)
    assert "access policy assignment" in message and "still updating" in message
    assert "run again" in message and "Azure:ProvisioningTimeoutMinutes" in message


def test_interrupted_create_resumes_without_a_second_put(
    emulator: Emulator, state_dir: Path
) -> None:
    settings = ProvisioningSettings.from_configuration(emulator.settings(), APP)
    provisioner: Provisioner

    def on_status(name: str, text: str) -> None:
        if text.startswith("Provisioning (Creating"):
            provisioner.cancel()  # Ctrl-C while the cluster is being created

    provisioner = Provisioner(settings, state_dir, APP, on_status=on_status)
    try:
        with pytest.raises(ProvisioningCancelled):
            provisioner.provision([ManagedRedisRequest("cache", infrastructure_callbacks=SINGLE)])
    finally:
        provisioner.close()
    record = json.loads((state_dir / "azure" / "cache.json").read_text())
    assert record["status"] == "pending"
    statuses: list[tuple[str, str]] = []
    request = ManagedRedisRequest("cache", infrastructure_callbacks=SINGLE)
    outputs = run(emulator, state_dir, request, statuses=statuses)
    assert emulator.cluster_puts() == [201]
    assert emulator.count("PUT", suffix="/databases/default") == 1
    assert outputs["cache"].ssl_port == 10000


def test_three_managed_caches_provision_concurrently(emulator: Emulator, state_dir: Path) -> None:
    def single(spec: ManagedRedisSpec) -> None:
        spec.clustering_policy = "NoCluster"  # one redis-server each: less noise from the host

    delay = 1.5
    emulator.configure(create_delay=delay)
    start = time.monotonic()
    requests = (ManagedRedisRequest(n, infrastructure_callbacks=(single,)) for n in "abc")
    results = run(emulator, state_dir, *requests)
    elapsed = time.monotonic() - start
    assert sorted(results) == ["a", "b", "c"]
    # each one is a cluster create then a database create (2 x delay); one after another
    # would take 6 x delay
    assert 2 * delay <= elapsed < 4 * delay, elapsed


def test_unknown_sku_and_bad_values_are_reported_together_before_any_call(
    emulator: Emulator, state_dir: Path
) -> None:
    def bad(spec: ManagedRedisSpec) -> None:
        spec.sku_name = "Balanced_B2"
        spec.eviction_policy = "volatile-lru"
        spec.clustering_policy = "Cluster"

    with pytest.raises(ConfigurationError) as info:
        run(emulator, state_dir, ManagedRedisRequest("cache", infrastructure_callbacks=(bad,)))
    message = str(info.value)
    assert message.startswith("cache: invalid Azure Managed Redis configuration")
    assert "sku_name 'Balanced_B2'" in message and "Balanced_B0..B1000" in message
    assert "MemoryOptimized_M10..M2000" in message and "eviction_policy" in message
    assert "clustering_policy 'Cluster'" in message
    assert emulator.requests() == []


def test_clustering_policy_change_is_refused_before_any_write(
    emulator: Emulator, state_dir: Path
) -> None:
    run(emulator, state_dir, ManagedRedisRequest("cache"))

    def enterprise(spec: ManagedRedisSpec) -> None:
        spec.clustering_policy = "EnterpriseCluster"

    changed = ManagedRedisRequest("cache", infrastructure_callbacks=(enterprise,))
    settings = ProvisioningSettings.from_configuration(emulator.settings(), APP)
    provisioner = Provisioner(settings, state_dir, APP)
    try:
        (item,) = provisioner.plan([changed])
    finally:
        provisioner.close()
    assert item.action is PlanAction.UPDATE
    assert any("clustering_policy: OSSCluster -> EnterpriseCluster" in c for c in item.changes)
    writes = len(emulator.writes())
    with pytest.raises(ConfigurationError, match="cannot change the clustering policy") as info:
        run(emulator, state_dir, changed)
    assert "apphost destroy" in str(info.value)
    assert len(emulator.writes()) == writes


def test_sku_and_eviction_changes_are_applied_as_patches(
    emulator: Emulator, state_dir: Path
) -> None:
    run(emulator, state_dir, ManagedRedisRequest("cache", infrastructure_callbacks=SINGLE))

    def bigger(spec: ManagedRedisSpec) -> None:
        spec.clustering_policy = "NoCluster"
        spec.sku_name = "Balanced_B1"
        spec.eviction_policy = "AllKeysLRU"

    statuses: list[tuple[str, str]] = []
    run(
        emulator,
        state_dir,
        ManagedRedisRequest("cache", infrastructure_callbacks=(bigger,)),
        statuses=statuses,
    )
    assert emulator.count("PATCH") == 2 and emulator.cluster_puts() == [201]
    assert any("sku: Balanced_B0 -> Balanced_B1" in t for _, t in statuses)
    settings, clients = sdk(emulator)
    name = name_of(settings, "cache")
    assert clients.enterprise.redis_enterprise.get(settings.resource_group, name).sku.name == (
        "Balanced_B1"
    )
    database = clients.enterprise.databases.get(settings.resource_group, name, "default")
    assert database.eviction_policy == "AllKeysLRU"
    clients.close()


def test_name_taken_in_the_region_is_a_clear_error_and_leaves_nothing(
    emulator: Emulator, state_dir: Path
) -> None:
    settings = ProvisioningSettings.from_configuration(emulator.settings(), APP)
    emulator.fault(f"name-taken,name={name_of(settings, 'cache')}")
    with pytest.raises(NameNotAvailableError, match="Azure:Location") as info:
        run(emulator, state_dir, ManagedRedisRequest("cache"))
    assert "as_existing()" in str(info.value) and str(info.value).startswith("cache: ")
    assert emulator.cluster_puts() == [409]
    assert not (state_dir / "azure" / "cache.json").exists()


def test_cluster_not_created_by_this_app_is_not_adopted(
    emulator: Emulator, state_dir: Path
) -> None:
    from azure.mgmt.redisenterprise import models

    run(emulator, state_dir, AzureRedisRequest("seed"))  # creates the resource group
    settings, clients = sdk(emulator)
    name = name_of(settings, "cache")
    params = models.Cluster(
        location="westus", sku=models.Sku(name="Balanced_B0"), public_network_access="Enabled"
    )
    clients.enterprise.redis_enterprise.begin_create(
        settings.resource_group, name, params, polling=False
    )
    with pytest.raises(ProvisioningError, match=r"not created by app 'shop'.*as_existing\(\)"):
        run(emulator, state_dir, ManagedRedisRequest("cache"))
    assert emulator.cluster_puts() == [201]
    clients.close()


def test_retired_classic_create_names_managed_redis(emulator: Emulator, state_dir: Path) -> None:
    emulator.fault("retired")
    with pytest.raises(ProductRetiredError, match="add_azure_managed_redis") as info:
        run(emulator, state_dir, AzureRedisRequest("legacy"))
    assert "retired" in str(info.value) and str(info.value).startswith("legacy: ")
    forward = ManagedRedisRequest("legacy", infrastructure_callbacks=SINGLE)
    outputs = run(emulator, state_dir, forward)
    assert outputs["legacy"].ssl_port == 10000


def test_retiring_enterprise_sku_is_refused_with_the_fix(
    emulator: Emulator, state_dir: Path
) -> None:
    def enterprise(spec: ManagedRedisSpec) -> None:
        spec.sku_name = "Enterprise_E10"

    with pytest.raises(ProductRetiredError, match="Balanced_B0"):
        run(
            emulator,
            state_dir,
            ManagedRedisRequest("cache", infrastructure_callbacks=(enterprise,)),
        )


def test_existing_cluster_is_used_never_created_and_entra_still_granted(
    emulator: Emulator, state_dir: Path
) -> None:
    request = ManagedRedisRequest("made", use_access_keys=True, infrastructure_callbacks=SINGLE)
    made = run(emulator, state_dir, request)["made"]
    settings = ProvisioningSettings.from_configuration(emulator.settings(), APP)
    puts = emulator.cluster_puts()
    ref = ManagedRedisRequest(
        "ref",
        use_access_keys=True,
        existing_name=made.name,
        existing_resource_group=settings.resource_group,
    )
    outputs = run(emulator, state_dir, ref)["ref"]
    assert outputs.host_name == made.host_name and outputs.primary_key == made.primary_key
    entra = run(emulator, state_dir, ManagedRedisRequest("ref2", existing_name=made.name))
    assert entra["ref2"].password is None
    assert emulator.count("PUT", "/accessPolicyAssignments/") == 1  # as Aspire: roles still
    with pytest.raises(ProvisioningError, match="was not found"):
        run(emulator, state_dir, ManagedRedisRequest("ref3", existing_name="nothere"))
    assert emulator.cluster_puts() == puts


def test_destroy_deletes_both_kinds_and_waits(emulator: Emulator, state_dir: Path) -> None:
    request = ManagedRedisRequest("cache", infrastructure_callbacks=SINGLE)
    run(emulator, state_dir, request, AzureRedisRequest("legacy"))
    settings, clients = sdk(emulator)
    provisioner = Provisioner(settings, state_dir, APP)
    try:
        owned = provisioner.owned_caches([])
        assert sorted(str(c.name) for c in owned) == sorted(
            [name_of(settings, "cache"), provisioner._target(AzureRedisRequest("legacy"))[1]]
        )
        assert sorted(provisioner.destroy(owned=owned)) == sorted(str(c.name) for c in owned)
    finally:
        provisioner.close()
    group = settings.resource_group
    assert list(clients.enterprise.redis_enterprise.list_by_resource_group(group)) == []
    assert not (state_dir / "azure" / "cache.json").exists()
    clients.close()


# -- units --------------------------------------------------------------------------------------
def test_generated_cluster_names_fit_azure_rules() -> None:
    group = "rg-aspire-shop-12345678"
    long_name = "a" * 30 + "-" + "b" * 33
    name = cluster_name_for(long_name, SUBSCRIPTION, group)
    assert len(name) <= 60 and "--" not in name
    assert cluster_name_for("my-cache", SUBSCRIPTION, group).startswith("mycache-")
    assert cluster_name_for("cache", SUBSCRIPTION, group) == cluster_name_for(
        "cache", SUBSCRIPTION, group
    )


def test_spec_accepts_module_names_and_reports_duplicates() -> None:
    spec = ManagedRedisSpec(modules=["RedisJSON", {"name": "RediSearch", "args": ""}])
    spec.validate("cache")
    assert spec.modules == [
        {"name": "RedisJSON", "args": ""},
        {"name": "RediSearch", "args": ""},
    ]
    with pytest.raises(ConfigurationError, match="more than once"):
        ManagedRedisSpec(modules=["RedisJSON", "redisjson"]).validate("cache")
    with pytest.raises(ConfigurationError, match="minimum_tls_version"):
        ManagedRedisSpec(minimum_tls_version="1.0").validate("cache")


def test_emulator_credential_fetches_data_plane_tokens_from_the_emulator(
    emulator: Emulator,
) -> None:
    config = Configuration(
        {"Azure:CredentialSource": "Emulator", "Azure:ResourceManagerEndpoint": emulator.endpoint}
    )
    credential = redis_credential(config, APP)
    token = credential.get_token(REDIS_SCOPE)
    claims = decode_claims(token.token)
    assert claims["oid"] == EMULATOR_OBJECT_ID and claims["aud"] == "https://redis.azure.com"
    assert token.expires_on > time.time() + 3000
    # ARM tokens stay local: the emulator is not asked for them
    credential.get_token("https://management.azure.com/.default")
    with pytest.raises(ConfigurationError, match="ResourceManagerEndpoint"):
        redis_credential(Configuration({"Azure:CredentialSource": "Emulator"}), APP)
