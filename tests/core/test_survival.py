"""No child process survives the app host, not even when it is killed; Ctrl-C and SIGTERM of
``app.run()`` stop everything cleanly (issue 2, "Run orchestration")."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from apphost_sdk.runtimes.health import tcp_accepts
from apphost_sdk.state import app_identity

from .helpers import children_of, pid_alive, read_json_file, wait_json, wait_until, write

APPHOST = textwrap.dedent(
    """
    from apphost_sdk import DistributedApplication

    SVC = {svc!r}
    MARKS = {marks!r}

    builder = DistributedApplication.create_builder()
    cache = builder.add_redis("cache")
    (
        builder.add_python_app("api", SVC, "web.py", MARKS)
        .with_http_endpoint()
        .with_reference(cache)
        .wait_for(cache)
        .with_environment("PING_REDIS", "CACHE")
    )
    builder.add_python_app("worker", SVC, "dump.py", MARKS + "/worker.json", "60")
    {extra}
    builder.build().run()
    """
)


class AppHostProcess:
    def __init__(self, folder: Path, state: Path, svc: Path, extra: str = "") -> None:
        self.folder = folder
        self.marks = folder / "marks"
        self.marks.mkdir(parents=True)
        self.path = write(
            folder / "apphost.py",
            APPHOST.format(svc=str(svc), marks=str(self.marks), extra=extra),
        )
        _, app_id = app_identity(self.path)
        self.status_file = state / app_id / "status.json"
        self.log = folder / "apphost.log"
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, str(self.path)],
                cwd=folder,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )

    def wait_ready(self) -> dict[str, object]:
        def ready() -> dict[str, object] | None:
            status = read_json_file(self.status_file)
            if self.proc.poll() is not None:
                raise AssertionError(f"app host exited: {self.log.read_text()}")
            return status if status and status.get("phase") == "ready" else None

        status = wait_until(ready, timeout=15, what="the app host to be ready")
        assert status["pid"] == self.proc.pid
        return status

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


@pytest.fixture
def apphost(tmp_path: Path, isolated_env: Path, svc: Path) -> Iterator[AppHostProcess]:
    host = AppHostProcess(tmp_path / "shop", isolated_env, svc)
    yield host
    host.kill()


def _is_watchdog(pid: int) -> bool:
    try:
        return b"pgs=" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def _running_children(host: AppHostProcess) -> tuple[list[int], int]:
    host.wait_ready()
    kids = [k for k in children_of(host.proc.pid) if not _is_watchdog(k)]
    worker = wait_json(host.marks / "worker.json")["pid"]
    api = wait_json(host.marks / "api.start")["pid"]
    assert worker in kids and api in kids
    assert len(kids) == 3, kids  # redis-server, api, worker
    (redis_pid,) = [k for k in kids if k not in (worker, api)]
    assert b"redis-server" in Path(f"/proc/{redis_pid}/cmdline").read_bytes()
    return kids, redis_pid


def test_sigkill_of_the_app_host_kills_every_child(apphost: AppHostProcess) -> None:
    kids, _ = _running_children(apphost)
    status = read_json_file(apphost.status_file)
    cache = next(r for r in status["resources"] if r["name"] == "cache")
    port = int(cache["endpoint"].rsplit(":", 1)[1])
    assert tcp_accepts("127.0.0.1", port)
    os.kill(apphost.proc.pid, signal.SIGKILL)
    apphost.proc.wait(5)
    wait_until(
        lambda: not any(pid_alive(k) for k in kids), timeout=5, what=f"children {kids} to die"
    )
    wait_until(lambda: not tcp_accepts("127.0.0.1", port), timeout=5, what=f"port {port} to close")


def test_sigkill_of_the_app_host_kills_grandchildren_too(
    tmp_path: Path, isolated_env: Path, svc: Path
) -> None:
    # A service whose own child (here `sleep`) is outside the reach of PR_SET_PDEATHSIG.
    extra = (
        'builder.add_executable("spawner", "sh", MARKS, "-c", '
        '"sleep 300 & echo $! > grandchild.pid; wait")'
    )
    host = AppHostProcess(tmp_path / "family", isolated_env, svc, extra=extra)
    try:
        host.wait_ready()
        pid_file = host.marks / "grandchild.pid"
        wait_until(
            lambda: pid_file.exists() and pid_file.read_text().strip(),
            timeout=10,
            what="the grandchild to start",
        )
        grandchild = int(pid_file.read_text())
        assert pid_alive(grandchild)
        assert any(_is_watchdog(k) for k in children_of(host.proc.pid))
        os.kill(host.proc.pid, signal.SIGKILL)
        host.proc.wait(5)
        wait_until(lambda: not pid_alive(grandchild), timeout=5, what="the grandchild to die")
    finally:
        host.kill()


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 0), (signal.SIGINT, 130)])
def test_signal_stops_run_cleanly(apphost: AppHostProcess, sig: signal.Signals, code: int) -> None:
    kids, _ = _running_children(apphost)
    os.kill(apphost.proc.pid, sig)
    assert apphost.proc.wait(15) == code, apphost.log.read_text()
    # stopped by the app host itself (the api got SIGTERM while the cache still answered)
    stop = wait_json(apphost.marks / "api.stop", timeout=1)
    assert stop["ping"] is True
    assert not any(pid_alive(k) for k in kids)
    status = read_json_file(apphost.status_file)
    assert status["phase"] == "stopped"
    log = apphost.log.read_text()
    assert "stopping" in log
    assert "api      | listening on" in log


def test_failing_run_exits_non_zero_naming_the_resource(
    tmp_path: Path, isolated_env: Path, svc: Path
) -> None:
    extra = (
        'broken = builder.add_python_app("broken", SVC, "exit_with.py", "5").with_http_endpoint()\n'
        'builder.add_python_app("after", SVC, "dump.py", MARKS + "/after.json").wait_for(broken)'
    )
    host = AppHostProcess(tmp_path / "bad", isolated_env, svc, extra=extra)
    try:
        assert host.proc.wait(15) == 1
    finally:
        host.kill()
    log = host.log.read_text()
    assert "apphost: broken exited with code 5" in log
    assert "boom: the migration failed" in log
    assert not (host.marks / "after.json").exists()
    assert read_json_file(host.status_file)["phase"] == "failed"


def test_sigterm_while_starting_stops_the_run(
    tmp_path: Path, isolated_env: Path, svc: Path
) -> None:
    extra = (
        'never = builder.add_python_app("never", SVC, "web.py", MARKS, "3600").with_http_endpoint()'
    )
    host = AppHostProcess(tmp_path / "stuck", isolated_env, svc, extra=extra)
    try:
        wait_json(host.marks / "never.start", timeout=10)
        os.kill(host.proc.pid, signal.SIGTERM)
        host.proc.wait(3)
    finally:
        host.kill()
