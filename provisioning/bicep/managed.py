"""The Bicep module of an Azure Managed Redis (``add_azure_managed_redis``) as Aspire 13
writes it: a ``Microsoft.Cache/redisEnterprise`` cluster (Balanced_B0, TLS 1.2, public
access) and its database ``default`` on port 10000 with access keys off unless asked for;
values changed by ``configure_infrastructure`` are written too."""

from __future__ import annotations

from ..managed_spec import MANAGED_PORT, ManagedRedisRequest, ManagedRedisSpec
from ..naming import MANAGED_DATABASE
from .existing import start_cache_module, user_tags
from .keyvault import add_connection_string
from .render import Expr, Value, take_unique_name

API = "2025-07-01"
CLUSTER_TYPE = f"Microsoft.Cache/redisEnterprise@{API}"
DATABASE_TYPE = f"Microsoft.Cache/redisEnterprise/databases@{API}"
MAX_NAME = 60
_DEFAULTS = ManagedRedisSpec()


def _cluster_body(request: ManagedRedisRequest, spec: ManagedRedisSpec) -> dict[str, Value]:
    properties: dict[str, Value] = {
        "minimumTlsVersion": spec.minimum_tls_version,
        "publicNetworkAccess": spec.public_network_access,
    }
    if spec.high_availability != _DEFAULTS.high_availability:
        properties["highAvailability"] = spec.high_availability
    body: dict[str, Value] = {
        "name": take_unique_name(request.resource_name, MAX_NAME),
        "location": Expr("location"),
        "sku": {"name": spec.sku_name},
        "properties": properties,
    }
    if spec.zones:
        body["zones"] = list(spec.zones)
    tags = user_tags(spec.tags)
    if tags:
        body["tags"] = tags
    return body


def _database_properties(request: ManagedRedisRequest, spec: ManagedRedisSpec) -> dict[str, Value]:
    properties: dict[str, Value] = {
        "accessKeysAuthentication": "Enabled" if request.use_access_keys else "Disabled",
        "port": MANAGED_PORT,
    }
    if spec.clustering_policy != _DEFAULTS.clustering_policy:
        properties["clusteringPolicy"] = spec.clustering_policy
    if spec.eviction_policy != _DEFAULTS.eviction_policy:
        properties["evictionPolicy"] = spec.eviction_policy
    if spec.modules:
        modules: list[Value] = []
        for item in spec.modules:
            entry: dict[str, Value] = {"name": item["name"]}
            if item.get("args"):
                entry["args"] = item["args"]
            modules.append(entry)
        properties["modules"] = modules
    return properties


def managed_module(request: ManagedRedisRequest, spec: ManagedRedisSpec | None) -> str:
    """The cluster's module; ``spec`` is the built spec (None for ``as_existing`` clusters,
    which the module only reads)."""
    names, module, existing_body = start_cache_module(request)
    cluster = names.symbol
    database = f"{cluster}_default"
    if existing_body is not None:
        module.resource(cluster, CLUSTER_TYPE, existing_body, existing=True)
        if request.use_access_keys:
            module.resource(
                database,
                DATABASE_TYPE,
                {"name": MANAGED_DATABASE, "parent": Expr(cluster)},
                existing=True,
            )
    else:
        assert spec is not None
        module.resource(cluster, CLUSTER_TYPE, _cluster_body(request, spec))
        module.resource(
            database,
            DATABASE_TYPE,
            {
                "name": MANAGED_DATABASE,
                "properties": _database_properties(request, spec),
                "parent": Expr(cluster),
            },
        )
    host = f"{cluster}.properties.hostName"
    add_connection_string(
        module,
        names,
        request.use_access_keys,
        f"${{{host}}}:{MANAGED_PORT}",
        f"{database}.listKeys().primaryKey",
    )
    module.output("name", Expr(f"{cluster}.name"))
    module.output("id", Expr(f"{cluster}.id"))
    module.output("hostName", Expr(host))
    return module.text()
