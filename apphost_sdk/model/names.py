"""Resource-name rules and the names derived from them (environment prefixes, volume names)."""

from __future__ import annotations

import re

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9-]*$")
_CONNECTION_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
MAX_NAME_LENGTH = 64


def name_problem(name: object) -> str | None:
    """Return why ``name`` is not a valid resource name, or None when it is valid."""
    if not isinstance(name, str):
        return f"resource name must be a string, not {type(name).__name__}"
    if not name:
        return "resource name must not be empty"
    if len(name) > MAX_NAME_LENGTH:
        return (
            f"resource name {name!r} is {len(name)} characters long; use at most {MAX_NAME_LENGTH}"
        )
    if not name[0].isascii() or not name[0].isalpha():
        return f"resource name {name!r} must start with a letter"
    if not _NAME.fullmatch(name):  # match() would let a trailing newline through ($)
        return f"resource name {name!r} may contain only letters, digits and hyphens"
    if "--" in name:
        return f"resource name {name!r} must not contain '--'"
    if name.endswith("-"):
        return f"resource name {name!r} must not end with a hyphen"
    return None


def connection_name_problem(name: str) -> str | None:
    """Return why ``name`` cannot be a connection name (``ConnectionStrings__{name}`` and the
    ``{NAME}_HOST`` prefix), or None when it can."""
    if not name:
        return "the connection name must not be empty"
    if len(name) > MAX_NAME_LENGTH:
        return f"the connection name is {len(name)} characters long; use at most {MAX_NAME_LENGTH}"
    if not name[0].isascii() or not name[0].isalpha():
        return "the connection name must start with a letter"
    if not _CONNECTION_NAME.fullmatch(name):
        return "the connection name may contain only letters, digits, hyphens and underscores"
    return None


def env_name_problem(name: str) -> str | None:
    """Return why ``name`` cannot be an environment variable name, or None when it can."""
    if not name:
        return "the variable name must not be empty"
    if not _ENV_NAME.fullmatch(name):
        return (
            "the variable name may contain only letters, digits and underscores, "
            "and must not start with a digit"
        )
    return None


def env_prefix(connection_name: str) -> str:
    """Return the variable prefix for a connection: upper-cased, non-word characters as ``_``."""
    return re.sub(r"[^A-Za-z0-9_]", "_", connection_name).upper()


def slug(text: str) -> str:
    """Return a lower-case identifier safe for Docker names and folders."""
    s = re.sub(r"[^a-z0-9_.-]+", "-", text.lower()).strip("-.")
    return s or "app"
