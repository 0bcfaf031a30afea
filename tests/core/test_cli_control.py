"""``apphost resource``, ``apphost logs``, ``--no-dashboard`` and the dashboard in ``apphost
status``, run as real ``apphost`` processes against a real ControlServer bound where the CLI
looks for it (the state folder of APPHOST_STATE_DIR)."""

from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from apphost_sdk.cli.background import Launched, resource_settled, wait_ready
from apphost_sdk.control.protocol import control_socket_path
from apphost_sdk.control.server import ControlServer
from apphost_sdk.files import write_private
from apphost_sdk.process_identity import process_start_time
from apphost_sdk.state import app_identity
from apphost_sdk.telemetry.store import Limits, TelemetryStore

from .helpers import apphost_cli as apphost
from .helpers import wait_until, write
from .test_control_channel import Source, client_threads

TOKEN = "0123456789abcdef0123456789abcdef"
#: The dashboard's URL as the app host writes it: localhost or 127.0.0.1, any port.
DASHBOARD_URL = r"http://(?:localhost|127\.0\.0\.1):\d+"

#: An app host file that records the arguments it was given, then exits.
RECORD_ARGS = """
import json, sys
with open({out!r}, "w") as fh:
    json.dump(sys.argv[1:], fh)
sys.exit(0)
"""


@pytest.fixture
def app_file(tmp_path: Path) -> Path:
    return write(tmp_path / "shop" / "apphost.py", "# never run by these tests\n")


def state_dir(state: Path, app_host: Path) -> Path:
    return state / app_identity(app_host)[1]


@pytest.fixture
def store() -> TelemetryStore:
    return TelemetryStore()


@pytest.fixture
def server(app_file: Path, isolated_env: Path, store: TelemetryStore) -> Iterator[ControlServer]:
    app_id = app_identity(app_file)[1]
    control = ControlServer(control_socket_path(isolated_env / app_id, app_id), Source(), store)
    control.start()
    yield control
    control.stop()


def write_status(state: Path, app_host: Path, dashboard: object) -> None:
    """A status as a running app host writes it, naming this (live) test process."""
    pid = os.getpid()
    status = {
        "app": "shop",
        "appHost": str(app_host),
        "pid": pid,
        "pidStart": process_start_time(pid),
        "phase": "ready",
        "resources": [],
        "dashboard": dashboard,
    }
    folder = state_dir(state, app_host)
    folder.mkdir(parents=True, exist_ok=True)
    write_private(folder / "status.json", json.dumps(status))


# -- apphost resource -------------------------------------------------------------------------
@pytest.mark.usefixtures("server")
def test_resource_commands_exit_with_the_outcome(app_file: Path) -> None:
    done = apphost("resource", str(app_file), "api", "stop")
    assert (done.returncode, done.stdout.strip()) == (0, "api is Exited"), done.stderr
    refused = apphost("resource", str(app_file), "cache", "stop")
    assert refused.returncode == 1
    assert refused.stderr.strip() == "apphost resource: cache: stop timed out after 30 s"
    unknown = apphost("resource", str(app_file), "apii", "restart")
    assert unknown.returncode == 1
    assert "no resource named 'apii'; the resources are: api, cache" in unknown.stderr
    bad = apphost("resource", str(app_file), "api", "reboot")
    assert bad.returncode == 2 and "invalid choice: 'reboot'" in bad.stderr


def test_commands_on_an_app_that_is_not_running_say_how_to_start_it(
    app_file: Path, isolated_env: Path
) -> None:
    for args in (["resource", str(app_file), "api", "restart"], ["logs", str(app_file)]):
        done = apphost(*args)
        assert done.returncode == 1
        assert f"{app_file} is not running; start it with `apphost start {app_file}`" in (
            done.stderr
        )
        assert "Traceback" not in done.stderr
    # Running (its status names a live process) but no socket: say so, and what to do.
    write_status(isolated_env, app_file, None)
    done = apphost("logs", str(app_file))
    assert done.returncode == 1
    assert f"runs (pid {os.getpid()}) but does not answer" in done.stderr
    assert "stop and start it again" in done.stderr


# -- apphost logs -----------------------------------------------------------------------------
@pytest.mark.usefixtures("server")
def test_logs_of_all_resources_are_prefixed_and_aligned(
    app_file: Path, store: TelemetryStore
) -> None:
    store.add_console_line("api", "stdout", "GET / 200")
    store.add_console_line("cache", "stderr", "\x1b[33mready\x1b[0m")
    done = apphost("logs", str(app_file))
    assert done.returncode == 0, done.stderr
    assert done.stdout == "api      | GET / 200\ncache    | \x1b[33mready\x1b[0m\n"
    one = apphost("logs", str(app_file), "cache")
    assert one.stdout == "\x1b[33mready\x1b[0m\n", "one resource: its lines as written"


@pytest.mark.usefixtures("server")
def test_logs_colour_prefixes_unless_no_color(
    app_file: Path, store: TelemetryStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.add_console_line("api", "stdout", "hello")
    monkeypatch.delenv("NO_COLOR")
    monkeypatch.setenv("FORCE_COLOR", "1")
    assert apphost("logs", str(app_file)).stdout == "\x1b[36mapi      |\x1b[0m hello\n"
    assert apphost("logs", str(app_file), "--no-color").stdout == "api      | hello\n"


@pytest.mark.usefixtures("server")
def test_logs_since(app_file: Path, store: TelemetryStore) -> None:
    now = time.time()
    store.add_console_line("api", "stdout", "old", timestamp=now - 7200)
    store.add_console_line("api", "stdout", "new", timestamp=now - 5)
    assert apphost("logs", str(app_file), "api", "--since", "10m").stdout == "new\n"
    assert apphost("logs", str(app_file), "api", "--since", "1970-01-01T00:00:00Z").stdout == (
        "old\nnew\n"
    )
    bad = apphost("logs", str(app_file), "--since", "yesterday")
    assert bad.returncode == 2
    assert "'yesterday' is not a duration (30s, 10m, 2h, 1d) or an RFC 3339 time" in bad.stderr


def test_dropped_lines_are_noted_on_stderr(app_file: Path, isolated_env: Path) -> None:
    small = TelemetryStore(Limits(console_lines=2))
    for i in range(3):
        small.add_console_line("api", "stdout", f"line {i}")
    app_id = app_identity(app_file)[1]
    control = ControlServer(control_socket_path(isolated_env / app_id, app_id), Source(), small)
    control.start()
    try:
        done = apphost("logs", str(app_file), "api")
    finally:
        control.stop()
    assert done.stdout == "line 1\nline 2\n"
    assert "1 older line of api dropped" in done.stderr


@pytest.mark.usefixtures("server")
def test_logs_unknown_resource_lists_them(app_file: Path) -> None:
    done = apphost("logs", str(app_file), "nope")
    assert done.returncode == 1
    assert "apphost logs: no resource named 'nope'; the resources are: api, cache" in done.stderr


@pytest.mark.usefixtures("server")
def test_follow_prints_new_lines_and_ctrl_c_exits_130_quietly(
    app_file: Path, store: TelemetryStore
) -> None:
    store.add_console_line("api", "stdout", "first")
    proc = subprocess.Popen(
        [sys.executable, "-m", "apphost_sdk", "logs", str(app_file), "-f"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )
    assert proc.stdout is not None and proc.stderr is not None
    out = b""

    def read_until(text: bytes) -> bool:
        nonlocal out
        if select.select([proc.stdout], [], [], 0.05)[0]:
            out += os.read(proc.stdout.fileno(), 65536)
        return text in out

    try:
        wait_until(lambda: read_until(b"api      | first\n"), timeout=20, what="the backlog")
        store.add_console_line("cache", "stdout", "second")
        wait_until(lambda: read_until(b"cache    | second\n"), timeout=20, what="a new line")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(20) == 130
        assert proc.stderr.read() == b"", "Ctrl-C ends it quietly"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()


def test_a_follow_the_app_host_dropped_says_so_and_exits_1(
    app_file: Path, isolated_env: Path, store: TelemetryStore
) -> None:
    for i in range(3000):  # ~3 MB: far more than the socket and the pipe buffer
        store.add_console_line("api", "stdout", f"{i:05} " + "x" * 1000)
    app_id = app_identity(app_file)[1]
    path = control_socket_path(isolated_env / app_id, app_id)
    control = ControlServer(path, Source(), store, send_timeout=0.5)
    control.start()
    write_status(isolated_env, app_file, None)  # the app runs on (this live process)
    proc = subprocess.Popen(
        [sys.executable, "-m", "apphost_sdk", "logs", str(app_file), "-f"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )
    try:
        # Its output is not read, so it stops reading the socket: the app host drops it.
        wait_until(lambda: client_threads() == 1, timeout=20, what="the follower connected")
        wait_until(lambda: client_threads() == 0, timeout=20, what="the follower dropped")
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        control.stop()
    assert proc.returncode == 1
    assert err.decode() == (
        "apphost logs: the app host dropped this follow (output not read for 5 s); run it again\n"
    )
    assert out.startswith(b"api      | 00000 ")


def test_a_follow_ends_quietly_when_the_app_host_stops(
    app_file: Path, server: ControlServer, store: TelemetryStore
) -> None:
    store.add_console_line("api", "stdout", "first")
    proc = subprocess.Popen(
        [sys.executable, "-m", "apphost_sdk", "logs", str(app_file), "api", "-f"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: client_threads() == 1, timeout=20, what="the follower connected")
        server.stop()  # what the app host's stop does (no status says it runs any more)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert (proc.returncode, out, err) == (0, b"first\n", b"")


# -- the dashboard in status, --no-dashboard --------------------------------------------------
def test_status_shows_the_dashboard_with_the_token_masked(
    app_file: Path, isolated_env: Path
) -> None:
    login = f"http://localhost:18888/login?t={TOKEN}"
    dashboard = {
        "url": "http://localhost:18888",
        "loginUrl": login,
        "otlpEndpoint": "http://localhost:18890",
        "otlpApiKey": "k" * 32,
    }
    write_status(isolated_env, app_file, dashboard)
    shown = apphost("status", "--json")
    assert TOKEN not in shown.stdout and "k" * 32 not in shown.stdout
    [status] = json.loads(shown.stdout)
    assert status["dashboard"] == {
        **dashboard,
        "loginUrl": "http://localhost:18888/login?t=***",
        "otlpApiKey": "***",
    }
    [secret] = json.loads(apphost("status", str(app_file), "--json", "--show-secrets").stdout)
    assert secret["dashboard"] == dashboard
    text = apphost("status", str(app_file)).stdout
    assert "  dashboard: http://localhost:18888\n" in text and TOKEN not in text
    # --show-secrets: the login URL with its token, as the background log tells users.
    shown_text = apphost("status", str(app_file), "--show-secrets").stdout
    assert f"  dashboard: {login}\n" in shown_text
    assert "  dashboard: http://localhost:18888\n" not in shown_text


def test_status_without_a_dashboard(app_file: Path, isolated_env: Path) -> None:
    write_status(isolated_env, app_file, None)
    [status] = json.loads(apphost("status", "--json").stdout)
    assert status["dashboard"] is None
    assert "dashboard" not in apphost("status").stdout


def test_no_dashboard_reaches_the_app_host_as_configuration(tmp_path: Path) -> None:
    out = tmp_path / "argv.json"
    app = write(tmp_path / "rec" / "apphost.py", RECORD_ARGS.format(out=str(out)))
    for args, expected in (
        (["run", str(app), "--no-dashboard", "--A=1"], ["--A=1", "--Dashboard:Enabled=false"]),
        (["run", "--no-dashboard", str(app)], ["--Dashboard:Enabled=false"]),
        (["run", str(app), "--A=1"], ["--A=1"]),
    ):
        done = apphost(*args)
        assert done.returncode == 0, done.stderr
        assert json.loads(out.read_text()) == expected
        out.unlink()
    apphost("start", str(app), "--no-dashboard", "--timeout", "20")  # exits: not an app
    wait_until(out.exists, timeout=20, what="the background app host's arguments")
    assert json.loads(out.read_text()) == ["--Dashboard:Enabled=false"]


# -- against a real app host ------------------------------------------------------------------
TALKER = """
import itertools, time
for i in itertools.count():
    print("tick", i, flush=True)
    time.sleep(0.2)
"""

TALKER_APP = """
from apphost_sdk import DistributedApplication
builder = DistributedApplication.create_builder()
builder.add_python_app("talker", {svc!r}, "talk.py")
builder.build().run()
"""


@pytest.mark.parametrize("dashboard", [True, False], ids=["dashboard", "no-dashboard"])
def test_a_started_app_is_reached_through_its_control_channel(
    tmp_path: Path, isolated_env: Path, dashboard: bool
) -> None:
    write(tmp_path / "svc" / "talk.py", TALKER)
    app = write(tmp_path / "talky" / "apphost.py", TALKER_APP.format(svc=str(tmp_path / "svc")))
    try:
        started = apphost(
            "start", str(app), *(["--show-secrets"] if dashboard else ["--no-dashboard"])
        )
        assert started.returncode == 0, started.stderr
        app_id = app_identity(app)[1]
        socket_path = control_socket_path(isolated_env / app_id, app_id)
        assert oct(os.stat(socket_path).st_mode & 0o777) == "0o600"
        [status] = json.loads(apphost("status", "--json").stdout)
        if dashboard:
            login = rf"{DASHBOARD_URL}/login\?t=[0-9a-f]{{32}}"
            assert re.fullmatch(f"dashboard: {login}", started.stdout.splitlines()[-1])
            assert status["dashboard"]["loginUrl"].endswith("/login?t=***")
            secret = apphost("status", str(app), "--show-secrets").stdout
            assert re.search(f"^  dashboard: {login}$", secret, re.M), secret
            plain = apphost("status", str(app)).stdout
            assert re.search(f"^  dashboard: {DASHBOARD_URL}$", plain, re.M), plain
            # Piped without --show-secrets (a CI log): the URL, never the token.
            again = apphost("start", str(app)).stdout
            assert "login?t=" not in again and "--show-secrets" in again.splitlines()[-1]
        else:
            assert "dashboard" not in started.stdout and status["dashboard"] is None
        wait_until(
            lambda: "talker   | tick 1\n" in apphost("logs", str(app)).stdout,
            timeout=20,
            what="the talker's lines",
        )
        restarted = apphost("resource", str(app), "talker", "restart")
        assert restarted.returncode == 0, restarted.stderr
        wait_until(
            lambda: apphost("logs", str(app), "talker").stdout.count("tick 0\n") == 2,
            timeout=20,
            what="the restarted talker's first line",
        )
    finally:
        apphost("stop", str(app))
    assert not socket_path.exists()


# -- a stop during `apphost start` --------------------------------------------------------------
#: Answers HTTP on $PORT; its first start (an empty marks folder ``argv[1]``) waits 30 s first.
SLOW_FIRST = """
import http.server, os, sys, time
folder = sys.argv[1]
os.makedirs(folder, exist_ok=True)
first = not os.listdir(folder)
open(os.path.join(folder, str(os.getpid())), "w").close()
if first:
    time.sleep(30)
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()
    def log_message(self, *args):
        pass
http.server.HTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
"""

HELD_APP = """
from apphost_sdk import DistributedApplication
builder = DistributedApplication.create_builder()
cache = (
    builder.add_python_app("cache", {svc!r}, "slow_first.py", {marks!r})
    .with_http_endpoint()
    .with_http_health_check("/")
)
builder.add_python_app("api", {svc!r}, "talk.py").with_reference(cache).wait_for(cache)
builder.build().run()
"""


def test_a_resource_stopped_during_start_never_fails_apphost_start(
    tmp_path: Path, isolated_env: Path
) -> None:
    svc, marks = tmp_path / "svc", tmp_path / "marks"
    write(svc / "slow_first.py", SLOW_FIRST)
    write(svc / "talk.py", TALKER)
    app = write(tmp_path / "held" / "apphost.py", HELD_APP.format(svc=str(svc), marks=str(marks)))
    starter = subprocess.Popen(
        [sys.executable, "-m", "apphost_sdk", "start", str(app), "--no-dashboard"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: marks.is_dir() and any(marks.iterdir()), timeout=20, what="cache")
        stopped = apphost("resource", str(app), "cache", "stop")
        assert stopped.returncode == 0, stopped.stderr
        out, err = starter.communicate(timeout=30)
        assert starter.returncode == 0, err.decode()
        assert "held back: cache was stopped" in out.decode()
        [status] = json.loads(apphost("status", "--json").stdout)
        assert status["phase"] == "ready"
        by_name = {r["name"]: r for r in status["resources"]}
        assert by_name["cache"]["stoppedByCommand"] is True
        assert by_name["api"]["state"] == "Waiting" and by_name["api"]["heldBackBy"] == ["cache"]
        # Started again, the held-back api goes on.
        started = apphost("resource", str(app), "cache", "start")
        assert started.returncode == 0, started.stderr
        wait_until(
            lambda: "tick 0\n" in apphost("logs", str(app), "api").stdout,
            timeout=20,
            what="api's first line",
        )
    finally:
        if starter.poll() is None:
            starter.kill()
            starter.communicate()
        apphost("stop", str(app))


def test_wait_ready_counts_stopped_and_held_back_resources_as_settled(tmp_path: Path) -> None:
    assert resource_settled({"state": "Exited", "stoppedByCommand": True})
    assert resource_settled({"state": "Waiting", "heldBackBy": ["cache"]})
    assert resource_settled({"state": "Running", "health": "Healthy"})
    assert not resource_settled({"state": "Waiting", "heldBackBy": []})
    assert not resource_settled({"state": "Exited", "stoppedByCommand": False})
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    folder = tmp_path / "st"
    folder.mkdir()
    resources = [
        {"name": "cache", "state": "Exited", "health": "Unknown", "stoppedByCommand": True},
        {"name": "api", "state": "Waiting", "health": "Unknown", "heldBackBy": ["cache"]},
        {"name": "db", "state": "Running", "health": "Unhealthy"},
    ]
    status = {"pid": sleeper.pid, "phase": "starting", "resources": resources}
    write_private(folder / "status.json", json.dumps(status))
    try:
        ready, _, reason = wait_ready(Launched(sleeper.pid, sleeper), folder, 0.3)
    finally:
        if sleeper.poll() is None:
            sleeper.kill()
        sleeper.wait()
    assert not ready
    assert "not healthy yet: db (Running, Unhealthy) (stopped" in reason
