"""One app host per app: an exclusive lock on ``run.lock`` in the app's state folder.

Every way of starting an app (``apphost start``, ``apphost run``, ``python apphost.py``,
``builder.build().start()``) takes the lock before anything starts, with ``flock``, and holds it
for the app host's lifetime; the kernel releases it when the process ends, however it ends. A
second starter fails at once, naming the pid of the app host that holds it, before it touches
the first one's log or status.

``apphost start`` takes the lock in the CLI, before it opens the log, and forks the app host,
which inherits the locked file: the lock is held without a gap from the check to the app host's
exit. The lock file holds the holder's pid (``"PID\\n"``), for the message a second starter
shows.

Within one process the lock is re-entrant (an app started, stopped and started again, or the
app host forked by ``apphost start``), counted per :class:`RunLock` handle.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from .errors import ApphostError
from .process_identity import process_alive

try:
    import fcntl
except ImportError:  # pragma: no cover - no flock (Windows): the status file is the only guard
    fcntl = None  # type: ignore[assignment]

#: The lock file in each app's state folder.
LOCK_FILE = "run.lock"


class AlreadyRunningError(ApphostError):
    """Another app host holds the app's run lock; the message names its pid."""

    def __init__(self, message: str, pid: int | None) -> None:
        super().__init__(message)
        self.pid = pid


class _Held:
    """The open, locked file of one state folder, shared by this process's handles."""

    def __init__(self, key: tuple[int, int], path: Path, fd: int) -> None:
        self.key = key
        self.path = path
        self.fd = fd
        self.users = 0


_held: dict[tuple[int, int], _Held] = {}
_mutex = threading.Lock()


class RunLock:
    """One hold of an app's run lock; :meth:`release` once (later calls do nothing)."""

    def __init__(self, held: _Held) -> None:
        self._held: _Held | None = held
        self.path = held.path

    def record_pid(self, pid: int) -> None:
        """Name ``pid`` as the app host in the lock file (for a second starter's message)."""
        held = self._held
        if held is None or held.fd < 0:
            return
        try:
            os.ftruncate(held.fd, 0)
            os.pwrite(held.fd, f"{pid}\n".encode(), 0)
        except OSError:
            pass  # only the message of a second starter loses its pid

    def release(self) -> None:
        """Give up this hold; the lock is released when the process's last hold is."""
        with _mutex:
            held, self._held = self._held, None
            if held is None:
                return
            held.users -= 1
            if held.users > 0:
                return
            _held.pop(held.key, None)
        if held.fd < 0:
            return
        try:
            os.ftruncate(held.fd, 0)  # names no pid once released
        except OSError:
            pass
        os.close(held.fd)  # releases the flock (this process's only descriptor of it)
        held.fd = -1

    def detach(self) -> None:
        """Forget the lock in this process without releasing it: for the CLI once it has forked
        the app host, whose inherited descriptor keeps holding it."""
        with _mutex:
            held, self._held = self._held, None
            if held is None:
                return
            _held.pop(held.key, None)
        if held.fd >= 0:
            os.close(held.fd)  # the child's copy of the open file keeps the lock
            held.fd = -1


def acquire(state_dir: Path, app_name: str, app_host: Path, *, record_pid: bool = True) -> RunLock:
    """Take the run lock of the app whose state folder is ``state_dir``, without waiting.

    Raises :class:`AlreadyRunningError` naming the holder's pid when another process holds it,
    and ``ApphostError`` naming the lock file when it cannot be opened. ``record_pid`` writes
    this process's pid in the lock file; ``apphost start`` records its app host's instead.
    """
    from .state import ensure_directory

    ensure_directory(state_dir)
    path = state_dir / LOCK_FILE
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags, 0o600)
    except OSError as exc:
        what = (
            "is a symbolic link, which is never followed"
            if path.is_symlink()
            else (f"cannot be opened ({exc.strerror})")
        )
        raise ApphostError(
            f"{path} {what}; remove it, or set APPHOST_STATE_DIR to a folder of your own"
        ) from None
    try:
        info = os.fstat(fd)
        key = (info.st_dev, info.st_ino)
        with _mutex:
            held = _held.get(key)
            if held is not None and held.fd >= 0:  # this process holds it already
                os.close(fd)
                fd = -1
                held.users += 1
                return RunLock(held)
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                fd = -1
                pid = holder_pid(state_dir)
                raise AlreadyRunningError(
                    already_running_message(app_name, app_host, pid), pid
                ) from None
        try:
            os.fchmod(fd, 0o600)
        except OSError:
            pass
        held = _Held(key, path, fd)
        held.users = 1
        with _mutex:
            _held[key] = held
        fd = -1
        lock = RunLock(held)
        if record_pid:
            lock.record_pid(os.getpid())
        else:
            try:
                os.ftruncate(held.fd, 0)  # no stale pid until the app host's is recorded
            except OSError:
                pass
        return lock
    finally:
        if fd >= 0:
            os.close(fd)


def holder_pid(state_dir: Path, wait: float = 2.0) -> int | None:
    """The pid recorded in the app's lock file when it names a live process, waiting up to
    ``wait`` seconds for the holder to record it (it does right after taking the lock)."""
    path = state_dir / LOCK_FILE
    deadline = time.monotonic() + wait
    while True:
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
            try:
                text = os.read(fd, 64).decode("ascii", "replace")
            finally:
                os.close(fd)
        except OSError:
            text = ""
        if text.endswith("\n") and text.strip().isdigit():
            pid = int(text)
            if process_alive(pid):
                return pid
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.02)


def already_running_message(app_name: str, app_host: Path, pid: int | None) -> str:
    """What a second starter of a running app is told."""
    who = f"pid {pid}" if pid is not None else "another apphost process holds its run.lock"
    return f"{app_name} is already running ({who}); stop it with `apphost stop {app_host}` first"
