"""Reading the Azure caches out of a built app, duck-typed.

Kept apart from the provisioner so ``provisioning`` never imports the app model. The contract
a resource of ``app.model.resources`` meets to be provisioned as an Azure cache:

- a callable ``to_azure_request()`` returning a :class:`provisioning.spec.AzureRedisRequest`
  (Azure Cache for Redis) or a :class:`provisioning.managed_spec.ManagedRedisRequest` (Azure
  Managed Redis); resources without it are not Azure caches and are skipped;
- a bool ``is_container``: True when run mode replaces the cache by a local container.

Resources are never recognised by their class or its name, so any class meeting the contract
works (tests use small stand-ins).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .managed_spec import ManagedRedisRequest
from .naming import MAX_CLUSTER_PREFIX, cluster_name_prefix, generated_name_collisions
from .spec import AzureRedisRequest

#: The request types ``to_azure_request()`` may return.
REQUEST_TYPES = (AzureRedisRequest, ManagedRedisRequest)


def requests_from_app(
    app: Any, include_containers: bool = False
) -> list[AzureRedisRequest | ManagedRedisRequest]:
    """One request per Azure cache of ``app``, in model order.

    Caches with ``is_container`` set are skipped (run mode starts a local container for them)
    unless ``include_containers`` (for commands that act on the Azure side regardless).
    """
    requests: list[AzureRedisRequest | ManagedRedisRequest] = []
    for resource in getattr(app.model, "resources", []):
        to_request = getattr(resource, "to_azure_request", None)
        if not callable(to_request):
            continue
        if getattr(resource, "is_container", False) and not include_containers:
            continue
        request = to_request()
        if not isinstance(request, REQUEST_TYPES):
            raise TypeError(
                f"{type(resource).__name__}.to_azure_request() returned "
                f"{type(request).__name__}, not provisioning.spec.AzureRedisRequest or "
                "provisioning.managed_spec.ManagedRedisRequest"
            )
        requests.append(request)
    return requests


def state_dir_of(app: Any) -> Path:
    """The app's state directory (``app.state_dir``, or ``app.state.directory``)."""
    directory = getattr(app, "state_dir", None)
    if directory is None:
        directory = app.state.directory
    return Path(directory)


def generated_name_problems(requests: Iterable[Any]) -> list[str]:
    """Requests of one resource type whose generated Azure names would be one (``my-cache``
    and ``mycache``), naming both and the fix; ``as_existing`` requests are left out. A classic
    cache and a Managed Redis cluster may share a name: they are different Azure types."""
    classic: list[str] = []
    managed: list[str] = []
    for request in requests:
        if request.existing_name is not None:
            continue
        if isinstance(request, ManagedRedisRequest):
            managed.append(request.resource_name)
        else:
            classic.append(request.resource_name)
    return [
        *generated_name_collisions(classic),
        *generated_name_collisions(managed, cluster_name_prefix, MAX_CLUSTER_PREFIX),
    ]
