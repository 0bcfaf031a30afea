"""What the user sees while the app runs: prefixed log lines and resource states.

On a terminal: coloured ``name |`` prefixes and a live table (``rich``) of every resource with
state, health and endpoint. Otherwise: plain lines, one per log line or state change.

Nothing here ever waits on whoever reads the output: every line goes into a bounded queue that
one writer thread drains. When the reader is too slow (``apphost run ... | less`` left alone, a
full pipe, a paused terminal), new lines are dropped and counted, and a notice says how many
once there is room again; at shutdown the writer gets ``FLUSH_SECONDS`` to finish, then the app
host goes on without it. Output to the background app host's log file (``apphost.log``) is
rotated by size (see ``Reporter.rotate_log``).
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import os
import select
import stat
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from ..masking import SecretMasker
from .states import Health, ResourceSnapshot, State

if TYPE_CHECKING:
    from rich.console import Console

_COLORS = ["36", "35", "33", "32", "34", "91", "96", "95", "93", "92"]
_RICH_COLORS = ["cyan", "magenta", "yellow", "green", "blue", "bright_red", "bright_cyan"]

#: At most this much output (in characters) waits for a slow reader; further lines are dropped.
QUEUE_LIMIT_CHARS = 1024 * 1024
#: How long ``close()`` lets queued output drain before the app host goes on without it.
FLUSH_SECONDS = 1.0
#: The size at which the app host's log file is rotated (``APPHOST_LOG_MAX_BYTES`` overrides).
LOG_MAX_BYTES = 10 * 1024 * 1024
#: Rotated generations kept beside the log: ``apphost.log.1`` (newest) to ``apphost.log.3``.
LOG_GENERATIONS = 3
#: The most one write call hands a pipe once it is writable (never blocks on Linux).
_WRITE_CHUNK = getattr(select, "PIPE_BUF", 512)
#: How often a writer waiting on a full pipe looks whether it should give up.
_POLL_SECONDS = 0.1


def _use_color(stream: TextIO) -> bool:
    if os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("FORCE_COLOR"):
        return True
    return bool(getattr(stream, "isatty", lambda: False)())


def log_max_bytes() -> int:
    """The rotation size of the app host's log: ``APPHOST_LOG_MAX_BYTES`` or ``LOG_MAX_BYTES``."""
    value = os.environ.get("APPHOST_LOG_MAX_BYTES", "").strip()
    try:
        return max(4096, int(value)) if value else LOG_MAX_BYTES
    except ValueError:
        return LOG_MAX_BYTES


def rotated_logs(path: Path, generations: int = LOG_GENERATIONS) -> list[Path]:
    """The rotated generations of the log at ``path``, newest first (``path.1``, ``path.2``…)."""
    return [path.with_name(f"{path.name}.{i}") for i in range(1, generations + 1)]


def _fileno(stream: Any) -> int | None:
    """The file descriptor behind ``stream``, or None for an in-memory stream."""
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):
        return None
    return fd if isinstance(fd, int) and fd >= 0 else None


def _same_file(fd: int, st: os.stat_result) -> bool:
    try:
        other = os.fstat(fd)
    except OSError:
        return False
    return (other.st_dev, other.st_ino) == (st.st_dev, st.st_ino)


class _Output:
    """A bounded queue of text drained by one writer thread into ``stream``.

    ``put`` never blocks: what does not fit in ``QUEUE_LIMIT_CHARS`` is dropped and counted.
    The writer writes to the stream's file descriptor directly, only when it is writable and
    in pieces a pipe takes at once, so that it never blocks either and can always be told to
    give up; it never touches the stream's own buffer and lock (a thread stuck in them would
    abort the interpreter at exit).
    """

    def __init__(self, stream: TextIO, notice: Callable[[int], str]) -> None:
        self.stream = stream
        self._notice = notice
        self._fd = _fileno(stream)
        self._encoding = getattr(stream, "encoding", None) or "utf-8"
        self._poll: Any = None
        #: A pipe (or socket) takes ``PIPE_BUF`` bytes at once when writable; a file anything.
        self._chunk = 64 * 1024
        if self._fd is not None:
            with contextlib.suppress(OSError):
                if not stat.S_ISREG(os.fstat(self._fd).st_mode):
                    self._chunk = _WRITE_CHUNK
            if hasattr(select, "poll"):
                self._poll = select.poll()
                self._poll.register(self._fd, select.POLLOUT)
        self._items: collections.deque[str] = collections.deque()
        self._size = 0
        self._pending_drops = 0
        #: Lines dropped because the reader was too slow (or gone), in all.
        self.dropped = 0
        self._busy = False
        self._closed = False
        self._abandoned = False
        self._broken = False
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._rotation: tuple[Path, int, int] | None = None

    # -- the producers' side --------------------------------------------------------------
    def put(self, text: str) -> None:
        with self._cond:
            if self._closed or self._broken:
                if self._broken:
                    self.dropped += 1
                return
            if self._pending_drops and not self._room_for(text):
                self._drop()
                return
            if self._pending_drops:  # say where the gap is, once there is room again
                self._append(self._notice(self._pending_drops))
                self._pending_drops = 0
            if not self._room_for(text):
                self._drop()
                return
            self._append(text)

    def _room_for(self, text: str) -> bool:
        return self._size + len(text) <= QUEUE_LIMIT_CHARS or not self._items

    def _drop(self) -> None:
        self._pending_drops += 1
        self.dropped += 1

    def _append(self, text: str) -> None:
        self._items.append(text)
        self._size += len(text)
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="apphost-console", daemon=True)
            self._thread.start()
        self._cond.notify_all()

    def flush(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds until everything queued is written."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._items or self._busy:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._abandoned or self._broken:
                    return not (self._items or self._busy)
                self._cond.wait(remaining)
        return True

    def close(self, timeout: float) -> bool:
        """Accept nothing more; give the writer up to ``timeout`` seconds to finish, then make
        it give up. Returns True when everything was written."""
        with self._cond:
            if self._pending_drops and not self._broken:
                self._append(self._notice(self._pending_drops))
                self._pending_drops = 0
            self._closed = True
            self._cond.notify_all()
        done = self.flush(timeout)
        with self._cond:
            self._abandoned = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(_POLL_SECONDS * 3)
        return done

    # -- the writer thread ----------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._items and not self._closed and not self._abandoned:
                    self._cond.wait()
                if self._abandoned or not self._items:
                    self._busy = False
                    self._cond.notify_all()
                    return
                batch: list[str] = []
                size = 0
                while self._items and size < 64 * 1024:
                    text = self._items.popleft()
                    batch.append(text)
                    size += len(text)
                self._size -= size
                self._busy = True
            try:
                self._write("".join(batch))
            except Exception:  # the reader went away (EPIPE) or the stream is closed
                with self._cond:
                    self._broken = True
                    self.dropped += len(self._items)
                    self._items.clear()
                    self._size = 0
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _write(self, text: str) -> None:
        if self._fd is None:  # an in-memory stream (tests, StringIO): it cannot block
            self.stream.write(text)
            self.stream.flush()
            return
        data = memoryview(text.encode(self._encoding, "replace"))
        while data:
            if self._abandoned:
                return
            if self._poll is not None and not self._poll.poll(_POLL_SECONDS * 1000):
                continue  # not writable yet: look again whether to give up
            written = os.write(self._fd, data[: self._chunk])
            data = data[written:]
        if self._rotation is not None:
            self._rotate_if_full()

    # -- log rotation ---------------------------------------------------------------------
    def rotate(self, path: Path, max_bytes: int, generations: int) -> bool:
        """Rotate ``path`` by size when this output writes into it (the background app host's
        stdout is its log file); True if so. Older generations of an earlier run go."""
        if self._fd is None:
            return False
        try:
            st = os.fstat(self._fd)
            if not stat.S_ISREG(st.st_mode) or not _same_file(self._fd, os.stat(path)):
                return False
        except OSError:
            return False
        for old in rotated_logs(path, generations + 3):
            with contextlib.suppress(OSError):
                old.unlink()
        self._rotation = (path, max_bytes, generations)
        return True

    def _rotate_if_full(self) -> None:
        assert self._rotation is not None and self._fd is not None
        path, max_bytes, generations = self._rotation
        try:
            current = os.fstat(self._fd)
            if current.st_size < max_bytes:
                return
            names = [path, *rotated_logs(path, generations)]
            for newer, older in reversed(list(itertools.pairwise(names))):
                if newer.exists():
                    os.replace(newer, older)
            flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND
            fresh = os.open(path, flags | getattr(os, "O_NOFOLLOW", 0), 0o600)
        except OSError:
            self._rotation = None  # cannot rotate here (a read-only folder): keep writing
            return
        try:
            # Every descriptor that wrote into the old file (stdout, stderr) now writes here.
            for fd in sorted({1, 2, self._fd}):
                if _same_file(fd, current):
                    os.dup2(fresh, fd)
        finally:
            os.close(fresh)


class _QueuedFile:
    """The file ``rich`` writes to: text goes into the bounded output queue."""

    def __init__(self, output: _Output, stream: TextIO) -> None:
        self._output = output
        self._stream = stream
        self.encoding = getattr(stream, "encoding", None) or "utf-8"

    def write(self, text: str) -> int:
        self._output.put(text)
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return bool(getattr(self._stream, "isatty", lambda: False)())

    def fileno(self) -> int:
        return self._stream.fileno()


class Reporter:
    """Receives log lines and state changes; the base class prints plain lines."""

    def __init__(
        self, masker: SecretMasker, stream: TextIO | None = None, quiet: bool = False
    ) -> None:
        self.masker = masker
        self.stream = stream or sys.stdout
        self.quiet = quiet
        self.color = _use_color(self.stream)
        self._lock = threading.Lock()
        self._colors: dict[str, str] = {}
        self.width = 8
        with contextlib.suppress(OSError, ValueError):
            self.stream.flush()  # what was printed before comes first
        self._output = _Output(self.stream, self._dropped_notice)

    def set_resources(self, names: Sequence[str]) -> None:
        """Fix prefix widths and colours for these resource names."""
        self.width = max([8, *(len(n) for n in names)])
        for i, n in enumerate(names):
            self._colors[n] = _COLORS[i % len(_COLORS)]

    def _prefix(self, name: str) -> str:
        text = f"{name:<{self.width}} |"
        if self.color:
            return f"\x1b[{self._colors.get(name, '37')}m{text}\x1b[0m"
        return text

    def _dropped_notice(self, count: int) -> str:
        lines = "line" if count == 1 else "lines"
        return (
            f"{self._prefix('apphost')} {count} {lines} of output dropped: the output is read "
            "too slowly\n"
        )

    def log(self, resource: str, stream: str, line: str) -> None:
        """One line of a resource's output, masked."""
        if self.quiet:
            return
        self._write(f"{self._prefix(resource)} {self.masker.mask(line)}")

    def info(self, text: str) -> None:
        """A message of the app host itself."""
        if self.quiet:
            return
        self._write(f"{self._prefix('apphost')} {self.masker.mask(text)}")

    def state_changed(self, snap: ResourceSnapshot, all_snaps: Sequence[ResourceSnapshot]) -> None:
        """A resource changed state or health."""
        text = f"{snap.name}: {snap.state.value}"
        if snap.health_reason:
            text += f" ({snap.health.value}: {snap.health_reason})"
        elif snap.health is not Health.UNKNOWN:
            text += f" ({snap.health.value})"
        if snap.endpoint and snap.state is State.RUNNING:
            text += f" at {snap.endpoint}"
        if snap.exit_code is not None:
            text += f", exit code {snap.exit_code}"
        if snap.message:
            text += f": {snap.message}"
        self.info(text)

    def _write(self, text: str) -> None:
        self._output.put(text + "\n")

    @property
    def dropped(self) -> int:
        """Lines dropped because the output was read too slowly."""
        return self._output.dropped

    def flush(self, timeout: float = FLUSH_SECONDS) -> bool:
        """Wait (at most ``timeout`` seconds) until the output queued so far is written."""
        return self._output.flush(timeout)

    def rotate_log(self, path: Path) -> bool:
        """Rotate ``path`` at ``log_max_bytes()``, keeping ``LOG_GENERATIONS`` older files, if
        the output goes there (the background app host's ``apphost.log``); True if so."""
        return self._output.rotate(path, log_max_bytes(), LOG_GENERATIONS)

    def close(self) -> None:
        """Stop any live display; let queued output drain for at most ``FLUSH_SECONDS``."""
        self._output.close(FLUSH_SECONDS)


class LiveReporter(Reporter):
    """A ``rich`` live table of resources under the scrolling, prefixed logs."""

    def __init__(self, masker: SecretMasker, stream: TextIO | None = None) -> None:
        super().__init__(masker, stream)
        from rich.console import Console
        from rich.live import Live

        self.console: Console = Console(file=_QueuedFile(self._output, self.stream))  # type: ignore[arg-type]
        self._snaps: dict[str, ResourceSnapshot] = {}
        self._live = Live(self._table(), console=self.console, refresh_per_second=4)
        self._live.start()

    def _table(self) -> Any:
        from rich.table import Table
        from rich.text import Text

        table = Table(title="apphost resources", expand=False)
        for col in ("resource", "type", "state", "health", "endpoint"):
            table.add_column(col)
        style = {
            State.RUNNING: "green",
            State.FAILED_TO_START: "red",
            State.FAILED_TO_PROVISION: "red",
            State.EXITED: "yellow",
        }
        colors = {Health.HEALTHY: "green", Health.UNHEALTHY: "red"}
        for s in self._snaps.values():
            health = Text(s.health.value if s.health is not Health.UNKNOWN else "")
            health.stylize(colors.get(s.health, ""))
            if s.health_reason:  # why it is not healthy, as text (it may hold brackets)
                health = Text(f"{s.health.value}: {s.health_reason}", style="yellow")
            table.add_row(
                s.name,
                s.kind,
                f"[{style.get(s.state, 'white')}]{s.state.value}",
                health,
                s.endpoint or "",
            )
        return table

    def _write(self, text: str) -> None:
        with self._lock:
            self._live.console.print(text, markup=False, highlight=False, soft_wrap=True)

    def log(self, resource: str, stream: str, line: str) -> None:
        from rich.text import Text

        color = _RICH_COLORS[sum(map(ord, resource)) % len(_RICH_COLORS)]
        text = Text.assemble((f"{resource:<{self.width}} |", color), " ", self.masker.mask(line))
        with self._lock:
            self._live.console.print(text, highlight=False, soft_wrap=True)

    def info(self, text: str) -> None:
        from rich.text import Text

        # Text, not markup: a message may hold square brackets of its own.
        line = Text.assemble((f"{'apphost':<{self.width}} |", "bold"), " ", self.masker.mask(text))
        with self._lock:
            self._live.console.print(line, highlight=False, soft_wrap=True)

    def state_changed(self, snap: ResourceSnapshot, all_snaps: Sequence[ResourceSnapshot]) -> None:
        with self._lock:
            self._snaps = {s.name: s for s in all_snaps}
            self._live.update(self._table())
        if snap.state.is_failure or (snap.message and snap.state is not State.RUNNING):
            super().state_changed(snap, all_snaps)

    def close(self) -> None:
        try:
            self._live.stop()
        finally:
            super().close()


def make_reporter(masker: SecretMasker, quiet: bool = False) -> Reporter:
    """A live table on an interactive terminal, plain lines otherwise."""
    if not quiet and sys.stdout.isatty() and os.environ.get("TERM") != "dumb":
        try:
            return LiveReporter(masker)
        except Exception:  # pragma: no cover - a terminal rich cannot drive
            pass
    return Reporter(masker, quiet=quiet)
