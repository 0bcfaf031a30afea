"""What a provisioned cache hands to its consumers."""

from __future__ import annotations

from typing import Any

import attrs

TLS_PORT = 6380
#: ``CacheOutputs.kind`` of an Azure Cache for Redis and of an Azure Managed Redis.
KIND_REDIS = "redis"
KIND_MANAGED_REDIS = "managed-redis"


def connection_string(host_name: str, ssl_port: int, primary_key: str | None) -> str:
    """StackExchange.Redis form: ``{host}:6380,ssl=true`` plus ``,password={key}`` with keys."""
    base = f"{host_name}:{ssl_port},ssl=true"
    return f"{base},password={primary_key}" if primary_key else base


@attrs.frozen
class CacheOutputs:
    """Outputs of one provisioned cache. Secrets are kept out of ``repr``.

    ``name`` is the Azure name; ``primary_key`` (alias ``password``) is None with Entra ID,
    where clients authenticate as ``principal_object_id`` with a token instead. ``kind`` is
    ``redis`` (Azure Cache for Redis) or ``managed-redis`` (Azure Managed Redis, whose
    ``clustering_policy`` tells clients whether to speak the cluster protocol).
    """

    resource_name: str
    name: str
    resource_id: str
    host_name: str
    ssl_port: int
    connection_string: str = attrs.field(repr=False)
    primary_key: str | None = attrs.field(default=None, repr=False)
    use_access_keys: bool = False
    principal_object_id: str | None = None
    kind: str = KIND_REDIS
    clustering_policy: str | None = None

    @property
    def password(self) -> str | None:
        """The primary access key, or None with Entra ID."""
        return self.primary_key

    @property
    def has_secret(self) -> bool:
        """True when the connection string carries a key."""
        return self.primary_key is not None

    def public_dict(self, show_secrets: bool = False) -> dict[str, Any]:
        """A JSON-ready dict; secrets are replaced by ``"***"`` unless ``show_secrets``."""
        secret_cs = self.connection_string if show_secrets or not self.has_secret else "***"
        data: dict[str, Any] = {
            "resource": self.resource_name,
            "name": self.name,
            "kind": self.kind,
            "resourceId": self.resource_id,
            "hostName": self.host_name,
            "sslPort": self.ssl_port,
            "authentication": "accessKey" if self.use_access_keys else "entraId",
            "connectionString": secret_cs,
        }
        if self.clustering_policy:
            data["clusteringPolicy"] = self.clustering_policy
        if self.principal_object_id:
            data["principalObjectId"] = self.principal_object_id
        if self.has_secret:
            data["primaryKey"] = self.primary_key if show_secrets else "***"
        return data

    @classmethod
    def build(
        cls,
        resource_name: str,
        name: str,
        resource_id: str,
        host_name: str,
        ssl_port: int | None,
        primary_key: str | None,
        principal_object_id: str | None,
        kind: str = KIND_REDIS,
        clustering_policy: str | None = None,
    ) -> CacheOutputs:
        """Assemble outputs, deriving the connection string."""
        port = ssl_port or TLS_PORT
        return cls(
            resource_name=resource_name,
            name=name,
            resource_id=resource_id,
            host_name=host_name,
            ssl_port=port,
            connection_string=connection_string(host_name, port, primary_key),
            primary_key=primary_key,
            use_access_keys=primary_key is not None,
            principal_object_id=principal_object_id,
            kind=kind,
            clustering_policy=clustering_policy,
        )
