"""Removing what this SDK created on a container engine, selected by its labels.

Two callers: ``DockerRuntime.cleanup_orphans`` at start-up (session objects whose creator process
is gone) and ``apphost down`` (everything of one app, or of every app; persistent containers
and data volumes only when asked).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from typing import Any

from .docker_runtime import (
    APP_ID,
    CREATOR_PID,
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


def remove_app_objects(
    api: Any, app_id: str | None, include_persistent_and_volumes: bool
) -> list[str]:
    """Remove this SDK's containers and networks (of ``app_id``, or of every app when None);
    persistent containers and labelled data volumes only when asked."""
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
        volumes = (api.volumes(filters=_label_filter(app_id, f"{KIND}=volume")) or {}).get(
            "Volumes"
        ) or []
        for v in volumes:
            with contextlib.suppress(Exception):
                api.remove_volume(v["Name"], force=True)
                removed.append(f"volume {v['Name']}")
    return removed


def down(
    app_id: str | None,
    include_persistent_and_volumes: bool,
    announce: Announce,
    environ: dict[str, str] | None = None,
) -> list[str]:
    """``apphost down``: remove what this SDK created for ``app_id`` (every app when None).

    Session containers and run networks always; persistent containers and data volumes only
    with ``include_persistent_and_volumes`` (``--volumes``). Announces each removal and returns
    the descriptions. Without a reachable engine it says so and removes nothing.
    """
    from .selection import requested_runtime, wanted_engine

    env = os.environ if environ is None else environ
    wanted = wanted_engine(requested_runtime(env))
    discovery = find_engine(wanted, env)
    if discovery.engine is None:
        announce(
            f"no container engine answers ({discovery.tried()}); no containers to remove. "
            f"To remove containers left on an engine, {start_hint(wanted)}"
        )
        return []
    try:
        removed = remove_app_objects(
            discovery.engine.client.api, app_id, include_persistent_and_volumes
        )
    finally:
        discovery.engine.client.close()
    for line in removed:
        announce(f"removed {line}")
    if not removed:
        announce("nothing to remove")
    return removed
