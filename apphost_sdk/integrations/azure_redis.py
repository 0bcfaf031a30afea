"""Azure Cache for Redis (``builder.add_azure_redis``): provisioned in Azure in run mode, or
replaced by a local Redis with ``run_as_container()``.

Azure is retiring this product (Azure Managed Redis, ``add_azure_managed_redis``, is its
successor); it keeps working for tenants that can still create caches. What it shares with
Managed Redis lives in :mod:`.azure_cache`.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from .azure_cache import AzureCacheResource

if TYPE_CHECKING:
    from ..model.builder import DistributedApplicationBuilder


class AzureRedisResource(AzureCacheResource):
    """An Azure Cache for Redis: provisioned in Azure, or replaced by a local Redis in run mode
    with ``run_as_container()``."""

    kind = "azure-redis"
    azure_noun = "cache"
    # 1-63 letters, digits and hyphens, starting and ending with a letter or digit, no '--'.
    azure_name_pattern = re.compile(r"^(?!.*--)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
    azure_name_rule = (
        "1-63 letters, digits and hyphens, starting and ending with a letter or digit, no '--'"
    )

    def to_azure_request(self) -> Any:
        """What the ``provisioning`` package needs to plan, provision or destroy this cache."""
        from provisioning.spec import AzureRedisRequest

        return AzureRedisRequest(
            resource_name=self.name,
            use_access_keys=self.use_access_keys,
            existing_name=self.existing_name,
            existing_resource_group=self.existing_resource_group,
            infrastructure_callbacks=tuple(self.infrastructure_callbacks),
        )


def add_azure_redis(builder: DistributedApplicationBuilder, name: str) -> AzureRedisResource:
    """``builder.add_azure_redis``: an Azure cache added to ``builder``."""
    return builder.add_resource(AzureRedisResource(builder, name))
