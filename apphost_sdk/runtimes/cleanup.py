"""Removing what this SDK created, on a container engine (selected by its labels) and in state
folders (the process runtime's data).

Two callers: ``DockerRuntime.cleanup_orphans`` at start-up (session objects whose creator process
is gone) and ``apphost down`` (everything of one app, or of every app; persistent containers,
data volumes and the process runtime's kept data only when asked). ``down`` refuses, removing
nothing, while a live app host uses any of it: whichever run created it (the per-user in-use
registry, ``in_use``, names the run that uses a reused persistent container) and whatever state
folder ``down`` itself runs with.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from ..errors import ApphostError
from . import in_use
from .docker_runtime import (
    APP_ID,
    CREATOR_HOST,
    CREATOR_PID,
    CREATOR_START,
    KIND,
    LIFETIME,
    MANAGED,
    RESOURCE,
    creator_alive,
)
from .engines import find_engine, start_hint

Announce = Callable[[str], None]


def _label_filter(app_id: str | None, *extra: str) -> dict[str, list[str]]:
    labels = [f"{MANAGED}=true", *extra]
    if app_id is not None:
        labels.append(f"{APP_ID}={app_id}")
    return {"label": labels}


def _describe_container(c: Any) -> str:
    labels = c.get("Labels") or {}
    names = c.get("Names") or [str(c.get("Id", ""))[:12]]
    return (
        f"container {str(names[0]).lstrip('/')} (resource {labels.get(RESOURCE, '?')}, "
        f"{labels.get(LIFETIME, '?')})"
    )


def remove_network(api: Any, name_or_id: str) -> bool:
    """Disconnect every container from a network, then remove it; False when it is gone/busy."""
    try:
        info = api.inspect_network(name_or_id)
    except Exception:
        return False
    for container_id in info.get("Containers") or {}:
        with contextlib.suppress(Exception):
            api.disconnect_container_from_network(container_id, name_or_id, force=True)
    try:
        api.remove_network(name_or_id)
    except Exception:
        return False
    return True


def remove_orphans(api: Any) -> list[str]:
    """Remove session containers and networks whose creator process is gone.

    Persistent containers are kept (they were only detached from a dead run's network).
    Returns one description per removed object.
    """
    removed: list[str] = []
    for c in api.containers(all=True, filters=_label_filter(None, f"{LIFETIME}=session")):
        labels = c.get("Labels") or {}
        if creator_alive(labels):
            continue
        with contextlib.suppress(Exception):
            api.remove_container(c["Id"], force=True, v=True)
            removed.append(_describe_container(c) + f" of dead app host pid {_pid(labels)}")
    for n in api.networks(filters=_label_filter(None, f"{KIND}=network")):
        labels = n.get("Labels") or {}
        if creator_alive(labels):
            continue
        if remove_network(api, n["Id"]):
            removed.append(f"network {n.get('Name')} of dead app host pid {_pid(labels)}")
    return removed


def _pid(labels: Any) -> str:
    return str(labels.get(CREATOR_PID, "?"))


def _volumes(api: Any, app_id: str | None) -> list[dict[str, Any]]:
    found = api.volumes(filters=_label_filter(app_id, f"{KIND}=volume")) or {}
    return list(found.get("Volumes") or [])


def remove_app_objects(
    api: Any, app_id: str | None, include_persistent_and_volumes: bool
) -> list[str]:
    """Remove this SDK's containers and networks (of ``app_id``, or of every app when None);
    persistent containers and labelled data volumes only when asked. Checks nothing: ``down``
    first makes sure no live app host uses them."""
    removed: list[str] = []
    for c in api.containers(all=True, filters=_label_filter(app_id)):
        labels = c.get("Labels") or {}
        if labels.get(LIFETIME) == "persistent" and not include_persistent_and_volumes:
            continue
        with contextlib.suppress(Exception):
            api.remove_container(c["Id"], force=True, v=True)
            removed.append(_describe_container(c))
    for n in api.networks(filters=_label_filter(app_id, f"{KIND}=network")):
        if remove_network(api, n["Id"]):
            removed.append(f"network {n.get('Name')}")
    if include_persistent_and_volumes:
        for v in _volumes(api, app_id):
            with contextlib.suppress(Exception):
                api.remove_volume(v["Name"], force=True)
                removed.append(f"volume {v['Name']}")
    return removed


# --------------------------------------------------------------------------- what is in use


@attrs.frozen
class Use:
    """One object ``down`` would remove that a live app host (``pid``) uses."""

    pid: int
    what: str
    #: The state folder of that app host, when known (to name the command that stops it).
    state_dir: str = ""


def _live_creator(labels: Mapping[str, str]) -> int | None:
    """The pid of the live app host (another process on this machine) that created a labelled
    object, or None. Objects of another machine (a remote engine) cannot be told: None."""
    if labels.get(CREATOR_HOST, socket.gethostname()) != socket.gethostname():
        return None
    try:
        pid = int(labels.get(CREATOR_PID, ""))
    except ValueError:
        return None
    if pid == os.getpid():
        return None
    from ..process_identity import process_alive

    return pid if process_alive(pid, labels.get(CREATOR_START, "")) else None


def engine_uses(api: Any, app_id: str | None, include_persistent_and_volumes: bool) -> list[Use]:
    """What ``remove_app_objects`` would remove that a live app host (another process) uses:
    containers recorded in the in-use registry (a persistent one by whichever run reuses it) or
    created by a live app host, that app host's run networks, and volumes its containers
    mount."""
    uses: list[Use] = []
    containers = [
        c
        for c in api.containers(all=True, filters=_label_filter(app_id))
        if include_persistent_and_volumes or (c.get("Labels") or {}).get(LIFETIME) != "persistent"
    ]
    by_id = {str(c["Id"]): c for c in containers}
    users = in_use.users(None)
    seen: set[tuple[int, str]] = set()
    for u in users:
        container = by_id.get(u.container_id)
        if container is not None:
            uses.append(Use(u.pid, _describe_container(container), u.state_dir))
            seen.add((u.pid, u.container_id))
    for cid, c in by_id.items():
        labels = c.get("Labels") or {}
        if labels.get(LIFETIME) == "persistent":
            continue  # its creator may have let it go long ago: only the registry tells
        pid = _live_creator(labels)
        if pid is not None and (pid, cid) not in seen:
            uses.append(Use(pid, _describe_container(c)))
    for n in api.networks(filters=_label_filter(app_id, f"{KIND}=network")):
        pid = _live_creator(n.get("Labels") or {})
        if pid is not None:
            uses.append(Use(pid, f"network {n.get('Name')}"))
    if include_persistent_and_volumes:
        for v in _volumes(api, app_id):
            for u in users:
                if v["Name"] in u.volumes:
                    uses.append(Use(u.pid, f"volume {v['Name']}", u.state_dir))
    return uses


def state_uses(state_dirs: Iterable[Path], include_volumes: bool) -> list[Use]:
    """The kept process-runtime data (``volumes/`` of each state folder) that ``down`` would
    remove while a live app host runs from that state folder."""
    if not include_volumes:
        return []
    from .process import state_users

    uses: list[Use] = []
    for state_dir in state_dirs:
        if not (state_dir / "volumes").is_dir():
            continue
        for pid in state_users(state_dir):
            uses.append(Use(pid, f"data in {state_dir / 'volumes'}", str(state_dir)))
    return uses


def stop_hint(pid: int, state_dir: str, environ: Mapping[str, str]) -> str:
    """How to stop the app host ``pid``: ``apphost stop APPHOST.py`` (with its
    ``APPHOST_STATE_DIR`` when it differs from the caller's) when its status names it."""
    from ..files import read_json
    from ..state import STATUS_FILE, state_root

    status = read_json(Path(state_dir) / STATUS_FILE) if state_dir else None
    app_host = status.get("appHost") if isinstance(status, dict) else None
    if not app_host or not isinstance(status, dict) or status.get("pid") != pid:
        return "stop that app host (Ctrl-C where it runs, or app.stop() in its code)"
    command = f"apphost stop {app_host}"
    root = Path(state_dir).parent
    mine = state_root(dict(environ))
    with contextlib.suppress(OSError):
        if root.resolve() != mine.resolve():
            command = f"APPHOST_STATE_DIR={root} {command}"
    return f"stop it first: `{command}` (or Ctrl-C where it runs)"


def refusal(uses: Sequence[Use], environ: Mapping[str, str]) -> str:
    """The message of a refused ``down``: per app host, its pid, what it uses and how to stop
    it."""
    by_pid: dict[int, list[Use]] = {}
    for u in uses:
        by_pid.setdefault(u.pid, []).append(u)
    lines = ["a running app host uses what this would remove; nothing was removed:"]
    for pid, items in sorted(by_pid.items()):
        state_dir = next((u.state_dir for u in items if u.state_dir), "")
        whats = ", ".join(dict.fromkeys(u.what for u in items))
        lines.append(f"  the app host pid {pid} uses {whats}; {stop_hint(pid, state_dir, environ)}")
    lines.append("then run `apphost down` again")
    return "\n".join(lines)


# --------------------------------------------------------------------------- apphost down


def down(
    app_id: str | None,
    include_persistent_and_volumes: bool,
    announce: Announce,
    environ: Mapping[str, str] | None = None,
    state_dirs: Sequence[Path] = (),
) -> list[str]:
    """``apphost down``: remove what this SDK created for ``app_id`` (every app when None).

    Session containers and run networks always; persistent containers and data volumes only
    with ``include_persistent_and_volumes`` (``--volumes``). In each of ``state_dirs``, the run
    folders of dead app hosts always, and with ``--volumes`` the process runtime's kept data
    (volumes, persistent resources' data and ports). Raises ``ApphostError`` naming the pid and
    how to stop it, removing nothing, while a live app host uses any of it. Announces each
    removal and returns the descriptions. Without a reachable engine it says so.
    """
    from .process import remove_state
    from .selection import requested_runtime, wanted_engine

    env = dict(os.environ if environ is None else environ)
    wanted = wanted_engine(requested_runtime(env))
    discovery = find_engine(wanted, env)
    if discovery.engine is None:
        announce(
            f"no container engine answers ({discovery.tried()}); no containers to remove. "
            f"To remove containers left on an engine, {start_hint(wanted)}"
        )
    removed: list[str] = []
    try:
        api = discovery.engine.client.api if discovery.engine is not None else None
        uses = state_uses(state_dirs, include_persistent_and_volumes)
        if api is not None:
            uses = engine_uses(api, app_id, include_persistent_and_volumes) + uses
        if uses:
            raise ApphostError(refusal(uses, env))
        if api is not None:
            removed += remove_app_objects(api, app_id, include_persistent_and_volumes)
        for state_dir in state_dirs:
            removed += remove_state(state_dir, include_persistent_and_volumes)
    finally:
        if discovery.engine is not None:
            discovery.engine.client.close()
    for line in removed:
        announce(f"removed {line}")
    if not removed and discovery.engine is not None:
        announce("nothing to remove")
    return removed
