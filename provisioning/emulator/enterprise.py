"""The emulator's Azure Managed Redis (``Microsoft.Cache/redisEnterprise``): clusters, their one
database ``default``, its keys and access policy assignments, and the ``operationsStatus``
long-running operations, with the real service's answers (201 + ``Azure-AsyncOperation``,
display-name locations, ``kind: v2``, 409 while the cluster is creating).

Pure logic, no HTTP, like :mod:`.store`: it shares the :class:`~.store.Store`'s lock, resource
groups, settings, faults and data plane. States are evaluated lazily from timestamps.
"""

from __future__ import annotations

import re
import time
import uuid
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import attrs

from .checks import (
    ENABLED_DISABLED,
    TLS_VERSIONS,
    enum_problem,
    first_problem,
    object_problem,
    tags_problem,
    zones_problem,
)
from .store import BUSY_MESSAGE, Reply, error, new_key

if TYPE_CHECKING:
    from .store import Store

CLUSTER_TYPE = "Microsoft.Cache/redisEnterprise"
DATABASE_TYPE = "Microsoft.Cache/redisEnterprise/databases"
ASSIGNMENT_TYPE = "Microsoft.Cache/redisEnterprise/databases/accessPolicyAssignments"
DATABASE_NAME = "default"
PORT = 10000
REDIS_VERSION = "7.4"
#: The api-version from which a cluster PUT must carry ``properties.publicNetworkAccess``.
PUBLIC_ACCESS_REQUIRED_FROM = "2025-07-01"

_NAME = re.compile(r"^(?=.{1,60}$)[A-Za-z0-9]+(-[A-Za-z0-9]+)*$")
#: The spec says ``^[A-Za-z0-9]{1,60}$``; the real service also takes GUIDs with hyphens.
_ASSIGNMENT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{0,59}$")
_SKU_SIZES: dict[str, tuple[int, ...]] = {
    "Balanced_B": (0, 1, 3, 5, 10, 20, 50, 100, 150, 250, 350, 500, 700, 1000),
    "MemoryOptimized_M": (10, 20, 50, 100, 150, 250, 350, 500, 700, 1000, 1500, 2000),
    "ComputeOptimized_X": (3, 5, 10, 20, 50, 100, 150, 250, 350, 500, 700),
    "FlashOptimized_A": (250, 500, 700, 1000, 1500, 2000, 4500),
    "Enterprise_E": (1, 5, 10, 20, 50, 100, 200, 400),
    "EnterpriseFlash_F": (300, 700, 1500),
}
_RETIRED_SKU_PREFIXES = ("Enterprise_", "EnterpriseFlash_")
_CLUSTERING = ("OSSCluster", "EnterpriseCluster", "NoCluster")
_EVICTION = (
    "AllKeysLFU",
    "AllKeysLRU",
    "AllKeysRandom",
    "VolatileLRU",
    "VolatileLFU",
    "VolatileTTL",
    "VolatileRandom",
    "NoEviction",
)
#: Region name -> display name, as the real service echoes ``location``.
_REGIONS = {
    "eastus": "East US",
    "eastus2": "East US 2",
    "westus": "West US",
    "westus2": "West US 2",
    "westus3": "West US 3",
    "centralus": "Central US",
    "northcentralus": "North Central US",
    "southcentralus": "South Central US",
    "westcentralus": "West Central US",
    "canadacentral": "Canada Central",
    "canadaeast": "Canada East",
    "brazilsouth": "Brazil South",
    "northeurope": "North Europe",
    "westeurope": "West Europe",
    "uksouth": "UK South",
    "ukwest": "UK West",
    "francecentral": "France Central",
    "germanywestcentral": "Germany West Central",
    "swedencentral": "Sweden Central",
    "switzerlandnorth": "Switzerland North",
    "norwayeast": "Norway East",
    "polandcentral": "Poland Central",
    "italynorth": "Italy North",
    "eastasia": "East Asia",
    "southeastasia": "Southeast Asia",
    "japaneast": "Japan East",
    "japanwest": "Japan West",
    "koreacentral": "Korea Central",
    "australiaeast": "Australia East",
    "australiasoutheast": "Australia Southeast",
    "centralindia": "Central India",
    "southindia": "South India",
    "uaenorth": "UAE North",
    "southafricanorth": "South Africa North",
}
_DISPLAY_TO_REGION = {display.lower(): region for region, display in _REGIONS.items()}
_DATABASE_ENUMS = (
    ("accessKeysAuthentication", ENABLED_DISABLED),
    ("clientProtocol", ("Encrypted", "Plaintext")),
    ("deferUpgrade", ("Deferred", "NotDeferred")),
)


def region_of(location: str) -> str:
    """The region name (``westus2``) of a location given either way (``West US 2``)."""
    lowered = location.strip().lower()
    return _DISPLAY_TO_REGION.get(lowered, lowered.replace(" ", ""))


def display_location(location: str) -> str:
    """The display name Azure echoes for ``location``; unknown regions come back as given."""
    return _REGIONS.get(region_of(location), location)


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat().replace("+00:00", "Z")


def _sku_problem(sku: Any) -> Reply | None:
    """400 unless ``sku.name`` is a known Managed Redis (or Enterprise) SKU."""
    name = sku.get("name") if isinstance(sku, dict) else None
    if not name:
        return error(400, "InvalidRequestContent", "The sku.name property is required.")
    for prefix, sizes in _SKU_SIZES.items():
        size = str(name)[len(prefix) :] if str(name).startswith(prefix) else ""
        if size.isdigit() and int(size) in sizes:
            return None
    return error(
        400,
        "InvalidRequestContent",
        f"The request content was invalid and could not be deserialized: 'Requested value "
        f"'{name}' was not found. Path 'sku.name'.' Use an Azure Managed Redis SKU such as "
        "Balanced_B0, Balanced_B1, MemoryOptimized_M10, ComputeOptimized_X3 or "
        "FlashOptimized_A250.",
    )


def _cluster_problem(body: dict[str, Any], props: Any) -> Reply | None:
    """400 ``InvalidRequestContent`` for a cluster body of the wrong shape or enum values."""
    problem = object_problem(props, "properties")
    if problem is None:
        problem = first_problem(
            tags_problem(body.get("tags")),
            zones_problem(body.get("zones")),
            enum_problem(
                props.get("minimumTlsVersion"), "properties.minimumTlsVersion", TLS_VERSIONS
            ),
            enum_problem(
                props.get("publicNetworkAccess"), "properties.publicNetworkAccess", ENABLED_DISABLED
            ),
            enum_problem(
                props.get("highAvailability"), "properties.highAvailability", ENABLED_DISABLED
            ),
        )
    return None if problem is None else error(400, "InvalidRequestContent", problem)


def _kind(sku_name: str) -> str:
    return "v1" if sku_name.startswith(_RETIRED_SKU_PREFIXES) else "v2"


@attrs.define(eq=False)
class Tracked:
    """Timing shared by clusters, databases and assignments: a state that becomes
    ``final_state`` at ``busy_until``, and a pending delete."""

    state: str = "Creating"
    busy_until: float = 0.0
    final_state: str = "Succeeded"
    delete_done_at: float | None = None
    failure: str | None = None
    gone: bool = False

    @property
    def busy(self) -> bool:
        return self.state in ("Creating", "Updating", "Deleting")

    @property
    def resource_state(self) -> str:
        return {
            "Creating": "Creating",
            "Updating": "Updating",
            "Deleting": "Deleting",
            "Failed": "CreateFailed",
        }.get(self.state, "Running")

    def begin(self, state: str, delay: float, final: str = "Succeeded") -> None:
        """Enter ``state`` for ``delay`` seconds, then ``final``."""
        self.state = state
        self.final_state = final
        self.busy_until = time.monotonic() + max(delay, 0.0001)


@attrs.define(eq=False)
class Cluster(Tracked):
    """One ``Microsoft.Cache/redisEnterprise`` cluster."""

    subscription: str = ""
    group: str = ""
    name: str = ""
    location: str = ""
    sku: dict[str, Any] = attrs.field(factory=dict)
    tags: dict[str, str] = attrs.field(factory=dict)
    zones: list[str] | None = None
    minimum_tls_version: str = "1.2"
    public_network_access: str = "Enabled"
    high_availability: str = "Enabled"
    host_name: str = ""
    #: Whether the data plane handed out an address for this cluster (it is released on stop).
    leased: bool = False
    database: Database | None = None

    @property
    def id(self) -> str:
        return (
            f"/subscriptions/{self.subscription}/resourceGroups/{self.group}"
            f"/providers/{CLUSTER_TYPE}/{self.name}"
        )

    def to_json(self) -> dict[str, Any]:
        """The cluster as the real service shows it (arm-examples-amr/RedisEnterpriseGet)."""
        redundancy = (
            "None" if self.high_availability == "Disabled" else ("ZR" if self.zones else "LR")
        )
        body: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "type": CLUSTER_TYPE,
            "location": self.location,
            "tags": dict(self.tags),
            "kind": _kind(str(self.sku.get("name", ""))),
            "sku": dict(self.sku),
            "properties": {
                "hostName": self.host_name,
                "provisioningState": self.state,
                "resourceState": self.resource_state,
                "redisVersion": REDIS_VERSION,
                "minimumTlsVersion": self.minimum_tls_version,
                "publicNetworkAccess": self.public_network_access,
                "highAvailability": self.high_availability,
                "redundancyMode": redundancy,
                "privateEndpointConnections": [],
            },
        }
        if self.zones:
            body["zones"] = list(self.zones)
        return body


@attrs.define(eq=False)
class Database(Tracked):
    """The cluster's database ``default``."""

    cluster: Cluster | None = None
    client_protocol: str = "Encrypted"
    clustering_policy: str = "OSSCluster"
    eviction_policy: str = "VolatileLRU"
    access_keys_authentication: str = "Disabled"
    modules: list[dict[str, Any]] = attrs.field(factory=list)
    persistence: dict[str, Any] = attrs.field(factory=dict)
    defer_upgrade: str = "NotDeferred"
    primary_key: str = attrs.field(factory=new_key, repr=False)
    secondary_key: str = attrs.field(factory=new_key, repr=False)
    assignments: dict[str, Assignment] = attrs.field(factory=dict)
    started: bool = False

    @property
    def id(self) -> str:
        assert self.cluster is not None
        return f"{self.cluster.id}/databases/{DATABASE_NAME}"

    @property
    def keys(self) -> list[str] | None:
        """The access keys the data plane accepts (None: access keys disabled)."""
        if self.access_keys_authentication != "Enabled":
            return None
        return [self.primary_key, self.secondary_key]

    def to_json(self) -> dict[str, Any]:
        """The database as the real service shows it (name ``default``, Redis 7.4)."""
        return {
            "id": self.id,
            "name": DATABASE_NAME,
            "type": DATABASE_TYPE,
            "properties": {
                "clientProtocol": self.client_protocol,
                "port": PORT,
                "provisioningState": self.state,
                "resourceState": self.resource_state,
                "clusteringPolicy": self.clustering_policy,
                "evictionPolicy": self.eviction_policy,
                "persistence": dict(self.persistence or {"aofEnabled": False, "rdbEnabled": False}),
                "modules": [dict(m) for m in self.modules],
                "deferUpgrade": self.defer_upgrade,
                "accessKeysAuthentication": self.access_keys_authentication,
                "redisVersion": REDIS_VERSION,
            },
        }


@attrs.define(eq=False)
class Assignment(Tracked):
    """An access policy assignment on the database."""

    database: Database | None = None
    name: str = ""
    policy: str = "default"
    object_id: str = ""

    def to_json(self) -> dict[str, Any]:
        assert self.database is not None
        return {
            "id": f"{self.database.id}/accessPolicyAssignments/{self.name}",
            "name": self.name,
            "type": ASSIGNMENT_TYPE,
            "properties": {
                "accessPolicyName": self.policy,
                "provisioningState": self.state,
                "user": {"objectId": self.object_id},
            },
        }


@attrs.define(eq=False)
class Operation:
    """One long-running operation, as ``operationsStatus/{id}`` reports it."""

    id: str
    subscription: str
    region: str
    action: str  # create, update or delete
    target: Tracked
    started: float = attrs.field(factory=time.time)
    ended: float | None = None

    def status(self) -> tuple[str, dict[str, str] | None]:
        """The status and, for a failure, the flat ``{"code", "message"}`` azure-core reads."""
        target = self.target
        if self.action == "delete":
            return ("Succeeded", None) if target.gone else ("InProgress", None)
        if target.state == "Failed":
            reason = target.failure or "The operation ended in provisioning state 'Failed'."
            return "Failed", {"code": "ResourceOperationFailure", "message": reason}
        if target.gone:
            return "Canceled", {
                "code": "ResourceDeleted",
                "message": "The resource was deleted before the operation completed.",
            }
        if target.busy:
            return "InProgress", None
        return "Succeeded", None


class Enterprise:
    """All Managed Redis state; every method runs under the owning store's lock."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.reset()

    def reset(self) -> None:
        """Forget every cluster and operation (the store resets the data plane)."""
        self.clusters: dict[tuple[str, str, str], Cluster] = {}
        self.operations: dict[str, Operation] = {}

    # -- helpers ------------------------------------------------------------------------------
    def _settle(self, item: Tracked, now: float, data_plane_id: str | None = None) -> None:
        """Apply a finished transition; a database waits for its data plane too."""
        if item.state == "Deleting" or not item.busy_until or now < item.busy_until:
            return
        final = item.final_state
        data_plane = self.store.data_plane
        if data_plane_id is not None and data_plane.available and final == "Succeeded":
            state = data_plane.state(data_plane_id)
            if state == "starting":
                return
            if state == "failed":
                final = "Failed"
                item.failure = (
                    f"The Redis server behind the database did not start: "
                    f"{data_plane.failure(data_plane_id) or 'unknown reason'}"
                )
        if final == "Failed" and item.failure is None:
            item.failure = (
                "The resource operation completed with terminal provisioning state 'Failed'."
            )
        item.state = final
        item.busy_until = 0.0

    def settle_all(self) -> None:
        """Advance every time-based state (called before each read and write)."""
        now = time.monotonic()
        for key, cluster in list(self.clusters.items()):
            if cluster.delete_done_at is not None and now >= cluster.delete_done_at:
                if not self.store.servers_stopping(cluster.id):
                    self._drop_cluster(key)
                continue
            self._settle(cluster, now)
            db = cluster.database
            if db is None:
                continue
            if db.delete_done_at is not None and now >= db.delete_done_at:
                if not self.store.servers_stopping(cluster.id):
                    self._drop_database(cluster, keep_address=True)
                continue
            self._settle(db, now, cluster.id if db.started else None)
            for assignment in db.assignments.values():
                self._settle(assignment, now)

    def _stop_data_plane(self, cluster: Cluster, keep_address: bool = False) -> None:
        """Stop the cluster's servers (in the background); ``keep_address`` keeps the address
        leased (a database delete, a restart: the host name never changes while the cluster
        exists)."""
        db = cluster.database
        if db is not None:
            db.started = False
        if not (cluster.leased and self.store.data_plane.available):
            return
        self.store.data_plane.stop(cluster.id, keep_address=keep_address)
        if not keep_address:
            cluster.leased = False

    def _drop_database(self, cluster: Cluster, keep_address: bool = False) -> None:
        db = cluster.database
        if db is None:
            return
        self._stop_data_plane(cluster, keep_address)
        db.gone = True
        for assignment in db.assignments.values():
            assignment.gone = True
        cluster.database = None

    def _drop_cluster(self, key: tuple[str, str, str]) -> None:
        cluster = self.clusters.pop(key)
        self._drop_database(cluster)
        cluster.gone = True

    def drop_group(self, sub: str, group: str) -> None:
        """Remove every cluster of a deleted resource group (its servers stop)."""
        for key in [k for k in self.clusters if k[:2] == (sub.lower(), group.lower())]:
            self._drop_cluster(key)

    def _cluster(self, sub: str, group: str, name: str) -> Cluster | None:
        self.settle_all()
        return self.clusters.get((sub.lower(), group.lower(), name.lower()))

    def _not_found(self, kind: str, name: str, group: str) -> Reply:
        return error(
            404,
            "ResourceNotFound",
            f"The Resource '{kind}/{name}' under resource group '{group}' was not found.",
        )

    def _existing(
        self, sub: str, group: str, name: str, absent: Reply | None = None
    ) -> Cluster | Reply:
        missing = self.store.group_missing(sub, group)
        if missing:
            return missing
        cluster = self._cluster(sub, group, name)
        if cluster is None:
            return absent if absent is not None else self._not_found(CLUSTER_TYPE, name, group)
        return cluster

    def _database(
        self, sub: str, group: str, name: str, db_name: str, absent: Reply | None = None
    ) -> tuple[Cluster, Database] | Reply:
        cluster = self._existing(sub, group, name)
        if isinstance(cluster, Reply):
            return cluster
        db = cluster.database
        if db is None or db_name.lower() != DATABASE_NAME:
            if absent is not None:
                return absent
            return self._not_found(DATABASE_TYPE, f"{name}/{db_name}", group)
        return cluster, db

    @staticmethod
    def _busy(item: Tracked, resource_id: str) -> Reply | None:
        if item.busy:
            return error(409, "Conflict", BUSY_MESSAGE.format(id=resource_id))
        if item.state == "Failed":
            return error(
                409,
                "Conflict",
                f"The resource '{resource_id}' is in Failed state: delete it and create it again.",
            )
        return None

    def _operation(
        self, cluster: Cluster, action: str, target: Tracked, resource_id: str, base: str, api: str
    ) -> dict[str, str]:
        """Register an operation; returns its ``Azure-AsyncOperation`` and ``Location`` headers."""
        op = Operation(
            str(uuid.uuid4()), cluster.subscription, region_of(cluster.location), action, target
        )
        self.operations[op.id] = op
        status = (
            f"{base}/subscriptions/{cluster.subscription}/providers/Microsoft.Cache/locations/"
            f"{quote(cluster.location)}/operationsStatus/{op.id}?api-version={api}"
        )
        result = f"{base}{resource_id}/operationresults/{op.id}?api-version={api}"
        return {"Azure-AsyncOperation": status, "Location": result}

    def _name_owner(self, region: str, name: str) -> str | None:
        """Who holds cluster ``name`` in ``region`` (another subscription, a fault), or None."""
        lowered = name.lower()
        for fault in self.store.faults:
            if fault.kind == "name-taken" and (fault.name or "").lower() == lowered:
                return "/subscriptions/someone-else/foreign"
        for cluster in self.clusters.values():
            if cluster.name.lower() == lowered and region_of(cluster.location) == region:
                return cluster.id.lower()
        return None

    def _host_name(self, cluster: Cluster, region: str) -> str:
        data_plane = self.store.data_plane
        if data_plane.available:
            address = data_plane.address_for(cluster.id)
            cluster.leased = True
            return address
        return f"{cluster.name.lower()}.{region}.redis.azure.net"

    # -- clusters -----------------------------------------------------------------------------
    def put_cluster(self, sub: str, group: str, name: str, body: Any, base: str, api: str) -> Reply:
        """Create (201 + operation headers) or update a cluster."""
        with self.store.lock:
            missing = self.store.group_missing(sub, group)
            if missing:
                return missing
            if not isinstance(body, dict):
                return error(400, "InvalidRequestContent", "The request content was invalid.")
            props = body.get("properties") or {}
            shape = _cluster_problem(body, props)
            if shape:
                return shape
            if api >= PUBLIC_ACCESS_REQUIRED_FROM and not props.get("publicNetworkAccess"):
                return error(
                    400,
                    "InvalidRequestContent",
                    f"The property 'publicNetworkAccess' is required in api-version {api}: set "
                    "properties.publicNetworkAccess to 'Enabled' or 'Disabled'.",
                )
            cluster = self._cluster(sub, group, name)
            if cluster is not None:
                return self._update_cluster(cluster, body, props)
            if not _NAME.match(name):
                return error(
                    400,
                    "InvalidResourceName",
                    f"Resource name '{name}' is invalid: use 1-60 letters, digits and single "
                    "hyphens, starting and ending with a letter or digit.",
                )
            if not body.get("location"):
                return error(400, "LocationRequired", "The location property is required.")
            problem = _sku_problem(body.get("sku"))
            if problem:
                return problem
            sku_name = str(body["sku"]["name"])
            if sku_name.startswith(_RETIRED_SKU_PREFIXES):
                return error(
                    400,
                    "SkuNotSupported",
                    f"SKU '{sku_name}' is retired: Enterprise and Enterprise Flash caches can no "
                    "longer be created. Use an Azure Managed Redis SKU such as Balanced_B0.",
                )
            region = region_of(str(body["location"]))
            owner = self._name_owner(region, name)
            if owner is not None:
                return error(
                    409,
                    "NameNotAvailable",
                    f"The name '{name}' is already in use in region '{region}' (cluster names "
                    "are unique per region across subscriptions). Choose another name.",
                )
            final, delay = self.store.create_outcome(name)
            cluster = Cluster(
                subscription=sub,
                group=self.store.groups[(sub.lower(), group.lower())]["name"],
                name=name,
                location=display_location(str(body["location"])),
                sku=dict(body["sku"]),
                tags=dict(body.get("tags") or {}),
                zones=list(body["zones"]) if body.get("zones") else None,
                minimum_tls_version=str(props.get("minimumTlsVersion") or "1.2"),
                public_network_access=str(props.get("publicNetworkAccess") or "Enabled"),
                high_availability=str(props.get("highAvailability") or "Enabled"),
            )
            cluster.begin("Creating", delay, final)
            cluster.host_name = self._host_name(cluster, region)
            self.clusters[(sub.lower(), group.lower(), name.lower())] = cluster
            headers = self._operation(cluster, "create", cluster, cluster.id, base, api)
            return Reply(201, cluster.to_json(), headers)

    def _update_cluster(
        self, cluster: Cluster, body: dict[str, Any], props: dict[str, Any]
    ) -> Reply:
        busy = self._busy(cluster, cluster.id)
        if busy:
            return busy
        changed = False
        if body.get("sku") is not None:
            problem = _sku_problem(body["sku"])
            if problem:
                return problem
            if dict(body["sku"]) != cluster.sku:
                cluster.sku, changed = dict(body["sku"]), True
        for key, attr in (
            ("minimumTlsVersion", "minimum_tls_version"),
            ("publicNetworkAccess", "public_network_access"),
            ("highAvailability", "high_availability"),
        ):
            if props.get(key) is not None and props[key] != getattr(cluster, attr):
                setattr(cluster, attr, str(props[key]))
                changed = True
        if body.get("tags") is not None:
            cluster.tags = dict(body["tags"])
        if changed:
            cluster.begin("Updating", self.store.settings.update_delay)
        return Reply(200, cluster.to_json())

    def patch_cluster(self, sub: str, group: str, name: str, body: Any) -> Reply:
        """PATCH: the same updates as a PUT on an existing cluster."""
        with self.store.lock:
            cluster = self._existing(sub, group, name)
            if isinstance(cluster, Reply):
                return cluster
            if not isinstance(body, dict):
                return error(400, "InvalidRequestContent", "The request content was invalid.")
            props = body.get("properties") or {}
            return _cluster_problem(body, props) or self._update_cluster(cluster, body, props)

    def get_cluster(self, sub: str, group: str, name: str) -> Reply:
        with self.store.lock:
            cluster = self._existing(sub, group, name)
            if isinstance(cluster, Reply):
                return cluster
            return Reply(200, cluster.to_json())

    def list_clusters(self, sub: str, group: str | None) -> Reply:
        with self.store.lock:
            if group is not None:
                missing = self.store.group_missing(sub, group)
                if missing:
                    return missing
            self.settle_all()
            items = [
                c.to_json()
                for (s, g, _), c in sorted(self.clusters.items())
                if s == sub.lower() and (group is None or g == group.lower())
            ]
            return Reply(200, {"value": items})

    def delete_cluster(self, sub: str, group: str, name: str, base: str, api: str) -> Reply:
        """202 + ``Deleting`` + operation headers; the cluster and its database go after the
        delete delay (its servers stop at once)."""
        with self.store.lock:
            cluster = self._existing(sub, group, name, absent=Reply(204))
            if isinstance(cluster, Reply):
                return cluster
            if cluster.state != "Deleting":
                if cluster.state in ("Creating", "Updating"):
                    return self._busy(cluster, cluster.id) or Reply(409)
                self._stop_data_plane(cluster)
                cluster.state = "Deleting"
                cluster.busy_until = 0.0
                cluster.delete_done_at = time.monotonic() + self.store.settings.delete_delay
            headers = self._operation(cluster, "delete", cluster, cluster.id, base, api)
            return Reply(202, cluster.to_json(), headers)

    # -- databases ----------------------------------------------------------------------------
    def put_database(
        self, sub: str, group: str, name: str, db_name: str, body: Any, base: str, api: str
    ) -> Reply:
        """Create the database ``default`` (refused while the cluster is busy) or update it."""
        with self.store.lock:
            cluster = self._existing(sub, group, name)
            if isinstance(cluster, Reply):
                return cluster
            if not isinstance(body, dict):
                return error(400, "InvalidRequestContent", "The request content was invalid.")
            props = body.get("properties") or {}
            if not isinstance(props, dict):
                return error(400, "InvalidRequestContent", "properties must be an object.")
            if db_name.lower() != DATABASE_NAME:
                return error(
                    400,
                    "InvalidResourceName",
                    f"Database name '{db_name}' is not supported: a cluster has one database, "
                    f"named '{DATABASE_NAME}'.",
                )
            busy = self._busy(cluster, cluster.id)
            if busy:
                return busy
            problem = self._database_problem(props, cluster.database)
            if problem:
                return problem
            if cluster.database is not None:
                return self._update_database(cluster, cluster.database, props)
            final, delay = self.store.create_outcome(f"{cluster.name}/{DATABASE_NAME}")
            db = Database(
                cluster=cluster,
                client_protocol=str(props.get("clientProtocol") or "Encrypted"),
                clustering_policy=str(props.get("clusteringPolicy") or "OSSCluster"),
                eviction_policy=str(props.get("evictionPolicy") or "VolatileLRU"),
                access_keys_authentication=str(props.get("accessKeysAuthentication") or "Disabled"),
                modules=[
                    {"name": m["name"], "args": str(m.get("args") or ""), "version": "1.0.0"}
                    for m in props.get("modules") or []
                ],
                persistence=dict(props.get("persistence") or {}),
                defer_upgrade=str(props.get("deferUpgrade") or "NotDeferred"),
            )
            db.begin("Creating", delay, final)
            cluster.database = db
            if final == "Succeeded":
                self._start_data_plane(cluster, db)
            headers = self._operation(cluster, "create", db, db.id, base, api)
            return Reply(201, db.to_json(), headers)

    @staticmethod
    def _database_problem(props: dict[str, Any], current: Database | None) -> Reply | None:
        """400 for values Azure refuses, and for changes it allows only at create."""
        policy = props.get("clusteringPolicy")
        if policy is not None and policy not in _CLUSTERING:
            return error(
                400,
                "InvalidRequestContent",
                f"clusteringPolicy '{policy}' is invalid: use OSSCluster, EnterpriseCluster or "
                "NoCluster.",
            )
        eviction = props.get("evictionPolicy")
        if eviction is not None and eviction not in _EVICTION:
            return error(400, "InvalidRequestContent", f"evictionPolicy '{eviction}' is invalid.")
        shape = first_problem(
            object_problem(props.get("persistence"), "properties.persistence"),
            *(
                enum_problem(props.get(k), f"properties.{k}", allowed)
                for k, allowed in _DATABASE_ENUMS
            ),
        )
        if shape:
            return error(400, "InvalidRequestContent", shape)
        port = props.get("port")
        if port is not None and port != PORT:
            return error(400, "InvalidRequestContent", f"port {port} is not supported: use {PORT}.")
        modules = props.get("modules")
        if modules is not None and (
            not isinstance(modules, list)
            or any(not isinstance(m, dict) or not m.get("name") for m in modules)
        ):
            return error(400, "InvalidRequestContent", "Each module needs a name.")
        if current is None:
            return None
        if (
            policy is not None
            and policy != current.clustering_policy
            and current.clustering_policy != "NoCluster"
        ):
            return error(
                400,
                "BadRequest",
                f"Updating the clustering policy from '{current.clustering_policy}' to "
                f"'{policy}' is not supported: only a NoCluster database can change its "
                "clustering policy. Delete the database and create it again.",
            )
        if modules is not None and [m["name"] for m in modules] != [
            m["name"] for m in current.modules
        ]:
            return error(
                400,
                "BadRequest",
                "Modules can only be set when the database is created: delete the database and "
                "create it again with the modules you need.",
            )
        return None

    def _start_data_plane(self, cluster: Cluster, db: Database) -> None:
        data_plane = self.store.data_plane
        if not data_plane.available:
            return
        data_plane.start(
            cluster.id,
            port=PORT,
            cluster=db.clustering_policy == "OSSCluster",
            keys=db.keys,
            object_ids=[a.object_id for a in db.assignments.values()],
        )
        db.started = True
        cluster.leased = True
        cluster.host_name = data_plane.address_for(cluster.id)

    def _update_database(self, cluster: Cluster, db: Database, props: dict[str, Any]) -> Reply:
        busy = self._busy(db, db.id)
        if busy:
            return busy
        changed = False
        keys_before = db.keys
        cluster_mode_before = db.clustering_policy == "OSSCluster"
        for key, attr in (
            ("clusteringPolicy", "clustering_policy"),
            ("evictionPolicy", "eviction_policy"),
            ("accessKeysAuthentication", "access_keys_authentication"),
            ("clientProtocol", "client_protocol"),
            ("deferUpgrade", "defer_upgrade"),
        ):
            if props.get(key) is not None and props[key] != getattr(db, attr):
                setattr(db, attr, str(props[key]))
                changed = True
        if props.get("persistence") is not None and props["persistence"] != db.persistence:
            db.persistence, changed = dict(props["persistence"]), True
        if not changed:
            return Reply(200, db.to_json())
        db.begin("Updating", self.store.settings.update_delay)
        if db.started and self.store.data_plane.available:
            if (db.clustering_policy == "OSSCluster") != cluster_mode_before:
                self._stop_data_plane(cluster, keep_address=True)  # same address, new servers
                self._start_data_plane(cluster, db)
            elif db.keys != keys_before:
                self.store.data_plane.set_keys(cluster.id, db.keys)
        return Reply(200, db.to_json())

    def patch_database(self, sub: str, group: str, name: str, db_name: str, body: Any) -> Reply:
        """PATCH the database: the updates a PUT may make."""
        with self.store.lock:
            found = self._database(sub, group, name, db_name)
            if isinstance(found, Reply):
                return found
            cluster, db = found
            props = body.get("properties") if isinstance(body, dict) else None
            if not isinstance(props, dict):
                return error(400, "InvalidRequestContent", "The request content was invalid.")
            return self._database_problem(props, db) or self._update_database(cluster, db, props)

    def get_database(self, sub: str, group: str, name: str, db_name: str) -> Reply:
        with self.store.lock:
            found = self._database(sub, group, name, db_name)
            if isinstance(found, Reply):
                return found
            return Reply(200, found[1].to_json())

    def list_databases(self, sub: str, group: str, name: str) -> Reply:
        with self.store.lock:
            cluster = self._existing(sub, group, name)
            if isinstance(cluster, Reply):
                return cluster
            items = [cluster.database.to_json()] if cluster.database is not None else []
            return Reply(200, {"value": items})

    def delete_database(
        self, sub: str, group: str, name: str, db_name: str, base: str, api: str
    ) -> Reply:
        """202 + operation headers; the database (and its assignments) go after the delay."""
        with self.store.lock:
            found = self._database(sub, group, name, db_name, absent=Reply(204))
            if isinstance(found, Reply):
                return found
            cluster, db = found
            if db.state != "Deleting":
                if db.state in ("Creating", "Updating"):
                    return self._busy(db, db.id) or Reply(409)
                self._stop_data_plane(cluster, keep_address=True)
                db.state = "Deleting"
                db.busy_until = 0.0
                db.delete_done_at = time.monotonic() + self.store.settings.delete_delay
            return Reply(202, None, self._operation(cluster, "delete", db, db.id, base, api))

    def keys(self, sub: str, group: str, name: str, db_name: str, regenerate: Any = None) -> Reply:
        """listKeys, or regenerateKey when ``regenerate`` is the request body."""
        with self.store.lock:
            found = self._database(sub, group, name, db_name)
            if isinstance(found, Reply):
                return found
            cluster, db = found
            if db.access_keys_authentication != "Enabled":
                return error(
                    400,
                    "BadRequest",
                    "Access keys authentication is disabled for this database: set "
                    "accessKeysAuthentication to 'Enabled' to use access keys.",
                )
            if regenerate is not None:
                busy = self._busy(db, db.id)
                if busy:
                    return busy
                kind = regenerate.get("keyType") if isinstance(regenerate, dict) else None
                if kind == "Primary":
                    db.primary_key = new_key()
                elif kind == "Secondary":
                    db.secondary_key = new_key()
                else:
                    return error(
                        400, "InvalidRequestContent", "keyType must be Primary or Secondary."
                    )
                if db.started and self.store.data_plane.available:
                    self.store.data_plane.set_keys(cluster.id, db.keys)
            return Reply(200, {"primaryKey": db.primary_key, "secondaryKey": db.secondary_key})

    # -- access policy assignments ------------------------------------------------------------
    def assignment(
        self,
        method: str,
        sub: str,
        group: str,
        name: str,
        db_name: str,
        item: str | None,
        body: Any,
        base: str,
        api: str,
    ) -> Reply:
        """List, GET, PUT (201/200) or DELETE (202/204, never 200) an assignment."""
        with self.store.lock:
            cluster = self._existing(sub, group, name)
            if isinstance(cluster, Reply):
                return cluster
            if method == "PUT":
                busy = self._busy(cluster, cluster.id)
                if busy:
                    return busy
            found = self._database(sub, group, name, db_name)
            if isinstance(found, Reply):
                return found
            _, db = found
            if item is None:
                return Reply(
                    200, {"value": [a.to_json() for _, a in sorted(db.assignments.items())]}
                )
            current = db.assignments.get(item.lower())
            if method == "GET":
                if current is None:
                    return self._not_found(ASSIGNMENT_TYPE, item, group)
                return Reply(200, current.to_json())
            if method == "DELETE":
                return self._delete_assignment(cluster, db, current, base, api)
            busy = self._busy(db, db.id)
            if busy:
                return busy
            return self._put_assignment(cluster, db, item, current, body)

    def _put_assignment(
        self, cluster: Cluster, db: Database, item: str, current: Assignment | None, body: Any
    ) -> Reply:
        if not _ASSIGNMENT_NAME.match(item):
            return error(
                400,
                "InvalidResourceName",
                f"Access policy assignment name '{item}' is invalid: use 1-60 letters, digits "
                "and hyphens.",
            )
        props = body.get("properties") if isinstance(body, dict) else None
        user = props.get("user") if isinstance(props, dict) else None
        object_id = user.get("objectId") if isinstance(user, dict) else None
        if not isinstance(props, dict) or not props.get("accessPolicyName") or not object_id:
            return error(
                400,
                "InvalidRequestContent",
                "properties.accessPolicyName and properties.user.objectId are required.",
            )
        if props["accessPolicyName"] != "default":
            return error(
                400,
                "BadRequest",
                f"Access policy '{props['accessPolicyName']}' does not exist: use 'default'.",
            )
        record = Assignment(
            database=db, name=item, policy="default", object_id=str(object_id), state="Succeeded"
        )
        if self.store.settings.policy_delay > 0:
            record.begin("Updating", self.store.settings.policy_delay)
        db.assignments[item.lower()] = record
        data_plane = self.store.data_plane
        if db.started and data_plane.available:
            if current is not None and current.object_id != record.object_id:
                self._revoke_unless_granted(cluster, db, current.object_id)
            data_plane.grant(cluster.id, record.object_id)
        return Reply(200 if current else 201, record.to_json())

    def _revoke_unless_granted(self, cluster: Cluster, db: Database, object_id: str) -> None:
        """Revoke ``object_id`` unless another assignment still grants it."""
        if all(a.object_id != object_id for a in db.assignments.values()):
            self.store.data_plane.revoke(cluster.id, object_id)

    def _delete_assignment(
        self, cluster: Cluster, db: Database, current: Assignment | None, base: str, api: str
    ) -> Reply:
        if current is None:
            return Reply(204)
        busy = self._busy(db, db.id)
        if busy:
            return busy
        del db.assignments[current.name.lower()]
        current.gone = True
        if db.started and self.store.data_plane.available:
            self._revoke_unless_granted(cluster, db, current.object_id)
        resource_id = f"{db.id}/accessPolicyAssignments/{current.name}"
        return Reply(202, None, self._operation(cluster, "delete", current, resource_id, base, api))

    # -- operations ---------------------------------------------------------------------------
    def operation_status(self, sub: str, location: str, op_id: str) -> Reply:
        """``operationsStatus/{id}``: ``{"id","name","status","startTime","endTime"}``."""
        with self.store.lock:
            self.settle_all()
            op = self.operations.get(op_id.lower()) or self.operations.get(op_id)
            if op is None or op.subscription.lower() != sub.lower():
                return error(404, "ResourceNotFound", f"Operation '{op_id}' was not found.")
            status, failure = op.status()
            body: dict[str, Any] = {
                "id": (
                    f"/subscriptions/{op.subscription}/providers/Microsoft.Cache/locations/"
                    f"{op.region}/operationsStatus/{op.id}"
                ),
                "name": op.id,
                "status": status,
                "startTime": _iso(op.started),
            }
            if status not in ("InProgress", "Pending"):
                op.ended = op.ended or time.time()
                body["endTime"] = _iso(op.ended)
            if failure is not None:
                body["error"] = failure
            return Reply(200, body)

    def operation_result(self, op_id: str) -> Reply:
        """``{resource}/operationresults/{id}``: 202 while running, then 204 (or the error)."""
        with self.store.lock:
            self.settle_all()
            op = self.operations.get(op_id)
            if op is None:
                return error(404, "ResourceNotFound", f"Operation '{op_id}' was not found.")
            status, failure = op.status()
            if status == "InProgress":
                return Reply(202)
            if failure is not None:
                return error(400, failure["code"], failure["message"])
            return Reply(204)
