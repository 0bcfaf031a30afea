"""Shape and value checks of ARM request bodies: each returns the message of Azure's 400
``InvalidRequestContent`` naming the field to fix, or None when the value is acceptable
(absent values are acceptable; callers apply defaults)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

ENABLED_DISABLED = ("Enabled", "Disabled")
TLS_VERSIONS = ("1.0", "1.1", "1.2")
_PREFIX = "The request content was invalid and could not be deserialized: "


def object_problem(value: Any, path: str) -> str | None:
    """Unless ``value`` is absent or a JSON object: ``path`` must be an object."""
    if value is None or isinstance(value, dict):
        return None
    kind = type(value).__name__
    return f"{_PREFIX}'Expected an object for '{path}', got {kind}.' Send {path} as a JSON object."


def tags_problem(value: Any, path: str = "tags") -> str | None:
    """Unless ``value`` is absent or an object of string values (Azure's tags)."""
    problem = object_problem(value, path)
    if problem or value is None:
        return problem
    for key, tag in value.items():
        if not isinstance(tag, str):
            kind = type(tag).__name__
            return f"{_PREFIX}'The tag '{key}' of '{path}' must be a string, not {kind}.'"
    return None


def zones_problem(value: Any, path: str = "zones") -> str | None:
    """Unless ``value`` is absent or a list of strings (``["1", "2", "3"]``)."""
    if value is None or (isinstance(value, list) and all(isinstance(z, str) for z in value)):
        return None
    example = '["1", "2"]'
    return (
        f"{_PREFIX}'Expected a list of zone names such as {example} for '{path}', got {value!r}.'"
    )


def enum_problem(value: Any, path: str, allowed: Sequence[str]) -> str | None:
    """Unless ``value`` is absent or one of ``allowed`` (Azure's message for an unknown value)."""
    if value is None or value in allowed:
        return None
    return (
        f"{_PREFIX}'Requested value '{value}' was not found. Path '{path}'.' "
        f"Use one of: {', '.join(allowed)}."
    )


def first_problem(*problems: str | None) -> str | None:
    """The first message that is not None."""
    return next((p for p in problems if p is not None), None)
