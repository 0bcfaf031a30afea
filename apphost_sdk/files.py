"""Files the app host keeps private: atomic writes with a given mode, tolerant JSON reads.

A leaf module (it imports nothing of the project), shared by the state folder, the runtimes and
provisioning.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def write_private(path: Path, text: str, mode: int = 0o600, durable: bool = False) -> None:
    """Write ``text`` to ``path`` atomically (temp file + rename) with ``mode``; ``durable``
    also syncs it to disk first, for records a crash must not leave half-written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            if durable:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def read_json(path: Path) -> Any:
    """Read a JSON file, or return None when it is missing or unreadable."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
