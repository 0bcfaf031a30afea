"""A small Bicep writer: Python values to Bicep literals, and a module assembled from
parameters, resources and outputs in the layout Aspire's generator uses (one blank line
between statements, two-space indentation), so equal input gives byte-identical text."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import TypeAlias

import attrs

#: The length of Bicep's ``uniqueString(...)``.
_UNIQUE_LENGTH = 13
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
LOCATION_PARAM = (
    "@description('The location for the resource(s) to be deployed.')\n"
    "param location string = resourceGroup().location"
)


@attrs.frozen
class Expr:
    """Bicep source written as is (an identifier, a function call, an interpolated string)."""

    text: str


Value: TypeAlias = str | int | bool | Expr | Sequence["Value"] | Mapping[str, "Value"]


def identifier(name: str) -> str:
    """The Bicep identifier for a resource name, as Aspire derives it: every character that
    is not a letter, digit or ``_`` becomes ``_``, and a leading digit gets a ``_``."""
    text = re.sub(r"[^A-Za-z0-9_]", "_", name)
    return f"_{text}" if text[:1].isdigit() else text


def quote(text: str) -> str:
    """A Bicep string literal: ``\\``, ``'`` and ``${`` escaped, control characters too."""
    escaped = (
        text.replace("\\", "\\\\")
        .replace("'", "\\'")
        .replace("${", "\\${")
        .replace("\n", "\\n")
        .replace("\r", "\\r")
        .replace("\t", "\\t")
    )
    return f"'{escaped}'"


def _key(key: str) -> str:
    return key if _IDENTIFIER.fullmatch(key) else quote(key)


def render_value(value: Value, indent: int = 0) -> str:
    """``value`` as Bicep source; objects and arrays span lines, indented from ``indent``."""
    pad = "  " * (indent + 1)
    end = "  " * indent
    if isinstance(value, Expr):
        return value.text
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return quote(value)
    if isinstance(value, Mapping):
        if not value:
            return "{ }"
        lines = [f"{pad}{_key(k)}: {render_value(v, indent + 1)}" for k, v in value.items()]
        return "{\n" + "\n".join(lines) + f"\n{end}}}"
    if not value:
        return "[ ]"
    items = [f"{pad}{render_value(v, indent + 1)}" for v in value]
    return "[\n" + "\n".join(items) + f"\n{end}]"


@attrs.define
class BicepModule:
    """A module under construction; ``text()`` renders it with ``location`` first."""

    statements: list[str] = attrs.field(factory=list)

    def param(self, name: str, kind: str = "string", *, secure: bool = False) -> str:
        """Declare ``param name kind`` (``@secure()`` for secrets) and return ``name``."""
        decorator = "@secure()\n" if secure else ""
        self.statements.append(f"{decorator}param {name} {kind}")
        return name

    def resource(
        self, symbol: str, type_version: str, body: Mapping[str, Value], *, existing: bool = False
    ) -> str:
        """Declare a resource (``existing`` to reference one) and return its symbol."""
        keyword = " existing" if existing else ""
        self.statements.append(
            f"resource {symbol} {quote(type_version)}{keyword} = {render_value(body)}"
        )
        return symbol

    def output(self, name: str, value: Value, kind: str = "string") -> None:
        """Declare ``output name kind = value``."""
        self.statements.append(f"output {name} {kind} = {render_value(value)}")

    def text(self) -> str:
        """The module's source, ending with one newline."""
        return "\n\n".join([LOCATION_PARAM, *self.statements]) + "\n"


def take_unique_name(resource_name: str, max_length: int) -> Expr:
    """Aspire's generated Azure name: the resource name lower-cased without hyphens (and any
    other non-alphanumeric character), a hyphen, ``uniqueString(resourceGroup().id)``, cut.
    A long stem is shortened so the 13-character unique suffix always fits whole."""
    stem = re.sub(r"[^a-z0-9]", "", resource_name.lower())[: max_length - 1 - _UNIQUE_LENGTH]
    return Expr(f"take('{stem}-${{uniqueString(resourceGroup().id)}}', {max_length})")
