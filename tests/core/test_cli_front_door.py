"""The front door of the ``apphost`` command (issue #11): one app host per app however it is
started, help that runs nothing, version, clean errors under ``run``, usage errors for bad
numbers, exit codes of Ctrl-C and SIGTERM, and state files that are broken or planted.

Every test runs the real ``apphost`` command (``python -m apphost_sdk``) or the app host file
itself in a subprocess, on the process runtime with a state folder of its own."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from apphost_sdk.files import write_private
from apphost_sdk.state import app_identity

from .helpers import apphost_cli as apphost
from .helpers import pid_alive, read_json_file, wait_until, write

#: Prints a marker naming its pid first thing, so a log shows which process wrote it, and
#: records every time the file runs (even for help: it must not).
APPHOST = textwrap.dedent(
    """
    import os, sys
    print("apphost-file-began", os.getpid(), flush=True)
    with open({ran!r}, "a") as fh:
        fh.write(f"{{os.getpid()}} {{sys.argv[1:]}}\\n")

    from apphost_sdk import DistributedApplication

    builder = DistributedApplication.create_builder()
    greeting = builder.configuration.get_str("Greeting")
    if greeting is not None:  # configuration check: report it and stop before running
        print("greeting:", greeting)
        sys.exit(0)
    cache = builder.add_redis("cache")
    {extra}
    builder.build().run()
    """
)


class App:
    def __init__(self, folder: Path, state: Path, extra: str = "") -> None:
        self.ran = folder / "ran.txt"
        self.path = write(folder / "apphost.py", APPHOST.format(ran=str(self.ran), extra=extra))
        self.state_dir = state / app_identity(self.path)[1]
        self.status_file = self.state_dir / "status.json"
        self.log = self.state_dir / "apphost.log"

    def runs(self) -> list[str]:
        return self.ran.read_text().splitlines() if self.ran.exists() else []

    def status(self) -> Any:
        return read_json_file(self.status_file)


@pytest.fixture
def app(tmp_path: Path, isolated_env: Path) -> Iterator[App]:
    made = App(tmp_path / "shop", isolated_env)
    yield made
    apphost("stop", str(made.path))


def _processes_running(path: Path) -> list[int]:
    """Live processes whose command line names ``path`` (app hosts of that file)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if str(path).encode() in cmdline and pid_alive(int(entry.name)):
            found.append(int(entry.name))
    return found


# == 1. exactly one app host per app ==========================================================
ROUNDS = [
    ["start"] * 6,
    ["start", "run", "python", "start", "run", "python"],
    ["python", "start", "run", "start", "python", "start"],
]


def _race(app: App, starters: list[str]) -> None:
    """Start the app with every command of ``starters`` at once; exactly one must win."""
    commands = {
        "start": [sys.executable, "-m", "apphost_sdk", "start", str(app.path), "--json"],
        "run": [sys.executable, "-m", "apphost_sdk", "run", str(app.path)],
        "python": [sys.executable, str(app.path)],
    }
    procs = [
        subprocess.Popen(
            commands[kind],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        for kind in starters
    ]
    try:
        status = wait_until(
            lambda: (s := app.status()) and s.get("phase") == "ready" and s,
            timeout=60,
            what="the winner to be ready",
        )
        winner_pid = status["pid"]
        wait_until(
            lambda: all(p.poll() is not None for p in procs if p.pid != winner_pid),
            timeout=30,
            what="every starter but the winner to finish",
        )
        outcomes: list[tuple[str, object, str]] = []
        for kind, p in zip(starters, procs, strict=True):
            if p.poll() is None:  # a foreground winner: it runs on
                assert kind != "start", "apphost start returns once the app is ready"
                assert p.pid == winner_pid
                outcomes.append((kind, "running", ""))
                continue
            out, err = p.communicate()
            outcomes.append((kind, p.returncode, err))
            if p.returncode == 0:
                assert kind == "start", err
                assert json.loads(out)["pid"] == winner_pid
        winners = [o for o in outcomes if o[1] in (0, "running")]
        assert len(winners) == 1, outcomes
        for kind, code, err in outcomes:
            if (kind, code, err) in winners:
                continue
            assert code == 1, (kind, err)
            assert f"shop is already running (pid {winner_pid})" in err, (kind, err)
            assert "apphost stop" in err and "Traceback" not in err
        # One app host runs, and it is the one `status` and `stop` see.
        assert _processes_running(app.path) == [winner_pid]
        listed = json.loads(apphost("status", "--json").stdout)
        assert [s["pid"] for s in listed] == [winner_pid]
        if winners[0][0] == "start":
            # The winner's log is its own, whole: no loser truncated or wrote it.
            lines = app.log.read_text().splitlines()
            assert lines[0] == f"apphost-file-began {winner_pid}", lines[:3]
            assert sum("apphost-file-began" in line for line in lines) == 1
            stopped = apphost("stop", str(app.path))
            assert stopped.returncode == 0 and f"pid {winner_pid}" in stopped.stdout
        else:
            (winner,) = [p for p in procs if p.poll() is None]
            winner.send_signal(signal.SIGINT)
            assert winner.wait(30) == 130, winner.communicate()[1]
        wait_until(lambda: not pid_alive(winner_pid), timeout=30, what="the winner to exit")
        assert app.status()["phase"] == "stopped", app.status()
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.communicate()


@pytest.mark.parametrize("starters", ROUNDS, ids=["start-x6", "mixed-1", "mixed-2"])
def test_concurrent_starts_have_exactly_one_winner(
    tmp_path: Path, isolated_env: Path, svc: Path, starters: list[str]
) -> None:
    # An API that listens after 3 s: every starter meets the winner while it is starting.
    slow = f'builder.add_python_app("api", {str(svc)!r}, "web.py", {str(tmp_path)!r}, "3")'
    app = App(tmp_path / "shop", isolated_env, extra=slow + ".with_http_endpoint()")
    try:
        for _ in range(2):  # two rounds of each mix
            _race(app, starters)
    finally:
        apphost("stop", str(app.path))


def test_a_second_start_leaves_the_first_ones_log_and_status_alone(app: App) -> None:
    first = apphost("start", str(app.path), "--json")
    assert first.returncode == 0, first.stderr
    pid = json.loads(first.stdout)["pid"]
    log_before = app.log.read_bytes()
    status_before = app.status_file.read_bytes()
    # A start of a running, healthy app reports it (exit 0), as `docker compose up --wait`.
    again = apphost("start", str(app.path), "--json")
    assert again.returncode == 0 and json.loads(again.stdout)["pid"] == pid
    second = apphost("run", str(app.path))
    assert second.returncode == 1
    assert f"shop is already running (pid {pid})" in second.stderr
    second = subprocess.run(
        [sys.executable, str(app.path)], capture_output=True, text=True, timeout=60
    )
    assert second.returncode == 1 and f"(pid {pid})" in second.stderr
    assert app.log.read_bytes()[: len(log_before)] == log_before
    assert app.status_file.read_bytes() == status_before
    assert pid_alive(pid)


# == 2. --help runs nothing ===================================================================
FLAGS = {
    "run": [],
    "start": ["--json", "--timeout", "--show-secrets"],
    "stop": ["--timeout"],
    "status": ["--json", "--show-secrets"],
    "down": ["--all", "--volumes"],
    "plan": ["--json"],
    "provision": ["--json", "--format", "--show-secrets"],
    "destroy": ["--yes"],
}


@pytest.mark.parametrize("command", list(FLAGS))
def test_help_of_every_command_prints_its_usage_and_runs_nothing(app: App, command: str) -> None:
    for extra in (["--help"], ["-h"], ["--Azure:Location", "westus", "--help"], ["--A=1", "-h"]):
        done = apphost(command, str(app.path), *extra)
        assert done.returncode == 0, (extra, done.stderr)
        assert done.stdout.startswith(f"usage: apphost {command} "), (extra, done.stdout)
        for flag in ["-h, --help", *FLAGS[command]]:
            assert flag in done.stdout, (command, flag)
        assert "APPHOST.py" in done.stdout
        assert app.runs() == [], f"apphost {command} {extra} ran the app host file"
    assert not app.state_dir.exists(), "help wrote state"


def test_help_without_a_file_and_of_the_app_host_file_itself(app: App) -> None:
    done = apphost("run", "--help")
    assert done.returncode == 0 and done.stdout.startswith("usage: apphost run ")
    assert "--Key=Value" in done.stdout
    itself = subprocess.run(
        [sys.executable, str(app.path), "--Azure:Location=westus", "--help"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert itself.returncode == 0 and "usage: python" in itself.stdout
    assert not app.status_file.exists() and not app.log.exists()


def test_configuration_arguments_still_reach_the_app_host(app: App) -> None:
    for args in (["--Greeting=hello"], ["--Greeting", "hello"]):
        done = apphost("run", str(app.path), *args)
        assert done.returncode == 0, done.stderr
        assert "greeting: hello" in done.stdout


# == 3. version and the list of commands ======================================================
def test_version_and_help_list_each_command_once() -> None:
    from apphost_sdk import __version__

    version = apphost("--version")
    assert version.returncode == 0 and version.stdout.strip() == f"apphost {__version__}"
    shown = apphost("--help")
    assert shown.returncode == 0
    first_words = [line.split()[0] for line in shown.stdout.splitlines() if line.strip()]
    for command in FLAGS:
        assert first_words.count(command) == 1, (command, shown.stdout)
    assert "--version" in shown.stdout


# == 4. the app host file's own errors under run, as under start ==============================
@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("cache = (\n", "SyntaxError"),
        ("cahce.wait_for(None)\n", "NameError: name 'cahce' is not defined"),
    ],
    ids=["syntax-error", "exception"],
)
def test_an_error_in_the_app_host_file_reads_the_same_under_run_and_start(
    tmp_path: Path, body: str, expected: str
) -> None:
    path = write(
        tmp_path / "typo" / "apphost.py",
        "from apphost_sdk import DistributedApplication\n\n"
        "builder = DistributedApplication.create_builder()\n"
        f"{body}"
        "builder.build().run()\n",
    )
    ran = apphost("run", str(path))
    started = apphost("start", str(path))
    assert ran.returncode == 1 and started.returncode == 1
    message = ran.stderr.strip()
    assert message.startswith("apphost: the app host file raised an error:"), message
    assert f'File "{path}", line 4' in message and expected in message
    for noise in ("Traceback", "runpy", "apphost_sdk/"):
        assert noise not in message.replace(str(path), ""), message
    assert message in started.stderr, started.stderr


# == 5. bad numbers are usage errors ==========================================================
@pytest.mark.parametrize(
    "args",
    [
        ["start", "--timeout", "-5"],
        ["start", "--timeout", "nan"],
        ["start", "--timeout", "inf"],
        ["start", "--timeout=0"],
        ["start", "--timeout", "soon"],
        ["stop", "--timeout", "-1"],
        ["stop", "--timeout", "nan"],
        ["stop", "--timeout=inf"],
    ],
)
def test_bad_numbers_are_usage_errors(app: App, args: list[str]) -> None:
    command, *rest = args
    done = apphost(command, str(app.path), *rest)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(f"usage: apphost {command}")
    assert "--timeout" in done.stderr and "finite number" in done.stderr
    assert app.runs() == [] and not app.state_dir.exists()


def test_stray_arguments_of_commands_without_configuration_are_usage_errors(app: App) -> None:
    done = apphost("stop", str(app.path), "--timout", "5")
    assert done.returncode == 2 and "unrecognized arguments: --timout 5" in done.stderr


# == 6. exit codes of Ctrl-C and SIGTERM ======================================================
@pytest.mark.parametrize(
    ("how", "sig", "code"),
    [
        ("run", signal.SIGINT, 130),
        ("run", signal.SIGTERM, 0),
        ("python", signal.SIGINT, 130),
    ],
)
def test_ctrl_c_exits_130_and_sigterm_0(app: App, how: str, sig: int, code: int) -> None:
    command = (
        [sys.executable, "-m", "apphost_sdk", "run", str(app.path)]
        if how == "run"
        else [sys.executable, str(app.path)]
    )
    proc = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL
    )
    try:
        wait_until(
            lambda: (s := app.status()) and s.get("phase") == "ready",
            timeout=30,
            what="the app to be ready",
        )
        proc.send_signal(sig)
        assert proc.wait(30) == code, proc.stderr.read() if proc.stderr else ""
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
    assert app.status()["phase"] == "stopped"


def test_ctrl_c_while_starting_exits_130(app: App) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "apphost_sdk", "run", str(app.path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: app.runs(), timeout=30, what="the app host file to run")
        time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 130
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


# == 7. broken or planted state files =========================================================
def _plant_status_folder(app: App) -> str:
    (app.status_file).mkdir(parents=True)
    return "is a folder, not a file"


def _plant_bad_status(app: App) -> str:
    write(app.status_file, '{"phase": "ready", "pid": ')
    return "is not valid JSON (line 1)"


def _plant_status_link(app: App) -> str:
    app.state_dir.mkdir(parents=True)
    app.status_file.symlink_to(app.path)
    return "is a symbolic link, which is never followed"


@pytest.mark.parametrize(
    "plant",
    [_plant_status_folder, _plant_bad_status, _plant_status_link],
    ids=["folder", "not-json", "symlink"],
)
def test_a_broken_status_file_is_named_with_the_fix(app: App, plant: Callable[[App], str]) -> None:
    problem = plant(app)
    for command in (["status"], ["status", str(app.path)], ["start", str(app.path)]):
        done = apphost(*command)
        assert done.returncode == 1, (command, done.stdout, done.stderr)
        assert f"{app.status_file} {problem}; remove it" in done.stderr, done.stderr
        assert "Traceback" not in done.stderr
    itself = subprocess.run(
        [sys.executable, str(app.path)], capture_output=True, text=True, timeout=30
    )
    assert itself.returncode == 1 and f"{app.status_file} {problem}" in itself.stderr
    assert "Traceback" not in itself.stderr
    assert not app.log.exists(), "nothing started"


def test_a_secrets_file_that_is_not_json_is_kept_and_named(app: App) -> None:
    secrets = write(app.state_dir / "secrets.json", '{"cache-password": "kept-1234",')
    done = subprocess.run(
        [sys.executable, str(app.path)], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 1
    assert f"{secrets} is not valid JSON (line 1); fix or remove it" in done.stderr
    assert "kept-1234" not in done.stderr and "Traceback" not in done.stderr
    assert secrets.read_text() == '{"cache-password": "kept-1234",', "never overwritten"


def test_a_secrets_file_that_is_a_symlink_is_neither_read_nor_written_through(
    app: App, tmp_path: Path
) -> None:
    elsewhere = write(tmp_path / "elsewhere.json", '{"cache-password": "planted-1234"}')
    app.state_dir.mkdir(parents=True)
    (app.state_dir / "secrets.json").symlink_to(elsewhere)
    done = apphost("start", str(app.path))
    assert done.returncode == 1
    assert "secrets.json is a symbolic link, which is never followed" in done.stderr
    assert "planted-1234" not in done.stderr + done.stdout
    assert elsewhere.read_text() == '{"cache-password": "planted-1234"}'


def test_a_log_that_is_a_symlink_is_replaced_not_written_through(app: App, tmp_path: Path) -> None:
    precious = write(tmp_path / "precious.txt", "do not truncate me\n")
    app.state_dir.mkdir(parents=True)
    app.log.symlink_to(precious)
    started = apphost("start", str(app.path))
    assert started.returncode == 0, started.stderr
    assert precious.read_text() == "do not truncate me\n"
    assert not app.log.is_symlink() and "apphost-file-began" in app.log.read_text()


def test_write_private_replaces_a_symlink_instead_of_writing_through_it(tmp_path: Path) -> None:
    target = write(tmp_path / "target.txt", "original\n")
    link = tmp_path / "state" / "status.json"
    link.parent.mkdir()
    link.symlink_to(target)
    write_private(link, "{}")
    assert target.read_text() == "original\n"
    assert not link.is_symlink() and link.read_text() == "{}"
    assert (link.stat().st_mode & 0o777) == 0o600


def test_a_run_lock_that_is_a_symlink_is_refused(app: App, tmp_path: Path) -> None:
    target = write(tmp_path / "target.txt", "original\n")
    app.state_dir.mkdir(parents=True)
    (app.state_dir / "run.lock").symlink_to(target)
    done = apphost("start", str(app.path))
    assert done.returncode == 1
    assert "run.lock is a symbolic link, which is never followed; remove it" in done.stderr
    assert target.read_text() == "original\n" and app.runs() == []
