"""The CLI's end of the control channel: run a resource command, read console logs.

Every failure is an :class:`~apphost_sdk.errors.ApphostError` with a message naming the fix;
:class:`ControlUnavailable` means nothing listens (the app host is not running, or died), so
the caller can say which app to start.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from ..dashboard.source import CommandResult
from ..errors import ApphostError
from .protocol import CommandRequest, LogsRequest, ProtocolError, decode, encode

#: How long connecting may take (seconds): the app host accepts on its own thread.
CONNECT_TIMEOUT = 5.0
#: How long a command may take to reach its state before the CLI gives up (seconds).
COMMAND_TIMEOUT = 600.0
#: The longest pause between two answers of a log that is not followed (seconds).
READ_TIMEOUT = 30.0


class ControlError(ApphostError):
    """The app host refused a request or the connection broke."""


class ControlUnavailable(ControlError):
    """Nothing listens on the control socket: no socket file, or a stale one."""

    def __init__(self, message: str, path: Path) -> None:
        super().__init__(message)
        self.path = path


class ControlClient:
    """Talks to the app host listening on the Unix socket ``path``."""

    def __init__(self, path: Path, connect_timeout: float = CONNECT_TIMEOUT) -> None:
        self.path = Path(path)
        self.connect_timeout = connect_timeout

    def execute(
        self, resource: str, command: str, timeout: float = COMMAND_TIMEOUT
    ) -> CommandResult:
        """Run ``command`` on ``resource`` and wait for its outcome."""
        with self._connect() as sock:
            sock.settimeout(timeout)
            with self._request(sock, CommandRequest(resource, command).to_json()) as reader:
                answer = self._next(reader, "the command's outcome")
        if answer is None:
            raise ControlError(
                "the app host closed the connection before the command's outcome; see its "
                "output (apphost status, or its log)"
            )
        if "error" in answer:
            raise ControlError(str(answer["error"]))
        return CommandResult(bool(answer.get("ok")), str(answer.get("message", "")))

    def logs(
        self, resource: str | None = None, *, follow: bool = False, since: float | None = None
    ) -> Iterator[dict[str, Any]]:
        """The answers of a logs request (resources, dropped notices, lines), until its end;
        a followed log ends when the app host closes the connection: it stopped, or it dropped
        this client for not reading (the caller tells which from the app's status)."""
        with self._connect() as sock:
            sock.settimeout(None if follow else READ_TIMEOUT)
            with self._request(sock, LogsRequest(resource, follow, since).to_json()) as reader:
                while True:
                    answer = self._next(reader, "the logs")
                    if answer is None:
                        if follow:
                            return  # the app host stopped, or dropped this follow
                        raise ControlError("the app host closed the connection before the end")
                    if "error" in answer:
                        raise ControlError(str(answer["error"]))
                    if answer.get("end"):
                        return
                    yield answer

    # -- plumbing -----------------------------------------------------------------------
    def _connect(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.connect_timeout)
        try:
            sock.connect(str(self.path))
        except (FileNotFoundError, NotADirectoryError):
            sock.close()
            raise ControlUnavailable(f"no control socket at {self.path}", self.path) from None
        except ConnectionRefusedError:
            sock.close()
            raise ControlUnavailable(
                f"nothing answers on {self.path} (a socket left by an app host that stopped)",
                self.path,
            ) from None
        except PermissionError:
            sock.close()
            raise ControlError(
                f"permission denied on {self.path}: the app host runs as another user; run "
                "apphost as that user"
            ) from None
        except OSError as exc:
            sock.close()
            if exc.errno == errno.EAGAIN or isinstance(exc, TimeoutError):
                raise ControlError(
                    f"the app host does not accept on {self.path} (busy); try again"
                ) from None
            raise ControlError(f"cannot connect to {self.path}: {exc.strerror or exc}") from None
        return sock

    def _request(self, sock: socket.socket, message: dict[str, Any]) -> BinaryIO:
        try:
            sock.sendall(encode(message))
        except OSError as exc:
            raise ControlError(f"the app host closed the connection: {exc}") from None
        return sock.makefile("rb")

    def _next(self, reader: BinaryIO, what: str) -> dict[str, Any] | None:
        """The next answer, None at the end of the connection."""
        try:
            line = reader.readline()
        except TimeoutError:
            raise ControlError(f"the app host did not send {what} in time") from None
        except ConnectionResetError:
            return None  # the app host closed its end (it stopped, or dropped this client)
        except OSError as exc:
            raise ControlError(f"the connection to the app host broke: {exc}") from None
        if not line:
            return None
        try:
            return decode(line)
        except ProtocolError as exc:
            raise ControlError(f"the app host sent a bad answer ({exc})") from None
