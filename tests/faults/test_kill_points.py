"""Family 2: the app host killed or interrupted at random points of its start and its stop.

* A foreground app host (``python apphost.py`` or ``apphost run``) gets SIGKILL, SIGTERM or
  SIGINT after a random delay in [0, 2 s] (while it starts Redis and waits for a slow HTTP
  service, or once ready).
* A ready app host gets SIGTERM and then, at a random point of its stop, SIGKILL.
* ``apphost start`` gets SIGINT (Ctrl-C: exit 130, the app host it launched stopped) or
  SIGTERM at a random point while it waits for the app to be ready.
* ``apphost stop`` itself gets SIGTERM at a random point; or the app host gets a second
  SIGTERM while ``apphost stop`` waits for it.

Each time every child (redis-server, services, the services' own children) must be gone within
a few seconds, and a following ``apphost start`` must succeed: a stale status is recognised and
nothing left over blocks it. Delays come from the seeded generator (see ``conftest``).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from .conftest import (
    Case,
    FaultLog,
    app_file,
    case_rng,
    cli_argv,
    no_traceback,
    pid_alive,
    read_json,
    run_cli,
    signal_name,
    status_file,
    status_of,
    wait_for,
    wait_gone,
    write_services,
)

FAMILY = "kill during start and stop"
SIGNALS = (signal.SIGKILL, signal.SIGTERM, signal.SIGINT)
#: (launcher, signal) of the foreground cases; each gets its own random delay.
RUN_CASES = [(how, sig) for how in ("python", "apphost run") for sig in SIGNALS]
KILL_IN_STOP_CASES = 2
STOP_CASES = 4

APP = """
cache = builder.add_redis("cache")
(
    builder.add_python_app("web", {svc}, "web.py", "0.4")
    .with_http_endpoint()
    .with_http_health_check("/")
    .with_reference(cache)
    .wait_for(cache)
)
(
    builder.add_python_app("worker", {svc}, "idle.py", {marks}, "0.3")
    .with_reference(cache)
    .wait_for(cache)
)
"""


def _app(tmp_path: Path) -> Path:
    svc = write_services(tmp_path / "svc")
    return app_file(tmp_path / "shop", APP, svc=str(svc), marks=str(svc / "marks"))


def _random_delay(case_key: str, most: float) -> float:
    """The case's delay before its signal: seeded (see ``conftest``), in [0, ``most``] s, to
    the millisecond."""
    return round(case_rng(FAMILY, case_key).uniform(0.0, most), 3)


def _foreground(app: Path, how: str, log: Path) -> subprocess.Popen[bytes]:
    argv = [sys.executable, str(app)] if how == "python" else cli_argv("run", app)
    with open(log, "wb") as out:
        return subprocess.Popen(
            argv,
            cwd=app.parent,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _phase(app: Path) -> str:
    status = read_json(status_file(Path(os.environ["APPHOST_STATE_DIR"]), app))
    return str(status.get("phase")) if isinstance(status, dict) else "no status yet"


def _wait_exit(proc: subprocess.Popen[bytes], timeout: float) -> int | None:
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        return None


def _signal_cli_after(
    case: Case,
    app: Path,
    delay: float,
    cli_args: tuple[str | Path, ...],
    interrupt: Callable[[subprocess.Popen[bytes]], None],
    timeout: float,
) -> tuple[int, bytes]:
    """Run ``apphost *cli_args``, call ``interrupt`` on it ``delay`` s later (noting the app's
    phase then) and wait for it: its exit code and stderr. It is killed if it outlives this."""
    proc = subprocess.Popen(
        cli_argv(*cli_args),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        time.sleep(delay)
        case.note(f"phase when signalled: {_phase(app)}")
        interrupt(proc)
        _out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return proc.returncode, err


def _afterwards(app: Path, tag: str, root: Path, case: Case) -> None:
    """Every child gone; then a new ``apphost start`` works, and its stop leaves nothing."""
    left = wait_gone(tag, root, timeout=5)
    assert not left, f"still running 5 s after the app host ended: {sorted(left.items())}"
    started = run_cli("start", app, "--json", "--timeout", "30", timeout=60)
    case.note(f"restart {started.code} in {started.seconds:.1f} s")
    assert started.code == 0, f"the following apphost start failed: {started.brief()}"
    assert json.loads(started.stdout)["phase"] == "ready"
    stopped = run_cli("stop", app, "--timeout", "20", timeout=40)
    assert stopped.code == 0, f"apphost stop after the restart: {stopped.brief()}"
    left = wait_gone(tag, root, timeout=5)
    assert not left, f"still running after the restarted app's stop: {sorted(left.items())}"


@pytest.mark.parametrize(
    ("how", "sig"), RUN_CASES, ids=[f"{h.replace(' ', '-')}-{s.name}" for h, s in RUN_CASES]
)
def test_signal_at_a_random_point_of_the_run(
    how: str, sig: signal.Signals, tmp_path: Path, fault_env: str, faults: FaultLog
) -> None:
    delay = _random_delay(f"signal-{how}-{sig.name}", 2.0)
    with faults.case(FAMILY, f"{signal_name(sig)} after {delay:.3f} s ({how})") as case:
        app = _app(tmp_path)
        log = tmp_path / "apphost.log"
        proc = _foreground(app, how, log)
        try:
            time.sleep(delay)
            case.note(f"phase when signalled: {_phase(app)}")
            proc.send_signal(sig)
            code = _wait_exit(proc, 10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        output = log.read_text(errors="replace")
        case.note(f"app host exit {code}")
        assert code is not None, (
            f"the app host did not exit within 10 s of {signal_name(sig)}; "
            f"last output: {output[-600:]!r}"
        )
        if sig == signal.SIGINT:
            if no_traceback(output):
                case.note("its output has a traceback")
            # README: exit code 130 when interrupted (-2: Python died of SIGINT at start-up).
            allowed = (130, -2) if how == "apphost run" else (0, 130, -2)
            assert code in allowed, f"{how} exited {code} after SIGINT, not one of {allowed}"
        elif sig == signal.SIGTERM:
            problems = no_traceback(output)
            assert not problems, f"after SIGTERM: {problems}: {output[-600:]!r}"
        _afterwards(app, fault_env, tmp_path, case)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_to_apphost_start_while_it_waits(
    sig: signal.Signals, tmp_path: Path, fault_env: str, faults: FaultLog
) -> None:
    delay = _random_delay(f"start-{sig.name}", 0.7)  # the app is ready after about 0.7 s
    with faults.case(FAMILY, f"{sig.name} to apphost start after {delay:.3f} s") as case:
        app = _app(tmp_path)
        code, err = _signal_cli_after(
            case,
            app,
            delay,
            ("start", app, "--json", "--timeout", "30"),
            lambda proc: proc.send_signal(sig),
            timeout=40,
        )
        text = err.decode(errors="replace")
        case.note(f"apphost start exit {code}")
        if sig == signal.SIGINT and code != 0:
            # Ctrl-C while waiting: exit 130 and stop the app host it launched.
            assert code in (130, -2), f"apphost start exited {code} after SIGINT, not 130"
            problems = no_traceback(text)
            assert not problems, f"apphost start after SIGINT: {problems}: {text[-600:]!r}"
            left = wait_gone(fault_env, tmp_path, timeout=10)
            assert not left, f"the interrupted start left running: {sorted(left.items())}"
        else:  # the app host may go on in the background: stop it
            stopped = run_cli("stop", app, "--timeout", "20", timeout=40)
            case.note(f"apphost stop said {stopped.stdout.strip()[:80]!r}")
            assert stopped.code == 0, f"apphost stop: {stopped.brief()}"
        _afterwards(app, fault_env, tmp_path, case)


@pytest.mark.parametrize("index", range(KILL_IN_STOP_CASES))
def test_sigkill_at_a_random_point_of_the_stop(
    index: int, tmp_path: Path, fault_env: str, faults: FaultLog
) -> None:
    delay = _random_delay(f"kill-in-stop-{index}", 0.5)  # the stop takes about 0.5 s here
    with faults.case(FAMILY, f"SIGTERM, then SIGKILL {delay:.3f} s into the stop") as case:
        app = _app(tmp_path)
        log = tmp_path / "apphost.log"
        proc = _foreground(app, "python", log)
        try:
            ready = wait_for(lambda: _phase(app) == "ready" or proc.poll() is not None, 20)
            assert ready and proc.poll() is None, (
                f"the app did not become ready: {log.read_text(errors='replace')[-600:]!r}"
            )
            proc.send_signal(signal.SIGTERM)
            time.sleep(delay)
            case.note(f"phase when killed: {_phase(app)}")
            proc.send_signal(signal.SIGKILL)
            code = _wait_exit(proc, 5)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert code is not None
        _afterwards(app, fault_env, tmp_path, case)


@pytest.mark.parametrize("index", range(STOP_CASES))
def test_sigterm_during_apphost_stop(
    index: int, tmp_path: Path, fault_env: str, faults: FaultLog
) -> None:
    delay = _random_delay(f"stop-{index}", 0.5)  # apphost stop takes about 0.5 s here
    target = "apphost stop" if index % 2 == 0 else "the app host (a second SIGTERM)"
    with faults.case(FAMILY, f"SIGTERM to {target} {delay:.3f} s into apphost stop") as case:
        app = _app(tmp_path)
        started = run_cli("start", app, "--json", "--timeout", "30", timeout=60)
        assert started.code == 0, f"apphost start: {started.brief()}"
        host_pid = int(json.loads(started.stdout)["pid"])

        def interrupt(stopper: subprocess.Popen[bytes]) -> None:
            if index % 2 == 0:
                stopper.send_signal(signal.SIGTERM)
            elif pid_alive(host_pid):
                os.kill(host_pid, signal.SIGTERM)

        code, err = _signal_cli_after(
            case, app, delay, ("stop", app, "--timeout", "20"), interrupt, timeout=30
        )
        case.note(f"apphost stop exit {code}")
        problems = no_traceback(err.decode(errors="replace"))
        assert not problems, f"apphost stop: {problems}: {err.decode(errors='replace')[-600:]!r}"
        # Whatever the interrupted stop did, the app host ends by itself or on a second stop.
        if wait_for(lambda: not pid_alive(host_pid), 3) is False:
            listed = status_of(app)
            again = run_cli("stop", app, "--timeout", "20", timeout=40)
            case.note(f"second stop {again.code}")
            assert again.code == 0, f"the second apphost stop: {again.brief()}"
            assert wait_for(lambda: not pid_alive(host_pid), 10), (
                f"the app host {host_pid} outlives two stops (status listed {len(listed)} apps)"
            )
        _afterwards(app, fault_env, tmp_path, case)
