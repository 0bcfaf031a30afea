"""The Aspire manifest writer: ``aspire-manifest.json`` from the app model, as Aspire 13 writes
it, for the Azure Developer CLI and other Aspire tooling.

Every value a run resolves (a port, a password, a provisioned host name) becomes an
expression the deployer resolves (``{cache.bindings.tcp.port}``, ``{cache-password.value}``):
the same variables as in run mode, never a secret value. Resource-type knowledge stays with
the resource: one with ``publish_manifest(context)`` writes its own entries, one with
``manifest_reference_environment(connection_name, context)`` says what a reference to it
injects; every other resource is derived from its annotations here.
"""

from __future__ import annotations

import json
import re
import string
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

from ..model.annotations import (
    ArgsAnnotation,
    ArgsCallbackAnnotation,
    ConfigurationValueAnnotation,
    ConnectionStringAnnotation,
    ContainerImageAnnotation,
    DockerfileBuildAnnotation,
    EndpointAnnotation,
    EntrypointAnnotation,
    EnvironmentCallbackAnnotation,
    ExecutableAnnotation,
    MountAnnotation,
    ParameterDefaultAnnotation,
    ProvisioningAnnotation,
    ReferenceEnvironmentAnnotation,
    RunAsAnnotation,
)
from ..model.builder import DistributedApplicationBuilder
from ..model.executables import PythonAppResource, PythonModuleResource, UvicornAppResource
from ..model.resources import ConnectionStringResource, ParameterResource, Resource
from ..model.values import EndpointReference, EnvValue, ReferenceContext, ResolvedEndpoint
from .context import ManifestExpressions, PublishContext, PublishError
from .dockerfiles import (
    app_folder,
    container_ports,
    dockerfile_name,
    literal_args,
    python_dockerfile,
    user_dockerfile,
)

Entry = dict[str, Any]

#: The ``generate`` default of a generated password (Aspire's for Redis).
GENERATED_PASSWORD = {"minLength": 22, "special": False}
#: Python app types published as a container built from a Dockerfile.
PYTHON_APPS = (PythonAppResource, PythonModuleResource, UvicornAppResource)
#: An expression: ``{name.property...}`` (the name, and the endpoint of a binding).
_EXPRESSION = re.compile(
    r"\{([A-Za-z][A-Za-z0-9-]*)\.(?:bindings\.([A-Za-z][A-Za-z0-9_-]*)\.)?[A-Za-z][\w.-]*\}"
)

X = ManifestExpressions


# --------------------------------------------------------------------------- entry points


def write_manifest(builder_or_model: Any, context: PublishContext) -> dict[str, Any]:
    """The manifest of the app (a builder, or the application built from one), with the
    extra files its entries need (generated Dockerfiles, Bicep modules) added to
    ``context.files``; ``publish()`` writes both (:func:`manifest_text` is the manifest's
    text). Raises ``PublishError`` naming what cannot be published."""
    return build_manifest(builder_or_model, context)


def manifest_text(manifest: Mapping[str, Any]) -> str:
    """The manifest as Aspire writes it: JSON indented by two spaces, with a trailing newline."""
    return json.dumps(manifest, indent=2, ensure_ascii=False) + "\n"


def build_manifest(builder_or_model: Any, context: PublishContext) -> dict[str, Any]:
    """The manifest of a builder (or an application built from one), without writing it;
    extra files are added to ``context.files``."""
    builder = _builder_of(builder_or_model)
    for r in builder.resources:
        for e in r.annotations_of(EndpointAnnotation):
            context.used_ports.update(p for p in (e.target_port, e.port) if p is not None)
    entries: dict[str, Entry] = {}
    derived: dict[str, Entry] = {}
    for r in builder.resources:
        for name, entry in resource_entries(r, context).items():
            _put(entries if name == r.name else derived, name, entry)
    for name, entry in derived.items():
        _put(entries, name, entry)
    for name, p in list(context.parameters.items()):
        if name not in entries:
            entries[name] = parameter_entry(p)
    manifest = {"resources": entries}
    _check_expressions(manifest)
    return manifest


# --------------------------------------------------------------------------- resources


def resource_entries(r: Resource, context: PublishContext) -> dict[str, Entry]:
    """The entries one resource publishes: its own first, then derived ones."""
    if getattr(r, "exclude_from_manifest", False):
        return {}
    own = getattr(r, "publish_manifest", None)
    if callable(own):
        return dict(own(context))
    if r.annotation(ProvisioningAnnotation) is not None or r.annotation(RunAsAnnotation):
        raise PublishError(
            f"{r.name}: a {r.kind} resource cannot be published yet (its type has no "
            "publish_manifest); remove it from the app host or publish it another way"
        )
    if isinstance(r, ConnectionStringResource):
        return {r.name: connection_string_entry(r)}
    if isinstance(r, ParameterResource):
        return {r.name: parameter_entry(r)}
    if isinstance(r, PYTHON_APPS):
        return {r.name: python_app_entry(r, context)}
    if r.annotation(ExecutableAnnotation) is not None:
        return {r.name: executable_entry(r, context)}
    if r.annotation(ContainerImageAnnotation) is not None:
        return {r.name: container_entry(r, context)}
    raise PublishError(
        f"{r.name}: a {r.kind} resource has no image, build, command or publish_manifest, so "
        "it cannot be written to the manifest; give it one or remove it"
    )


def parameter_entry(p: ParameterResource) -> Entry:
    """``parameter.v0``: secret only when secret; a generated password as a ``generate``
    default, a non-secret value from the code as a ``value`` default; never a secret value."""
    value: Entry = {"type": "string"}
    if p.secret:
        value["secret"] = True
    if p.annotation(ParameterDefaultAnnotation) is not None:
        value["default"] = {"generate": dict(GENERATED_PASSWORD)}
    elif p.explicit_value is not None and not p.secret:
        value["default"] = {"value": p.explicit_value}
    return {
        "type": "parameter.v0",
        "value": f"{{{p.name}.inputs.value}}",
        "inputs": {"value": value},
    }


def connection_string_entry(r: Resource) -> Entry:
    """``add_connection_string``: a secret ``parameter.v0`` with ``connectionString``."""
    return {
        "type": "parameter.v0",
        "connectionString": X.expr_param(r.name),
        "value": f"{{{r.name}.inputs.value}}",
        "inputs": {"value": {"type": "string", "secret": True}},
    }


def container_entry(
    r: Resource, context: PublishContext, connection_string: str | None = None
) -> Entry:
    """``container.v0`` for an image, ``container.v1`` with ``build`` for a Dockerfile."""
    build = r.annotation(DockerfileBuildAnnotation)
    entry: Entry = {"type": "container.v1" if build is not None else "container.v0"}
    cs = connection_string if connection_string is not None else _connection_string(r)
    if cs is not None:
        entry["connectionString"] = cs
    if build is not None:
        entry["build"] = {
            "context": context.relative_path(build.context),
            "dockerfile": context.relative_path(Path(build.context) / build.dockerfile),
        }
    else:
        image = r.annotation(ContainerImageAnnotation)
        assert image is not None
        entry["image"] = image.reference
    entrypoint = r.annotation(EntrypointAnnotation)
    if entrypoint is not None:
        entry["entrypoint"] = entrypoint.command
    _common(r, context, entry)
    volumes = [_volume(r, m) for m in r.annotations_of(MountAnnotation) if m.kind == "volume"]
    binds = [_bind_mount(r, m, context) for m in r.annotations_of(MountAnnotation)]
    binds = [b for b in binds if b is not None]
    if volumes:
        entry["volumes"] = volumes
    if binds:
        entry["bindMounts"] = binds
    return entry


def executable_entry(r: Resource, context: PublishContext) -> Entry:
    """``executable.v0``: the command and working directory relative to the manifest."""
    executable = r.annotation(ExecutableAnnotation)
    assert executable is not None
    command = getattr(r, "command", None)
    if not isinstance(command, str):
        raise PublishError(
            f"{r.name}: its command is known only when it runs, so it cannot be written to "
            "the manifest; give the resource a publish_manifest"
        )
    if Path(command).is_absolute() and context.inside_app_host(command):
        command = context.relative_path(command)  # a program outside is kept as given
    entry: Entry = {
        "type": "executable.v0",
        "command": command,
        "workingDirectory": context.relative_path(executable.working_directory),
    }
    _common(r, context, entry)
    return entry


def python_app_entry(r: Resource, context: PublishContext) -> Entry:
    """A Python app as ``container.v1`` built from its folder: with the app's own
    ``Dockerfile`` when it has one, else a generated ``NAME.Dockerfile`` beside the manifest
    (the same one the Docker Compose publisher writes)."""
    assert isinstance(r, PYTHON_APPS)
    own = user_dockerfile(r)
    if own is not None:
        dockerfile = context.relative_path(own)
    else:
        dockerfile = dockerfile_name(r)
        context.add_file(dockerfile, python_dockerfile(r))
    entry: Entry = {
        "type": "container.v1",
        "build": {"context": context.relative_path(app_folder(r)), "dockerfile": dockerfile},
    }
    # Literal arguments are the generated image's CMD; with a parameter among them, the
    # manifest says. The user's own Dockerfile owns its command: no args (as under Compose).
    _common(r, context, entry, with_args=own is None and literal_args(r) is None)
    env = entry.get("env", {})
    if "UVICORN_HOST" in env:  # loopback in run mode; a container must listen on all
        env["UVICORN_HOST"] = "0.0.0.0"
    return entry


# --------------------------------------------------------------------------- parts


def _common(r: Resource, context: PublishContext, entry: Entry, with_args: bool = True) -> None:
    """``args``, ``env`` and ``bindings``, shared by every workload entry."""
    bindings: dict[str, Entry] = {}
    endpoint_env: dict[str, str] = {}
    # A container has its ports to itself (the Dockerfile generator's choice); executables
    # share the host, so theirs come from one allocator for the whole manifest.
    in_container = entry["type"].startswith("container.")
    ports = container_ports(r) if in_container else {}
    for e in r.annotations_of(EndpointAnnotation):
        target = ports.get(e.name) or e.target_port or e.port or context.allocate_port()
        binding: Entry = {
            "scheme": e.scheme,
            "protocol": "tcp",
            "transport": "http" if e.scheme in ("http", "https") else "tcp",
            "targetPort": target,
        }
        if e.port is not None and e.port != target:
            binding["port"] = e.port
        bindings[e.name] = binding
        if e.env:
            endpoint_env[e.env] = X.expr_binding(r.name, e.name, "targetPort")
    symbolic = symbolic_context(context)
    if with_args:
        args = _arguments(r, context)
        if args is not None:
            entry["args"] = args
    env: dict[str, str] = {}
    for ref in r.references:
        env.update(reference_environment(ref.target, ref.connection_name, context))
    for name, value in r.environment.items():
        env[name] = value_expression(value, context)
    env.update(endpoint_env)
    for cb in r.annotations_of(EnvironmentCallbackAnnotation):
        env.update(cb.callback(symbolic))
    if env:
        entry["env"] = env
    if bindings:
        entry["bindings"] = bindings


def _arguments(r: Resource, context: PublishContext) -> list[str] | None:
    """The arguments in annotation order (parameters as ``{p.value}``), or None."""
    found = False
    out: list[str] = []
    for a in r.annotations:
        if isinstance(a, ArgsAnnotation):
            found = True
            out += [value_expression(v, context) for v in a.args]
        elif isinstance(a, ArgsCallbackAnnotation):
            found = True
            out += a.callback()
    return out if found else None


def value_expression(value: EnvValue, context: PublishContext) -> str:
    """An environment or argument value: a literal, ``{p.value}`` or an endpoint's URL."""
    if isinstance(value, ParameterResource):
        return context.note_parameter(value)
    if isinstance(value, EndpointReference):
        return X.expr_binding(value.resource.name, value.name, "url")
    return value


def reference_environment(
    target: Resource, connection_name: str, context: PublishContext
) -> dict[str, str]:
    """What ``with_reference(target)`` injects, as expressions with the run-mode names."""
    own = getattr(target, "manifest_reference_environment", None)
    if callable(own):
        return dict(own(connection_name, context))
    if target.annotation(ProvisioningAnnotation) is not None or target.annotation(RunAsAnnotation):
        raise PublishError(
            f"{target.name}: a {target.kind} resource cannot be referenced in the manifest yet "
            "(its type has no manifest_reference_environment)"
        )
    env: dict[str, str] = {}
    callback = target.annotation(ReferenceEnvironmentAnnotation)
    if callback is not None:
        env.update(callback.callback(symbolic_context(context), connection_name))
    elif target.annotation(ConnectionStringAnnotation) or target.annotation(
        ConfigurationValueAnnotation
    ):
        env[f"ConnectionStrings__{connection_name}"] = X.expr_connection_string(target.name)
    for e in target.annotations_of(EndpointAnnotation):
        if e.scheme in ("http", "https"):
            env[f"services__{connection_name}__{e.name}__0"] = X.expr_binding(
                target.name, e.name, "url"
            )
    return env


def symbolic_context(context: PublishContext) -> ReferenceContext:
    """A ``ReferenceContext`` whose values are manifest expressions, so that a resource
    type's environment callbacks write ``{r.bindings.tcp.host}`` and ``{p.value}`` instead of
    run-time values (a published workload runs in a container)."""

    def endpoint(resource: Resource, name: str) -> ResolvedEndpoint:
        return ResolvedEndpoint(
            X.expr_binding(resource.name, name, "host"),
            cast(int, X.expr_binding(resource.name, name, "port")),
            X.expr_binding(resource.name, name, "scheme"),
        )

    def configuration(key: str) -> str | None:
        section, _, name = key.partition(":")
        if section == "ConnectionStrings" and name:
            return X.expr_connection_string(name)
        if section == "Parameters" and name:
            return X.expr_param(name)
        return None

    return ReferenceContext(True, endpoint, context.note_parameter, configuration)


def _connection_string(r: Resource) -> str | None:
    """A ``with_connection_string`` template as an expression: ``{host}``, ``{port}`` and
    ``{param:NAME}`` become the binding's host and port and ``{NAME.value}``."""
    cs = r.annotation(ConnectionStringAnnotation)
    if cs is None:
        return None
    out: list[str] = []
    for literal, field, spec, _ in string.Formatter().parse(cs.template):
        if "{" in literal or "}" in literal:
            raise PublishError(
                f"{r.name}: its connection string template has a literal brace, which the "
                "manifest would read as an expression; remove it from with_connection_string"
            )
        out.append(literal)
        if field is None:
            continue
        name = f"{field}:{spec}" if spec else field
        if name in ("host", "port"):
            out.append(X.expr_binding(r.name, cs.endpoint, name))
        else:
            out.append(X.expr_param(name[6:]))
    return "".join(out)


def _volume(r: Resource, m: MountAnnotation) -> Entry:
    """A named volume; one derived per resource and target when the model names none."""
    name = m.source or f"{r.name}-{_slug(m.target)}"
    return {"name": name, "target": m.target, "readOnly": m.read_only}


def _bind_mount(r: Resource, m: MountAnnotation, context: PublishContext) -> Entry | None:
    """A bind mount relative to the manifest; one outside the app host's folder cannot be
    deployed (the deployer copies only that folder)."""
    if m.kind != "bind":
        return None
    assert m.source is not None
    if not context.inside_app_host(m.source):
        raise PublishError(
            f"{r.name}: the bind mount {m.source} (at {m.target}) is outside the app host's "
            f"folder {context.app_host_dir}, so it cannot be published; move it into that "
            "folder or use a volume (with_volume)"
        )
    return {"source": context.relative_path(m.source), "target": m.target, "readOnly": m.read_only}


def _slug(path: str) -> str:
    """``/var/lib/data`` -> ``var-lib-data``."""
    return "-".join(p for p in re.split(r"[^A-Za-z0-9]+", path) if p) or "root"


def _put(entries: dict[str, Entry], name: str, entry: Entry) -> None:
    current = entries.get(name)
    if current is not None and current != entry:
        raise PublishError(
            f"two resources publish different manifest entries named {name}: rename one of them"
        )
    entries.setdefault(name, entry)


def _check_expressions(manifest: Mapping[str, Any]) -> None:
    """Every name an expression uses must be an entry of the manifest, and every binding it
    uses one of that entry's bindings."""
    resources = manifest["resources"]
    missing: dict[str, list[str]] = {}
    for owner, entry in resources.items():
        for text in _strings(entry):
            for name, binding in _EXPRESSION.findall(text):
                target = resources.get(name)
                if target is None:
                    missing.setdefault(name, []).append(owner)
                elif binding and binding not in target.get("bindings", {}):
                    missing.setdefault(f"{name}.bindings.{binding}", []).append(owner)
    if missing:
        parts = [f"{n} (used by {', '.join(sorted(set(o)))})" for n, o in sorted(missing.items())]
        raise PublishError(
            "the manifest refers to resources or endpoints it has no entry for: "
            + "; ".join(parts)
            + "; add them to the app host (builder.add_*) or remove the references"
        )


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, Mapping):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def _builder_of(value: Any) -> DistributedApplicationBuilder:
    builder = value if isinstance(value, DistributedApplicationBuilder) else None
    if builder is None:
        builder = getattr(value, "builder", None)
    if not isinstance(builder, DistributedApplicationBuilder):
        raise PublishError(
            f"cannot publish a {type(value).__name__}: pass the builder of "
            "DistributedApplication.create_builder() or the application it built"
        )
    return builder


__all__ = [
    "build_manifest",
    "connection_string_entry",
    "container_entry",
    "executable_entry",
    "manifest_text",
    "parameter_entry",
    "python_app_entry",
    "reference_environment",
    "resource_entries",
    "symbolic_context",
    "value_expression",
    "write_manifest",
]
