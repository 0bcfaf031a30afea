"""Family 1: N simultaneous ``apphost start APP --json`` of one app, K rounds.

Exactly one start wins (exit 0, the app's JSON); every other exits 1 with a one-line reason
naming the winner's pid. ``apphost status --json`` then shows one app, whose Redis answers;
after ``apphost stop`` no process of the app is left (Redis, services, their children).
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from .conftest import (
    FaultLog,
    app_file,
    case_rng,
    cli_argv,
    no_traceback,
    owned_processes,
    pid_alive,
    redis_password,
    redis_ping,
    run_cli,
    status_of,
    wait_gone,
    write_services,
)

FAMILY = "concurrent starts"
ROUNDS = 6
STARTS = 5

APP = """
cache = builder.add_redis("cache")
(
    builder.add_python_app("worker", {svc}, "idle.py", {marks})
    .with_reference(cache)
    .wait_for(cache)
)
"""


@pytest.mark.parametrize("round_no", range(ROUNDS))
def test_simultaneous_starts_have_exactly_one_winner(
    round_no: int, tmp_path: Path, fault_env: str, faults: FaultLog
) -> None:
    svc = write_services(tmp_path / "svc")
    app = app_file(tmp_path / "race", APP, svc=str(svc), marks=str(svc / "marks"))
    rng = case_rng(FAMILY, round_no)
    delays = sorted(rng.uniform(0, 0.05) for _ in range(STARTS))

    procs: list[subprocess.Popen[bytes]] = []
    t0 = time.monotonic()
    for delay in delays:
        time.sleep(max(0.0, t0 + delay - time.monotonic()))
        procs.append(
            subprocess.Popen(
                cli_argv("start", app, "--json", "--timeout", "30"),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
        )
    outcomes: list[tuple[int | None, str, str]] = []
    for p in procs:
        try:
            out, err = p.communicate(timeout=max(1.0, t0 + 60 - time.monotonic()))
            outcomes.append((p.returncode, out.decode(errors="replace"), err.decode()))
        except subprocess.TimeoutExpired:
            p.kill()
            out, err = p.communicate()
            outcomes.append((None, out.decode(errors="replace"), err.decode(errors="replace")))

    # -- the race itself -----------------------------------------------------------------
    round_problems: list[str] = []
    winners = [i for i, (code, _, _) in enumerate(outcomes) if code == 0]
    winner_pid: int | None = None
    if len(winners) != 1:
        codes = [code for code, _, _ in outcomes]
        round_problems.append(f"{len(winners)} of {STARTS} starts exited 0 (exit codes {codes})")
    for i in winners:
        try:
            pid = json.loads(outcomes[i][1])["pid"]
        except (ValueError, KeyError, TypeError):
            round_problems.append(f"start {i} exited 0 without the app's JSON")
            continue
        if winner_pid is None:
            winner_pid = pid

    own: dict[int, list[str]] = {}
    for i, (code, _out, err) in enumerate(outcomes):
        problems = no_traceback(err)
        if i not in winners:
            first = err.strip().splitlines()[0] if err.strip() else ""
            if code != 1:
                problems.append(f"a losing start exited {code}, not 1")
            if winner_pid is not None and str(winner_pid) not in first:
                problems.append(
                    f"its one-line reason does not name the winner's pid {winner_pid}: "
                    f"{first[:200]!r}"
                )
        own[i] = problems

    # -- what is left running: one app, healthy --------------------------------------------
    try:
        listed = status_of(app)
    except AssertionError as exc:
        listed = []
        round_problems.append(str(exc))
    if len(listed) != 1:
        round_problems.append(f"apphost status --json shows {len(listed)} apps, not 1")
    elif winner_pid is not None and listed[0].get("pid") != winner_pid:
        round_problems.append(
            f"status names pid {listed[0].get('pid')}, the winning start reported {winner_pid}"
        )
    elif listed:
        resources = {r["name"]: r for r in listed[0].get("resources", [])}
        bad = [
            f"{n} {r.get('state')}/{r.get('health')}"
            for n, r in resources.items()
            if (r.get("state"), r.get("health")) != ("Running", "Healthy")
        ]
        if bad or listed[0].get("phase") != "ready":
            round_problems.append(f"the winner is not ready: {listed[0].get('phase')} {bad}")
        cache = resources.get("cache")
        if cache and cache.get("endpoint"):
            why = redis_ping(int(cache["endpoint"].rsplit(":", 1)[1]), redis_password(cache))
            if why:
                round_problems.append(f"the winner's Redis does not answer: {why}")
    running = owned_processes(fault_env, tmp_path)
    redis_count = sum(1 for c in running.values() if "redis-server" in c)
    if redis_count > 1:
        round_problems.append(f"{redis_count} redis-server processes run for one app")

    # -- stop: nothing of the app is left ---------------------------------------------------
    stopped = run_cli("stop", app, "--timeout", "20", timeout=40)
    if stopped.code != 0:
        round_problems.append(f"apphost stop: {stopped.brief()}")
    left = wait_gone(fault_env, tmp_path, timeout=5)
    if left:
        round_problems.append(f"left running after stop: {sorted(left.items())}")
    if winner_pid is not None and pid_alive(winner_pid):
        round_problems.append(f"the app host {winner_pid} still runs after stop")

    for i, (code, _out, err) in enumerate(outcomes):
        role = "winner" if i in winners else "loser"
        faults.record(
            FAMILY,
            f"round {round_no} start {i} ({role})",
            own[i] + round_problems,
            notes=f"exit {code}; stderr {err.strip()[:160]!r}",
        )
    everything = [f"start {i}: {p}" for i, ps in own.items() for p in ps] + round_problems
    assert not everything, "\n".join(everything)
