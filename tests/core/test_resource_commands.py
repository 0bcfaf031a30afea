"""Resource commands and details in the orchestrator (issue 10): start, stop and restart of one
resource with real child processes, the console-line and service-environment hooks, and what
the dashboard reads (``details``, ``command_states``, ``version``)."""

from __future__ import annotations

import contextlib
import json
import os
import textwrap
import threading
import time
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from apphost_sdk.dashboard.source import CommandResult
from apphost_sdk.model.builder import DistributedApplicationBuilder
from apphost_sdk.model.resources import Resource
from apphost_sdk.orchestration import orchestrator as orchestrator_module
from apphost_sdk.orchestration.app import DistributedApplication
from apphost_sdk.orchestration.console import make_reporter
from apphost_sdk.orchestration.orchestrator import Orchestrator
from apphost_sdk.orchestration.states import Health, State

from .helpers import (
    HTTP_SERVER,
    pid_alive,
    read_json_file,
    start_in_background,
    wait_json,
    wait_until,
    write,
)

#: Prints a line on each stream, writes its environment to ``argv[1]``, then answers HTTP on
#: $PORT until stopped.
TALK = HTTP_SERVER + textwrap.dedent(
    """
    import json, sys
    print("out line", flush=True)
    print("err line", file=sys.stderr, flush=True)
    with open(sys.argv[1] + ".tmp", "w") as fh:
        json.dump(dict(os.environ), fh)
    os.replace(sys.argv[1] + ".tmp", sys.argv[1])
    http_server(b"talk").serve_forever()
    """
)

#: Answers HTTP on $PORT at once the first time; every later start (a command) sleeps 30 s
#: before listening, so it stays Running but not Healthy. ``argv[1]``: a folder of start marks.
SLOW_AGAIN = HTTP_SERVER + textwrap.dedent(
    """
    import sys, time
    folder = sys.argv[1]
    os.makedirs(folder, exist_ok=True)
    again = bool(os.listdir(folder))
    open(os.path.join(folder, str(os.getpid())), "w").close()
    if again:
        time.sleep(30)
    http_server(b"slow").serve_forever()
    """
)

EXPECTED_STATES = {"start", "stop", "restart"}


def snap(app_or_orch: DistributedApplication | Orchestrator, name: str) -> Any:
    return next(s for s in app_or_orch.snapshots() if s.name == name)


def orch_of(app: DistributedApplication) -> Orchestrator:
    """The running app's orchestrator (what the dashboard adapter wraps)."""
    return app._orch()


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=5) as response:
        body: bytes = response.read()
        return body


def http_url(orch: Orchestrator, name: str) -> str:
    return dict(orch.details(name).endpoints)["http"]


def start_mark(folder: Path, name: str) -> dict[str, Any]:
    data = wait_json(folder / f"{name}.start")
    assert isinstance(data, dict)
    return data


@contextlib.contextmanager
def orchestrate(builder: DistributedApplicationBuilder, **hooks: Any) -> Iterator[Orchestrator]:
    """An orchestrator of ``builder``'s app with ``hooks``, started until settled, stopped on
    the way out (the app's own start() passes the dashboard's hooks; these are the test's)."""
    app = builder.build()
    reporter = make_reporter(app.masker, quiet=True)
    orch = Orchestrator(app, reporter, app.masker, **hooks)
    try:
        orch.start()
        assert orch.wait_until_settled(timeout=20), orch.failure_report() or orch.not_ready()
        yield orch
    finally:
        orch.stop()
        reporter.close()


def api_and_front(
    tmp_path: Path, svc: Path, apps: list[DistributedApplication]
) -> tuple[DistributedApplication, Orchestrator]:
    """A started app of two HTTP services, ``front`` referencing and waiting for ``api``."""
    b = DistributedApplication.create_builder([])
    api = b.add_python_app("api", str(svc), "web.py", str(tmp_path)).with_http_endpoint()
    (
        b.add_python_app("front", str(svc), "web.py", str(tmp_path))
        .with_http_endpoint()
        .with_reference(api)
        .wait_for(api)
    )
    app = b.build()
    apps.append(app)
    app.start(timeout=20, quiet=True)
    return app, orch_of(app)


def test_stop_then_start_keeps_the_port_and_leaves_dependents_running(
    tmp_path: Path, svc: Path, apps: list[DistributedApplication]
) -> None:
    app, orch = api_and_front(tmp_path, svc, apps)
    api_url, front_url = http_url(orch, "api"), http_url(orch, "front")
    assert api_url.startswith("http://localhost:")
    first = start_mark(tmp_path, "api")
    first_started_at = orch.details("api").started_at
    assert first_started_at is not None and abs(first_started_at - time.time()) < 60
    assert orch.command_states("api") == {"start": False, "stop": True, "restart": True}
    version = orch.version

    stopped = orch.stop_resource("api")
    assert stopped.ok, stopped.message
    api_snap = snap(orch, "api")
    assert (api_snap.state, api_snap.health, api_snap.exit_code) == (
        State.EXITED,
        Health.UNKNOWN,
        0,  # web.py exits 0 on SIGTERM: the code is kept
    )
    assert orch.version > version
    assert not pid_alive(first["pid"])
    assert orch.command_states("api") == {"start": True, "stop": False, "restart": False}
    # Nothing else stopped, and a stopped resource is no failure of the app.
    assert snap(orch, "front").state is State.RUNNING
    assert json.loads(get(front_url)) == {"name": "front"}
    assert orch.failures() == []
    assert orch.wait_until_settled(timeout=1)
    assert app.status()["phase"] == "ready" and app.status()["error"] is None

    (tmp_path / "api.start").unlink()
    started = orch.start_resource("api")
    assert started.ok, started.message
    api_snap = snap(orch, "api")
    assert (api_snap.state, api_snap.health, api_snap.exit_code) == (
        State.RUNNING,
        Health.HEALTHY,
        None,
    )
    assert start_mark(tmp_path, "api")["pid"] != first["pid"]
    # The same host port: what front was told still reaches it.
    assert http_url(orch, "api") == api_url
    assert json.loads(get(api_url)) == {"name": "api"}
    port = api_url.rsplit(":", 1)[1]
    assert any(port in value for value in orch.details("front").environment.values())
    details = orch.details("api")
    assert details.started_at is not None and details.started_at > first_started_at
    assert details.environment["PORT"] == port
    assert orch.details("front").relations == [("api", "reference"), ("api", "wait")]


def test_restart_of_a_dependency_neither_restarts_nor_holds_back_its_dependent(
    tmp_path: Path, svc: Path, apps: list[DistributedApplication]
) -> None:
    _app, orch = api_and_front(tmp_path, svc, apps)
    api_url, front_url = http_url(orch, "api"), http_url(orch, "front")
    api_pid, front_pid = start_mark(tmp_path, "api")["pid"], start_mark(tmp_path, "front")["pid"]
    (tmp_path / "api.start").unlink()

    # While api restarts, front keeps Running and serving.
    seen: list[tuple[State, bytes]] = []
    done = threading.Event()

    def watch_front() -> None:
        while not done.is_set():
            seen.append((snap(orch, "front").state, get(front_url)))
            done.wait(0.02)

    watcher = threading.Thread(target=watch_front)
    watcher.start()
    try:
        result = orch.restart_resource("api")
    finally:
        done.set()
        watcher.join(10)
    assert result == CommandResult(True, "api restarted")
    assert seen and all(state is State.RUNNING for state, _ in seen)
    assert all(json.loads(body) == {"name": "front"} for _, body in seen)
    assert start_mark(tmp_path, "front")["pid"] == front_pid and pid_alive(front_pid)
    assert start_mark(tmp_path, "api")["pid"] != api_pid and not pid_alive(api_pid)
    assert http_url(orch, "api") == api_url and json.loads(get(api_url)) == {"name": "api"}
    assert snap(orch, "api").state is State.RUNNING


def test_force_start_of_a_waiting_resource_and_restart_under_a_waiting_dependent(
    tmp_path: Path, svc: Path, apps: list[DistributedApplication]
) -> None:
    b = DistributedApplication.create_builder([])
    blocker = b.add_python_app("blocker", str(svc), "dump.py", str(tmp_path / "b.json"), "30")
    api = b.add_python_app("api", str(svc), "web.py", str(tmp_path)).with_http_endpoint()
    (
        b.add_python_app("gate", str(svc), "dump.py", str(tmp_path / "gate.json"), "30")
        .wait_for(api)
        .wait_for_completion(blocker)
    )
    app = b.build()
    apps.append(app)
    starter, errors = start_in_background(app, 30)
    try:
        wait_until(
            lambda: (
                app._orchestrator is not None
                and snap(app._orchestrator, "gate").state is State.WAITING
                and snap(app._orchestrator, "api").health is Health.HEALTHY
            ),
            timeout=15,
            what="gate Waiting and api Healthy",
        )
        orch = app._orchestrator
        assert orch is not None
        assert orch.command_states("gate") == {"start": True, "stop": False, "restart": False}

        # A dependent still waiting on api neither blocks its restart nor fails meanwhile.
        restarted = orch.restart_resource("api")
        assert restarted.ok, restarted.message
        assert snap(orch, "gate").state is State.WAITING

        forced = orch.start_resource("gate")
        assert forced.ok, forced.message
        assert snap(orch, "gate").state is State.RUNNING
        assert wait_json(tmp_path / "gate.json")  # it runs while blocker has not completed
        assert snap(orch, "blocker").state is State.RUNNING
    finally:
        starter.join(30)
    assert not errors, errors  # the app's start settles once gate runs


def test_refusals_name_why_and_what_works(
    tmp_path: Path, svc: Path, apps: list[DistributedApplication]
) -> None:
    b = DistributedApplication.create_builder(["--ConnectionStrings:db=Host=db;Password=pw"])
    b.add_connection_string("db")
    b.add_python_app("api", str(svc), "web.py", str(tmp_path)).with_http_endpoint()
    b.add_python_app("job", str(svc), "exit_with.py", "0")
    app = b.build()
    apps.append(app)
    app.start(timeout=20, quiet=True)
    orch = orch_of(app)
    wait_until(lambda: snap(orch, "job").state is State.FINISHED, what="job Finished")

    def refused(result: CommandResult, *parts: str) -> None:
        assert not result.ok
        for part in parts:
            assert part in result.message, result.message

    refused(orch.stop_resource("nope"), "no resource named 'nope'", "api", "job")
    refused(orch.start_resource("api"), "already Running", "restart")
    refused(orch.stop_resource("job"), "job is Finished", "use start")
    refused(orch.restart_resource("job"), "use start instead")
    refused(orch.stop_resource("db"), "db is a value", "nothing to start or stop")
    assert orch.command_states("db") == {"start": False, "stop": False, "restart": False}
    with pytest.raises(KeyError):
        orch.command_states("nope")
    with pytest.raises(KeyError):
        orch.details("nope")
    assert set(orch.command_states("API")) == EXPECTED_STATES  # names are case-insensitive

    rerun = orch.start_resource("job")  # a job started again runs to its end
    assert rerun == CommandResult(True, "job ran and finished (exit code 0)")

    app.stop()
    refused(orch.start_resource("api"), "the app host is stopping")
    assert orch.command_states("api") == {"start": False, "stop": False, "restart": False}


def test_console_lines_and_service_environment_hooks(tmp_path: Path, svc: Path) -> None:
    write(svc / "talk.py", TALK)
    b = DistributedApplication.create_builder([])
    (
        b.add_python_app("talk", str(svc), "talk.py", str(tmp_path / "talk.json"))
        .with_http_endpoint()
        .with_environment("SHARED", "user")
    )
    lines: list[tuple[str, str, str]] = []
    calls: list[tuple[str, bool]] = []

    def service_environment(resource: Resource, in_container: bool) -> Mapping[str, str]:
        calls.append((resource.name, in_container))
        return {"OTEL_SERVICE_NAME": "svc-talk", "OTEL_ONLY": "hook", "SHARED": "hook"}

    def on_line(resource: str, stream: str, line: str) -> None:
        lines.append((resource, stream, line))

    with orchestrate(b, on_line=on_line, service_environment=service_environment) as orch:
        env = wait_json(tmp_path / "talk.json")
        # The hook's variables come first: the resource's own with_environment wins.
        assert (env["OTEL_SERVICE_NAME"], env["OTEL_ONLY"], env["SHARED"]) == (
            "svc-talk",
            "hook",
            "user",
        )
        assert orch.details("talk").environment["SHARED"] == "user"
        assert calls == [("talk", False)]
        wait_until(
            lambda: {("talk", "stdout", "out line"), ("talk", "stderr", "err line")} <= set(lines),
            what="both streams through on_line",
        )
        (tmp_path / "talk.json").unlink()
        assert orch.restart_resource("talk").ok
        wait_json(tmp_path / "talk.json")
        wait_until(
            lambda: lines.count(("talk", "stdout", "out line")) == 2,
            what="the restarted run's lines through on_line",
        )
        assert calls == [("talk", False)] * 2


def test_without_the_hook_executables_still_get_their_service_name(
    tmp_path: Path, svc: Path
) -> None:
    b = DistributedApplication.create_builder([])
    b.add_python_app("quick", str(svc), "dump.py", str(tmp_path / "quick.json"))
    b.add_python_app("named", str(svc), "dump.py", str(tmp_path / "named.json")).with_environment(
        "OTEL_SERVICE_NAME", "custom"
    )
    with orchestrate(b):
        assert wait_json(tmp_path / "quick.json")["env"]["OTEL_SERVICE_NAME"] == "quick"
        assert wait_json(tmp_path / "named.json")["env"]["OTEL_SERVICE_NAME"] == "custom"


def test_commands_are_serialised_and_the_app_stops_cleanly_during_one(
    tmp_path: Path, svc: Path, apps: list[DistributedApplication], monkeypatch: pytest.MonkeyPatch
) -> None:
    write(svc / "slow_again.py", SLOW_AGAIN)
    marks = tmp_path / "marks"
    b = DistributedApplication.create_builder([])
    b.add_python_app("api", str(svc), "web.py", str(tmp_path)).with_http_endpoint()
    b.add_python_app("slow", str(svc), "slow_again.py", str(marks)).with_http_endpoint()
    app = b.build()
    apps.append(app)
    app.start(timeout=20, quiet=True)
    orch = orch_of(app)

    # A restart and a stop at once: one after the other, never both on one process.
    results: dict[str, CommandResult] = {}
    threads = [
        threading.Thread(target=lambda: results.update(restart=orch.restart_resource("api"))),
        threading.Thread(target=lambda: results.update(stop=orch.stop_resource("api"))),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert results["stop"].ok, results
    assert snap(orch, "api").state is State.EXITED
    if not results["restart"].ok:  # the stop came first
        assert "use start instead" in results["restart"].message

    # A start that does not get Healthy in time says so (and the resource goes on starting).
    assert orch.stop_resource("slow").ok
    monkeypatch.setattr(orchestrator_module, "COMMAND_TIMEOUT_SECONDS", 1.0)
    late = orch.start_resource("slow")
    assert not late.ok and "not Running and Healthy after 1 s" in late.message, late.message
    assert snap(orch, "slow").state is State.RUNNING
    monkeypatch.setattr(orchestrator_module, "COMMAND_TIMEOUT_SECONDS", 60.0)

    # The app stops during a start command: the command ends, and nothing is left running.
    assert orch.stop_resource("slow").ok
    pending: list[CommandResult] = []
    starter = threading.Thread(target=lambda: pending.append(orch.start_resource("slow")))
    starter.start()
    wait_until(lambda: len(os.listdir(marks)) == 3, what="the third start of slow")
    t0 = time.monotonic()
    app.stop()
    starter.join(10)
    assert time.monotonic() - t0 < 10
    assert pending and not pending[0].ok and "stopping" in pending[0].message, pending
    pids = [int(p) for p in os.listdir(marks)]
    assert not any(pid_alive(p) for p in pids)
    assert read_json_file(app.state.status_file)["phase"] == "stopped"
