"""The ``{name}-roles`` modules: data access for the deploying principal through an access
policy assignment on the cache (Azure Cache for Redis) or its database (Managed Redis),
named ``guid(target.id, principalId, policy)`` so a redeployment never duplicates it."""

from __future__ import annotations

from ..managed_spec import DEFAULT_ACCESS_POLICY
from ..naming import MANAGED_DATABASE
from ..spec import DATA_CONTRIBUTOR
from .names import PublishedNames
from .render import BicepModule, Expr, quote


def classic_roles_module(names: PublishedNames, api: str) -> str:
    """Azure Cache for Redis: ``Data Contributor`` for ``principalId`` (alias
    ``principalName``) on the existing cache named by ``{symbol}_outputs_name``."""
    module = BicepModule()
    name_param = module.param(names.outputs_name_param)
    module.param("principalId")
    module.param("principalName")
    cache = module.resource(
        names.symbol, f"Microsoft.Cache/redis@{api}", {"name": Expr(name_param)}, existing=True
    )
    module.resource(
        f"{cache}_contributor",
        f"Microsoft.Cache/redis/accessPolicyAssignments@{api}",
        {
            "name": Expr(f"guid({cache}.id, principalId, {quote(DATA_CONTRIBUTOR)})"),
            "properties": {
                "accessPolicyName": DATA_CONTRIBUTOR,
                "objectId": Expr("principalId"),
                "objectIdAlias": Expr("principalName"),
            },
            "parent": Expr(cache),
        },
    )
    return module.text()


def managed_roles_module(names: PublishedNames, api: str) -> str:
    """Azure Managed Redis: the built-in ``default`` policy for ``principalId`` on database
    ``default`` of the existing cluster named by ``{symbol}_outputs_name``."""
    module = BicepModule()
    name_param = module.param(names.outputs_name_param)
    module.param("principalId")
    cluster = module.resource(
        names.symbol,
        f"Microsoft.Cache/redisEnterprise@{api}",
        {"name": Expr(name_param)},
        existing=True,
    )
    database = module.resource(
        f"{cluster}_default",
        f"Microsoft.Cache/redisEnterprise/databases@{api}",
        {"name": MANAGED_DATABASE, "parent": Expr(cluster)},
        existing=True,
    )
    module.resource(
        f"{database}_contributor",
        f"Microsoft.Cache/redisEnterprise/databases/accessPolicyAssignments@{api}",
        {
            "name": Expr(f"guid({database}.id, principalId, {quote(DEFAULT_ACCESS_POLICY)})"),
            "properties": {
                "accessPolicyName": DEFAULT_ACCESS_POLICY,
                "user": {"objectId": Expr("principalId")},
            },
            "parent": Expr(database),
        },
    )
    return module.text()
