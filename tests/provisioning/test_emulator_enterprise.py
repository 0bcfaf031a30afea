"""The ARM emulator serves Azure Managed Redis (Microsoft.Cache/redisEnterprise) as the real
service does, driven by the real ``azure-mgmt-redisenterprise`` client over HTTP."""

from __future__ import annotations

import base64
import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.core.pipeline.policies import RetryPolicy
from azure.mgmt.redisenterprise import RedisEnterpriseManagementClient
from azure.mgmt.redisenterprise import models as m
from conftest import CREATE_DELAY, SUBSCRIPTION, Emulator

from provisioning.arm import _auth_policy
from provisioning.credentials import EMULATOR_OBJECT_ID, EmulatorCredential

API = "api-version=2025-07-01"
OTHER_SUBSCRIPTION = "99999999-2222-3333-4444-555555555555"
RG = "rg1"
CLUSTER_PATH = (
    f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{RG}/providers/Microsoft.Cache/redisEnterprise"
)
POLL = {"polling_interval": 0.05}
CLUSTER_BODY = {
    "location": "westus2",
    "sku": {"name": "Balanced_B0"},
    "properties": {"minimumTlsVersion": "1.2", "publicNetworkAccess": "Enabled"},
}


def call(
    emulator: Emulator,
    method: str,
    path: str,
    body: Any = None,
    query: str = "api-version=2024-11-01",
) -> tuple[int, dict[str, str], Any]:
    """One raw ARM request with a valid emulator token: (status, headers, parsed body)."""
    token = EmulatorCredential().get_token("https://management.azure.com/.default").token
    request = urllib.request.Request(
        f"{emulator.endpoint}{path}?{query}",
        data=None if body is None else json.dumps(body).encode(),
        method=method,
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            raw = response.read()
            return response.status, dict(response.headers), json.loads(raw) if raw else None
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        return exc.code, dict(exc.headers), json.loads(raw) if raw else None


def make_client(emulator: Emulator, subscription: str = SUBSCRIPTION) -> Any:
    """The real management client, built as provisioning/arm.py builds its clients."""
    scope = "https://management.azure.com/.default"
    credential: Any = EmulatorCredential()
    return RedisEnterpriseManagementClient(
        credential,
        subscription,
        base_url=emulator.endpoint,
        credential_scopes=[scope],
        retry_policy=RetryPolicy.no_retries(),
        authentication_policy=_auth_policy(credential, scope, True),
    )


@pytest.fixture
def client(emulator: Emulator) -> Iterator[Any]:
    for sub in (SUBSCRIPTION, OTHER_SUBSCRIPTION):
        path = f"/subscriptions/{sub}/resourcegroups/{RG}"
        assert call(emulator, "PUT", path, {"location": "westus2"})[0] == 201
    with make_client(emulator) as sdk:
        yield sdk


def cluster_model(location: str = "westus2", **props: Any) -> Any:
    props.setdefault("public_network_access", "Enabled")
    return m.Cluster(
        location=location, sku=m.Sku(name="Balanced_B0"), minimum_tls_version="1.2", **props
    )


def create_cluster(client: Any, name: str = "amr1") -> Any:
    return client.redis_enterprise.begin_create(RG, name, cluster_model(), **POLL).result()


def database_model(**props: Any) -> Any:
    props.setdefault("clustering_policy", "EnterpriseCluster")
    return m.Database(client_protocol="Encrypted", port=10000, **props)


def create_database(client: Any, cluster: str = "amr1", **props: Any) -> Any:
    return client.databases.begin_create(
        RG, cluster, "default", database_model(**props), **POLL
    ).result()


def test_cluster_put_is_201_creating_with_async_operation_headers(
    emulator: Emulator, client: Any
) -> None:
    status, headers, body = call(emulator, "PUT", f"{CLUSTER_PATH}/amr1", CLUSTER_BODY, query=API)
    assert status == 201
    assert body["properties"]["provisioningState"] == "Creating"
    assert body["properties"]["resourceState"] == "Creating"
    assert body["location"] == "West US 2" and body["kind"] == "v2"
    assert body["type"] == "Microsoft.Cache/redisEnterprise"
    status_url = headers["Azure-AsyncOperation"]
    assert "/locations/West%20US%202/operationsStatus/" in status_url
    assert status_url.endswith("?" + API) and "Retry-After" not in headers
    assert "/redisEnterprise/amr1/operationresults/" in headers["Location"]

    def status_body() -> dict[str, Any]:
        path = unquote(urlsplit(status_url).path)
        code, _, answer = call(emulator, "GET", path.replace(" ", "%20"), query=API)
        assert code == 200
        return dict(answer)

    running = status_body()
    assert running["status"] == "InProgress" and "endTime" not in running
    assert set(running) >= {"id", "name", "status", "startTime"}
    # the cluster is still creating: database writes are refused
    db_path = f"{CLUSTER_PATH}/amr1/databases/default"
    code, _, refused = call(emulator, "PUT", db_path, {"properties": {}}, query=API)
    assert code == 409 and refused["error"]["code"] == "Conflict"
    time.sleep(CREATE_DELAY + 0.15)
    done = status_body()
    assert done["status"] == "Succeeded" and done["endTime"] >= done["startTime"]
    got = call(emulator, "GET", f"{CLUSTER_PATH}/amr1", query=API)[2]
    assert got["properties"]["provisioningState"] == "Succeeded"
    assert got["properties"]["resourceState"] == "Running"


def test_sdk_lifecycle_cluster_database_keys_assignments_delete(
    emulator: Emulator, client: Any
) -> None:
    cluster = create_cluster(client)
    assert cluster.provisioning_state == "Succeeded" and cluster.resource_state == "Running"
    assert cluster.location == "West US 2" and cluster.kind == "v2"
    assert cluster.sku.name == "Balanced_B0" and cluster.host_name

    db = create_database(client, access_keys_authentication="Enabled")
    assert db.name == "default" and db.port == 10000
    assert db.provisioning_state == "Succeeded" and db.resource_state == "Running"
    assert db.clustering_policy == "EnterpriseCluster"
    assert client.databases.get(RG, "amr1", "default").access_keys_authentication == "Enabled"
    assert [d.name for d in client.databases.list_by_cluster(RG, "amr1")] == ["default"]

    keys = client.databases.list_keys(RG, "amr1", "default")
    assert len(keys.primary_key) == 44 and len(keys.secondary_key) == 44
    regenerated = client.databases.begin_regenerate_key(
        RG, "amr1", "default", m.RegenerateKeyParameters(key_type="Primary"), **POLL
    ).result()
    assert regenerated.primary_key != keys.primary_key
    assert regenerated.secondary_key == keys.secondary_key

    assignment = m.AccessPolicyAssignment(
        access_policy_name="default",
        user=m.AccessPolicyAssignmentPropertiesUser(object_id=EMULATOR_OBJECT_ID),
    )
    name = "3f1e0b2c-4d5a-4b6c-8d7e-9f0a1b2c3d4e"  # GUIDs with hyphens are accepted
    apa = client.access_policy_assignment
    made = apa.begin_create_update(RG, "amr1", "default", name, assignment, **POLL).result()
    assert made.name == name and made.user.object_id == EMULATOR_OBJECT_ID
    assert made.provisioning_state == "Succeeded"
    assert apa.get(RG, "amr1", "default", name).access_policy_name == "default"
    assert [a.name for a in apa.list(RG, "amr1", "default")] == [name]
    apa.begin_delete(RG, "amr1", "default", name, **POLL).result()
    with pytest.raises(ResourceNotFoundError):
        apa.get(RG, "amr1", "default", name)
    apa.begin_delete(RG, "amr1", "default", name, **POLL).result()  # absent: 204

    assert [c.name for c in client.redis_enterprise.list_by_resource_group(RG)] == ["amr1"]
    assert [c.name for c in client.redis_enterprise.list()] == ["amr1"]
    client.redis_enterprise.begin_delete(RG, "amr1", **POLL).result()
    with pytest.raises(ResourceNotFoundError):
        client.redis_enterprise.get(RG, "amr1")
    with pytest.raises(ResourceNotFoundError):
        client.databases.get(RG, "amr1", "default")
    client.redis_enterprise.begin_delete(RG, "amr1", **POLL).result()  # absent: 204


def test_delete_answers_202_deleting_with_headers_and_assignment_delete_never_200(
    emulator: Emulator, client: Any
) -> None:
    create_cluster(client)
    create_database(client)
    apa_path = f"{CLUSTER_PATH}/amr1/databases/default/accessPolicyAssignments/dev"
    body = {"properties": {"accessPolicyName": "default", "user": {"objectId": "oid-1"}}}
    assert call(emulator, "PUT", apa_path, body, query=API)[0] == 201
    assert call(emulator, "PUT", apa_path, body, query=API)[0] == 200
    status, headers, _ = call(emulator, "DELETE", apa_path, query=API)
    assert status == 202 and "operationsStatus" in headers["Azure-AsyncOperation"]
    assert call(emulator, "DELETE", apa_path, query=API)[0] == 204
    status, headers, deleting = call(emulator, "DELETE", f"{CLUSTER_PATH}/amr1", query=API)
    assert status == 202 and deleting["properties"]["provisioningState"] == "Deleting"
    assert "Azure-AsyncOperation" in headers and "Location" in headers
    assert call(emulator, "PUT", f"{CLUSTER_PATH}/amr1", CLUSTER_BODY, query=API)[0] == 409


def test_bad_input_is_refused_like_azure(emulator: Emulator, client: Any) -> None:
    bad_sku = m.Cluster(location="westus2", sku=m.Sku(name="Balanced_B2"))
    bad_sku.public_network_access = "Enabled"
    with pytest.raises(HttpResponseError) as caught:
        client.redis_enterprise.begin_create(RG, "amr1", bad_sku, **POLL)
    assert caught.value.status_code == 400 and "Balanced_B2" in str(caught.value.message)
    # api 2025-07-01 needs publicNetworkAccess; the SDK model does not send it by default
    with pytest.raises(HttpResponseError) as caught:
        client.redis_enterprise.begin_create(
            RG, "amr1", m.Cluster(location="westus2", sku=m.Sku(name="Balanced_B0")), **POLL
        )
    assert caught.value.status_code == 400 and "publicNetworkAccess" in str(caught.value.message)
    with pytest.raises(HttpResponseError) as caught:
        client.redis_enterprise.begin_create(RG, "bad--name", cluster_model(), **POLL)
    assert caught.value.error is not None and caught.value.error.code == "InvalidResourceName"
    with pytest.raises(ResourceNotFoundError):
        client.databases.begin_create(RG, "absent", "default", database_model(), **POLL)
    create_cluster(client)
    with pytest.raises(HttpResponseError) as caught:
        client.databases.begin_create(RG, "amr1", "db2", database_model(), **POLL)
    assert caught.value.status_code == 400
    create_database(client)
    with pytest.raises(HttpResponseError) as caught:
        client.databases.begin_create(
            RG, "amr1", "default", database_model(clustering_policy="OSSCluster"), **POLL
        )
    assert caught.value.status_code == 400 and "clustering policy" in str(caught.value.message)
    with pytest.raises(HttpResponseError) as caught:
        client.databases.begin_create(
            RG, "amr1", "default", database_model(modules=[m.Module(name="RediSearch")]), **POLL
        )
    assert caught.value.status_code == 400 and "Modules" in str(caught.value.message)
    with pytest.raises(HttpResponseError) as caught:
        client.databases.list_keys(RG, "amr1", "default")  # access keys are Disabled
    assert caught.value.status_code == 400


def test_nocluster_may_change_clustering_policy(emulator: Emulator, client: Any) -> None:
    create_cluster(client)
    create_database(client, clustering_policy="NoCluster")
    changed = client.databases.begin_create(
        RG, "amr1", "default", database_model(clustering_policy="OSSCluster"), **POLL
    ).result()
    assert changed.clustering_policy == "OSSCluster"


def test_names_are_unique_per_region_across_subscriptions(emulator: Emulator, client: Any) -> None:
    create_cluster(client, "shared")
    with make_client(emulator, OTHER_SUBSCRIPTION) as other:
        with pytest.raises(ResourceExistsError) as caught:
            other.redis_enterprise.begin_create(RG, "shared", cluster_model(), **POLL)
        assert caught.value.error is not None and caught.value.error.code == "NameNotAvailable"
        elsewhere = other.redis_enterprise.begin_create(
            RG, "shared", cluster_model("eastus"), **POLL
        ).result()
        assert elsewhere.location == "East US"
    emulator.fault("name-taken,name=reserved")
    with pytest.raises(ResourceExistsError):
        client.redis_enterprise.begin_create(RG, "reserved", cluster_model(), **POLL)


def test_faults_apply_to_managed_redis_routes(emulator: Emulator, client: Any) -> None:
    emulator.fault("throttle,method=PUT,path=redisEnterprise,retry_after=3")
    with pytest.raises(HttpResponseError) as caught:
        create_cluster(client)
    assert caught.value.status_code == 429
    response: Any = caught.value.response
    assert response.headers["Retry-After"] == "3"
    emulator.fault("forbidden,path=redisEnterprise,action=Microsoft.Cache/redisEnterprise/read")
    with pytest.raises(HttpResponseError) as caught:
        client.redis_enterprise.get(RG, "amr1")
    assert caught.value.status_code == 403 and "redisEnterprise/read" in str(caught.value)
    emulator.fault("create-failed,name=doomed")
    with pytest.raises(HttpResponseError) as caught:
        create_cluster(client, "doomed")
    assert caught.value.error is not None
    assert caught.value.error.code == "ResourceOperationFailure"
    assert client.redis_enterprise.get(RG, "doomed").provisioning_state == "Failed"
    # A lower bound only: an upper one (faster than CREATE_DELAY) is flaky on a busy machine.
    slow = CREATE_DELAY + 0.6
    emulator.fault(f"slow-create,name=slow,delay={slow}")
    started = time.monotonic()
    create_cluster(client, "slow")
    assert time.monotonic() - started >= slow
    assert client.redis_enterprise.get(RG, "slow").provisioning_state == "Succeeded"


def test_token_endpoint_issues_unsigned_jwt_and_is_not_logged(emulator: Emulator) -> None:
    def post(body: dict[str, Any]) -> dict[str, Any]:
        request = urllib.request.Request(
            emulator.endpoint + "/_emulator/token",
            data=json.dumps(body).encode(),
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return dict(json.loads(response.read()))

    def claims(token: str) -> dict[str, Any]:
        header, payload, signature = token.split(".")
        assert signature == ""
        assert json.loads(base64.urlsafe_b64decode(header + "==")) == {"alg": "none", "typ": "JWT"}
        return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))

    answer = post({"scopes": ["https://redis.azure.com/.default"]})
    assert answer["objectId"] == EMULATOR_OBJECT_ID
    got = claims(answer["accessToken"])
    assert got["oid"] == EMULATOR_OBJECT_ID and got["aud"] == "https://redis.azure.com"
    assert got["exp"] == answer["expiresOn"] and got["exp"] - got["iat"] == 3600
    assert got["tid"] and got["jti"] and got["nbf"] == got["iat"]
    other = post({"scopes": ["https://redis.azure.com/.default"], "objectId": "someone"})
    assert claims(other["accessToken"])["oid"] == "someone" and other["objectId"] == "someone"
    assert claims(other["accessToken"])["jti"] != got["jti"]
    assert emulator.requests() == []


def test_retired_fault_refuses_classic_cache_creates(emulator: Emulator) -> None:
    emulator.fault("retired,count=-1")
    group = f"/subscriptions/{SUBSCRIPTION}/resourcegroups/{RG}"
    assert call(emulator, "PUT", group, {"location": "westus"})[0] == 201
    body = {
        "location": "westus",
        "properties": {"sku": {"name": "Basic", "family": "C", "capacity": 0}},
    }
    cache = f"{group}/providers/Microsoft.Cache/redis/legacy1"
    status, _, answer = call(emulator, "PUT", cache, body)
    assert status == 400 and answer["error"]["code"] == "ProductRetired"
    assert "Azure Managed Redis" in answer["error"]["message"]
    assert "retired" in answer["error"]["message"]


def test_patch_updates_go_through_updating(emulator: Emulator, client: Any) -> None:
    create_cluster(client)
    create_database(client)
    update = m.ClusterUpdate(sku=m.Sku(name="Balanced_B1"), tags={"team": "a"})
    updated = client.redis_enterprise.begin_update(RG, "amr1", update, **POLL).result()
    assert updated.sku.name == "Balanced_B1" and updated.tags == {"team": "a"}
    assert client.redis_enterprise.get(RG, "amr1").provisioning_state == "Succeeded"
    change = m.DatabaseUpdate(eviction_policy="AllKeysLRU", access_keys_authentication="Enabled")
    db = client.databases.begin_update(RG, "amr1", "default", change, **POLL).result()
    assert db.eviction_policy == "AllKeysLRU" and db.access_keys_authentication == "Enabled"
    assert client.databases.list_keys(RG, "amr1", "default").primary_key


def test_bad_shapes_and_values_answer_400_not_500(emulator: Emulator, client: Any) -> None:
    cluster = f"{CLUSTER_PATH}/amr1"
    for body, field in [
        ({**CLUSTER_BODY, "tags": ["a"]}, "tags"),
        ({**CLUSTER_BODY, "zones": 5}, "zones"),
        ({**CLUSTER_BODY, "properties": {"publicNetworkAccess": "Yes"}}, "publicNetworkAccess"),
    ]:
        status, _, answer = call(emulator, "PUT", cluster, body, query=API)
        assert status == 400 and answer["error"]["code"] == "InvalidRequestContent", answer
        assert field in answer["error"]["message"]
    create_cluster(client)
    status, _, answer = call(emulator, "PATCH", cluster, {"properties": "x"}, query=API)
    assert status == 400 and "properties" in answer["error"]["message"]
    database = {"properties": {"clusteringPolicy": "EnterpriseCluster", "deferUpgrade": "Yes"}}
    status, _, answer = call(emulator, "PUT", f"{cluster}/databases/default", database, query=API)
    assert status == 400 and "deferUpgrade" in answer["error"]["message"]
    assert "Deferred, NotDeferred" in answer["error"]["message"]
