"""The ``process`` runtime: a container resource run as a local child process instead.

Used when no container engine is reachable (or with ``APPHOST_CONTAINER_RUNTIME=process``), for
resource types that provide a recipe (Redis: its server binary with a generated config file). The
runtime allocates the port, lays out a private folder per resource and run (0700, removed at
stop) and a folder per mount, writes the recipe's private files with mode 0600, and starts the
process; it knows nothing of what the process is.

A process cannot outlive its app host, but a persistent resource (``with_lifetime
("persistent")``) keeps what a persistent container keeps: its folder
``{state}/volumes/_persistent/{resource}/`` (its data, unless a mount says otherwise) and its
port (``port.json`` there) stay from run to run, until ``apphost down --volumes`` removes the
state folder's ``volumes/``. Its private files (a config holding a password) are removed at
stop, as a session resource's whole folder is.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import shutil
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

from ..errors import ResourceStartError
from ..files import read_json, write_private
from ..process_identity import process_alive, process_start_time
from .base import ContainerHandle, LineSink, ProcessSpec
from .health import free_port, port_is_free
from .subprocesses import ManagedProcess, spawn

#: How long a fresh process may take to say it is ready before it counts as started anyway.
READY_WAIT_SECONDS = 0.3
#: Under a state folder's ``volumes/``: one folder per persistent resource. A volume name
#: starts with a letter or digit, so no volume's folder can be this one.
PERSISTENT_DIR = "_persistent"
PORT_FILE = "port.json"
OWNER_FILE = "owner.json"


def persistent_dir(state_dir: Path, resource_name: str) -> Path:
    """The folder a persistent resource keeps from run to run (data, port)."""
    return state_dir / "volumes" / PERSISTENT_DIR / resource_name


def _stored_port(folder: Path, endpoint: str) -> int | None:
    data = read_json(folder / PORT_FILE)
    if not isinstance(data, dict) or data.get("endpoint") != endpoint:
        return None
    port = data.get("port")
    return port if isinstance(port, int) and not isinstance(port, bool) and port > 0 else None


class ProcessHandle(ContainerHandle):
    """A running child process standing in for a container."""

    def __init__(
        self,
        spec: ProcessSpec,
        process: ManagedProcess,
        port: int,
        scratch: Path,
        program: str,
        *,
        run_dir: Path | None = None,
        private_files: Iterable[Path] = (),
    ) -> None:
        self.resource_name = spec.resource_name
        self.host = "127.0.0.1"
        self.host_ports = {spec.endpoint: port}
        self.process = process
        self.lifetime = spec.lifetime
        self._scratch = scratch
        self._run_dir = run_dir if run_dir is not None else scratch.parent
        self._private_files = tuple(private_files)
        self._program = program

    def exit_code(self) -> int | None:
        return self.process.exit_code()

    def stop(self, grace_seconds: float = 10.0) -> None:
        """Stop the process; remove its run folder, or for a persistent resource only its
        private files (its data and port stay for the next run)."""
        self.process.stop(grace_seconds)
        if self.lifetime == "persistent":
            for path in self._private_files:
                with contextlib.suppress(OSError):
                    path.unlink()
        else:
            shutil.rmtree(self._scratch, ignore_errors=True)
        run_dir = self._run_dir
        if {p.name for p in run_dir.glob("*")} <= {OWNER_FILE}:  # the last one out
            shutil.rmtree(run_dir, ignore_errors=True)

    def describe(self) -> str:
        return f"{self._program} pid {self.process.pid}"


def _owner_alive(folder: Path) -> int | None:
    """The pid of the live app host named by a run folder's ``owner.json``, else None."""
    try:
        owner = json.loads((folder / OWNER_FILE).read_text())
        pid = int(owner["pid"])
        alive = process_alive(pid, str(owner.get("start", "")))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return pid if alive else None


def state_users(state_dir: Path) -> list[int]:
    """The pids of live app hosts (other than this process) that run processes from
    ``state_dir`` (their run folders name them)."""
    runs = state_dir / "run"
    pids: set[int] = set()
    for folder in runs.iterdir() if runs.is_dir() else []:
        pid = _owner_alive(folder) if folder.is_dir() else None
        if pid is not None and pid != os.getpid():
            pids.add(pid)
    return sorted(pids)


def remove_state(state_dir: Path, include_volumes: bool) -> list[str]:
    """``apphost down`` for the process runtime: remove the run folders of app hosts that are
    gone and, with ``include_volumes``, the kept data (``volumes/``: mounts' folders, persistent
    resources' data and ports). Returns one description per removal."""
    removed: list[str] = []
    runs = state_dir / "run"
    for folder in sorted(runs.iterdir()) if runs.is_dir() else []:
        if folder.is_dir() and _owner_alive(folder) is None:
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(f"run folder {folder}")
    volumes = state_dir / "volumes"
    if include_volumes and volumes.is_dir():
        shutil.rmtree(volumes, ignore_errors=True)
        removed.append(f"process data {volumes}")
    return removed


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
            if _owner_alive(folder) is None:
                shutil.rmtree(folder, ignore_errors=True)

    def _run_dir(self, spec: ProcessSpec) -> Path:
        run_dir = spec.state_dir / "run" / spec.session_id
        self._sweep(run_dir.parent, spec.session_id)
        if not run_dir.is_dir():
            run_dir.mkdir(parents=True, exist_ok=True)
            owner = {"pid": os.getpid(), "start": process_start_time(os.getpid())}
            write_private(run_dir / OWNER_FILE, json.dumps(owner))
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
        """Start the process; a dynamic port taken between allocation and bind is retried.

        A persistent resource gets the port it had in its last run when that is still free
        (else a new one, said in its log), and its kept folder as its private folder.
        """
        # The run folder names this app host as a user of the state folder, persistent or not.
        run_dir = self._run_dir(spec)
        persistent = spec.lifetime == "persistent"
        if persistent:
            scratch = persistent_dir(spec.state_dir, spec.resource_name)
            scratch.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(scratch, 0o700)
            stored = _stored_port(scratch, spec.endpoint)
        else:
            scratch = run_dir / spec.resource_name
            scratch.mkdir(mode=0o700, parents=True, exist_ok=True)
            stored = None
        mounts = self._mount_dirs(spec)
        attempts = 1 if spec.host_port else 3
        last_lines: collections.deque[str] = collections.deque(maxlen=50)
        program = "process"
        moved_from: int | None = None
        files: Mapping[Path, str] = {}
        for attempt in range(attempts):
            if spec.host_port is not None:
                if not port_is_free(spec.host_port):
                    raise ResourceStartError(
                        f"{spec.resource_name}: host port {spec.host_port} is already in use on "
                        "127.0.0.1; stop what uses it or choose another port (with_host_port() "
                        "or the endpoint's port=)"
                    )
                port = spec.host_port
            elif stored is not None and attempt == 0 and port_is_free(stored):
                port = stored
            else:
                if stored is not None and moved_from is None:
                    moved_from = stored
                port = free_port()
            argv, cwd, environment, files = spec.recipe(port, spec.bind_addresses, scratch, mounts)
            program = Path(argv[0]).name
            for path, text in files.items():
                write_private(path, text)
            last_lines = collections.deque(maxlen=50)

            def sink(stream: str, line: str, _buf: collections.deque[str] = last_lines) -> None:
                _buf.append(line)
                on_line(stream, line)

            process = spawn(list(argv), cwd, {**os.environ, **environment}, sink)
            deadline = time.monotonic() + READY_WAIT_SECONDS
            while time.monotonic() < deadline and process.exit_code() is None:
                if spec.ready_marker and any(spec.ready_marker in ln for ln in last_lines):
                    break
                time.sleep(0.01)
            if process.exit_code() is None:
                if persistent:
                    write_private(
                        scratch / PORT_FILE, json.dumps({"endpoint": spec.endpoint, "port": port})
                    )
                    if moved_from is not None and moved_from != port:
                        on_line(
                            "stderr",
                            f"port {moved_from} of its earlier runs is now used by another "
                            f"program; it listens on {port} instead",
                        )
                return ProcessHandle(
                    spec, process, port, scratch, program, run_dir=run_dir, private_files=files
                )
            process.join_output()
            marker = spec.port_conflict_marker
            if not (marker and any(marker in ln for ln in last_lines)):
                break
        if persistent:  # its data stays; only what this attempt wrote goes
            for path in files:
                with contextlib.suppress(OSError):
                    path.unlink()
        else:
            shutil.rmtree(scratch, ignore_errors=True)
        tail = "\n".join(list(last_lines)[-10:])
        raise ResourceStartError(
            f"{spec.resource_name}: {program} exited at start-up; its last lines:\n{tail}"
        )
