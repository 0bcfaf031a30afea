"""A digest of a Docker build context, so an image is rebuilt exactly when its context changed."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

#: Folders never part of what a build depends on in practice (and often large).
_SKIP = {".git", ".venv", "__pycache__", "node_modules", ".mypy_cache", ".pytest_cache"}


def context_digest(context: Path, dockerfile: str) -> str:
    """12 hex digits over every file's path, mode and content under ``context`` (plus the
    Dockerfile's name), honouring nothing else: a changed file means a new tag and a build."""
    digest = hashlib.sha256(dockerfile.encode())
    for root, dirs, files in os.walk(context):
        dirs[:] = sorted(d for d in dirs if d not in _SKIP)
        for name in sorted(files):
            path = Path(root) / name
            try:
                data = path.read_bytes()
                mode = path.stat().st_mode & 0o777
            except OSError:
                continue
            digest.update(str(path.relative_to(context)).encode() + b"\0")
            digest.update(f"{mode:o}\0".encode())
            digest.update(hashlib.sha256(data).digest())
    return digest.hexdigest()[:12]
