"""The app host's end of the control channel: a 0600 Unix socket serving ``apphost resource``
and ``apphost logs`` (see :mod:`.protocol` for the messages).

One thread per connection, so a command that waits for a resource's state or a followed log
never holds up another client, and the app host itself never waits on any client: a client
that reads nothing for ``send_timeout`` seconds is dropped.
"""

from __future__ import annotations

import errno
import itertools
import os
import select
import socket
import stat
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import attrs

from ..dashboard.source import DashboardSource
from ..telemetry.models import ConsoleLine
from ..telemetry.store import TelemetryStore
from .protocol import (
    END,
    MAX_REQUEST_BYTES,
    SEND_TIMEOUT,
    CommandRequest,
    LogsRequest,
    ProtocolError,
    command_answer,
    control_socket_path,
    dropped_answer,
    encode,
    error_answer,
    fallback_socket_dir,
    line_answer,
    parse_request,
    resources_answer,
)

__all__ = ["SEND_TIMEOUT", "ControlServer", "control_socket_path"]

#: At most this many clients at once; more are answered with an error and closed.
MAX_CONNECTIONS = 32
#: How often a followed log looks whether its client left or the server stops (seconds).
POLL_SECONDS = 0.25
#: Answers are sent in chunks of about this many bytes.
CHUNK_BYTES = 64 * 1024


class ControlServer:
    """Serves the control channel of one running app host on the Unix socket ``path``."""

    def __init__(
        self,
        path: Path,
        source: DashboardSource,
        store: TelemetryStore,
        *,
        send_timeout: float = SEND_TIMEOUT,
        max_connections: int = MAX_CONNECTIONS,
    ) -> None:
        self.path = Path(path)
        self.source = source
        self.store = store
        self.send_timeout = send_timeout
        self.max_connections = max_connections
        self._listener: socket.socket | None = None
        self._identity: tuple[int, int] | None = None  # (st_dev, st_ino) of the bound socket
        self._stopping = threading.Event()
        self._wake_r, self._wake_w = -1, -1
        self._accepter: threading.Thread | None = None
        self._lock = threading.Lock()
        self._connections: set[socket.socket] = set()

    # -- life cycle ---------------------------------------------------------------------
    def start(self) -> None:
        """Bind the socket (0600) and accept clients on a background thread. ``OSError``
        (with a message naming the fix) when the path cannot be used."""
        if self._listener is not None:
            raise RuntimeError("the control server is already started")
        self._listener = _bind(self.path)
        st = os.lstat(self.path)
        self._identity = (st.st_dev, st.st_ino)
        self._wake_r, self._wake_w = os.pipe()
        self._accepter = threading.Thread(
            target=self._accept_loop, name="apphost-control", daemon=True
        )
        self._accepter.start()

    def stop(self) -> None:
        """Stop accepting, end every connection (a followed log ends) and remove the socket
        (only ours: never one another app host bound since)."""
        if self._listener is None or self._stopping.is_set():
            return
        self._stopping.set()
        os.write(self._wake_w, b"x")
        if self._accepter is not None:
            self._accepter.join(2.0)
        self._listener.close()
        self._remove_socket()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:  # wakes a send blocked on a client that does not read
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for fd in (self._wake_r, self._wake_w):
            os.close(fd)

    def _remove_socket(self) -> None:
        try:
            st = os.lstat(self.path)
        except OSError:
            return
        if (st.st_dev, st.st_ino) == self._identity:
            try:
                self.path.unlink()
            except OSError:
                pass

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self._stopping.is_set():
            try:
                ready, _, _ = select.select([self._listener.fileno(), self._wake_r], [], [])
            except (OSError, ValueError):
                return
            if self._wake_r in ready or self._stopping.is_set():
                return
            try:
                conn, _ = self._listener.accept()
            except OSError:
                continue
            with self._lock:
                full = len(self._connections) >= self.max_connections
                if not full:
                    self._connections.add(conn)
            if full:
                _refuse(conn, f"too many clients (at most {self.max_connections}); try again")
                continue
            threading.Thread(
                target=self._serve, args=(conn,), name="apphost-control-client", daemon=True
            ).start()

    # -- one connection -----------------------------------------------------------------
    def _serve(self, conn: socket.socket) -> None:
        """Read one request and answer it; every failure ends only this connection."""
        try:
            conn.settimeout(self.send_timeout)
            try:
                request = parse_request(_read_request(conn, self.send_timeout))
            except ProtocolError as exc:
                _send(conn, [error_answer(f"bad request: {exc}")])
                return
            if isinstance(request, CommandRequest):
                _send(conn, [self._command(request)])
            else:
                self._logs(conn, request)
        except (OSError, ValueError):
            pass  # the client left, or did not read in time: drop it
        except Exception as exc:  # a bug must not kill the app host (nor print a trace)
            try:
                _send(conn, [error_answer(f"the app host could not answer: {exc}")])
            except (OSError, ValueError):
                pass
        finally:
            with self._lock:
                self._connections.discard(conn)
            conn.close()

    def _resource_names(self) -> list[str]:
        """Every resource: the app's, then any that only left console lines behind."""
        names = [r.name for r in self.source.resources()]
        return names + [n for n in self.store.resource_names() if n not in names]

    def _command(self, request: CommandRequest) -> dict[str, Any]:
        names = self._resource_names()
        name = _match(request.resource, names)
        if name is None:
            return command_answer(False, _unknown(request.resource, names))
        try:
            result = self.source.execute(name, request.command)
        except Exception as exc:
            return command_answer(False, f"{request.command} {name} failed: {exc}")
        return command_answer(result.ok, result.message)

    def _logs(self, conn: socket.socket, request: LogsRequest) -> None:
        """The backlog (``since`` on), its dropped notices, then, when following, each new
        line until the client closes or the server stops."""
        names = self._resource_names()
        resource = None if request.resource is None else _match(request.resource, names)
        if request.resource is not None and resource is None:
            _send(conn, [error_answer(_unknown(request.resource, names))])
            return
        request = attrs.evolve(request, resource=resource)
        store = self.store
        version = store.version
        page = store.console_lines(request.resource, since=request.since)
        targets = [request.resource] if request.resource is not None else names
        head: list[dict[str, Any]] = [resources_answer(names)]
        for name in targets:
            count = store.dropped("console", name)
            if count:
                head.append(dropped_answer(count, name))
        _send(conn, itertools.chain(head, (_line(item) for item in page.items)))
        if not request.follow:
            _send(conn, [END])
            return
        after = page.last_seq
        while not self._stopping.is_set() and not _client_left(conn):
            current = store.wait_changed(version, POLL_SECONDS)
            if current == version:
                continue
            version = current
            page = store.console_lines(request.resource, after=after)
            after = page.last_seq
            if page.items:
                _send(conn, (_line(item) for item in page.items))


def _line(item: object) -> dict[str, Any]:
    assert isinstance(item, ConsoleLine)
    return line_answer(item.resource, item.stream, item.timestamp, item.text)


def _match(name: str, names: list[str]) -> str | None:
    """The resource ``name`` stands for: names are case-insensitive, as everywhere in the
    app host (``Orchestrator.record``); an exact match wins over a case-folded one."""
    if name in names:
        return name
    folded = name.casefold()
    return next((n for n in names if n.casefold() == folded), None)


def _unknown(name: str, names: list[str]) -> str:
    listed = ", ".join(names) if names else "none"
    return f"no resource named {name!r}; the resources are: {listed}"


def _send(conn: socket.socket, messages: Iterable[dict[str, Any]]) -> None:
    """Send ``messages`` in chunks; ``TimeoutError`` (an ``OSError``) when the client has
    not read for the connection's timeout."""
    chunk: list[bytes] = []
    size = 0
    for message in messages:
        data = encode(message)
        chunk.append(data)
        size += len(data)
        if size >= CHUNK_BYTES:
            conn.sendall(b"".join(chunk))
            chunk, size = [], 0
    if chunk:
        conn.sendall(b"".join(chunk))


def _read_request(conn: socket.socket, timeout: float) -> bytes:
    """The request line, read within ``timeout`` seconds and ``MAX_REQUEST_BYTES``."""
    deadline = time.monotonic() + timeout
    data = b""
    while b"\n" not in data:
        if len(data) > MAX_REQUEST_BYTES:
            raise ProtocolError(f"the request is longer than {MAX_REQUEST_BYTES} bytes")
        if time.monotonic() > deadline:
            raise TimeoutError("no request in time")
        part = conn.recv(4096)
        if not part:
            raise ProtocolError("the connection closed before a full request line")
        data += part
    return data.split(b"\n", 1)[0]


def _client_left(conn: socket.socket) -> bool:
    """Whether the client closed its end (anything it sends while following is ignored)."""
    try:
        readable, _, _ = select.select([conn], [], [], 0)
        return bool(readable) and not conn.recv(4096)
    except (OSError, ValueError):
        return True


def _refuse(conn: socket.socket, message: str) -> None:
    try:
        conn.settimeout(1.0)
        conn.sendall(encode(error_answer(message)))
    except OSError:
        pass
    finally:
        conn.close()


# -- binding --------------------------------------------------------------------------------
def _bind(path: Path) -> socket.socket:
    """A listening socket at ``path``, 0600: its folder private, a stale socket replaced, and
    never anything else (a symbolic link, a file, a live app host's socket) touched."""
    _prepare_folder(path.parent)
    _clear_stale(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        old = os.umask(0o177)  # never a moment with a socket others may connect to
        try:
            sock.bind(str(path))
        finally:
            os.umask(old)
        os.chmod(path, 0o600)
        sock.listen(16)
    except BaseException:
        sock.close()
        raise
    return sock


def _prepare_folder(folder: Path) -> None:
    """Create the socket's folder (0700); the shared ``/tmp`` one must be ours and private."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    if folder != fallback_socket_dir():
        return
    st = os.lstat(folder)
    if not stat.S_ISDIR(st.st_mode):
        raise OSError(errno.ENOTDIR, f"{folder} is not a folder; remove it")
    if hasattr(os, "getuid") and st.st_uid != os.getuid():
        raise OSError(
            errno.EPERM,
            f"{folder} belongs to another user; remove it, or set APPHOST_STATE_DIR to a "
            "shorter path",
        )
    if stat.S_IMODE(st.st_mode) != 0o700:
        os.chmod(folder, 0o700)


def _clear_stale(path: Path) -> None:
    """Remove a socket left by an app host that died; refuse anything else at ``path``."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(st.st_mode):
        raise OSError(errno.ELOOP, f"{path} is a symbolic link, not the app's socket; remove it")
    if not stat.S_ISSOCK(st.st_mode):
        raise OSError(errno.EEXIST, f"{path} exists and is not a socket; remove it")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(str(path))
    except (ConnectionRefusedError, FileNotFoundError):
        path.unlink(missing_ok=True)  # nothing answers: a stale socket
        return
    finally:
        probe.close()
    raise OSError(
        errno.EADDRINUSE, f"another app host answers on {path}; stop it first (apphost stop)"
    )
