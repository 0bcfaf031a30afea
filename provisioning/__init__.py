"""Provisioning of Azure Cache for Redis and Azure Managed Redis for apphost-sdk, and a local
ARM emulator to test it.

Public entry points:

- :func:`provisioning.run_mode.provision_for_run` -- used by the orchestrator in run mode.
- :class:`provisioning.provisioner.Provisioner` -- plan / provision / destroy (CLI commands).
- :func:`provisioning.app_model.requests_from_app` -- the app model's caches as requests.
- ``python -m provisioning.emulator`` -- the ARM emulator.

Importing this package does not import the app model nor the Azure SDK (those load lazily).
"""

from __future__ import annotations

from .errors import (
    AuthenticationFailedError,
    AuthorizationFailedError,
    CacheFailedError,
    NameNotAvailableError,
    ProductRetiredError,
    ProvisioningError,
    ProvisioningTimeoutError,
)
from .managed_spec import ManagedRedisRequest, ManagedRedisSpec
from .outputs import CacheOutputs
from .settings import ProvisioningSettings
from .spec import AzureRedisRequest, CacheSpec

__all__ = [
    "AuthenticationFailedError",
    "AuthorizationFailedError",
    "AzureRedisRequest",
    "CacheFailedError",
    "CacheOutputs",
    "CacheSpec",
    "ManagedRedisRequest",
    "ManagedRedisSpec",
    "NameNotAvailableError",
    "ProductRetiredError",
    "ProvisioningError",
    "ProvisioningSettings",
    "ProvisioningTimeoutError",
]
