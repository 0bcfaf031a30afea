"""What the two Azure Redis resources share: ``run_as_container``, access keys or Entra ID,
``as_existing``, ``configure_infrastructure``, and run-mode provisioning through the
``provisioning`` package (imported only when the app host provisions).

``add_azure_redis`` (Azure Cache for Redis) and ``add_azure_managed_redis`` (Azure Managed
Redis) differ in their Azure names, their request type and their defaults; each is one module.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from ..errors import ApphostError
from ..model.annotations import ProvisionedConnection, ProvisioningAnnotation, RunAsAnnotation
from ..model.arguments import optional_str, require_callable, require_str, short_repr, wrong_value
from ..model.connection import RedisEndpoint
from ..model.names import env_prefix
from ..model.resources import Resource
from ..model.values import ProvisionContext
from .azure_data_plane import CachePinger, emulator_environment
from .redis import RedisResource

if TYPE_CHECKING:
    from ..model.builder import DistributedApplicationBuilder
    from ..publishing.context import PublishContext

# Azure's rule for a resource group name.
_RESOURCE_GROUP = re.compile(r"^[-\w.()]{0,89}[-\w()]$")

_Self = TypeVar("_Self", bound="AzureCacheResource")


def _import_bicep() -> Any:
    """``provisioning.bicep``, imported only when publishing (as provisioning is only
    imported when the app host provisions), or an error saying what is missing."""
    try:
        import provisioning.bicep as bicep
    except ImportError as exc:
        raise ApphostError(
            f"publishing Azure Redis needs the provisioning package ({exc}); install "
            "apphost-sdk with its provisioning package"
        ) from None
    return bicep


class AzureCacheResource(Resource):
    """An Azure Redis cache: provisioned in Azure, or replaced by a local Redis in run mode
    with ``run_as_container()``. Subclasses say how the cache is named and requested."""

    #: What the Azure portal calls the thing ``as_existing`` names ("cache", "cluster").
    azure_noun = "cache"
    #: The Azure name rule, and how to say it in an error.
    azure_name_pattern = re.compile(r"^[A-Za-z0-9]+$")
    azure_name_rule = ""

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
        self: _Self, configure: Callable[[RedisResource], object] | None = None
    ) -> _Self:
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

    def with_access_key_authentication(self: _Self) -> _Self:
        """Keep access keys on; the connection string then carries the primary key."""
        self.use_access_keys = True
        return self

    def as_existing(self: _Self, name: str, resource_group: str | None = None) -> _Self:
        """Use an existing cache by its Azure name; it is never created or deleted."""
        where = f"{self.name}.as_existing"
        name = require_str(name, where, "name", f"pass the existing {self.azure_noun}'s Azure name")
        if not self.azure_name_pattern.fullmatch(name):
            raise wrong_value(
                where,
                f"{short_repr(name)} is not an Azure {self.azure_noun} name "
                f"({self.azure_name_rule})",
                f"pass the existing {self.azure_noun}'s name as the Azure portal shows it",
            )
        group_fix = (
            f"pass the {self.azure_noun}'s resource group name, or None for the configured one"
        )
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

    def configure_infrastructure(self: _Self, callback: Callable[[Any], None]) -> _Self:
        """Change the provisioned cache's spec (SKU, tags, TLS, …) before it is applied."""
        require_callable(
            callback,
            f"{self.name}.configure_infrastructure",
            "callback",
            "pass a function that receives the cache's spec and changes it",
        )
        self.infrastructure_callbacks.append(callback)
        return self

    # -- publishing -----------------------------------------------------------------------
    def publish_manifest(self, context: PublishContext) -> dict[str, dict[str, Any]]:
        """The manifest entries (this cache, then its Key Vault or its roles module) as
        Aspire 13 writes them; the Bicep modules go to ``context.files``.
        ``run_as_container()`` does not matter here: publish writes the Azure resource, as
        Aspire does. The app-name tag of run mode is not written, so any name serves."""
        publication = _import_bicep().publish_azure_redis(self.to_azure_request(), "app")
        for path, text in publication.files.items():
            context.add_file(path, text)
        return dict(publication.entries)

    def manifest_reference_environment(
        self, connection_name: str, context: PublishContext
    ) -> dict[str, str]:
        """What a reference injects, as manifest expressions: ``ConnectionStrings__{c}``,
        ``{C}_HOST``, ``{C}_PORT``, ``{C}_URI`` (and ``{C}_PASSWORD`` with access keys)."""
        bicep = _import_bicep()
        request = self.to_azure_request()
        return dict(
            bicep.reference_environment(request, connection_name, env_prefix(connection_name))
        )

    # -- provisioning ---------------------------------------------------------------------
    def to_azure_request(self) -> Any:
        """What the ``provisioning`` package needs to plan, provision or destroy this cache."""
        raise NotImplementedError

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
        extra = emulator_environment(context.configuration)

        def environment(connection_name: str) -> dict[str, str]:
            return {**endpoint.environment(connection_name), **extra}

        pinger = CachePinger(
            outputs.host_name, outputs.ssl_port, password, context.configuration, context.app_name
        )

        return ProvisionedConnection(
            environment=environment,
            endpoint=f"{outputs.host_name}:{outputs.ssl_port}",
            secrets=(password,) if password else (),
            health=pinger.failure,
        )
