"""Small building blocks of the core tests: app-host files, service scripts, polling."""

from __future__ import annotations

import json
import runpy
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from apphost_sdk.errors import ResourceStartError
from apphost_sdk.model.builder import DistributedApplicationBuilder
from apphost_sdk.orchestration.app import DistributedApplication

T = TypeVar("T")

#: A service that writes its pid, start time and environment to ``argv[1]`` (atomically), then
#: optionally stays alive ``argv[2]`` seconds. With ``PING_REDIS`` it also pings the referenced
#: Redis through ``{PING_REDIS}_URI`` and through the connection string, recording the result.
DUMP_ENV = textwrap.dedent(
    """
    import json, os, sys, time
    started = time.time()
    out = sys.argv[1]
    record = {"pid": os.getpid(), "started": started, "env": dict(os.environ)}
    prefix = os.environ.get("PING_REDIS")
    if prefix:
        import redis
        try:
            record["uri_ping"] = bool(redis.Redis.from_url(os.environ[prefix + "_URI"]).ping())
        except Exception as exc:
            record["uri_ping"] = repr(exc)
        try:
            cs = os.environ["ConnectionStrings__" + os.environ["PING_NAME"]]
            hostport, _, rest = cs.partition(",")
            host, _, port = hostport.rpartition(":")
            pw = rest.partition("password=")[2] or None
            record["cs_ping"] = bool(redis.Redis(host=host, port=int(port), password=pw).ping())
        except Exception as exc:
            record["cs_ping"] = repr(exc)
    tmp = out + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(record, fh)
    os.replace(tmp, out)
    if len(sys.argv) > 2:
        time.sleep(float(sys.argv[2]))
    """
)

#: The start of a service script that answers HTTP (shared with the fault tests):
#: ``http_server(body)`` is an ``HTTPServer`` on 127.0.0.1:$PORT that answers every GET with
#: 200 and ``body``, and logs nothing.
HTTP_SERVER = textwrap.dedent(
    """
    import http.server, os
    def http_server(body):
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            def log_message(self, *args):
                pass
        return http.server.HTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler)
    """
)

#: An HTTP service on $PORT. ``argv[1]``: a folder for its marker files; ``argv[2]``: seconds to
#: sleep before listening. Writes ``{name}.start`` (start time), ``{name}.listen`` (when it
#: listens) and, on SIGTERM, ``{name}.stop`` (time of the signal), then exits 0.
HTTP_SERVICE = HTTP_SERVER + textwrap.dedent(
    """
    import json, os, signal, sys, time
    folder = sys.argv[1]
    name = os.environ["OTEL_SERVICE_NAME"]
    def mark(kind, extra=None):
        path = os.path.join(folder, name + "." + kind)
        with open(path + ".tmp", "w") as fh:
            json.dump({"t": time.time(), "pid": os.getpid(), **(extra or {})}, fh)
        os.replace(path + ".tmp", path)
    mark("start")
    def on_term(signum, frame):
        extra = {}
        prefix = os.environ.get("PING_REDIS")
        if prefix:
            import redis
            try:
                extra["ping"] = bool(redis.Redis.from_url(os.environ[prefix + "_URI"]).ping())
            except Exception as exc:
                extra["ping"] = repr(exc)
        mark("stop", extra)
        os._exit(0)
    signal.signal(signal.SIGTERM, on_term)
    time.sleep(float(sys.argv[2]) if len(sys.argv) > 2 else 0)
    server = http_server(json.dumps({"name": name}).encode())
    mark("listen")
    print("listening on", os.environ["PORT"], flush=True)
    server.serve_forever()
    """
)

#: Prints a few lines and exits with ``argv[1]``.
EXIT_WITH = textwrap.dedent(
    """
    import sys
    print("working on it")
    print("boom: the migration failed", file=sys.stderr)
    sys.exit(int(sys.argv[1]))
    """
)

#: Ignores SIGTERM, writes its pid to ``argv[1]`` and sleeps.
IGNORE_TERM = textwrap.dedent(
    """
    import os, signal, sys, time
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    with open(sys.argv[1] + ".tmp", "w") as fh:
        fh.write(str(os.getpid()))
    os.replace(sys.argv[1] + ".tmp", sys.argv[1])
    while True:
        time.sleep(1)
    """
)

APPHOST_HEADER = textwrap.dedent(
    """
    from datetime import timedelta
    from apphost_sdk import DistributedApplication


    def make_builder(args):
        return DistributedApplication.create_builder(args)
    """
)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def services(folder: Path) -> Path:
    """Write every service script into ``folder`` and return it."""
    write(folder / "dump.py", DUMP_ENV)
    write(folder / "web.py", HTTP_SERVICE)
    write(folder / "exit_with.py", EXIT_WITH)
    write(folder / "ignore_term.py", IGNORE_TERM)
    return folder


def apphost_file(folder: Path, body: str = "") -> Path:
    """An ``apphost.py`` in ``folder`` with ``make_builder(args)`` (plus ``body``)."""
    return write(folder / "apphost.py", APPHOST_HEADER + textwrap.dedent(body))


def builder_from(
    path: Path, args: list[str] | None = None, function: str = "make_builder"
) -> DistributedApplicationBuilder:
    """Run a function of an app-host file (``make_builder`` unless told) so that the file is
    the caller of ``create_builder`` (its folder becomes ``app_host_directory``)."""
    namespace = runpy.run_path(str(path))
    builder = namespace[function]([] if args is None else args)
    assert isinstance(builder, DistributedApplicationBuilder)
    return builder


def start_fails_fast(
    builder: DistributedApplicationBuilder, apps: list[DistributedApplication]
) -> tuple[DistributedApplication, str]:
    """Build ``builder`` and start the app, which must fail with ``ResourceStartError`` within
    5 s (well before the 20 s start timeout); the app (added to ``apps`` for clean-up) and the
    error's message."""
    app = builder.build()
    apps.append(app)
    t0 = time.monotonic()
    with pytest.raises(ResourceStartError) as info:
        app.start(timeout=20, quiet=True)
    assert time.monotonic() - t0 < 5
    return app, str(info.value)


def wait_until(
    predicate: Callable[[], T], timeout: float = 10.0, interval: float = 0.02, what: str = ""
) -> T:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or predicate}")
        time.sleep(interval)


def read_json_file(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def wait_json(path: Path, timeout: float = 10.0) -> Any:
    return wait_until(lambda: read_json_file(path), timeout, what=str(path))


def pid_alive(pid: int) -> bool:
    """True when ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def children_of(pid: int) -> list[int]:
    """Direct children of ``pid`` (from /proc)."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(entry.name))
    return out


def apphost_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``python -m apphost_sdk ARGS`` as a user runs it, output captured."""
    return subprocess.run(
        [sys.executable, "-m", "apphost_sdk", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def start_in_background(app: Any, timeout: float) -> tuple[threading.Thread, list[BaseException]]:
    """``app.start(timeout, quiet=True)`` on a thread (for commands sent while it starts); the
    list receives what it raised."""
    errors: list[BaseException] = []

    def start() -> None:
        try:
            app.start(timeout=timeout, quiet=True)
        except BaseException as exc:
            errors.append(exc)

    starter = threading.Thread(target=start)
    starter.start()
    return starter, errors
