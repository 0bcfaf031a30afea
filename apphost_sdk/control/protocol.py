"""The control channel's wire format, without any I/O: what a request and its answers look like.

A client sends one JSON object on one line; the app host answers with JSON lines:

- ``{"op": "command", "resource": "api", "command": "restart"}`` is answered by one
  ``{"ok": bool, "message": str}``;
- ``{"op": "logs", "resource": "api" | null, "follow": bool, "since": float | null}`` is
  answered by ``{"resources": [...]}`` (every resource name, for aligned prefixes), then
  ``{"dropped": N, "resource": r}`` notices, then ``{"resource", "stream", "ts", "text"}``
  lines, then ``{"end": true}`` unless following (a follow ends when either side closes);
- a request that cannot be served is answered by ``{"error": message}``.

Also here: the socket path rule and ``--since`` parsing, shared by the server and the CLI.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import re
import time
from pathlib import Path
from typing import Any

import attrs

#: The socket's name in the app's state folder.
SOCKET_NAME = "control.sock"
#: Unix socket paths longer than this (bytes) cannot be bound on every platform (108 on Linux,
#: 104 on macOS): such a state folder gets a socket under ``/tmp`` instead.
MAX_SOCKET_PATH = 100
#: How many hex digits of the state folder's hash a socket under ``/tmp`` has in its name.
FOLDER_HASH_CHARS = 12
#: A client that has not read for this long (seconds) while answers wait is dropped by the
#: app host (``ControlServer``'s default; ``apphost logs -f`` names it when it happens).
SEND_TIMEOUT = 5.0
#: The longest request line the server reads; anything longer is refused.
MAX_REQUEST_BYTES = 64 * 1024
#: The commands a resource has (as ``dashboard.source.COMMANDS``).
COMMANDS = ("start", "stop", "restart")


class ProtocolError(ValueError):
    """A message that is not valid JSON or not a request/answer of this protocol."""


class SinceError(ValueError):
    """A ``--since`` value that is neither a duration nor an RFC 3339 time."""


def control_socket_path(state_dir: Path, app_id: str) -> Path:
    """Where the app host of ``app_id`` listens: ``state_dir/control.sock``, or, when that is
    too long for a Unix socket, ``/tmp/apphost-{uid}/{app_id}-{hash}.sock`` (the folder is
    0700). ``hash`` names the resolved state folder, so the same app run with two long
    ``APPHOST_STATE_DIR`` values gets two sockets, never one shared."""
    path = Path(state_dir).absolute() / SOCKET_NAME
    if len(os.fsencode(str(path))) <= MAX_SOCKET_PATH:
        return path
    resolved = os.fsencode(str(Path(state_dir).expanduser().resolve()))
    digest = hashlib.sha256(resolved).hexdigest()[:FOLDER_HASH_CHARS]
    return fallback_socket_dir() / f"{app_id}-{digest}.sock"


def fallback_socket_dir() -> Path:
    """The private folder of sockets whose state folder path is too long."""
    uid = os.getuid() if hasattr(os, "getuid") else 0
    return Path("/tmp") / f"apphost-{uid}"


# -- requests -------------------------------------------------------------------------------
@attrs.frozen
class CommandRequest:
    """Run ``command`` (start, stop, restart) on one resource and answer its outcome."""

    resource: str
    command: str

    def to_json(self) -> dict[str, Any]:
        return {"op": "command", "resource": self.resource, "command": self.command}


@attrs.frozen
class LogsRequest:
    """Console lines of one resource (None: all), newer than ``since`` (epoch seconds)."""

    resource: str | None = None
    follow: bool = False
    since: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {"op": "logs", "resource": self.resource, "follow": self.follow, "since": self.since}


Request = CommandRequest | LogsRequest


def encode(message: dict[str, Any]) -> bytes:
    """One message as one line of compact JSON (UTF-8, newline-terminated)."""
    return (json.dumps(message, separators=(",", ":"), ensure_ascii=False) + "\n").encode()


def decode(line: bytes) -> dict[str, Any]:
    """One received line as a JSON object; ``ProtocolError`` for anything else."""
    try:
        value = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:  # nested too deep too
        raise ProtocolError(f"not a JSON line: {exc}") from None
    if not isinstance(value, dict):
        raise ProtocolError("not a JSON object")
    return value


def parse_request(line: bytes) -> Request:
    """The request a client sent; ``ProtocolError`` saying what is wrong with it."""
    data = decode(line)
    op = data.get("op")
    resource = data.get("resource")
    if op == "command":
        command = data.get("command")
        if not isinstance(resource, str) or not resource:
            raise ProtocolError("a command needs a resource name")
        if command not in COMMANDS:
            raise ProtocolError(f"unknown command {command!r}; use one of {', '.join(COMMANDS)}")
        return CommandRequest(resource, str(command))
    if op == "logs":
        if resource is not None and (not isinstance(resource, str) or not resource):
            raise ProtocolError("resource must be a resource name or null")
        follow = data.get("follow", False)
        since = data.get("since")
        if not isinstance(follow, bool):
            raise ProtocolError("follow must be true or false")
        if since is not None and (isinstance(since, bool) or not isinstance(since, (int, float))):
            raise ProtocolError("since must be seconds since the epoch or null")
        return LogsRequest(resource, follow, None if since is None else float(since))
    raise ProtocolError(f"unknown op {op!r}; use command or logs")


# -- answers --------------------------------------------------------------------------------
def command_answer(ok: bool, message: str) -> dict[str, Any]:
    return {"ok": ok, "message": message}


def error_answer(message: str) -> dict[str, Any]:
    return {"error": message}


def resources_answer(names: list[str]) -> dict[str, Any]:
    return {"resources": names}


def dropped_answer(count: int, resource: str) -> dict[str, Any]:
    return {"dropped": count, "resource": resource}


def line_answer(resource: str, stream: str, timestamp: float, text: str) -> dict[str, Any]:
    return {"resource": resource, "stream": stream, "ts": timestamp, "text": text}


END = {"end": True}


# -- --since --------------------------------------------------------------------------------
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_TIMESTAMP = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})"
    r"(?:[Tt ](\d{2}):(\d{2})(?::(\d{2})(\.\d+)?)?)?"
    r"(Z|z|[+-]\d{2}:?\d{2})?$"
)
SINCE_HELP = "a duration (30s, 10m, 2h, 1d) or an RFC 3339 time (2026-03-21T10:00:00Z)"


def parse_since(text: str, now: float | None = None) -> float:
    """``--since`` as seconds since the epoch: a duration back from ``now`` (``30s``, ``10m``,
    ``2h``, ``1d``) or an RFC 3339 time (a time without an offset is local time)."""
    value = text.strip()
    now = time.time() if now is None else now
    match = _DURATION.match(value)
    if match:
        return now - float(match.group(1)) * _UNITS[match.group(2)]
    match = _TIMESTAMP.match(value)
    if not match:
        raise SinceError(f"--since {text!r} is not {SINCE_HELP}")
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    try:
        moment = _dt.datetime(
            int(year),
            int(month),
            int(day),
            int(hour or 0),
            int(minute or 0),
            int(second or 0),
            min(999_999, round(float(fraction or 0) * 1_000_000)),
            tzinfo=_zone(offset),
        )
    except ValueError as exc:
        raise SinceError(
            f"--since {text!r} is not a valid time ({exc}); write {SINCE_HELP}"
        ) from None
    return moment.timestamp()


def _zone(offset: str | None) -> _dt.tzinfo | None:
    """The time zone of an RFC 3339 offset; None (local time) when there is none."""
    if offset is None:
        return None
    if offset in ("Z", "z"):
        return _dt.timezone.utc
    digits = offset[1:].replace(":", "")
    minutes = int(digits[:2]) * 60 + int(digits[2:])
    if minutes >= 24 * 60:
        raise ValueError(f"offset {offset} is out of range")
    return _dt.timezone(_dt.timedelta(minutes=minutes if offset[0] == "+" else -minutes))
