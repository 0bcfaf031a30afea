"""Azure Managed Redis (``builder.add_azure_managed_redis``), Aspire 13's ``AddAzureManagedRedis``:
a ``Microsoft.Cache/redisEnterprise`` cluster with one database ``default`` on TLS port 10000,
Microsoft Entra ID by default. Provisioned in Azure in run mode, or replaced by a local Redis
with ``run_as_container()``.

Defaults (as Aspire's): SKU ``Balanced_B0``, TLS 1.2, public network access, clustering policy
``OSSCluster``, access keys off. ``configure_infrastructure(callback)`` receives the
``provisioning.managed_spec.ManagedRedisSpec`` to change them.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from .azure_cache import AzureCacheResource

if TYPE_CHECKING:
    from ..model.builder import DistributedApplicationBuilder


class AzureManagedRedisResource(AzureCacheResource):
    """An Azure Managed Redis cache: provisioned in Azure, or replaced by a local Redis in run
    mode with ``run_as_container()``."""

    kind = "azure-managed-redis"
    azure_noun = "cluster"
    azure_name_pattern = re.compile(r"^(?=.{1,60}$)[A-Za-z0-9]+(?:-[A-Za-z0-9]+)*$")
    azure_name_rule = (
        "1-60 letters, digits and single hyphens, starting and ending with a letter or digit"
    )

    def to_azure_request(self) -> Any:
        """What the ``provisioning`` package needs to plan, provision or destroy this cache."""
        from provisioning.managed_spec import ManagedRedisRequest

        return ManagedRedisRequest(
            resource_name=self.name,
            use_access_keys=self.use_access_keys,
            existing_name=self.existing_name,
            existing_resource_group=self.existing_resource_group,
            infrastructure_callbacks=tuple(self.infrastructure_callbacks),
        )


def add_azure_managed_redis(
    builder: DistributedApplicationBuilder, name: str
) -> AzureManagedRedisResource:
    """``builder.add_azure_managed_redis``: an Azure Managed Redis cache added to ``builder``."""
    return builder.add_resource(AzureManagedRedisResource(builder, name))
