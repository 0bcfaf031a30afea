"""Run mode: provision the app's Azure caches before their dependents start."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .outputs import CacheOutputs
from .provisioner import Provisioner
from .settings import ProvisioningSettings
from .spec import AzureRedisRequest


def provision_for_run(
    requests: Sequence[AzureRedisRequest],
    configuration: Any,
    state_dir: Path,
    app_name: str,
    on_status: Callable[[str, str], None],
) -> dict[str, CacheOutputs]:
    """Provision ``requests`` concurrently and return their outputs by resource name.

    ``on_status(resource, text)`` receives progress such as ``"Provisioning (Creating, 3m12s)"``
    and ``"Provisioned"``. Raises :class:`provisioning.errors.ProvisioningError` (an
    ``ApphostError``) naming the failed resource and the reason, or ``ConfigurationError`` for
    missing/invalid settings. A re-run with unchanged desired state makes one GET per cache.
    """
    if not requests:
        return {}
    settings = ProvisioningSettings.from_configuration(configuration, app_name)
    provisioner = Provisioner(settings, Path(state_dir), app_name, on_status=on_status)
    try:
        return provisioner.provision(requests)
    finally:
        provisioner.close()
