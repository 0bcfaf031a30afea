"""The ``apphost`` command as a user meets it: background start/stop/status, and the mistakes
it must explain instead of tracing back or doing harm (process runtime)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from apphost_sdk.state import app_identity

from .helpers import apphost_cli as apphost
from .helpers import pid_alive, write

APPHOST = textwrap.dedent(
    """
    from apphost_sdk import DistributedApplication

    builder = DistributedApplication.create_builder()
    cache = builder.add_redis("cache")
    {extra}
    builder.build().run()
    """
)


@pytest.fixture
def app_file(tmp_path: Path) -> Iterator[Path]:
    path = write(tmp_path / "shop" / "apphost.py", APPHOST.format(extra=""))
    yield path
    apphost("stop", str(path))


def status_file(state: Path, app_host: Path) -> Path:
    return state / app_identity(app_host)[1] / "status.json"


def test_start_status_stop_round_trip(app_file: Path) -> None:
    started = apphost("start", str(app_file), "--json")
    assert started.returncode == 0, started.stderr
    data = json.loads(started.stdout)
    assert data["phase"] == "ready" and data["resources"][0]["health"] == "Healthy"
    assert "***" in data["resources"][0]["environment"]["CACHE_PASSWORD"]
    listed = json.loads(apphost("status", "--json").stdout)
    assert [s["pid"] for s in listed] == [data["pid"]]
    stopped = apphost("stop", str(app_file))
    assert stopped.returncode == 0 and "stopped shop" in stopped.stdout
    assert not pid_alive(data["pid"])


def test_a_stale_status_whose_pid_was_reused_is_never_signalled(
    app_file: Path, isolated_env: Path
) -> None:
    # What a crash or reboot leaves: "ready", naming a pid that now belongs to someone else.
    bystander = subprocess.Popen(["sleep", "60"])
    try:
        path = status_file(isolated_env, app_file)
        write(
            path,
            json.dumps({"app": "shop", "pid": bystander.pid, "pidStart": "1", "phase": "ready"}),
        )
        assert "no app host is running" in apphost("status").stdout
        assert "is not running" in apphost("stop", str(app_file)).stdout
        assert bystander.poll() is None, "apphost stop must not signal a reused pid"
        started = apphost("start", str(app_file), "--json")
        assert started.returncode == 0, started.stderr
        assert json.loads(started.stdout)["pid"] != bystander.pid
    finally:
        bystander.kill()
        bystander.wait()


def test_running_a_second_copy_in_the_foreground_is_refused(app_file: Path) -> None:
    started = apphost("start", str(app_file), "--json")
    assert started.returncode == 0, started.stderr
    second = subprocess.run(
        [sys.executable, str(app_file)], capture_output=True, text=True, timeout=60
    )
    assert second.returncode == 1
    assert "shop is already running" in second.stderr and "apphost stop" in second.stderr
    assert "Traceback" not in second.stderr
    still = json.loads(apphost("status", str(app_file), "--json").stdout)
    assert [s["pid"] for s in still] == [json.loads(started.stdout)["pid"]]
    down = apphost("down", str(app_file))
    assert down.returncode == 1 and "is running" in down.stderr, "down refuses a running app"


def test_an_app_host_that_never_calls_run_is_told_so(tmp_path: Path) -> None:
    path = write(
        tmp_path / "norun" / "apphost.py",
        "from apphost_sdk import DistributedApplication\n"
        "DistributedApplication.create_builder().add_redis('cache')\n",
    )
    for command in (["run"], ["start"]):
        done = apphost(*command, str(path))
        assert done.returncode == 1
        assert "never called builder.build().run()" in done.stderr


def test_an_error_in_the_app_host_file_names_its_line(tmp_path: Path) -> None:
    path = write(tmp_path / "typo" / "apphost.py", APPHOST.format(extra="cahce.wait_for(cache)"))
    done = apphost("start", str(path))
    assert done.returncode == 1
    assert f'File "{path}", line 6' in done.stderr
    assert "NameError: name 'cahce' is not defined" in done.stderr
    assert "apphost_sdk/" not in done.stderr.replace(str(path), "")


def test_a_start_that_times_out_says_what_is_not_healthy(tmp_path: Path, svc: Path) -> None:
    # A service with an HTTP endpoint that never listens on it.
    out = str(tmp_path / "mute.json")
    extra = f'builder.add_python_app("mute", {str(svc)!r}, "dump.py", {out!r}, "60")'
    extra += ".with_http_endpoint()"
    path = write(tmp_path / "slow" / "apphost.py", APPHOST.format(extra=extra))
    done = apphost("start", str(path), "--timeout", "3")
    assert done.returncode == 1
    assert "not healthy yet: mute (Running, Unknown)" in done.stderr
    assert "is not running" in apphost("stop", str(path)).stdout


@pytest.mark.parametrize(
    ("target", "message"),
    [("README.md", "is not a Python file"), ("nothing/here.py", "no such app host file")],
)
def test_wrong_files_are_clear_errors(tmp_path: Path, target: str, message: str) -> None:
    write(tmp_path / "README.md", "# not python\n")
    done = apphost("start", str(tmp_path / target))
    assert done.returncode == 1 and message in done.stderr
    assert "Traceback" not in done.stderr


def test_a_settings_file_that_is_not_utf8_is_a_clear_error(app_file: Path) -> None:
    (app_file.parent / "appsettings.json").write_bytes('{"a": 1}'.encode("utf-16"))
    done = subprocess.run(
        [sys.executable, str(app_file)], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 1
    assert "appsettings.json is not UTF-8 text" in done.stderr
    assert "Traceback" not in done.stderr


def test_usage_errors_are_short(tmp_path: Path) -> None:
    done = apphost("stop")
    assert done.returncode == 2
    assert done.stderr.splitlines()[0].startswith("usage: apphost stop")
    assert "apphost down: apphost down" not in apphost("down").stderr


def test_state_dir_that_is_a_file_is_a_clear_error(
    app_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = write(tmp_path / "blocker", "")
    monkeypatch.setenv("APPHOST_STATE_DIR", str(blocker))
    done = apphost("start", str(app_file))
    assert done.returncode == 1
    assert "cannot create the state folder" in done.stderr and "APPHOST_STATE_DIR" in done.stderr
    assert "Traceback" not in done.stderr
    assert os.path.isfile(blocker)


def test_an_app_host_that_exits_with_a_message_shows_it(tmp_path: Path) -> None:
    path = write(
        tmp_path / "bad" / "apphost.py",
        "import sys\nsys.exit('bad setting: set Azure:Location')\n",
    )
    done = apphost("run", str(path))
    assert done.returncode == 1
    assert "bad setting: set Azure:Location" in done.stderr


def test_an_unusable_secrets_file_is_a_clear_error_and_leaves_nothing_starting(
    app_file: Path, isolated_env: Path
) -> None:
    secrets = isolated_env / app_identity(app_file)[1] / "secrets.json"
    secrets.mkdir(parents=True)  # a folder where the file should be
    done = subprocess.run(
        [sys.executable, str(app_file)], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 1
    assert f"{secrets} is a folder, not a file; fix or remove it" in done.stderr
    assert "Traceback" not in done.stderr
    status = json.loads(status_file(isolated_env, app_file).read_text())
    assert status["phase"] == "failed"
