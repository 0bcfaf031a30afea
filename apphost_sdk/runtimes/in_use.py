"""Which live app host uses which container: a per-user registry outside every state folder.

A container's labels name the app host that created it, and labels cannot change: a persistent
container reused by a later run cannot name that run. So every run records, when it creates or
reuses a container, one small file

    /tmp/apphost-{uid}/in-use/{container id}.{pid}.{token}.json

(pid and process start time, app, resource, state folder, volumes), and removes it when it lets
the container go. The location depends on the user id only: not on ``APPHOST_STATE_DIR``, the
working directory, ``TMPDIR`` or ``XDG_RUNTIME_DIR``, which differ between a terminal, ``sudo``,
cron or a CI step. So ``apphost down`` sees every user, whatever state folder it runs with. A
record whose process is gone (a killed app host, a reused pid) counts for nothing and is removed
by the next reader.

A leaf module: it knows nothing of engines or resource types.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import stat
import uuid
from collections.abc import Collection, Sequence
from pathlib import Path

import attrs

from ..files import read_json, write_private
from ..process_identity import process_alive, process_start_time

log = logging.getLogger(__name__)

SUFFIX = ".json"


def _uid() -> int:
    getuid = getattr(os, "getuid", None)
    return int(getuid()) if getuid is not None else 0


def _private_dir(path: Path) -> bool:
    """Create ``path`` (0700) or check that it is a real folder of this user that no one else
    may write: a folder planted in ``/tmp`` by another user is never trusted."""
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=0o700)
    try:
        info = os.lstat(path)
    except OSError:
        return False
    return (
        stat.S_ISDIR(info.st_mode)
        and info.st_uid == _uid()
        and not info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    )


def registry_dir() -> Path | None:
    """The registry folder of this user (created), or None when none can be used.

    ``/tmp/apphost-{uid}/in-use``; when another user holds ``/tmp/apphost-{uid}``, the
    ``.apphost-in-use`` folder of this user's home (from the password database, not ``HOME``).
    """
    uid = _uid()
    candidates = [Path("/tmp") / f"apphost-{uid}"]
    try:
        import pwd

        candidates.append(Path(pwd.getpwuid(uid).pw_dir) / ".apphost-in-use")
    except (ImportError, KeyError):
        pass
    for base in candidates:
        try:
            if base.parent.is_dir() and _private_dir(base) and _private_dir(base / "in-use"):
                return base / "in-use"
        except OSError:
            continue
    return None


@attrs.frozen
class User:
    """One live app host's use of one container."""

    container_id: str
    pid: int
    start: str
    app_id: str
    resource: str
    name: str
    state_dir: str
    volumes: tuple[str, ...]
    path: Path = attrs.field(eq=False, repr=False)

    @property
    def alive(self) -> bool:
        return process_alive(self.pid, self.start)


def claim(
    container_id: str,
    *,
    name: str,
    app_id: str,
    resource: str,
    state_dir: Path | str,
    volumes: Sequence[str] = (),
) -> Path | None:
    """Record that this process uses ``container_id``; returns the record (for ``release``),
    or None when no registry folder can be written (then ``apphost down`` cannot see it)."""
    folder = registry_dir()
    if folder is None:
        log.warning("no private folder for the in-use registry; `apphost down` cannot see %s", name)
        return None
    pid = os.getpid()
    path = folder / f"{container_id}.{pid}.{uuid.uuid4().hex[:8]}{SUFFIX}"
    record = {
        "container": container_id,
        "pid": pid,
        "start": process_start_time(pid),
        "app_id": app_id,
        "resource": resource,
        "name": name,
        "state_dir": str(state_dir),
        "volumes": list(volumes),
    }
    try:
        write_private(path, json.dumps(record))
    except OSError as exc:
        log.warning("cannot record that %s is in use in %s: %s", name, folder, exc)
        return None
    return path


def release(path: Path | None) -> None:
    """Remove a record made by ``claim`` (nothing when None or already gone)."""
    if path is not None:
        with contextlib.suppress(OSError):
            path.unlink()


def _read(path: Path) -> User | None:
    data = read_json(path)
    if not isinstance(data, dict):
        return None
    try:
        return User(
            container_id=str(data["container"]),
            pid=int(data["pid"]),
            start=str(data.get("start", "")),
            app_id=str(data.get("app_id", "")),
            resource=str(data.get("resource", "")),
            name=str(data.get("name", "")),
            state_dir=str(data.get("state_dir", "")),
            volumes=tuple(str(v) for v in data.get("volumes") or ()),
            path=path,
        )
    except (KeyError, TypeError, ValueError):
        return None


def users(
    container_ids: Collection[str] | None = None, *, other_processes: bool = True
) -> list[User]:
    """The live users of ``container_ids`` (of every container when None), this process left
    out unless ``other_processes`` is False. Records of dead processes are removed."""
    folder = registry_dir()
    if folder is None:
        return []
    if container_ids is None:
        paths = list(folder.glob(f"*{SUFFIX}"))
    else:
        paths = [p for cid in set(container_ids) for p in folder.glob(f"{cid}.*{SUFFIX}")]
    found: list[User] = []
    for path in sorted(paths):
        user = _read(path)
        if user is None:
            if not path.name.startswith("."):  # a half-written temp file is dot-named
                release(path)
            continue
        if not user.alive:
            release(path)
            continue
        if other_processes and user.pid == os.getpid():
            continue
        found.append(user)
    return found


def prune() -> None:
    """Remove the records of processes that are gone."""
    users(None, other_processes=False)
