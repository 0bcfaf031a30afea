"""Identifying a process across time: pid plus start time, so a reused pid is not mistaken for
the app host that created something (containers, run folders)."""

from __future__ import annotations

import os
from pathlib import Path


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of ``/proc/PID/stat`` after the command name (state first), or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may contain spaces: split after it.
    return stat[stat.rfind(")") + 2 :].split()


def _start_of(fields: list[str] | None) -> str:
    return fields[19] if fields is not None and len(fields) > 19 else ""


def process_start_time(pid: int) -> str:
    """The start time of ``pid`` (field 22 of ``/proc/PID/stat``, clock ticks since boot).

    Returns ``""`` where ``/proc`` does not exist (then only the pid is compared).
    """
    return _start_of(_stat_fields(pid))


def process_alive(pid: int, start_time: str = "") -> bool:
    """True when ``pid`` runs (a zombie does not) and, if ``start_time`` is given, is the same
    process as then."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    fields = _stat_fields(pid)
    if fields and fields[0] == "Z":
        return False
    return not start_time or start_time == _start_of(fields)
