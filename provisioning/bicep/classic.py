"""The Bicep module of an Azure Cache for Redis (``add_azure_redis``) as Aspire 13 writes it:
``Microsoft.Cache/redis``, Basic C1, TLS 1.2 only, Entra ID (``aad-enabled``) unless access
keys are asked for; values changed by ``configure_infrastructure`` are written too."""

from __future__ import annotations

from ..spec import TAG_RESOURCE_NAME, AzureRedisRequest, CacheSpec
from .existing import start_cache_module, user_tags
from .keyvault import add_connection_string
from .render import Expr, Value, take_unique_name

API = "2024-11-01"
CACHE_TYPE = f"Microsoft.Cache/redis@{API}"
#: The TLS port a reference hands to consumers.
SSL_PORT = 6380
MAX_NAME = 63


def _properties(spec: CacheSpec, use_access_keys: bool) -> dict[str, Value]:
    properties: dict[str, Value] = {
        "sku": {"name": spec.sku_name, "family": spec.family, "capacity": spec.capacity},
        "enableNonSslPort": spec.enable_non_ssl_port,
        "disableAccessKeyAuthentication": not use_access_keys,
        "minimumTlsVersion": spec.minimum_tls_version,
    }
    if spec.public_network_access != "Enabled":
        properties["publicNetworkAccess"] = spec.public_network_access
    config = spec.redis_configuration
    if config:
        first = [k for k in ("aad-enabled",) if k in config]
        properties["redisConfiguration"] = {
            k: config[k] for k in first + sorted(k for k in config if k not in first)
        }
    return properties


def classic_module(request: AzureRedisRequest, spec: CacheSpec | None) -> str:
    """The cache's module; ``spec`` is the built spec (None for ``as_existing`` caches,
    which the module only reads)."""
    names, module, existing_body = start_cache_module(request)
    cache = names.symbol
    if existing_body is not None:
        module.resource(cache, CACHE_TYPE, existing_body, existing=True)
    else:
        assert spec is not None
        body: dict[str, Value] = {
            "name": take_unique_name(request.resource_name, MAX_NAME),
            "location": Expr("location"),
            "properties": _properties(spec, request.use_access_keys),
        }
        if spec.zones:
            body["zones"] = list(spec.zones)
        body["tags"] = {TAG_RESOURCE_NAME: request.resource_name, **user_tags(spec.tags)}
        module.resource(cache, CACHE_TYPE, body)
    host = f"{cache}.properties.hostName"
    add_connection_string(
        module, names, request.use_access_keys, f"${{{host}}}", f"{cache}.listKeys().primaryKey"
    )
    module.output("name", Expr(f"{cache}.name"))
    module.output("hostName", Expr(host))
    return module.text()
