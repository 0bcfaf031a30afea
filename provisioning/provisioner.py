"""Provision, plan and destroy Azure Cache for Redis instances through azure-mgmt-redis,
and (through :mod:`provisioning.managed_provisioner`) Azure Managed Redis in the same run.

The lifecycle of one cache:

1. A previous run's record with a matching checksum -> one GET; if the cache is still there
   and ``Succeeded``, its stored outputs are returned without any write.
2. Otherwise: ensure the resource group, GET the cache and then create (PUT), resume waiting
   on a create already under way, or update (PATCH) what differs.
3. Wait by polling GET until ``Succeeded`` or ``Failed`` within ``provisioning_timeout`` --
   never trusting the SDK poller, which returns on the first 200 while still ``Creating``.
4. Entra ID: add the "Data Contributor" access policy assignment for the signed-in principal
   under a deterministic name. Access keys: read them with listKeys.
5. Record outputs and checksum as ``succeeded``.

Writes to one cache are serialized by a per-cache lock; every ARM call goes through our one
retry policy. Independent caches are provisioned on separate threads. Requests of both kinds
(:class:`AzureRedisRequest`, :class:`ManagedRedisRequest`) are accepted wherever requests are.
"""

from __future__ import annotations

import enum
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol, TypeVar

import attrs

from . import arm_errors
from .arm import ArmClients, create_clients
from .credentials import Principal, create_credential, current_principal
from .errors import (
    CacheFailedError,
    ConfigurationError,
    ProvisioningError,
    ProvisioningTimeoutError,
)
from .managed_provisioner import ManagedRedisProvisioner, is_cluster
from .managed_spec import DesiredManagedRedis, ManagedRedisRequest
from .naming import (
    access_policy_assignment_name,
    cache_name_for,
    target_collisions,
    validate_cache_name,
    validate_resource_group_name,
)
from .outputs import CacheOutputs
from .retry import RetryPolicy
from .settings import ProvisioningSettings
from .spec import (
    DATA_CONTRIBUTOR,
    TAG_APP,
    TAG_RESOURCE_NAME,
    AzureRedisRequest,
    CacheRef,
    CacheSpec,
    DesiredCache,
)
from .state import SUCCEEDED, StateRecord, StateStore

T = TypeVar("T")
StatusCallback = Callable[[str, str], None]
#: A request of either kind, and the desired state it becomes.
AzureRequest = AzureRedisRequest | ManagedRedisRequest
Desired = DesiredCache | DesiredManagedRedis

#: States in which a cache is busy with a management operation and must be waited on.
TRANSITIONAL = frozenset(
    s.lower()
    for s in (
        "Creating",
        "Updating",
        "Scaling",
        "ConfiguringAAD",
        "Provisioning",
        "Linking",
        "Unlinking",
        "RecoveringScaleFailure",
        "EnablingAAD",
        "DisablingAAD",
    )
)


class ProvisioningCancelled(ProvisioningError):
    """The run was interrupted (Ctrl-C); state stays ``pending`` so the next run resumes."""


class _Ref(Protocol):
    """Anything that addresses one cache: DesiredCache or CacheRef."""

    @property
    def resource_name(self) -> str: ...
    @property
    def azure_name(self) -> str: ...
    @property
    def resource_group(self) -> str: ...
    @property
    def resource_id(self) -> str: ...


def format_elapsed(seconds: float) -> str:
    """``3m12s``-style elapsed time."""
    total = int(seconds)
    return f"{total // 60}m{total % 60:02d}s"


class PlanAction(str, enum.Enum):
    """What ``provision`` would do to a cache or its resource group.

    The values are what ``apphost plan`` prints and puts in its JSON.
    """

    CREATE = "create"
    UPDATE = "update"
    NO_CHANGE = "no-change"
    WAIT = "wait"  # a management operation is under way; provision waits for it
    USE_EXISTING = "use-existing"  # an ``as_existing`` cache that exists
    MISSING = "missing"  # an ``as_existing`` cache or a resource group we may not create
    FAILED = "failed"  # Azure reports the cache as Failed

    def __str__(self) -> str:
        return self.value


@attrs.frozen
class PlanItem:
    """What ``provision`` would do to one cache (and to its resource group, when needed)."""

    resource_name: str
    azure_name: str
    resource_group: str
    action: PlanAction
    changes: tuple[str, ...] = ()
    #: CREATE when the group would be created, MISSING when it is absent and may not be.
    resource_group_action: PlanAction | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        data: dict[str, Any] = {
            "resource": self.resource_name,
            "name": self.azure_name,
            "resourceGroup": self.resource_group,
            "action": self.action.value,
            "changes": list(self.changes),
        }
        if self.resource_group_action:
            data["resourceGroupAction"] = self.resource_group_action.value
        return data


def _state_of(cache: Any) -> str:
    return str(getattr(cache, "provisioning_state", "") or "")


def _tags_of(cache: Any) -> dict[str, str]:
    """A cache's tags with lower-cased keys (Azure treats tag names case-insensitively)."""
    return {str(k).lower(): v for k, v in (cache.tags or {}).items()}


def _config_of(cache: Any) -> dict[str, str]:
    config = getattr(cache, "redis_configuration", None)
    if config is None:
        return {}
    data = config.serialize(keep_readonly=True)
    return {str(k): str(v) for k, v in data.items() if v is not None}


def _secret_setting(key: str) -> bool:
    """Whether a ``redisConfiguration`` setting holds a secret (storage connection strings,
    passwords, keys): its values are never shown in plans or progress."""
    k = key.lower()
    return "connection-string" in k or "password" in k or k.endswith("key") or "secret" in k


def differences(desired: DesiredCache, cache: Any) -> list[str]:
    """Human-readable differences between the desired state and the cache in Azure."""
    spec = desired.spec
    changes: list[str] = []
    sku = getattr(cache, "sku", None)
    actual_sku = (
        getattr(sku, "name", None),
        getattr(sku, "family", None),
        getattr(sku, "capacity", None),
    )
    wanted_sku = (spec.sku_name, spec.family, spec.capacity)
    if tuple(str(x) for x in actual_sku) != tuple(str(x) for x in wanted_sku):
        changes.append("sku: {} {}{} -> {} {}{}".format(*actual_sku, *wanted_sku))
    pairs = [
        ("minimumTlsVersion", cache.minimum_tls_version, spec.minimum_tls_version),
        ("publicNetworkAccess", cache.public_network_access, spec.public_network_access),
        ("enableNonSslPort", bool(cache.enable_non_ssl_port), spec.enable_non_ssl_port),
        (
            "disableAccessKeyAuthentication",
            bool(cache.disable_access_key_authentication),
            not desired.use_access_keys,
        ),
    ]
    for label, actual, wanted in pairs:
        if actual is not None and actual != wanted:
            changes.append(f"{label}: {actual} -> {wanted}")
    actual_config = {k.lower(): v for k, v in _config_of(cache).items()}
    for key, value in spec.redis_configuration.items():
        actual = actual_config.get(key.lower())
        if _secret_setting(key):
            # Write-only in ARM (not returned by GET): a change of the desired value shows in
            # the desired-state checksum instead. Never print either value.
            if actual is not None and actual != value:
                changes.append(f"redisConfiguration.{key}: (secret value changed)")
        elif actual != value:
            changes.append(f"redisConfiguration.{key}: {actual} -> {value}")
    tags = cache.tags or {}
    for key, value in spec.tags.items():
        if tags.get(key) != value:
            changes.append(f"tag {key}: {tags.get(key)} -> {value}")
    return changes


class Provisioner:
    """Plans, provisions and destroys the Azure caches of one app.

    ``credential`` and ``clients`` are built from ``settings`` unless given. Thread-safe for
    concurrent ``provision_one`` calls on different caches.
    """

    def __init__(
        self,
        settings: ProvisioningSettings,
        state_dir: Path,
        app_name: str,
        *,
        on_status: StatusCallback | None = None,
        credential: Any = None,
        clients: ArmClients | None = None,
    ) -> None:
        self.settings = settings
        self.app_name = app_name
        self.store = StateStore(Path(state_dir))
        self._on_status = on_status
        self.credential = credential if credential is not None else create_credential(settings)
        self.clients = clients if clients is not None else create_clients(settings, self.credential)
        self._cancel = threading.Event()
        self.retry = RetryPolicy(
            max_attempts=settings.max_attempts,
            base_delay=settings.retry_base_delay,
            max_delay=settings.retry_max_delay,
            sleep=self._sleep,
        )
        self._guard = threading.Lock()
        self._cache_locks: dict[str, threading.Lock] = {}
        self._principal: Principal | None = None
        self._group_ready = False
        self._group_lock = threading.Lock()
        self.managed = ManagedRedisProvisioner(self)

    # -- plumbing -----------------------------------------------------------------------------
    def close(self) -> None:
        """Release HTTP sessions and the credential."""
        self.clients.close()
        closer = getattr(self.credential, "close", None)
        if callable(closer):
            try:
                closer()
            except Exception:
                pass

    def cancel(self) -> None:
        """Stop waiting: running provisioning threads raise ProvisioningCancelled soon."""
        self._cancel.set()

    def _sleep(self, seconds: float) -> None:
        if self._cancel.wait(max(0.0, seconds)):
            raise ProvisioningCancelled("provisioning was interrupted; run again to resume")

    def _status(self, resource: str, text: str) -> None:
        if self._on_status is not None:
            self._on_status(resource, text)

    def _call(self, resource: str, doing: str, operation: Callable[[], T]) -> T:
        """Run one ARM call under our retry policy; failures become ProvisioningError."""

        def on_retry(attempt: int, exc: BaseException, delay: float) -> None:
            status = arm_errors.status_of(exc)
            what = f"HTTP {status}" if status else type(exc).__name__
            self._status(resource, f"Retrying {doing} after {what} in {delay:.1f}s")

        if self._cancel.is_set():
            raise ProvisioningCancelled("provisioning was interrupted; run again to resume")
        try:
            return self.retry.call(operation, on_retry=on_retry)
        except ProvisioningError:
            raise
        except Exception as exc:
            raise arm_errors.translate(exc, doing).for_resource(resource) from None

    def _lock_for(self, desired: _Ref) -> threading.Lock:
        with self._guard:
            return self._cache_locks.setdefault(desired.resource_id.lower(), threading.Lock())

    def principal(self) -> Principal:
        """The signed-in principal (object id from the token), fetched once."""
        with self._guard:
            if self._principal is None:
                self._principal = current_principal(self.credential, self.settings)
            return self._principal

    # -- desired state ------------------------------------------------------------------------
    def _target(self, request: AzureRedisRequest) -> tuple[str, str]:
        """The validated ``(resource group, Azure name)`` of a request (no call is made)."""
        settings = self.settings
        if request.existing_name is not None:
            validate_cache_name(request.existing_name)
            group = request.existing_resource_group or settings.resource_group
            validate_resource_group_name(group)
            return group, request.existing_name
        group = settings.resource_group
        return group, cache_name_for(request.resource_name, settings.subscription_id, group)

    def _assemble(
        self, request: AzureRedisRequest, target: tuple[str, str], spec: CacheSpec
    ) -> DesiredCache:
        group, azure_name = target
        needs_principal = not request.use_access_keys and not request.is_existing
        return DesiredCache(
            resource_name=request.resource_name,
            azure_name=azure_name,
            subscription_id=self.settings.subscription_id,
            resource_group=group,
            location=self.settings.location,
            spec=spec,
            use_access_keys=request.use_access_keys,
            existing=request.is_existing,
            principal_object_id=self.principal().object_id if needs_principal else None,
        )

    def _all_desired(self, requests: Iterable[AzureRequest]) -> list[Desired]:
        requests = list(requests)
        seen: set[str] = set()
        for request in requests:
            if not isinstance(request, (AzureRedisRequest, ManagedRedisRequest)):
                raise TypeError(
                    f"{type(request).__name__} is not an AzureRedisRequest or ManagedRedisRequest"
                )
            key = request.resource_name.lower()
            if key in seen:
                raise ConfigurationError(f"two Azure caches are named {request.resource_name!r}")
            seen.add(key)
        # Validate every name and build every spec (running the configure_infrastructure
        # callbacks once) first, so a bad one fails before any token or call.
        classic = [
            (r, self._target(r), r.build_spec(self.app_name))
            for r in requests
            if isinstance(r, AzureRedisRequest)
        ]
        managed = [
            (r, self.managed.target(r), r.build_spec(self.app_name))
            for r in requests
            if isinstance(r, ManagedRedisRequest)
        ]
        # Names collide only within one resource type (a classic cache and a Managed Redis
        # may share a name).
        collisions = [
            *target_collisions(
                (r.resource_name, group, name, r.is_existing) for r, (group, name), _s in classic
            ),
            *target_collisions(
                (r.resource_name, group, name, r.is_existing) for r, (group, name), _s in managed
            ),
        ]
        if collisions:
            raise ConfigurationError("; ".join(collisions))
        by_name: dict[str, Desired] = {}
        for r, target, spec in classic:
            by_name[r.resource_name] = self._assemble(r, target, spec)
        for m, target, mspec in managed:
            by_name[m.resource_name] = self.managed.assemble(m, target, mspec)
        return [by_name[r.resource_name] for r in requests]

    # -- ARM reads ----------------------------------------------------------------------------
    def _raw_get(self, desired: _Ref) -> Any | None:
        try:
            return self.clients.redis.redis.get(desired.resource_group, desired.azure_name)
        except Exception as exc:
            if arm_errors.is_not_found(exc):
                return None
            raise

    def _get_cache(self, desired: _Ref) -> Any | None:
        """GET the cache (None when it or its resource group does not exist)."""
        return self._call(
            desired.resource_name,
            f"reading cache {desired.azure_name}",
            lambda: self._raw_get(desired),
        )

    def _group_exists(self, resource: str) -> bool:
        group = self.settings.resource_group
        return bool(
            self._call(
                resource,
                f"checking resource group {group}",
                lambda: self.clients.resources.resource_groups.check_existence(group),
            )
        )

    # -- resource group -----------------------------------------------------------------------
    def _ensure_resource_group(self, resource: str, group: str) -> None:
        if group.lower() != self.settings.resource_group.lower():
            return  # an existing cache's own group: never created by us
        with self._group_lock:
            if self._group_ready:
                return
            if not self._group_exists(resource):
                if not self.settings.allow_resource_group_creation:
                    raise ConfigurationError(
                        f"resource group {group} does not exist in subscription "
                        f"{self.settings.subscription_id}; create it, or set "
                        "Azure:AllowResourceGroupCreation=true to let the app host create it"
                    )
                self._status(resource, f"Creating resource group {group}")
                body = {"location": self.settings.location, "tags": {TAG_APP: self.app_name}}
                self._call(
                    resource,
                    f"creating resource group {group}",
                    lambda: self.clients.resources.resource_groups.create_or_update(group, body),
                )
            self._group_ready = True

    # -- writes -------------------------------------------------------------------------------
    def _create(self, desired: DesiredCache) -> None:
        from azure.mgmt.redis import models

        spec = desired.spec
        params = models.RedisCreateParameters(
            location=desired.location,
            sku=models.Sku(name=spec.sku_name, family=spec.family, capacity=spec.capacity),
            redis_configuration=models.RedisCommonPropertiesRedisConfiguration.deserialize(
                dict(spec.redis_configuration)
            ),
            enable_non_ssl_port=spec.enable_non_ssl_port,
            minimum_tls_version=spec.minimum_tls_version,
            public_network_access=spec.public_network_access,
            disable_access_key_authentication=not desired.use_access_keys,
            tags=dict(spec.tags),
            zones=list(spec.zones) or None,
        )
        attempts = 0

        def put() -> None:
            nonlocal attempts
            attempts += 1
            # A retried PUT whose first attempt reached Azure must not create twice.
            if attempts > 1 and self._raw_get(desired) is not None:
                return
            self.clients.redis.redis.begin_create(
                desired.resource_group, desired.azure_name, params, polling=False
            )

        self._call(desired.resource_name, f"creating cache {desired.azure_name}", put)

    def _check_name(self, desired: DesiredCache) -> None:
        from azure.mgmt.redis import models

        params = models.CheckNameAvailabilityParameters(
            name=desired.azure_name, type="Microsoft.Cache/Redis"
        )
        self._call(
            desired.resource_name,
            f"checking that the name {desired.azure_name} is available",
            lambda: self.clients.redis.redis.check_name_availability(params),
        )

    def _update(self, desired: DesiredCache, cache: Any) -> None:
        from azure.mgmt.redis import models

        spec = desired.spec
        config = _config_of(cache)
        config.update(spec.redis_configuration)
        writable = models.RedisCommonPropertiesRedisConfiguration.deserialize(config)
        params = models.RedisUpdateParameters(
            sku=models.Sku(name=spec.sku_name, family=spec.family, capacity=spec.capacity),
            redis_configuration=writable,
            enable_non_ssl_port=spec.enable_non_ssl_port,
            minimum_tls_version=spec.minimum_tls_version,
            public_network_access=spec.public_network_access,
            disable_access_key_authentication=not desired.use_access_keys,
            tags={**(cache.tags or {}), **spec.tags},
        )
        self._call(
            desired.resource_name,
            f"updating cache {desired.azure_name}",
            lambda: self.clients.redis.redis.begin_update(
                desired.resource_group, desired.azure_name, params, polling=False
            ),
        )

    def _wait(self, desired: _Ref, verb: str = "Provisioning") -> Any:
        """Poll GET until Succeeded (returned) or Failed/timeout/disappeared (raised)."""
        start = time.monotonic()
        deadline = start + self.settings.provisioning_timeout
        while True:
            cache = self._get_cache(desired)
            if cache is None:
                raise ProvisioningError(
                    f"cache {desired.azure_name} disappeared while {verb.lower()}; run again "
                    "to recreate it",
                    desired.resource_name,
                )
            state = _state_of(cache)
            if state.lower() == "succeeded":
                return cache
            if state.lower() == "failed":
                raise CacheFailedError(
                    f"Azure reports cache {desired.azure_name} as Failed; delete it (apphost "
                    "destroy, or the Azure portal) and run again",
                    desired.resource_name,
                )
            now = time.monotonic()
            self._status(desired.resource_name, f"{verb} ({state}, {format_elapsed(now - start)})")
            if now >= deadline:
                raise ProvisioningTimeoutError(
                    f"cache {desired.azure_name} is still {state} after "
                    f"{format_elapsed(now - start)}; run again to keep waiting (raise "
                    "Azure:ProvisioningTimeoutMinutes to wait longer)",
                    desired.resource_name,
                )
            self._sleep(min(self.settings.poll_interval, max(0.0, deadline - now)))

    def _ensure_access_policy(self, desired: DesiredCache) -> None:
        from azure.mgmt.redis import models

        principal = self.principal()
        name = access_policy_assignment_name(
            desired.resource_id, principal.object_id, DATA_CONTRIBUTOR
        )
        ops = self.clients.redis.access_policy_assignment

        def get() -> Any | None:
            try:
                return ops.get(desired.resource_group, desired.azure_name, name)
            except Exception as exc:
                if arm_errors.is_not_found(exc):
                    return None
                raise

        doing = f"granting {DATA_CONTRIBUTOR} on {desired.azure_name}"

        def state_of(assignment: Any) -> str:
            return (getattr(assignment, "provisioning_state", "") or "").lower()

        def grants(assignment: Any) -> bool:
            """It is ours, done (an empty state is done: nothing is in progress)."""
            return (
                assignment is not None
                and (assignment.object_id or "").lower() == principal.object_id.lower()
                and assignment.access_policy_name == DATA_CONTRIBUTOR
                and state_of(assignment) in ("succeeded", "")
            )

        current = self._call(desired.resource_name, doing, get)
        if grants(current):
            return
        if current is None or state_of(current) in ("succeeded", ""):
            self._status(desired.resource_name, f"Granting {DATA_CONTRIBUTOR} to {principal.alias}")
            body = models.RedisCacheAccessPolicyAssignment(
                access_policy_name=DATA_CONTRIBUTOR,
                object_id=principal.object_id,
                object_id_alias=principal.alias,
            )
            created = self._call(
                desired.resource_name,
                doing,
                lambda: ops.begin_create_update(
                    desired.resource_group, desired.azure_name, name, body, polling=False
                ).result(),
            )
            if grants(created):
                return
        start = time.monotonic()
        while True:
            current = self._call(desired.resource_name, doing, get)
            state = state_of(current)
            if state == "succeeded" or grants(current):
                return
            if current is None or state in ("failed", "canceled", "deleted"):
                raise ProvisioningError(
                    f"the access policy assignment {name} on {desired.azure_name} ended "
                    f"{state or 'missing'}; run again",
                    desired.resource_name,
                )
            elapsed = time.monotonic() - start
            if elapsed > self.settings.provisioning_timeout:
                raise ProvisioningTimeoutError(
                    f"the access policy assignment {name} on {desired.azure_name} is still "
                    f"{state or 'not done'} after {format_elapsed(elapsed)}; run again to keep "
                    "waiting (raise Azure:ProvisioningTimeoutMinutes to wait longer)",
                    desired.resource_name,
                )
            self._sleep(self.settings.poll_interval)

    def _primary_key(self, desired: DesiredCache) -> str:
        keys = self._call(
            desired.resource_name,
            f"reading the access keys of {desired.azure_name}",
            lambda: self.clients.redis.redis.list_keys(desired.resource_group, desired.azure_name),
        )
        key = getattr(keys, "primary_key", None)
        if not key:
            raise ProvisioningError(
                f"Azure returned no primary key for {desired.azure_name}", desired.resource_name
            )
        return str(key)

    # -- one cache ----------------------------------------------------------------------------
    def _record(self, desired: DesiredCache) -> StateRecord:
        return StateRecord(
            resource_name=desired.resource_name,
            status=SUCCEEDED,
            checksum=desired.checksum(),
            azure_name=desired.azure_name,
            resource_group=desired.resource_group,
            subscription_id=desired.subscription_id,
            resource_id=desired.resource_id,
        )

    def _outputs(self, desired: DesiredCache, cache: Any) -> CacheOutputs:
        key = self._primary_key(desired) if desired.use_access_keys else None
        return CacheOutputs.build(
            resource_name=desired.resource_name,
            name=desired.azure_name,
            resource_id=str(cache.id or desired.resource_id),
            host_name=str(cache.host_name or f"{desired.azure_name}.redis.cache.windows.net"),
            ssl_port=cache.ssl_port,
            primary_key=key,
            principal_object_id=desired.principal_object_id,
        )

    def _check_owned(self, desired: DesiredCache, cache: Any) -> None:
        tags = _tags_of(cache)
        owner = tags.get(TAG_APP.lower())
        if owner != self.app_name or tags.get(TAG_RESOURCE_NAME.lower()) != desired.resource_name:
            raise ProvisioningError(
                f"a cache named {desired.azure_name} already exists in resource group "
                f"{desired.resource_group} but was not created by app {self.app_name!r} "
                f"(tag {TAG_APP}={owner!r}); use as_existing() or another resource group",
                desired.resource_name,
            )

    def _use_existing(self, desired: DesiredCache) -> CacheOutputs:
        cache = self._get_cache(desired)
        if cache is None:
            raise ProvisioningError(
                f"the existing cache {desired.azure_name} was not found in resource group "
                f"{desired.resource_group} of subscription {desired.subscription_id}; check "
                "the name and resource group given to as_existing()",
                desired.resource_name,
            )
        if _state_of(cache).lower() != "succeeded":
            cache = self._wait(desired, "Waiting for existing cache")
        keys_disabled = bool(cache.disable_access_key_authentication)
        aad = _config_of(cache).get("aad-enabled", "").lower() == "true"
        if desired.use_access_keys and keys_disabled:
            raise ProvisioningError(
                f"the existing cache {desired.azure_name} has access keys disabled; remove "
                "with_access_key_authentication() or enable access keys on the cache",
                desired.resource_name,
            )
        if not desired.use_access_keys and not aad:
            raise ProvisioningError(
                f"the existing cache {desired.azure_name} does not have Microsoft Entra ID "
                "authentication enabled; enable it on the cache or call "
                "with_access_key_authentication()",
                desired.resource_name,
            )
        outputs = self._outputs(desired, cache)
        self.store.save_succeeded(self._record(desired), outputs)
        return outputs

    def provision_one(self, desired: Desired) -> CacheOutputs:
        """Bring one cache (classic or Managed) to its desired state and return its outputs."""
        if isinstance(desired, DesiredManagedRedis):
            return self.managed.provision_one(desired)
        resource = desired.resource_name
        self._status(resource, "Checking")
        record = self.store.load(resource)
        checksum = desired.checksum()
        if (
            record is not None
            and record.status == SUCCEEDED
            and record.checksum == checksum
            and record.outputs is not None
        ):
            cache = self._get_cache(desired)
            if cache is not None and _state_of(cache).lower() == "succeeded":
                self._status(resource, "Provisioned")
                return record.outputs
            self.store.forget(resource)  # gone or changed out of band: never reuse stale outputs
        if desired.existing:
            outputs = self._use_existing(desired)
            self._status(resource, "Provisioned")
            return outputs
        self._ensure_resource_group(resource, desired.resource_group)
        with self._lock_for(desired):
            cache = self._get_cache(desired)
            pending = attrs.evolve(self._record(desired), status="pending")
            if cache is None:
                self._check_name(desired)
                self.store.save_pending(pending)
                self._create(desired)
                self._status(resource, "Provisioning (Creating, 0m00s)")
                cache = self._wait(desired)
            else:
                self._check_owned(desired, cache)
                state = _state_of(cache).lower()
                if state == "deleting":
                    raise ProvisioningError(
                        f"cache {desired.azure_name} is being deleted; run again once the "
                        "deletion finished",
                        resource,
                    )
                if state != "succeeded":
                    self.store.save_pending(pending)
                    cache = self._wait(desired)
                if any(s.startswith("zones") for s in self._zone_changes(desired, cache)):
                    raise ConfigurationError(
                        f"{resource}: zones cannot change on the existing cache "
                        f"{desired.azure_name}; delete it (apphost destroy) to apply them"
                    )
                changes = differences(desired, cache)
                if changes:
                    self.store.save_pending(pending)
                    self._status(resource, "Updating: " + "; ".join(changes))
                    self._update(desired, cache)
                    cache = self._wait(desired, "Updating")
            if not desired.use_access_keys:
                self._ensure_access_policy(desired)
            outputs = self._outputs(desired, cache)
        self.store.save_succeeded(self._record(desired), outputs)
        self._status(resource, "Provisioned")
        return outputs

    @staticmethod
    def _zone_changes(desired: DesiredCache, cache: Any) -> list[str]:
        actual = sorted(cache.zones or [])
        wanted = sorted(desired.spec.zones)
        return [] if actual == wanted or not wanted else [f"zones: {actual} -> {wanted}"]

    # -- many caches --------------------------------------------------------------------------
    def provision(self, requests: Iterable[AzureRequest]) -> dict[str, CacheOutputs]:
        """Provision every request concurrently; raise after all finished if any failed."""
        desired = self._all_desired(requests)
        if not desired:
            return {}
        results: dict[str, CacheOutputs] = {}
        failures: list[ProvisioningError] = []
        pool = ThreadPoolExecutor(max_workers=min(8, len(desired)), thread_name_prefix="azure")
        try:
            futures = {d.resource_name: pool.submit(self.provision_one, d) for d in desired}
            for name, future in futures.items():
                try:
                    results[name] = future.result()
                except ProvisioningError as exc:
                    failures.append(exc.for_resource(name))
        except BaseException:
            self.cancel()
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        if len(failures) == 1:
            raise failures[0]
        if failures:
            raise ProvisioningError(
                f"{len(failures)} Azure caches failed to provision: "
                + "; ".join(str(f) for f in failures)
            )
        return results

    def plan(self, requests: Iterable[AzureRequest]) -> list[PlanItem]:
        """What ``provision`` would do, from reads only (no PUT, PATCH, POST or DELETE)."""
        desired = self._all_desired(requests)
        items: list[PlanItem] = []
        group_exists: bool | None = None
        for d in desired:
            if isinstance(d, DesiredManagedRedis):
                if not d.existing and group_exists is None:
                    group_exists = self._group_exists(d.resource_name)
                items.append(self.managed.plan_item(d, group_exists))
                continue
            if d.existing:
                cache = self._get_cache(d)
                action = PlanAction.USE_EXISTING if cache is not None else PlanAction.MISSING
                items.append(PlanItem(d.resource_name, d.azure_name, d.resource_group, action))
                continue
            if group_exists is None:
                group_exists = self._group_exists(d.resource_name)
            if not group_exists:
                action_rg = (
                    PlanAction.CREATE
                    if self.settings.allow_resource_group_creation
                    else PlanAction.MISSING
                )
                items.append(
                    PlanItem(
                        d.resource_name,
                        d.azure_name,
                        d.resource_group,
                        PlanAction.CREATE,
                        (),
                        action_rg,
                    )
                )
                continue
            cache = self._get_cache(d)
            if cache is None:
                items.append(
                    PlanItem(d.resource_name, d.azure_name, d.resource_group, PlanAction.CREATE)
                )
                continue
            state = _state_of(cache).lower()
            changes: tuple[str, ...] = ()
            if state == "failed":
                action = PlanAction.FAILED
            elif state in TRANSITIONAL:
                action, changes = PlanAction.WAIT, (f"provisioningState: {_state_of(cache)}",)
            else:
                found = tuple(differences(d, cache) + self._zone_changes(d, cache))
                action = PlanAction.UPDATE if found else PlanAction.NO_CHANGE
                changes = found
            items.append(PlanItem(d.resource_name, d.azure_name, d.resource_group, action, changes))
        return items

    def owned_caches(self, requests: Iterable[AzureRequest] = ()) -> list[Any]:
        """The caches and Managed Redis clusters in the app's resource group tagged as created
        by this app (reads only).

        Resources referenced with ``as_existing`` and resources without our tags are never
        included.
        """
        group = self.settings.resource_group
        if not self._group_exists("destroy"):
            return []
        requests = list(requests)
        caches = self._call(
            "destroy",
            f"listing caches in resource group {group}",
            lambda: list(self.clients.redis.redis.list_by_resource_group(group)),
        )
        owned = [c for c in caches if _tags_of(c).get(TAG_APP.lower()) == self.app_name]
        existing = {
            (r.existing_name or "").lower()
            for r in requests
            if r.existing_name is not None and isinstance(r, AzureRedisRequest)
        }
        existing_clusters = {
            (r.existing_name or "").lower()
            for r in requests
            if r.existing_name is not None and isinstance(r, ManagedRedisRequest)
        }
        classic = [c for c in owned if str(c.name).lower() not in existing]
        return classic + self.managed.owned_clusters(existing_clusters)

    def destroy(
        self, requests: Iterable[AzureRequest] = (), owned: list[Any] | None = None
    ) -> list[str]:
        """Delete the caches :meth:`owned_caches` finds and wait until each one is gone.

        ``owned`` is a list :meth:`owned_caches` already returned (e.g. the one a user
        confirmed); without it the caches are listed here. Returns the deleted Azure names.
        The resource group itself is left in place: it may hold resources that are not ours.
        """
        if owned is None:
            owned = self.owned_caches(requests)
        if not owned:
            return []
        with ThreadPoolExecutor(max_workers=min(8, len(owned))) as pool:
            names = list(pool.map(self._delete_one, owned))
        return names

    def _delete_one(self, cache: Any) -> str:
        if is_cluster(cache):
            return self.managed.delete_one(cache)
        resource = str(_tags_of(cache).get(TAG_RESOURCE_NAME.lower()) or cache.name)
        desired = CacheRef(
            resource_name=resource,
            azure_name=str(cache.name),
            subscription_id=self.settings.subscription_id,
            resource_group=self.settings.resource_group,
        )
        with self._lock_for(desired):
            if _state_of(cache).lower() in TRANSITIONAL:
                try:
                    self._wait(desired, "Waiting before delete")
                except CacheFailedError:
                    pass  # a Failed cache can still be deleted
            self._status(resource, f"Deleting {desired.azure_name}")
            self._call(
                resource,
                f"deleting cache {desired.azure_name}",
                lambda: self.clients.redis.redis.begin_delete(
                    desired.resource_group, desired.azure_name, polling=False
                ),
            )
            start = time.monotonic()
            while self._get_cache(desired) is not None:
                elapsed = time.monotonic() - start
                if elapsed > self.settings.provisioning_timeout:
                    raise ProvisioningTimeoutError(
                        f"cache {desired.azure_name} is still being deleted after "
                        f"{format_elapsed(elapsed)}",
                        resource,
                    )
                self._status(resource, f"Deleting ({format_elapsed(elapsed)})")
                self._sleep(self.settings.poll_interval)
        record = self.store.load(resource)
        if record is not None and record.azure_name.lower() == desired.azure_name.lower():
            self.store.forget(resource)
        self._status(resource, "Deleted")
        return desired.azure_name
