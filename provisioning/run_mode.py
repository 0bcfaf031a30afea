"""Run mode: provision the app's Azure caches before their dependents start."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .managed_spec import ManagedRedisRequest
from .outputs import CacheOutputs
from .provisioner import Provisioner
from .settings import ProvisioningSettings
from .spec import AzureRedisRequest


def provision_for_run(
    requests: Sequence[AzureRedisRequest | ManagedRedisRequest],
    configuration: Any,
    state_dir: Path,
    app_name: str,
    on_status: Callable[[str, str], None],
    cancel: threading.Event | None = None,
) -> dict[str, CacheOutputs]:
    """Provision ``requests`` (Azure Cache for Redis and Azure Managed Redis alike)
    concurrently and return their outputs by resource name.

    ``on_status(resource, text)`` receives progress such as ``"Provisioning (Creating, 3m12s)"``
    and ``"Provisioned"``. Raises :class:`provisioning.errors.ProvisioningError` (an
    ``ApphostError``) naming the failed resource and the reason, or ``ConfigurationError`` for
    missing/invalid settings. A re-run with unchanged desired state makes no write: one GET
    per Azure Cache for Redis, two (cluster and database) per Azure Managed Redis.

    ``cancel`` (the app host's "stopping" event): once set, waiting stops within a poll and
    this raises :class:`provisioning.provisioner.ProvisioningCancelled`; the cache's state
    stays ``pending`` so the next run resumes waiting on the same create instead of starting
    another. Without it, a stop during a 20-minute create would wait for the create.
    """
    if not requests:
        return {}
    settings = ProvisioningSettings.from_configuration(configuration, app_name)
    provisioner = Provisioner(settings, Path(state_dir), app_name, on_status=on_status)
    done = threading.Event()

    def relay(event: threading.Event) -> None:
        while not done.is_set():
            if event.wait(0.1):
                provisioner.cancel()
                return

    if cancel is not None:
        if cancel.is_set():
            provisioner.cancel()
        threading.Thread(
            target=relay, args=(cancel,), name="azure-cancel-relay", daemon=True
        ).start()
    try:
        return provisioner.provision(requests)
    finally:
        done.set()
        provisioner.close()
