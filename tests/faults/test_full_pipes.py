"""Family 3: the app host's stdout/stderr is a pipe nobody reads (or a pipe whose reader went
away) while a service prints without end. SIGTERM (or SIGINT) must still stop it within 10 s,
and every child must be gone."""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import termios
import time
from pathlib import Path
from typing import IO

import pytest

from .conftest import (
    FaultLog,
    app_file,
    cli_argv,
    read_json,
    signal_name,
    status_file,
    wait_for,
    wait_gone,
    write_services,
)

FAMILY = "full pipes"

APP = """
cache = builder.add_redis("cache")
builder.add_python_app("chatter", {svc}, "chatter.py").wait_for(cache)
builder.add_python_app("worker", {svc}, "idle.py", {marks}).with_reference(cache).wait_for(cache)
"""

#: (how the app host runs, where stderr goes, the signal, whether the reader goes away)
CASES = [
    ("python", "same pipe", signal.SIGTERM, False),
    ("apphost run", "own pipe", signal.SIGTERM, False),
    ("python", "file", signal.SIGINT, False),
    ("python", "same pipe", signal.SIGTERM, True),
]


def _queued(stream: IO[bytes]) -> int:
    """Bytes waiting in the pipe behind ``stream`` (FIONREAD)."""
    buf = fcntl.ioctl(stream.fileno(), termios.FIONREAD, b"\0\0\0\0")
    return int.from_bytes(buf, sys.byteorder)


def _wait_stuck(stream: IO[bytes], timeout: float) -> int:
    """Wait until the pipe holds at least 32 KiB and stops filling for 0.5 s (the app host
    writes no more: its writes block, or it gave up on them); return what it holds."""
    deadline = time.monotonic() + timeout
    last, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        now = _queued(stream)
        if now != last:
            last, since = now, time.monotonic()
        elif now >= 32768 and time.monotonic() - since >= 0.5:
            break
        time.sleep(0.05)
    return last


@pytest.mark.parametrize(
    ("how", "stderr", "sig", "reader_gone"),
    CASES,
    ids=[
        f"{h.replace(' ', '-')}-stderr-{e.replace(' ', '-')}-{s.name}" + ("-reader-gone" * g)
        for h, e, s, g in CASES
    ],
)
def test_stop_with_an_unread_output_pipe(
    how: str,
    stderr: str,
    sig: signal.Signals,
    reader_gone: bool,
    tmp_path: Path,
    fault_env: str,
    faults: FaultLog,
) -> None:
    reader = "a closed reader" if reader_gone else "nobody reading"
    name = f"{signal_name(sig)}, {how}, stdout a pipe with {reader}, stderr to {stderr}"
    with faults.case(FAMILY, name) as case:
        svc = write_services(tmp_path / "svc")
        app = app_file(tmp_path / "noisy", APP, svc=str(svc), marks=str(svc / "marks"))
        argv = [sys.executable, str(app)] if how == "python" else cli_argv("run", app)
        err_target: int | IO[bytes] = subprocess.STDOUT
        err_file = None
        if stderr == "own pipe":
            err_target = subprocess.PIPE
        elif stderr == "file":
            err_file = open(tmp_path / "stderr.log", "wb")  # noqa: SIM115 - closed below
            err_target = err_file
        proc = subprocess.Popen(
            argv,
            cwd=app.parent,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=err_target,
            start_new_session=True,
        )
        assert proc.stdout is not None
        state = status_file(Path(os.environ["APPHOST_STATE_DIR"]), app)
        try:
            # Signal a running app (as long as a full pipe lets it get there: 8 s at most).
            wait_for(lambda: (read_json(state) or {}).get("phase") == "ready", 8)
            if reader_gone:
                proc.stdout.close()
            else:
                queued = _wait_stuck(proc.stdout, 8)
                case.note(f"{queued} bytes stuck in the pipe")
            time.sleep(0.3)
            phase = (read_json(state) or {}).get("phase", "no status yet")
            case.note(f"phase when signalled: {phase}")
            t0 = time.monotonic()
            proc.send_signal(sig)
            try:
                code: int | None = proc.wait(10)
            except subprocess.TimeoutExpired:
                code = None
            case.note(f"exit {code} after {time.monotonic() - t0:.1f} s")
            if code is None:
                try:
                    wchan = Path(f"/proc/{proc.pid}/wchan").read_text()
                except OSError:
                    wchan = "?"
                proc.kill()
                proc.wait()
                left = wait_gone(fault_env, tmp_path, timeout=5)
                raise AssertionError(
                    f"the app host did not exit within 10 s of {signal_name(sig)} "
                    f"(blocked in {wchan or '?'}; phase {phase}); after SIGKILL "
                    f"{'nothing' if not left else sorted(left.values())} was left"
                )
            left = wait_gone(fault_env, tmp_path, timeout=5)
            assert not left, f"still running after the app host exited: {sorted(left.items())}"
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            for stream in (proc.stdout, proc.stderr, err_file):
                if stream is not None:
                    stream.close()
