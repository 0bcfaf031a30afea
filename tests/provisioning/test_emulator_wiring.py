"""The emulator's stores drive the data plane: a server starts with each cache, keys and access
policy assignments follow ARM changes, deletes stop servers, and a create succeeds only once
its server answers. A recording DataPlane stands beside the real one (tested end to end
elsewhere); the stores are called directly, as the HTTP layer calls them."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest

from provisioning.emulator.data_plane import DataPlane, DataPlaneState
from provisioning.emulator.faults import parse_fault
from provisioning.emulator.store import Reply, Settings, Store

SUB = "11111111-2222-3333-4444-555555555555"
BASE = "http://127.0.0.1:1"
API = "2025-07-01"
DELAY = 0.02
CLASSIC_BODY: dict[str, Any] = {
    "location": "westus",
    "properties": {"sku": {"name": "Basic", "family": "C", "capacity": 0}},
}
CLUSTER_BODY: dict[str, Any] = {
    "location": "westus2",
    "sku": {"name": "Balanced_B0"},
    "properties": {"publicNetworkAccess": "Enabled"},
}


class RecordingDataPlane(DataPlane):
    """A data plane that records calls and whose server states the test sets."""

    def __init__(self) -> None:
        self.available = True
        self.unavailable_reason = None
        self.ca_file = None
        self.calls: list[tuple[Any, ...]] = []
        self.states: dict[str, DataPlaneState] = {}
        self.addresses: dict[str, str] = {}
        self.next_address = 2
        self.still_stopping: set[str] = set()

    def address_for(self, resource_id: str) -> str:
        if resource_id not in self.addresses:
            self.addresses[resource_id] = f"127.0.0.{self.next_address}"
            self.next_address += 1
        return self.addresses[resource_id]

    def start(
        self,
        resource_id: str,
        *,
        port: int,
        cluster: bool,
        keys: Sequence[str] | None,
        object_ids: Sequence[str] = (),
    ) -> None:
        keys_list = None if keys is None else list(keys)
        self.calls.append(("start", resource_id, port, cluster, keys_list, list(object_ids)))
        self.states[resource_id] = "starting"

    def state(self, resource_id: str) -> DataPlaneState:
        return self.states.get(resource_id, "absent")

    def failure(self, resource_id: str) -> str | None:
        return "redis-server exited with code 1" if self.state(resource_id) == "failed" else None

    def set_keys(self, resource_id: str, keys: Sequence[str] | None) -> None:
        self.calls.append(("set_keys", resource_id, None if keys is None else list(keys)))

    def grant(self, resource_id: str, object_id: str) -> None:
        self.calls.append(("grant", resource_id, object_id))

    def revoke(self, resource_id: str, object_id: str) -> None:
        self.calls.append(("revoke", resource_id, object_id))

    def issue_token(self, object_id: str, token: str, expires_on: float) -> None:
        self.calls.append(("issue_token", object_id))

    def stop(self, resource_id: str, keep_address: bool = False) -> None:
        self.calls.append(("stop", resource_id, keep_address))
        self.states.pop(resource_id, None)
        if not keep_address:
            self.addresses.pop(resource_id, None)

    def stop_all(self) -> None:
        self.calls.append(("stop_all",))

    def stopping(self, resource_id: str) -> bool:
        return resource_id in self.still_stopping

    def close(self) -> None:
        self.calls.append(("close",))

    def named(self, kind: str) -> list[tuple[Any, ...]]:
        return [c for c in self.calls if c[0] == kind]


@pytest.fixture
def plane() -> RecordingDataPlane:
    return RecordingDataPlane()


@pytest.fixture
def store(plane: RecordingDataPlane) -> Store:
    settings = Settings(create_delay=DELAY, update_delay=DELAY, delete_delay=DELAY)
    store = Store(settings, data_plane=plane)
    assert store.group("PUT", SUB, "rg", {"location": "westus"}).status == 201
    return store


def ok(reply: Reply, status: int = 200) -> Any:
    assert reply.status == status, reply.body
    return reply.body


def classic_id(name: str) -> str:
    return f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Cache/Redis/{name}"


def cluster_id(name: str) -> str:
    return (
        f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Cache/redisEnterprise/{name}"
    )


def state_of(store: Store, name: str) -> str:
    return str(ok(store.get_cache(SUB, "rg", name))["properties"]["provisioningState"])


def test_classic_cache_starts_its_server_and_succeeds_only_when_ready(
    store: Store, plane: RecordingDataPlane
) -> None:
    created = ok(store.put_cache(SUB, "rg", "c1", CLASSIC_BODY, BASE, API), 201)
    keys = created["properties"]["accessKeys"]
    cid = classic_id("c1")
    assert plane.named("start") == [
        ("start", cid, 6380, False, [keys["primaryKey"], keys["secondaryKey"]], [])
    ]
    assert created["properties"]["hostName"] == plane.addresses[cid]
    time.sleep(DELAY * 2)
    assert state_of(store, "c1") == "Creating"  # the delay passed, the server still starts
    plane.states[cid] = "ready"
    assert state_of(store, "c1") == "Succeeded"
    assert ok(store.get_cache(SUB, "rg", "c1"))["properties"]["hostName"] == plane.addresses[cid]

    regenerated = ok(store.keys(SUB, "rg", "c1", regenerate={"keyType": "Secondary"}))
    assert plane.named("set_keys")[-1] == (
        "set_keys",
        cid,
        [regenerated["primaryKey"], regenerated["secondaryKey"]],
    )
    ok(store.patch_cache(SUB, "rg", "c1", {"properties": {"disableAccessKeyAuthentication": True}}))
    assert plane.named("set_keys")[-1] == ("set_keys", cid, None)

    body = {"properties": {"accessPolicyName": "Data Owner", "objectId": "oid-early"}}
    ok(store.assignment("PUT", SUB, "rg", "c1", "early", body), 201)
    assert plane.named("grant") == []  # Entra ID is not on yet
    aad = {"properties": {"redisConfiguration": {"aad-enabled": "true"}}}
    ok(store.patch_cache(SUB, "rg", "c1", aad))
    assert plane.named("grant") == [("grant", cid, "oid-early")]
    time.sleep(DELAY * 2)
    body = {"properties": {"accessPolicyName": "Data Owner", "objectId": "oid-1"}}
    ok(store.assignment("PUT", SUB, "rg", "c1", "dev", body), 201)
    assert plane.named("grant")[-1] == ("grant", cid, "oid-1")
    ok(store.assignment("DELETE", SUB, "rg", "c1", "dev", None))
    assert plane.named("revoke") == [("revoke", cid, "oid-1")]

    assert ok(store.delete_cache(SUB, "rg", "c1", BASE, API), 202) is None
    assert plane.named("stop") == [("stop", cid, False)]
    time.sleep(DELAY * 2)
    assert store.get_cache(SUB, "rg", "c1").status == 404
    assert plane.named("stop") == [("stop", cid, False)]  # stopped once


def test_classic_create_options_reach_the_data_plane(
    store: Store, plane: RecordingDataPlane
) -> None:
    body = {
        "location": "westus",
        "properties": {
            **CLASSIC_BODY["properties"],
            "disableAccessKeyAuthentication": True,
            "redisConfiguration": {"aad-enabled": "true"},
        },
    }
    ok(store.put_cache(SUB, "rg", "entra", body, BASE, API), 201)
    assert plane.named("start") == [("start", classic_id("entra"), 6380, False, None, [])]
    plane.states[classic_id("entra")] = "failed"
    time.sleep(DELAY * 2)
    assert state_of(store, "entra") == "Failed"
    store.add_fault(parse_fault("create-failed,name=doomed"))
    ok(store.put_cache(SUB, "rg", "doomed", CLASSIC_BODY, BASE, API), 201)
    assert len(plane.named("start")) == 1  # a create that fails starts no server


def managed(store: Store, name: str = "amr1", **db_props: Any) -> tuple[dict[str, Any], Any]:
    cluster = ok(store.enterprise.put_cluster(SUB, "rg", name, CLUSTER_BODY, BASE, API), 201)
    time.sleep(DELAY * 2)
    reply = store.enterprise.put_database(
        SUB, "rg", name, "default", {"properties": db_props}, BASE, API
    )
    return cluster, reply


def operation(store: Store, reply: Reply) -> dict[str, Any]:
    path = unquote(urlsplit(reply.headers["Azure-AsyncOperation"]).path)
    parts = path.split("/")
    return dict(ok(store.enterprise.operation_status(parts[2], parts[6], parts[8])))


def test_managed_database_starts_the_cluster_server(
    store: Store, plane: RecordingDataPlane
) -> None:
    cluster, reply = managed(store)
    cid = cluster_id("amr1")
    assert cluster["properties"]["hostName"] == plane.addresses[cid]
    ok(reply, 201)
    assert plane.named("start") == [("start", cid, 10000, True, None, [])]
    time.sleep(DELAY * 2)
    assert operation(store, reply)["status"] == "InProgress"  # the server still starts
    plane.states[cid] = "ready"
    assert operation(store, reply)["status"] == "Succeeded"
    db = ok(store.enterprise.get_database(SUB, "rg", "amr1", "default"))
    assert db["properties"]["provisioningState"] == "Succeeded"

    path = ("PUT", SUB, "rg", "amr1", "default", "dev")
    body = {"properties": {"accessPolicyName": "default", "user": {"objectId": "oid-1"}}}
    ok(store.enterprise.assignment(*path, body, BASE, API), 201)
    assert plane.named("grant") == [("grant", cid, "oid-1")]

    enable = {"properties": {"accessKeysAuthentication": "Enabled"}}
    ok(store.enterprise.patch_database(SUB, "rg", "amr1", "default", enable))
    keys = ok(store.enterprise.keys(SUB, "rg", "amr1", "default"))
    assert plane.named("set_keys") == [
        ("set_keys", cid, [keys["primaryKey"], keys["secondaryKey"]])
    ]
    time.sleep(DELAY * 2)
    new = ok(store.enterprise.keys(SUB, "rg", "amr1", "default", {"keyType": "Primary"}))
    assert new["primaryKey"] != keys["primaryKey"]
    assert plane.named("set_keys")[-1] == (
        "set_keys",
        cid,
        [new["primaryKey"], keys["secondaryKey"]],
    )

    delete = ("DELETE", SUB, "rg", "amr1", "default", "dev")
    ok(store.enterprise.assignment(*delete, None, BASE, API), 202)
    assert plane.named("revoke") == [("revoke", cid, "oid-1")]
    ok(store.enterprise.delete_cluster(SUB, "rg", "amr1", BASE, API), 202)
    assert plane.named("stop") == [("stop", cid, False)]
    time.sleep(DELAY * 2)
    assert store.enterprise.get_cluster(SUB, "rg", "amr1").status == 404


def test_managed_enterprise_cluster_policy_keys_and_failure(
    store: Store, plane: RecordingDataPlane
) -> None:
    _, reply = managed(
        store, clusteringPolicy="EnterpriseCluster", accessKeysAuthentication="Enabled"
    )
    body = ok(reply, 201)
    cid = cluster_id("amr1")
    start = plane.named("start")[0]
    assert start[:4] == ("start", cid, 10000, False) and start[4] is not None and len(start[4]) == 2
    assert body["properties"]["clusteringPolicy"] == "EnterpriseCluster"
    plane.states[cid] = "failed"
    time.sleep(DELAY * 2)
    status = operation(store, reply)
    assert status["status"] == "Failed"
    assert "redis-server exited with code 1" in status["error"]["message"]
    assert status["error"]["code"] and "endTime" in status


def test_group_delete_and_reset_stop_servers(store: Store, plane: RecordingDataPlane) -> None:
    ok(store.put_cache(SUB, "rg", "c1", CLASSIC_BODY, BASE, API), 201)
    managed(store)
    store.group("DELETE", SUB, "rg", None)
    assert sorted(c[1] for c in plane.named("stop")) == sorted(
        [classic_id("c1"), cluster_id("amr1")]
    )
    ok(store.enterprise.put_cluster(SUB, "rg2", "x", CLUSTER_BODY, BASE, API), 404)
    store.group("PUT", SUB, "rg", {"location": "westus"})
    ok(store.enterprise.put_cluster(SUB, "rg", "amr2", CLUSTER_BODY, BASE, API), 201)
    store.reset()
    assert plane.named("stop_all") == [("stop_all",)]
    assert store.enterprise.clusters == {} and store.enterprise.operations == {}
    assert store.caches == {} and store.groups == {}


def test_without_a_data_plane_host_names_look_like_azure() -> None:
    store = Store(Settings(create_delay=DELAY))
    assert not store.data_plane.available
    store.group("PUT", SUB, "rg", {"location": "westus"})
    classic = ok(store.put_cache(SUB, "rg", "C1", CLASSIC_BODY, BASE, API), 201)
    assert classic["properties"]["hostName"] == "c1.redis.cache.windows.net"
    cluster, reply = managed(store, "Amr1")
    assert cluster["properties"]["hostName"] == "amr1.westus2.redis.azure.net"
    ok(reply, 201)
    time.sleep(DELAY * 2)
    assert operation(store, reply)["status"] == "Succeeded"
    store.reset()


def test_restarts_and_database_deletes_keep_the_host_name(
    store: Store, plane: RecordingDataPlane
) -> None:
    cluster, reply = managed(store, clusteringPolicy="NoCluster")
    cid = cluster_id("amr1")
    host = cluster["properties"]["hostName"]
    plane.states[cid] = "ready"
    time.sleep(DELAY * 2)
    assert operation(store, reply)["status"] == "Succeeded"

    oss = {"properties": {"clusteringPolicy": "OSSCluster"}}
    ok(store.enterprise.patch_database(SUB, "rg", "amr1", "default", oss))
    assert plane.named("stop") == [("stop", cid, True)]  # servers restart, address stays
    assert plane.named("start")[-1][:4] == ("start", cid, 10000, True)
    assert ok(store.enterprise.get_cluster(SUB, "rg", "amr1"))["properties"]["hostName"] == host
    plane.states[cid] = "ready"
    time.sleep(DELAY * 2)

    ok(store.enterprise.delete_database(SUB, "rg", "amr1", "default", BASE, API), 202)
    assert plane.named("stop")[-1] == ("stop", cid, True)
    time.sleep(DELAY * 2)
    assert ok(store.enterprise.get_cluster(SUB, "rg", "amr1"))["properties"]["hostName"] == host
    db = {"properties": {"clusteringPolicy": "EnterpriseCluster"}}
    ok(store.enterprise.put_database(SUB, "rg", "amr1", "default", db, BASE, API), 201)
    assert ok(store.enterprise.get_cluster(SUB, "rg", "amr1"))["properties"]["hostName"] == host
    assert all(call[2] for call in plane.named("stop"))  # never released while it exists


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**CLUSTER_BODY, "tags": ["a", "b"]}, "tags"),
        ({**CLUSTER_BODY, "tags": "team=a"}, "tags"),
        ({**CLUSTER_BODY, "tags": {"team": 5}}, "tags"),
        ({**CLUSTER_BODY, "zones": 5}, "zones"),
        ({**CLUSTER_BODY, "properties": "x"}, "properties"),
        ({**CLUSTER_BODY, "properties": {"publicNetworkAccess": "Maybe"}}, "publicNetworkAccess"),
        (
            {
                **CLUSTER_BODY,
                "properties": {"publicNetworkAccess": "Enabled", "minimumTlsVersion": "1.3"},
            },
            "minimumTlsVersion",
        ),
        (
            {
                **CLUSTER_BODY,
                "properties": {"publicNetworkAccess": "Enabled", "highAvailability": "Yes"},
            },
            "highAvailability",
        ),
    ],
)
def test_bad_cluster_bodies_are_400_naming_the_field(
    store: Store, body: dict[str, Any], field: str
) -> None:
    ok(store.enterprise.put_cluster(SUB, "rg", "amr1", CLUSTER_BODY, BASE, API), 201)
    time.sleep(DELAY * 2)
    for reply in (
        store.enterprise.put_cluster(SUB, "rg", "fresh", body, BASE, API),
        store.enterprise.put_cluster(SUB, "rg", "amr1", body, BASE, API),
        store.enterprise.patch_cluster(SUB, "rg", "amr1", body),
    ):
        assert reply.status == 400, reply.body
        assert reply.body["error"]["code"] == "InvalidRequestContent"
        assert field in reply.body["error"]["message"]


def test_bad_database_and_classic_bodies_are_400_naming_the_field(store: Store) -> None:
    ok(store.enterprise.put_cluster(SUB, "rg", "amr1", CLUSTER_BODY, BASE, API), 201)
    time.sleep(DELAY * 2)
    for props, field in [
        ({"persistence": "x"}, "persistence"),
        ({"deferUpgrade": "Yes"}, "deferUpgrade"),
        ({"clientProtocol": "Tls"}, "clientProtocol"),
        ({"accessKeysAuthentication": "On"}, "accessKeysAuthentication"),
    ]:
        db = {"properties": props}
        reply = store.enterprise.put_database(SUB, "rg", "amr1", "default", db, BASE, API)
        assert reply.status == 400 and field in reply.body["error"]["message"], reply.body
    ok(store.enterprise.put_database(SUB, "rg", "amr1", "default", {}, BASE, API), 201)
    time.sleep(DELAY * 2)
    patches: list[tuple[dict[str, Any], str]] = [
        ({"persistence": [1]}, "persistence"),
        ({"deferUpgrade": 1}, "deferUpgrade"),
    ]
    for patch, field in patches:
        reply = store.enterprise.patch_database(SUB, "rg", "amr1", "default", {"properties": patch})
        assert reply.status == 400 and field in reply.body["error"]["message"], reply.body

    ok(store.put_cache(SUB, "rg", "c1", CLASSIC_BODY, BASE, API), 201)
    for body, field in [
        ({**CLASSIC_BODY, "tags": ["a"]}, "tags"),
        ({**CLASSIC_BODY, "zones": 1}, "zones"),
        ({**CLASSIC_BODY, "properties": "x"}, "properties"),
        ({**CLASSIC_BODY, "properties": {"redisConfiguration": "x"}}, "redisConfiguration"),
    ]:
        for reply in (
            store.put_cache(SUB, "rg", "c2", body, BASE, API),
            store.patch_cache(SUB, "rg", "c1", body),
        ):
            assert reply.status == 400, reply.body
            assert reply.body["error"]["code"] == "InvalidRequestContent"
            assert field in reply.body["error"]["message"]


def test_without_a_data_plane_every_data_plane_call_is_a_no_op() -> None:
    plane = Store().data_plane
    rid = classic_id("c1")
    plane.start(rid, port=6380, cluster=False, keys=["k"], object_ids=["oid"])
    assert plane.state(rid) == "absent" and plane.failure(rid) is None
    assert plane.wait_ready(rid) == "absent" and plane.ports(rid) == []
    plane.set_keys(rid, None)
    plane.grant(rid, "oid")
    plane.revoke(rid, "oid")
    plane.issue_token("oid", "token", time.time() + 60)
    plane.stop(rid)
    plane.stop(rid, keep_address=True)
    plane.stop_all()
    assert plane.wait_stopped()
    plane.close()


def test_access_keys_are_not_in_reprs(store: Store) -> None:
    ok(store.put_cache(SUB, "rg", "c1", CLASSIC_BODY, BASE, API), 201)
    managed(store, accessKeysAuthentication="Enabled")
    cache = store.caches[(SUB.lower(), "rg", "c1")]
    db = store.enterprise.clusters[(SUB.lower(), "rg", "amr1")].database
    assert db is not None
    for record, keys in ((cache, cache.primary_key), (db, db.primary_key)):
        assert keys not in repr(record)
    assert cache.secondary_key not in repr(cache) and db.secondary_key not in repr(db)


def test_a_delete_finishes_only_once_its_servers_are_gone(
    store: Store, plane: RecordingDataPlane
) -> None:
    ok(store.put_cache(SUB, "rg", "c1", CLASSIC_BODY, BASE, API), 201)
    managed(store)
    cid, classic = cluster_id("amr1"), classic_id("c1")
    plane.states[cid] = plane.states[classic] = "ready"
    time.sleep(DELAY * 2)
    plane.still_stopping.update([cid, classic])  # the servers take their time to exit
    ok(store.delete_cache(SUB, "rg", "c1", BASE, API), 202)
    delete = store.enterprise.delete_cluster(SUB, "rg", "amr1", BASE, API)
    time.sleep(DELAY * 2)
    assert state_of(store, "c1") == "Deleting"
    assert operation(store, delete)["status"] == "InProgress"
    plane.still_stopping.clear()
    assert store.get_cache(SUB, "rg", "c1").status == 404
    assert operation(store, delete)["status"] == "Succeeded"
