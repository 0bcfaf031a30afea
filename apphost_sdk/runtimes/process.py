"""The ``process`` runtime: a container resource run as a local child process instead.

Used when no container engine is reachable (or with ``APPHOST_CONTAINER_RUNTIME=process``), for
resource types that provide a recipe (Redis: its server binary with a generated config file). The
runtime allocates the port, lays out a private folder per resource and run (0700, removed at
stop) and a folder per mount, writes the recipe's private files with mode 0600, and starts the
process; it knows nothing of what the process is.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

from ..errors import ResourceStartError
from ..files import write_private
from ..process_identity import process_alive, process_start_time
from .base import ContainerHandle, LineSink, ProcessSpec
from .health import free_port, port_is_free
from .subprocesses import ManagedProcess, spawn

#: How long a fresh process may take to say it is ready before it counts as started anyway.
READY_WAIT_SECONDS = 0.3


class ProcessHandle(ContainerHandle):
    """A running child process standing in for a container."""

    def __init__(
        self, spec: ProcessSpec, process: ManagedProcess, port: int, scratch: Path, program: str
    ) -> None:
        self.resource_name = spec.resource_name
        self.host = "127.0.0.1"
        self.host_ports = {spec.endpoint: port}
        self.process = process
        self._scratch = scratch
        self._program = program

    def exit_code(self) -> int | None:
        return self.process.exit_code()

    def stop(self, grace_seconds: float = 10.0) -> None:
        self.process.stop(grace_seconds)
        shutil.rmtree(self._scratch, ignore_errors=True)
        run_dir = self._scratch.parent
        if {p.name for p in run_dir.glob("*")} <= {"owner.json"}:  # the last one out
            shutil.rmtree(run_dir, ignore_errors=True)

    def describe(self) -> str:
        return f"{self._program} pid {self.process.pid}"


class ProcessRuntime:
    """Runs resources that have a process recipe as local child processes."""

    name = "process"

    def __init__(self) -> None:
        self._swept: set[Path] = set()

    def describe(self) -> str:
        return "local processes"

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

    def _run_dir(self, spec: ProcessSpec) -> Path:
        run_dir = spec.state_dir / "run" / spec.session_id
        self._sweep(run_dir.parent, spec.session_id)
        if not run_dir.is_dir():
            run_dir.mkdir(parents=True, exist_ok=True)
            owner = {"pid": os.getpid(), "start": process_start_time(os.getpid())}
            write_private(run_dir / "owner.json", json.dumps(owner))
        return run_dir

    def _mount_dirs(self, spec: ProcessSpec) -> dict[str, Path]:
        """A folder of this machine for each mount: a bind mount's source, or a per-app folder
        under the state directory for a volume (kept across runs, as a volume is)."""
        dirs: dict[str, Path] = {}
        for m in spec.mounts:
            if m.kind == "bind":
                dirs[m.target] = Path(m.source or "")
            else:
                dirs[m.target] = spec.state_dir / "volumes" / (m.source or spec.resource_name)
            dirs[m.target].mkdir(parents=True, exist_ok=True)
        return dirs

    def start(self, spec: ProcessSpec, on_line: LineSink) -> ContainerHandle:
        """Start the process; a dynamic port taken between allocation and bind is retried."""
        scratch = self._run_dir(spec) / spec.resource_name
        scratch.mkdir(mode=0o700, parents=True, exist_ok=True)
        mounts = self._mount_dirs(spec)
        attempts = 1 if spec.host_port else 3
        last_lines: list[str] = []
        program = "process"
        for _ in range(attempts):
            if spec.host_port is not None:
                if not port_is_free(spec.host_port):
                    raise ResourceStartError(
                        f"{spec.resource_name}: host port {spec.host_port} is already in use on "
                        "127.0.0.1; stop what uses it or choose another port (with_host_port() "
                        "or the endpoint's port=)"
                    )
                port = spec.host_port
            else:
                port = free_port()
            argv, cwd, environment, files = spec.recipe(port, spec.bind_addresses, scratch, mounts)
            program = Path(argv[0]).name
            for path, text in files.items():
                write_private(path, text)
            last_lines = []

            def sink(stream: str, line: str, _buf: list[str] = last_lines) -> None:
                _buf.append(line)
                on_line(stream, line)

            process = spawn(list(argv), cwd, {**os.environ, **environment}, sink)
            deadline = time.monotonic() + READY_WAIT_SECONDS
            while time.monotonic() < deadline and process.exit_code() is None:
                if spec.ready_marker and any(spec.ready_marker in ln for ln in last_lines):
                    break
                time.sleep(0.01)
            if process.exit_code() is None:
                return ProcessHandle(spec, process, port, scratch, program)
            process.join_output()
            marker = spec.port_conflict_marker
            if not (marker and any(marker in ln for ln in last_lines)):
                break
        shutil.rmtree(scratch, ignore_errors=True)
        tail = "\n".join(last_lines[-10:])
        raise ResourceStartError(
            f"{spec.resource_name}: {program} exited at start-up; its last lines:\n{tail}"
        )
