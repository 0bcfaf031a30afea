"""Argument checks of the builder and resource methods, run at the call.

Each failure raises ``ModelArgumentError`` (wrong type, also a ``TypeError``) or
``ModelValueError`` (wrong value, also a ``ValueError``) whose one-line message names the call
(``cache.with_host_port``), what is wrong with the argument (its type, and its value unless it may
be secret) and the fix. Problems of the model as a whole (name format, cycles, …) are left to
``build()``, which lists them all at once.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import Any

from ..errors import ModelArgumentError, ModelValueError
from .names import connection_name_problem, env_name_problem

_MAX_SHOWN = 60


def short_repr(value: object) -> str:
    """``repr(value)``, cut to a length that fits in a one-line message."""
    text = repr(value)
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 3] + "..."


def shown(value: object, secret: bool = False) -> str:
    """How a bad argument appears in a message: its type, and its value unless it may be secret."""
    if value is None:
        return "None"
    kind = type(value).__name__
    if secret:
        return f"a {kind}" if kind[0] not in "aeiouAEIOU" else f"an {kind}"
    return f"{kind} {short_repr(value)}"


def wrong_type(
    where: str, what: str, expected: str, value: object, fix: str, secret: bool = False
) -> ModelArgumentError:
    """The error for ``what`` (an argument) not being ``expected``."""
    return ModelArgumentError(
        f"{where}: {what} must be {expected}, got {shown(value, secret)}; {fix}"
    )


def wrong_value(where: str, problem: str, fix: str) -> ModelValueError:
    """The error for an argument of the right type with a wrong value."""
    return ModelValueError(f"{where}: {problem}; {fix}")


def require_name(name: object, method: str, example: str) -> str:
    """A resource name given to ``builder.{method}``: it must be a str (its format is checked by
    ``build()``, which lists every problem at once)."""
    if not isinstance(name, str):
        raise ModelArgumentError(
            f"{method}({short_repr(name)}): the name must be a string, got "
            f"{type(name).__name__}; pass a name such as {example!r}"
        )
    return name


def require_str(
    value: object,
    where: str,
    what: str,
    fix: str,
    *,
    secret: bool = False,
    allow_empty: bool = False,
) -> str:
    """A str (non-empty unless ``allow_empty``)."""
    if not isinstance(value, str):
        raise wrong_type(where, what, "a string", value, fix, secret)
    if not value and not allow_empty:
        raise wrong_value(where, f"{what} must not be empty", fix)
    return value


def optional_str(value: object, where: str, what: str, fix: str) -> str | None:
    """None or a non-empty str."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise wrong_type(where, what, "None or a string", value, fix)
    if not value:
        raise wrong_value(where, f"{what} must not be empty", fix)
    return value


def require_bool(value: object, where: str, what: str) -> bool:
    """A real bool (not 0/1 or a truthy string)."""
    if not isinstance(value, bool):
        raise wrong_type(where, what, "True or False", value, f"pass {what}=True or {what}=False")
    return value


def require_int(value: object, where: str, what: str, minimum: int, example: int) -> int:
    """An int (not a bool) of at least ``minimum``."""
    fix = f"pass a whole number such as {what}={example}"
    if isinstance(value, bool) or not isinstance(value, int):
        raise wrong_type(where, what, f"an int of at least {minimum}", value, fix)
    if value < minimum:
        raise wrong_value(where, f"{what} must be at least {minimum}, got {value}", fix)
    return value


def optional_port(value: object, where: str, what: str = "port", example: int = 6380) -> int | None:
    """None (a free port) or an int port from 1 to 65535; a bool is not a port."""
    fix = f"pass a number such as {what}={example}, or None for a free port"
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise wrong_type(where, what, "an int from 1 to 65535", value, fix)
    if not 1 <= value <= 65535:
        raise wrong_value(where, f"{value} is not a port (1-65535)", fix)
    return value


def require_url_path(value: object, where: str) -> str:
    """A URL path such as ``/health``: starting with ``/``, no white space."""
    fix = "pass a path such as '/health'"
    path = require_str(value, where, "path", fix)
    if not path.startswith("/") or any(c.isspace() for c in path):
        raise wrong_value(
            where,
            f"{short_repr(path)} is not a URL path (it must start with '/' and have no spaces)",
            fix,
        )
    return path


def require_timedelta(value: object, where: str, what: str, example: str) -> timedelta:
    """A ``datetime.timedelta`` (a bare number would leave the unit unclear)."""
    if not isinstance(value, timedelta):
        raise wrong_type(
            where,
            what,
            "a datetime.timedelta",
            value,
            f"pass e.g. {what}={example} (from datetime import timedelta)",
        )
    return value


def require_path(value: object, where: str, what: str, fix: str) -> str:
    """A non-empty str or ``os.PathLike`` of str, returned as a str."""
    path = value
    if isinstance(value, os.PathLike):
        path = os.fspath(value)
    if not isinstance(path, str):
        raise wrong_type(where, what, "a string or a pathlib.Path", value, fix)
    if not path:
        raise wrong_value(where, f"{what} must not be empty", fix)
    return path


def require_callable(
    value: object, where: str, what: str, fix: str, *, optional: bool = False
) -> Callable[..., Any] | None:
    """A callable (or None when ``optional``)."""
    if value is None and optional:
        return None
    if not callable(value):
        expected = "None or a callable" if optional else "a callable"
        raise wrong_type(where, what, expected, value, fix)
    return value


def require_args(args: Iterable[object], where: str) -> list[str]:
    """Command-line arguments: strings, numbers (converted) or paths, never None."""
    out: list[str] = []
    for i, a in enumerate(args):
        if isinstance(a, os.PathLike):
            a = os.fspath(a)
        if isinstance(a, str):
            out.append(a)
        elif isinstance(a, (int, float)) and not isinstance(a, bool):
            out.append(str(a))
        else:
            raise wrong_type(
                where,
                f"argument {i + 1}",
                "a string (or a number or path, converted to a string)",
                a,
                "pass every argument as a string such as '--port', and leave out missing ones",
            )
    return out


def require_env_name(value: object, where: str, what: str, example: str) -> str:
    """An environment variable name: ``[A-Za-z_][A-Za-z0-9_]*``."""
    fix = f"pass a name such as {example!r}"
    if not isinstance(value, str):
        raise wrong_type(where, what, "a string", value, fix)
    problem = env_name_problem(value)
    if problem:
        raise wrong_value(where, f"{short_repr(value)} is not a variable name ({problem})", fix)
    return value


def optional_connection_name(value: object, where: str) -> str | None:
    """None (the resource's name) or a name usable as ``ConnectionStrings__{name}`` and as the
    ``{NAME}_HOST`` prefix: letters, digits, hyphens and underscores, starting with a letter."""
    fix = "pass a name such as 'cache' or 'session-store', or None for the resource's name"
    if value is None:
        return None
    if not isinstance(value, str):
        raise wrong_type(where, "connection_name", "None or a string", value, fix)
    problem = connection_name_problem(value)
    if problem:
        raise wrong_value(where, f"{problem}, got {short_repr(value)}", fix)
    return value
