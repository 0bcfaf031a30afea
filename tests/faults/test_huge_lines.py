"""Family 4: services that print huge lines. A service printing 50 MiB without a newline, and
services printing many long lines (256 KiB each, and just over 16 KiB each): the app host's
memory (peak RSS, ``VmHWM``) stays under 150 MiB, the app keeps serving (HTTP and Redis
answer) and ``apphost stop`` stops everything."""

from __future__ import annotations

import http.client
import json
import os
import threading
import time
from pathlib import Path

import pytest

from .conftest import (
    FaultLog,
    app_file,
    endpoint_port,
    log_file,
    redis_password,
    redis_ping,
    run_cli,
    status_of,
    vm_kib,
    wait_for,
    wait_gone,
    write_services,
)

FAMILY = "huge lines"
RSS_LIMIT_MIB = 150

HEAD = """
cache = builder.add_redis("cache")
(
    builder.add_python_app("web", {svc}, "web.py")
    .with_http_endpoint()
    .with_http_health_check("/")
    .with_reference(cache)
    .wait_for(cache)
)
"""

#: name -> (extra app-host lines, the flooding services)
CASES = {
    "50 MiB without a newline": (
        'builder.add_python_app("blob", {svc}, "flood.py", {marks}, "blob", "50")\n',
        ["blob"],
    ),
    "one 50 MiB line, then its newline": (
        'builder.add_python_app("blob", {svc}, "flood.py", {marks}, "blob", "50", "end")\n',
        ["blob"],
    ),
    "many long lines (200 x 256 KiB, 2000 x 16 KiB + 1)": (
        'builder.add_python_app("long", {svc}, "flood.py", {marks}, "lines", "200", "262144")\n'
        'builder.add_python_app("edge", {svc}, "flood.py", {marks}, "lines", "2000", "16385")\n',
        ["long", "edge"],
    ),
}


def _http_ok(port: int) -> str | None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", "/")
        resp = conn.getresponse()
        return None if resp.status == 200 else f"HTTP {resp.status}"
    except OSError as exc:
        return f"{type(exc).__name__}: {exc}"
    finally:
        conn.close()


def _longest_line(path: Path) -> int:
    longest = current = 0
    try:
        with open(path, "rb") as fh:
            while chunk := fh.read(1 << 20):
                parts = chunk.split(b"\n")
                for i, part in enumerate(parts):
                    current += len(part)
                    if i < len(parts) - 1:
                        longest, current = max(longest, current), 0
    except OSError:
        return -1
    return max(longest, current)


@pytest.mark.parametrize(
    "name", list(CASES), ids=["blob-50MiB-unterminated", "blob-50MiB-line", "long-lines"]
)
def test_huge_output_keeps_memory_bounded(
    name: str, tmp_path: Path, fault_env: str, faults: FaultLog
) -> None:
    extra, floods = CASES[name]
    with faults.case(FAMILY, name) as case:
        svc = write_services(tmp_path / "svc")
        marks = svc / "marks"
        app = app_file(tmp_path / "loud", HEAD + extra, svc=str(svc), marks=str(marks))
        started = run_cli("start", app, "--json", "--timeout", "30", timeout=60)
        assert started.code == 0, f"apphost start: {started.brief()}"
        host = int(json.loads(started.stdout)["pid"])

        samples: list[int] = []
        done = threading.Event()

        def sample() -> None:  # through the stop too, when a pending line meets its EOF
            while not done.is_set():
                rss = vm_kib(host, "VmHWM")
                if rss is not None:
                    samples.append(rss)
                time.sleep(0.01)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        t0 = time.monotonic()
        try:
            finished = wait_for(lambda: all((marks / f"{f}.done").exists() for f in floods), 40)
            case.note(
                f"floods {'done' if finished else 'NOT done'} in {time.monotonic() - t0:.1f} s"
            )
            time.sleep(0.5)
            running_peak = vm_kib(host, "VmHWM") or 0
            problems = _serving(app, host)
            stopped = run_cli("stop", app, "--timeout", "20", timeout=40)
        finally:
            done.set()
            sampler.join(2)
        peak = max([running_peak, *samples])
        case.note(
            f"app host peak RSS {running_peak // 1024} MiB while running, "
            f"{peak // 1024} MiB through its stop"
        )
        if not finished:
            problems.append("the services could not write their output within 40 s")
        if peak > RSS_LIMIT_MIB * 1024:
            problems.append(f"app host peak RSS {peak // 1024} MiB > {RSS_LIMIT_MIB} MiB")
        case.note(f"stop took {stopped.seconds:.1f} s")
        if stopped.code != 0:
            problems.append(f"apphost stop: {stopped.brief()}")
        left = wait_gone(fault_env, tmp_path, timeout=5)
        if left:
            problems.append(f"left running after stop: {sorted(left.items())}")
        log = log_file(Path(os.environ["APPHOST_STATE_DIR"]), app)
        case.note(f"longest log line {_longest_line(log)} bytes")
        assert not problems, "; ".join(problems)


def _serving(app: Path, host: int) -> list[str]:
    """Problems of the running app: gone from status, a resource not running, HTTP or Redis
    not answering."""
    problems = []
    listed = status_of(app)
    resources = {r["name"]: r for r in listed[0]["resources"]} if listed else {}
    if not listed or listed[0].get("pid") != host:
        problems.append("the app host no longer shows in apphost status")
    else:
        not_running = [
            f"{n} {r.get('state')}" for n, r in resources.items() if r.get("state") != "Running"
        ]
        if not_running:
            problems.append(f"not running any more: {not_running}")
        why = _http_ok(endpoint_port(resources["web"]))
        if why:
            problems.append(f"the web service does not answer: {why}")
        why = redis_ping(endpoint_port(resources["cache"]), redis_password(resources["cache"]))
        if why:
            problems.append(f"Redis does not answer: {why}")
    return problems
