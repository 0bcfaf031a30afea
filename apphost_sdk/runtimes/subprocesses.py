"""Child processes that never outlive the app host.

Every child starts in its own session (so Ctrl-C in the terminal reaches only the app host, which
then stops children in order) and, on Linux, with ``PR_SET_PDEATHSIG`` so the kernel kills it
when the app host dies, even by SIGKILL. The death signal follows the *thread* that forked, so
all children are forked from one long-lived spawner thread.
"""

from __future__ import annotations

import ctypes
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future

from .base import LineSink
from .lines import MAX_LINE_BYTES, LineSplitter

_PR_SET_PDEATHSIG = 1


def _load_prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)  # the running program: libc is loaded
        prctl: Callable[..., int] = libc.prctl
        return prctl
    except (OSError, AttributeError):
        return None


_prctl = _load_prctl()


def _child_setup(parent_pid: int) -> Callable[[], None]:
    def setup() -> None:
        if _prctl is not None:
            _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
            if os.getppid() != parent_pid:  # the parent died before prctl took effect
                os._exit(1)

    return setup


class _Spawner:
    """A single long-lived thread that forks every child (see the module docstring)."""

    def __init__(self) -> None:
        self._jobs: queue.Queue[tuple[Callable[[], subprocess.Popen[bytes]], Future[object]]]
        self._jobs = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def run(self, make: Callable[[], subprocess.Popen[bytes]]) -> subprocess.Popen[bytes]:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._loop, name="apphost-spawner", daemon=True
                )
                self._thread.start()
        fut: Future[object] = Future()
        self._jobs.put((make, fut))
        result = fut.result()
        assert isinstance(result, subprocess.Popen)
        return result

    def _loop(self) -> None:
        while True:
            make, fut = self._jobs.get()
            try:
                fut.set_result(make())
            except BaseException as exc:
                fut.set_exception(exc)


_spawner = _Spawner()

# Reads process-group ids ("123" to watch, "-123" to forget) until its input closes, which
# happens when the app host exits or dies; then SIGKILLs every group still watched.
_WATCHDOG_SCRIPT = r"""
pgs=" "
while IFS= read -r l; do
  case "$l" in
    -*) pgs=$(printf '%s' "$pgs" | sed "s/ ${l#-} / /") ;;
    *) pgs="$pgs$l " ;;
  esac
done
for p in $pgs; do kill -s 9 -- "-$p" 2>/dev/null; done
"""


class _Watchdog:
    """Kills the children's whole process groups (grandchildren included) if the app host dies.

    ``PR_SET_PDEATHSIG`` reaches only direct children; a service's own children would survive a
    SIGKILL of the app host. A tiny ``sh`` outside our process holds the other end of a pipe:
    the kernel closes our end whatever way we die, and the watchdog then kills what is left.
    It runs only while some child is alive, so an idle app host has no extra process.
    """

    def __init__(self) -> None:
        self._proc: subprocess.Popen[bytes] | None = None
        self._groups: set[int] = set()
        self._lock = threading.Lock()

    def watch(self, pgid: int) -> None:
        with self._lock:
            for _ in range(2):
                if self._proc is None or self._proc.poll() is not None:
                    self._proc = subprocess.Popen(
                        ["/bin/sh", "-c", _WATCHDOG_SCRIPT],
                        stdin=subprocess.PIPE,
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                        start_new_session=True,
                        close_fds=True,
                    )
                    for g in self._groups:
                        self._send(f"{g}")
                if self._send(f"{pgid}"):
                    break
                self._proc = None
            self._groups.add(pgid)

    def forget(self, pgid: int) -> None:
        with self._lock:
            if pgid not in self._groups:
                return
            self._groups.discard(pgid)
            if self._proc is None:
                return
            self._send(f"-{pgid}")
            if not self._groups:  # nothing left to guard: let it exit (EOF, empty set)
                proc, self._proc = self._proc, None
                if proc.stdin is not None:
                    try:
                        proc.stdin.close()
                    except OSError:
                        pass
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    proc.kill()

    def _send(self, line: str) -> bool:
        assert self._proc is not None and self._proc.stdin is not None
        try:
            self._proc.stdin.write(line.encode() + b"\n")
            self._proc.stdin.flush()
            return True
        except (BrokenPipeError, OSError, ValueError):
            return False


_watchdog = _Watchdog() if os.path.exists("/bin/sh") else None


class ManagedProcess:
    """A child process with its output streamed line by line and a two-step stop."""

    def __init__(self, popen: subprocess.Popen[bytes], on_line: LineSink) -> None:
        self.popen = popen
        self.pid = popen.pid
        self._readers = [
            threading.Thread(
                target=_pump, args=(stream, name, on_line), daemon=True, name=f"pump-{name}"
            )
            for name, stream in (("stdout", popen.stdout), ("stderr", popen.stderr))
            if stream is not None
        ]
        for t in self._readers:
            t.start()

    def exit_code(self) -> int | None:
        """The exit code once it has exited (negative: killed by that signal), else None."""
        return self._exited(self.popen.poll())

    def wait(self, timeout: float | None = None) -> int | None:
        """Wait up to ``timeout`` seconds; return the exit code or None if still running."""
        try:
            return self._exited(self.popen.wait(timeout))
        except subprocess.TimeoutExpired:
            return None

    def _exited(self, code: int | None) -> int | None:
        # Once the leader is gone and the group emptied, the watchdog need not guard it.
        if code is not None and _watchdog is not None and not self._group_alive():
            _watchdog.forget(self.pid)
        return code

    def _group_alive(self) -> bool:
        try:
            os.killpg(self.pid, 0)
        except (ProcessLookupError, PermissionError):
            return False
        return True

    def join_output(self, timeout: float = 2.0) -> None:
        """Wait until its output has been read to the end (after it exited)."""
        for t in self._readers:
            t.join(timeout)

    def stop(self, grace_seconds: float = 10.0) -> int | None:
        """SIGTERM its process group, then SIGKILL after ``grace_seconds``; returns the code."""
        if self.popen.poll() is None:
            self._signal_group(signal.SIGTERM)
            if self.wait(grace_seconds) is None:
                self._signal_group(signal.SIGKILL)
                self.wait(5)
        # Whatever the leader left behind in its group goes too.
        self._signal_group(signal.SIGKILL)
        if _watchdog is not None:
            _watchdog.forget(self.pid)
        self.join_output()
        return self.popen.poll()

    def _signal_group(self, sig: int) -> None:
        try:
            os.killpg(self.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


#: How much of a child's output one read takes (its lines are then cut at ``MAX_LINE_BYTES``).
READ_CHUNK_BYTES = 64 * 1024


def _pump(stream: object, name: str, on_line: LineSink) -> None:
    """Hand the child's output to ``on_line`` line by line, never holding more than one read
    and one line of it: a line longer than ``MAX_LINE_BYTES`` arrives in pieces."""
    assert hasattr(stream, "read1")
    splitter = LineSplitter(MAX_LINE_BYTES)

    def deliver(lines: list[str]) -> None:
        for line in lines:
            try:
                on_line(name, line)
            except Exception:  # a failing sink must not stop the reading (the child would block)
                pass

    try:
        for chunk in iter(lambda: stream.read1(READ_CHUNK_BYTES), b""):
            deliver(splitter.feed(chunk))
    except (OSError, ValueError):
        pass
    finally:
        deliver(splitter.finish())
        try:
            stream.close()  # type: ignore[attr-defined]
        except OSError:
            pass


def spawn(
    argv: Sequence[str],
    cwd: str | os.PathLike[str] | None,
    env: Mapping[str, str],
    on_line: LineSink,
) -> ManagedProcess:
    """Start ``argv`` as a child that dies with the app host; raises OSError if it cannot."""
    parent = os.getpid()

    def make() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            preexec_fn=_child_setup(parent),  # forked from one spawner thread (see above)
            close_fds=True,
        )

    popen = _spawner.run(make)
    if _watchdog is not None:
        _watchdog.watch(popen.pid)  # its pid is its process-group id (new session)
    return ManagedProcess(popen, on_line)
