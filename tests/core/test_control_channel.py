"""The control channel over a real Unix socket: a ControlServer with a small in-test
DashboardSource and a real TelemetryStore, talked to by the real client (and raw sockets where
a client misbehaves)."""

from __future__ import annotations

import datetime as dt
import errno
import json
import os
import re
import socket
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from apphost_sdk.control.client import ControlClient, ControlError, ControlUnavailable
from apphost_sdk.control.protocol import (
    MAX_SOCKET_PATH,
    CommandRequest,
    LogsRequest,
    ProtocolError,
    SinceError,
    control_socket_path,
    encode,
    parse_request,
    parse_since,
)
from apphost_sdk.control.server import ControlServer
from apphost_sdk.dashboard.source import CommandResult, ResourceView
from apphost_sdk.telemetry.store import Limits, TelemetryStore

from .helpers import wait_until


class Source:
    """Two resources; ``stop`` of ``cache`` is refused, the rest succeeds at once."""

    def __init__(self) -> None:
        self.states = {"api": "Running", "cache": "Running"}
        self.calls: list[tuple[str, str]] = []
        self._version = 0

    def resources(self) -> list[ResourceView]:
        return [ResourceView(n, "Executable", s, "Healthy") for n, s in self.states.items()]

    def version(self) -> int:
        return self._version

    def execute(self, resource: str, command: str) -> CommandResult:
        self.calls.append((resource, command))
        if (resource, command) == ("cache", "stop"):
            return CommandResult(False, "cache: stop timed out after 30 s")
        self.states[resource] = "Exited" if command == "stop" else "Running"
        self._version += 1
        return CommandResult(True, f"{resource} is {self.states[resource]}")

    def reveal(self, resource: str, variable: str) -> str | None:
        return None


@pytest.fixture
def store() -> TelemetryStore:
    return TelemetryStore()


@pytest.fixture
def source() -> Source:
    return Source()


@pytest.fixture
def server(tmp_path: Path, source: Source, store: TelemetryStore) -> Iterator[ControlServer]:
    control = ControlServer(control_socket_path(tmp_path / "st", "shop-0123"), source, store)
    control.start()
    yield control
    control.stop()


def client_threads() -> int:
    return sum(t.name == "apphost-control-client" for t in threading.enumerate())


def raw_request(path: Path, message: dict[str, Any]) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(10)
    sock.connect(str(path))
    sock.sendall(encode(message))
    return sock


# -- commands -------------------------------------------------------------------------------
def test_commands_answer_the_outcome(server: ControlServer, source: Source) -> None:
    client = ControlClient(server.path)
    assert client.execute("api", "stop") == CommandResult(True, "api is Exited")
    assert client.execute("api", "start") == CommandResult(True, "api is Running")
    assert client.execute("cache", "stop") == CommandResult(
        False, "cache: stop timed out after 30 s"
    )
    unknown = client.execute("apii", "restart")
    assert not unknown.ok and "'apii'" in unknown.message and "api, cache" in unknown.message
    assert source.calls == [("api", "stop"), ("api", "start"), ("cache", "stop")]


def test_resource_names_are_case_insensitive_as_in_the_app_host(
    server: ControlServer, source: Source, store: TelemetryStore
) -> None:
    client = ControlClient(server.path)
    assert client.execute("API", "stop") == CommandResult(True, "api is Exited")
    assert source.calls == [("api", "stop")], "the source gets the resource's own name"
    store.add_console_line("cache", "stdout", "ready")
    answers = list(client.logs("Cache"))
    assert [(a["resource"], a["text"]) for a in answers if "text" in a] == [("cache", "ready")]


def test_a_bad_request_gets_an_error_and_the_server_goes_on(server: ControlServer) -> None:
    for bad in (b"not json\n", b'{"op": "reboot"}\n', b'{"op": "command", "resource": "api"}\n'):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(10)
            sock.connect(str(server.path))
            sock.sendall(bad)
            answer = json.loads(sock.makefile("rb").readline())
            assert answer["error"].startswith("bad request:")
    with pytest.raises(ControlError, match="unknown command 'reboot'"):
        ControlClient(server.path).execute("api", "reboot")
    assert ControlClient(server.path).execute("api", "restart").ok


# -- logs -----------------------------------------------------------------------------------
def test_logs_backlog_of_all_or_one_resource(server: ControlServer, store: TelemetryStore) -> None:
    store.add_console_line("api", "stdout", "api 1")
    store.add_console_line("cache", "stderr", "cache 1")
    store.add_console_line("api", "stdout", "api 2")
    client = ControlClient(server.path)
    answers = list(client.logs())
    assert answers[0] == {"resources": ["api", "cache"]}
    assert [(a["resource"], a["stream"], a["text"]) for a in answers[1:]] == [
        ("api", "stdout", "api 1"),
        ("cache", "stderr", "cache 1"),
        ("api", "stdout", "api 2"),
    ]
    assert all(isinstance(a["ts"], float) for a in answers[1:])
    assert [a["text"] for a in client.logs("api") if "text" in a] == ["api 1", "api 2"]
    with pytest.raises(ControlError, match="no resource named 'nope'; the resources are: api"):
        list(client.logs("nope"))


def test_logs_since_keeps_only_newer_lines(server: ControlServer, store: TelemetryStore) -> None:
    now = time.time()
    store.add_console_line("api", "stdout", "an hour ago", timestamp=now - 3600)
    store.add_console_line("api", "stdout", "a minute ago", timestamp=now - 60)
    store.add_console_line("api", "stdout", "now", timestamp=now)
    client = ControlClient(server.path)
    texts = [a["text"] for a in client.logs("api", since=parse_since("10m")) if "text" in a]
    assert texts == ["a minute ago", "now"]
    assert [a["text"] for a in client.logs("api", since=now + 1) if "text" in a] == []


def test_dropped_lines_are_announced_first(
    tmp_path: Path, source: Source, store: TelemetryStore
) -> None:
    small = TelemetryStore(Limits(console_lines=3))
    for i in range(5):
        small.add_console_line("api", "stdout", f"line {i}")
    control = ControlServer(tmp_path / "control.sock", source, small)
    control.start()
    try:
        answers = list(ControlClient(control.path).logs())
    finally:
        control.stop()
    assert answers[1] == {"dropped": 2, "resource": "api"}
    assert [a["text"] for a in answers[2:]] == ["line 2", "line 3", "line 4"]


def test_follow_sends_new_lines_until_the_server_stops(
    server: ControlServer, store: TelemetryStore
) -> None:
    store.add_console_line("api", "stdout", "before")
    received: list[str] = []
    done = threading.Event()

    def follow() -> None:
        for answer in ControlClient(server.path).logs("api", follow=True):
            if "text" in answer:
                received.append(answer["text"])
        done.set()

    reader = threading.Thread(target=follow, daemon=True)
    reader.start()
    wait_until(lambda: received == ["before"], what="the backlog")
    store.add_console_line("cache", "stdout", "not this resource")
    store.add_console_line("api", "stdout", "after")
    wait_until(lambda: received == ["before", "after"], what="the followed line")
    server.stop()
    assert done.wait(10), "a followed log ends when the app host stops"
    assert not server.path.exists()


def test_a_follower_that_closes_is_let_go(server: ControlServer) -> None:
    sock = raw_request(server.path, LogsRequest(None, follow=True).to_json())
    assert json.loads(sock.makefile("rb").readline()) == {"resources": ["api", "cache"]}
    wait_until(lambda: client_threads() == 1, what="the follower's thread")
    sock.close()
    wait_until(lambda: client_threads() == 0, what="the follower's thread to end")


def test_a_client_that_does_not_read_is_dropped(
    tmp_path: Path, source: Source, store: TelemetryStore
) -> None:
    for i in range(3000):  # ~3 MB: far more than a socket buffers
        store.add_console_line("api", "stdout", f"{i:05} " + "x" * 1000)
    control = ControlServer(tmp_path / "control.sock", source, store, send_timeout=0.5)
    control.start()
    try:
        slow = raw_request(control.path, LogsRequest("api", follow=True).to_json())
        # While it is stuck, the app host goes on and other clients are served.
        started = time.monotonic()
        store.add_console_line("api", "stdout", "still written")
        assert time.monotonic() - started < 0.5
        assert ControlClient(control.path).execute("api", "restart").ok
        wait_until(lambda: client_threads() == 0, timeout=10, what="the slow client dropped")
        received = b""
        try:
            while chunk := slow.recv(1 << 20):
                received += chunk
        except ConnectionResetError:
            pass
        slow.close()
        assert 0 < len(received) < 3000 * 1000, "dropped before the whole backlog was sent"
    finally:
        control.stop()


# -- the socket -----------------------------------------------------------------------------
def test_the_socket_is_0600_and_removed_on_stop(server: ControlServer) -> None:
    mode = os.stat(server.path).st_mode
    assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600
    server.stop()
    assert not server.path.exists()
    with pytest.raises(ControlUnavailable, match="no control socket at"):
        ControlClient(server.path).execute("api", "stop")


def test_a_long_state_folder_gets_a_socket_under_tmp(
    tmp_path: Path, source: Source, store: TelemetryStore
) -> None:
    state_dir = tmp_path / ("d" * MAX_SOCKET_PATH)
    app_id = f"shop-{os.getpid()}-long"
    path = control_socket_path(state_dir, app_id)
    assert path.parent == Path(f"/tmp/apphost-{os.getuid()}")
    assert path.name.startswith(f"{app_id}-") and path.name.endswith(".sock")
    assert control_socket_path(Path("/tmp/s"), app_id) == Path("/tmp/s/control.sock")
    # Another long state folder of the same app: another socket; the same folder reached
    # through a link: the same socket.
    other = tmp_path / ("e" * MAX_SOCKET_PATH)
    assert control_socket_path(other, app_id) != path
    state_dir.mkdir()
    link = tmp_path / ("l" * MAX_SOCKET_PATH)
    link.symlink_to(state_dir)
    assert control_socket_path(link, app_id) == path
    control = ControlServer(path, source, store)
    control.start()
    try:
        assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        assert ControlClient(path).execute("api", "restart").ok
    finally:
        control.stop()
    assert not path.exists()


def test_a_stale_socket_is_replaced(tmp_path: Path, source: Source, store: TelemetryStore) -> None:
    path = tmp_path / "control.sock"
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(path))
    dead.close()  # what a killed app host leaves: a socket file nobody answers on
    with pytest.raises(ControlUnavailable, match="nothing answers"):
        ControlClient(path).execute("api", "stop")
    control = ControlServer(path, source, store)
    control.start()
    try:
        assert ControlClient(path).execute("api", "restart").ok
        second = ControlServer(path, source, store)
        with pytest.raises(OSError, match="another app host answers") as info:
            second.start()
        assert info.value.errno == errno.EADDRINUSE
        assert ControlClient(path).execute("api", "restart").ok, "the live one is untouched"
    finally:
        control.stop()


def test_a_symbolic_link_or_a_file_is_never_replaced(
    tmp_path: Path, source: Source, store: TelemetryStore
) -> None:
    target = tmp_path / "precious.txt"
    target.write_text("keep me")
    path = tmp_path / "control.sock"
    path.symlink_to(target)
    with pytest.raises(OSError, match="is a symbolic link, not the app's socket; remove it"):
        ControlServer(path, source, store).start()
    assert target.read_text() == "keep me" and path.is_symlink()
    path.unlink()
    path.write_text("")
    with pytest.raises(OSError, match="exists and is not a socket; remove it"):
        ControlServer(path, source, store).start()


def test_permission_denied_is_a_clear_error(server: ControlServer) -> None:
    os.chmod(server.path, 0o000)
    if os.geteuid() != 0:
        with pytest.raises(ControlError, match=r"permission denied on .*another user"):
            ControlClient(server.path).execute("api", "stop")
        return
    # Root connects whatever the mode: ask as another user, from a forked child that drops
    # its privileges (the interpreter is already loaded, so nothing needs reading).
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        os.close(read)
        message = b""
        try:
            os.setgid(65534)
            os.setuid(65534)
            ControlClient(server.path).execute("api", "stop")
        except ControlError as exc:
            message = str(exc).encode()
        except BaseException as exc:
            message = f"unexpected {type(exc).__name__}: {exc}".encode()
        os.write(write, message or b"no error")
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as answer:
        text = answer.read().decode()
    os.waitpid(pid, 0)
    assert re.search(r"permission denied on .*another user", text), text


# -- the protocol ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "seconds_ago"), [("30s", 30), ("10m", 600), ("2h", 7200), ("1d", 86400), ("1.5m", 90)]
)
def test_since_durations(text: str, seconds_ago: float) -> None:
    assert parse_since(text, now=1_000_000.0) == 1_000_000.0 - seconds_ago


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-03-21T10:00:00Z", dt.datetime(2026, 3, 21, 10, tzinfo=dt.timezone.utc)),
        (
            "2026-03-21T10:00:00.25+01:00",
            dt.datetime(2026, 3, 21, 9, 0, 0, 250000, tzinfo=dt.timezone.utc),
        ),
        ("2026-03-21 10:00:00-0230", dt.datetime(2026, 3, 21, 12, 30, tzinfo=dt.timezone.utc)),
    ],
)
def test_since_rfc3339(text: str, expected: dt.datetime) -> None:
    assert parse_since(text) == expected.timestamp()


def test_since_without_offset_is_local_time() -> None:
    assert parse_since("2026-03-21T10:00") == dt.datetime(2026, 3, 21, 10).timestamp()


@pytest.mark.parametrize("text", ["", "10", "10x", "-5m", "yesterday", "2026-13-01T00:00Z"])
def test_since_errors_say_what_to_write(text: str) -> None:
    with pytest.raises(SinceError, match=r"30s, 10m, 2h, 1d.*RFC 3339"):
        parse_since(text)


def test_requests_round_trip_and_bad_ones_are_named() -> None:
    for request in (CommandRequest("api", "stop"), LogsRequest("api", True, 12.5), LogsRequest()):
        assert parse_request(encode(request.to_json())) == request
    for bad, message in (
        (b"[1]", "not a JSON object"),
        (b'{"op": "logs", "follow": "yes"}', "follow must be"),
        (b'{"op": "logs", "since": "10m"}', "since must be"),
        (b'{"op": "command", "resource": "", "command": "stop"}', "needs a resource"),
    ):
        with pytest.raises(ProtocolError, match=message):
            parse_request(bad)
