"""Provision, plan and destroy Azure Managed Redis (``Microsoft.Cache/redisEnterprise``)
through azure-mgmt-redisenterprise.

The lifecycle of one Managed Redis, mirroring :mod:`provisioning.provisioner` for classic
caches (whose plumbing it shares: retry policy, locks, state store, resource group, status):

1. A previous run's record with a matching checksum -> one GET of the cluster and one of its
   database; if both are still there and ready, at the stored host name and port, the stored
   outputs are returned without any write (otherwise the record is forgotten).
2. Otherwise: PUT the cluster (``publicNetworkAccess`` always set: the SDK's
   ``Cluster(location, sku)`` omits it and Azure requires it), or resume waiting on a create
   under way, or PATCH what differs; then PUT (or PATCH) the database ``default`` on TLS port
   10000. A clustering-policy or modules change on an existing database is refused before any
   write: Azure cannot change them.
3. Wait by polling GET every ``Azure:PollIntervalSeconds`` until ``provisioningState``
   Succeeded AND ``resourceState`` Running (cluster, then database), never the SDK's 30 s poller.
4. Entra ID: the access policy assignment (policy ``default``) for the app host's principal,
   written after the database exists. Access keys: listKeys for the primary key.
5. Record outputs and checksum as ``succeeded``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import attrs

from . import arm_errors
from .errors import (
    CacheFailedError,
    ConfigurationError,
    NameNotAvailableError,
    ProductRetiredError,
    ProvisioningError,
    ProvisioningTimeoutError,
)
from .managed_spec import (
    DEFAULT_ACCESS_POLICY,
    MANAGED_PORT,
    ClusterRef,
    DesiredManagedRedis,
    ManagedRedisRequest,
    ManagedRedisSpec,
)
from .naming import (
    MANAGED_DATABASE,
    access_policy_assignment_name,
    cluster_name_for,
    validate_cluster_name,
    validate_resource_group_name,
)
from .outputs import KIND_MANAGED_REDIS, CacheOutputs
from .spec import TAG_APP, TAG_RESOURCE_NAME
from .state import SUCCEEDED, StateRecord

if TYPE_CHECKING:
    from .provisioner import PlanItem, Provisioner

#: ``resourceState`` values of a cluster or database that is up.
_RUNNING = "running"
_GONE_STATES = ("deleting", "deleted")
#: Assignment states that need no waiting: Succeeded, or none at all (some API versions and
#: proxies leave ``provisioningState`` out; the grant itself is then what counts).
_SETTLED = ("succeeded", "")


def is_cluster(resource: Any) -> bool:
    """Whether an ARM object found by listing is a Managed Redis cluster (not a classic cache)."""
    kind = str(getattr(resource, "type", "") or "").lower()
    rid = str(getattr(resource, "id", "") or "").lower()
    return kind == "microsoft.cache/redisenterprise" or "/redisenterprise/" in rid


def _tags_of(resource: Any) -> dict[str, str]:
    return {str(k).lower(): v for k, v in (getattr(resource, "tags", None) or {}).items()}


def _states(resource: Any) -> tuple[str, str]:
    """``(provisioningState, resourceState)``, lower-cased ('' when absent)."""
    return (
        str(getattr(resource, "provisioning_state", "") or "").lower(),
        str(getattr(resource, "resource_state", "") or "").lower(),
    )


def is_ready(resource: Any) -> bool:
    """Succeeded and (when Azure says) Running: what a finished create or update looks like."""
    provisioning, state = _states(resource)
    return provisioning == "succeeded" and state in ("", _RUNNING)


def is_failed(resource: Any) -> bool:
    """Failed or Canceled, or a resource state such as CreateFailed."""
    provisioning, state = _states(resource)
    return provisioning in ("failed", "canceled") or state.endswith("failed")


def _assignment_state(assignment: Any) -> str:
    """An access policy assignment's ``provisioningState``, lower-cased ('' when absent)."""
    return str(getattr(assignment, "provisioning_state", "") or "").lower()


def _state_text(resource: Any) -> str:
    provisioning = str(getattr(resource, "provisioning_state", "") or "")
    state = str(getattr(resource, "resource_state", "") or "")
    if state and state.lower() != provisioning.lower() and provisioning.lower() != "succeeded":
        return f"{provisioning}/{state}"
    return state if provisioning.lower() == "succeeded" and state else provisioning or state


def _host_name(desired: DesiredManagedRedis, cluster: Any) -> str:
    """The cluster's ``hostName`` (Azure's documented form when it does not say)."""
    region = desired.location.lower().replace(" ", "")
    return str(cluster.host_name or f"{desired.azure_name}.{region}.redis.azure.net")


def _modules_of(items: Any) -> list[tuple[str, str]]:
    out = []
    for module in items or []:
        if isinstance(module, dict):
            name, args = module.get("name"), module.get("args")
        else:
            name, args = getattr(module, "name", None), getattr(module, "args", None)
        out.append((str(name or "").lower(), str(args or "")))
    return sorted(out)


def keys_setting(desired: DesiredManagedRedis) -> str:
    """The database's ``accessKeysAuthentication`` for the desired auth mode."""
    return "Enabled" if desired.use_access_keys else "Disabled"


def cluster_differences(desired: DesiredManagedRedis, cluster: Any) -> list[str]:
    """Differences the cluster PATCH applies (SKU, TLS, HA, public access, tags)."""
    spec = desired.spec
    changes: list[str] = []
    sku = getattr(getattr(cluster, "sku", None), "name", None)
    if sku is not None and str(sku) != spec.sku_name:
        changes.append(f"sku: {sku} -> {spec.sku_name}")
    pairs = [
        ("minimumTlsVersion", cluster.minimum_tls_version, spec.minimum_tls_version),
        ("publicNetworkAccess", cluster.public_network_access, spec.public_network_access),
        ("highAvailability", cluster.high_availability, spec.high_availability),
    ]
    for label, actual, wanted in pairs:
        if actual is not None and str(actual) != wanted:
            changes.append(f"{label}: {actual} -> {wanted}")
    tags = cluster.tags or {}
    for key, value in spec.tags.items():
        if tags.get(key) != value:
            changes.append(f"tag {key}: {tags.get(key)} -> {value}")
    return changes


def database_differences(desired: DesiredManagedRedis, database: Any) -> list[str]:
    """Differences the database PATCH applies (eviction policy, access keys)."""
    changes: list[str] = []
    pairs = [
        ("evictionPolicy", database.eviction_policy, desired.spec.eviction_policy),
        ("accessKeysAuthentication", database.access_keys_authentication, keys_setting(desired)),
    ]
    for label, actual, wanted in pairs:
        if actual is not None and str(actual) != wanted:
            changes.append(f"database {label}: {actual} -> {wanted}")
    return changes


def fixed_differences(desired: DesiredManagedRedis, cluster: Any, database: Any) -> list[str]:
    """Changes Azure cannot make to an existing cluster or database (clustering policy,
    modules, zones), each with what to do instead."""
    problems: list[str] = []
    fix = "destroy it (apphost destroy) and provision again, or keep the current value"
    actual_policy = getattr(database, "clustering_policy", None) if database is not None else None
    if actual_policy is not None and str(actual_policy) != desired.spec.clustering_policy:
        problems.append(
            f"clustering_policy: {actual_policy} -> {desired.spec.clustering_policy} (Azure "
            f"cannot change the clustering policy of an existing database: {fix})"
        )
    if database is not None:
        actual_modules = _modules_of(database.modules)
        wanted_modules = _modules_of(desired.spec.modules)
        if actual_modules != wanted_modules:
            shown = [m[0] for m in actual_modules], [m[0] for m in wanted_modules]
            problems.append(
                f"modules: {shown[0]} -> {shown[1]} (Azure sets modules only when the database "
                f"is created: {fix})"
            )
    actual_zones = sorted(getattr(cluster, "zones", None) or [])
    wanted_zones = sorted(desired.spec.zones)
    if wanted_zones and actual_zones != wanted_zones:
        problems.append(
            f"zones: {actual_zones} -> {wanted_zones} (Azure cannot change zones: {fix})"
        )
    return problems


class ManagedRedisProvisioner:
    """The Managed Redis half of :class:`provisioning.provisioner.Provisioner`.

    Uses its host's settings, clients, retry policy (``_call``), cancellable sleep, status
    callback, per-resource locks, resource group and state store, so one run provisions
    classic and Managed caches side by side.
    """

    def __init__(self, host: Provisioner) -> None:
        self.host = host

    @property
    def _ops(self) -> Any:
        return self.host.clients.enterprise

    # -- desired state ------------------------------------------------------------------------
    def target(self, request: ManagedRedisRequest) -> tuple[str, str]:
        """The validated ``(resource group, cluster name)`` of a request (no call is made)."""
        settings = self.host.settings
        if request.existing_name is not None:
            validate_cluster_name(request.existing_name)
            group = request.existing_resource_group or settings.resource_group
            validate_resource_group_name(group)
            return group, request.existing_name
        group = settings.resource_group
        return group, cluster_name_for(request.resource_name, settings.subscription_id, group)

    def assemble(
        self, request: ManagedRedisRequest, target: tuple[str, str], spec: ManagedRedisSpec
    ) -> DesiredManagedRedis:
        """The desired state; with Entra ID (also for ``as_existing``, as Aspire) it names the
        app host's principal, which the access policy assignment grants."""
        group, azure_name = target
        settings = self.host.settings
        return DesiredManagedRedis(
            resource_name=request.resource_name,
            azure_name=azure_name,
            subscription_id=settings.subscription_id,
            resource_group=group,
            location=settings.location,
            spec=spec,
            use_access_keys=request.use_access_keys,
            existing=request.is_existing,
            principal_object_id=(
                None if request.use_access_keys else self.host.principal().object_id
            ),
        )

    # -- reads --------------------------------------------------------------------------------
    @staticmethod
    def _none_if_missing(read: Callable[[], Any]) -> Any | None:
        try:
            return read()
        except Exception as exc:
            if arm_errors.is_not_found(exc):
                return None
            raise

    def _raw_cluster(self, ref: ClusterRef | DesiredManagedRedis) -> Any | None:
        return self._none_if_missing(
            lambda: self._ops.redis_enterprise.get(ref.resource_group, ref.azure_name)
        )

    def get_cluster(self, ref: ClusterRef | DesiredManagedRedis) -> Any | None:
        """GET the cluster (None when it or its resource group does not exist)."""
        return self.host._call(
            ref.resource_name,
            f"reading Azure Managed Redis {ref.azure_name}",
            lambda: self._raw_cluster(ref),
        )

    def _raw_database(self, ref: DesiredManagedRedis) -> Any | None:
        return self._none_if_missing(
            lambda: self._ops.databases.get(ref.resource_group, ref.azure_name, MANAGED_DATABASE)
        )

    def get_database(self, ref: DesiredManagedRedis) -> Any | None:
        """GET the database ``default`` (None when absent)."""
        return self.host._call(
            ref.resource_name,
            f"reading database {MANAGED_DATABASE} of {ref.azure_name}",
            lambda: self._raw_database(ref),
        )

    # -- waiting ------------------------------------------------------------------------------
    def _wait(
        self,
        ref: ClusterRef | DesiredManagedRedis,
        what: str,
        read: Callable[[], Any | None],
        verb: str,
        label: str,
    ) -> Any:
        """Poll ``read`` until ready (returned) or Failed/timeout/disappeared (raised);
        progress is reported as ``{label} ({state}, {elapsed})``."""
        from .provisioner import format_elapsed as _elapsed

        host = self.host
        start = time.monotonic()
        deadline = start + host.settings.provisioning_timeout
        while True:
            current = read()
            if current is None:
                raise ProvisioningError(
                    f"{what} disappeared while {verb.lower()}; run again to recreate it",
                    ref.resource_name,
                )
            if is_ready(current):
                return current
            if is_failed(current):
                raise CacheFailedError(
                    f"Azure reports {what} as {_state_text(current)}; delete it (apphost "
                    "destroy, or the Azure portal) and run again",
                    ref.resource_name,
                )
            now = time.monotonic()
            host._status(
                ref.resource_name,
                f"{label} ({_state_text(current)}, {_elapsed(now - start)})",
            )
            if now >= deadline:
                raise ProvisioningTimeoutError(
                    f"{what} is still {_state_text(current)} after {_elapsed(now - start)}; run "
                    "again to keep waiting (raise Azure:ProvisioningTimeoutMinutes to wait "
                    "longer)",
                    ref.resource_name,
                )
            host._sleep(min(host.settings.poll_interval, max(0.0, deadline - now)))

    def wait_cluster(
        self, ref: ClusterRef | DesiredManagedRedis, verb: str = "Provisioning"
    ) -> Any:
        """Wait until the cluster is Succeeded and Running."""
        what = f"Azure Managed Redis {ref.azure_name}"
        return self._wait(ref, what, lambda: self.get_cluster(ref), verb, verb)

    def wait_database(self, ref: DesiredManagedRedis, verb: str = "Provisioning") -> Any:
        """Wait until the database ``default`` is Succeeded and Running."""
        return self._wait(
            ref,
            f"database {MANAGED_DATABASE} of {ref.azure_name}",
            lambda: self.get_database(ref),
            verb,
            f"{verb} database",
        )

    # -- writes -------------------------------------------------------------------------------
    def _create_cluster(self, desired: DesiredManagedRedis) -> None:
        from azure.mgmt.redisenterprise import models

        spec = desired.spec
        params = models.Cluster(
            location=desired.location,
            sku=models.Sku(name=spec.sku_name),
            tags=dict(spec.tags),
            zones=list(spec.zones) or None,
            minimum_tls_version=spec.minimum_tls_version,
            public_network_access=spec.public_network_access,
            high_availability=spec.high_availability,
        )
        attempts = 0

        def put() -> None:
            nonlocal attempts
            attempts += 1
            # A retried PUT whose first attempt reached Azure must not create twice.
            if attempts > 1 and self._raw_cluster(desired) is not None:
                return
            try:
                self._ops.redis_enterprise.begin_create(
                    desired.resource_group, desired.azure_name, params, polling=False
                )
            except Exception as exc:
                code, message = arm_errors.error_code_and_message(exc)
                status = arm_errors.status_of(exc)
                if status is not None and status < 500 and arm_errors.is_retired(code, message):
                    raise ProductRetiredError(
                        f"Azure refused to create {desired.azure_name} with SKU "
                        f"{spec.sku_name}: it is retired ({code}: {message}); choose an Azure "
                        "Managed Redis SKU (e.g. Balanced_B0) in configure_infrastructure",
                        desired.resource_name,
                    ) from None
                raise

        try:
            self.host._call(
                desired.resource_name, f"creating Azure Managed Redis {desired.azure_name}", put
            )
        except NameNotAvailableError:
            raise NameNotAvailableError(
                f"the Azure Managed Redis name {desired.azure_name} is already taken in "
                f"{desired.location} (names are unique per region, across subscriptions); "
                "set another Azure:Location or Azure:ResourceGroup (the generated name changes "
                "with it), rename the resource, or use as_existing() if that cluster is yours",
                desired.resource_name,
            ) from None

    def _update_cluster(self, desired: DesiredManagedRedis, cluster: Any) -> None:
        from azure.mgmt.redisenterprise import models

        spec = desired.spec
        params = models.ClusterUpdate(
            sku=models.Sku(name=spec.sku_name),
            tags={**(cluster.tags or {}), **spec.tags},
            minimum_tls_version=spec.minimum_tls_version,
            public_network_access=spec.public_network_access,
            high_availability=spec.high_availability,
        )
        self.host._call(
            desired.resource_name,
            f"updating Azure Managed Redis {desired.azure_name}",
            lambda: self._ops.redis_enterprise.begin_update(
                desired.resource_group, desired.azure_name, params, polling=False
            ),
        )

    def _create_database(self, desired: DesiredManagedRedis) -> None:
        from azure.mgmt.redisenterprise import models

        spec = desired.spec
        params = models.Database(
            client_protocol="Encrypted",
            port=MANAGED_PORT,
            clustering_policy=spec.clustering_policy,
            eviction_policy=spec.eviction_policy,
            access_keys_authentication=keys_setting(desired),
            modules=[models.Module(name=m["name"], args=m["args"] or None) for m in spec.modules]
            or None,
        )
        attempts = 0

        def put() -> None:
            nonlocal attempts
            attempts += 1
            if attempts > 1 and self._raw_database(desired) is not None:
                return
            self._ops.databases.begin_create(
                desired.resource_group, desired.azure_name, MANAGED_DATABASE, params, polling=False
            )

        self.host._call(
            desired.resource_name,
            f"creating database {MANAGED_DATABASE} of {desired.azure_name}",
            put,
        )

    def _update_database(self, desired: DesiredManagedRedis) -> None:
        from azure.mgmt.redisenterprise import models

        params = models.DatabaseUpdate(
            eviction_policy=desired.spec.eviction_policy,
            access_keys_authentication=keys_setting(desired),
        )
        self.host._call(
            desired.resource_name,
            f"updating database {MANAGED_DATABASE} of {desired.azure_name}",
            lambda: self._ops.databases.begin_update(
                desired.resource_group, desired.azure_name, MANAGED_DATABASE, params, polling=False
            ),
        )

    def _ensure_access_policy(self, desired: DesiredManagedRedis) -> None:
        """Grant the app host's principal policy ``default`` on database ``default`` under a
        deterministic name (Aspire's ``guid(database.id, principalId, 'default')``)."""
        from azure.mgmt.redisenterprise import models

        host = self.host
        principal = host.principal()
        name = access_policy_assignment_name(
            desired.database_id, principal.object_id, DEFAULT_ACCESS_POLICY
        )
        ops = self._ops.access_policy_assignment
        args = (desired.resource_group, desired.azure_name, MANAGED_DATABASE, name)

        def get() -> Any | None:
            return self._none_if_missing(lambda: ops.get(*args))

        def granted(current: Any) -> bool:
            user = getattr(current, "user", None)
            return (
                getattr(user, "object_id", "") or ""
            ).lower() == principal.object_id.lower() and (
                current.access_policy_name or ""
            ) == DEFAULT_ACCESS_POLICY

        doing = f"granting access policy {DEFAULT_ACCESS_POLICY} on {desired.azure_name}"
        current = host._call(desired.resource_name, doing, get)
        state = _assignment_state(current)
        if current is not None and granted(current) and state in _SETTLED:
            return
        if current is None or state in (*_SETTLED, "failed", "canceled"):
            host._status(
                desired.resource_name,
                f"Granting access policy {DEFAULT_ACCESS_POLICY} to {principal.alias}",
            )
            body = models.AccessPolicyAssignment(
                access_policy_name=DEFAULT_ACCESS_POLICY,
                user=models.AccessPolicyAssignmentPropertiesUser(object_id=principal.object_id),
            )
            created = host._call(
                desired.resource_name,
                doing,
                lambda: ops.begin_create_update(*args, body, polling=False).result(),
            )
            created_state = _assignment_state(created)
            if created_state == "succeeded" or (
                created is not None and created_state == "" and granted(created)
            ):
                return
        self._wait_for_assignment(desired, name, doing, get, granted)

    def _wait_for_assignment(
        self,
        desired: DesiredManagedRedis,
        name: str,
        doing: str,
        get: Callable[[], Any | None],
        granted: Callable[[Any], bool],
    ) -> None:
        """Poll the assignment until it succeeded (or, without a state, grants the principal);
        raise when it failed, disappeared or outlived ``Azure:ProvisioningTimeoutMinutes``."""
        from .provisioner import format_elapsed as _elapsed

        host = self.host
        start = time.monotonic()
        while True:
            current = host._call(desired.resource_name, doing, get)
            state = _assignment_state(current)
            if state == "succeeded" or (current is not None and state == "" and granted(current)):
                return
            if current is None or state in ("failed", "canceled", "deleted"):
                raise ProvisioningError(
                    f"the access policy assignment {name} on {desired.azure_name} ended "
                    f"{state or 'missing'}; run again",
                    desired.resource_name,
                )
            elapsed = time.monotonic() - start
            if elapsed > host.settings.provisioning_timeout:
                raise ProvisioningTimeoutError(
                    f"the access policy assignment {name} on {desired.azure_name} is still "
                    f"{state or 'not granting the app host'} after {_elapsed(elapsed)}; run "
                    "again to keep waiting (raise Azure:ProvisioningTimeoutMinutes to wait "
                    "longer)",
                    desired.resource_name,
                )
            host._sleep(host.settings.poll_interval)

    def _primary_key(self, desired: DesiredManagedRedis) -> str:
        keys = self.host._call(
            desired.resource_name,
            f"reading the access keys of {desired.azure_name}",
            lambda: self._ops.databases.list_keys(
                desired.resource_group, desired.azure_name, MANAGED_DATABASE
            ),
        )
        key = getattr(keys, "primary_key", None)
        if not key:
            raise ProvisioningError(
                f"Azure returned no primary key for {desired.azure_name}", desired.resource_name
            )
        return str(key)

    # -- one cluster --------------------------------------------------------------------------
    def _record(self, desired: DesiredManagedRedis) -> StateRecord:
        return StateRecord(
            resource_name=desired.resource_name,
            status=SUCCEEDED,
            checksum=desired.checksum(),
            azure_name=desired.azure_name,
            resource_group=desired.resource_group,
            subscription_id=desired.subscription_id,
            resource_id=desired.resource_id,
        )

    def _outputs(self, desired: DesiredManagedRedis, cluster: Any, database: Any) -> CacheOutputs:
        key = self._primary_key(desired) if desired.use_access_keys else None
        return CacheOutputs.build(
            resource_name=desired.resource_name,
            name=desired.azure_name,
            resource_id=str(cluster.id or desired.resource_id),
            host_name=_host_name(desired, cluster),
            ssl_port=int(database.port or MANAGED_PORT),
            primary_key=key,
            principal_object_id=desired.principal_object_id,
            kind=KIND_MANAGED_REDIS,
            clustering_policy=str(database.clustering_policy or desired.spec.clustering_policy),
        )

    def _check_owned(self, desired: DesiredManagedRedis, cluster: Any) -> None:
        tags = _tags_of(cluster)
        owner = tags.get(TAG_APP.lower())
        app = self.host.app_name
        if owner != app or tags.get(TAG_RESOURCE_NAME.lower()) != desired.resource_name:
            raise ProvisioningError(
                f"an Azure Managed Redis named {desired.azure_name} already exists in resource "
                f"group {desired.resource_group} but was not created by app {app!r} (tag "
                f"{TAG_APP}={owner!r}); use as_existing() or another resource group",
                desired.resource_name,
            )

    def _use_existing(self, desired: DesiredManagedRedis) -> CacheOutputs:
        cluster = self.get_cluster(desired)
        where = f"in resource group {desired.resource_group} of subscription "
        if cluster is None:
            raise ProvisioningError(
                f"the existing Azure Managed Redis {desired.azure_name} was not found {where}"
                f"{desired.subscription_id}; check the name and resource group given to "
                "as_existing()",
                desired.resource_name,
            )
        if not is_ready(cluster):
            cluster = self.wait_cluster(desired, "Waiting for existing cluster")
        database = self.get_database(desired)
        if database is None:
            raise ProvisioningError(
                f"the existing Azure Managed Redis {desired.azure_name} has no database "
                f"{MANAGED_DATABASE}; create it (port 10000) or point as_existing() at another "
                "cluster",
                desired.resource_name,
            )
        if not is_ready(database):
            database = self.wait_database(desired, "Waiting for existing")
        keys = str(database.access_keys_authentication or "Disabled")
        if desired.use_access_keys and keys.lower() != "enabled":
            raise ProvisioningError(
                f"the existing Azure Managed Redis {desired.azure_name} has access keys "
                "disabled; remove with_access_key_authentication() or enable access keys on "
                "its database",
                desired.resource_name,
            )
        if not desired.use_access_keys:
            self._ensure_access_policy(desired)
        outputs = self._outputs(desired, cluster, database)
        self.host.store.save_succeeded(self._record(desired), outputs)
        return outputs

    def _fast_path(self, desired: DesiredManagedRedis) -> CacheOutputs | None:
        """The stored outputs when the record matches and the cluster (still at the stored
        host name) and its database are ready: two GETs, no write."""
        store = self.host.store
        record = store.load(desired.resource_name)
        if (
            record is None
            or record.status != SUCCEEDED
            or record.checksum != desired.checksum()
            or record.outputs is None
        ):
            return None
        cluster = self.get_cluster(desired)
        if (
            cluster is not None
            and is_ready(cluster)
            and _host_name(desired, cluster) == record.outputs.host_name
        ):
            database = self.get_database(desired)
            if (
                database is not None
                and is_ready(database)
                and int(database.port or MANAGED_PORT) == record.outputs.ssl_port
            ):
                return record.outputs
        # Gone, moved or changed out of band (e.g. the database deleted): never reuse.
        store.forget(desired.resource_name)
        return None

    def provision_one(self, desired: DesiredManagedRedis) -> CacheOutputs:
        """Bring one cluster and its database to their desired state; return the outputs."""
        host = self.host
        resource = desired.resource_name
        host._status(resource, "Checking")
        stored = self._fast_path(desired)
        if stored is not None:
            host._status(resource, "Provisioned")
            return stored
        if desired.existing:
            outputs = self._use_existing(desired)
            host._status(resource, "Provisioned")
            return outputs
        host._ensure_resource_group(resource, desired.resource_group)
        with host._lock_for(desired):
            pending = attrs.evolve(self._record(desired), status="pending")
            cluster = self.get_cluster(desired)
            database = None
            if cluster is None:
                host.store.save_pending(pending)
                try:
                    self._create_cluster(desired)
                except (NameNotAvailableError, ProductRetiredError):
                    host.store.forget(resource)  # nothing was created
                    raise
                host._status(resource, "Provisioning (Creating, 0m00s)")
                cluster = self.wait_cluster(desired)
            else:
                self._check_owned(desired, cluster)
                provisioning, state = _states(cluster)
                if provisioning in _GONE_STATES or state in _GONE_STATES:
                    raise ProvisioningError(
                        f"Azure Managed Redis {desired.azure_name} is being deleted; run again "
                        "once the deletion finished",
                        resource,
                    )
                if not is_ready(cluster):
                    host.store.save_pending(pending)
                    cluster = self.wait_cluster(desired)
                database = self.get_database(desired)
                fixed = fixed_differences(desired, cluster, database)
                if fixed:
                    raise ConfigurationError(
                        f"{resource}: cannot apply to the existing Azure Managed Redis "
                        f"{desired.azure_name}: " + "; ".join(fixed)
                    )
                changes = cluster_differences(desired, cluster)
                if changes:
                    host.store.save_pending(pending)
                    host._status(resource, "Updating: " + "; ".join(changes))
                    self._update_cluster(desired, cluster)
                    cluster = self.wait_cluster(desired, "Updating")
            database = self._ensure_database(desired, database, pending)
            if not desired.use_access_keys:
                self._ensure_access_policy(desired)
            outputs = self._outputs(desired, cluster, database)
        host.store.save_succeeded(self._record(desired), outputs)
        host._status(resource, "Provisioned")
        return outputs

    def _ensure_database(
        self, desired: DesiredManagedRedis, database: Any | None, pending: StateRecord
    ) -> Any:
        host = self.host
        if database is None:
            database = self.get_database(desired)
        if database is None:
            host.store.save_pending(pending)
            self._create_database(desired)
            host._status(desired.resource_name, "Provisioning database (Creating, 0m00s)")
            return self.wait_database(desired)
        if not is_ready(database):
            host.store.save_pending(pending)
            database = self.wait_database(desired)
        changes = database_differences(desired, database)
        if changes:
            host.store.save_pending(pending)
            host._status(desired.resource_name, "Updating: " + "; ".join(changes))
            self._update_database(desired)
            database = self.wait_database(desired, "Updating")
        return database

    # -- plan ---------------------------------------------------------------------------------
    def plan_item(self, desired: DesiredManagedRedis, group_exists: bool | None) -> PlanItem:
        """What ``provision`` would do to this cluster, from reads only.

        ``group_exists`` is None for ``as_existing`` (its group is not ours to create).
        """
        from .provisioner import PlanAction, PlanItem

        names = (desired.resource_name, desired.azure_name, desired.resource_group)
        if desired.existing:
            cluster = self.get_cluster(desired)
            database = self.get_database(desired) if cluster is not None else None
            if cluster is None or database is None:
                missing = "cluster" if cluster is None else f"database {MANAGED_DATABASE}"
                return PlanItem(*names, PlanAction.MISSING, (f"{missing} not found",))
            return PlanItem(*names, PlanAction.USE_EXISTING)
        if not group_exists:
            allow = self.host.settings.allow_resource_group_creation
            group_action = PlanAction.CREATE if allow else PlanAction.MISSING
            return PlanItem(*names, PlanAction.CREATE, (), group_action)
        cluster = self.get_cluster(desired)
        if cluster is None:
            return PlanItem(*names, PlanAction.CREATE)
        if is_failed(cluster):
            return PlanItem(*names, PlanAction.FAILED)
        if not is_ready(cluster):
            return PlanItem(*names, PlanAction.WAIT, (f"state: {_state_text(cluster)}",))
        database = self.get_database(desired)
        if database is None:
            changes = [
                f"database {MANAGED_DATABASE}: create",
                *cluster_differences(desired, cluster),
            ]
            return PlanItem(*names, PlanAction.UPDATE, tuple(changes))
        found = (
            fixed_differences(desired, cluster, database)
            + cluster_differences(desired, cluster)
            + database_differences(desired, database)
        )
        return PlanItem(*names, PlanAction.UPDATE if found else PlanAction.NO_CHANGE, tuple(found))

    # -- destroy ------------------------------------------------------------------------------
    def owned_clusters(self, existing_names: set[str]) -> list[Any]:
        """The clusters in the app's resource group tagged by this app (reads only), except
        those named in ``existing_names`` (lower-cased ``as_existing`` names)."""
        host = self.host
        group = host.settings.resource_group
        clusters = host._call(
            "destroy",
            f"listing Azure Managed Redis clusters in resource group {group}",
            lambda: list(self._ops.redis_enterprise.list_by_resource_group(group)),
        )
        return [
            c
            for c in clusters
            if _tags_of(c).get(TAG_APP.lower()) == host.app_name
            and str(c.name).lower() not in existing_names
        ]

    def delete_one(self, cluster: Any) -> str:
        """Delete one cluster (its database goes with it) and wait until it is gone."""
        from .provisioner import format_elapsed as _elapsed

        host = self.host
        resource = str(_tags_of(cluster).get(TAG_RESOURCE_NAME.lower()) or cluster.name)
        ref = ClusterRef(
            resource_name=resource,
            azure_name=str(cluster.name),
            subscription_id=host.settings.subscription_id,
            resource_group=host.settings.resource_group,
        )
        with host._lock_for(ref):
            provisioning, _ = _states(cluster)
            if not is_ready(cluster) and not is_failed(cluster) and provisioning != "deleting":
                try:
                    self.wait_cluster(ref, "Waiting before delete")
                except CacheFailedError:
                    pass  # a Failed cluster can still be deleted
            host._status(resource, f"Deleting {ref.azure_name}")
            host._call(
                resource,
                f"deleting Azure Managed Redis {ref.azure_name}",
                lambda: self._ops.redis_enterprise.begin_delete(
                    ref.resource_group, ref.azure_name, polling=False
                ),
            )
            start = time.monotonic()
            while self.get_cluster(ref) is not None:
                elapsed = time.monotonic() - start
                if elapsed > host.settings.provisioning_timeout:
                    raise ProvisioningTimeoutError(
                        f"Azure Managed Redis {ref.azure_name} is still being deleted after "
                        f"{_elapsed(elapsed)}",
                        resource,
                    )
                host._status(resource, f"Deleting ({_elapsed(elapsed)})")
                host._sleep(host.settings.poll_interval)
        record = host.store.load(resource)
        if record is not None and record.azure_name.lower() == ref.azure_name.lower():
            host.store.forget(resource)
        host._status(resource, "Deleted")
        return ref.azure_name
