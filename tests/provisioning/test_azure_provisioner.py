"""The provisioner, through the real azure-mgmt-redis client, against the emulator over HTTP."""

from __future__ import annotations

import json
import stat
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import Emulator

from apphost_sdk.errors import ApphostError, ConfigurationError
from provisioning.arm import create_clients
from provisioning.credentials import EMULATOR_OBJECT_ID, EmulatorCredential
from provisioning.errors import (
    AuthenticationFailedError,
    AuthorizationFailedError,
    NameNotAvailableError,
    ProvisioningError,
    ProvisioningTimeoutError,
)
from provisioning.naming import access_policy_assignment_name, cache_name_for
from provisioning.outputs import CacheOutputs
from provisioning.run_mode import provision_for_run
from provisioning.settings import ProvisioningSettings
from provisioning.spec import AzureRedisRequest, CacheSpec

APP = "shop"


def run(
    emulator: Emulator,
    state_dir: Path,
    *requests: AzureRedisRequest,
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


def sdk(emulator: Emulator) -> Any:
    settings = ProvisioningSettings.from_configuration(emulator.settings(), APP)
    return settings, create_clients(settings, EmulatorCredential())


def test_entra_id_cache_is_created_and_waited_for_beyond_the_sdk_poller(
    emulator: Emulator, state_dir: Path
) -> None:
    statuses: list[tuple[str, str]] = []
    outputs = run(emulator, state_dir, AzureRedisRequest("cache"), statuses=statuses)["cache"]
    settings, clients = sdk(emulator)
    name = cache_name_for("cache", settings.subscription_id, settings.resource_group)
    cache = clients.redis.redis.get(settings.resource_group, name)
    assert cache.provisioning_state == "Succeeded"
    assert cache.disable_access_key_authentication is True
    assert cache.redis_configuration.aad_enabled == "true"
    assert (cache.sku.name, cache.sku.family, cache.sku.capacity) == ("Basic", "C", 1)
    assert cache.minimum_tls_version == "1.2" and cache.enable_non_ssl_port is False
    assert cache.tags == {"aspire-resource-name": "cache", "apphost-app": APP}
    assignment = access_policy_assignment_name(cache.id, EMULATOR_OBJECT_ID, "Data Contributor")
    got = clients.redis.access_policy_assignment.get(settings.resource_group, name, assignment)
    assert got.object_id == EMULATOR_OBJECT_ID and got.access_policy_name == "Data Contributor"
    assert outputs.name == name and outputs.ssl_port == 6380
    # the cache's hostName: its loopback address when the emulator runs a data plane
    assert outputs.host_name == cache.host_name
    assert outputs.connection_string == f"{cache.host_name}:6380,ssl=true"
    assert outputs.password is None and outputs.principal_object_id == EMULATOR_OBJECT_ID
    assert outputs.resource_id == cache.id
    texts = [t for n, t in statuses if n == "cache"]
    assert any(t.startswith("Provisioning (Creating, 0m0") for t in texts)
    assert texts[-1] == "Provisioned"
    # the RG was created because none was named; the group PUT and the cache PUT happened once
    assert emulator.count("PUT", suffix="/redis/" + name) == 1
    clients.close()


def test_access_keys_cache_has_password_in_outputs_but_not_in_repr_or_state(
    emulator: Emulator, state_dir: Path
) -> None:
    outputs = run(emulator, state_dir, AzureRedisRequest("kv", use_access_keys=True))["kv"]
    assert outputs.primary_key and len(outputs.primary_key) == 44
    assert outputs.connection_string.endswith(f",password={outputs.primary_key}")
    assert outputs.primary_key not in repr(outputs)
    assert emulator.count("POST", "/listKeys") == 1
    assert emulator.count("PUT", "/accessPolicyAssignments/") == 0
    record = state_dir / "azure" / "kv.json"
    secrets = state_dir / "azure" / "kv.secrets.json"
    assert outputs.primary_key not in record.read_text()
    assert stat.S_IMODE(secrets.stat().st_mode) == 0o600
    assert json.loads(record.read_text())["status"] == "succeeded"


def test_rerun_with_same_desired_state_is_one_get_and_no_write(
    emulator: Emulator, state_dir: Path
) -> None:
    first = run(
        emulator, state_dir, AzureRedisRequest("a"), AzureRedisRequest("b", use_access_keys=True)
    )
    before = len(emulator.requests())
    second = run(
        emulator, state_dir, AzureRedisRequest("a"), AzureRedisRequest("b", use_access_keys=True)
    )
    new = emulator.requests()[before:]
    assert [r["method"] for r in new] == ["GET", "GET"]
    assert second == first


def test_changed_sku_is_applied_as_an_update(emulator: Emulator, state_dir: Path) -> None:
    run(emulator, state_dir, AzureRedisRequest("cache"))

    def standard(spec: CacheSpec) -> None:
        spec.sku_name, spec.capacity = "Standard", 2

    statuses: list[tuple[str, str]] = []
    run(
        emulator,
        state_dir,
        AzureRedisRequest("cache", infrastructure_callbacks=(standard,)),
        statuses=statuses,
    )
    assert emulator.count("PATCH") == 1
    assert emulator.cache_puts() == [201]
    assert any(t.startswith("Updating (Scaling") for _, t in statuses)
    settings, clients = sdk(emulator)
    name = cache_name_for("cache", settings.subscription_id, settings.resource_group)
    cache = clients.redis.redis.get(settings.resource_group, name)
    assert (cache.sku.name, cache.sku.capacity, cache.provisioning_state) == (
        "Standard",
        2,
        "Succeeded",
    )
    clients.close()


def test_cache_deleted_out_of_band_is_recreated(emulator: Emulator, state_dir: Path) -> None:
    run(emulator, state_dir, AzureRedisRequest("cache"))
    settings, clients = sdk(emulator)
    name = cache_name_for("cache", settings.subscription_id, settings.resource_group)
    clients.redis.redis.begin_delete(settings.resource_group, name, polling=False)
    time.sleep(0.4)
    before = emulator.count("PUT", suffix=f"/redis/{name}")
    outputs = run(emulator, state_dir, AzureRedisRequest("cache"))["cache"]
    assert emulator.count("PUT", suffix=f"/redis/{name}") == before + 1
    assert clients.redis.redis.get(settings.resource_group, name).provisioning_state == "Succeeded"
    assert outputs.name == name
    clients.close()


def test_three_caches_provision_concurrently(emulator: Emulator, state_dir: Path) -> None:
    delay = 1.5
    emulator.configure(create_delay=delay)
    start = time.monotonic()
    results = run(emulator, state_dir, *(AzureRedisRequest(n) for n in ("one", "two", "three")))
    elapsed = time.monotonic() - start
    assert sorted(results) == ["one", "three", "two"]
    assert delay <= elapsed < 2 * delay, elapsed


@pytest.mark.parametrize(
    "fault",
    [
        "throttle,method=PUT,path=/redis/,retry_after=1",
        "server-error,method=PUT,path=/redis/",
        "busy,method=PUT,path=/accessPolicyAssignments/",
    ],
)
def test_transient_faults_are_retried_once_each(
    emulator: Emulator, state_dir: Path, fault: str
) -> None:
    emulator.fault(fault)
    start = time.monotonic()
    run(emulator, state_dir, AzureRedisRequest("cache"))
    if "accessPolicyAssignments" in fault:
        statuses = [
            r["status"]
            for r in emulator.requests()
            if r["method"] == "PUT" and "/accessPolicyAssignments/" in r["path"]
        ]
    else:
        statuses = emulator.cache_puts()
    assert statuses[0] in (429, 500, 409) and statuses[1] in (200, 201)
    assert len(statuses) == 2
    if "retry_after=1" in fault:
        assert time.monotonic() - start >= 1.0  # Retry-After honoured


def test_azure_core_does_not_retry_on_its_own(emulator: Emulator, state_dir: Path) -> None:
    emulator.fault("server-error,method=PUT,path=/redis/,count=5")
    with pytest.raises(ProvisioningError, match="HTTP 500"):
        run(emulator, state_dir, AzureRedisRequest("cache"), MaxAttempts="1")
    assert emulator.cache_puts() == [500]
    emulator.reset()
    emulator.fault("server-error,method=PUT,path=/redis/,count=2")
    run(emulator, state_dir, AzureRedisRequest("cache"), MaxAttempts="3")
    assert emulator.cache_puts() == [500, 500, 201]


def test_create_ending_failed_is_a_clear_error_and_not_recorded_as_success(
    emulator: Emulator, state_dir: Path
) -> None:
    emulator.fault("create-failed")
    with pytest.raises(ProvisioningError, match=r"^cache: .*Failed.*delete it"):
        run(emulator, state_dir, AzureRedisRequest("cache"))
    record = json.loads((state_dir / "azure" / "cache.json").read_text())
    assert record["status"] == "pending" and "outputs" not in record
    with pytest.raises(ProvisioningError, match="Failed"):  # stuck in Failed: same clear error
        run(emulator, state_dir, AzureRedisRequest("cache"))
    assert emulator.cache_puts() == [201]


def test_name_taken_elsewhere(emulator: Emulator, state_dir: Path) -> None:
    settings = ProvisioningSettings.from_configuration(emulator.settings(), APP)
    name = cache_name_for("cache", settings.subscription_id, settings.resource_group)
    emulator.fault(f"name-taken,name={name}")
    with pytest.raises(NameNotAvailableError, match="choose another resource name"):
        run(emulator, state_dir, AzureRedisRequest("cache"))
    assert emulator.cache_puts() == []


def test_expired_token_and_missing_permission(emulator: Emulator, state_dir: Path) -> None:
    emulator.fault("expired-token")
    with pytest.raises(AuthenticationFailedError, match="sign in again"):
        run(emulator, state_dir, AzureRedisRequest("cache"))
    emulator.fault("forbidden,method=PUT,path=/redis/")
    with pytest.raises(AuthorizationFailedError, match=r"'Microsoft\.Cache/redis/write'"):
        run(emulator, state_dir, AzureRedisRequest("cache"))
    assert not (state_dir / "azure" / "cache.secrets.json").exists()


def test_timeout_is_bounded_and_the_next_run_resumes(emulator: Emulator, state_dir: Path) -> None:
    emulator.configure(create_delay=1.5)
    with pytest.raises(ProvisioningTimeoutError, match="still Creating"):
        run(emulator, state_dir, AzureRedisRequest("cache"), ProvisioningTimeoutMinutes="0.01")
    run(emulator, state_dir, AzureRedisRequest("cache"))
    assert emulator.cache_puts() == [201]  # resumed waiting, no second create


def test_named_resource_group_must_exist_unless_creation_allowed(
    emulator: Emulator, state_dir: Path
) -> None:
    with pytest.raises(ConfigurationError, match="AllowResourceGroupCreation"):
        run(emulator, state_dir, AzureRedisRequest("cache"), ResourceGroup="team-rg")
    assert emulator.writes() == []
    run(
        emulator,
        state_dir,
        AzureRedisRequest("cache"),
        ResourceGroup="team-rg",
        AllowResourceGroupCreation="true",
    )
    assert emulator.count("PUT", suffix="/resourcegroups/team-rg") == 1


def test_existing_cache_is_never_created_and_auth_mode_is_checked(
    emulator: Emulator, state_dir: Path
) -> None:
    made = run(emulator, state_dir, AzureRedisRequest("keys", use_access_keys=True))["keys"]
    settings = ProvisioningSettings.from_configuration(emulator.settings(), APP)
    before = len(emulator.writes())
    ref = AzureRedisRequest(
        "ref",
        use_access_keys=True,
        existing_name=made.name,
        existing_resource_group=settings.resource_group,
    )
    outputs = run(emulator, state_dir, ref)["ref"]
    assert outputs.host_name == made.host_name and outputs.primary_key == made.primary_key
    entra = AzureRedisRequest("ref2", existing_name=made.name)
    with pytest.raises(ProvisioningError, match="does not have Microsoft Entra ID"):
        run(emulator, state_dir, entra)
    with pytest.raises(ProvisioningError, match="was not found"):
        run(emulator, state_dir, AzureRedisRequest("ref3", existing_name="nothere"))
    assert [w["path"].rsplit("/", 1)[-1] for w in emulator.writes()[before:]] == ["listKeys"]


def test_invalid_names_fail_before_any_call(emulator: Emulator, state_dir: Path) -> None:
    with pytest.raises(ConfigurationError, match="invalid"):
        run(emulator, state_dir, AzureRedisRequest("ok"), AzureRedisRequest("bad--name"))
    assert emulator.requests() == []


def test_errors_are_apphost_errors_without_secrets(emulator: Emulator, state_dir: Path) -> None:
    outputs = run(emulator, state_dir, AzureRedisRequest("kv", use_access_keys=True))["kv"]
    emulator.fault("server-error,count=-1")
    # state matches: the fast path GET fails -> error, never a stale success
    with pytest.raises(ApphostError) as info:
        run(emulator, state_dir, AzureRedisRequest("kv", use_access_keys=True), MaxAttempts="2")
    assert str(info.value).startswith("kv: ")
    assert outputs.primary_key is not None and outputs.primary_key not in str(info.value)


def test_secret_redis_configuration_is_applied_but_never_printed(
    emulator: Emulator, state_dir: Path
) -> None:
    def storage(key: str) -> Callable[[CacheSpec], None]:
        def configure(spec: CacheSpec) -> None:
            spec.redis_configuration["rdb-storage-connection-string"] = (
                f"DefaultEndpointsProtocol=https;AccountName=acct;AccountKey={key}"
            )

        return configure

    run(
        emulator,
        state_dir,
        AzureRedisRequest("cache", infrastructure_callbacks=(storage("First0123=="),)),
    )
    statuses: list[tuple[str, str]] = []
    run(
        emulator,
        state_dir,
        AzureRedisRequest("cache", infrastructure_callbacks=(storage("Second4567=="),)),
        statuses=statuses,
    )
    shown = repr(statuses)
    assert "First0123" not in shown and "Second4567" not in shown
    assert emulator.count("PATCH") + len(emulator.cache_puts()) >= 2, "the change is applied"


@pytest.mark.parametrize(
    "record",
    [
        "[]",
        '"text"',
        "null",
        "42",
        '{"status": "succeeded", "outputs": ["not", "a", "dict"]}',
        '{"status": "succeeded", "outputs": "text"}',
    ],
)
def test_malformed_state_record_is_treated_as_absent(state_dir: Path, record: str) -> None:
    from provisioning.state import StateStore

    store = StateStore(state_dir)
    store.directory.mkdir(parents=True)
    (store.directory / "cache.json").write_text(record)
    assert store.load("cache") is None


def test_malformed_secrets_file_is_treated_as_absent(state_dir: Path) -> None:
    from provisioning.state import StateStore

    store = StateStore(state_dir)
    store.directory.mkdir(parents=True)
    record = {
        "status": "succeeded",
        "checksum": "c",
        "azure_name": "n",
        "resource_group": "g",
        "subscription_id": "s",
        "resource_id": "i",
        "outputs": {
            "name": "n",
            "resource_id": "i",
            "host_name": "h",
            "ssl_port": 6380,
            "use_access_keys": True,
        },
    }
    (store.directory / "cache.json").write_text(json.dumps(record))
    (store.directory / "cache.secrets.json").write_text('["key"]')
    assert store.load("cache") is None


def test_configure_infrastructure_callbacks_run_once_per_provision(
    emulator: Emulator, state_dir: Path
) -> None:
    calls: list[str] = []

    def count(spec: CacheSpec) -> None:
        calls.append(spec.sku_name)

    request = AzureRedisRequest("cache", infrastructure_callbacks=(count,))
    run(emulator, state_dir, request)
    assert calls == ["Basic"]
    from provisioning.provisioner import PlanAction, Provisioner

    settings = ProvisioningSettings.from_configuration(emulator.settings(), APP)
    provisioner = Provisioner(settings, state_dir, APP)
    try:
        assert [item.action for item in provisioner.plan([request])] == [PlanAction.NO_CHANGE]
    finally:
        provisioner.close()
    assert calls == ["Basic", "Basic"]


def test_plan_actions_are_typed_and_print_as_their_values() -> None:
    from provisioning.provisioner import PlanAction, PlanItem

    item = PlanItem("cache", "cache-x", "rg", PlanAction.NO_CHANGE, (), PlanAction.CREATE)
    assert json.dumps(item.to_dict()) == (
        '{"resource": "cache", "name": "cache-x", "resourceGroup": "rg", "action": "no-change", '
        '"changes": [], "resourceGroupAction": "create"}'
    )
    assert "resourceGroupAction" not in PlanItem("c", "n", "rg", PlanAction.WAIT).to_dict()
    assert [str(a) for a in PlanAction] == [
        "create", "update", "no-change", "wait", "use-existing", "missing", "failed"
    ]  # fmt: skip
    assert f"{PlanAction.USE_EXISTING}" == "use-existing" and PlanAction.UPDATE == "update"


def test_redis_configuration_is_kept_out_of_the_spec_repr() -> None:
    spec = CacheSpec(redis_configuration={"rdb-storage-connection-string": "AccountKey=s3cret"})
    assert "s3cret" not in repr(spec)


def test_destroy_forgets_state_of_a_cache_whose_tags_changed_case(
    emulator: Emulator, state_dir: Path
) -> None:
    from azure.mgmt.redis import models

    from provisioning.provisioner import Provisioner

    run(emulator, state_dir, AzureRedisRequest("cache"))
    assert (state_dir / "azure" / "cache.json").exists()
    settings, clients = sdk(emulator)
    name = cache_name_for("cache", settings.subscription_id, settings.resource_group)
    retagged = models.RedisUpdateParameters(
        tags={"Apphost-App": APP, "Aspire-Resource-Name": "cache"}
    )
    clients.redis.redis.begin_update(settings.resource_group, name, retagged, polling=False)
    clients.close()
    provisioner = Provisioner(settings, state_dir, APP)
    try:
        assert provisioner.destroy() == [name]
    finally:
        provisioner.close()
    assert not (state_dir / "azure" / "cache.json").exists()


def test_destroy_deletes_a_cache_that_ends_failed_while_waited_for(
    emulator: Emulator, state_dir: Path
) -> None:
    from provisioning.errors import CacheFailedError
    from provisioning.provisioner import Provisioner

    emulator.fault("create-failed")
    with pytest.raises(CacheFailedError, match="Failed"):
        run(emulator, state_dir, AzureRedisRequest("cache"))
    emulator.fault("create-failed")
    emulator.configure(create_delay=0.5)
    settings, clients = sdk(emulator)
    from azure.mgmt.redis import models

    params = models.RedisCreateParameters(
        location="westus",
        sku=models.Sku(name="Basic", family="C", capacity=0),
        tags={"apphost-app": APP, "aspire-resource-name": "other"},
    )
    clients.redis.redis.begin_create(settings.resource_group, "other1", params, polling=False)
    provisioner = Provisioner(settings, state_dir, APP)
    try:  # other1 is Creating, then Failed while destroy waits for it: deleted anyway
        assert sorted(provisioner.destroy()) == sorted(
            ["other1", cache_name_for("cache", settings.subscription_id, settings.resource_group)]
        )
    finally:
        provisioner.close()
    assert list(clients.redis.redis.list_by_resource_group(settings.resource_group)) == []
    clients.close()
