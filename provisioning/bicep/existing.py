"""How a module refers to an ``as_existing`` cache: its Azure name (and resource group, when
not the deployment's) arrive as parameters, and the cache is declared ``existing``."""

from __future__ import annotations

from typing import Any

from ..spec import TAG_APP, TAG_RESOURCE_NAME
from .names import EXISTING_GROUP_PARAM, EXISTING_NAME_PARAM, PublishedNames
from .render import BicepModule, Expr, Value


def declare_existing_params(module: BicepModule, request: Any) -> dict[str, Value]:
    """Declare the name (and group) parameters of an existing cache; return the body that
    declares it: ``name`` and, with a group, ``scope: resourceGroup(group)``."""
    body: dict[str, Value] = {"name": Expr(module.param(EXISTING_NAME_PARAM))}
    if request.existing_resource_group is not None:
        body["scope"] = Expr(f"resourceGroup({module.param(EXISTING_GROUP_PARAM)})")
    return body


def start_cache_module(request: Any) -> tuple[PublishedNames, BicepModule, dict[str, Value] | None]:
    """A cache module's opening statements: an ``as_existing`` cache's parameters and, with
    access keys, the vault-name parameter. Returns the names, the module and the body that
    declares the existing cache (None for a cache the module creates)."""
    names = PublishedNames(request.resource_name)
    module = BicepModule()
    existing_body = declare_existing_params(module, request) if request.is_existing else None
    if request.use_access_keys:
        module.param(names.key_vault_param)
    return names, module, existing_body


def existing_manifest_params(request: Any) -> dict[str, str]:
    """The manifest ``params`` that fill :func:`declare_existing_params`' parameters."""
    params = {EXISTING_NAME_PARAM: request.existing_name}
    if request.existing_resource_group is not None:
        params[EXISTING_GROUP_PARAM] = request.existing_resource_group
    return params


def user_tags(tags: dict[str, str]) -> dict[str, str]:
    """The tags a ``configure_infrastructure`` callback added, sorted; the run-mode tags
    (resource and app name) are left out, as Aspire's modules carry neither app tag."""
    return {k: tags[k] for k in sorted(tags) if k not in (TAG_APP, TAG_RESOURCE_NAME)}
