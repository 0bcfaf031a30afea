"""A digest of a Docker build (context and Dockerfile), so an image is rebuilt exactly when what
it is built from changed."""

from __future__ import annotations

import fnmatch
import hashlib
import os
from pathlib import Path


def _ignore_patterns(context: Path) -> list[str] | None:
    """The context's ``.dockerignore`` patterns, or None when they cannot be applied simply
    (exceptions with ``!``: then nothing is ignored, which at worst rebuilds too often)."""
    try:
        lines = (context / ".dockerignore").read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    patterns = [ln.strip().strip("/") for ln in lines if ln.strip() and not ln.startswith("#")]
    if any(p.startswith("!") for p in patterns):
        return None
    return [p.removeprefix("./") for p in patterns]


def _ignored(relative: str, patterns: list[str]) -> bool:
    """True when ``relative`` (or a folder above it) matches a ``.dockerignore`` pattern."""
    parts = relative.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    return any(
        fnmatch.fnmatchcase(prefix, p) or fnmatch.fnmatchcase(prefix, p.replace("**/", ""))
        for p in patterns
        for prefix in prefixes
    )


def context_digest(context: Path, dockerfile: str) -> str:
    """12 hex digits over the Dockerfile's text (wherever it is) and every file's path, mode
    and content under ``context`` that ``.dockerignore`` does not exclude: a changed file means
    a new image tag, and so a build."""
    digest = hashlib.sha256()
    path = Path(dockerfile)
    path = path if path.is_absolute() else context / path
    try:
        digest.update(path.read_bytes())
    except OSError:
        digest.update(dockerfile.encode())
    patterns = _ignore_patterns(context) or []
    for root, dirs, files in os.walk(context):
        rel_root = Path(root).relative_to(context).as_posix()
        rel_root = "" if rel_root == "." else rel_root + "/"
        dirs[:] = sorted(d for d in dirs if not _ignored(rel_root + d, patterns))
        for name in sorted(files):
            relative = rel_root + name
            if _ignored(relative, patterns):
                continue
            file = Path(root) / name
            try:
                data = file.read_bytes()
                mode = file.stat().st_mode & 0o777
            except OSError:
                continue
            digest.update(relative.encode() + b"\0")
            digest.update(f"{mode:o}\0".encode())
            digest.update(hashlib.sha256(data).digest())
    return digest.hexdigest()[:12]
