"""Layered, case-insensitive configuration, as in .NET's ``IConfiguration``.

Keys are ``:``-separated paths (``Azure:SubscriptionId``); in environment variables ``__`` stands
for ``:``. Later layers override earlier ones: defaults, ``appsettings.json``,
``appsettings.{Environment}.json``, environment variables, then command-line arguments.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from .errors import ConfigurationError

#: The spellings of a boolean accepted in configuration (compared case-insensitively).
TRUE = frozenset({"true", "1", "yes", "on"})
FALSE = frozenset({"false", "0", "no", "off"})


def parse_bool(raw: str) -> bool | None:
    """``raw`` as a boolean (true/false, 1/0, yes/no, on/off, any case), or None if neither."""
    low = raw.strip().casefold()
    if low in TRUE:
        return True
    if low in FALSE:
        return False
    return None


def normalize_key(key: str) -> str:
    """Return the canonical lookup form of a key: ``__`` becomes ``:``, case is folded."""
    return key.replace("__", ":").strip(":").casefold()


def flatten_json(data: Any, prefix: str = "") -> dict[str, str]:
    """Flatten a JSON document into ``Section:Key`` pairs (arrays use their index as key)."""
    out: dict[str, str] = {}
    if isinstance(data, Mapping):
        for k, v in data.items():
            out.update(flatten_json(v, f"{prefix}:{k}" if prefix else str(k)))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            out.update(flatten_json(v, f"{prefix}:{i}" if prefix else str(i)))
    elif data is None:
        out[prefix] = ""
    elif isinstance(data, bool):
        out[prefix] = "true" if data else "false"
    else:
        out[prefix] = str(data)
    return out


class _JsonObject(list[tuple[str, Any]]):
    """A JSON object as its ``(name, value)`` members in file order, repeated names kept
    (``json.loads`` would keep only the last)."""


def _flatten_pairs(data: Any, prefix: str) -> list[tuple[str, str]]:
    """``flatten_json`` of a document parsed with ``_JsonObject`` objects, every leaf kept."""
    out: list[tuple[str, str]] = []
    if isinstance(data, _JsonObject):
        for k, v in data:
            out += _flatten_pairs(v, f"{prefix}:{k}" if prefix else k)
    elif isinstance(data, list):
        for i, v in enumerate(data):
            out += _flatten_pairs(v, f"{prefix}:{i}" if prefix else str(i))
    else:
        out += flatten_json(data, prefix).items()
    return out


def _reject_duplicate_keys(path: Path, pairs: list[tuple[str, str]]) -> None:
    """Two settings of one file whose keys are equal up to case (``Azure:Location`` and
    ``azure:location``, at any depth) or written twice: .NET's JSON configuration refuses the
    file ("A duplicate key ... was found"), since only one of the values could win."""
    seen: dict[str, str] = {}
    problems: list[str] = []
    for key, _value in pairs:
        canon = normalize_key(key)
        if not canon:
            continue
        if canon not in seen:
            seen[canon] = key
            continue
        first = seen[canon]
        problems.append(
            f"{key!r} is set twice" if first == key else f"{first!r} and {key!r} are one key"
        )
    if problems:
        raise ConfigurationError(
            f"{path} sets a key more than once ({'; '.join(problems)}); configuration keys are "
            "case-insensitive, as in .NET (and __ stands for :), so only one value could win: "
            "remove all but one of each"
        )


def parse_command_line(args: Sequence[str]) -> tuple[dict[str, str], list[str]]:
    """Split ``--Key=Value`` / ``--Key Value`` pairs from the other arguments.

    Returns the configuration pairs and the arguments that were not configuration.
    """
    pairs: dict[str, str] = {}
    rest: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg.startswith("--") and len(arg) > 2:
            body = arg[2:]
            if "=" in body:
                key, value = body.split("=", 1)
                pairs[key] = value
            elif i + 1 < len(args) and not args[i + 1].startswith("--"):
                pairs[body] = args[i + 1]
                i += 1
            else:
                rest.append(arg)
        else:
            rest.append(arg)
        i += 1
    return pairs, rest


class Configuration(Mapping[str, str]):
    """A read-mostly view of layered settings with case-insensitive ``:`` keys.

    ``config["Azure:SubscriptionId"]`` and ``config["azure__subscriptionid"]`` are the same key.
    ``config.get_section("Azure")`` returns the sub-tree as another ``Configuration``.
    """

    def __init__(self, values: Mapping[str, str] | None = None) -> None:
        # canonical key -> (original key, value)
        self._data: dict[str, tuple[str, str]] = {}
        self.sources: list[str] = []
        if values:
            self.add_mapping(values, source="memory")

    # -- building -------------------------------------------------------------------------
    def add_mapping(self, values: Mapping[str, Any], source: str = "memory") -> Configuration:
        """Layer ``values`` on top of what is already there (later wins)."""
        for key, value in values.items():
            if isinstance(value, (Mapping, list)):
                for k2, v2 in flatten_json(value, key).items():
                    self._set(k2, v2)
            else:
                self._set(key, "" if value is None else str(value))
        self.sources.append(source)
        return self

    def add_json_file(self, path: str | os.PathLike[str], optional: bool = True) -> Configuration:
        """Layer a JSON settings file; a malformed file is an error naming file and position."""
        p = Path(path)
        if not p.is_file():
            if optional:
                return self
            raise ConfigurationError(f"configuration file {p} does not exist")
        try:
            data = json.loads(
                p.read_text(encoding="utf-8-sig") or "{}", object_pairs_hook=_JsonObject
            )
        except UnicodeDecodeError as exc:
            raise ConfigurationError(
                f"{p} is not UTF-8 text (byte {exc.start}); save it as UTF-8"
            ) from None
        except OSError as exc:
            raise ConfigurationError(
                f"cannot read {p}: {exc.strerror}; fix its permissions"
            ) from None
        except json.JSONDecodeError as exc:
            raise ConfigurationError(
                f"{p} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}); "
                "fix the file or remove it"
            ) from None
        if not isinstance(data, _JsonObject):
            raise ConfigurationError(f"{p} must hold a JSON object at the top level")
        pairs = _flatten_pairs(data, "")
        _reject_duplicate_keys(p, pairs)
        for k, v in pairs:
            self._set(k, v)
        self.sources.append(str(p))
        return self

    def add_environment(
        self, environ: Mapping[str, str] | None = None, prefix: str = ""
    ) -> Configuration:
        """Layer environment variables (``__`` stands for ``:``), optionally only a prefix."""
        env = os.environ if environ is None else environ
        for key, value in env.items():
            if prefix:
                if not key.upper().startswith(prefix.upper()):
                    continue
                key = key[len(prefix) :]
            self._set(key, value)
        self.sources.append("environment")
        return self

    def add_command_line(self, args: Sequence[str]) -> list[str]:
        """Layer ``--Key=Value`` arguments; returns the arguments that were not settings."""
        pairs, rest = parse_command_line(args)
        for k, v in pairs.items():
            self._set(k, v)
        self.sources.append("command line")
        return rest

    def _set(self, key: str, value: str) -> None:
        canon = normalize_key(key)
        if canon:
            self._data[canon] = (key.replace("__", ":"), value)

    def set(self, key: str, value: str) -> None:
        """Set one value in memory (highest precedence so far)."""
        self._set(key, value)

    # -- reading --------------------------------------------------------------------------
    def __getitem__(self, key: str) -> str:
        return self._data[normalize_key(key)][1]

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and normalize_key(key) in self._data

    def __iter__(self) -> Iterator[str]:
        return (orig for orig, _ in self._data.values())

    def __len__(self) -> int:
        return len(self._data)

    def get_str(self, key: str, default: str | None = None) -> str | None:
        """Return the value, or ``default`` when the key is absent or empty."""
        entry = self._data.get(normalize_key(key))
        if entry is None or entry[1] == "":
            return default
        return entry[1]

    def get_bool(self, key: str, default: bool = False) -> bool:
        """Return a boolean; anything other than true/false/1/0/yes/no/on/off is an error."""
        raw = self.get_str(key)
        if raw is None:
            return default
        value = parse_bool(raw)
        if value is None:
            raise ConfigurationError(f"configuration key {key} must be true or false, not {raw!r}")
        return value

    def get_int(self, key: str, default: int | None = None) -> int | None:
        """Return an integer; a malformed value is an error naming the key."""
        raw = self.get_str(key)
        if raw is None:
            return default
        try:
            return int(raw.strip())
        except ValueError:
            raise ConfigurationError(
                f"configuration key {key} must be a whole number, not {raw!r}"
            ) from None

    def get_float(self, key: str, default: float | None = None) -> float | None:
        """Return a float; a malformed value is an error naming the key."""
        raw = self.get_str(key)
        if raw is None:
            return default
        try:
            return float(raw.strip())
        except ValueError:
            raise ConfigurationError(
                f"configuration key {key} must be a number, not {raw!r}"
            ) from None

    def get_section(self, name: str) -> Configuration:
        """Return the keys under ``name:`` as a new Configuration with the prefix removed."""
        prefix = normalize_key(name) + ":"
        depth = prefix.count(":")
        section = Configuration()
        for canon, (orig, value) in self._data.items():
            if canon.startswith(prefix):
                # Drop whole segments: case folding can change a key's length ("ß" -> "ss").
                section._set(":".join(orig.strip(":").split(":")[depth:]), value)
        return section

    def to_dict(self) -> dict[str, str]:
        """Return a plain ``{original key: value}`` copy."""
        return {orig: value for orig, value in self._data.values()}

    def __repr__(self) -> str:
        return f"Configuration({len(self)} keys from {', '.join(self.sources) or 'nothing'})"


def load_layered(
    base_directory: str | os.PathLike[str],
    environment: str,
    args: Sequence[str] | None = None,
    defaults: Mapping[str, str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> tuple[Configuration, list[str]]:
    """Build the standard layering: defaults, appsettings.json, appsettings.{env}.json, env, args.

    Returns the configuration and the command-line arguments that were not settings.
    """
    config = Configuration()
    if defaults:
        config.add_mapping(defaults, source="defaults")
    base = Path(base_directory)
    config.add_json_file(base / "appsettings.json")
    config.add_json_file(base / f"appsettings.{environment}.json")
    config.add_environment(environ)
    rest = config.add_command_line(list(args or []))
    return config, rest
