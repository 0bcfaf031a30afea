"""Building the azure-mgmt clients: endpoint, credential, and our pipeline choices.

- azure-core's retries are off (``RetryPolicy.no_retries()``); :mod:`provisioning.retry` owns
  retrying.
- A loopback ``http://`` endpoint (the emulator) gets an authentication policy that allows
  plain http; ``ProvisioningSettings`` has already refused plain http anywhere else.
"""

from __future__ import annotations

from typing import Any

import attrs

from .credentials import token_scope
from .settings import ProvisioningSettings


def _auth_policy(credential: Any, scope: str, allow_http: bool) -> Any:
    from azure.mgmt.core.policies import ARMChallengeAuthenticationPolicy

    if not allow_http:
        return ARMChallengeAuthenticationPolicy(credential, scope)

    class _LoopbackAuthenticationPolicy(ARMChallengeAuthenticationPolicy):
        """Bearer auth that allows http: used only for a loopback emulator endpoint."""

        def on_request(self, request: Any) -> None:
            request.context["enforce_https"] = False
            super().on_request(request)

    return _LoopbackAuthenticationPolicy(credential, scope)


@attrs.frozen
class ArmClients:
    """The management clients a provisioning run needs: Azure Cache for Redis
    (``redis``), resource groups (``resources``) and Azure Managed Redis (``enterprise``)."""

    redis: Any
    resources: Any
    enterprise: Any = None

    def close(self) -> None:
        """Release the HTTP sessions."""
        for client in (self.redis, self.resources, self.enterprise):
            if client is None:
                continue
            try:
                client.close()
            except Exception:
                pass


def create_clients(settings: ProvisioningSettings, credential: Any) -> ArmClients:
    """Create the Redis, Managed Redis and resource-group clients for ``settings``' endpoint
    and subscription."""
    from azure.core.pipeline.policies import RetryPolicy
    from azure.mgmt.redis import RedisManagementClient
    from azure.mgmt.redisenterprise import RedisEnterpriseManagementClient
    from azure.mgmt.resource.resources import ResourceManagementClient

    endpoint = settings.resource_manager_endpoint
    allow_http = endpoint.startswith("http://") and settings.endpoint_is_loopback
    scope = token_scope(settings)

    def common() -> dict[str, Any]:
        return {
            "base_url": endpoint,
            "credential_scopes": [scope],
            "retry_policy": RetryPolicy.no_retries(),
            "authentication_policy": _auth_policy(credential, scope, allow_http),
            "connection_timeout": 30,
            "read_timeout": 120,
        }

    redis = RedisManagementClient(credential, settings.subscription_id, **common())
    resources = ResourceManagementClient(credential, settings.subscription_id, **common())
    enterprise = RedisEnterpriseManagementClient(credential, settings.subscription_id, **common())
    return ArmClients(redis=redis, resources=resources, enterprise=enterprise)
