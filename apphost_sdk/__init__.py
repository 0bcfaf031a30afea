"""apphost-sdk: a Python-native app host for distributed applications (after .NET Aspire).

``DistributedApplication.create_builder()`` starts an app model; heavy modules (Docker, Azure,
rich, redis) are imported only when used, so ``import apphost_sdk`` stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "ApphostError",
    "ConfigurationError",
    "DistributedApplication",
    "DistributedApplicationBuilder",
    "ResourceStartError",
    "ValidationError",
    "__version__",
]

if TYPE_CHECKING:
    from .errors import ApphostError, ConfigurationError, ResourceStartError, ValidationError
    from .model.builder import DistributedApplicationBuilder
    from .orchestration.app import DistributedApplication

_LAZY = {
    "DistributedApplication": ("apphost_sdk.orchestration.app", "DistributedApplication"),
    "DistributedApplicationBuilder": ("apphost_sdk.model.builder", "DistributedApplicationBuilder"),
    "ApphostError": ("apphost_sdk.errors", "ApphostError"),
    "ConfigurationError": ("apphost_sdk.errors", "ConfigurationError"),
    "ValidationError": ("apphost_sdk.errors", "ValidationError"),
    "ResourceStartError": ("apphost_sdk.errors", "ResourceStartError"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'apphost_sdk' has no attribute {name!r}")
