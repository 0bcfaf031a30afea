"""Bicep and manifest entries for the Azure Redis resources in publish mode (Aspire 13's
output for the same model): one golden-file test per variant, a structural check of every
generated module with a real Bicep grammar (tree-sitter-bicep: no ERROR or MISSING node, the
resource types, API versions, parameters and outputs read back from the syntax tree, every
name an expression uses declared), determinism and no secret values.

Regenerate the golden files after an intended change with
``UPDATE_GOLDEN=1 .venv/bin/python -m pytest -q -p no:cacheprovider tests/publish/test_bicep.py``
and review the diff of tests/publish/golden/.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
import tree_sitter
import tree_sitter_bicep

from apphost_sdk.errors import ConfigurationError
from apphost_sdk.integrations.azure_cache import AzureCacheResource
from apphost_sdk.model.builder import DistributedApplicationBuilder
from apphost_sdk.orchestration.app import DistributedApplication
from apphost_sdk.publishing.context import PublishContext
from provisioning.managed_spec import ManagedRedisSpec
from provisioning.spec import CacheSpec

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"

CACHE = "Microsoft.Cache/redis@2024-11-01"
CACHE_POLICY = "Microsoft.Cache/redis/accessPolicyAssignments@2024-11-01"
CLUSTER = "Microsoft.Cache/redisEnterprise@2025-07-01"
DATABASE = "Microsoft.Cache/redisEnterprise/databases@2025-07-01"
DATABASE_POLICY = "Microsoft.Cache/redisEnterprise/databases/accessPolicyAssignments@2025-07-01"
VAULT = "Microsoft.KeyVault/vaults@2024-11-01"
SECRET = "Microsoft.KeyVault/vaults/secrets@2024-11-01"


def configure_classic(spec: CacheSpec) -> None:
    spec.sku_name, spec.family, spec.capacity = "Premium", "P", 2
    spec.zones = ["1", "2"]
    spec.public_network_access = "Disabled"
    spec.redis_configuration["maxmemory-policy"] = "allkeys-lru"
    spec.tags["team"] = "shop"


def configure_managed(spec: ManagedRedisSpec) -> None:
    spec.sku_name = "Balanced_B5"
    spec.high_availability = "Disabled"
    spec.clustering_policy = "EnterpriseCluster"
    spec.eviction_policy = "NoEviction"
    spec.modules = ["RediSearch", {"name": "RedisBloom", "args": "ERROR_RATE 0.01"}]
    spec.tags.update({"team": "shop", "cost-center": "42"})
    spec.zones = ["1", "2", "3"]


Variant = Callable[[DistributedApplicationBuilder], AzureCacheResource]

VARIANTS: dict[str, Variant] = {
    "classic-default": lambda b: b.add_azure_redis("cache"),
    "classic-keys": lambda b: b.add_azure_redis("cache").with_access_key_authentication(),
    "classic-existing": lambda b: b.add_azure_redis("cache").as_existing("my-cache", "rg-caches"),
    "classic-configured": lambda b: b.add_azure_redis("cache").configure_infrastructure(
        configure_classic
    ),
    "managed-default": lambda b: b.add_azure_managed_redis("cache"),
    "managed-keys": lambda b: b.add_azure_managed_redis("cache").with_access_key_authentication(),
    "managed-existing": lambda b: b.add_azure_managed_redis("cache").as_existing("my-cluster"),
    "managed-existing-keys": lambda b: (
        b.add_azure_managed_redis("cache")
        .as_existing("my-cluster", "rg-caches")
        .with_access_key_authentication()
    ),
    "managed-configured": lambda b: b.add_azure_managed_redis("cache").configure_infrastructure(
        configure_managed
    ),
}


@attrs.frozen
class Published:
    entries: dict[str, dict[str, Any]]
    env: dict[str, str]
    files: dict[str, str]


def publish(variant: str, tmp_path: Path) -> Published:
    builder = DistributedApplication.create_builder([])
    resource = VARIANTS[variant](builder)
    context = PublishContext(output_dir=tmp_path / "out", app_host_dir=tmp_path)
    entries = resource.publish_manifest(context)
    env = resource.manifest_reference_environment("cache", context)
    return Published(entries, env, dict(context.files))


def fragment(published: Published) -> str:
    return json.dumps({"entries": published.entries, "env": published.env}, indent=2) + "\n"


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if UPDATE:
        path.write_text(text, encoding="utf-8")
        return
    assert path.exists(), f"{path} is missing: run with UPDATE_GOLDEN=1 to write it"
    assert text == path.read_text(encoding="utf-8"), f"{name} differs from its golden file"


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_golden(variant: str, tmp_path: Path) -> None:
    published = publish(variant, tmp_path)
    check_golden(f"{variant}.manifest.json", fragment(published))
    for path, text in sorted(published.files.items()):
        check_golden(f"{variant}.{path}", text)
    if not UPDATE:
        expected = {p.name for p in GOLDEN.glob(f"{variant}.*")}
        actual = {f"{variant}.manifest.json"} | {f"{variant}.{p}" for p in published.files}
        assert actual == expected, "a golden file is missing or stale"


# -- structure, read back with the real Bicep grammar ---------------------------------------
PARSER = tree_sitter.Parser(tree_sitter.Language(tree_sitter_bicep.language()))


@attrs.define
class Module:
    params: dict[str, bool] = attrs.field(factory=dict)  # name -> has a default value
    secure: set[str] = attrs.field(factory=set)
    resources: dict[str, tuple[str, bool]] = attrs.field(factory=dict)  # symbol -> type, existing
    outputs: dict[str, str] = attrs.field(factory=dict)  # name -> expression text
    used: set[str] = attrs.field(factory=set)  # identifiers expressions refer to


def walk(node: tree_sitter.Node) -> Iterator[tree_sitter.Node]:
    yield node
    for child in node.children:
        yield from walk(child)


def text(node: tree_sitter.Node | None) -> str:
    assert node is not None and node.text is not None
    return node.text.decode()


def parse(source: str) -> Module:
    tree = PARSER.parse(source.encode())
    bad = [n for n in walk(tree.root_node) if n.type == "ERROR" or n.is_missing]
    assert not bad and not tree.root_node.has_error, [(n.type, n.start_point, text(n)) for n in bad]
    module = Module()
    pending_secure = False
    for node in tree.root_node.named_children:
        if node.type == "decorators":
            pending_secure = "@secure()" in text(node)
            continue
        names = [c for c in node.named_children if c.type == "identifier"]
        if node.type == "parameter_declaration":
            name = text(names[0])
            module.params[name] = "=" in [c.type for c in node.children]
            if pending_secure:
                module.secure.add(name)
        elif node.type == "resource_declaration":
            kind = next(c for c in node.named_children if c.type == "string")
            existing = "existing" in [c.type for c in node.children]
            module.resources[text(names[0])] = (text(kind).strip("'"), existing)
        elif node.type == "output_declaration":
            module.outputs[text(names[0])] = text(node.named_children[-1])
        pending_secure = False
    # Identifiers in expressions: skip declaration names, object keys and called functions.
    for node in walk(tree.root_node):
        if node.type != "identifier":
            continue
        parent = node.parent
        assert parent is not None
        if parent.type in ("parameter_declaration", "resource_declaration", "output_declaration"):
            continue
        if parent.type == "object_property" and parent.named_children[0] == node:
            continue
        if parent.type == "call_expression" and parent.named_children[0] == node:
            continue
        module.used.add(text(node))
    return module


def test_the_grammar_catches_broken_bicep() -> None:
    with pytest.raises(AssertionError):
        parse("resource x 'Microsoft.Cache/redis@2024-11-01' = {\n  name: 'a'\n")


EXPECTED_TYPES: dict[str, dict[str, list[tuple[str, bool]]]] = {
    "classic-default": {
        "cache.module.bicep": [(CACHE, False)],
        "cache-roles.module.bicep": [(CACHE, True), (CACHE_POLICY, False)],
    },
    "classic-keys": {
        "cache.module.bicep": [(CACHE, False), (VAULT, True), (SECRET, False), (SECRET, False)],
        "cache-kv.module.bicep": [(VAULT, False)],
    },
    "classic-existing": {
        "cache.module.bicep": [(CACHE, True)],
        "cache-roles.module.bicep": [(CACHE, True), (CACHE_POLICY, False)],
    },
    "classic-configured": {
        "cache.module.bicep": [(CACHE, False)],
        "cache-roles.module.bicep": [(CACHE, True), (CACHE_POLICY, False)],
    },
    "managed-default": {
        "cache.module.bicep": [(CLUSTER, False), (DATABASE, False)],
        "cache-roles.module.bicep": [(CLUSTER, True), (DATABASE, True), (DATABASE_POLICY, False)],
    },
    "managed-keys": {
        "cache.module.bicep": [
            (CLUSTER, False),
            (DATABASE, False),
            (VAULT, True),
            (SECRET, False),
            (SECRET, False),
        ],
        "cache-kv.module.bicep": [(VAULT, False)],
    },
    "managed-existing": {
        "cache.module.bicep": [(CLUSTER, True)],
        "cache-roles.module.bicep": [(CLUSTER, True), (DATABASE, True), (DATABASE_POLICY, False)],
    },
    "managed-existing-keys": {
        "cache.module.bicep": [
            (CLUSTER, True),
            (DATABASE, True),
            (VAULT, True),
            (SECRET, False),
            (SECRET, False),
        ],
        "cache-kv.module.bicep": [(VAULT, False)],
    },
    "managed-configured": {
        "cache.module.bicep": [(CLUSTER, False), (DATABASE, False)],
        "cache-roles.module.bicep": [(CLUSTER, True), (DATABASE, True), (DATABASE_POLICY, False)],
    },
}

FUNCTIONS_AND_KEYWORDS = {"resourceGroup", "tenant", "guid", "take", "uniqueString"}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_structure(variant: str, tmp_path: Path) -> None:
    published = publish(variant, tmp_path)
    assert set(published.files) == set(EXPECTED_TYPES[variant])
    by_path = {e["path"]: (name, e) for name, e in published.entries.items() if "path" in e}
    assert set(by_path) == set(published.files), "every module has exactly one entry"
    keys = "keys" in variant
    managed = variant.startswith("managed")
    for path, source in published.files.items():
        module = parse(source)
        assert list(module.resources.values()) == EXPECTED_TYPES[variant][path]
        assert module.params.get("location") is True  # location has its default
        # The entry's params fill exactly the module's parameters without a default.
        name, entry = by_path[path]
        required = {p for p, has_default in module.params.items() if not has_default}
        assert set(entry.get("params", {})) == required, name
        assert entry["type"] in ("azure.bicep.v0", "azure.bicep.v1")
        # Every name an expression uses is declared in the module.
        declared = set(module.params) | set(module.resources)
        assert module.used - declared - FUNCTIONS_AND_KEYWORDS == set(), path
        # No key is ever an output.
        assert not any("listKeys" in value for value in module.outputs.values())
        if path == "cache.module.bicep":
            expected = ["name", "id", "hostName"] if managed else ["name", "hostName"]
            if not keys:
                expected.insert(0, "connectionString")
            assert list(module.outputs) == expected
            if not keys:
                port = ":10000" if managed else ""
                assert module.outputs["connectionString"] == (
                    f"'${{cache.properties.hostName}}{port},ssl=true'"
                )
        elif path == "cache-kv.module.bicep":
            assert list(module.outputs) == ["vaultUri", "name", "id"]
        else:
            assert module.outputs == {}
            assert "principalId" in module.params
            assert ("principalName" in module.params) is not managed


def test_entries_and_references(tmp_path: Path) -> None:
    managed = publish("managed-default", tmp_path)
    assert managed.entries["cache"] == {
        "type": "azure.bicep.v0",
        "connectionString": "{cache.outputs.connectionString}",
        "path": "cache.module.bicep",
    }
    assert managed.entries["cache-roles"]["params"] == {
        "cache_outputs_name": "{cache.outputs.name}",
        "principalId": "",
    }
    assert managed.env == {
        "ConnectionStrings__cache": "{cache.connectionString}",
        "CACHE_HOST": "{cache.outputs.hostName}",
        "CACHE_PORT": "10000",
        "CACHE_URI": "rediss://{cache.outputs.hostName}:10000",
    }
    classic = publish("classic-default", tmp_path)
    assert classic.env["CACHE_PORT"] == "6380"
    assert classic.entries["cache-roles"]["params"]["principalName"] == ""

    keys = publish("managed-keys", tmp_path)
    assert keys.entries["cache"]["connectionString"] == (
        "{cache-kv.secrets.connectionstrings--cache}"
    )
    assert keys.entries["cache"]["params"] == {"cache_kv_outputs_name": "{cache-kv.outputs.name}"}
    assert "cache-roles" not in keys.entries
    assert keys.env["CACHE_PASSWORD"] == "{cache-kv.secrets.primaryaccesskey--cache}"
    assert keys.env["CACHE_URI"] == (
        "rediss://:{cache-password-uri-encoded.value}@{cache.outputs.hostName}:10000"
    )
    assert keys.entries["cache-password-uri-encoded"]["filter"] == "uri"

    existing = publish("managed-existing-keys", tmp_path)
    assert existing.entries["cache"]["params"]["existingResourceName"] == "my-cluster"
    assert existing.entries["cache"]["params"]["existingResourceGroup"] == "rg-caches"
    assert "scope: resourceGroup(existingResourceGroup)" in existing.files["cache.module.bicep"]
    roles = publish("classic-existing", tmp_path).entries["cache-roles"]
    assert roles["type"] == "azure.bicep.v1"  # deployed into the cache's group
    assert roles["scope"] == {"resourceGroup": "rg-caches"}


def test_connection_name_sets_the_prefix(tmp_path: Path) -> None:
    builder = DistributedApplication.create_builder([])
    cache = builder.add_azure_managed_redis("my-cache")
    context = PublishContext(output_dir=tmp_path, app_host_dir=tmp_path)
    env = cache.manifest_reference_environment("sessions-db", context)
    assert env["SESSIONS_DB_HOST"] == "{my-cache.outputs.hostName}"
    assert env["ConnectionStrings__sessions-db"] == "{my-cache.connectionString}"
    files = (cache.publish_manifest(context), context.files)
    assert (
        "resource my_cache 'Microsoft.Cache/redisEnterprise@2025-07-01'"
        in (files[1]["my-cache.module.bicep"])
    )
    assert (
        "take('mycache-${uniqueString(resourceGroup().id)}', 60)"
        in (files[1]["my-cache.module.bicep"])
    )


def test_run_as_container_publishes_the_azure_resource(tmp_path: Path) -> None:
    for make, variant in (
        (lambda b: b.add_azure_managed_redis("cache").run_as_container(), "managed-default"),
        (lambda b: b.add_azure_redis("cache").run_as_container(), "classic-default"),
    ):
        builder = DistributedApplication.create_builder([])
        resource = make(builder)
        context = PublishContext(output_dir=tmp_path, app_host_dir=tmp_path)
        entries = resource.publish_manifest(context)
        expected = publish(variant, tmp_path)
        assert (entries, context.files) == (expected.entries, expected.files)


def test_deterministic_and_free_of_secrets(tmp_path: Path) -> None:
    for variant in VARIANTS:
        first, second = publish(variant, tmp_path / "a"), publish(variant, tmp_path / "b")
        assert fragment(first) == fragment(second)
        assert first.files == second.files
        everything = fragment(first) + "".join(first.files.values())
        assert str(tmp_path) not in everything
        for word in ("password=", "primaryKey"):
            for line in everything.splitlines():
                if word in line:  # only ever as a listKeys() expression stored in Key Vault
                    assert "listKeys()" in line, line


def test_long_names_keep_the_whole_unique_suffix(tmp_path: Path) -> None:
    builder = DistributedApplication.create_builder([])
    name = "c" + "a" * 63
    builder.add_azure_redis(name)
    cache = builder.add_azure_managed_redis("m" + "b" * 63).with_access_key_authentication()
    context = PublishContext(output_dir=tmp_path, app_host_dir=tmp_path)
    cache.publish_manifest(context)
    vault = context.files[f"{cache.name}-kv.module.bicep"]
    assert f"take('{'m' + 'b' * 9}-${{uniqueString(resourceGroup().id)}}', 24)" in vault
    assert f"take('{'m' + 'b' * 45}-${{uniqueString(" in context.files[f"{cache.name}.module.bicep"]


def test_bad_configure_infrastructure_names_the_resource(tmp_path: Path) -> None:
    builder = DistributedApplication.create_builder([])

    def bad(spec: ManagedRedisSpec) -> None:
        spec.sku_name = "balanced_b0"

    cache = builder.add_azure_managed_redis("cache").configure_infrastructure(bad)
    context = PublishContext(output_dir=tmp_path, app_host_dir=tmp_path)
    with pytest.raises(ConfigurationError, match=r"cache: .*sku_name 'balanced_b0'.*Balanced_B0"):
        cache.publish_manifest(context)
    assert context.files == {}


def test_secure_parameters_render_with_the_decorator() -> None:
    from provisioning.bicep.render import BicepModule, Expr

    module = BicepModule()
    module.param("adminPassword", secure=True)
    module.param("replicas", "int")
    module.output("replicaCount", Expr("replicas"), "int")
    parsed = parse(module.text())
    assert parsed.secure == {"adminPassword"}
    assert parsed.params == {"location": True, "adminPassword": False, "replicas": False}
