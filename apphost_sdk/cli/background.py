"""Running an app host in the background and reading its status file (``apphost start``)."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import ApphostError
from ..files import read_json
from ..process_identity import process_alive, process_start_time
from ..run_lock import RunLock
from ..state import LOG_FILE, STATUS_FILE, app_identity, ensure_directory, state_root
from ..status import AppPhase, phase_of


def state_dir_for(app_host: Path) -> Path:
    """The state folder the app host at ``app_host`` writes to."""
    _, app_id = app_identity(app_host)
    return state_root() / app_id


def read_status(state_dir: Path) -> dict[str, Any] | None:
    """The status a running (or finished) app host wrote, or None."""
    data = read_json(state_dir / STATUS_FILE)
    return data if isinstance(data, dict) else None


class Launched:
    """The background app host: a forked child of this CLI (or a subprocess where fork is
    unavailable), with the bits of the ``Popen`` interface that ``wait_ready`` uses."""

    def __init__(self, pid: int, popen: subprocess.Popen[bytes] | None = None) -> None:
        self.pid = pid
        self._popen = popen
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self._popen is not None:
            self.returncode = self._popen.poll()
        elif self.returncode is None:
            done, status = os.waitpid(self.pid, os.WNOHANG)
            if done:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float) -> int | None:
        deadline = time.monotonic() + timeout
        while self.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.returncode


def open_log(path: Path) -> int:
    """Open (truncate) the background app host's log, 0600, never through a symbolic link
    planted in its place (the link is replaced); ``ApphostError`` naming it when impossible."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0)
    try:
        try:
            fd = os.open(path, flags, 0o600)
        except OSError as exc:
            if exc.errno != errno.ELOOP and not path.is_symlink():
                raise
            path.unlink()  # a link where the log belongs: replace it, never write through it
            fd = os.open(path, flags | os.O_EXCL, 0o600)
        os.fchmod(fd, 0o600)  # an older log may have another mode
    except OSError as exc:
        raise ApphostError(
            f"cannot write the log {path}: {exc.strerror}; remove it, or set APPHOST_STATE_DIR "
            "to a writable folder"
        ) from None
    return fd


def launch(
    app_host: Path,
    extra_args: list[str],
    run: Callable[[Path, list[str]], int],
    lock: RunLock,
) -> Launched:
    """Start the app host detached, its output going to the state folder's log.

    ``lock`` is the app's run lock, taken by the caller before anything here touches the log or
    the status: the forked app host inherits it and holds it until it exits, and its pid is
    recorded in it. On POSIX the CLI forks and the child runs the app host file with ``run`` in
    a new session: no second interpreter start-up, which is most of what ``apphost start`` adds.
    """
    state_dir = state_dir_for(app_host)
    ensure_directory(state_dir)
    (state_dir / STATUS_FILE).unlink(missing_ok=True)
    log_fd = open_log(state_dir / LOG_FILE)
    env_state = os.environ.get("APPHOST_STATE_DIR")
    if env_state:  # the app host runs in its own folder: keep a relative state folder the same
        os.environ["APPHOST_STATE_DIR"] = str(Path(env_state).expanduser().absolute())
    if not hasattr(os, "fork"):
        # No fork (and no flock) on this platform: the child cannot inherit the lock.
        lock.release()
        with os.fdopen(log_fd, "wb") as log:
            popen = subprocess.Popen(
                [sys.executable, str(app_host), *extra_args],
                cwd=app_host.parent,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={**os.environ, "APPHOST_DETACHED": "1"},
            )
        return Launched(popen.pid, popen)
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid:
        os.close(log_fd)
        lock.record_pid(pid)
        lock.detach()  # the app host holds it from here on
        return Launched(pid)
    code = 1
    try:  # the child: become the detached app host
        os.setsid()
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        os.close(log_fd)
        os.close(null)
        os.chdir(app_host.parent)
        os.environ["APPHOST_DETACHED"] = "1"
        code = run(app_host, extra_args)
    except BaseException as exc:  # report it in the log; never return into the CLI
        print(describe_failure(exc, app_host), file=sys.stderr)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        lock.release()
        os._exit(code)


def wait_ready(
    proc: Launched, state_dir: Path, timeout: float
) -> tuple[bool, dict[str, Any] | None, str]:
    """Wait until the background app host is ready, failed, exited or timed out.

    Returns (ready, last status, reason when not ready).
    """
    deadline = time.monotonic() + timeout
    status: dict[str, Any] | None = None
    while time.monotonic() < deadline:
        status = read_status(state_dir)
        if status and status.get("pid") == proc.pid:
            if phase_of(status) is AppPhase.READY:
                return True, status, ""
            if phase_of(status) is AppPhase.FAILED:
                proc.wait(30)
                return False, status, str(status.get("error") or "the app failed to start")
        if proc.poll() is not None:
            last = log_tail(state_dir, 1)
            return False, status, last or f"the app host exited with code {proc.returncode}"
        time.sleep(0.01)
    stop_pid(proc.pid, 30)
    pending = [
        f"{r.get('name', '?')} ({r.get('state', '?')}, {r.get('health', '?')})"
        for r in (status or {}).get("resources", [])
        if isinstance(r, dict) and not resource_settled(r)
    ]
    return (
        False,
        status,
        f"not ready after {timeout:g} s; not healthy yet: {', '.join(pending) or 'unknown'} "
        "(stopped the app host; raise --timeout or fix the health check)",
    )


def resource_settled(resource: dict[str, Any]) -> bool:
    """Whether one resource of a status file needs nothing more for the app to be ready:
    Running and Healthy, Finished, stopped by a command (``stoppedByCommand``), or held back
    only by command-stopped resources (``heldBackBy``). A stopped resource never fails (nor
    holds up) ``apphost start``."""
    if resource.get("stoppedByCommand") or resource.get("heldBackBy"):
        return True
    state = resource.get("state")
    return state == "Finished" or (state == "Running" and resource.get("health") == "Healthy")


def stop_pid(pid: int, timeout: float, start_time: str = "") -> bool:
    """SIGTERM the app host and wait for it to exit (SIGKILL after ``timeout``); returns False
    when it took SIGKILL. Signals only the process that ``start_time`` identifies."""
    start_time = start_time or process_start_time(pid)
    if not process_alive(pid, start_time):
        return True
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return True
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not process_alive(pid, start_time):
            return True
        time.sleep(0.05)
    if process_alive(pid, start_time):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return False


def describe_failure(exc: BaseException, app_host: Path | None = None) -> str:
    """One message for an app host file that failed, the same under ``apphost run`` and
    ``apphost start``: our own errors as they are, anything else with the frames of the user's
    code only (from ``app_host`` on, none of the SDK's or of ``runpy``), so the line to fix is
    shown. A syntax error shows its file, line and caret."""
    if isinstance(exc, ApphostError):
        return f"apphost: {exc}"
    import traceback

    frames = traceback.extract_tb(exc.__traceback__)
    if app_host is not None:
        first = next((i for i, f in enumerate(frames) if f.filename == str(app_host)), None)
        frames = traceback.StackSummary.from_list(frames[first:] if first is not None else [])
    frames = traceback.StackSummary.from_list(
        [
            f
            for f in frames
            if "/apphost_sdk/" not in f.filename and not f.filename.startswith("<frozen")
        ]
    )
    where = "".join(traceback.format_list(frames))
    what = "".join(traceback.format_exception_only(type(exc), exc)).rstrip()
    return f"apphost: the app host file raised an error:\n{where}{what}"


def log_tail(state_dir: Path, lines: int = 15) -> str:
    """The last lines of the background app host's output (read from the end of the log,
    or of its previous generation right after a rotation)."""
    for name in (LOG_FILE, f"{LOG_FILE}.1"):
        try:
            with open(state_dir / name, "rb") as fh:
                fh.seek(0, os.SEEK_END)
                fh.seek(max(0, fh.tell() - 65536))
                text = fh.read().decode("utf-8", "replace")
        except OSError:
            continue
        if text.strip():
            return "\n".join(text.splitlines()[-lines:])
    return ""
