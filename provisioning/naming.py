"""Deterministic, validated Azure names.

Azure Cache for Redis names are global DNS labels (``{name}.redis.cache.windows.net``), so the
name we create must be stable across runs (re-runs find the same cache) yet unlikely to collide
with other people's caches. As in Aspire, it is the app resource name without hyphens, ``-``,
and a suffix derived from the resource group id (which contains the subscription id). The SDK
does not validate names; we do, before any call, so a bad name never reaches Azure.
"""

from __future__ import annotations

import base64
import hashlib
import re
import uuid
from collections.abc import Callable, Iterable

from .errors import ConfigurationError

#: Aspire's rule for app-model resource names.
_RESOURCE_NAME = re.compile(r"^[A-Za-z](?:[A-Za-z0-9]|-(?!-))*$")
#: Azure's rule for Microsoft.Cache/redis names: 1-63 letters, digits, hyphens, alnum ends, no --.
_CACHE_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9]|-(?!-)){0,62}$")
_RESOURCE_GROUP = re.compile(r"^[-\w.()]{1,90}$")
_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")

MAX_CACHE_NAME = 63
SUFFIX_LENGTH = 13

#: Namespace for the deterministic access policy assignment names.
_ASSIGNMENT_NAMESPACE = uuid.UUID("3c0d9a53-6c1b-4f43-9c2e-8d7a1f5e0b21")


def validate_resource_name(name: str) -> None:
    """Check an app-model resource name (letters, digits, hyphens, starts with a letter)."""
    if not name or len(name) > 64 or not _RESOURCE_NAME.match(name) or name.endswith("-"):
        raise ConfigurationError(
            f"resource name {name!r} is invalid: use 1-64 letters, digits and single hyphens, "
            "starting with a letter and not ending with a hyphen"
        )


def validate_cache_name(name: str) -> None:
    """Check an Azure Cache for Redis name against Azure's rules."""
    if not name or len(name) > MAX_CACHE_NAME or not _CACHE_NAME.match(name) or name.endswith("-"):
        raise ConfigurationError(
            f"Azure cache name {name!r} is invalid: Azure requires 1-63 letters, digits and "
            "single hyphens, starting and ending with a letter or digit"
        )


def validate_resource_group_name(name: str) -> None:
    """Check a resource group name: 1-90 letters, digits, ``-_.()``, not ending with ``.``."""
    if not _RESOURCE_GROUP.match(name) or name.endswith(".") or not name.isascii():
        raise ConfigurationError(
            f"resource group name {name!r} is invalid: use 1-90 letters, digits and the "
            "characters - _ . ( ), not ending with a period (set Azure:ResourceGroup)"
        )


def validate_subscription_id(value: str) -> None:
    """Subscription ids are GUIDs; anything else is a typo worth catching before a call."""
    if not _GUID.match(value):
        raise ConfigurationError(
            f"Azure:SubscriptionId {value!r} is not a subscription id (a GUID such as "
            "00000000-0000-0000-0000-000000000000); `az account show --query id` prints yours"
        )


def resource_group_id(subscription_id: str, resource_group: str) -> str:
    """The ARM id of a resource group."""
    return f"/subscriptions/{subscription_id}/resourceGroups/{resource_group}"


def cache_resource_id(subscription_id: str, resource_group: str, name: str) -> str:
    """The ARM id of the Azure Cache for Redis ``name``."""
    group_id = resource_group_id(subscription_id, resource_group)
    return f"{group_id}/providers/Microsoft.Cache/Redis/{name}"


def unique_suffix(*parts: str) -> str:
    """A 13-character lowercase [a-z2-7] digest of ``parts`` (like Bicep's ``uniqueString``)."""
    digest = hashlib.sha256("|".join(p.lower() for p in parts).encode()).digest()
    return base64.b32encode(digest).decode().lower()[:SUFFIX_LENGTH]


def cache_name_for(resource_name: str, subscription_id: str, resource_group: str) -> str:
    """The Azure name of the cache for app resource ``resource_name``.

    ``{resource name without hyphens, lowercased}-{suffix}``, the prefix cut so the whole name
    fits 63 characters while the suffix stays intact. Raises ConfigurationError when the
    resource name or the result breaks the rules.
    """
    validate_resource_name(resource_name)
    suffix = unique_suffix(resource_group_id(subscription_id, resource_group))
    name = f"{cache_name_prefix(resource_name)}-{suffix}"
    validate_cache_name(name)
    return name


#: How many characters of a resource name (hyphens removed) its generated cache name keeps.
MAX_PREFIX = MAX_CACHE_NAME - 1 - SUFFIX_LENGTH


def cache_name_prefix(resource_name: str) -> str:
    """The part of ``cache_name_for`` taken from the resource name: hyphens removed,
    lowercased, at most ``MAX_PREFIX`` (49) characters. Two resources of one app whose
    prefixes are equal would get the same Azure cache (the suffix depends only on the
    subscription and the resource group)."""
    return resource_name.replace("-", "").lower()[:MAX_PREFIX]


def generated_name_collisions(
    resource_names: Iterable[str],
    prefix: Callable[[str], str] | None = None,
    kept: int = MAX_PREFIX,
) -> list[str]:
    """A problem for each resource whose generated Azure cache name would be that of an
    earlier one (``my-cache`` and ``mycache``; two names sharing their first 49 characters
    once hyphens are removed), naming both and the fix; empty when all are distinct.

    ``prefix`` is the naming rule of the resource type, keeping ``kept`` characters (default:
    Azure Cache for Redis'; :func:`cluster_name_prefix` for Managed Redis). Pure (no settings,
    no call): the model's ``build()`` and the provisioner both use it.
    Names that do not collide keep the names they always had.
    """
    first_of: dict[str, str] = {}
    problems: list[str] = []
    prefix_of = prefix or cache_name_prefix
    for name in resource_names:
        start = prefix_of(name)
        first = first_of.setdefault(start, name)
        if first != name:
            problems.append(_collision(first, name, f"{start}-<suffix>", kept))
    return problems


def _collision(first: str, second: str, azure_name: str, kept: int = MAX_PREFIX) -> str:
    return (
        f"Azure caches {first} and {second} would both be named {azure_name} in Azure (the "
        f"generated name drops hyphens and keeps the first {kept} characters): rename "
        f"{second} or {first} so that they differ there"
    )


def target_collisions(targets: Iterable[tuple[str, str, str, bool]]) -> list[str]:
    """Problems for requests that would act on one Azure cache: ``targets`` holds
    ``(resource name, resource group, Azure name, is existing)``. Two ``as_existing``
    references to one cache are fine (neither creates nor deletes it); any other pair is not.
    """
    first_of: dict[tuple[str, str], tuple[str, bool]] = {}
    problems: list[str] = []
    for resource, group, azure_name, existing in targets:
        key = (group.lower(), azure_name.lower())
        if key not in first_of:
            first_of[key] = (resource, existing)
            continue
        first, first_existing = first_of[key]
        if first_existing and existing:
            continue
        if not first_existing and not existing:
            problems.append(_collision(first, resource, azure_name))
            continue
        user, generated = (first, resource) if first_existing else (resource, first)
        problems.append(
            f"Azure cache {user} uses the existing cache {azure_name} in resource group "
            f"{group}, which is the name generated for {generated}, so both would act on one "
            f"cache: rename {generated} or point {user}.as_existing() at another cache"
        )
    return problems


def generated_resource_group(prefix: str, app_name: str, subscription_id: str) -> str:
    """``{prefix}-{app}-{8 hex}``: the resource group used when none is configured.

    Deterministic (subscription and app name) so that CI runs on fresh machines find the same
    group, and ``destroy`` can find what ``provision`` made.
    """
    app = re.sub(r"[^A-Za-z0-9_.()-]", "-", app_name).strip("-.") or "app"
    digest = hashlib.sha256(f"{subscription_id.lower()}|{app_name.lower()}".encode()).hexdigest()
    name = f"{prefix}-{app}"[: 90 - 9] + f"-{digest[:8]}"
    validate_resource_group_name(name)
    return name


def access_policy_assignment_name(cache_id: str, object_id: str, policy: str) -> str:
    """A UUID derived from cache, principal and policy, so re-runs never add a duplicate."""
    key = f"{cache_id.lower()}|{object_id.lower()}|{policy.lower()}"
    return str(uuid.uuid5(_ASSIGNMENT_NAMESPACE, key))


# -- Azure Managed Redis (Microsoft.Cache/redisEnterprise) ----------------------------------------
#: Azure's rule for redisEnterprise cluster names: 1-60 letters, digits, single inner hyphens.
_CLUSTER_NAME = re.compile(r"^(?=.{1,60}$)[A-Za-z0-9]+(-[A-Za-z0-9]+)*$")
MAX_CLUSTER_NAME = 60
#: How many characters of a resource name (hyphens removed) its generated cluster name keeps.
MAX_CLUSTER_PREFIX = MAX_CLUSTER_NAME - 1 - SUFFIX_LENGTH
#: The one database of a Managed Redis cluster.
MANAGED_DATABASE = "default"


def validate_cluster_name(name: str) -> None:
    """Check an Azure Managed Redis cluster name against Azure's rules."""
    if not _CLUSTER_NAME.match(name or ""):
        raise ConfigurationError(
            f"Azure Managed Redis name {name!r} is invalid: Azure requires 1-60 letters, digits "
            "and single hyphens, starting and ending with a letter or digit"
        )


def cluster_resource_id(subscription_id: str, resource_group: str, name: str) -> str:
    """The ARM id of the Azure Managed Redis cluster ``name``."""
    group_id = resource_group_id(subscription_id, resource_group)
    return f"{group_id}/providers/Microsoft.Cache/redisEnterprise/{name}"


def managed_database_id(cluster_id: str) -> str:
    """The ARM id of a cluster's one database, ``default``."""
    return f"{cluster_id}/databases/{MANAGED_DATABASE}"


def cluster_name_prefix(resource_name: str) -> str:
    """The part of :func:`cluster_name_for` taken from the resource name: hyphens removed,
    lowercased, at most ``MAX_CLUSTER_PREFIX`` (46) characters."""
    return resource_name.replace("-", "").lower()[:MAX_CLUSTER_PREFIX]


def cluster_name_for(resource_name: str, subscription_id: str, resource_group: str) -> str:
    """The Azure name of the Managed Redis cluster for app resource ``resource_name``.

    Same scheme as :func:`cache_name_for` (``{name without hyphens}-{suffix}``, Aspire's
    ``take(..., 60)``), cut to Azure's 60 characters for redisEnterprise names.
    """
    validate_resource_name(resource_name)
    suffix = unique_suffix(resource_group_id(subscription_id, resource_group))
    name = f"{cluster_name_prefix(resource_name)}-{suffix}"
    validate_cluster_name(name)
    return name
