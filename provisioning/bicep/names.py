"""The names a published Azure Redis resource derives (manifest entries, Bicep symbols and
parameters, Key Vault secrets), kept in one place so modules and entries agree."""

from __future__ import annotations

import attrs

from .render import identifier

#: Symbols and parameters a module declares besides the cache's own.
_RESERVED = frozenset(
    {
        "location",
        "principalId",
        "principalName",
        "keyVault",
        "connectionString",
        "primaryAccessKey",
        "existingResourceName",
        "existingResourceGroup",
    }
)
EXISTING_NAME_PARAM = "existingResourceName"
EXISTING_GROUP_PARAM = "existingResourceGroup"


@attrs.frozen
class PublishedNames:
    """Everything named after one resource ``name`` when it is published."""

    name: str

    @property
    def symbol(self) -> str:
        """The cache's Bicep symbol (``redis-cache`` -> ``redis_cache``)."""
        symbol = identifier(self.name)
        return f"{symbol}_resource" if symbol in _RESERVED else symbol

    @property
    def module_path(self) -> str:
        """The cache's module file, beside the manifest."""
        return f"{self.name}.module.bicep"

    @property
    def roles(self) -> str:
        """The manifest entry granting the deploying principal data access."""
        return f"{self.name}-roles"

    @property
    def key_vault(self) -> str:
        """The manifest entry of the Key Vault holding the access-key secrets."""
        return f"{self.name}-kv"

    @property
    def outputs_name_param(self) -> str:
        """The roles module's parameter for the cache's Azure name."""
        return f"{identifier(self.name)}_outputs_name"

    @property
    def key_vault_param(self) -> str:
        """The cache module's parameter for the Key Vault's Azure name."""
        return f"{identifier(self.key_vault)}_outputs_name"

    @property
    def connection_string_secret(self) -> str:
        """The Key Vault secret holding the connection string with the primary key."""
        return f"connectionstrings--{self.name}"

    @property
    def primary_key_secret(self) -> str:
        """The Key Vault secret holding the primary access key."""
        return f"primaryaccesskey--{self.name}"

    @property
    def password_uri_encoded(self) -> str:
        """The ``annotated.string`` entry with the primary key URI-encoded (for ``_URI``)."""
        return f"{self.name}-password-uri-encoded"
