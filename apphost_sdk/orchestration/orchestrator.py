"""The orchestrator: starts resources in parallel as their waits are met, watches their health,
and stops them in reverse dependency order.

One thread per resource waits on a shared condition for its dependencies, then starts the
resource as its annotations say: a container on the engine (or a local process from its type's
recipe when there is none), a child process, or provisioning. It knows no resource type.
Everything the console, status file and CLI show comes from ``snapshots()``; the dashboard
also reads ``details()`` and runs the start/stop/restart commands of one resource.
"""

from __future__ import annotations

import collections
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from ..dashboard.source import CommandResult
from ..errors import ApphostError, ImageUnavailableError
from ..masking import SecretMasker
from ..model.annotations import (
    ArgsAnnotation,
    ArgsCallbackAnnotation,
    ConfigurationValueAnnotation,
    ContainerImageAnnotation,
    ContainerNameAnnotation,
    ContainerRuntimeArgsAnnotation,
    DockerfileBuildAnnotation,
    EndpointAnnotation,
    EntrypointAnnotation,
    EnvironmentCallbackAnnotation,
    ExecutableAnnotation,
    HealthCheckAnnotation,
    LifetimeAnnotation,
    MountAnnotation,
    OtlpExporterAnnotation,
    ProcessFallbackAnnotation,
    ProvisionedConnection,
    ProvisioningAnnotation,
    RunAsAnnotation,
)
from ..model.resources import ParameterResource, Resource, Wait
from ..model.runtime_args import parse_runtime_args
from ..model.values import (
    HOST_GATEWAY_NAME,
    HealthProbeContext,
    ProcessContext,
    ProvisionContext,
    ReferenceContext,
    ResolvedEndpoint,
    reference_environment,
)
from ..runtimes.base import (
    BuildSpec,
    ContainerHandle,
    ContainerRuntime,
    ContainerSpec,
    LineSink,
    MountSpec,
    PortSpec,
    ProcessSpec,
)
from ..runtimes.health import free_port, http_failure, port_is_free, tcp_accepts, tcp_failure
from ..runtimes.process import ProcessRuntime
from ..runtimes.subprocesses import ManagedProcess, spawn
from .console import Reporter
from .context_hash import context_digest
from .forwarding import Forwarder
from .resource_details import ResourceDetails, endpoint_url, relations
from .states import DependencyStatus, Health, ResourceSnapshot, State

if TYPE_CHECKING:
    from .app import DistributedApplication

STOP_GRACE_SECONDS = 10.0
#: The ports told to containers whose endpoints have no target port (8080, 8081, ...).
CONTAINER_PORT_BASE = 8080
UNHEALTHY_AFTER_FAILURES = 3
#: An executable without health checks counts as started (Healthy) once it has run this long:
#: one that exits at once with a non-zero code fails the start instead of passing for ready.
START_GRACE_SECONDS = 1.0
#: A health check failing this long (from the first failure) shows why; shorter failures are
#: the normal start-up of a service that does not listen yet.
HEALTH_REASON_AFTER_SECONDS = 1.0
#: Timeouts of the generic health checks.
HTTP_CHECK_TIMEOUT = 2.0
TCP_CHECK_TIMEOUT = 0.5
#: The longest log line quoted in a failure report (the line itself can be 16 KiB).
REPORT_LINE_CHARS = 500
#: How long a start (or restart) command waits for Running (and Healthy) before it says so.
COMMAND_TIMEOUT_SECONDS = 60.0
#: The states a start command starts from (Waiting: a force start that skips the waits).
STARTABLE = (
    State.EXITED,
    State.FINISHED,
    State.FAILED_TO_START,
    State.NOT_STARTED,
    State.WAITING,
)
#: The states a stop command stops (Stopping: a stop that failed or was cut short, retried).
STOPPABLE = (State.RUNNING, State.STARTING, State.STOPPING)
#: States in which a resource shows no endpoint: nothing listens there now (``details()``
#: still lists its allocated ports, where it comes back when started again).
NO_ENDPOINT = (
    State.NOT_STARTED,
    State.WAITING,
    State.EXITED,
    State.FINISHED,
    State.FAILED_TO_START,
    State.FAILED_TO_PROVISION,
)

#: A health check: None when it passes, else why it failed ("GET /health answered 404").
HealthCheck = Callable[[], "str | None"]


#: Annotations that make a resource something the orchestrator runs or resolves.
_BEHAVIOUR = (
    ExecutableAnnotation,
    ContainerImageAnnotation,
    ProvisioningAnnotation,
    RunAsAnnotation,
    ConfigurationValueAnnotation,
)


@attrs.frozen
class _Allocated:
    """Where one endpoint of a started resource listens."""

    host_port: int
    target_port: int
    scheme: str
    in_container: bool


class _Run:
    """One start of a resource (at app start, or by a start command) and how commands steer
    it: a stop command ``halts`` it, so its thread's later updates are dropped and its watch
    ends; ``force`` skips its waits."""

    def __init__(self, name: str, force: bool = False) -> None:
        self.name = name
        self.thread: threading.Thread | None = None
        self.force = force
        #: Set by a stop command: this run is over, whatever its thread still reports.
        self.halted = False
        #: Wakes its health watch at once (a stop command, or the app stopping).
        self.wake = threading.Event()


class _Record:
    """Mutable run-time bookkeeping of one resource (guarded by the orchestrator's lock)."""

    def __init__(self, resource: Resource) -> None:
        self.resource = resource
        run_as = resource.annotation(RunAsAnnotation)
        #: What actually runs: the resource, or its run-mode stand-in (``run_as_container``).
        self.runs = run_as.resource if run_as is not None else resource
        self.name = resource.name
        self.kind = resource.kind
        self.state = State.NOT_STARTED
        self.health = Health.UNKNOWN
        #: Why it is not healthy, from its last failed health check (see ``_watch``).
        self.health_reason: str | None = None
        self.endpoint: str | None = None
        self.exit_code: int | None = None
        self.message: str | None = None
        self.runtime: str | None = None
        self.logs: collections.deque[str] = collections.deque(maxlen=40)
        self.allocated: dict[str, _Allocated] = {}
        self.provisioned: ProvisionedConnection | None = None
        #: The environment this resource was started with (injected part only).
        self.environment: dict[str, str] = {}
        self.handle: ContainerHandle | None = None
        self.process: ManagedProcess | None = None
        #: The threads of every run still alive (older runs' too): ``stop()`` joins them all.
        self.threads: list[threading.Thread] = []
        #: The dependency whose failure kept this resource from starting.
        self.blocked_by: str | None = None
        #: Run as a local process (its type's recipe) instead of a container.
        self.as_process = False
        #: The current (or last) start of it.
        self.run = _Run(self.name)
        #: Serialises the commands on this resource (one start/stop/restart at a time).
        self.command_lock = threading.Lock()
        #: ``time.time()`` when it last became Running.
        self.started_at: float | None = None
        #: While Waiting: the command-stopped resources it waits for, and nothing else.
        self.held_back_by: tuple[str, ...] = ()
        #: Between the stop and the start of a restart command: neither ready nor stopped.
        self.restarting = False
        #: The last stop command failed (the engine refused): it may still run; stop retries.
        self.stop_failed = False

    @property
    def stopped_by_command(self) -> bool:
        """True when a stop command stopped it (not a failure, and not a completion), and it
        is not in the middle of a restart."""
        return (
            self.run.halted and self.state in (State.STOPPING, State.EXITED) and not self.restarting
        )

    @property
    def has_run(self) -> bool:
        """True when it ran before with ports allocated: its connection info (the host ports
        it keeps) is known whatever its state, so a dependent can start against it."""
        return self.started_at is not None and bool(self.allocated)

    def dependencies(self) -> list[Resource]:
        """What it waits for: the resource's dependencies and its run-mode stand-in's."""
        out = self.resource.dependencies()
        if self.runs is not self.resource:
            out += [d for d in self.runs.dependencies() if d not in out]
        return out

    @property
    def is_container(self) -> bool:
        return self.runs.annotation(ContainerImageAnnotation) is not None

    def snapshot(self) -> ResourceSnapshot:
        return ResourceSnapshot(
            self.name,
            self.kind,
            self.state,
            self.health,
            self.endpoint,
            self.exit_code,
            self.message,
            self.runtime,
            self.health_reason,
            self.stopped_by_command,
            self.held_back_by,
        )


class Orchestrator:
    """Runs one built application (see ``DistributedApplication.start``)."""

    def __init__(
        self,
        app: DistributedApplication,
        reporter: Reporter,
        masker: SecretMasker,
        on_change: Callable[[], None] | None = None,
        *,
        on_line: Callable[[str, str, str], None] | None = None,
        service_environment: Callable[[Resource, bool], Mapping[str, str]] | None = None,
    ) -> None:
        """``on_line(resource, stream, line)`` gets every console line (raw: the caller masks);
        ``service_environment(resource, in_container)`` gives the variables (``OTEL_*``) every
        executable and container receives before its own, so a user's ``with_environment``
        wins (without it, executables get ``OTEL_SERVICE_NAME`` only)."""
        self.app = app
        self.reporter = reporter
        self.masker = masker
        self.on_change = on_change
        self.on_line = on_line
        self.service_environment = service_environment
        self._version = 0
        #: The run of the resource thread running now (see ``_superseded``).
        self._local = threading.local()
        self._on_line_failed = False
        self.session_id = uuid.uuid4().hex[:12]
        self._cond = threading.Condition()
        self._stopping = threading.Event()
        self._records: dict[str, _Record] = {}
        self._engine: ContainerRuntime | None = None
        self._engine_error: str | None = None
        self._processes = ProcessRuntime()
        self._forwarders: list[Forwarder] = []
        self._parameters: dict[str, str] = {}
        self._parameter_lock = threading.Lock()
        self._hash_key: str | None = None
        for r in app.model.resources:
            if any(r.annotation(cls) is not None for cls in _BEHAVIOUR):
                self._records[r.name] = _Record(r)

    # -- public -------------------------------------------------------------------------
    def snapshots(self) -> list[ResourceSnapshot]:
        with self._cond:
            return [r.snapshot() for r in self._records.values()]

    def record(self, name: str) -> _Record:
        for key, rec in self._records.items():
            if key.casefold() == name.casefold():
                return rec
        raise KeyError(f"no resource named {name!r}; resources: {', '.join(self._records)}")

    @property
    def version(self) -> int:
        """A number that grows on every change of ``snapshots()`` (the dashboard polls it)."""
        return self._version

    def engine_gateway(self) -> str | None:
        """The container engine's host gateway address, when there is an engine and it is an
        address of this machine (where containers reach the app host)."""
        return self._engine.host_gateway() if self._engine is not None else None

    def start(self) -> None:
        """Resolve values, find the container engine, and start a thread per resource."""
        self.reporter.set_resources(list(self._records))
        self._prepare_containers()
        for rec in self._records.values():
            self._launch(rec, rec.run)

    def wait_until_settled(
        self, timeout: float | None = None, cancel: threading.Event | None = None
    ) -> bool:
        """Wait until every resource is ready (Running+Healthy, or Finished) or something
        failed. Returns True when all are ready; raises KeyboardInterrupt once ``cancel`` is
        set (a signal handler sets it: raising from the handler itself could land inside the
        condition's wait and leave its lock released twice)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while True:
                if cancel is not None and cancel.is_set():
                    raise KeyboardInterrupt
                if self.failures():
                    return False
                if all(self._is_ready(r) for r in self._records.values()):
                    return True
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._cond.wait(0.2 if remaining is None else min(remaining, 0.2))

    def failures(self) -> list[_Record]:
        """Records that failed (to start or provision, or exited with a code nothing waits
        for), and the dependencies that kept them from starting; root causes first."""
        failed = [
            r
            for r in self._records.values()
            if r.state.is_failure
            or (
                r.state is State.EXITED
                and not self._exit_expected(r)
                and not r.stopped_by_command
                and not r.restarting  # stopped by its restart: not a failure either
            )
        ]
        for rec in list(failed):
            cause = self._records.get(rec.blocked_by or "")
            if cause is not None and cause not in failed:
                failed.append(cause)
        return sorted(failed, key=lambda r: r.blocked_by is not None)

    def failure_report(self) -> str:
        """A message naming each failed resource with its last log lines (masked)."""
        lines: list[str] = []
        for rec in self.failures():
            if rec.state in (State.EXITED, State.FINISHED):
                line = f"{rec.name} exited with code {rec.exit_code}"
                if rec.message:
                    line += f": {rec.message}"
            else:
                line = f"{rec.name} failed: {rec.message or rec.state.value}"
            lines.append(line)
            tail = list(rec.logs)[-10:]
            if tail:
                lines.append(f"  last lines of {rec.name}:")
                lines += [f"    {_shorten(t)}" for t in tail]
        return self.masker.mask("\n".join(lines))

    def not_ready(self) -> list[str]:
        """What is not ready yet, each with why when known: ``web (GET /health answered
        404)``, ``api (Waiting)``."""
        with self._cond:
            out = []
            for rec in self._records.values():
                if self._is_ready(rec):
                    continue
                why = rec.health_reason
                if why is None and rec.state is not State.RUNNING:
                    why = rec.state.value
                out.append(f"{rec.name} ({why})" if why else rec.name)
        return [self.masker.mask(text) for text in out]

    def stop(self) -> None:
        """Stop every resource, dependents before what they depend on."""
        with self._cond:
            self._stopping.set()
            for rec in self._records.values():
                rec.run.wake.set()
            self._cond.notify_all()
        remaining = dict(self._records)
        while remaining:
            # A resource can stop once nothing still running depends on it.
            blocked = {
                d.name
                for rec in remaining.values()
                for d in rec.resource.dependencies()
                if d.name in remaining
            }
            level = [rec for name, rec in remaining.items() if name not in blocked]
            if not level:  # impossible after validation, but never hang
                level = list(remaining.values())
            with ThreadPoolExecutor(max_workers=max(1, len(level))) as pool:
                list(pool.map(self._stop_one, level))
            for rec in level:
                remaining.pop(rec.name, None)
        # A resource thread still starting its process sees ``_stopping`` and stops it itself;
        # wait (bounded) so that nothing is left running when stop() returns.
        deadline = time.monotonic() + STOP_GRACE_SECONDS + 5
        with self._cond:
            threads = [t for rec in self._records.values() for t in rec.threads]
        for thread in threads:  # every run's, older ones too (one may still stop its start)
            if thread is not threading.current_thread():
                thread.join(max(0.0, deadline - time.monotonic()))
        with self._cond:
            forwarders, self._forwarders = self._forwarders, []
        for forwarder in forwarders:
            forwarder.close()
        if self._engine is not None:
            try:
                self._engine.close()
            except Exception as exc:  # cleanup must go on
                self.reporter.info(f"closing the {self._engine.name} runtime failed: {exc}")

    # -- resource commands (the dashboard and `apphost resource`) -----------------------
    def command_states(self, name: str) -> dict[str, bool]:
        """Which commands the resource ``name`` takes now: start when it is stopped, not
        started or waiting; stop while it runs (or starts); restart while it runs. Raises
        KeyError for an unknown name."""
        rec = self.record(name)
        with self._cond:
            return {c: self._refusal(rec, c) is None for c in ("start", "stop", "restart")}

    def start_resource(self, name: str) -> CommandResult:
        """Start one resource that is stopped, never started, or still waiting (a force start:
        its waits are skipped), as at app start and on the host ports it had; ok once it is
        Running and Healthy (or has finished), else why not."""
        return self._command(name, "start", self._start_command)

    def stop_resource(self, name: str) -> CommandResult:
        """Stop one running (or starting) resource with the normal grace period; it then shows
        Exited and counts as no failure. Nothing else is stopped."""
        return self._command(name, "stop", self._stop_command)

    def restart_resource(self, name: str) -> CommandResult:
        """Stop, then start one running resource. Its dependents are neither restarted nor
        held back: they keep running, on the same connection info (same host ports)."""

        def restart(rec: _Record) -> CommandResult:
            # Between its stop and its start it is neither ready nor stopped for good: the
            # app's start-up (and its dependents) wait for it instead of settling.
            self._set_flag(rec, "restarting", True)
            try:
                stopped = self._stop_command(rec)
                if not stopped.ok:
                    return stopped
                started = self._start_command(rec)
            finally:
                self._set_flag(rec, "restarting", False)
            if not started.ok:
                return started
            return CommandResult(True, f"{rec.name} restarted")

        return self._command(name, "restart", restart)

    def details(self, name: str) -> ResourceDetails:
        """Endpoints (as URLs), last start time, environment (raw) and graph edges of ``name``.
        Raises KeyError for an unknown name."""
        rec = self.record(name)
        with self._cond:
            endpoints = [(n, endpoint_url(a.scheme, a.host_port)) for n, a in rec.allocated.items()]
            if rec.provisioned is not None and rec.endpoint and "://" in rec.endpoint:
                endpoints.append(("endpoint", rec.endpoint))
            sources = [rec.resource] if rec.runs is rec.resource else [rec.resource, rec.runs]
            return ResourceDetails(
                endpoints=endpoints,
                started_at=rec.started_at,
                environment=dict(rec.environment),
                relations=[(t, k) for t, k in relations(sources) if t != rec.name],
            )

    def _command(
        self, name: str, command: str, action: Callable[[_Record], CommandResult]
    ) -> CommandResult:
        """Run ``action`` on the record ``name`` once no other command runs on it and the
        resource is in a state ``command`` applies to; else a refusal naming why."""
        try:
            rec = self.record(name)
        except KeyError:
            names = ", ".join(self._records) or "none"
            return CommandResult(False, f"no resource named {name!r}; resources: {names}")
        with rec.command_lock:
            with self._cond:
                refusal = self._refusal(rec, command)
            if refusal is not None:
                return CommandResult(False, refusal)
            return action(rec)

    def _refusal(self, rec: _Record, command: str) -> str | None:
        """Why ``command`` cannot run on ``rec`` now (None: it can). Called under the lock."""
        name = rec.name
        if self._stopping.is_set():
            return "the app host is stopping; start the app again to run commands"
        runs = rec.runs
        if runs.annotation(ProvisioningAnnotation) is not None:
            return (
                f"{name} is provisioned in Azure, not run by the app host: it cannot be "
                "started or stopped here (manage it in the Azure portal)"
            )
        if runs.annotation(ExecutableAnnotation) is None and not rec.is_container:
            return f"{name} is a value (a connection string): there is nothing to start or stop"
        lifetime = runs.annotation(LifetimeAnnotation)
        if (
            command != "start"
            and rec.is_container
            and not rec.as_process
            and lifetime is not None
            and lifetime.lifetime == "persistent"
        ):
            return (
                f"{name} is a persistent container, which outlives the app host: stop it "
                "with `docker stop` (or `apphost down` once the app is stopped)"
            )
        state = rec.state.value
        if command == "start" and rec.state not in STARTABLE:
            if rec.state is State.RUNNING:
                return f"{name} is already Running; use restart to start it again"
            return f"{name} is {state}; start works once it is stopped (Exited or Finished)"
        if command == "start":
            missing = self._missing_connection(rec)
            if missing is not None:
                other = missing.name
                fix = (
                    f"start {other} first"
                    if missing.state in STARTABLE
                    else f"wait until {other} is Running"
                )
                return f"{name} needs {other}, which is {missing.state.value}; {fix}"
        if command == "stop" and rec.stop_failed and rec.state is State.EXITED:
            return None  # the last stop failed: it may still run, so a stop retries
        if command == "stop" and rec.state not in STOPPABLE:
            if rec.state in STARTABLE:
                return f"{name} is {state}, not running; use start to run it"
            return f"{name} is {state}; stop works while it is Running or Starting"
        if command == "restart" and rec.state is not State.RUNNING:
            if rec.state in STARTABLE:
                return f"{name} is {state}, not running; use start instead of restart"
            return f"{name} is {state}; restart works while it is Running"
        return None

    def _missing_connection(self, rec: _Record) -> _Record | None:
        """The first resource whose connection info ``rec`` needs (a reference that is not
        optional, or an endpoint given as a value) and that has none to give: it is not
        Running, not provisioned, and never ran (a resource that ran keeps its host ports, so
        its connection info stays known). None when every one is known. Under the lock."""
        sources = [rec.resource] if rec.runs is rec.resource else [rec.resource, rec.runs]
        targets: list[Resource] = []
        for source in sources:
            targets += [ref.target for ref in source.references if not ref.optional]
            waits = {w.target.name for w in source.waits}
            refs = {ref.target.name for ref in source.references}
            # Endpoints given as values: the dependencies that are neither waits nor references.
            targets += [
                d for d in source.dependencies() if d.name not in waits and d.name not in refs
            ]
        for target in targets:
            dep = self._records.get(target.name)
            if dep is None or dep is rec:
                continue
            if dep.state is State.RUNNING or dep.provisioned is not None or dep.has_run:
                continue
            return dep
        return None

    def _set_flag(self, rec: _Record, name: str, value: bool) -> None:
        """Set a flag of ``rec`` that its snapshot (and start-up's settling) depends on, and
        tell whoever waits or shows it."""
        with self._cond:
            before = rec.snapshot()
            setattr(rec, name, value)
            self._changed(rec, before)

    def _stop_command(self, rec: _Record) -> CommandResult:
        """Halt the current run of ``rec``, stop what it started (grace period as at app
        stop) and show it Exited with its exit code."""
        with self._cond:
            run = rec.run
            run.halted = True
            run.wake.set()
            handle, process = rec.handle, rec.process
            self._set_locked(rec, State.STOPPING)
        try:
            if handle is not None:
                handle.stop(STOP_GRACE_SECONDS)
            elif process is not None:
                process.stop(STOP_GRACE_SECONDS)
        except Exception as exc:  # the engine refused: say so, keep the app running
            message = self.masker.mask(f"stopping {rec.name} failed: {exc}")
            self.reporter.info(message)
            with self._cond:
                # Not Stopping forever: Exited with why, and what it started is kept, so that
                # a stop retries (and a start cleans it up first).
                rec.stop_failed = True
                self._set_locked(
                    rec,
                    State.EXITED,
                    Health.UNKNOWN,
                    message=f"{message}; it may still run: stop it again to retry",
                    health_reason=None,
                )
            return CommandResult(False, f"{message}; stop it again to retry")
        # Its thread ends once it sees the run halted (one still starting stops what it started).
        if run.thread is not None and run.thread is not threading.current_thread():
            run.thread.join(STOP_GRACE_SECONDS + 5)
        with self._cond:
            target = rec.handle or rec.process
            code = target.exit_code() if target is not None else None
            # Stopped and let go: the app's stop has nothing left to stop here.
            rec.handle = None
            rec.process = None
            rec.stop_failed = False
            self._set_locked(rec, State.EXITED, Health.UNKNOWN, exit_code=code, health_reason=None)
        return CommandResult(True, f"{rec.name} stopped (exit code {code})")

    def _start_command(self, rec: _Record) -> CommandResult:
        """Start ``rec`` again (or let its waiting thread go on, skipping its waits) and wait
        until it is Running and Healthy, has finished, or failed."""
        with self._cond:
            run = rec.run
            waiting = rec.state in (State.WAITING, State.NOT_STARTED)
            if waiting and run.thread is not None and run.thread.is_alive():
                run.force = True  # its thread skips the waits it is in
                self._cond.notify_all()
                fresh = None
            else:
                fresh = _Run(rec.name, force=True)
        if fresh is not None:
            self._release(rec)
            with self._cond:
                if self._stopping.is_set():
                    return CommandResult(False, "the app host is stopping; nothing was started")
                rec.run = run = fresh
                rec.handle = None
                rec.process = None
                rec.stop_failed = False
                self._set_locked(
                    rec,
                    State.NOT_STARTED,
                    Health.UNKNOWN,
                    exit_code=None,
                    message=None,
                    health_reason=None,
                    blocked_by=None,
                )
                self._launch(rec, run)
        return self._await_start(rec, run)

    def _release(self, rec: _Record) -> None:
        """Let go of what the previous run left (an exited container is removed, a process
        group's leftovers killed) and wait (bounded) for its thread to end."""
        old = rec.run
        for target in (rec.handle, rec.process):
            if target is None:
                continue
            try:
                target.stop(STOP_GRACE_SECONDS)
            except Exception as exc:  # a start must not fail on the old run's clean-up
                self.reporter.info(f"cleaning up {rec.name} failed: {self.masker.mask(str(exc))}")
        if old.thread is not None and old.thread is not threading.current_thread():
            old.thread.join(5.0)

    def _await_start(self, rec: _Record, run: _Run) -> CommandResult:
        """Wait for the outcome of a start command's run (bounded by
        ``COMMAND_TIMEOUT_SECONDS``)."""
        name = rec.name
        deadline = time.monotonic() + COMMAND_TIMEOUT_SECONDS
        with self._cond:
            while True:
                if rec.run is not run or run.halted:
                    return CommandResult(False, f"{name} was stopped before it was running")
                if self._stopping.is_set():
                    return CommandResult(False, f"the app host is stopping; {name} not started")
                if rec.state is State.RUNNING and rec.health is Health.HEALTHY:
                    return CommandResult(True, f"{name} is Running")
                if rec.state is State.FINISHED:
                    return CommandResult(True, f"{name} ran and finished (exit code 0)")
                if rec.state.is_failure:
                    return CommandResult(
                        False, f"{name} failed to start: {rec.message or rec.state.value}"
                    )
                if rec.state is State.EXITED:
                    return CommandResult(
                        False,
                        f"{name} exited with code {rec.exit_code} as it started; see its "
                        "console logs",
                    )
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    why = f": {rec.health_reason}" if rec.health_reason else ""
                    return CommandResult(
                        False,
                        f"{name} is not Running and Healthy after {COMMAND_TIMEOUT_SECONDS:g} s "
                        f"(it is {rec.state.value}, {rec.health.value}{why}); see its console "
                        "logs, or stop it",
                    )
                self._cond.wait(min(remaining, 0.5))

    def _launch(self, rec: _Record, run: _Run) -> None:
        """Start the thread of one run of ``rec`` (at app start, or for a start command)."""
        run.thread = threading.Thread(
            target=self._run_resource, args=(rec, run), name=f"resource-{rec.name}", daemon=True
        )
        # Older runs' threads that still run stay listed: stop() joins them all.
        rec.threads = [t for t in rec.threads if t.is_alive()] + [run.thread]
        run.thread.start()

    def _superseded(self, rec: _Record) -> bool:
        """True when the calling thread is a run of ``rec`` that a stop command halted, or
        that a newer run replaced: what it reports is no longer news."""
        run: _Run | None = getattr(self._local, "run", None)
        return run is not None and run.name == rec.name and (run.halted or run is not rec.run)

    # -- values -------------------------------------------------------------------------
    def parameter(self, p: ParameterResource) -> str:
        """A parameter's value: given, configured (``Parameters:{name}``) or, for secrets,
        generated once and kept in the app's state. Secret values are masked from then on."""
        with self._parameter_lock:
            if p.state_key in self._parameters:
                return self._parameters[p.state_key]
            value = p.explicit_value
            if value is None:
                value = self.app.configuration.get_str(f"Parameters:{p.name}")
            if value is None and p.secret:
                value = self.app.state.secret(p.state_key)
            value = value or ""
            self._parameters[p.state_key] = value
        if p.secret:
            self.masker.add(value)
        return value

    def _endpoint_resolver(self, in_container: bool) -> Callable[[Resource, str], ResolvedEndpoint]:
        def resolve(resource: Resource, name: str) -> ResolvedEndpoint:
            rec = self.record(resource.name)
            allocated = rec.allocated.get(name)
            if allocated is None:
                raise ApphostError(
                    f"endpoint {name!r} of {resource.name} is not allocated (it is not running)"
                )
            if not in_container:
                return ResolvedEndpoint("localhost", allocated.host_port, allocated.scheme)
            if allocated.in_container:
                wait_attached = getattr(rec.handle, "wait_attached", None)
                if wait_attached is not None:
                    wait_attached()
                return ResolvedEndpoint(resource.name, allocated.target_port, allocated.scheme)
            return ResolvedEndpoint(HOST_GATEWAY_NAME, allocated.host_port, allocated.scheme)

        return resolve

    def context(self, in_container: bool) -> ReferenceContext:
        """How values are resolved for a consumer on this machine or in a container."""
        return ReferenceContext(
            in_container,
            self._endpoint_resolver(in_container),
            self.parameter,
            self.app.configuration.get_str,
        )

    def reference_environment(
        self,
        target_name: str,
        connection_name: str,
        in_container: bool = False,
        *,
        kept: bool = False,
    ) -> dict[str, str]:
        """What a reference to ``target_name`` injects: empty while it is not running, unless
        ``kept`` and it ran before (a resource keeps its host ports, so a dependent started
        while it is stopped reaches it once it is started again)."""
        rec = self.record(target_name)
        if rec.provisioned is not None:
            return dict(rec.provisioned.environment(connection_name))
        if rec.state is not State.RUNNING and not (kept and rec.has_run):
            return {}
        try:
            env = reference_environment(rec.runs, self.context(in_container), connection_name)
        except ApphostError:
            return {}
        config = rec.runs.annotation(ConfigurationValueAnnotation)
        if config is not None:
            self.masker.add_connection_string(self.app.configuration.get_str(config.key))
        return env

    def injected_environment(self, r: Resource, in_container: bool = False) -> dict[str, str]:
        """The variables this resource receives from references and ``with_environment`` (its
        own and, for a run-mode stand-in, the stand-in's)."""
        env: dict[str, str] = {}
        run_as = r.annotation(RunAsAnnotation)
        sources = [r] if run_as is None else [r, run_as.resource]
        context = self.context(in_container)
        for source in sources:
            for ref in source.references:
                env.update(
                    self.reference_environment(
                        ref.target.name, ref.connection_name, in_container, kept=True
                    )
                )
            for k, v in source.environment.items():
                env[k] = context.value(v)
        return env

    def _arguments(self, r: Resource, context: ReferenceContext) -> list[str] | None:
        """The resource's arguments, or None when it has none (a container keeps its CMD)."""
        found = False
        args: list[str] = []
        for a in r.annotations:
            if isinstance(a, ArgsAnnotation):
                found = True
                args += [context.value(v) for v in a.args]
            elif isinstance(a, ArgsCallbackAnnotation):
                found = True
                args += a.callback()
        return args if found else None

    # -- containers ---------------------------------------------------------------------
    def _prepare_containers(self) -> None:
        """Find the container engine (once) and pull the images the app needs; resources
        whose image cannot be had run as processes where their type allows it under ``auto``,
        else fail to start naming the fix."""
        containers = [rec for rec in self._records.values() if rec.is_container]
        if not containers:
            return
        from ..runtimes.selection import requested_runtime, select_runtime

        self._engine_error = (
            "it needs a container engine and none answers; start Docker (or Podman), or set "
            "DOCKER_HOST, then start the app again"
        )
        try:
            self._engine = select_runtime(self.reporter.info)
        except ApphostError as exc:
            self._engine_error = self.masker.mask(str(exc))
            for rec in containers:
                self._set(rec, State.FAILED_TO_START, message=self._engine_error)
            return
        if self._engine is None:
            for rec in containers:
                if rec.runs.annotation(ProcessFallbackAnnotation) is not None:
                    rec.as_process = True
                else:
                    self._set(
                        rec,
                        State.FAILED_TO_START,
                        message="it needs a container engine and none answers; start Docker "
                        "(or Podman), or set DOCKER_HOST",
                    )
            return
        self.reporter.info(f"running containers with {self._engine.describe()}")
        for removed in self._engine.cleanup_orphans():
            self.reporter.info(f"removed {removed} left behind by an earlier app host")
        images = sorted(
            {
                _image_ref(rec.runs)
                for rec in containers
                if rec.runs.annotation(DockerfileBuildAnnotation) is None
            }
        )
        try:
            self._engine.prepare(images, self.reporter.info)
        except ImageUnavailableError as exc:
            present = getattr(self._engine, "image_present", lambda ref: False)
            auto = requested_runtime() == "auto"
            fallen: list[str] = []
            for rec in containers:
                if rec.runs.annotation(DockerfileBuildAnnotation) is not None:
                    continue
                ref = _image_ref(rec.runs)
                if present(ref):
                    continue
                fallback = rec.runs.annotation(ProcessFallbackAnnotation)
                image = rec.runs.annotation(ContainerImageAnnotation)
                stock = (
                    fallback is not None
                    and image is not None
                    and image.registry is None
                    and image.image == fallback.replaces_image
                )
                if auto and stock:
                    rec.as_process = True
                    fallen.append(rec.name)
                else:
                    self._set(rec, State.FAILED_TO_START, message=self.masker.mask(str(exc)))
            if fallen:
                self.reporter.info(
                    f"{exc}; APPHOST_CONTAINER_RUNTIME is auto, so {', '.join(fallen)} run as "
                    "local processes instead"
                )

    def _container_spec(self, rec: _Record, env: dict[str, str]) -> ContainerSpec:
        r = rec.runs
        context = self.context(in_container=True)
        ports: list[PortSpec] = []
        told = 0
        for e in r.annotations_of(EndpointAnnotation):
            target = e.target_port
            if target is None:
                # The program listens on the port it is told. Inside its own container any
                # port is free: a fixed one keeps a persistent container's configuration stable.
                target = e.port or CONTAINER_PORT_BASE + told
                told += 1
            if e.env:
                env[e.env] = str(target)
            host_port = e.port
            before = rec.allocated.get(e.name)
            lifetime = r.annotation(LifetimeAnnotation)
            persistent = lifetime is not None and lifetime.lifetime == "persistent"
            if host_port is None and before is not None and not persistent:
                host_port = before.host_port  # started again: keep what dependents were told
            ports.append(PortSpec(e.name, target, host_port))
        for cb in r.annotations_of(EnvironmentCallbackAnnotation):
            env.update(cb.callback(context))
        entry = r.annotation(EntrypointAnnotation)
        args = self._arguments(r, context)
        options: dict[str, Any] = {}
        for a in r.annotations_of(ContainerRuntimeArgsAnnotation):
            options.update(parse_runtime_args(a.args)[0])
        build = r.annotation(DockerfileBuildAnnotation)
        image = r.annotation(ContainerImageAnnotation)
        assert image is not None
        name, tag = (image.reference.rsplit(":", 1)[0], image.tag)
        build_spec = None
        if build is not None:
            build_spec = BuildSpec(build.context, build.dockerfile)
            tag = context_digest(build.context, build.dockerfile)
        lifetime = r.annotation(LifetimeAnnotation)
        container_name = r.annotation(ContainerNameAnnotation)
        if self._hash_key is None:
            self._hash_key = self.app.state.secret("config-hash-key")
        return ContainerSpec(
            app_id=self.app.app_id,
            app_name=self.app.app_name,
            session_id=self.session_id,
            resource_name=rec.name,
            image=name,
            tag=tag,
            state_dir=self.app.state.directory,
            ports=tuple(ports),
            entrypoint=(entry.command,) if entry is not None else None,
            args=tuple(args) if args is not None else None,
            environment=env,
            mounts=tuple(
                MountSpec(m.source, m.target, m.kind, m.read_only)
                for m in r.annotations_of(MountAnnotation)
            ),
            lifetime=lifetime.lifetime if lifetime is not None else "session",
            container_name=container_name.name if container_name is not None else None,
            options=options,
            build=build_spec,
            network=self._needs_network(rec),
            hash_key=self._hash_key,
        )

    # -- per-resource thread ------------------------------------------------------------
    def _run_resource(self, rec: _Record, run: _Run) -> None:
        self._local.run = run
        try:
            if rec.state.is_failure:
                return
            if not self._wait_for_dependencies(rec):
                return
            r = rec.runs
            if r.annotation(ProvisioningAnnotation) is not None:
                self._run_provisioned(rec)
            elif rec.is_container:
                if not rec.as_process and self._engine is None:
                    # A start command after the app started without an engine.
                    self._set(rec, State.FAILED_TO_START, message=self._engine_error)
                elif rec.as_process:
                    self._run_as_process(rec)
                else:
                    self._run_container(rec)
            elif r.annotation(ExecutableAnnotation) is not None:
                self._run_executable(rec)
            else:  # a value (a configured connection string): nothing to run
                config = r.annotation(ConfigurationValueAnnotation)
                if config is not None:
                    self.masker.add_connection_string(self.app.configuration.get_str(config.key))
                endpoint = "(connection string)" if config is not None else None
                self._set(rec, State.RUNNING, Health.HEALTHY, endpoint=endpoint)
        except Exception as exc:  # a bug must not hang the app: report it on the resource
            self._set(
                rec, State.FAILED_TO_START, message=self.masker.mask(f"{type(exc).__name__}: {exc}")
            )

    def _dep_status(self, rec: _Record, target: Resource, wait: Wait | None) -> DependencyStatus:
        """Whether one dependency of ``rec`` is met, pending or failed."""
        dep = self._records[target.name]
        kind = wait.kind if wait is not None else "start"
        if dep.restarting:  # back in a moment: neither failed nor stopped
            return DependencyStatus.PENDING
        if dep.stopped_by_command or (dep.state is State.WAITING and dep.held_back_by):
            return DependencyStatus.HELD  # stopped on purpose: wait until it is started again
        if kind == "completion":
            if dep.state in (State.EXITED, State.FINISHED):
                expected = wait.exit_code if wait else 0
                return (
                    DependencyStatus.MET if dep.exit_code == expected else DependencyStatus.FAILED
                )
            return DependencyStatus.FAILED if dep.state.is_failure else DependencyStatus.PENDING
        if dep.state.is_failure or dep.state in (State.EXITED, State.FINISHED):
            return DependencyStatus.FAILED
        if dep.state is State.RUNNING and (kind == "start" or dep.health is Health.HEALTHY):
            return DependencyStatus.MET
        return DependencyStatus.PENDING

    def _wait_for_dependencies(self, rec: _Record) -> bool:
        r = rec.resource
        items: list[tuple[Resource, Wait | None, bool]] = [(w.target, w, False) for w in r.waits]
        items += [(ref.target, None, ref.optional) for ref in r.references]
        # An endpoint given as a value (``with_environment("X", other.get_endpoint(...))``) is
        # known only once ``other`` has started, as with a reference; a run-mode stand-in's
        # own dependencies count too.
        for target in rec.dependencies():
            if all(target is not t for t, _, _ in items):
                items.append((target, None, False))
        if not items or rec.run.force:
            return True
        self._set(rec, State.WAITING)
        with self._cond:
            while True:
                if rec.run.force:  # a start command: skip the waits, as Aspire's force start
                    self._hold_back(rec, ())
                    return True
                pending = False
                held: list[str] = []
                for target, wait, optional in items:
                    status = self._dep_status(rec, target, wait)
                    if status is DependencyStatus.FAILED:
                        if optional:
                            continue
                        dep = self._records[target.name]
                        why = (
                            f"exited with code {dep.exit_code}"
                            if dep.state in (State.EXITED, State.FINISHED)
                            else "failed"
                        )
                        self._set_locked(
                            rec,
                            State.FAILED_TO_START,
                            message=f"not started: its dependency {target.name} {why}",
                            blocked_by=target.name,
                        )
                        return False
                    if status is DependencyStatus.PENDING:
                        pending = True
                    if status is DependencyStatus.HELD:
                        dep = self._records[target.name]
                        causes = dep.held_back_by if dep.state is State.WAITING else (dep.name,)
                        held += [c for c in causes if c not in held]
                # Held back only while nothing else is pending: then it is settled.
                self._hold_back(rec, () if pending else tuple(held))
                if not pending and not held:
                    return True
                # Checked after the dependencies, so a failed one is reported as the cause
                # even when the failure is also what stops the app.
                if self._stopping.is_set():
                    return False
                self._cond.wait(0.5)

    def _hold_back(self, rec: _Record, causes: tuple[str, ...]) -> None:
        """Show ``rec`` (Waiting) as held back by the command-stopped ``causes`` (settled for
        start-up), or no longer held back when ``causes`` is empty. Under the lock."""
        if causes == rec.held_back_by:
            return
        if not causes:
            self._set_locked(rec, State.WAITING, held_back_by=(), message=None)
            return
        verb = "was" if len(causes) == 1 else "were"
        self._set_locked(
            rec,
            State.WAITING,
            held_back_by=causes,
            message=f"held back: {', '.join(causes)} {verb} stopped",
        )

    def _adopt(self, rec: _Record, handle: ContainerHandle) -> bool:
        """Record a started handle; False (after stopping it) when the app is stopping or this
        run was halted or replaced: never overwrite a newer run's handle, and never leave
        what a superseded run started running."""
        with self._cond:
            stopping = self._stopping.is_set() or self._superseded(rec)
            if not stopping:
                rec.handle = handle
        if stopping:  # stop() may have passed this resource already: never leave it running
            handle.stop(STOP_GRACE_SECONDS)
        return not stopping

    def _take_process(self, rec: _Record, process: ManagedProcess) -> bool:
        """Record a started process, as ``_adopt`` records a handle: False (after stopping
        it) when the app is stopping or this run was halted or replaced."""
        with self._cond:
            stopping = self._stopping.is_set() or self._superseded(rec)
            if not stopping:
                rec.process = process
                rec.runtime = f"pid {process.pid}"
        if stopping:  # stop() may have passed this resource already: never leave it running
            process.stop(STOP_GRACE_SECONDS)
        return not stopping

    def _start_handle(
        self, rec: _Record, start: Callable[[LineSink], ContainerHandle]
    ) -> ContainerHandle | None:
        """Start ``rec`` with ``start`` (given the sink of its output lines) and adopt the handle.
        None when it goes no further: the runtime refused (``rec`` FailedToStart with the
        masked reason) or the app is stopping (the handle is stopped again)."""
        try:
            handle = start(lambda stream, line: self._on_line(rec, stream, line))
        except ApphostError as exc:
            message = _without_name(rec.name, str(exc))
            self._set(rec, State.FAILED_TO_START, message=self.masker.mask(message))
            return None
        return handle if self._adopt(rec, handle) else None

    def _run_container(self, rec: _Record) -> None:
        engine = self._engine
        assert engine is not None
        rec.runtime = engine.name
        self._set(rec, State.STARTING)
        env = self._service_environment(rec, True) if self.service_environment else {}
        env.update(self.injected_environment(rec.resource, in_container=True))
        spec = self._container_spec(rec, env)
        # What it starts with, as for an executable: references, with_environment, the
        # endpoints' port variables and the environment callbacks (a tool's RI_REDIS_*).
        rec.environment = dict(spec.environment)
        handle = self._start_handle(rec, lambda on_line: engine.start(spec, on_line))
        if handle is None:
            return
        for p in spec.ports:
            e = next(e for e in rec.runs.annotations_of(EndpointAnnotation) if e.name == p.name)
            rec.allocated[p.name] = _Allocated(
                handle.host_ports[p.name], p.target_port, e.scheme, True
            )
        self._started(rec, handle.exit_code)

    def _run_as_process(self, rec: _Record) -> None:
        r = rec.runs
        fallback = r.annotation(ProcessFallbackAnnotation)
        assert fallback is not None
        endpoint = next(
            e for e in r.annotations_of(EndpointAnnotation) if e.name == fallback.endpoint
        )
        rec.runtime = "process"
        self._set(rec, State.STARTING)
        before = rec.allocated.get(endpoint.name)
        bind: tuple[str, ...] = ("127.0.0.1",)
        gateway = self._gateway_for(rec)
        if gateway:
            bind += (gateway,)

        def recipe(
            port: int, addresses: tuple[str, ...], scratch: Path, mounts: Mapping[str, Path]
        ) -> tuple[Sequence[str], Path, Mapping[str, str], Mapping[Path, str]]:
            launch = fallback.recipe(
                ProcessContext(rec.name, port, addresses, scratch, mounts, self.parameter)
            )
            return launch.argv, launch.cwd, launch.environment, launch.private_files

        lifetime = r.annotation(LifetimeAnnotation)
        spec = ProcessSpec(
            app_id=self.app.app_id,
            session_id=self.session_id,
            resource_name=rec.name,
            state_dir=self.app.state.directory,
            # Started again: the port it had, which its dependents were told.
            host_port=endpoint.port or (before.host_port if before is not None else None),
            mounts=tuple(
                MountSpec(m.source, m.target, m.kind, m.read_only)
                for m in r.annotations_of(MountAnnotation)
            ),
            bind_addresses=bind,
            recipe=recipe,
            endpoint=endpoint.name,
            ready_marker=fallback.ready_marker,
            port_conflict_marker=fallback.port_conflict_marker,
            lifetime=lifetime.lifetime if lifetime is not None else "session",
        )
        handle = self._start_handle(rec, lambda on_line: self._processes.start(spec, on_line))
        if handle is None:
            return
        rec.allocated[endpoint.name] = _Allocated(
            handle.host_port, endpoint.target_port or handle.host_port, endpoint.scheme, False
        )
        self._started(rec, handle.exit_code)

    def _container_consumers(self, rec: _Record, on_engine: bool = False) -> bool:
        """True when a container of the app (one on the engine, if ``on_engine``) references,
        waits for, or takes an endpoint of ``rec``."""
        return any(
            other.is_container
            and not (on_engine and other.as_process)
            and rec.resource in other.dependencies()
            for other in self._records.values()
        )

    def _forward(
        self, rec: _Record, run: _Run, process: ManagedProcess, gateway: str, ports: list[int]
    ) -> None:
        """Once the program listens on a port, relay the gateway's same port to it, unless it
        listens there itself (bound to all interfaces): never take a port before it does.
        Ends with its run: the app stops, the run is halted or replaced, or the process
        exits (a later run starts its own)."""
        pending = list(ports)

        def over() -> bool:
            return (
                self._stopping.is_set()
                or run.halted
                or rec.run is not run
                or process.exit_code() is not None
            )

        while pending and not over():
            for port in list(pending):
                if not tcp_accepts("127.0.0.1", port, timeout=0.2):
                    continue
                pending.remove(port)
                if tcp_accepts(gateway, port, timeout=0.2):
                    continue
                try:
                    forwarder = Forwarder(gateway, port, port)
                except OSError as exc:
                    self.reporter.info(
                        f"{rec.name}: containers cannot reach port {port} through {gateway}: {exc}"
                    )
                    continue
                with self._cond:
                    if self._stopping.is_set():
                        forwarder.close()
                        return
                    self._forwarders.append(forwarder)
            run.wake.wait(0.05)

    def _gateway_for(self, rec: _Record) -> str | None:
        """The engine's host gateway address, when containers on the engine consume ``rec``
        (a local process) and this machine can listen there; says so when it cannot."""
        if self._engine is None or not self._container_consumers(rec, on_engine=True):
            return None
        gateway = self._engine.host_gateway()
        if gateway is None:
            self.reporter.info(
                f"{rec.name} runs on this machine, but containers cannot reach it: the "
                f"{self._engine.name} engine's host gateway is not an address of this machine "
                "(a remote, rootless or VM engine); run it as a container instead"
            )
        return gateway

    def _needs_network(self, rec: _Record) -> bool:
        """Whether a container must join the run's network: another container on the engine
        reaches it by name, or it reaches one (else it starts faster on the default bridge)."""
        if self._container_consumers(rec, on_engine=True):
            return True
        for dep in rec.dependencies():
            other = self._records.get(dep.name)
            if other is not None and other.is_container and not other.as_process:
                return True
        return False

    def _started(self, rec: _Record, exit_code: Callable[[], int | None]) -> None:
        """Mark a started resource Running, then watch its health until it stops."""
        rec.endpoint = self._endpoint_text(rec)
        self._set(rec, State.RUNNING, endpoint=rec.endpoint)
        probe = self._probe(rec)
        if probe is None:
            self._set(rec, State.RUNNING, Health.HEALTHY)
        self._watch(rec, probe, exit_code)

    def _endpoint_text(self, rec: _Record) -> str | None:
        """What status shows: the first endpoint, as a URL for HTTP and as host:port else."""
        for name, a in rec.allocated.items():
            if a.scheme in ("http", "https"):
                return f"{a.scheme}://localhost:{a.host_port}"
            del name
            return f"localhost:{a.host_port}"
        return None

    def _probe(self, rec: _Record) -> HealthCheck | None:
        """The resource's health checks as one function returning why the first failing one
        failed, or None when all pass (None instead of a function: healthy once running)."""
        checks = rec.runs.annotations_of(HealthCheckAnnotation)
        probes: list[HealthCheck] = []
        for check in checks:
            allocated = rec.allocated.get(check.endpoint)
            if allocated is None:
                continue  # e.g. a process stand-in exposes only its main endpoint
            probes.append(self._check(check, allocated.host_port))
        if not probes:
            return None

        def run_all() -> str | None:
            for p in probes:
                reason = p()
                if reason is not None:
                    return reason
            return None

        return run_all

    def _check(self, check: HealthCheckAnnotation, port: int) -> HealthCheck:
        """One health check against the endpoint's host port."""
        if check.kind == "tcp":
            return lambda: tcp_failure("127.0.0.1", port, TCP_CHECK_TIMEOUT)
        if check.kind == "http":
            path = check.path or "/"
            return lambda: http_failure("127.0.0.1", port, path, HTTP_CHECK_TIMEOUT)
        probe = check.probe
        assert probe is not None
        context = HealthProbeContext("127.0.0.1", port, self.parameter)

        def run_probe() -> str | None:
            # The type's own probe answers yes or no (its signature stays ``-> bool``).
            try:
                return None if probe(context) else "its health probe failed"
            except Exception as exc:
                return f"its health probe raised {type(exc).__name__}: {exc}"

        return run_probe

    def _run_provisioned(self, rec: _Record) -> None:
        annotation = rec.runs.annotation(ProvisioningAnnotation)
        assert annotation is not None
        self._set(rec, State.PROVISIONING)

        def status(text: str) -> None:
            self._set(rec, State.PROVISIONING, message=text)

        context = ProvisionContext(
            self.app.app_name,
            self.app.configuration,
            self.app.state.directory,
            status,
            self._stopping,
        )
        try:
            connection = annotation.provision(context)
        except ApphostError as exc:
            reason = getattr(exc, "reason", None) or str(exc)  # without the resource prefix
            self._set(rec, State.FAILED_TO_PROVISION, message=self.masker.mask(reason))
            return
        for secret in connection.secrets:
            self.masker.add(secret)
        rec.provisioned = connection
        self._set(rec, State.PROVISIONED, message=None)
        if connection.health is None:
            self._set(rec, State.RUNNING, Health.HEALTHY, endpoint=connection.endpoint)
            return
        # Healthy only once its data plane answers through the consumers' connection info.
        rec.endpoint = connection.endpoint
        self._set(rec, State.RUNNING, endpoint=connection.endpoint)
        self._watch(rec, connection.health, lambda: None)

    def _run_executable(self, rec: _Record) -> None:
        r = rec.runs
        executable = r.annotation(ExecutableAnnotation)
        assert executable is not None
        self._set(rec, State.STARTING)
        try:
            argv = executable.resolve()
        except ApphostError as exc:
            self._set(rec, State.FAILED_TO_START, message=self.masker.mask(str(exc)))
            return
        env = {**self._service_environment(rec, False), **self.injected_environment(rec.resource)}
        argv += self._arguments(r, self.context(in_container=False)) or []
        for e in r.annotations_of(EndpointAnnotation):
            port = e.port
            before = rec.allocated.get(e.name)
            if port is None and before is not None:
                # Started again: the port it had, which its dependents were told.
                port = before.host_port
                if not port_is_free(port):
                    self._set(
                        rec,
                        State.FAILED_TO_START,
                        message=f"host port {port}, which it had before (its dependents use "
                        "it), is in use now; stop what uses it, then start it again",
                    )
                    return
            elif port is not None and not port_is_free(port):
                self._set(
                    rec,
                    State.FAILED_TO_START,
                    message=f"host port {port} is already in use; stop what uses it or change "
                    f"{r.name}.with_http_endpoint(port=...)",
                )
                return
            port = port or free_port()
            if e.env:
                env[e.env] = str(port)
            rec.allocated[e.name] = _Allocated(port, port, e.scheme, False)
        for cb in r.annotations_of(EnvironmentCallbackAnnotation):
            env.update(cb.callback(self.context(in_container=False)))
        rec.environment = dict(env)
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **env}
        try:
            process = spawn(
                argv,
                str(executable.working_directory),
                full_env,
                lambda s, ln: self._on_line(rec, s, ln),
            )
        except OSError as exc:
            self._set(
                rec,
                State.FAILED_TO_START,
                message=self.masker.mask(f"could not start {argv[0]}: {exc}"),
            )
            return
        run: _Run = getattr(self._local, "run", None) or rec.run
        if not self._take_process(rec, process):
            return
        gateway = self._gateway_for(rec)
        if gateway:  # containers reach it through the gateway
            threading.Thread(
                target=self._forward,
                args=(rec, run, process, gateway, [a.host_port for a in rec.allocated.values()]),
                name=f"forward-{rec.name}",
                daemon=True,
            ).start()
        probe = self._probe(rec)
        if probe is None:
            # Nothing proves it works but that it keeps running: it counts as started (and
            # Healthy) only after a grace period, so one that exits at once fails the start.
            self._set(rec, State.RUNNING, endpoint=self._endpoint_text(rec))
            code = process.wait(START_GRACE_SECONDS)
            if code is None:
                self._set_health(rec, Health.HEALTHY, None)
                code = process.wait()
            process.join_output()
            self._finish(rec, code)
            return
        self._started(rec, process.exit_code)

    def _watch(
        self, rec: _Record, probe: HealthCheck | None, exit_code: Callable[[], int | None]
    ) -> None:
        """Poll health (fast until first healthy, then every few seconds) until the resource
        exits or the app stops; three failures in a row make it Unhealthy. A check failing for
        ``HEALTH_REASON_AFTER_SECONDS`` shows why (``health_reason``)."""
        run: _Run = getattr(self._local, "run", None) or rec.run
        started = time.monotonic()
        failures = 0
        failing_since: float | None = None
        while not self._stopping.is_set() and not run.halted:
            code = exit_code()
            if code is not None:
                if rec.process is not None:
                    rec.process.join_output()
                self._finish(rec, code)
                return
            checked = time.monotonic()
            reason = probe() if probe is not None else None
            if reason is None:
                failures = 0
                failing_since = None
                if rec.health is not Health.HEALTHY or rec.health_reason is not None:
                    self._set_health(rec, Health.HEALTHY, None)
            else:
                failures += 1
                now = time.monotonic()
                # Failing since the failed check began (a check that timed out took as long).
                failing_since = checked if failing_since is None else failing_since
                if rec.health is Health.HEALTHY and failures >= UNHEALTHY_AFTER_FAILURES:
                    self._set_health(rec, Health.UNHEALTHY, reason)
                elif (
                    rec.health is not Health.HEALTHY
                    and reason != rec.health_reason
                    and (
                        rec.health is Health.UNHEALTHY
                        or now - failing_since >= HEALTH_REASON_AFTER_SECONDS
                    )
                ):
                    self._set_health(rec, rec.health, reason)
            if rec.health is Health.HEALTHY:
                interval = 5.0
            else:
                interval = 0.01 if time.monotonic() - started < 2 else 0.2
            run.wake.wait(interval)

    def _set_health(self, rec: _Record, health: Health, reason: str | None) -> None:
        """Record a health check's outcome, while the resource runs and the app is not
        stopping (a stop may have marked it Stopping meanwhile)."""
        with self._cond:
            if rec.state is State.RUNNING and not self._stopping.is_set():
                self._set_locked(rec, State.RUNNING, health, health_reason=reason)

    def _finish(self, rec: _Record, code: int | None) -> None:
        state = State.FINISHED if code == 0 else State.EXITED
        # A container or stand-in that fails on its own is a broken dependency; one that
        # completes, or a service that exits, has no health left to report.
        failed = rec.handle is not None and code != 0
        health = Health.UNHEALTHY if failed else Health.UNKNOWN
        with self._cond:  # decided under the lock: a stop may be recording its own end
            stopped = (State.STOPPING, State.FINISHED, State.EXITED)
            if self._stopping.is_set() and rec.state in stopped:
                return
            self._set_locked(rec, state, health, exit_code=code, health_reason=None)

    # -- stopping -----------------------------------------------------------------------
    def _stop_one(self, rec: _Record) -> None:
        target = rec.handle or rec.process
        if target is None:
            return
        running = rec.state in (State.RUNNING, State.STARTING)
        if running:
            self._set(rec, State.STOPPING)
        try:
            if rec.handle is not None:
                rec.handle.stop(STOP_GRACE_SECONDS)
                code = rec.handle.exit_code()
            else:
                assert rec.process is not None
                code = rec.process.stop(STOP_GRACE_SECONDS)
        except Exception as exc:
            message = f"stopping {rec.name} failed: {self.masker.mask(str(exc))}"
            self.reporter.info(message)
            if running:  # never left Stopping: say what went wrong
                self._set(rec, State.EXITED, Health.UNKNOWN, message=message)
            return
        if running:  # a stopped resource has no health to report
            # Killed by the signals we sent it is a normal end, not a crash.
            normal = (0, None, -signal.SIGTERM, -signal.SIGKILL, 128 + signal.SIGTERM)
            state = State.FINISHED if code in normal else State.EXITED
            self._set(rec, state, Health.UNKNOWN, exit_code=code)

    # -- plumbing -----------------------------------------------------------------------
    def _on_line(self, rec: _Record, stream: str, line: str) -> None:
        rec.logs.append(line)
        self.reporter.log(rec.name, stream, line)
        if self.on_line is None:
            return
        try:
            self.on_line(rec.name, stream, line)
        except Exception as exc:  # the dashboard's buffer must never stop a service's output
            if not self._on_line_failed:
                self._on_line_failed = True
                self.reporter.info(f"console lines no longer reach the dashboard: {exc!r}")

    def _service_environment(self, rec: _Record, in_container: bool) -> dict[str, str]:
        """What a service gets before its own variables (``OTEL_*``): only a resource that
        sends telemetry (``OtlpExporterAnnotation``), so that Redis and other tools keep their
        configuration (a persistent container's would otherwise change per run)."""
        if all(r.annotation(OtlpExporterAnnotation) is None for r in (rec.resource, rec.runs)):
            return {}
        if self.service_environment is None:
            return {"OTEL_SERVICE_NAME": rec.runs.name}
        return dict(self.service_environment(rec.resource, in_container))

    def _exit_expected(self, rec: _Record) -> bool:
        """True when some resource waits for ``rec`` to complete with the code it exited with."""
        return any(
            w.kind == "completion" and w.target is rec.resource and w.exit_code == rec.exit_code
            for r in self.app.model.resources
            for w in r.waits
        )

    def _is_ready(self, rec: _Record) -> bool:
        """Settled for start-up: Running and Healthy, finished, exited as expected, stopped by
        a command, or held back only by command-stopped resources (never mid-restart)."""
        if rec.restarting:
            return False
        if rec.state is State.FINISHED:
            return True
        if rec.state is State.EXITED:
            return self._exit_expected(rec) or rec.stopped_by_command
        if rec.state is State.WAITING:
            return bool(rec.held_back_by)
        return rec.state is State.RUNNING and rec.health is Health.HEALTHY

    def _set(self, rec: _Record, state: State, health: Health | None = None, **fields: Any) -> None:
        with self._cond:
            self._set_locked(rec, state, health, **fields)

    def _set_locked(
        self, rec: _Record, state: State, health: Health | None = None, **fields: Any
    ) -> None:
        if self._superseded(rec):  # a halted or replaced run: a command decides its state now
            return
        before = rec.snapshot()
        if state is State.RUNNING and before.state is not State.RUNNING:
            rec.started_at = time.time()
        rec.state = state
        if health is not None:
            rec.health = health
        for key, value in fields.items():
            setattr(rec, key, value)
        if state is not before.state:
            if "message" not in fields:
                rec.message = None
            if "health_reason" not in fields:  # a new state: a former check's reason is stale
                rec.health_reason = None
        if state is not State.WAITING:
            rec.held_back_by = ()
        if state in NO_ENDPOINT:  # nothing listens there now
            rec.endpoint = None
        self._changed(rec, before)

    def _changed(self, rec: _Record, before: ResourceSnapshot) -> None:
        """Wake whoever waits on the lock and, when ``rec``'s snapshot differs from
        ``before``, count a new version and tell the reporter and ``on_change``."""
        after = rec.snapshot()
        self._cond.notify_all()
        if after != before:
            self._version += 1
            self.reporter.state_changed(after, [r.snapshot() for r in self._records.values()])
            if self.on_change is not None:
                self.on_change()


def _shorten(line: str, limit: int = REPORT_LINE_CHARS) -> str:
    """A log line as a failure report quotes it: at most ``limit`` characters."""
    if len(line) <= limit:
        return line
    return f"{line[:limit]}… ({len(line) - limit} more characters)"


def _image_ref(r: Resource) -> str:
    image = r.annotation(ContainerImageAnnotation)
    return image.reference if image is not None else ""


def _without_name(name: str, message: str) -> str:
    """A runtime's error without its leading ``cache:`` / ``resource 'cache':`` (the failure
    report names the resource already)."""
    for prefix in (f"{name}: ", f"resource {name!r}: "):
        if message.startswith(prefix):
            return message[len(prefix) :]
    return message
