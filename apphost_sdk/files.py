"""Files the app host keeps private: atomic writes with a given mode, JSON reads.

A leaf module (it imports nothing of the project), shared by the state folder, the runtimes and
provisioning. Nothing here follows a symbolic link planted where a private file belongs: writes
replace the link itself (``rename``), and :func:`read_private_json` refuses it (``O_NOFOLLOW``).
"""

from __future__ import annotations

import errno
import json
import os
import stat
import tempfile
from pathlib import Path
from typing import Any


class PrivateFileError(Exception):
    """A private file exists but cannot be used; the message names the file and the fix."""

    def __init__(self, path: Path, problem: str, fix: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(f"{path} {problem}; {fix}")


def write_private(path: Path, text: str, mode: int = 0o600, durable: bool = False) -> None:
    """Write ``text`` to ``path`` atomically (temp file + rename) with ``mode``; ``durable``
    also syncs it to disk first, for records a crash must not leave half-written.

    A symbolic link at ``path`` is replaced by the file, never written through: ``rename``
    replaces the directory entry, whatever it points to.
    """
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


def read_private_json(path: Path, fix: str) -> Any:
    """Read the JSON file ``path``, or return None when it does not exist.

    A file that exists but cannot be used (a folder, a symbolic link, unreadable, not JSON)
    raises :class:`PrivateFileError` naming it, what is wrong, and ``fix``. A symbolic link is
    never followed (``O_NOFOLLOW``): it could point anywhere.
    """
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP or os.path.islink(path):
            raise PrivateFileError(
                path, "is a symbolic link, which is never followed", fix
            ) from None
        raise PrivateFileError(path, f"cannot be read ({exc.strerror})", fix) from None
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise PrivateFileError(path, "is a folder, not a file", fix)
        if not stat.S_ISREG(info.st_mode):
            raise PrivateFileError(path, "is not a regular file", fix)
        with os.fdopen(fd, "rb") as fh:
            fd = -1
            raw = fh.read()
    except OSError as exc:
        raise PrivateFileError(path, f"cannot be read ({exc.strerror})", fix) from None
    finally:
        if fd >= 0:
            os.close(fd)
    try:
        return json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise PrivateFileError(path, "is not UTF-8 text", fix) from None
    except ValueError as exc:
        where = f" (line {exc.lineno})" if isinstance(exc, json.JSONDecodeError) else ""
        raise PrivateFileError(path, f"is not valid JSON{where}", fix) from None
