"""What the app asks for (``AzureRedisRequest``) and the desired state of one cache
(``CacheSpec``), with its checksum.

``CacheSpec`` is the typed, mutable object handed to ``configure_infrastructure`` callbacks;
it is validated after the callbacks ran so a bad SKU is reported before any Azure call.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from typing import Any

import attrs

from .errors import ConfigurationError
from .naming import cache_resource_id

TAG_RESOURCE_NAME = "aspire-resource-name"
TAG_APP = "apphost-app"
DATA_CONTRIBUTOR = "Data Contributor"

_SKUS = {"Basic": ("C", range(0, 7)), "Standard": ("C", range(0, 7)), "Premium": ("P", range(1, 6))}
_TLS = ("1.0", "1.1", "1.2")
_NETWORK = ("Enabled", "Disabled")
#: Availability zones as Azure names them.
ZONES = ("1", "2", "3")


def did_you_mean(value: object, allowed: Iterable[str]) -> str:
    """`` (did you mean 'X'?)`` when ``value`` is ``X`` in another case or spelling of
    separators (``balanced_b0``, ``volatile-lru``), else ''."""
    if not isinstance(value, str):
        return ""

    def key(text: str) -> str:
        return "".join(c for c in text.lower() if c.isalnum())

    match = next((a for a in allowed if key(a) == key(value)), None)
    return f" (did you mean {match!r}?)" if match is not None and match != value else ""


def not_a(field: str, kind: str, example: str, value: object) -> str:
    """The message for a field of the wrong type, naming the type and an example."""
    return f"{field} must be {kind} such as {example}, not {value!r}"


def check_tags(tags: object, problems: list[str]) -> None:
    """Report ``tags`` that are not a dict of strings to strings (Azure tags are strings)."""
    if not isinstance(tags, dict):
        problems.append(not_a("tags", "a dict of strings", "{'team': 'shop'}", tags))
        return
    for key, value in tags.items():
        if not isinstance(key, str) or not isinstance(value, str):
            problems.append(
                f"tag {key!r} must map a string to a string, such as {{'team': 'shop'}} "
                f"(got {value!r})"
            )


def check_zones(zones: object, problems: list[str]) -> list[str]:
    """The zones as Azure strings ("1", "2", "3"; the ints 1-3 are accepted), reporting
    anything else, including a bare string such as "123", into ``problems``."""
    if not isinstance(zones, (list, tuple)):
        problems.append(not_a("zones", "a list of zone numbers", "['1', '2', '3']", zones))
        return []
    out: list[str] = []
    for index, zone in enumerate(zones):
        text = str(zone) if isinstance(zone, (str, int)) and not isinstance(zone, bool) else None
        if text not in ZONES:
            problems.append(f"zones[{index}] {zone!r} must be '1', '2' or '3'")
        elif text in out:
            problems.append(f"zones lists {text!r} more than once")
        else:
            out.append(text)
    return out


@attrs.define
class CacheSpec:
    """The mutable desired configuration of one cache (what Bicep would hold).

    Change it in ``configure_infrastructure(callback)``; values in ``redis_configuration`` are
    strings, as Azure requires (booleans and numbers are converted).
    """

    sku_name: str = "Basic"
    family: str = "C"
    capacity: int = 1
    tags: dict[str, str] = attrs.field(factory=dict)
    redis_configuration: dict[str, str] = attrs.field(factory=dict, repr=False)
    minimum_tls_version: str = "1.2"
    public_network_access: str = "Enabled"
    enable_non_ssl_port: bool = False
    zones: list[str] = attrs.field(factory=list)

    def validate(self, resource: str) -> None:
        """Check the values Azure would reject; raises ConfigurationError naming every bad
        field at once."""
        problems: list[str] = []
        sku = _SKUS.get(self.sku_name) if isinstance(self.sku_name, str) else None
        if sku is None:
            hint = did_you_mean(self.sku_name, _SKUS)
            problems.append(f"sku_name {self.sku_name!r} must be Basic, Standard or Premium{hint}")
        else:
            family, capacities = sku
            if self.family != family:
                problems.append(
                    f"family must be {family!r} for {self.sku_name}, not {self.family!r}"
                )
            if (
                not isinstance(self.capacity, int)
                or isinstance(self.capacity, bool)
                or self.capacity not in capacities
            ):
                problems.append(
                    f"capacity {self.capacity!r} must be {capacities.start}-{capacities.stop - 1} "
                    f"for {self.sku_name}"
                )
        if self.minimum_tls_version not in _TLS:
            problems.append(
                f"minimum_tls_version {self.minimum_tls_version!r} must be one of {_TLS}"
            )
        if self.public_network_access not in _NETWORK:
            hint = did_you_mean(self.public_network_access, _NETWORK)
            problems.append(
                f"public_network_access {self.public_network_access!r} must be Enabled or "
                f"Disabled{hint}"
            )
        if not isinstance(self.enable_non_ssl_port, bool):
            problems.append(
                not_a("enable_non_ssl_port", "a bool", "False", self.enable_non_ssl_port)
            )
        if not isinstance(self.redis_configuration, dict):
            problems.append(
                not_a(
                    "redis_configuration",
                    "a dict",
                    "{'maxmemory-policy': 'allkeys-lru'}",
                    self.redis_configuration,
                )
            )
        else:
            for key, value in list(self.redis_configuration.items()):
                if isinstance(value, bool):
                    self.redis_configuration[key] = "true" if value else "false"
                elif isinstance(value, (int, float)):
                    self.redis_configuration[key] = str(value)
                elif not isinstance(value, str):
                    problems.append(f"redis_configuration[{key!r}] must be a string")
        check_tags(self.tags, problems)
        zones = check_zones(self.zones, problems)
        if problems:
            raise ConfigurationError(
                f"{resource}: invalid cache configuration: " + "; ".join(problems)
            )
        self.zones = zones

    def to_dict(self) -> dict[str, Any]:
        """A plain, JSON-serialisable copy (for checksums and plans)."""
        return attrs.asdict(self)


@attrs.frozen
class AzureRedisRequest:
    """One Azure Cache for Redis the app needs, independent of the app-model classes.

    ``existing_name`` set: reference an existing cache (never created, never deleted).
    """

    resource_name: str
    use_access_keys: bool = False
    existing_name: str | None = None
    existing_resource_group: str | None = None
    infrastructure_callbacks: tuple[Callable[[CacheSpec], None], ...] = ()

    @property
    def is_existing(self) -> bool:
        """True for ``as_existing`` caches."""
        return self.existing_name is not None

    def build_spec(self, app_name: str) -> CacheSpec:
        """Defaults (Basic C1, TLS 1.2, tags), then the callbacks, then the auth mode."""
        spec = CacheSpec(tags={TAG_RESOURCE_NAME: self.resource_name, TAG_APP: app_name})
        for callback in self.infrastructure_callbacks:
            callback(spec)
        # The auth mode is the model's choice, not the callback's: keep them consistent.
        # Values of the wrong type are left for validate() to report with the fix.
        if isinstance(spec.redis_configuration, dict):
            if self.use_access_keys:
                spec.redis_configuration.pop("aad-enabled", None)
            else:
                spec.redis_configuration["aad-enabled"] = "true"
        if isinstance(spec.tags, dict):
            spec.tags[TAG_RESOURCE_NAME] = self.resource_name
            spec.tags[TAG_APP] = app_name
        spec.validate(self.resource_name)
        return spec


@attrs.frozen
class DesiredCache:
    """Everything that decides what the cache in Azure must look like."""

    resource_name: str
    azure_name: str
    subscription_id: str
    resource_group: str
    location: str
    spec: CacheSpec
    use_access_keys: bool
    existing: bool
    principal_object_id: str | None

    @property
    def resource_id(self) -> str:
        """The cache's ARM id."""
        return cache_resource_id(self.subscription_id, self.resource_group, self.azure_name)

    def checksum(self) -> str:
        """SHA-256 over the canonical JSON of the desired state."""
        data = {
            "version": 1,
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
class CacheRef:
    """Just enough to address a cache (used for caches found by listing, e.g. in destroy)."""

    resource_name: str
    azure_name: str
    subscription_id: str
    resource_group: str

    @property
    def resource_id(self) -> str:
        """The cache's ARM id."""
        return cache_resource_id(self.subscription_id, self.resource_group, self.azure_name)
