"""``with_container_runtime_args``: the ``docker run`` options the engine API can express.

The app host talks to the engine through its API, not the ``docker`` CLI, so each option is
translated into the API's field; an option outside this list is reported by ``build()`` rather
than silently dropped. Pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

_SIZE = re.compile(r"^\d+(\.\d+)?[bkmgBKMG]?$")

#: Options that take a value: flag -> API field.
_VALUED = {
    "--memory": "mem_limit",
    "-m": "mem_limit",
    "--cpus": "nano_cpus",
    "--user": "user",
    "-u": "user",
    "--add-host": "extra_hosts",
    "--cap-add": "cap_add",
    "--cap-drop": "cap_drop",
    "--shm-size": "shm_size",
    "--label": "labels",
    "-l": "labels",
    "--pids-limit": "pids_limit",
}
#: Flags without a value: flag -> API field set to True.
_FLAGS = {"--read-only": "read_only", "--privileged": "privileged", "--init": "init"}

SUPPORTED = sorted({*_VALUED, *_FLAGS})


def parse_runtime_args(args: Sequence[str]) -> tuple[dict[str, Any], list[str]]:
    """The engine options for ``args`` and the problems found (each naming the fix)."""
    options: dict[str, Any] = {}
    problems: list[str] = []
    items = list(args)
    i = 0
    while i < len(items):
        flag, value = items[i], None
        if "=" in flag and flag.startswith("--"):
            flag, value = flag.split("=", 1)
        i += 1
        if flag in _FLAGS:
            options[_FLAGS[flag]] = True
            continue
        if flag not in _VALUED:
            problems.append(
                f"container runtime option {flag!r} is not supported; use one of "
                f"{', '.join(SUPPORTED)}"
            )
            if value is None and i < len(items) and not items[i].startswith("-"):
                i += 1  # its value, not another option
            continue
        if value is None:
            if i >= len(items):
                problems.append(f"container runtime option {flag} needs a value")
                continue
            value = items[i]
            i += 1
        field = _VALUED[flag]
        problem = _add(options, field, flag, value)
        if problem:
            problems.append(problem)
    return options, problems


def _add(options: dict[str, Any], field: str, flag: str, value: str) -> str | None:
    if field in ("mem_limit", "shm_size"):
        if not _SIZE.fullmatch(value):
            return f"{flag} {value!r} is not a size such as 256m"
        options[field] = value
    elif field == "nano_cpus":
        try:
            cpus = float(value)
        except ValueError:
            return f"{flag} {value!r} is not a number of CPUs such as 1.5"
        if not 0 < cpus <= 1024:
            return f"{flag} {value!r} is not a number of CPUs such as 1.5"
        options[field] = int(cpus * 1e9)
    elif field == "pids_limit":
        if not value.lstrip("-").isdigit():
            return f"{flag} {value!r} is not a whole number"
        options[field] = int(value)
    elif field == "extra_hosts":
        host, sep, address = value.partition(":")
        if not sep or not host or not address:
            return f"{flag} {value!r} is not HOST:ADDRESS"
        options.setdefault(field, {})[host] = address
    elif field == "labels":
        key, _, label = value.partition("=")
        if not key:
            return f"{flag} {value!r} is not KEY=VALUE"
        options.setdefault(field, {})[key] = label
    elif field in ("cap_add", "cap_drop"):
        options.setdefault(field, []).append(value)
    else:
        options[field] = value
    return None
