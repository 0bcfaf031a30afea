"""What every publisher shares: where files go, manifest-relative paths, and the expression
syntax of Aspire's manifest (``{name.property}`` parts resolved at deploy time).

A resource type that knows how to publish itself receives a :class:`PublishContext` in its
``publish_manifest(context)`` and ``manifest_reference_environment(connection_name, context)``
methods; it adds extra files (Bicep modules, Dockerfiles) to ``context.files``.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath
from typing import Any

import attrs

from ..errors import ApphostError
from ..model.names import slug

#: The manifest's file name inside the output folder (Aspire's).
MANIFEST_FILE_NAME = "aspire-manifest.json"
#: The first target port handed to an endpoint whose program is told its port.
FIRST_ALLOCATED_PORT = 8000


class PublishError(ApphostError):
    """Something in the model cannot be published; the message names it and the fix."""


@attrs.define
class PublishContext:
    """Where one publish writes, and the extra files it collects.

    ``output_dir`` is the folder the manifest (or compose file) is written to; ``app_host_dir``
    the app host's folder, which bind mounts must stay inside. ``files`` maps a path relative
    to ``output_dir`` (with ``/``) to its text; they are written in sorted order.
    """

    output_dir: Path
    app_host_dir: Path
    files: dict[str, str] = attrs.field(factory=dict)
    #: The app's name (the app host folder's, as in run mode), for names derived from it.
    app_name: str = ""
    #: Ports the model fixes (never handed out by :meth:`allocate_port`).
    used_ports: set[int] = attrs.field(factory=set)
    #: Parameters an expression used, by name, so that each gets a manifest entry.
    parameters: dict[str, Any] = attrs.field(factory=dict)
    _next_port: int = attrs.field(default=FIRST_ALLOCATED_PORT, init=False)

    def __attrs_post_init__(self) -> None:
        self.output_dir = Path(os.path.abspath(self.output_dir))
        self.app_host_dir = Path(os.path.abspath(self.app_host_dir))
        if not self.app_name:
            self.app_name = slug(self.app_host_dir.name)

    def relative_path(self, path: str | os.PathLike[str]) -> str:
        """``path`` (absolute, or relative to the app host) relative to the output folder,
        with ``/`` separators, so no absolute path of this machine lands in a file."""
        p = Path(path)
        absolute = p if p.is_absolute() else self.app_host_dir / p
        rel = os.path.relpath(os.path.abspath(absolute), self.output_dir)
        return PurePosixPath(*Path(rel).parts).as_posix()

    def inside_app_host(self, path: str | os.PathLike[str]) -> bool:
        """True when ``path`` is the app host's folder or inside it."""
        p = Path(os.path.abspath(Path(self.app_host_dir) / path))
        return p == self.app_host_dir or self.app_host_dir in p.parents

    def allocate_port(self) -> int:
        """The next free target port for an endpoint whose program is told its port (as
        Aspire's manifest writer does: from 8000 up, skipping ports the model fixes)."""
        while self._next_port in self.used_ports:
            self._next_port += 1
        port = self._next_port
        self.used_ports.add(port)
        return port

    def note_parameter(self, parameter: Any) -> str:
        """Record that an expression uses ``parameter`` (so it gets an entry) and return
        ``{name.value}``."""
        self.parameters.setdefault(parameter.name, parameter)
        return ManifestExpressions.expr_param(parameter.name)

    def add_file(self, name: str, text: str) -> None:
        """Add a file to write beside the manifest; the same name twice must have the same
        text (two resources would otherwise overwrite each other's file)."""
        current = self.files.get(name)
        if current is not None and current != text:
            raise PublishError(
                f"two resources publish different files named {name}: rename one of them"
            )
        self.files[name] = text


class ManifestExpressions:
    """Aspire's manifest expressions, resolved by the deployer (azd) at deploy time."""

    @staticmethod
    def expr_connection_string(name: str) -> str:
        """``{name.connectionString}``: the resource's connection string."""
        return f"{{{name}.connectionString}}"

    @staticmethod
    def expr_binding(name: str, endpoint: str, prop: str) -> str:
        """``{name.bindings.endpoint.prop}``; ``prop`` is host, port, targetPort, scheme or
        url."""
        if prop not in ("host", "port", "targetPort", "scheme", "url"):
            raise ValueError(f"{prop!r} is not a binding property")
        return f"{{{name}.bindings.{endpoint}.{prop}}}"

    @staticmethod
    def expr_param(name: str) -> str:
        """``{name.value}``: a parameter's (or value entry's) value."""
        return f"{{{name}.value}}"

    @staticmethod
    def expr_output(name: str, output: str) -> str:
        """``{name.outputs.output}``: an output of a Bicep module."""
        return f"{{{name}.outputs.{output}}}"

    @staticmethod
    def expr_secret(vault: str, secret: str) -> str:
        """``{vault.secrets.secret}``: a Key Vault secret."""
        return f"{{{vault}.secrets.{secret}}}"


__all__ = ["MANIFEST_FILE_NAME", "ManifestExpressions", "PublishContext", "PublishError"]
