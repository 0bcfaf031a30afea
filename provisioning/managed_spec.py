"""What the app asks for an Azure Managed Redis (``ManagedRedisRequest``) and the desired
state of its cluster and database (``ManagedRedisSpec``, ``DesiredManagedRedis``).

Managed Redis (``Microsoft.Cache/redisEnterprise``) is a cluster resource with one child
database named ``default`` on TLS port 10000. ``ManagedRedisSpec`` is the mutable object
handed to ``configure_infrastructure`` callbacks; it is validated after them, so an unknown
SKU or policy is reported (every problem at once, each naming its field) before any call.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

import attrs

from .errors import ConfigurationError
from .naming import MANAGED_DATABASE, cluster_resource_id, managed_database_id
from .spec import TAG_APP, TAG_RESOURCE_NAME, check_tags, check_zones, did_you_mean, not_a

#: The database's TLS port (fixed at create time; Aspire and Azure's default).
MANAGED_PORT = 10000
#: The built-in access policy granting full access (``+@all ~*``), as Aspire assigns it.
DEFAULT_ACCESS_POLICY = "default"

#: SKUs by family (azure-mgmt-redisenterprise 3.1.0's ``SkuName``). Enterprise and
#: EnterpriseFlash are the retiring Azure Cache for Redis Enterprise tiers.
SKU_FAMILIES: dict[str, tuple[int, ...]] = {
    "Balanced_B": (0, 1, 3, 5, 10, 20, 50, 100, 150, 250, 350, 500, 700, 1000),
    "MemoryOptimized_M": (10, 20, 50, 100, 150, 250, 350, 500, 700, 1000, 1500, 2000),
    "ComputeOptimized_X": (3, 5, 10, 20, 50, 100, 150, 250, 350, 500, 700),
    "FlashOptimized_A": (250, 500, 700, 1000, 1500, 2000, 4500),
    "Enterprise_E": (1, 5, 10, 20, 50, 100, 200, 400),
    "EnterpriseFlash_F": (300, 700, 1500),
}
SKUS = frozenset(f"{family}{size}" for family, sizes in SKU_FAMILIES.items() for size in sizes)
CLUSTERING_POLICIES = ("OSSCluster", "EnterpriseCluster", "NoCluster")
EVICTION_POLICIES = (
    "AllKeysLFU",
    "AllKeysLRU",
    "AllKeysRandom",
    "VolatileLRU",
    "VolatileLFU",
    "VolatileTTL",
    "VolatileRandom",
    "NoEviction",
)
_ENABLED = ("Enabled", "Disabled")
_TLS = ("1.2",)


def sku_families_text() -> str:
    """The SKU families for error messages: ``Balanced_B0..B1000, ...``."""
    parts = []
    for family, sizes in SKU_FAMILIES.items():
        letter = family[-1]
        parts.append(f"{family}{sizes[0]}..{letter}{sizes[-1]}")
    return ", ".join(parts)


def _sku_problem(sku_name: object) -> str | None:
    if isinstance(sku_name, str) and sku_name in SKUS:
        return None
    hint = did_you_mean(sku_name, sorted(SKUS))
    if isinstance(sku_name, str) and not hint:
        family = next((f for f in SKU_FAMILIES if sku_name.startswith(f)), None)
        if family is not None:
            sizes = ", ".join(f"{family[-1]}{s}" for s in SKU_FAMILIES[family])
            hint = f" ({family[:-2]} sizes are {sizes})"
    return (
        f"sku_name {sku_name!r} is not an Azure Managed Redis SKU{hint}; use one of the "
        f"families {sku_families_text()}"
    )


def _check_modules(value: object, problems: list[str]) -> list[dict[str, str]]:
    """The modules as ``{"name", "args"}`` dicts (a bare name is accepted, ``args: None``
    means no arguments), reporting a non-list, bad items and duplicates into ``problems``."""
    if not isinstance(value, (list, tuple)):
        problems.append(not_a("modules", "a list", "['RedisJSON']", value))
        return []
    modules: list[dict[str, str]] = []
    for index, module in enumerate(value):
        if isinstance(module, str):
            module = {"name": module}
        name = module.get("name") if isinstance(module, dict) else None
        args = module.get("args") if isinstance(module, dict) else None
        if not isinstance(name, str) or not name.strip():
            problems.append(
                f"modules[{index}] must be a module name or a dict such as "
                f"{{'name': 'RedisJSON', 'args': ''}}, not {module!r}"
            )
            continue
        if args is not None and not isinstance(args, str):
            problems.append(
                f"modules[{index}] ({name}) args must be a string such as 'ERROR_RATE 0.01', "
                f"not {args!r}"
            )
            continue
        modules.append({"name": name.strip(), "args": args or ""})
    names = [m["name"].lower() for m in modules]
    for name in sorted({n for n in names if names.count(n) > 1}):
        problems.append(f"modules lists {name} more than once")
    return modules


@attrs.define
class ManagedRedisSpec:
    """The mutable desired configuration of one Managed Redis cluster and its database.

    Change it in ``configure_infrastructure(callback)``. ``clustering_policy`` and ``modules``
    are fixed once the database exists (Azure cannot change them); ``modules`` holds
    ``{"name": "RedisJSON", "args": ""}`` items (a bare module name is accepted too).
    """

    sku_name: str = "Balanced_B0"
    minimum_tls_version: str = "1.2"
    public_network_access: str = "Enabled"
    high_availability: str = "Enabled"
    clustering_policy: str = "OSSCluster"
    eviction_policy: str = "VolatileLRU"
    modules: list[Any] = attrs.field(factory=list)
    tags: dict[str, str] = attrs.field(factory=dict)
    zones: list[str] = attrs.field(factory=list)

    def validate(self, resource: str) -> None:
        """Check what Azure would reject; raises ConfigurationError listing every problem."""
        problems: list[str] = []
        sku = _sku_problem(self.sku_name)
        if sku:
            problems.append(sku)

        def choice(field: str, value: object, allowed: tuple[str, ...]) -> None:
            if value not in allowed:
                hint = did_you_mean(value, allowed)
                problems.append(f"{field} {value!r} must be one of {', '.join(allowed)}{hint}")

        choice("minimum_tls_version", self.minimum_tls_version, _TLS)
        choice("public_network_access", self.public_network_access, _ENABLED)
        choice("high_availability", self.high_availability, _ENABLED)
        choice("clustering_policy", self.clustering_policy, CLUSTERING_POLICIES)
        choice("eviction_policy", self.eviction_policy, EVICTION_POLICIES)
        modules = _check_modules(self.modules, problems)
        check_tags(self.tags, problems)
        zones = check_zones(self.zones, problems)
        if problems:
            raise ConfigurationError(
                f"{resource}: invalid Azure Managed Redis configuration: " + "; ".join(problems)
            )
        self.modules = modules
        self.zones = zones

    def to_dict(self) -> dict[str, Any]:
        """A plain, JSON-serialisable copy (for checksums and plans)."""
        return attrs.asdict(self)


@attrs.frozen
class ManagedRedisRequest:
    """One Azure Managed Redis the app needs, independent of the app-model classes.

    ``existing_name`` set: reference an existing cluster (never created, never deleted);
    its database ``default`` must exist.
    """

    resource_name: str
    use_access_keys: bool = False
    existing_name: str | None = None
    existing_resource_group: str | None = None
    infrastructure_callbacks: tuple[Callable[[ManagedRedisSpec], None], ...] = ()

    @property
    def is_existing(self) -> bool:
        """True for ``as_existing`` clusters."""
        return self.existing_name is not None

    def build_spec(self, app_name: str) -> ManagedRedisSpec:
        """Aspire's defaults (Balanced_B0, TLS 1.2, public access, OSS cluster), our tags,
        then the callbacks, then validation."""
        spec = ManagedRedisSpec(tags={TAG_RESOURCE_NAME: self.resource_name, TAG_APP: app_name})
        for callback in self.infrastructure_callbacks:
            callback(spec)
        if isinstance(spec.tags, dict):  # anything else: validate() says what to write
            spec.tags[TAG_RESOURCE_NAME] = self.resource_name
            spec.tags[TAG_APP] = app_name
        spec.validate(self.resource_name)
        return spec


@attrs.frozen
class DesiredManagedRedis:
    """Everything that decides what the Managed Redis cluster and database must look like."""

    resource_name: str
    azure_name: str
    subscription_id: str
    resource_group: str
    location: str
    spec: ManagedRedisSpec
    use_access_keys: bool
    existing: bool
    principal_object_id: str | None

    kind = "managed-redis"

    @property
    def resource_id(self) -> str:
        """The cluster's ARM id."""
        return cluster_resource_id(self.subscription_id, self.resource_group, self.azure_name)

    @property
    def database_id(self) -> str:
        """The ARM id of the cluster's database ``default``."""
        return managed_database_id(self.resource_id)

    @property
    def database_name(self) -> str:
        """Always ``default``: Managed Redis has one database."""
        return MANAGED_DATABASE

    def checksum(self) -> str:
        """SHA-256 over the canonical JSON of the desired state."""
        data = {
            "version": 1,
            "kind": self.kind,
            "azure_name": self.azure_name.lower(),
            "subscription_id": self.subscription_id.lower(),
            "resource_group": self.resource_group.lower(),
            "location": self.location.lower().replace(" ", ""),
            "spec": self.spec.to_dict(),
            "use_access_keys": self.use_access_keys,
            "existing": self.existing,
            "principal": self.principal_object_id,
        }
        blob = json.dumps(data, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()


@attrs.frozen
class ClusterRef:
    """Just enough to address a Managed Redis cluster (e.g. one found by listing)."""

    resource_name: str
    azure_name: str
    subscription_id: str
    resource_group: str

    @property
    def resource_id(self) -> str:
        """The cluster's ARM id."""
        return cluster_resource_id(self.subscription_id, self.resource_group, self.azure_name)
