"""Azure Cache for Redis (``builder.add_azure_redis``): provisioned in Azure in run mode, or
replaced by a local Redis with ``run_as_container()``.

The resource carries a ``ProvisioningAnnotation`` whose callback asks the ``provisioning``
package (imported only then) for the cache, and hands ``to_azure_request()`` to the ``plan``,
``provision`` and ``destroy`` commands.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..errors import ApphostError
from ..model.annotations import ProvisionedConnection, ProvisioningAnnotation, RunAsAnnotation
from ..model.arguments import optional_str, require_callable, require_str, short_repr, wrong_value
from ..model.connection import RedisEndpoint
from ..model.resources import Resource
from ..model.values import ProvisionContext
from .redis import RedisResource

if TYPE_CHECKING:
    from ..model.builder import DistributedApplicationBuilder

# Azure's rules for a cache name and a resource group name.
_AZURE_CACHE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
_RESOURCE_GROUP = re.compile(r"^[-\w.()]{0,89}[-\w()]$")


class AzureRedisResource(Resource):
    """An Azure Cache for Redis: provisioned in Azure, or replaced by a local Redis in run mode
    with ``run_as_container()``."""

    kind = "azure-redis"

    def __init__(self, builder: DistributedApplicationBuilder, name: str) -> None:
        super().__init__(builder, name)
        self.container: RedisResource | None = None
        self.use_access_keys = False
        self.existing_name: str | None = None
        self.existing_resource_group: str | None = None
        self.infrastructure_callbacks: list[Callable[[Any], None]] = []
        self.annotations.append(ProvisioningAnnotation(self._provision))

    @property
    def is_container(self) -> bool:
        """True when run mode replaces this cache by a local Redis."""
        return self.container is not None

    def run_as_container(
        self, configure: Callable[[RedisResource], object] | None = None
    ) -> AzureRedisResource:
        """In run mode, run a local Redis instead; ``configure`` receives that Redis resource."""
        require_callable(
            configure,
            f"{self.name}.run_as_container",
            "configure",
            "pass a function that receives the Redis resource, e.g. "
            "run_as_container(lambda r: r.with_host_port(6380)), or nothing",
            optional=True,
        )
        self.container = RedisResource(self.builder, self.name)
        self.remove_annotations(RunAsAnnotation)
        self.remove_annotations(ProvisioningAnnotation)
        self.annotations.append(RunAsAnnotation(self.container))
        if self.builder.execution_context.is_run_mode and configure is not None:
            configure(self.container)
        return self

    def with_access_key_authentication(self) -> AzureRedisResource:
        """Keep access keys on; the connection string then carries the primary key."""
        self.use_access_keys = True
        return self

    def as_existing(self, name: str, resource_group: str | None = None) -> AzureRedisResource:
        """Use an existing cache by its Azure name; it is never created or deleted."""
        where = f"{self.name}.as_existing"
        name = require_str(name, where, "name", "pass the existing cache's Azure name")
        if "--" in name or not _AZURE_CACHE.fullmatch(name):
            raise wrong_value(
                where,
                f"{short_repr(name)} is not an Azure cache name (1-63 letters, digits and "
                "hyphens, starting and ending with a letter or digit, no '--')",
                "pass the existing cache's name as the Azure portal shows it",
            )
        group_fix = "pass the cache's resource group name, or None for the configured one"
        group = optional_str(resource_group, where, "resource_group", group_fix)
        if group is not None and not _RESOURCE_GROUP.fullmatch(group):
            raise wrong_value(
                where,
                f"{short_repr(group)} is not a resource group name (1-90 letters, digits, "
                "'_', '-', '.', '(' and ')', not ending with '.')",
                group_fix,
            )
        self.existing_name = name
        self.existing_resource_group = group
        return self

    def configure_infrastructure(self, callback: Callable[[Any], None]) -> AzureRedisResource:
        """Change the provisioned cache's spec (SKU, tags, TLS, …) before it is applied."""
        require_callable(
            callback,
            f"{self.name}.configure_infrastructure",
            "callback",
            "pass a function that receives the cache's spec and changes it",
        )
        self.infrastructure_callbacks.append(callback)
        return self

    # -- provisioning ---------------------------------------------------------------------
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

    def _provision(self, context: ProvisionContext) -> ProvisionedConnection:
        try:
            from provisioning.run_mode import provision_for_run
        except ImportError as exc:
            raise ApphostError(
                f"Azure provisioning is not available ({exc}); call "
                f"{self.name}.run_as_container() to run a local Redis instead"
            ) from None

        def status(name: str, text: str) -> None:
            if text != "Provisioned":  # the state itself follows once outputs are read
                context.status(text)

        outputs = provision_for_run(
            [self.to_azure_request()],
            context.configuration,
            context.state_dir,
            context.app_name,
            status,
            cancel=context.cancel,  # type: ignore[arg-type]
        )[self.name]
        password = getattr(outputs, "password", None)
        endpoint = RedisEndpoint(
            outputs.host_name,
            outputs.ssl_port,
            password,
            tls=True,
            fixed_connection_string=outputs.connection_string,
        )
        return ProvisionedConnection(
            environment=endpoint.environment,
            endpoint=f"{outputs.host_name}:{outputs.ssl_port}",
            secrets=(password,) if password else (),
        )


def add_azure_redis(builder: DistributedApplicationBuilder, name: str) -> AzureRedisResource:
    """``builder.add_azure_redis``: an Azure cache added to ``builder``."""
    return builder.add_resource(AzureRedisResource(builder, name))
