"""The Key Vault that holds an Azure Redis cache's access-key secrets (Aspire's
``{name}-kv``), and the secret resources a cache module writes into it."""

from __future__ import annotations

from ..spec import TAG_RESOURCE_NAME
from .names import PublishedNames
from .render import BicepModule, Expr, identifier, take_unique_name

API = "2024-11-01"
VAULT_TYPE = f"Microsoft.KeyVault/vaults@{API}"
SECRET_TYPE = f"Microsoft.KeyVault/vaults/secrets@{API}"


def key_vault_module(vault_name: str) -> str:
    """A module creating the vault (RBAC authorization, standard SKU); outputs its URI,
    name and id, never a secret."""
    module = BicepModule()
    symbol = identifier(vault_name)
    module.resource(
        symbol,
        VAULT_TYPE,
        {
            "name": take_unique_name(vault_name, 24),
            "location": Expr("location"),
            "properties": {
                "tenantId": Expr("tenant().tenantId"),
                "sku": {"family": "A", "name": "standard"},
                "enableRbacAuthorization": True,
            },
            "tags": {TAG_RESOURCE_NAME: vault_name},
        },
    )
    module.output("vaultUri", Expr(f"{symbol}.properties.vaultUri"))
    module.output("name", Expr(f"{symbol}.name"))
    module.output("id", Expr(f"{symbol}.id"))
    return module.text()


def add_key_secrets(
    module: BicepModule, names: PublishedNames, connection_string: Expr, primary_key: Expr
) -> None:
    """Declare the existing vault (its name is the module's ``*_kv_outputs_name`` parameter)
    and store the connection string with the key and the key itself as secrets."""
    vault = module.resource(
        "keyVault", VAULT_TYPE, {"name": Expr(names.key_vault_param)}, existing=True
    )
    for symbol, secret, value in (
        ("connectionString", names.connection_string_secret, connection_string),
        ("primaryAccessKey", names.primary_key_secret, primary_key),
    ):
        module.resource(
            symbol,
            SECRET_TYPE,
            {"name": secret, "properties": {"value": value}, "parent": Expr(vault)},
        )


def add_connection_string(
    module: BicepModule, names: PublishedNames, use_access_keys: bool, address: str, key: str
) -> None:
    """The cache's connection string (``address`` is the interpolated host[:port] part,
    ``key`` the expression of its primary key): with access keys, stored as Key Vault
    secrets with the key; otherwise a plain ``connectionString`` output."""
    if use_access_keys:
        add_key_secrets(module, names, Expr(f"'{address},ssl=true,password=${{{key}}}'"), Expr(key))
    else:
        module.output("connectionString", Expr(f"'{address},ssl=true'"))
