"""Resource commands against what a review reproduced on a running app: a stop during start-up
(settled, dependents held back), a restart mid start-up, starting against a stopped dependency,
a stale run's thread, an engine that fails to stop, endpoints of exited resources and the
gateway relay's thread. Real child processes throughout."""

from __future__ import annotations

import os
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

from apphost_sdk.orchestration import orchestrator as orchestrator_module
from apphost_sdk.orchestration.app import DistributedApplication
from apphost_sdk.orchestration.console import make_reporter
from apphost_sdk.orchestration.orchestrator import Orchestrator
from apphost_sdk.orchestration.states import Health, State
from apphost_sdk.runtimes.health import free_port
from apphost_sdk.runtimes.subprocesses import ManagedProcess, spawn

from .helpers import HTTP_SERVER, pid_alive, start_in_background, wait_json, wait_until, write
from .test_resource_commands import orchestrate, snap

#: Answers HTTP on $PORT, but its first start (an empty marks folder ``argv[1]``) waits 30 s
#: before listening: Running, never Healthy, until a start command runs it again.
SLOW_FIRST = HTTP_SERVER + textwrap.dedent(
    """
    import sys, time
    folder = sys.argv[1]
    os.makedirs(folder, exist_ok=True)
    first = not os.listdir(folder)
    open(os.path.join(folder, str(os.getpid())), "w").close()
    if first:
        time.sleep(30)
    http_server(b"cache").serve_forever()
    """
)

SECRET = "s3cr3t-engine-token"


class RefusingStop(ManagedProcess):
    """A real child process whose stop fails, as an engine that refuses to stop a container."""

    def stop(self, grace_seconds: float = 10.0) -> int | None:
        raise OSError(f"the engine refused (token {SECRET})")


def port_of(url: str) -> str:
    return url.rsplit(":", 1)[1]


def resource_json(status: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(r for r in status["resources"] if r["name"] == name)
    return found


def test_a_stop_during_start_up_settles_it_and_holds_back_dependents_until_started(
    tmp_path: Path, svc: Path, apps: list[DistributedApplication]
) -> None:
    write(svc / "slow_first.py", SLOW_FIRST)
    b = DistributedApplication.create_builder([])
    cache = (
        b.add_python_app("cache", str(svc), "slow_first.py", str(tmp_path / "marks"))
        .with_http_endpoint()
        .with_http_health_check("/")
    )
    api = (
        b.add_python_app("api", str(svc), "dump.py", str(tmp_path / "api.json"), "30")
        .with_reference(cache)
        .wait_for(cache)
    )
    b.add_python_app("web", str(svc), "dump.py", str(tmp_path / "web.json"), "30").wait_for(api)
    app = b.build()
    apps.append(app)
    starter, errors = start_in_background(app, 60)
    wait_until(
        lambda: (
            app._orchestrator is not None
            and snap(app._orchestrator, "cache").state is State.RUNNING
            and snap(app._orchestrator, "api").state is State.WAITING
            and (tmp_path / "marks").is_dir()
            and any((tmp_path / "marks").iterdir())
        ),
        timeout=20,
        what="cache Running (its first start, not Healthy) and api Waiting",
    )
    orch = app._orch()
    cache_url = dict(orch.details("cache").endpoints)["http"]
    assert snap(orch, "cache").endpoint == cache_url

    stopped = orch.stop_resource("cache")
    assert stopped.ok, stopped.message
    starter.join(30)
    assert not starter.is_alive() and not errors, errors  # start-up settled, nothing failed

    status = app.status()
    assert status["phase"] == "ready" and status["error"] is None
    cache_json = resource_json(status, "cache")
    assert (cache_json["state"], cache_json["stoppedByCommand"], cache_json["endpoint"]) == (
        "Exited",
        True,
        None,  # nothing listens there now...
    )
    assert dict(orch.details("cache").endpoints)["http"] == cache_url  # ...it comes back there
    for name in ("api", "web"):
        item = resource_json(status, name)
        assert (item["state"], item["heldBackBy"], item["message"]) == (
            "Waiting",
            ["cache"],
            "held back: cache was stopped",
        ), item
        assert item["stoppedByCommand"] is False
    assert orch.failures() == [] and orch.not_ready() == []

    # Started again: the held-back dependents go on as at start-up, with its connection info.
    started = orch.start_resource("cache")
    assert started.ok, started.message
    api_env = wait_json(tmp_path / "api.json")["env"]
    assert any(port_of(cache_url) in v for k, v in api_env.items() if "cache" in k.lower())
    wait_until(lambda: wait_json(tmp_path / "web.json"), timeout=20, what="web started")
    api_snap = snap(orch, "api")
    assert api_snap.state is State.RUNNING and api_snap.held_back_by == ()
    assert api_snap.message is None
    assert snap(orch, "cache").stopped_by_command is False


def test_a_restart_is_neither_ready_nor_stopped_between_its_stop_and_its_start(
    tmp_path: Path, svc: Path
) -> None:
    b = DistributedApplication.create_builder([])
    api = b.add_python_app("api", str(svc), "web.py", str(tmp_path)).with_http_endpoint()
    (
        b.add_python_app("front", str(svc), "web.py", str(tmp_path))
        .with_http_endpoint()
        .with_reference(api)
        .wait_for(api)
    )
    box: list[Orchestrator] = []
    seen: list[tuple[State, bool, bool, list[str]]] = []

    def on_change() -> None:  # called under the orchestrator's (re-entrant) lock
        if not box:
            return
        orch = box[0]
        api_snap = snap(orch, "api")
        if api_snap.state in (State.STOPPING, State.EXITED):
            settled = orch.wait_until_settled(timeout=0)  # what start-up would decide now
            failed = [r.name for r in orch.failures()]
            seen.append((api_snap.state, api_snap.stopped_by_command, settled, failed))

    with orchestrate(b, on_change=on_change) as orch:
        box.append(orch)
        result = orch.restart_resource("api")
        assert result.ok, result.message
        assert seen and {state for state, *_ in seen} >= {State.EXITED}
        assert all(
            not stopped and not settled and not failed for _, stopped, settled, failed in seen
        )
        assert orch.wait_until_settled(timeout=5)
        assert snap(orch, "front").state is State.RUNNING


def test_start_needs_the_connection_info_of_what_it_references(tmp_path: Path, svc: Path) -> None:
    b = DistributedApplication.create_builder([])
    migrate = b.add_python_app("migrate", str(svc), "dump.py", str(tmp_path / "m.json"), "30")
    db = b.add_python_app("db", str(svc), "web.py", str(tmp_path)).with_http_endpoint()
    db.wait_for_completion(migrate)
    b.add_python_app("api", str(svc), "dump.py", str(tmp_path / "api.json"), "30").with_reference(
        db
    ).wait_for(db)
    cache = b.add_python_app("cache", str(svc), "web.py", str(tmp_path)).with_http_endpoint()
    b.add_python_app("user", str(svc), "dump.py", str(tmp_path / "user.json"), "30").with_reference(
        cache
    ).wait_for(cache)
    app = b.build()
    reporter = make_reporter(app.masker, quiet=True)
    orch = Orchestrator(app, reporter, app.masker)
    try:
        orch.start()
        wait_until(
            lambda: (
                snap(orch, "api").state is State.WAITING
                and snap(orch, "user").health is Health.HEALTHY
            ),
            timeout=20,
            what="api Waiting (db never ran) and user Running",
        )
        # db never ran: there is no connection info to start api with.
        refused = orch.start_resource("api")
        assert (refused.ok, refused.message) == (
            False,
            "api needs db, which is Waiting; start db first",
        )
        assert orch.command_states("api")["start"] is False

        # cache ran (and keeps its port): user starts against it while it is Exited.
        cache_port = port_of(dict(orch.details("cache").endpoints)["http"])
        assert orch.stop_resource("user").ok and orch.stop_resource("cache").ok
        assert orch.reference_environment("cache", "cache") == {}, "status shows none"
        (tmp_path / "user.json").unlink()
        started = orch.start_resource("user")
        assert started.ok, started.message
        env = wait_json(tmp_path / "user.json")["env"]
        assert any(cache_port in v for k, v in env.items() if "cache" in k.lower()), env
        assert snap(orch, "cache").state is State.EXITED
    finally:
        orch.stop()
        reporter.close()


def test_a_superseded_run_never_takes_the_resource_and_stops_what_it_started(
    tmp_path: Path, svc: Path
) -> None:
    b = DistributedApplication.create_builder([])
    b.add_python_app("api", str(svc), "web.py", str(tmp_path)).with_http_endpoint()
    with orchestrate(b) as orch:
        rec = orch.record("api")
        current = rec.process
        assert current is not None
        outcome: list[tuple[bool, ManagedProcess]] = []

        def as_a_stale_run() -> None:
            orch._local.run = orchestrator_module._Run("api")  # an older run of api
            late = spawn(
                [sys.executable, "-c", "import time; time.sleep(30)"],
                None,
                dict(os.environ),
                lambda stream, line: None,
            )
            outcome.append((orch._take_process(rec, late), late))

        stale = threading.Thread(target=as_a_stale_run)
        stale.start()
        stale.join(30)
        [(taken, late)] = outcome
        assert not taken
        assert late.exit_code() is not None, "what the stale run started is stopped"
        assert rec.process is current and snap(orch, "api").runtime == f"pid {current.pid}"


def test_an_engine_that_fails_to_stop_leaves_it_exited_and_stop_retries(
    tmp_path: Path, svc: Path, apps: list[DistributedApplication]
) -> None:
    b = DistributedApplication.create_builder([])
    b.add_python_app("api", str(svc), "web.py", str(tmp_path)).with_http_endpoint()
    app = b.build()
    apps.append(app)
    app.start(timeout=20, quiet=True)
    app.masker.add(SECRET)
    orch = app._orch()
    rec = orch.record("api")
    process = rec.process
    assert process is not None
    process.__class__ = RefusingStop  # the same real process; only its stop fails

    failed = orch.stop_resource("api")
    assert not failed.ok
    assert "stopping api failed" in failed.message and "stop it again" in failed.message
    assert SECRET not in failed.message
    api_snap = snap(orch, "api")
    assert api_snap.state is State.EXITED and api_snap.endpoint is None
    assert api_snap.message is not None and SECRET not in api_snap.message
    assert "it may still run" in api_snap.message
    assert orch.command_states("api")["stop"] is True
    assert orch.failures() == [] and pid_alive(process.pid)

    process.__class__ = ManagedProcess
    retried = orch.stop_resource("api")
    assert retried.ok, retried.message
    assert not pid_alive(process.pid)
    assert orch.command_states("api") == {"start": True, "stop": False, "restart": False}
    # A stop cut short (Stopping) takes a stop again.
    orch._set(rec, State.STOPPING)
    assert orch.command_states("api")["stop"] is True


def test_the_gateway_relay_thread_ends_with_its_run(tmp_path: Path, svc: Path) -> None:
    b = DistributedApplication.create_builder([])
    b.add_python_app("api", str(svc), "web.py", str(tmp_path)).with_http_endpoint()
    with orchestrate(b) as orch:
        rec = orch.record("api")
        closed = free_port()  # nothing listens there: the relay would poll for ever

        def relay(run: Any, process: ManagedProcess) -> threading.Thread:
            thread = threading.Thread(
                target=orch._forward, args=(rec, run, process, "127.0.0.1", [closed])
            )
            thread.start()
            return thread

        # Its process exits: it ends.
        short = spawn([sys.executable, "-c", "pass"], None, dict(os.environ), lambda s, ln: None)
        ended = relay(rec.run, short)
        ended.join(10)
        assert not ended.is_alive()

        # Its run is halted by a stop command: it ends.
        assert rec.process is not None
        waiting = relay(rec.run, rec.process)
        assert waiting.is_alive()
        assert orch.stop_resource("api").ok
        waiting.join(10)
        assert not waiting.is_alive()
