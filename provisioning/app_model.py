"""Reading the Azure caches out of a built app, duck-typed.

Kept apart from the provisioner so ``provisioning`` never imports the app model: any object
with ``model.resources`` whose items look like ``AzureRedisResource`` works (tests use small
stand-ins).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .spec import AzureRedisRequest


def is_azure_redis(resource: Any) -> bool:
    """True for ``AzureRedisResource`` instances (checked by class name and attributes)."""
    kinds = {cls.__name__ for cls in type(resource).__mro__}
    if "AzureRedisResource" in kinds:
        return True
    return getattr(resource, "kind", None) == "azure-redis"


def requests_from_app(app: Any, include_containers: bool = False) -> list[AzureRedisRequest]:
    """One request per Azure cache of ``app``.

    Caches with ``run_as_container()`` are skipped (run mode starts a local Redis for them)
    unless ``include_containers`` (for commands that act on the Azure side regardless).
    """
    requests: list[AzureRedisRequest] = []
    for resource in getattr(app.model, "resources", []):
        if not is_azure_redis(resource):
            continue
        if getattr(resource, "is_container", False) and not include_containers:
            continue
        requests.append(
            AzureRedisRequest(
                resource_name=str(resource.name),
                use_access_keys=bool(getattr(resource, "use_access_keys", False)),
                existing_name=getattr(resource, "existing_name", None),
                existing_resource_group=getattr(resource, "existing_resource_group", None),
                infrastructure_callbacks=tuple(getattr(resource, "infrastructure_callbacks", [])),
            )
        )
    return requests


def state_dir_of(app: Any) -> Path:
    """The app's state directory (``app.state_dir``, or ``app.state.directory``)."""
    directory = getattr(app, "state_dir", None)
    if directory is None:
        directory = app.state.directory
    return Path(directory)
