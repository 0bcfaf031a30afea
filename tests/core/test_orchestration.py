"""Run orchestration: parallel start, waits, failures, stop order and secrets in the output
(issue 2, "Run orchestration")."""

from __future__ import annotations

import json
import os
import socket
import stat
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from apphost_sdk.errors import ResourceStartError
from apphost_sdk.orchestration import orchestrator
from apphost_sdk.orchestration.app import DistributedApplication
from apphost_sdk.orchestration.states import Health, State

from .helpers import children_of, pid_alive, read_json_file, start_fails_fast, wait_json, wait_until


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A loopback port something else listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


def marker(folder: Path, name: str, kind: str) -> dict[str, Any]:
    data = wait_json(folder / f"{name}.{kind}", timeout=10)
    assert isinstance(data, dict)
    return data


def snaps(app: DistributedApplication) -> dict[str, Any]:
    return {s.name: s for s in app.snapshots()}


def test_independent_resources_start_in_parallel(
    tmp_path: Path, svc: Path, apps: list[DistributedApplication]
) -> None:
    b = DistributedApplication.create_builder([])
    b.add_redis("cache")
    names = ["web1", "web2", "web3"]
    for name in names:
        b.add_python_app(name, str(svc), "web.py", str(tmp_path), "0.6").with_http_endpoint()
    app = b.build()
    apps.append(app)
    t0 = time.monotonic()
    app.start(timeout=20, quiet=True)
    elapsed = time.monotonic() - t0
    starts = [marker(tmp_path, n, "start")["t"] for n in names]
    assert max(starts) - min(starts) < 0.5, starts
    assert elapsed < 1.8, f"3 services that take 0.6 s each started in {elapsed:.2f} s"
    assert all(s.state is State.RUNNING and s.health is Health.HEALTHY for s in app.snapshots())


def test_wait_for_waits_until_healthy(
    tmp_path: Path,
    svc: Path,
    apps: list[DistributedApplication],
    capsys: pytest.CaptureFixture[str],
) -> None:
    b = DistributedApplication.create_builder([])
    slow = b.add_python_app("slow", str(svc), "web.py", str(tmp_path), "0.7").with_http_endpoint()
    b.add_python_app("api", str(svc), "dump.py", str(tmp_path / "api.json")).wait_for(slow)
    b.add_python_app("early", str(svc), "dump.py", str(tmp_path / "early.json")).wait_for_start(
        slow
    )
    app = b.build()
    apps.append(app)
    app.start(timeout=20)
    listening = marker(tmp_path, "slow", "listen")["t"]
    assert wait_json(tmp_path / "api.json")["started"] >= listening
    assert wait_json(tmp_path / "early.json")["started"] < listening
    out = capsys.readouterr().out
    lines = [ln.split("|", 1)[1].strip() for ln in out.splitlines() if ln.startswith("apphost")]
    assert lines.index("api: Waiting") < lines.index(
        next(ln for ln in lines if ln.startswith("slow: Running (Healthy)"))
    )
    assert lines.index(next(ln for ln in lines if ln.startswith("slow: Running (Healthy)"))) < (
        lines.index("api: Starting")
    )


def test_wait_for_redis_means_it_answers_ping(
    tmp_path: Path, svc: Path, apps: list[DistributedApplication]
) -> None:
    b = DistributedApplication.create_builder([])
    cache = b.add_redis("cache")
    (
        b.add_python_app("api", str(svc), "dump.py", str(tmp_path / "api.json"))
        .with_reference(cache)
        .wait_for(cache)
        .with_environment("PING_REDIS", "CACHE")
        .with_environment("PING_NAME", "cache")
    )
    app = b.build()
    apps.append(app)
    app.start(timeout=20, quiet=True)
    assert wait_json(tmp_path / "api.json")["uri_ping"] is True


def test_wait_for_completion_with_exit_codes(
    tmp_path: Path, svc: Path, apps: list[DistributedApplication]
) -> None:
    b = DistributedApplication.create_builder([])
    migrate = b.add_python_app("migrate", str(svc), "exit_with.py", "0")
    seed = b.add_python_app("seed", str(svc), "exit_with.py", "3")
    b.add_python_app(
        "api", str(svc), "dump.py", str(tmp_path / "api.json"), "30"
    ).wait_for_completion(migrate).wait_for_completion(seed, exit_code=3)
    app = b.build()
    apps.append(app)
    t0 = time.monotonic()
    app.start(timeout=20, quiet=True)
    assert time.monotonic() - t0 < 5
    wait_json(tmp_path / "api.json")
    s = snaps(app)
    assert (s["migrate"].state, s["migrate"].exit_code) == (State.FINISHED, 0)
    assert (s["seed"].state, s["seed"].exit_code) == (State.EXITED, 3)
    assert s["api"].state is State.RUNNING


def test_completion_with_the_wrong_exit_code_fails_the_start(
    tmp_path: Path, svc: Path, apps: list[DistributedApplication]
) -> None:
    b = DistributedApplication.create_builder([])
    migrate = b.add_python_app("migrate", str(svc), "exit_with.py", "1")
    b.add_python_app("api", str(svc), "dump.py", str(tmp_path / "api.json")).wait_for_completion(
        migrate
    )
    _app, message = start_fails_fast(b, apps)
    assert message.startswith("migrate exited with code 1\n"), message
    assert "boom: the migration failed" in message
    assert not (tmp_path / "api.json").exists()


def test_failed_dependency_blocks_dependents_and_names_the_cause(
    tmp_path: Path, svc: Path, apps: list[DistributedApplication]
) -> None:
    b = DistributedApplication.create_builder([])
    web = b.add_python_app("web", str(svc), "exit_with.py", "2").with_http_endpoint()
    api = b.add_python_app("api", str(svc), "dump.py", str(tmp_path / "api.json")).wait_for(web)
    b.add_python_app("front", str(svc), "dump.py", str(tmp_path / "front.json")).with_reference(
        api.with_http_endpoint()
    )
    app, message = start_fails_fast(b, apps)
    assert message.startswith("web exited with code 2"), message
    assert "boom: the migration failed" in message
    assert "working on it" in message
    assert not (tmp_path / "api.json").exists()
    assert not (tmp_path / "front.json").exists()
    status = read_json_file(app.state.status_file)
    assert status["phase"] == "failed"
    assert "web" in status["error"]


def test_a_crashing_service_fails_the_start_at_once(
    tmp_path: Path, svc: Path, apps: list[DistributedApplication]
) -> None:
    b = DistributedApplication.create_builder([])
    b.add_redis("cache")
    b.add_python_app("web", str(svc), "exit_with.py", "4").with_http_endpoint()
    app = b.build()
    apps.append(app)
    t0 = time.monotonic()
    with pytest.raises(ResourceStartError, match=r"(?s)web.*exit.*4.*boom"):
        app.start(timeout=20, quiet=True)
    assert time.monotonic() - t0 < 5


def test_stop_in_reverse_dependency_order(
    tmp_path: Path, svc: Path, apps: list[DistributedApplication]
) -> None:
    b = DistributedApplication.create_builder([])
    cache = b.add_redis("cache")
    a = (
        b.add_python_app("a", str(svc), "web.py", str(tmp_path))
        .with_http_endpoint()
        .with_reference(cache)
        .with_environment("PING_REDIS", "CACHE")
    )
    bb = b.add_python_app("b", str(svc), "web.py", str(tmp_path)).with_http_endpoint().wait_for(a)
    b.add_python_app("c", str(svc), "web.py", str(tmp_path)).with_http_endpoint().with_reference(bb)
    app = b.build()
    apps.append(app)
    app.start(timeout=20, quiet=True)
    app.stop()
    stops = {n: marker(tmp_path, n, "stop") for n in "abc"}
    assert stops["c"]["t"] <= stops["b"]["t"] <= stops["a"]["t"]
    assert stops["a"]["ping"] is True  # the cache was still up when its dependent stopped
    status = read_json_file(app.state.status_file)
    assert status["phase"] == "stopped"


def test_sigterm_then_sigkill_after_the_grace_period(
    tmp_path: Path, svc: Path, apps: list[DistributedApplication], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(orchestrator, "STOP_GRACE_SECONDS", 0.5)
    b = DistributedApplication.create_builder([])
    b.add_python_app("stubborn", str(svc), "ignore_term.py", str(tmp_path / "pid"))
    app = b.build()
    apps.append(app)
    app.start(timeout=20, quiet=True)
    pid = int(wait_until(lambda: read_text(tmp_path / "pid")))
    t0 = time.monotonic()
    app.stop()
    elapsed = time.monotonic() - t0
    assert not pid_alive(pid)
    assert 0.5 <= elapsed < 3


def read_text(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def test_secrets_never_reach_the_output(
    tmp_path: Path,
    svc: Path,
    apps: list[DistributedApplication],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ConnectionStrings__db", "Server=db;Password=Db-Secret-42")
    token_value = "tok/en with spaces&more"
    printer = (
        "import os, sys\n"
        "for k in ('CACHE_PASSWORD', 'ConnectionStrings__cache', 'CACHE_URI', 'TOKEN',\n"
        "          'ConnectionStrings__db'):\n"
        "    print(k, '=', os.environ[k])\n"
        "print('encoded', os.environ['TOKEN_URL'], file=sys.stderr)\n"
    )
    b = DistributedApplication.create_builder([])
    cache = b.add_redis("cache")
    token = b.add_parameter("token", token_value, secret=True)
    from urllib.parse import quote

    (
        b.add_executable("printer", sys.executable, str(svc), "-c", printer)
        .with_reference(cache)
        .with_reference(b.add_connection_string("db"))
        .with_environment("TOKEN", token)
        .with_environment("TOKEN_URL", quote(token_value, safe=""))
        .wait_for(cache)
    )
    app = b.build()
    apps.append(app)
    app.start(timeout=20)
    wait_until(lambda: snaps(app)["printer"].state is State.FINISHED, 10)
    password = app.environment_for("printer")["CACHE_PASSWORD"]
    app.stop()
    out = capsys.readouterr()
    text = out.out + out.err
    assert "printer  | CACHE_PASSWORD = ***" in text
    assert "printer  | encoded ***" in text
    for secret in (password, token_value, quote(token_value, safe=""), "Db-Secret-42"):
        assert secret not in text
    # the status file keeps the values for the CLI's --show-secrets (it is 0600) and a masked copy
    status_file = app.state.status_file
    assert stat.S_IMODE(status_file.stat().st_mode) == 0o600


def test_status_file_is_private_and_masks_injected_values(
    svc: Path, apps: list[DistributedApplication], isolated_env: Path
) -> None:
    b = DistributedApplication.create_builder([])
    b.add_redis("cache")
    app = b.build()
    apps.append(app)
    app.start(timeout=20, quiet=True)
    path = app.state.status_file
    assert path.parent.parent == isolated_env
    assert path == isolated_env / app.app_id / "status.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    status = json.loads(path.read_text())
    assert status["phase"] == "ready"
    (cache,) = status["resources"]
    assert (cache["name"], cache["state"], cache["health"]) == ("cache", "Running", "Healthy")
    pw = cache["injects"]["CACHE_PASSWORD"]
    assert cache["injectsMasked"]["CACHE_PASSWORD"] == "***"
    assert pw not in json.dumps(cache["injectsMasked"])
    assert pw not in json.dumps({k: v for k, v in status.items() if k != "resources"})
    assert pw not in json.dumps({k: v for k, v in cache.items() if k != "injects"})


def test_stop_during_a_slow_spawn_leaves_nothing_running(
    tmp_path: Path,
    svc: Path,
    apps: list[DistributedApplication],
    monkeypatch: pytest.MonkeyPatch,
    taken_port: int,
) -> None:
    """start() fails (the cache's port is taken) while another resource is being spawned: the
    late process must not outlive app.stop() (fault injection: the spawn is delayed)."""
    real_spawn = orchestrator.spawn

    def slow_spawn(argv: Any, *args: Any, **kwargs: Any) -> Any:
        if any("late" in str(a) for a in argv):
            time.sleep(0.6)
        return real_spawn(argv, *args, **kwargs)

    monkeypatch.setattr(orchestrator, "spawn", slow_spawn)
    before = set(children_of(os.getpid()))  # e.g. other suites' session-scoped servers
    b = DistributedApplication.create_builder([])
    b.add_redis("cache", port=taken_port)
    b.add_python_app("late", str(svc), "dump.py", str(tmp_path / "late.json"), "30")
    app = b.build()
    apps.append(app)
    with pytest.raises(ResourceStartError, match=f"host port {taken_port}"):
        app.start(timeout=20, quiet=True)
    # start() stopped the app before raising; give the delayed spawn time to have happened
    time.sleep(0.8)
    assert not [p for p in children_of(os.getpid()) if pid_alive(p) and p not in before]
    assert not (tmp_path / "late.json").exists()


def test_failure_report_masks_secrets(
    tmp_path: Path, svc: Path, apps: list[DistributedApplication]
) -> None:
    leak = "import os, sys\nprint('pw is', os.environ['CACHE_PASSWORD'])\nsys.exit(9)\n"
    b = DistributedApplication.create_builder([])
    cache = b.add_redis("cache")
    b.add_executable("leaky", sys.executable, str(svc), "-c", leak).with_reference(
        cache
    ).with_http_endpoint()
    app = b.build()
    apps.append(app)
    with pytest.raises(ResourceStartError) as info:
        app.start(timeout=20, quiet=True)
    message = str(info.value)
    assert "leaky exited with code 9" in message
    assert "pw is ***" in message
    password = app.state.secret("cache-password")
    assert password not in message
    status = read_json_file(app.state.status_file)
    assert password not in json.dumps(status)


def test_output_lines_are_prefixed_and_exit_codes_reported(
    svc: Path, apps: list[DistributedApplication], capsys: pytest.CaptureFixture[str]
) -> None:
    b = DistributedApplication.create_builder([])
    job = b.add_python_app("job", str(svc), "exit_with.py", "0")
    b.add_python_app("after", str(svc), "exit_with.py", "0").wait_for_completion(job)
    app = b.build()
    apps.append(app)
    app.start(timeout=20)
    wait_until(lambda: snaps(app)["after"].state is State.FINISHED, 10)
    app.stop()
    out = capsys.readouterr().out.splitlines()
    assert "job      | working on it" in out
    assert "job      | boom: the migration failed" in out
    assert any(ln.startswith("apphost  | job: Finished") and "exit code 0" in ln for ln in out)
    assert "\x1b[" not in "".join(out)  # NO_COLOR and not a terminal: plain lines


def test_the_live_view_prints_square_brackets_as_text() -> None:
    import io

    from apphost_sdk.masking import SecretMasker
    from apphost_sdk.orchestration.console import LiveReporter

    out = io.StringIO()
    reporter = LiveReporter(SecretMasker(), out)
    try:
        reporter.info("cache: path foo[/bar] and [red]not a style[/red]")
    finally:
        reporter.close()
    assert "foo[/bar]" in out.getvalue() and "[red]not a style[/red]" in out.getvalue()
