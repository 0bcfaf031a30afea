"""Each resource's console output in its own file, ``logs/{name}.log`` in the app's state folder,
so a run's output outlives the app host (the dashboard's buffers are in memory).

Writing never blocks the resource's output reader: lines go through the same bounded queue and
writer thread as the terminal path, and each file is rotated by size (``APPHOST_LOG_MAX_BYTES``,
default 10 MiB) keeping one older generation.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
import threading
from pathlib import Path
from typing import TextIO

from ..errors import ApphostError
from ..state import ensure_directory
from .console import FLUSH_SECONDS, _Output, log_max_bytes

#: The folder of the per-resource files, inside the app's state folder.
LOGS_FOLDER = "logs"
#: Rotated generations kept beside each file (``api.log.1``).
GENERATIONS = 1


def resource_log_path(state_dir: Path, resource: str) -> Path:
    """Where ``resource``'s console output of the latest run is kept."""
    return state_dir / LOGS_FOLDER / f"{resource}.log"


class ResourceLogFiles:
    """One bounded, rotated file per resource; lines are ``{UTC time} {stream} {text}``."""

    def __init__(self, state_dir: Path) -> None:
        self._state_dir = state_dir
        self._directory = state_dir / LOGS_FOLDER
        self._outputs: dict[str, tuple[_Output, TextIO]] = {}
        self._lock = threading.Lock()
        self._closed = False
        #: Set once the folder or a file cannot be written: the run goes on without files.
        self.error: str | None = None

    def write(self, resource: str, stream: str, line: str, timestamp: float) -> None:
        """Queue one (already masked) line; never blocks."""
        output = self._output(resource)
        if output is None:
            return
        when = _dt.datetime.fromtimestamp(timestamp, _dt.timezone.utc)
        output.put(f"{when.isoformat(timespec='milliseconds')} {stream} {line}\n")

    def _output(self, resource: str) -> _Output | None:
        with self._lock:
            if self._closed or self.error is not None:
                return None
            found = self._outputs.get(resource)
            if found is not None:
                return found[0]
            path = resource_log_path(self._state_dir, resource)
            try:
                ensure_directory(self._directory)
                os.chmod(self._directory, 0o700)  # the output may hold what masking missed
                flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND
                fd = os.open(path, flags | getattr(os, "O_NOFOLLOW", 0), 0o600)
            except ApphostError as exc:
                self.error = str(exc)
                return None
            except OSError as exc:
                self.error = f"cannot write {path}: {exc.strerror or exc}"
                return None
            stream = open(fd, "w", encoding="utf-8", errors="replace")  # noqa: SIM115
            output = _Output(stream, lambda n: f"[apphost: {n} line(s) dropped: disk too slow]\n")
            output.rotate(path, log_max_bytes(), GENERATIONS)
            self._outputs[resource] = (output, stream)
            return output

    def close(self) -> None:
        """Write what is queued (bounded wait) and close the files."""
        with self._lock:
            self._closed = True
            outputs = list(self._outputs.values())
            self._outputs.clear()
        for output, stream in outputs:
            output.close(FLUSH_SECONDS)
            with contextlib.suppress(OSError):
                stream.close()
