"""Bicep for the Azure Redis resources in publish mode, as Aspire 13 emits it: pure functions
from a request (``AzureRedisRequest`` or ``ManagedRedisRequest``) to module texts and
Aspire-manifest entries. Nothing here calls Azure or reads the machine.

- :func:`publish_azure_redis`: the entries (``NAME``, ``NAME-kv`` with access keys,
  ``NAME-roles`` with Entra ID) and the module files (``NAME.module.bicep``, ...).
- :func:`reference_environment`: the variables a reference to the cache injects, as
  manifest expressions (``{NAME.outputs.hostName}``, ...).
"""

from __future__ import annotations

from typing import Any

import attrs

from apphost_sdk.errors import ApphostError, ConfigurationError

from ..managed_spec import MANAGED_PORT, ManagedRedisRequest
from ..spec import AzureRedisRequest
from . import classic, managed
from .existing import existing_manifest_params
from .keyvault import key_vault_module
from .names import PublishedNames
from .roles import classic_roles_module, managed_roles_module

__all__ = ["BicepPublication", "publish_azure_redis", "reference_environment"]

BICEP_V0 = "azure.bicep.v0"
BICEP_V1 = "azure.bicep.v1"


@attrs.frozen
class BicepPublication:
    """What one Azure Redis resource publishes: manifest entries by name, in order, and the
    files (path relative to the manifest -> text) they point to."""

    entries: dict[str, dict[str, Any]]
    files: dict[str, str]


def _is_managed(request: object) -> bool:
    if isinstance(request, ManagedRedisRequest):
        return True
    if isinstance(request, AzureRedisRequest):
        return False
    raise TypeError(
        f"cannot publish {type(request).__name__}: expected an AzureRedisRequest or a "
        "ManagedRedisRequest"
    )


def _build_spec(request: Any, app_name: str) -> Any:
    """``request.build_spec(app_name)``, with any unexpected exception of a user's
    ``configure_infrastructure`` callback turned into a one-line ConfigurationError naming the
    resource (publishing reports errors, not tracebacks)."""
    try:
        return request.build_spec(app_name)
    except ApphostError:
        raise
    except Exception as exc:
        raise ConfigurationError(
            f"{request.resource_name}: its configure_infrastructure callback raised "
            f"{type(exc).__name__}: {exc}"
        ) from exc


def publish_azure_redis(
    request: AzureRedisRequest | ManagedRedisRequest, app_name: str
) -> BicepPublication:
    """The entries and modules for ``request``; ``configure_infrastructure`` callbacks run
    through ``request.build_spec(app_name)`` (a bad value raises ConfigurationError naming
    the resource and field). ``as_existing`` caches are only read, so callbacks do not run."""
    is_managed = _is_managed(request)
    names = PublishedNames(request.resource_name)
    if is_managed:
        assert isinstance(request, ManagedRedisRequest)
        spec = None if request.is_existing else _build_spec(request, app_name)
        text = managed.managed_module(request, spec)
    else:
        assert isinstance(request, AzureRedisRequest)
        cspec = None if request.is_existing else _build_spec(request, app_name)
        text = classic.classic_module(request, cspec)
    files = {names.module_path: text}

    params: dict[str, Any] = {}
    if request.is_existing:
        params.update(existing_manifest_params(request))
    entry: dict[str, Any] = {"type": BICEP_V0}
    if request.use_access_keys:
        entry["connectionString"] = (
            f"{{{names.key_vault}.secrets.{names.connection_string_secret}}}"
        )
        params[names.key_vault_param] = f"{{{names.key_vault}.outputs.name}}"
    else:
        entry["connectionString"] = f"{{{names.name}.outputs.connectionString}}"
    entry["path"] = names.module_path
    if params:
        entry["params"] = params
    entries: dict[str, dict[str, Any]] = {names.name: entry}

    if request.use_access_keys:
        vault_path = f"{names.key_vault}.module.bicep"
        files[vault_path] = key_vault_module(names.key_vault)
        entries[names.key_vault] = {
            "type": BICEP_V0,
            "connectionString": f"{{{names.key_vault}.outputs.vaultUri}}",
            "path": vault_path,
        }
        entries[names.password_uri_encoded] = {
            "type": "annotated.string",
            "value": f"{{{names.key_vault}.secrets.{names.primary_key_secret}}}",
            "filter": "uri",
        }
    else:
        roles_path = f"{names.roles}.module.bicep"
        if is_managed:
            files[roles_path] = managed_roles_module(names, managed.API)
        else:
            files[roles_path] = classic_roles_module(names, classic.API)
        roles: dict[str, Any] = {"type": BICEP_V0, "path": roles_path}
        if request.existing_resource_group is not None:
            # The assignment is a child of the cache: deploy it into the cache's group.
            roles["type"] = BICEP_V1
            roles["scope"] = {"resourceGroup": request.existing_resource_group}
        roles["params"] = {names.outputs_name_param: f"{{{names.name}.outputs.name}}"}
        roles["params"]["principalId"] = ""
        if not is_managed:
            roles["params"]["principalName"] = ""
        entries[names.roles] = roles
    return BicepPublication(entries=entries, files=files)


def reference_environment(
    request: AzureRedisRequest | ManagedRedisRequest, connection_name: str, prefix: str
) -> dict[str, str]:
    """What a reference to the cache injects, as manifest expressions, under the names run
    mode uses: ``ConnectionStrings__{connection_name}``, ``{prefix}_HOST``, ``_PORT``,
    ``_URI`` and, with access keys, ``_PASSWORD`` (a Key Vault secret, URI-encoded inside
    ``_URI``). ``prefix`` is the app model's ``env_prefix(connection_name)`` (passed in so
    this package does not import the app model)."""
    port = MANAGED_PORT if _is_managed(request) else classic.SSL_PORT
    names = PublishedNames(request.resource_name)
    host = f"{{{names.name}.outputs.hostName}}"
    env = {
        f"ConnectionStrings__{connection_name}": f"{{{names.name}.connectionString}}",
        f"{prefix}_HOST": host,
        f"{prefix}_PORT": str(port),
        f"{prefix}_URI": f"rediss://{host}:{port}",
    }
    if request.use_access_keys:
        env[f"{prefix}_URI"] = f"rediss://:{{{names.password_uri_encoded}.value}}@{host}:{port}"
        env[f"{prefix}_PASSWORD"] = f"{{{names.key_vault}.secrets.{names.primary_key_secret}}}"
    return env
