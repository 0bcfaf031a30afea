"""The emulator's in-memory Azure: resource groups, caches, access policy assignments,
firewall rules and delete operations, with the real service's timing behaviour. Managed Redis
(``Microsoft.Cache/redisEnterprise``) lives in :mod:`.enterprise` and shares this store's lock,
groups, settings, faults and data plane (a real TLS server behind every cache, when available).

Pure logic, no HTTP: each method takes parsed request parts and returns a :class:`Reply`.
Time-based states are evaluated lazily: a cache created at ``t`` with create delay ``D`` is
``Creating`` until ``t + D`` and ``Succeeded`` (or ``Failed``) afterwards.
"""

from __future__ import annotations

import base64
import os
import re
import threading
import time
import uuid
from collections.abc import Sequence
from typing import Any, TypeVar

import attrs

from .checks import first_problem, object_problem, tags_problem, zones_problem
from .data_plane import DataPlane, DataPlaneState
from .faults import Fault

CACHE_TYPE = "Microsoft.Cache/Redis"
ASSIGNMENT_TYPE = "Microsoft.Cache/Redis/accessPolicyAssignments"
FIREWALL_TYPE = "Microsoft.Cache/redis/firewallRules"
BUILTIN_POLICIES = ("Data Owner", "Data Contributor", "Data Reader")
RETIRED_MESSAGE = (
    "Azure Cache for Redis is retired for this subscription: new Basic, Standard and Premium "
    "caches can no longer be created. Create an Azure Managed Redis cache "
    "(Microsoft.Cache/redisEnterprise) instead."
)
BUSY_MESSAGE = (
    "The resource '{id}' is busy processing a previous update request or is undergoing system "
    "maintenance. As such, it is currently unable to accept the update request. Please try "
    "again later."
)
_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9]|-(?!-)){0,62}$")
_RG_NAME = re.compile(r"^[-\w.()]{1,90}$")
_SKUS = {"basic": ("C", range(0, 7)), "standard": ("C", range(0, 7)), "premium": ("P", range(1, 6))}
_V = TypeVar("_V")
_DEFAULT_CONFIG = {
    "maxclients": "1000",
    "maxmemory-reserved": "30",
    "maxfragmentationmemory-reserved": "30",
    "maxmemory-delta": "30",
}


@attrs.define
class Reply:
    """One HTTP answer: status, JSON body (None = empty) and extra headers."""

    status: int
    body: Any = None
    headers: dict[str, str] = attrs.field(factory=dict)


def error(status: int, code: str, message: str, **headers: str) -> Reply:
    """An ARM error reply ``{"error": {"code", "message", "details"}}``."""
    return Reply(status, {"error": {"code": code, "message": message, "details": []}}, headers)


def new_key() -> str:
    """A fresh access key: 44 characters of base64, as Azure's."""
    return base64.b64encode(os.urandom(32)).decode()


def _child_id(cache_id: str, collection: str, item: str) -> str:
    """The ARM id of a cache's sub-resource (``.../redis/{name}/{collection}/{item}``)."""
    return f"{cache_id.replace('/Redis/', '/redis/')}/{collection}/{item}"


def _children(table: dict[tuple[str, str], _V], prefix: str) -> list[_V]:
    """The sub-resources in ``table`` of the cache whose lower-cased id is ``prefix``."""
    return [value for (owner, _), value in sorted(table.items()) if owner == prefix]


def _shape_problem(body: dict[str, Any], props: Any) -> Reply | None:
    """400 ``InvalidRequestContent`` for a cache body whose parts have the wrong JSON type."""
    problem = object_problem(props, "properties")
    if problem is None:
        problem = first_problem(
            tags_problem(body.get("tags")),
            zones_problem(body.get("zones")),
            object_problem(props.get("redisConfiguration"), "properties.redisConfiguration"),
        )
    return None if problem is None else error(400, "InvalidRequestContent", problem)


@attrs.define
class Settings:
    """Timing knobs (seconds)."""

    create_delay: float = 2.0
    update_delay: float = 0.5
    delete_delay: float = 0.5
    policy_delay: float = 0.0


@attrs.define
class Cache:
    """One Microsoft.Cache/Redis resource."""

    subscription: str
    group: str
    name: str
    location: str
    sku: dict[str, Any]
    tags: dict[str, str]
    zones: list[str] | None
    config: dict[str, str]
    enable_non_ssl_port: bool
    minimum_tls_version: str | None
    public_network_access: str
    disable_access_key_authentication: bool
    primary_key: str = attrs.field(factory=new_key, repr=False)
    secondary_key: str = attrs.field(factory=new_key, repr=False)
    state: str = "Creating"
    busy_until: float = 0.0
    final_state: str = "Succeeded"
    delete_done_at: float | None = None
    #: Whether the data plane was asked to start this cache's server.
    started: bool = False
    #: The data plane's loopback address for this cache, when it has one.
    address: str | None = None

    @property
    def id(self) -> str:
        return (
            f"/subscriptions/{self.subscription}/resourceGroups/{self.group}"
            f"/providers/Microsoft.Cache/Redis/{self.name}"
        )

    def settle(self, now: float) -> None:
        """Apply a finished transition."""
        if self.state != "Deleting" and self.busy_until and now >= self.busy_until:
            self.state = self.final_state
            self.busy_until = 0.0

    @property
    def busy(self) -> bool:
        return self.state in ("Creating", "Updating", "Scaling", "ConfiguringAAD", "Deleting")

    def _instance(self) -> dict[str, Any]:
        instance: dict[str, Any] = {"sslPort": 15000, "nonSslPort": 13000}
        if self.zones:
            instance.update(zone=self.zones[0], shardId=0)
        instance.update(isMaster=True, isPrimary=True)
        return instance

    def to_json(self, include_keys: bool = False) -> dict[str, Any]:
        """The resource as the real service shows it (see arm-examples/RedisCacheGet.json)."""
        config = {**_DEFAULT_CONFIG, **self.config}
        body: dict[str, Any] = {
            "id": self.id,
            "location": self.location,
            "name": self.name,
            "type": CACHE_TYPE,
            "tags": dict(self.tags),
            "properties": {
                "provisioningState": self.state,
                "redisVersion": "6.0.14",
                "sku": dict(self.sku),
                "enableNonSslPort": self.enable_non_ssl_port,
                "replicasPerMaster": 1,
                "replicasPerPrimary": 1,
                "updateChannel": "Stable",
                "zonalAllocationPolicy": "UserDefined" if self.zones else "Automatic",
                "redisConfiguration": config,
                "accessKeys": (
                    {"primaryKey": self.primary_key, "secondaryKey": self.secondary_key}
                    if include_keys
                    else None
                ),
                "hostName": self.address or f"{self.name.lower()}.redis.cache.windows.net",
                "port": 6379,
                "sslPort": 6380,
                "minimumTlsVersion": self.minimum_tls_version,
                "publicNetworkAccess": self.public_network_access,
                "disableAccessKeyAuthentication": self.disable_access_key_authentication,
                "instances": [self._instance()],
                "linkedServers": [],
                "privateEndpointConnections": [],
            },
        }
        if self.zones:
            body["zones"] = list(self.zones)
        return body


@attrs.define
class Assignment:
    """An access policy assignment on a cache."""

    cache_id: str
    name: str
    policy: str
    object_id: str
    alias: str
    ready_at: float = 0.0

    def to_json(self, now: float) -> dict[str, Any]:
        state = "Succeeded" if now >= self.ready_at else "Updating"
        return {
            "id": _child_id(self.cache_id, "accessPolicyAssignments", self.name),
            "name": self.name,
            "type": ASSIGNMENT_TYPE,
            "properties": {
                "provisioningState": state,
                "accessPolicyName": self.policy,
                "objectId": self.object_id,
                "objectIdAlias": self.alias,
            },
        }


class _NoDataPlane(DataPlane):
    """Stand-in when no data plane was given: reports itself unavailable, starts nothing, and
    every method is a safe no-op (it skips :class:`DataPlane`'s set-up, so it overrides all)."""

    def __init__(self) -> None:
        self.available = False
        self.unavailable_reason = "no data plane was configured"
        self.ca_file = None

    def address_for(self, resource_id: str) -> str:
        return ""

    def start(
        self,
        resource_id: str,
        *,
        port: int,
        cluster: bool,
        keys: Sequence[str] | None,
        object_ids: Sequence[str] = (),
    ) -> None:
        """Nothing starts."""

    def state(self, resource_id: str) -> DataPlaneState:
        return "absent"

    def failure(self, resource_id: str) -> str | None:
        return None

    def wait_ready(self, resource_id: str, timeout: float = 0.0) -> DataPlaneState:
        return "absent"

    def ports(self, resource_id: str) -> list[int]:
        return []

    def set_keys(self, resource_id: str, keys: Sequence[str] | None) -> None:
        """No server to tell."""

    def grant(self, resource_id: str, object_id: str) -> None:
        """No server to tell."""

    def revoke(self, resource_id: str, object_id: str) -> None:
        """No server to tell."""

    def issue_token(self, object_id: str, token: str, expires_on: float) -> None:
        """No server to tell."""

    def stop(self, resource_id: str, keep_address: bool = False) -> None:
        """Nothing runs."""

    def stop_all(self) -> None:
        """Nothing runs."""

    def stopping(self, resource_id: str) -> bool:
        return False

    def wait_stopped(self, timeout: float = 0.0) -> bool:
        return True

    def close(self) -> None:
        """Nothing runs."""


class Store:
    """All emulated state, guarded by one lock (requests run on server threads).

    ``data_plane`` runs a real server behind each cache when it is available; every call into
    it is guarded by ``data_plane.available``.
    """

    def __init__(
        self,
        settings: Settings | None = None,
        faults: list[Fault] | None = None,
        data_plane: DataPlane | None = None,
    ) -> None:
        from .enterprise import Enterprise

        self.lock = threading.RLock()
        self.base_settings = settings or Settings()
        self.startup_faults = [attrs.evolve(f) for f in faults or []]
        self.data_plane: DataPlane = data_plane if data_plane is not None else _NoDataPlane()
        self.enterprise = Enterprise(self)
        self._started = False
        self.reset()

    def reset(self) -> None:
        """Forget everything: resources (their servers stop in the background), faults, request
        log; restore the start-up settings."""
        with self.lock:
            if self._started and self.data_plane.available:
                self.data_plane.stop_all()
            self._started = True
            self.enterprise.reset()
            self.settings = attrs.evolve(self.base_settings)
            self.groups: dict[tuple[str, str], dict[str, Any]] = {}
            self.caches: dict[tuple[str, str, str], Cache] = {}
            self.reserved: dict[str, str] = {}  # lower name -> owner id
            self.assignments: dict[tuple[str, str], Assignment] = {}
            self.firewall: dict[tuple[str, str], dict[str, Any]] = {}
            self.operations: dict[str, Cache] = {}
            self.faults: list[Fault] = [attrs.evolve(f) for f in self.startup_faults]
            self.log: list[dict[str, Any]] = []
            for fault in self.faults:
                self._apply_static(fault)

    def add_fault(self, fault: Fault) -> None:
        """Register a fault (``name-taken`` takes effect at once)."""
        with self.lock:
            self.faults.append(fault)
            self._apply_static(fault)

    def _apply_static(self, fault: Fault) -> None:
        if fault.kind == "name-taken" and fault.name:
            self.reserved[fault.name.lower()] = "/subscriptions/someone-else/foreign"

    def request_fault(self, method: str, path: str) -> Reply | None:
        """The reply of the first request-level fault matching this request, if any."""
        with self.lock:
            for fault in self.faults:
                if fault.matches_request(method, path):
                    fault.consume()
                    return self._fault_reply(fault)
        return None

    @staticmethod
    def _fault_reply(fault: Fault) -> Reply:
        if fault.kind == "throttle":
            return error(
                429,
                "SubscriptionRequestsThrottled",
                "Number of requests for subscription exceeded the limit. Please retry after "
                f"{fault.retry_after} seconds.",
                **{"Retry-After": str(fault.retry_after)},
            )
        if fault.kind == "server-error":
            return error(500, "InternalServerError", "Encountered internal server error.")
        if fault.kind == "busy":
            return error(409, "Conflict", BUSY_MESSAGE.format(id="(injected)"))
        if fault.kind == "expired-token":
            return error(
                401,
                "ExpiredAuthenticationToken",
                "The access token expiry UTC time is earlier than current UTC time.",
            )
        return error(
            403,
            "AuthorizationFailed",
            "The client 'emulator-user' with object id '(emulator)' does not have "
            f"authorization to perform action '{fault.action}' over scope '(emulated)' or the "
            "scope is invalid.",
        )

    def create_outcome(self, name: str) -> tuple[str, float]:
        """The final state and delay of a new resource ``name`` after create-level faults."""
        final, delay = "Succeeded", self.settings.create_delay
        for fault in self.faults:
            if fault.matches_create(name):
                fault.consume()
                if fault.kind == "create-failed":
                    final = "Failed"
                else:
                    delay = fault.delay
        return final, delay

    # -- helpers ------------------------------------------------------------------------------
    def _settle_all(self) -> None:
        now = time.monotonic()
        for key, cache in list(self.caches.items()):
            if cache.delete_done_at is not None and now >= cache.delete_done_at:
                if not self.servers_stopping(cache.id):
                    self._drop_cache(key)
            elif cache.state == "Creating" and self._data_plane_pending(cache):
                continue
            else:
                cache.settle(now)

    def servers_stopping(self, resource_id: str) -> bool:
        """Whether a deleted resource's servers are still going (its delete is not done)."""
        return self.data_plane.available and self.data_plane.stopping(resource_id)

    def _data_plane_pending(self, cache: Cache) -> bool:
        """True while a new cache's server still starts; a failed start fails the cache."""
        if not (self.data_plane.available and cache.started):
            return False
        state = self.data_plane.state(cache.id)
        if state == "starting":
            return True
        if state == "failed":
            cache.final_state = "Failed"
        return False

    def _drop_cache(self, key: tuple[str, str, str]) -> None:
        """Remove a cache with its child resources and its name reservation (its server
        stops)."""
        cache = self.caches.pop(key)
        self._stop_server(cache)
        prefix = cache.id.lower()
        if self.reserved.get(cache.name.lower()) == prefix:
            del self.reserved[cache.name.lower()]
        for table in (self.assignments, self.firewall):
            for child in [k for k in table if k[0] == prefix]:
                del table[child]

    def _cache(self, sub: str, group: str, name: str) -> Cache | None:
        self._settle_all()
        return self.caches.get((sub.lower(), group.lower(), name.lower()))

    def group_missing(self, sub: str, group: str) -> Reply | None:
        """404 ``ResourceGroupNotFound`` unless the group exists."""
        if (sub.lower(), group.lower()) not in self.groups:
            return error(
                404, "ResourceGroupNotFound", f"Resource group '{group}' could not be found."
            )
        return None

    def _retired(self, name: str) -> Reply | None:
        """400 ``ProductRetired`` when a ``retired`` fault matches this new cache."""
        for fault in self.faults:
            if fault.matches_retired(name):
                fault.consume()
                return error(400, "ProductRetired", RETIRED_MESSAGE)
        return None

    # -- data plane ---------------------------------------------------------------------------
    def _keys_of(self, cache: Cache) -> list[str] | None:
        if cache.disable_access_key_authentication:
            return None
        return [cache.primary_key, cache.secondary_key]

    def _grants(self, cache: Cache) -> list[str]:
        """Object ids the cache's server lets in: its assignments' when Entra ID is on."""
        if cache.config.get("aad-enabled") != "true":
            return []
        prefix = cache.id.lower()
        return sorted({a.object_id for a in _children(self.assignments, prefix)})

    def _start_server(self, cache: Cache) -> None:
        """Start the cache's TLS server (port 6380, single server) when there is a data plane."""
        if not self.data_plane.available:
            return
        self.data_plane.start(
            cache.id,
            port=6380,
            cluster=False,
            keys=self._keys_of(cache),
            object_ids=self._grants(cache),
        )
        cache.started = True
        cache.address = self.data_plane.address_for(cache.id)

    def _stop_server(self, cache: Cache) -> None:
        if cache.started and self.data_plane.available:
            self.data_plane.stop(cache.id)
        cache.started = False

    def _existing(
        self, sub: str, group: str, name: str, absent: Reply | None = None
    ) -> Cache | Reply:
        """The cache, or the reply when its group is missing or it does not exist (``absent``,
        by default a 404)."""
        missing = self.group_missing(sub, group)
        if missing:
            return missing
        cache = self._cache(sub, group, name)
        if cache is None:
            return absent if absent is not None else self._not_found(CACHE_TYPE, name, group)
        return cache

    def _not_found(self, kind: str, name: str, group: str) -> Reply:
        return error(
            404,
            "ResourceNotFound",
            f"The Resource '{kind}/{name}' under resource group '{group}' was not found.",
        )

    # -- resource groups ----------------------------------------------------------------------
    def group(self, method: str, sub: str, group: str, body: Any) -> Reply:
        with self.lock:
            key = (sub.lower(), group.lower())
            existing = self.groups.get(key)
            if method in ("GET", "HEAD"):
                missing = self.group_missing(sub, group)
                if missing:
                    return missing
                return Reply(
                    204 if method == "HEAD" else 200, None if method == "HEAD" else existing
                )
            if method == "PUT":
                if not _RG_NAME.match(group) or group.endswith("."):
                    return error(
                        400,
                        "InvalidResourceGroup",
                        f"The resource group name '{group}' is invalid.",
                    )
                if not isinstance(body, dict) or not body.get("location"):
                    return error(400, "LocationRequired", "The location property is required.")
                record = {
                    "id": f"/subscriptions/{sub}/resourceGroups/{group}",
                    "name": group,
                    "type": "Microsoft.Resources/resourceGroups",
                    "location": body["location"],
                    "tags": dict(body.get("tags") or {}),
                    "properties": {"provisioningState": "Succeeded"},
                }
                self.groups[key] = record
                return Reply(200 if existing else 201, record)
            if method == "DELETE":
                if existing is None:
                    return Reply(204)
                del self.groups[key]
                for ckey in [k for k in self.caches if k[:2] == key]:
                    self._drop_cache(ckey)
                self.enterprise.drop_group(sub, group)
                return Reply(200)
            return error(405, "MethodNotAllowed", f"{method} is not supported here")

    # -- caches -------------------------------------------------------------------------------
    def check_name(self, body: Any) -> Reply:
        with self.lock:
            self._settle_all()
            name = str((body or {}).get("name", "")) if isinstance(body, dict) else ""
            if not _NAME.match(name) or name.endswith("-"):
                return error(
                    400, "InvalidParameter", f"The name '{name}' is not a valid cache name."
                )
            if name.lower() in self.reserved:
                return error(
                    409,
                    "NameNotAvailable",
                    f"The name '{name}' is already in use.",
                )
            return Reply(200)

    def _validate_sku(self, sku: Any) -> str | None:
        if not isinstance(sku, dict):
            return "The sku property is required."
        rule = _SKUS.get(str(sku.get("name", "")).lower())
        if rule is None:
            return f"Invalid SKU name '{sku.get('name')}'."
        family, capacities = rule
        if sku.get("family") != family or sku.get("capacity") not in capacities:
            wrong = f"{sku.get('family')}{sku.get('capacity')}"
            return f"Invalid family/capacity {wrong} for {sku.get('name')}."
        return None

    def put_cache(
        self, sub: str, group: str, name: str, body: Any, base_url: str, api: str
    ) -> Reply:
        with self.lock:
            missing = self.group_missing(sub, group)
            if missing:
                return missing
            cache = self._cache(sub, group, name)
            if not isinstance(body, dict):
                return error(400, "InvalidRequestContent", "The request content was invalid.")
            props = body.get("properties") or {}
            shape = _shape_problem(body, props)
            if shape:
                return shape
            if cache is not None:
                return self._update(cache, body, props)
            if not _NAME.match(name) or name.endswith("-"):
                return error(
                    400,
                    "InvalidParameter",
                    f"The name '{name}' is invalid: use 1-63 letters, digits and single hyphens.",
                )
            retired = self._retired(name)
            if retired:
                return retired
            owner = self.reserved.get(name.lower())
            if owner is not None:
                return error(409, "NameNotAvailable", f"The name '{name}' is already in use.")
            if not body.get("location"):
                return error(400, "LocationRequired", "The location property is required.")
            problem = self._validate_sku(props.get("sku"))
            if problem:
                return error(400, "InvalidParameter", problem)
            config = {str(k): v for k, v in (props.get("redisConfiguration") or {}).items()}
            if any(not isinstance(v, str) for v in config.values()):
                return error(400, "InvalidParameter", "redisConfiguration values must be strings.")
            final, delay = self.create_outcome(name)
            cache = Cache(
                subscription=sub,
                group=self.groups[(sub.lower(), group.lower())]["name"],
                name=name,
                location=str(body["location"]),
                sku=dict(props["sku"]),
                tags=dict(body.get("tags") or {}),
                zones=list(body["zones"]) if body.get("zones") else None,
                config=config,
                enable_non_ssl_port=bool(props.get("enableNonSslPort", False)),
                minimum_tls_version=props.get("minimumTlsVersion"),
                public_network_access=str(props.get("publicNetworkAccess") or "Enabled"),
                disable_access_key_authentication=bool(
                    props.get("disableAccessKeyAuthentication", False)
                ),
                state="Creating",
                busy_until=time.monotonic() + max(delay, 0.0001),
                final_state=final,
            )
            self.caches[(sub.lower(), group.lower(), name.lower())] = cache
            self.reserved[name.lower()] = cache.id.lower()
            location = (
                f"{base_url}/subscriptions/{sub}/resourceGroups/{cache.group}"
                f"/providers/Microsoft.Cache/redis/{name}?api-version={api}"
            )
            if final == "Succeeded":
                self._start_server(cache)
            return Reply(201, cache.to_json(include_keys=True), {"Location": location})

    def _busy(self, cache: Cache) -> Reply | None:
        if cache.busy:
            return error(409, "Conflict", BUSY_MESSAGE.format(id=cache.id))
        return None

    def _update(self, cache: Cache, body: dict[str, Any], props: dict[str, Any]) -> Reply:
        busy = self._busy(cache)
        if busy:
            return busy
        if cache.state == "Failed":
            return error(409, "Conflict", f"The cache '{cache.name}' is in Failed state.")
        transition: str | None = None
        if "sku" in props and props["sku"] is not None:
            problem = self._validate_sku(props["sku"])
            if problem:
                return error(400, "InvalidParameter", problem)
            if dict(props["sku"]) != cache.sku:
                cache.sku = dict(props["sku"])
                transition = "Scaling"
        if props.get("redisConfiguration") is not None:
            new = {str(k): v for k, v in props["redisConfiguration"].items()}
            if any(not isinstance(v, str) for v in new.values()):
                return error(400, "InvalidParameter", "redisConfiguration values must be strings.")
            was_aad = cache.config.get("aad-enabled") == "true"
            cache.config.update({k: v for k, v in new.items() if k not in _DEFAULT_CONFIG})
            if not was_aad and cache.config.get("aad-enabled") == "true":
                transition = transition or "ConfiguringAAD"
                if cache.started and self.data_plane.available:
                    for object_id in self._grants(cache):
                        self.data_plane.grant(cache.id, object_id)
        keys_before = self._keys_of(cache)
        for key, attr in (
            ("enableNonSslPort", "enable_non_ssl_port"),
            ("minimumTlsVersion", "minimum_tls_version"),
            ("publicNetworkAccess", "public_network_access"),
            ("disableAccessKeyAuthentication", "disable_access_key_authentication"),
        ):
            if props.get(key) is not None:
                setattr(cache, attr, props[key])
        if cache.started and self.data_plane.available and self._keys_of(cache) != keys_before:
            self.data_plane.set_keys(cache.id, self._keys_of(cache))
        if body.get("tags") is not None:
            cache.tags = dict(body["tags"])
        if transition:
            cache.state = transition
            cache.final_state = "Succeeded"
            cache.busy_until = time.monotonic() + max(self.settings.update_delay, 0.0001)
        return Reply(200, cache.to_json())

    def patch_cache(self, sub: str, group: str, name: str, body: Any) -> Reply:
        with self.lock:
            cache = self._existing(sub, group, name)
            if isinstance(cache, Reply):
                return cache
            if not isinstance(body, dict):
                return error(400, "InvalidRequestContent", "The request content was invalid.")
            props = body.get("properties") or {}
            return _shape_problem(body, props) or self._update(cache, body, props)

    def get_cache(self, sub: str, group: str, name: str) -> Reply:
        with self.lock:
            cache = self._existing(sub, group, name)
            if isinstance(cache, Reply):
                return cache
            return Reply(200, cache.to_json())

    def list_caches(self, sub: str, group: str | None) -> Reply:
        with self.lock:
            if group is not None:
                missing = self.group_missing(sub, group)
                if missing:
                    return missing
            self._settle_all()
            items = [
                c.to_json()
                for (s, g, _), c in sorted(self.caches.items())
                if s == sub.lower() and (group is None or g == group.lower())
            ]
            return Reply(200, {"value": items})

    def delete_cache(self, sub: str, group: str, name: str, base_url: str, api: str) -> Reply:
        with self.lock:
            cache = self._existing(sub, group, name, absent=Reply(204))
            if isinstance(cache, Reply):
                return cache
            if cache.state == "Deleting":
                return Reply(202, None, {"Location": self._op_location(cache, base_url, api)})
            busy = self._busy(cache)
            if busy:
                return busy
            self._stop_server(cache)
            cache.state = "Deleting"
            cache.busy_until = 0.0
            cache.delete_done_at = time.monotonic() + self.settings.delete_delay
            op = str(uuid.uuid4())
            self.operations[op] = cache
            return Reply(202, None, {"Location": self._op_location(cache, base_url, api, op)})

    def _op_location(self, cache: Cache, base_url: str, api: str, op: str | None = None) -> str:
        if op is None:
            op = next((k for k, v in self.operations.items() if v is cache), str(uuid.uuid4()))
        return (
            f"{base_url}/subscriptions/{cache.subscription}/providers/Microsoft.Cache/locations/"
            f"{cache.location}/operationresults/{op}?api-version={api}"
        )

    def operation_result(self, op: str, base_url: str, api: str) -> Reply:
        with self.lock:
            self._settle_all()
            cache = self.operations.get(op)
            if cache is None:
                return error(404, "ResourceNotFound", f"Operation '{op}' was not found.")
            key = (cache.subscription.lower(), cache.group.lower(), cache.name.lower())
            if self.caches.get(key) is cache:
                return Reply(202, None, {"Location": self._op_location(cache, base_url, api, op)})
            return Reply(200)

    def keys(self, sub: str, group: str, name: str, regenerate: Any = None) -> Reply:
        with self.lock:
            cache = self._existing(sub, group, name)
            if isinstance(cache, Reply):
                return cache
            if cache.disable_access_key_authentication:
                return error(
                    400,
                    "BadRequest",
                    "Access key authentication is disabled for this cache.",
                )
            if regenerate is not None:
                busy = self._busy(cache)
                if busy:
                    return busy
                kind = (
                    str((regenerate or {}).get("keyType", ""))
                    if isinstance(regenerate, dict)
                    else ""
                )
                if kind == "Primary":
                    cache.primary_key = new_key()
                elif kind == "Secondary":
                    cache.secondary_key = new_key()
                else:
                    return error(400, "InvalidParameter", "keyType must be Primary or Secondary.")
                if cache.started and self.data_plane.available:
                    self.data_plane.set_keys(cache.id, self._keys_of(cache))
            return Reply(
                200, {"primaryKey": cache.primary_key, "secondaryKey": cache.secondary_key}
            )

    # -- access policy assignments ------------------------------------------------------------
    def assignment(
        self, method: str, sub: str, group: str, name: str, assignment: str | None, body: Any
    ) -> Reply:
        with self.lock:
            cache = self._existing(sub, group, name)
            if isinstance(cache, Reply):
                return cache
            now = time.monotonic()
            prefix = cache.id.lower()
            if assignment is None:
                items = [a.to_json(now) for a in _children(self.assignments, prefix)]
                return Reply(200, {"value": items})
            key = (prefix, assignment.lower())
            current = self.assignments.get(key)
            if method == "GET":
                if current is None:
                    return self._not_found(ASSIGNMENT_TYPE, assignment, group)
                return Reply(200, current.to_json(now))
            busy = self._busy(cache) or self._policy_busy(prefix, now)
            if busy:
                return busy
            if method == "DELETE":
                if current is None:
                    return Reply(204)
                del self.assignments[key]
                self._revoke_unless_granted(cache, current.object_id)
                return Reply(200)
            props = (body or {}).get("properties") if isinstance(body, dict) else None
            if (
                not isinstance(props, dict)
                or not props.get("objectId")
                or not props.get("accessPolicyName")
            ):
                return error(400, "InvalidParameter", "accessPolicyName and objectId are required.")
            if props["accessPolicyName"] not in BUILTIN_POLICIES:
                return error(
                    400,
                    "InvalidParameter",
                    f"Access policy '{props['accessPolicyName']}' does not exist.",
                )
            record = Assignment(
                cache_id=cache.id,
                name=assignment,
                policy=str(props["accessPolicyName"]),
                object_id=str(props["objectId"]),
                alias=str(props.get("objectIdAlias") or ""),
                ready_at=now + self.settings.policy_delay,
            )
            self.assignments[key] = record
            if current is not None and current.object_id != record.object_id:
                self._revoke_unless_granted(cache, current.object_id)
            if record.object_id in self._grants(cache) and cache.started:
                self.data_plane.grant(cache.id, record.object_id)
            return Reply(200 if current else 201, record.to_json(now))

    def _revoke_unless_granted(self, cache: Cache, object_id: str) -> None:
        """Revoke ``object_id`` on the cache's server unless another assignment grants it."""
        if not (cache.started and self.data_plane.available):
            return
        if cache.config.get("aad-enabled") == "true" and object_id not in self._grants(cache):
            self.data_plane.revoke(cache.id, object_id)

    def _policy_busy(self, prefix: str, now: float) -> Reply | None:
        for (c, _), a in self.assignments.items():
            if c == prefix and now < a.ready_at:
                return error(409, "Conflict", BUSY_MESSAGE.format(id=a.cache_id))
        return None

    # -- firewall rules -----------------------------------------------------------------------
    def firewall_rule(
        self, method: str, sub: str, group: str, name: str, rule: str | None, body: Any
    ) -> Reply:
        with self.lock:
            cache = self._existing(sub, group, name)
            if isinstance(cache, Reply):
                return cache
            prefix = cache.id.lower()
            if rule is None:
                return Reply(200, {"value": _children(self.firewall, prefix)})
            key = (prefix, rule.lower())
            current = self.firewall.get(key)
            if method == "GET":
                return (
                    Reply(200, current) if current else self._not_found(FIREWALL_TYPE, rule, group)
                )
            if method == "DELETE":
                self.firewall.pop(key, None)
                return Reply(200 if current else 204)
            props = (body or {}).get("properties") if isinstance(body, dict) else None
            if not isinstance(props, dict) or not props.get("startIP") or not props.get("endIP"):
                return error(400, "InvalidParameter", "startIP and endIP are required.")
            record = {
                "id": _child_id(cache.id, "firewallRules", rule),
                "name": f"{cache.name}/{rule}",
                "type": FIREWALL_TYPE,
                "properties": {"startIP": props["startIP"], "endIP": props["endIP"]},
            }
            self.firewall[key] = record
            return Reply(200 if current else 201, record)
