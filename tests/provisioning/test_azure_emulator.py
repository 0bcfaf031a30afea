"""The ARM emulator honours the contract of the real service (shapes, status codes, timing)."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from conftest import CREATE_DELAY, SUBSCRIPTION, Emulator

from provisioning.credentials import EmulatorCredential

EXAMPLES = Path(__file__).resolve().parents[1] / "data" / "arm-examples"
API = "api-version=2024-11-01"
RG_PATH = f"/subscriptions/{SUBSCRIPTION}/resourcegroups/rg1"
CACHE_PATH = (
    f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg1/providers/Microsoft.Cache/redis/cache1"
)
CREATE_BODY = {
    "location": "westus",
    "zones": ["1"],
    "properties": {
        "sku": {"name": "Basic", "family": "C", "capacity": 1},
        "redisConfiguration": {"maxmemory-policy": "allkeys-lru"},
        "minimumTlsVersion": "1.2",
    },
}


def call(
    emulator: Emulator,
    method: str,
    path: str,
    body: Any = None,
    *,
    query: str = API,
    token: str | None = "default",
) -> tuple[int, dict[str, str], Any]:
    url = emulator.endpoint + path + (f"?{query}" if query else "")
    headers = {"Content-Type": "application/json"}
    if token == "default":
        token = EmulatorCredential().get_token("https://management.azure.com/.default").token
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            raw = response.read()
            return response.status, dict(response.headers), json.loads(raw) if raw else None
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        return exc.code, dict(exc.headers), json.loads(raw) if raw else None


def example(name: str) -> dict[str, Any]:
    return dict(json.loads((EXAMPLES / f"{name}.json").read_text())["responses"])


#: Keys the emulator answers with null where the spec example shows a value: recorded traffic of
#: the real service (arm-examples/recording_*) has ``accessKeys: null`` on every non-create answer.
NULLABLE = {"$.properties.accessKeys"}


def assert_shape(expected: Any, actual: Any, where: str = "$") -> None:
    """Every key of the example exists in the emulator's answer, with the same JSON type."""
    if actual is None and where in NULLABLE:
        return
    if isinstance(expected, dict):
        assert isinstance(actual, dict), f"{where}: expected an object, got {actual!r}"
        for key, value in expected.items():
            assert key in actual, f"{where}: missing key {key!r}"
            assert_shape(value, actual[key], f"{where}.{key}")
    elif isinstance(expected, list):
        assert isinstance(actual, list), f"{where}: expected a list"
        if expected and actual:
            assert_shape(expected[0], actual[0], f"{where}[0]")
    elif expected is not None and actual is not None:
        assert type(expected) is type(actual), f"{where}: {expected!r} vs {actual!r}"


def create_cache(emulator: Emulator) -> tuple[int, dict[str, str], Any]:
    assert call(emulator, "PUT", RG_PATH, {"location": "westus"})[0] == 201
    return call(emulator, "PUT", CACHE_PATH, CREATE_BODY)


def test_create_is_201_with_location_to_itself_then_creating_then_succeeded(
    emulator: Emulator,
) -> None:
    status, headers, body = create_cache(emulator)
    assert status == 201
    assert headers["Location"] == f"{emulator.endpoint}{CACHE_PATH}?{API}"
    assert headers["x-ms-request-id"] and headers["x-ms-correlation-request-id"]
    assert body["properties"]["provisioningState"] == "Creating"
    assert len(body["properties"]["accessKeys"]["primaryKey"]) == 44
    assert_shape(example("RedisCacheCreate")["201"]["body"], body)
    status, _, got = call(emulator, "GET", CACHE_PATH)
    assert status == 200 and got["properties"]["provisioningState"] == "Creating"
    assert got["properties"]["accessKeys"] is None  # only the create response carries keys
    assert_shape(example("RedisCacheGet")["200"]["body"], got)
    rg_id = f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg1"
    assert got["id"] == rg_id + "/providers/Microsoft.Cache/Redis/cache1"
    assert got["type"] == example("RedisCacheGet")["200"]["body"]["type"]
    time.sleep(CREATE_DELAY + 0.1)
    assert call(emulator, "GET", CACHE_PATH)[2]["properties"]["provisioningState"] == "Succeeded"


def test_other_responses_have_the_example_shapes(emulator: Emulator) -> None:
    create_cache(emulator)
    time.sleep(CREATE_DELAY + 0.1)
    status, _, keys = call(emulator, "POST", CACHE_PATH + "/listKeys")
    assert status == 200
    assert_shape(example("RedisCacheListKeys")["200"]["body"], keys)
    status, _, regenerated = call(
        emulator, "POST", CACHE_PATH + "/regenerateKey", {"keyType": "Primary"}
    )
    assert status == 200 and regenerated["primaryKey"] != keys["primaryKey"]
    assert_shape(example("RedisCacheRegenerateKey")["200"]["body"], regenerated)
    listed = call(emulator, "GET", CACHE_PATH.rsplit("/", 1)[0])[2]
    assert_shape(example("RedisCacheListByResourceGroup")["200"]["body"], listed)
    patched = call(emulator, "PATCH", CACHE_PATH, {"properties": {"enableNonSslPort": True}})
    assert patched[0] == 200
    assert_shape(example("RedisCacheUpdate")["200"]["body"], patched[2])
    assignment = {
        "properties": {
            "accessPolicyName": "Data Contributor",
            "objectId": "6497c918-11ad-41e7-1b0f-7c518a87d0b0",
            "objectIdAlias": "TestAADAppRedis",
        }
    }
    status, _, made = call(emulator, "PUT", CACHE_PATH + "/accessPolicyAssignments/a1", assignment)
    assert status == 201
    assert_shape(example("RedisCacheAccessPolicyAssignmentCreateUpdate")["201"]["body"], made)
    assert made["type"] == "Microsoft.Cache/Redis/accessPolicyAssignments"
    assert call(emulator, "PUT", CACHE_PATH + "/accessPolicyAssignments/a1", assignment)[0] == 200
    got = call(emulator, "GET", CACHE_PATH + "/accessPolicyAssignments/a1")[2]
    assert_shape(example("RedisCacheAccessPolicyAssignmentGet")["200"]["body"], got)


def test_check_name_availability_is_empty_200_or_409(emulator: Emulator) -> None:
    path = f"/subscriptions/{SUBSCRIPTION}/providers/Microsoft.Cache/CheckNameAvailability"
    status, _, body = call(
        emulator, "POST", path, {"name": "cache1", "type": "Microsoft.Cache/Redis"}
    )
    assert (status, body) == (200, None)
    assert example("RedisCacheCheckNameAvailability")["200"] == {}
    create_cache(emulator)
    status, _, body = call(
        emulator, "POST", path, {"name": "CACHE1", "type": "Microsoft.Cache/Redis"}
    )
    assert status == 409 and body["error"]["code"] == "NameNotAvailable"


def test_delete_is_202_with_operation_location_then_404(emulator: Emulator) -> None:
    create_cache(emulator)
    status, _, _ = call(emulator, "DELETE", CACHE_PATH)
    assert status == 409  # busy while Creating
    time.sleep(CREATE_DELAY + 0.1)
    status, headers, body = call(emulator, "DELETE", CACHE_PATH)
    assert status == 202 and body is None
    assert "202" in example("RedisCacheDelete")
    location = headers["Location"]
    assert "/providers/Microsoft.Cache/locations/westus/operationresults/" in location
    op_path, _, query = location.removeprefix(emulator.endpoint).partition("?")
    assert call(emulator, "GET", op_path, query=query)[0] == 202
    assert call(emulator, "GET", CACHE_PATH)[2]["properties"]["provisioningState"] == "Deleting"
    time.sleep(0.4)
    assert call(emulator, "GET", op_path, query=query)[:1] == (200,)
    status, _, body = call(emulator, "GET", CACHE_PATH)
    assert status == 404 and body["error"]["code"] == "ResourceNotFound"


@pytest.mark.parametrize(
    ("kwargs", "status", "code"),
    [
        ({"query": ""}, 400, "MissingApiVersionParameter"),
        ({"token": None}, 401, "AuthenticationFailed"),
        ({"token": "not-a-jwt"}, 401, "InvalidAuthenticationToken"),
    ],
)
def test_every_request_needs_api_version_and_bearer_token(
    emulator: Emulator, kwargs: dict[str, Any], status: int, code: str
) -> None:
    got = call(emulator, "GET", CACHE_PATH, **kwargs)
    assert got[0] == status and got[2]["error"]["code"] == code
    assert got[1]["x-ms-request-id"]


def test_expired_token_is_rejected(emulator: Emulator) -> None:
    expired = EmulatorCredential(lifetime=-60).get_token("x").token
    got = call(emulator, "GET", CACHE_PATH, token=expired)
    assert got[0] == 401 and got[2]["error"]["code"] == "ExpiredAuthenticationToken"


def test_validation_and_missing_group(emulator: Emulator) -> None:
    status, _, body = call(emulator, "PUT", CACHE_PATH, CREATE_BODY)
    assert status == 404 and body["error"]["code"] == "ResourceGroupNotFound"
    call(emulator, "PUT", RG_PATH, {"location": "westus"})
    bad = CACHE_PATH.replace("cache1", "bad--name")
    assert call(emulator, "PUT", bad, CREATE_BODY)[0] == 400
    wrong_sku = {
        **CREATE_BODY,
        "properties": {"sku": {"name": "Basic", "family": "P", "capacity": 1}},
    }
    assert call(emulator, "PUT", CACHE_PATH, wrong_sku)[0] == 400


def test_injected_faults(emulator: Emulator) -> None:
    call(emulator, "PUT", RG_PATH, {"location": "westus"})
    emulator.fault("throttle,method=GET,path=/redis/,retry_after=7")
    status, headers, body = call(emulator, "GET", CACHE_PATH)
    assert status == 429 and headers["Retry-After"] == "7"
    assert body["error"]["code"] == "SubscriptionRequestsThrottled"
    assert call(emulator, "GET", CACHE_PATH)[0] == 404  # count=1: fired once
    emulator.fault("server-error,count=2")
    assert [call(emulator, "GET", CACHE_PATH)[0] for _ in range(3)] == [500, 500, 404]
    emulator.fault("name-taken,name=cache1")
    status, _, body = call(emulator, "PUT", CACHE_PATH, CREATE_BODY)
    assert status == 409 and body["error"]["code"] == "NameNotAvailable"


def test_create_failed_fault_ends_in_failed(emulator: Emulator) -> None:
    emulator.fault("create-failed,name=cache1")
    create_cache(emulator)
    time.sleep(CREATE_DELAY + 0.1)
    assert call(emulator, "GET", CACHE_PATH)[2]["properties"]["provisioningState"] == "Failed"


def test_sdk_poller_returns_while_still_creating(emulator: Emulator) -> None:
    """The pitfall our provisioner guards against, reproduced with the real SDK."""
    from azure.mgmt.redis import RedisManagementClient, models

    from provisioning.arm import create_clients
    from provisioning.settings import ProvisioningSettings

    emulator.configure(create_delay=5.0)
    settings = ProvisioningSettings.from_configuration(emulator.settings(), "app")
    clients = create_clients(settings, EmulatorCredential())
    assert isinstance(clients.redis, RedisManagementClient)
    clients.resources.resource_groups.create_or_update("rg1", {"location": "westus"})
    params = models.RedisCreateParameters(
        location="westus", sku=models.Sku(name="Basic", family="C", capacity=1)
    )
    result = clients.redis.redis.begin_create("rg1", "cache1", params, polling_interval=0).result()
    assert result.provisioning_state == "Creating"
    clients.close()


def test_fault_specs_parse_or_fail_clearly() -> None:
    from provisioning.emulator.faults import FaultSpecError, parse_fault

    fault = parse_fault("throttle,method=PUT,path=/redis/,count=-1,retry_after=3")
    assert (fault.kind, fault.method, fault.count, fault.retry_after) == ("throttle", "PUT", -1, 3)
    assert parse_fault("slow-create,delay=2.5,name=c").delay == 2.5
    for bad in ("nope", "throttle,count=x", "throttle,color=red", "name-taken"):
        with pytest.raises(FaultSpecError):
            parse_fault(bad)


def test_emulator_refuses_non_loopback_hosts() -> None:
    import subprocess
    import sys

    from conftest import ROOT

    done = subprocess.run(
        [sys.executable, "-m", "provisioning.emulator", "--host", "0.0.0.0"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2 and "loopback" in done.stderr


ASSIGNMENT = {
    "properties": {
        "accessPolicyName": "Data Contributor",
        "objectId": "6497c918-11ad-41e7-1b0f-7c518a87d0b0",
        "objectIdAlias": "TestAADAppRedis",
    }
}
RULE = {"properties": {"startIP": "10.0.0.1", "endIP": "10.0.0.9"}}


def add_children(emulator: Emulator) -> None:
    assert call(emulator, "PUT", CACHE_PATH + "/accessPolicyAssignments/a1", ASSIGNMENT)[0] == 201
    status, _, rule = call(emulator, "PUT", CACHE_PATH + "/firewallRules/r1", RULE)
    assert status == 201 and rule["id"].endswith("/redis/cache1/firewallRules/r1")


def assert_no_children(emulator: Emulator) -> None:
    assert call(emulator, "GET", CACHE_PATH + "/accessPolicyAssignments")[2] == {"value": []}
    assert call(emulator, "GET", CACHE_PATH + "/firewallRules")[2] == {"value": []}
    assert call(emulator, "GET", CACHE_PATH + "/accessPolicyAssignments/a1")[0] == 404
    assert call(emulator, "GET", CACHE_PATH + "/firewallRules/r1")[0] == 404


def test_deleted_cache_takes_its_child_resources_along(emulator: Emulator) -> None:
    create_cache(emulator)
    time.sleep(CREATE_DELAY + 0.1)
    add_children(emulator)
    assert call(emulator, "DELETE", CACHE_PATH)[0] == 202
    time.sleep(0.4)
    assert call(emulator, "GET", CACHE_PATH)[0] == 404
    assert call(emulator, "PUT", CACHE_PATH, CREATE_BODY)[0] == 201
    time.sleep(CREATE_DELAY + 0.1)
    assert_no_children(emulator)


def test_deleted_group_takes_its_caches_children_and_names_along(emulator: Emulator) -> None:
    create_cache(emulator)
    time.sleep(CREATE_DELAY + 0.1)
    add_children(emulator)
    assert call(emulator, "DELETE", RG_PATH)[0] == 200
    assert call(emulator, "GET", RG_PATH)[0] == 404
    assert call(emulator, "HEAD", RG_PATH)[0] == 404
    path = f"/subscriptions/{SUBSCRIPTION}/providers/Microsoft.Cache/CheckNameAvailability"
    assert call(emulator, "POST", path, {"name": "cache1"})[0] == 200
    create_cache(emulator)
    time.sleep(CREATE_DELAY + 0.1)
    assert_no_children(emulator)


def control(emulator: Emulator, path: str, body: Any) -> tuple[int, Any]:
    status, _, answer = call(emulator, "POST", f"/_emulator/{path}", body, query="", token=None)
    return status, answer


def test_config_is_validated_before_anything_changes(emulator: Emulator) -> None:
    status, body = control(emulator, "config", {"create_delay": 9, "bogus": 1})
    assert status == 400 and "bogus" in body["error"]["message"]
    for bad in ("soon", None, [1], True, {"x": 1}):
        status, body = control(emulator, "config", {"delete_delay": 7, "create_delay": bad})
        assert status == 400 and "must be a number" in body["error"]["message"]
    status, body = control(emulator, "config", {})
    assert status == 200
    assert body["settings"]["create_delay"] == CREATE_DELAY
    assert body["settings"]["delete_delay"] == 0.3
    status, body = control(emulator, "config", {"policy_delay": 0, "update_delay": "0.25"})
    assert status == 200 and body["settings"]["update_delay"] == 0.25
    assert control(emulator, "config", {"__class__": 1})[0] == 400


@pytest.mark.parametrize("path", ["/_emulator/config", RG_PATH + "?" + API])
def test_non_numeric_content_length_is_a_clean_400(emulator: Emulator, path: str) -> None:
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(emulator.endpoint)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
    token = EmulatorCredential().get_token("https://management.azure.com/.default").token
    try:
        connection.putrequest("PUT" if path.startswith("/sub") else "POST", path)
        connection.putheader("Content-Length", "abc")
        connection.putheader("Authorization", f"Bearer {token}")
        connection.endheaders()
        response = connection.getresponse()
        body = json.loads(response.read())
        assert response.status == 400
        assert "Content-Length" in body["error"]["message"]
        assert response.getheader("Connection") == "close"
    finally:
        connection.close()
    assert call(emulator, "GET", RG_PATH)[0] == 404  # still serving; nothing was created
