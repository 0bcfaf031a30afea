"""The Aspire manifest writer: entries per resource type, expressions for references, the
project's JSON Schema (every sample and a model with every resource type validate),
determinism, no secret in any file, and clear errors for what cannot be published."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped,unused-ignore]
import pytest

from apphost_sdk.model.annotations import (
    EnvironmentCallbackAnnotation,
    ReferenceEnvironmentAnnotation,
)
from apphost_sdk.model.builder import DistributedApplicationBuilder
from apphost_sdk.model.containers import ContainerResource
from apphost_sdk.model.resources import Resource
from apphost_sdk.model.validation import validate
from apphost_sdk.model.values import ReferenceContext
from apphost_sdk.publishing.context import ManifestExpressions, PublishContext, PublishError
from apphost_sdk.publishing.manifest import manifest_text, write_manifest

from .conftest import GIVEN_SECRETS, app_folder

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = sorted(p.parent.name for p in (ROOT / "samples").glob("*/apphost.py"))
Factory = Callable[..., DistributedApplicationBuilder]


def schema() -> dict[str, Any]:
    text = (
        resources.files("apphost_sdk.publishing")
        .joinpath("aspire-manifest.schema.json")
        .read_text(encoding="utf-8")
    )
    document: dict[str, Any] = json.loads(text)
    return document


def check_schema(manifest: dict[str, Any]) -> None:
    validator = jsonschema.Draft7Validator(schema())
    errors = sorted(validator.iter_errors(manifest), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)


def publish_to(builder: DistributedApplicationBuilder, out: Path) -> dict[str, Any]:
    """The manifest and its extra files written to ``out`` (as ``publish()`` does)."""
    context = PublishContext(out, builder.app_host_directory)
    manifest = write_manifest(builder, context)
    out.mkdir(parents=True, exist_ok=True)
    (out / "aspire-manifest.json").write_text(manifest_text(manifest), encoding="utf-8")
    for name, text in context.files.items():
        (out / name).write_text(text, encoding="utf-8")
    return manifest


def bare_builder(root: Path) -> DistributedApplicationBuilder:
    app_folder(root)
    return DistributedApplicationBuilder([], root / "apphost.py")


# --------------------------------------------------------------------------- the schema


def test_the_schema_is_draft_07_and_validates_a_model_with_every_resource_type(
    model_with_everything: Factory, tmp_path: Path
) -> None:
    jsonschema.Draft7Validator.check_schema(schema())
    builder = model_with_everything()
    validate(builder)  # the model itself is valid for run mode
    manifest = publish_to(builder, tmp_path / "out")
    check_schema(manifest)
    types = {e["type"] for e in manifest["resources"].values()}
    assert {
        "container.v0",
        "container.v1",
        "executable.v0",
        "parameter.v0",
        "annotated.string",
        "azure.bicep.v0",
    } <= types
    assert list(manifest) == ["resources"]
    # Model order first, then derived entries.
    names = list(manifest["resources"])
    assert names[:4] == ["api-key", "greeting", "db-password", "legacy-db"]
    assert names.index("existing") < names.index("cache-password")


def test_the_schema_refuses_what_the_reference_forbids() -> None:
    validator = jsonschema.Draft7Validator(schema())
    bad = [
        {},
        {"resources": {"x": {"image": "redis"}}},  # no type
        {"resources": {"x": {"type": "container.v0"}}},  # no image
        {"resources": {"x": {"type": "container.v1"}}},  # neither image nor build
        {"resources": {"x": {"type": "executable.v0", "command": "python"}}},
        {"resources": {"x": {"type": "parameter.v0", "value": "{x.inputs.value}"}}},
        {"resources": {"x": {"type": "azure.bicep.v0"}}},  # no path
        {
            "resources": {
                "x": {
                    "type": "container.v0",
                    "image": "redis",
                    "bindings": {"tcp": {"scheme": "tcp", "protocol": "tcp"}},  # no transport
                }
            }
        },
        {"resources": {"x": {"type": "container.v0", "image": "r", "env": {"A": 1}}}},
        {
            "resources": {
                "x": {
                    "type": "parameter.v0",
                    "value": "{x.inputs.value}",
                    "inputs": {"value": {"type": "string", "secret": False}},
                }
            }
        },
    ]
    for document in bad:
        assert list(validator.iter_errors(document)), document
    # Extensions (unknown types) pass, as in Aspire's schema; so does azure.bicep.v1.
    good = {
        "resources": {
            "x": {"type": "my.extension.v0", "anything": 1},
            "y": {
                "type": "azure.bicep.v1",
                "path": "y.module.bicep",
                "scope": {"resourceGroup": "g"},
            },
        }
    }
    assert not list(validator.iter_errors(good))


@pytest.mark.parametrize("sample", SAMPLES)
def test_every_sample_publishes_a_manifest_the_schema_accepts(sample: str, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "samples" / sample / "apphost.py"),
            "--publisher",
            "manifest",
            "--output-path",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    manifest = json.loads((out / "aspire-manifest.json").read_text(encoding="utf-8"))
    check_schema(manifest)
    for entry in manifest["resources"].values():
        if entry["type"].startswith("azure.bicep"):
            assert (out / entry["path"]).is_file()
        if "build" in entry:
            assert (out / entry["build"]["dockerfile"]).is_file()


# --------------------------------------------------------------------------- entries


def test_redis_is_a_container_with_a_generated_password_as_aspire_writes_it(
    tmp_path: Path,
) -> None:
    builder = bare_builder(tmp_path / "app")
    builder.add_redis("cache")
    manifest = publish_to(builder, tmp_path / "out")["resources"]
    assert manifest["cache"] == {
        "type": "container.v0",
        "connectionString": "{cache.bindings.tcp.host}:{cache.bindings.tcp.port},"
        "password={cache-password.value}",
        "image": "docker.io/library/redis:8.6",
        "entrypoint": "/bin/sh",
        "args": ["-c", 'exec redis-server --requirepass "$REDIS_PASSWORD" --protected-mode no'],
        "env": {"REDIS_PASSWORD": "{cache-password.value}"},
        "bindings": {
            "tcp": {"scheme": "redis", "protocol": "tcp", "transport": "tcp", "targetPort": 6379}
        },
    }
    assert manifest["cache-password"] == {
        "type": "parameter.v0",
        "value": "{cache-password.inputs.value}",
        "inputs": {
            "value": {
                "type": "string",
                "secret": True,
                "default": {"generate": {"minLength": 22, "special": False}},
            }
        },
    }
    assert manifest["cache-password-uri-encoded"] == {
        "type": "annotated.string",
        "value": "{cache-password.value}",
        "filter": "uri",
    }
    assert list(manifest) == ["cache", "cache-password", "cache-password-uri-encoded"]


def test_redis_without_a_password_has_no_password_anywhere(tmp_path: Path) -> None:
    builder = bare_builder(tmp_path / "app")
    cache = builder.add_redis("my-cache").with_password(None)
    builder.add_python_app("api", "api", "app.py").with_reference(cache)
    manifest = publish_to(builder, tmp_path / "out")["resources"]
    assert set(manifest) == {"my-cache", "api"}
    assert "env" not in manifest["my-cache"]
    assert manifest["api"]["env"] == {
        "ConnectionStrings__my-cache": "{my-cache.connectionString}",
        "MY_CACHE_HOST": "{my-cache.bindings.tcp.host}",
        "MY_CACHE_PORT": "{my-cache.bindings.tcp.port}",
        "MY_CACHE_URI": "{my-cache.bindings.tcp.scheme}://{my-cache.bindings.tcp.host}:"
        "{my-cache.bindings.tcp.port}",
    }


def test_references_use_the_run_mode_names_as_expressions(
    model_with_everything: Factory, tmp_path: Path
) -> None:
    manifest = publish_to(model_with_everything(), tmp_path / "out")["resources"]
    api = manifest["api"]
    assert api["env"]["ConnectionStrings__cache"] == "{cache.connectionString}"
    assert api["env"]["CACHE_HOST"] == "{cache.bindings.tcp.host}"
    assert api["env"]["CACHE_PORT"] == "{cache.bindings.tcp.port}"
    assert api["env"]["CACHE_PASSWORD"] == "{cache-password.value}"
    assert api["env"]["CACHE_URI"] == (
        "{cache.bindings.tcp.scheme}://:{cache-password-uri-encoded.value}"
        "@{cache.bindings.tcp.host}:{cache.bindings.tcp.port}"
    )
    assert api["env"]["ConnectionStrings__legacy-db"] == "{legacy-db.connectionString}"
    assert api["env"]["API_KEY"] == "{api-key.value}"
    assert api["env"]["GREETING"] == "{greeting.value}"
    assert api["env"]["PORT"] == "{api.bindings.http.targetPort}"
    # Azure caches publish as the Azure resource (run_as_container only matters in run mode).
    assert api["env"]["ConnectionStrings__managed"] == "{managed.connectionString}"
    assert manifest["legacy-cache"]["type"] == "azure.bicep.v0"
    assert manifest["managed"]["path"] == "managed.module.bicep"
    front = manifest["front"]["env"]
    assert front["services__api__http__0"] == "{api.bindings.http.url}"
    assert front["services__web__http__0"] == "{web.bindings.http.url}"
    assert front["UVICORN_HOST"] == "0.0.0.0"  # a container listens on every interface
    assert manifest["web"]["env"] == {
        "ConnectionStrings__db": "{db.connectionString}",
        "API_URL": "{api.bindings.http.url}",
    }
    assert manifest["db"]["connectionString"] == (
        "Host={db.bindings.tcp.host};Port={db.bindings.tcp.port};Password={db-password.value}"
    )


def test_workload_entries_bindings_volumes_and_paths(
    model_with_everything: Factory, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    manifest = publish_to(model_with_everything(azure=False), out)["resources"]
    assert manifest["api"]["type"] == "container.v1"
    assert manifest["api"]["build"] == {"context": "../app1/api", "dockerfile": "api.Dockerfile"}
    assert "FROM" in (out / "api.Dockerfile").read_text(encoding="utf-8")
    assert manifest["api"]["bindings"] == {
        "http": {"scheme": "http", "protocol": "tcp", "transport": "http", "targetPort": 8000}
    }
    assert manifest["web"]["build"] == {
        "context": "../app1/web",
        "dockerfile": "../app1/web/Dockerfile",
    }
    # port only when the app host fixes a host port different from the target port
    assert manifest["web"]["bindings"]["http"]["port"] == 8088
    assert manifest["session"]["bindings"]["tcp"]["port"] == 6390
    assert "port" not in manifest["cache"]["bindings"]["tcp"]
    assert manifest["worker"] == {
        "type": "executable.v0",
        "command": "python",
        "workingDirectory": "../app1/worker",
        "args": ["main.py", "--once"],
        "env": {
            "ConnectionStrings__session": "{session.connectionString}",
            "SESSION_HOST": "{session.bindings.tcp.host}",
            "SESSION_PORT": "{session.bindings.tcp.port}",
            "SESSION_URI": "{session.bindings.tcp.scheme}://:{db-password-uri-encoded.value}"
            "@{session.bindings.tcp.host}:{session.bindings.tcp.port}",
            "SESSION_PASSWORD": "{db-password.value}",
            "WORKER_PORT": "{worker.bindings.metrics.targetPort}",
        },
        "bindings": {
            "metrics": {"scheme": "tcp", "protocol": "tcp", "transport": "tcp", "targetPort": 8000}
        },
    }
    db = manifest["db"]
    assert db["image"] == "postgres:16"
    assert db["entrypoint"] == "docker-entrypoint.sh"
    assert db["args"] == ["postgres", "-c", "max_connections=50"]
    assert db["volumes"] == [
        {
            "name": "db-var-lib-postgresql-data",
            "target": "/var/lib/postgresql/data",
            "readOnly": False,
        }
    ]
    assert db["bindMounts"] == [
        {"source": "../app1/init", "target": "/docker-entrypoint-initdb.d", "readOnly": True}
    ]
    assert manifest["cache"]["volumes"] == [
        {"name": "cache-data", "target": "/data", "readOnly": False}
    ]


def test_parameters_and_connection_strings(model_with_everything: Factory, tmp_path: Path) -> None:
    manifest = publish_to(model_with_everything(azure=False), tmp_path / "out")["resources"]
    assert manifest["greeting"]["inputs"] == {
        "value": {"type": "string", "default": {"value": "hello"}}
    }
    # A secret given in code or configuration is an input without a default: never written.
    for name in ("api-key", "db-password"):
        assert manifest[name] == {
            "type": "parameter.v0",
            "value": f"{{{name}.inputs.value}}",
            "inputs": {"value": {"type": "string", "secret": True}},
        }
    assert manifest["legacy-db"] == {
        "type": "parameter.v0",
        "connectionString": "{legacy-db.value}",
        "value": "{legacy-db.inputs.value}",
        "inputs": {"value": {"type": "string", "secret": True}},
    }


def test_a_third_party_integration_publishes_its_run_mode_variables_as_expressions(
    tmp_path: Path,
) -> None:
    """A resource type of another package, written with public names only: its reference and
    environment callbacks give expressions in publish mode, with no publish code of its own."""

    class MemcachedResource(ContainerResource):
        kind = "memcached"

    def reference(context: ReferenceContext, connection_name: str) -> dict[str, str]:
        endpoint = context.endpoint(memcached, "tcp")
        return {f"{connection_name.upper()}_SERVERS": f"{endpoint.host}:{endpoint.port}"}

    def environment(context: ReferenceContext) -> dict[str, str]:
        return {"MEMCACHED_SECRET": context.parameter(token)}

    builder = bare_builder(tmp_path / "app")
    token = builder.add_parameter("token", secret=True)
    memcached = builder.add_resource(MemcachedResource(builder, "mc", "memcached", "1.6"))
    memcached.with_endpoint(11211, name="tcp")
    memcached.add_annotation(ReferenceEnvironmentAnnotation(reference))
    memcached.add_annotation(EnvironmentCallbackAnnotation(environment))
    builder.add_python_app("api", "api", "app.py").with_reference(memcached)
    manifest = publish_to(builder, tmp_path / "out")["resources"]
    assert manifest["api"]["env"] == {"MC_SERVERS": "{mc.bindings.tcp.host}:{mc.bindings.tcp.port}"}
    assert manifest["mc"]["env"] == {"MEMCACHED_SECRET": "{token.value}"}
    assert manifest["mc"]["image"] == "memcached:1.6"
    check_schema({"resources": manifest})


def test_expressions_helpers() -> None:
    x = ManifestExpressions
    assert x.expr_connection_string("c") == "{c.connectionString}"
    assert x.expr_binding("c", "tcp", "port") == "{c.bindings.tcp.port}"
    assert x.expr_param("p") == "{p.value}"
    assert x.expr_output("c", "hostName") == "{c.outputs.hostName}"
    with pytest.raises(ValueError):
        x.expr_binding("c", "tcp", "password")


# --------------------------------------------------------------------------- what must hold


def test_publishing_twice_gives_byte_identical_files(
    model_with_everything: Factory, tmp_path: Path
) -> None:
    # Same model in the same place, published twice into two folders at the same depth.
    root = tmp_path / "app"
    first = publish_to(model_with_everything(root=root), tmp_path / "one" / "out")
    second = publish_to(model_with_everything(root=root), tmp_path / "two" / "out")
    assert first == second

    def files(folder: Path) -> dict[str, bytes]:
        return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}

    one, two = files(tmp_path / "one" / "out"), files(tmp_path / "two" / "out")
    assert one == two
    text = one["aspire-manifest.json"].decode()
    assert text.endswith("}\n") and text.startswith('{\n  "resources": {\n')
    for name, data in one.items():
        assert str(tmp_path) not in data.decode(), f"{name} holds an absolute path"


def test_no_secret_value_in_any_written_file(
    model_with_everything: Factory, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    publish_to(model_with_everything(), out)
    written = {p.name: p.read_text(encoding="utf-8") for p in out.iterdir()}
    assert len(written) > 5
    for name, text in written.items():
        for secret in GIVEN_SECRETS:
            assert secret not in text, f"{name} holds a secret"
            assert secret.split("=")[-1] not in text, f"{name} holds a secret"
        # A password is always an expression (manifest or Bicep), never a literal.
        assert not re.search(r"password=(?!\$?\{)", text, re.IGNORECASE), name
    manifest = json.loads(written["aspire-manifest.json"])["resources"]
    for entry in manifest.values():
        if entry["type"] == "parameter.v0" and entry["inputs"]["value"].get("secret"):
            assert "value" not in entry["inputs"]["value"].get("default", {})


# --------------------------------------------------------------------------- bad input


def test_a_bind_mount_outside_the_app_folder_is_a_clear_error(tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    builder = bare_builder(tmp_path / "app")
    builder.add_container("db", "postgres").with_bind_mount(str(outside), "/data")
    with pytest.raises(PublishError) as info:
        write_manifest(builder, PublishContext(tmp_path / "out", builder.app_host_directory))
    message = str(info.value)
    assert "db" in message and str(outside) in message and "outside" in message
    assert "with_volume" in message


def test_a_resource_that_cannot_be_published_is_named(tmp_path: Path) -> None:
    class Gadget(Resource):
        kind = "gadget"

    builder = bare_builder(tmp_path / "app")
    builder.add_resource(Gadget(builder, "gizmo"))
    with pytest.raises(PublishError, match=r"gizmo: a gadget resource has no image"):
        write_manifest(builder, PublishContext(tmp_path / "out", builder.app_host_directory))


def test_a_literal_brace_in_a_connection_string_template_is_refused(tmp_path: Path) -> None:
    builder = bare_builder(tmp_path / "app")
    builder.add_container("db", "postgres").with_endpoint(5432).with_connection_string(
        "{{x}}{host}"
    )
    with pytest.raises(PublishError, match=r"db: its connection string template"):
        write_manifest(builder, PublishContext(tmp_path / "out", builder.app_host_directory))


def test_a_reference_to_something_outside_the_manifest_is_named(tmp_path: Path) -> None:
    builder = bare_builder(tmp_path / "app")
    ghost = ContainerResource(builder, "ghost", "nginx").with_http_endpoint(80)  # never added
    web = builder.add_container("web", "nginx").with_environment("UP", ghost.get_endpoint("http"))
    context = PublishContext(tmp_path / "out", builder.app_host_directory)
    with pytest.raises(PublishError, match=r"no entry for: ghost \(used by web\)"):
        write_manifest(builder, context)
    # An entry without the endpoint an expression uses is named the same way.
    builder.add_resource(ghost)
    plain = builder.add_container("plain", "nginx")
    web.add_annotation(
        EnvironmentCallbackAnnotation(lambda c: {"PLAIN": c.endpoint(plain, "http").url})
    )
    with pytest.raises(PublishError, match=r"no entry for: plain\.bindings\.http \(used by web\)"):
        write_manifest(builder, PublishContext(tmp_path / "out", builder.app_host_directory))


def test_publish_takes_a_builder_or_an_app(tmp_path: Path) -> None:
    with pytest.raises(PublishError, match=r"cannot publish a str"):
        write_manifest("apphost.py", PublishContext(tmp_path, tmp_path))
