"""A run that tells the truth and stays bounded (issue 11): a service that exits non-zero during
start-up fails the start, a health check that never passes says why, SIGTERM is never held up
by a reader of the output, and output without newlines cannot grow the app host's memory."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from apphost_sdk.errors import ResourceStartError
from apphost_sdk.masking import SecretMasker
from apphost_sdk.model.annotations import HealthCheckAnnotation
from apphost_sdk.orchestration import console
from apphost_sdk.orchestration.app import DistributedApplication
from apphost_sdk.orchestration.console import Reporter
from apphost_sdk.orchestration.states import Health, State
from apphost_sdk.runtimes.docker_runtime import _lines
from apphost_sdk.runtimes.lines import MAX_LINE_BYTES, LineSplitter, split_lines
from apphost_sdk.state import app_identity

from .helpers import (
    apphost_cli,
    children_of,
    pid_alive,
    read_json_file,
    start_fails_fast,
    wait_until,
    write,
)

#: Prints two lines, sleeps ``argv[2]`` seconds, then exits with ``argv[1]``.
EXIT_LATER = textwrap.dedent(
    """
    import sys, time
    print("loading the configuration", flush=True)
    print("fatal: no such table: orders", file=sys.stderr, flush=True)
    time.sleep(float(sys.argv[2]))
    sys.exit(int(sys.argv[1]))
    """
)

#: An HTTP server on $PORT that answers every GET with ``argv[1]`` (a status code).
ANSWER_WITH = textwrap.dedent(
    """
    import http.server, os, sys
    code = int(sys.argv[1])
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(code)
            self.send_header("Content-Length", "0")
            self.end_headers()
        def log_message(self, *args):
            pass
    http.server.HTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
    """
)

#: Accepts connections on $PORT (the kernel's backlog does) and never answers.
SILENT = textwrap.dedent(
    """
    import os, socket, time
    s = socket.socket()
    s.bind(("127.0.0.1", int(os.environ["PORT"])))
    s.listen(16)
    time.sleep(120)
    """
)

#: Writes its pid to ``argv[1]``, then prints numbered lines as fast as it can.
CHATTER = textwrap.dedent(
    """
    import os, sys
    with open(sys.argv[1] + ".tmp", "w") as fh:
        fh.write(str(os.getpid()))
    os.replace(sys.argv[1] + ".tmp", sys.argv[1])
    i = 0
    while True:
        i += 1
        print("line", i, "of a service that never stops talking", flush=True)
    """
)

#: Writes ``argv[1]`` MB of "x" without a newline (1 MB at a time), then "DONE", then sleeps.
BLOB = textwrap.dedent(
    """
    import sys, time
    chunk = "x" * 1_000_000
    for _ in range(int(sys.argv[1])):
        sys.stdout.write(chunk)
        sys.stdout.flush()
    sys.stdout.write("\\nDONE\\n")
    sys.stdout.flush()
    time.sleep(120)
    """
)

#: Prints ``argv[1]`` lines of 100 characters, then "DONE", then sleeps.
LINES = textwrap.dedent(
    """
    import sys, time
    for i in range(int(sys.argv[1])):
        print(f"{i:08d}" + "y" * 92)
    print("DONE", flush=True)
    time.sleep(120)
    """
)


@pytest.fixture
def scripts(svc: Path) -> Path:
    for name, text in (
        ("exit_later.py", EXIT_LATER),
        ("answer_with.py", ANSWER_WITH),
        ("silent.py", SILENT),
        ("chatter.py", CHATTER),
        ("blob.py", BLOB),
        ("lines.py", LINES),
    ):
        write(svc / name, text)
    return svc


def app_host_file(folder: Path, body: str) -> Path:
    """An app host file: ``body`` adds resources to ``builder``; it ends with ``run()``."""
    text = (
        "from apphost_sdk import DistributedApplication\n"
        "builder = DistributedApplication.create_builder()\n"
        f"{textwrap.dedent(body)}\n"
        "builder.build().run()\n"
    )
    return write(folder / "apphost.py", text)


def descendants(pid: int) -> list[int]:
    out: list[int] = []
    todo = [pid]
    while todo:
        for child in children_of(todo.pop()):
            out.append(child)
            todo.append(child)
    return out


def vm_kib(pid: int, field: str) -> int:
    """A ``/proc/<pid>/status`` memory figure (VmRSS, VmHWM) in KiB."""
    text = Path(f"/proc/{pid}/status").read_text()
    match = re.search(rf"^{field}:\s+(\d+) kB", text, re.M)
    assert match, text
    return int(match.group(1))


@pytest.fixture
def foreground() -> Iterator[list[subprocess.Popen[bytes]]]:
    """App hosts run in the foreground by a test; killed (with their children) at the end."""
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


# -- 1. a service that exits non-zero during start-up fails the start -----------------------


@pytest.mark.parametrize("after", ["0", "0.3"], ids=["at-once", "after-0.3s"])
def test_a_worker_that_exits_non_zero_at_start_up_fails_the_start(
    scripts: Path, apps: list[DistributedApplication], after: str
) -> None:
    """No endpoint, no health check: it must outlive a grace period before counting as
    started, so its exit 3 is seen before start() returns."""
    b = DistributedApplication.create_builder([])
    b.add_python_app("worker", str(scripts), "exit_later.py", "3", after)
    b.add_python_app("job", str(scripts), "exit_later.py", "0", "0")  # exit 0: Finished, fine
    app = b.build()
    apps.append(app)
    with pytest.raises(ResourceStartError) as info:
        app.start(timeout=20, quiet=True)
    message = str(info.value)
    assert message.startswith("worker exited with code 3\n"), message
    assert "loading the configuration" in message
    assert "fatal: no such table: orders" in message
    assert "job" not in message
    status = read_json_file(app.state.status_file)
    assert status["phase"] == "failed" and "worker exited with code 3" in status["error"]


def test_a_worker_that_keeps_running_is_started_after_the_grace_period(
    scripts: Path, apps: list[DistributedApplication]
) -> None:
    b = DistributedApplication.create_builder([])
    b.add_python_app("worker", str(scripts), "exit_later.py", "3", "30")
    b.add_python_app("job", str(scripts), "exit_later.py", "0", "0")
    app = b.build()
    apps.append(app)
    app.start(timeout=20, quiet=True)
    snaps = {s.name: s for s in app.snapshots()}
    assert (snaps["worker"].state, snaps["worker"].health) == (State.RUNNING, Health.HEALTHY)
    assert (snaps["job"].state, snaps["job"].exit_code) == (State.FINISHED, 0)


def test_a_web_app_that_exits_non_zero_before_it_is_healthy_fails_the_start(
    scripts: Path, apps: list[DistributedApplication]
) -> None:
    b = DistributedApplication.create_builder([])
    b.add_python_app("web", str(scripts), "exit_later.py", "3", "0.3").with_http_endpoint()
    _app, message = start_fails_fast(b, apps)
    assert message.startswith("web exited with code 3\n"), message
    assert "fatal: no such table: orders" in message


@pytest.mark.parametrize("endpoint", [False, True], ids=["worker", "web"])
def test_apphost_start_fails_with_the_exit_code_and_last_lines(
    tmp_path: Path, scripts: Path, endpoint: bool
) -> None:
    body = f"builder.add_python_app('svc', {str(scripts)!r}, 'exit_later.py', '3', '0.3')"
    if endpoint:
        body += ".with_http_endpoint()"
    path = app_host_file(tmp_path / "shop", body)
    try:
        done = apphost_cli("start", str(path), "--json")
        assert done.returncode == 1, (done.stdout, done.stderr)
        assert "svc exited with code 3" in done.stderr
        assert "fatal: no such table: orders" in done.stderr
        assert done.stdout == ""
    finally:
        apphost_cli("stop", str(path))


# -- 2. a health check that never passes says why -------------------------------------------


def test_a_health_check_that_never_passes_says_why(
    scripts: Path, apps: list[DistributedApplication], capsys: pytest.CaptureFixture[str]
) -> None:
    b = DistributedApplication.create_builder([])
    (
        b.add_python_app("notfound", str(scripts), "answer_with.py", "404")
        .with_http_endpoint()
        .with_http_health_check("/health")
    )
    b.add_python_app("deaf", str(scripts), "exit_later.py", "0", "60").with_http_endpoint()
    (
        b.add_python_app("silent", str(scripts), "silent.py")
        .with_http_endpoint()
        .with_http_health_check("/health")
    )
    probed = b.add_python_app("probed", str(scripts), "answer_with.py", "200").with_http_endpoint()
    probed.add_annotation(HealthCheckAnnotation("probe", "http", probe=lambda ctx: False))
    app = b.build()
    apps.append(app)
    with pytest.raises(ResourceStartError) as info:
        app.start(timeout=4)
    message = str(info.value)
    assert message.startswith("not ready after 4 s: "), message
    assert "notfound (GET /health answered 404)" in message
    assert re.search(r"deaf \(connection refused on port \d+\)", message), message
    assert "silent (GET /health timed out after 2 s)" in message
    assert "probed (its health probe failed)" in message
    # The console said so beside the health while it waited.
    out = capsys.readouterr().out
    assert "notfound: Running (Unknown: GET /health answered 404)" in out
    assert "probed: Running (Unknown: its health probe failed)" in out


def test_status_json_and_the_console_show_why_a_resource_is_not_healthy(
    tmp_path: Path, scripts: Path, isolated_env: Path, foreground: list[subprocess.Popen[bytes]]
) -> None:
    path = app_host_file(
        tmp_path / "shop",
        f"""
        (
            builder.add_python_app("web", {str(scripts)!r}, "answer_with.py", "404")
            .with_http_endpoint()
            .with_http_health_check("/health")
        )
        """,
    )
    out = tmp_path / "out.txt"
    with open(out, "wb") as fh:
        proc = subprocess.Popen(
            [sys.executable, str(path)], stdout=fh, stderr=subprocess.STDOUT, cwd=path.parent
        )
    foreground.append(proc)

    def reason() -> Any:
        listed = json.loads(apphost_cli("status", str(path), "--json").stdout or "[]")
        for status in listed:
            for r in status["resources"]:
                if r["name"] == "web" and r.get("healthReason"):
                    return r
        return None

    web = wait_until(reason, timeout=20, what="a health reason in `apphost status --json`")
    assert (web["state"], web["health"]) == ("Running", "Unknown")
    assert web["healthReason"] == "GET /health answered 404"
    raw = read_json_file(isolated_env / app_identity(path)[1] / "status.json")
    assert raw["resources"][0]["healthReason"] == "GET /health answered 404"
    wait_until(lambda: "web: Running (Unknown: GET /health answered 404)" in out.read_text())
    proc.send_signal(signal.SIGTERM)
    proc.wait(20)


# -- 3. SIGTERM is never held up by a reader of the output ----------------------------------


def test_sigterm_stops_the_run_while_nobody_reads_its_output(
    tmp_path: Path, scripts: Path, foreground: list[subprocess.Popen[bytes]]
) -> None:
    pid_file = tmp_path / "chatter.pid"
    path = app_host_file(
        tmp_path / "shop",
        f"builder.add_python_app('chatter', {str(scripts)!r}, 'chatter.py', {str(pid_file)!r})",
    )
    with open(tmp_path / "stderr.txt", "wb") as err:
        # Its stdout is a pipe nobody reads: it is full within milliseconds.
        proc = subprocess.Popen(
            [sys.executable, str(path)], stdout=subprocess.PIPE, stderr=err, cwd=path.parent
        )
    foreground.append(proc)
    wait_until(lambda: pid_file.exists(), timeout=20, what="the chatty service to start")
    time.sleep(1.5)  # the pipe is full; the service keeps talking
    family = descendants(proc.pid)
    assert int(pid_file.read_text()) in family
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        code = proc.wait(6)
    except subprocess.TimeoutExpired:
        pytest.fail("the app host ignored SIGTERM while its output pipe was full")
    assert code == 0, (tmp_path / "stderr.txt").read_text()
    assert time.monotonic() - t0 < 6
    wait_until(
        lambda: not [p for p in family if pid_alive(p)], timeout=5, what="every child to exit"
    )


def test_console_output_to_a_reader_that_never_reads_is_dropped_and_counted() -> None:
    read_end, write_end = os.pipe()
    stream = os.fdopen(write_end, "w")
    reporter = Reporter(SecretMasker(), stream)
    reporter.set_resources(["api"])

    def chatter() -> None:
        for i in range(50_000):
            reporter.log("api", "stdout", f"line {i} " + "z" * 100)

    writer = threading.Thread(target=chatter, daemon=True)
    writer.start()
    writer.join(5)
    try:
        assert not writer.is_alive(), "logging waited on the reader"
        assert reporter.dropped > 0
        t0 = time.monotonic()
        reporter.close()
        assert time.monotonic() - t0 < console.FLUSH_SECONDS + 1
    finally:
        os.close(read_end)  # a writer still blocked gets EPIPE
        writer.join(5)
        with contextlib.suppress(OSError):
            stream.close()


def test_dropped_lines_are_announced_where_they_were_lost() -> None:
    read_end, write_end = os.pipe()
    stream = os.fdopen(write_end, "w")
    received = bytearray()

    def drain() -> None:
        while chunk := os.read(read_end, 65536):
            received.extend(chunk)

    reader = threading.Thread(target=drain, daemon=True)
    try:
        reporter = Reporter(SecretMasker(), stream)
        for i in range(20_000):
            reporter.info(f"early {i} " + "z" * 100)
        dropped = reporter.dropped
        assert dropped > 0
        reader.start()
        wait_until(lambda: reporter.flush(0.1), timeout=10, what="the queue to drain")
        reporter.info("late line")
        reporter.close()
        stream.close()
        reader.join(10)
    finally:
        if not reader.is_alive():
            os.close(read_end)
        with contextlib.suppress(OSError):
            stream.close()
    text = received.decode()
    notices = re.findall(r"apphost  \| (\d+) lines? of output dropped: the output is read", text)
    assert sum(map(int, notices)) == dropped, notices
    assert text.rstrip("\n").endswith("apphost  | late line")
    assert text.index("early 0 ") < text.index("of output dropped") < text.index("late line")


# -- 4. bounded lines, bounded memory, rotated log -------------------------------------------


def test_lines_are_cut_at_16_kib_like_docker() -> None:
    assert MAX_LINE_BYTES == 16384
    blob = b"x" * 40_000
    expected = ["x" * 16384, "x" * 16384, "x" * (40_000 - 2 * 16384), "tail"]
    assert list(split_lines([blob[:100], blob[100:], b"\ntail"])) == expected
    assert list(_lines(iter([blob, b"\ntail"]))) == expected  # the Docker log pump's splitter
    assert list(split_lines([b"a\r\nb\n", b"\n", b"c\r"])) == ["a", "b", "", "c"]
    # a cut never splits a UTF-8 character, and a line of exactly the limit is one line
    assert list(split_lines([("é" * 5).encode()], limit=5)) == ["éé", "éé", "é"]
    assert list(split_lines([b"x" * 16384 + b"\r\n"])) == ["x" * 16384]
    splitter = LineSplitter()
    for _ in range(100):  # 10 MB without a newline: never more than one line held
        splitter.feed(b"x" * 100_000)
        assert len(splitter._buffer) <= MAX_LINE_BYTES + 1


def test_a_service_printing_50_mb_without_a_newline_keeps_the_app_host_small(
    tmp_path: Path, scripts: Path, foreground: list[subprocess.Popen[bytes]]
) -> None:
    path = app_host_file(
        tmp_path / "shop", f"builder.add_python_app('blob', {str(scripts)!r}, 'blob.py', '50')"
    )
    out = tmp_path / "out.txt"
    with open(out, "wb") as fh:
        proc = subprocess.Popen(
            [sys.executable, str(path)], stdout=fh, stderr=subprocess.STDOUT, cwd=path.parent
        )
    foreground.append(proc)

    def done() -> bool:
        assert proc.poll() is None, out.read_text()[-2000:]
        with open(out, "rb") as fh:
            fh.seek(max(0, out.stat().st_size - 200))
            return b"blob     | DONE" in fh.read()

    wait_until(done, timeout=90, interval=0.2, what="the service's 50 MB to pass through")
    peak = vm_kib(proc.pid, "VmHWM")
    assert peak < 120 * 1024, f"the app host's peak RSS was {peak // 1024} MB"
    pieces = [
        ln.split("| ", 1)[1] for ln in out.read_text().splitlines() if ln.startswith("blob     | x")
    ]
    # Most pieces pass; on a loaded machine the bounded queue may drop some (by design).
    assert len(pieces) > 100
    assert all(p == "x" * 16384 for p in pieces[:-1])
    assert set(pieces[-1]) == {"x"} and len(pieces[-1]) <= 16384
    proc.send_signal(signal.SIGTERM)
    proc.wait(20)


def test_the_background_app_hosts_log_is_rotated(
    tmp_path: Path, scripts: Path, isolated_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("APPHOST_LOG_MAX_BYTES", str(256 * 1024))
    path = app_host_file(
        tmp_path / "shop", f"builder.add_python_app('talk', {str(scripts)!r}, 'lines.py', '20000')"
    )
    log = isolated_env / app_identity(path)[1] / "apphost.log"
    write(log.with_name("apphost.log.2"), "a generation of an earlier run\n")
    try:
        started = apphost_cli("start", str(path), "--json")
        assert started.returncode == 0, started.stderr
        generations = [log, *console.rotated_logs(log, console.LOG_GENERATIONS + 1)]

        def texts() -> list[str]:
            return [p.read_text() if p.exists() else "" for p in generations]

        # Wait for three rotations, not for the service's last line: under load the console
        # may drop lines (and say how many), which keeps a slow reader from blocking it.
        wait_until(
            lambda: all(p.exists() for p in generations[:4]), timeout=60, what="3 generations"
        )
        sizes = [p.stat().st_size if p.exists() else None for p in generations]
        assert None not in sizes[:4] and sizes[4] is None, sizes  # .1 to .3, no .4
        assert all(size <= 256 * 1024 + 300 * 1024 for size in sizes[:4]), sizes
        assert "a generation of an earlier run" not in "".join(texts())
        assert "talk     | 0001" in "".join(texts())
    finally:
        stopped = apphost_cli("stop", str(path))
        assert stopped.returncode == 0, stopped.stderr
