"""The orchestrator: starts resources in parallel as their waits are met, watches their health,
and stops them in reverse dependency order.

One thread per resource waits on a shared condition for its dependencies, then starts the
resource through its runtime (``redis-server`` process or container, child process, Azure
provisioning). Everything the console, status file and CLI show comes from ``snapshots()``.
"""

from __future__ import annotations

import collections
import os
import shutil
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ApphostError, ImageUnavailableError
from ..masking import SecretMasker
from ..model.connection import (
    RedisEndpoint,
    connection_string_environment,
    service_environment,
)
from ..model.resources import (
    DEFAULT_REDIS_IMAGE,
    AzureRedisResource,
    ConnectionStringResource,
    ExecutableResource,
    ParameterResource,
    PythonAppResource,
    RedisResource,
    Resource,
    Wait,
)
from ..model.validation import redis_in_run_mode
from ..runtimes.base import ContainerHandle, ContainerRuntime, ContainerSpec
from ..runtimes.health import free_port, port_is_free, redis_ping, tcp_accepts
from ..runtimes.process import ProcessRuntime
from ..runtimes.subprocesses import ManagedProcess, spawn
from .console import Reporter
from .states import Health, ResourceSnapshot, State

if TYPE_CHECKING:
    from .app import DistributedApplication

STOP_GRACE_SECONDS = 10.0
UNHEALTHY_AFTER_FAILURES = 3


class _Record:
    """Mutable run-time bookkeeping of one resource (guarded by the orchestrator's lock)."""

    def __init__(self, resource: Resource) -> None:
        self.resource = resource
        self.name = resource.name
        self.kind = resource.kind
        self.state = State.NOT_STARTED
        self.health = Health.UNKNOWN
        self.endpoint: str | None = None
        self.exit_code: int | None = None
        self.message: str | None = None
        self.runtime: str | None = None
        self.logs: collections.deque[str] = collections.deque(maxlen=40)
        #: What a reference to this resource resolves to, once known.
        self.connection: RedisEndpoint | str | None = None
        self.http_url: str | None = None
        #: The environment this resource was started with (injected part only).
        self.environment: dict[str, str] = {}
        self.handle: ContainerHandle | None = None
        self.process: ManagedProcess | None = None
        self.thread: threading.Thread | None = None
        #: The dependency whose failure kept this resource from starting.
        self.blocked_by: str | None = None

    def injects(self, connection_name: str) -> dict[str, str]:
        """The variables a reference to this resource injects under ``connection_name``."""
        if isinstance(self.connection, RedisEndpoint):
            return self.connection.environment(connection_name)
        if isinstance(self.connection, str):
            return connection_string_environment(connection_name, self.connection)
        if self.http_url is not None:
            return service_environment(connection_name, self.http_url)
        return {}

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
        )


class Orchestrator:
    """Runs one built application (see ``DistributedApplication.start``)."""

    def __init__(
        self,
        app: DistributedApplication,
        reporter: Reporter,
        masker: SecretMasker,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self.app = app
        self.reporter = reporter
        self.masker = masker
        self.on_change = on_change
        self.session_id = uuid.uuid4().hex[:12]
        self._cond = threading.Condition()
        self._stopping = threading.Event()
        self._records: dict[str, _Record] = {}
        self._runtime: ContainerRuntime | None = None
        self._specs: dict[str, ContainerSpec] = {}
        self._parameters: dict[str, str] = {}
        for r in app.model.resources:
            if not isinstance(r, ParameterResource):
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

    def start(self) -> None:
        """Resolve values, prepare runtimes, and start a thread per resource."""
        self.reporter.set_resources(list(self._records))
        self._resolve_parameters()
        self._prepare_containers()
        for rec in self._records.values():
            rec.thread = threading.Thread(
                target=self._run_resource, args=(rec,), name=f"resource-{rec.name}", daemon=True
            )
            rec.thread.start()

    def wait_until_settled(self, timeout: float | None = None) -> bool:
        """Wait until every resource is ready (Running+Healthy, or Finished) or something
        failed. Returns True when all are ready."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while True:
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
            if r.state.is_failure or (r.state is State.EXITED and not self._exit_expected(r))
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
                lines += [f"    {t}" for t in tail]
        return self.masker.mask("\n".join(lines))

    def stop(self) -> None:
        """Stop every resource, dependents before what they depend on."""
        self._stopping.set()
        with self._cond:
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
        for rec in self._records.values():
            if rec.thread is not None and rec.thread is not threading.current_thread():
                rec.thread.join(max(0.0, deadline - time.monotonic()))
        if self._runtime is not None:
            try:
                self._runtime.close()
            except Exception as exc:  # cleanup must go on
                self.reporter.info(f"closing the {self._runtime.name} runtime failed: {exc}")

    # -- values -------------------------------------------------------------------------
    def _resolve_parameters(self) -> None:
        config = self.app.configuration
        for r in self.app.model.resources:
            if not isinstance(r, ParameterResource):
                continue
            value = r.explicit_value
            if value is None:
                value = config.get_str(f"Parameters:{r.name}")
            if value is None and r.secret:
                value = self.app.state.secret(f"parameter:{r.name}")
            if value is not None:
                self._parameters[r.name] = value
                if r.secret:
                    self.masker.add(value)

    def _value(self, v: str | ParameterResource) -> str:
        if isinstance(v, ParameterResource):
            return self._parameters.get(v.name, "")
        return v

    def _redis_password(self, redis: RedisResource) -> str | None:
        if not redis.password_enabled:
            return None
        if redis.password_parameter is not None:
            pw = self._parameters.get(redis.password_parameter.name)
        else:
            pw = self.app.state.secret(f"{redis.name}-password")
        self.masker.add(pw)
        return pw

    # -- containers ---------------------------------------------------------------------
    def _prepare_containers(self) -> None:
        hash_key: str | None = None
        for rec in self._records.values():
            redis = redis_in_run_mode(rec.resource)
            if redis is None:
                continue
            self._specs[rec.name] = ContainerSpec(
                app_id=self.app.app_id,
                app_name=self.app.app_name,
                session_id=self.session_id,
                resource_name=redis.name,
                image=redis.image,
                tag=redis.tag,
                state_dir=self.app.state.directory,
                host_port=redis.host_port,
                password=self._redis_password(redis),
                environment={k: self._value(v) for k, v in redis.environment.items()},
                args=tuple(redis.args),
                persistence=redis.persistence,
                data_volume=redis.data_volume,  # "": the runtime derives a per-app name
                bind_mount=redis.bind_mount,
                lifetime=redis.lifetime,
                hash_key=hash_key or (hash_key := self.app.state.secret("config-hash-key")),
            )
        if not self._specs:
            return
        from ..runtimes.selection import select_runtime

        try:
            self._runtime = select_runtime(self.reporter.info)
            self.reporter.info(f"running Redis with {self._runtime.describe()}")
            for removed in self._runtime.cleanup_orphans():
                self.reporter.info(f"removed {removed} left behind by an earlier app host")
            try:
                self._runtime.prepare(list(self._specs.values()), self.reporter.info)
            except ImageUnavailableError as exc:
                if not self._may_fall_back_to_processes():
                    raise
                self.reporter.info(
                    f"{exc}; APPHOST_CONTAINER_RUNTIME is auto, so Redis runs as local "
                    "redis-server processes instead"
                )
                self._runtime.close()
                self._runtime = ProcessRuntime()
                self._runtime.prepare(list(self._specs.values()), self.reporter.info)
        except ApphostError as exc:
            self._runtime = None
            for name in self._specs:
                self._set(
                    self._records[name], State.FAILED_TO_START, message=self.masker.mask(str(exc))
                )

    def _may_fall_back_to_processes(self) -> bool:
        """Under ``auto``, an engine that cannot get the stock Redis image (offline, no
        registry) is no reason to fail: a local redis-server is the same server. A custom
        image (modules, another version) is never silently replaced."""
        from ..runtimes.selection import requested_runtime

        stock = all(s.image == DEFAULT_REDIS_IMAGE for s in self._specs.values())
        return stock and requested_runtime() == "auto"

    # -- per-resource thread ------------------------------------------------------------
    def _run_resource(self, rec: _Record) -> None:
        try:
            if rec.state.is_failure:
                return
            if not self._wait_for_dependencies(rec):
                return
            r = rec.resource
            if rec.name in self._specs:
                self._run_redis(rec)
            elif isinstance(r, ExecutableResource):
                self._run_executable(rec, r)
            elif isinstance(r, ConnectionStringResource):
                value = self.app.configuration.get_str(f"ConnectionStrings:{r.name}")
                self.masker.add_connection_string(value)  # usually carries credentials
                rec.connection = value
                self._set(rec, State.RUNNING, Health.HEALTHY, endpoint="(connection string)")
            elif isinstance(r, AzureRedisResource):
                self._run_azure(rec, r)
        except Exception as exc:  # a bug must not hang the app: report it on the resource
            self._set(
                rec, State.FAILED_TO_START, message=self.masker.mask(f"{type(exc).__name__}: {exc}")
            )

    def _dep_status(self, rec: _Record, target: Resource, wait: Wait | None) -> str:
        """'ok', 'wait' or 'failed' for one dependency of ``rec``."""
        dep = self._records[target.name]
        kind = wait.kind if wait is not None else "start"
        if kind == "completion":
            if dep.state in (State.EXITED, State.FINISHED):
                return "ok" if dep.exit_code == (wait.exit_code if wait else 0) else "failed"
            return "failed" if dep.state.is_failure else "wait"
        if dep.state.is_failure or dep.state in (State.EXITED, State.FINISHED):
            return "failed"
        if dep.state is State.RUNNING and (kind == "start" or dep.health is Health.HEALTHY):
            return "ok"
        return "wait"

    def _wait_for_dependencies(self, rec: _Record) -> bool:
        r = rec.resource
        items: list[tuple[Resource, Wait | None, bool]] = [(w.target, w, False) for w in r.waits]
        items += [(ref.target, None, ref.optional) for ref in r.references]
        if not items:
            return True
        self._set(rec, State.WAITING)
        with self._cond:
            while True:
                pending = False
                for target, wait, optional in items:
                    status = self._dep_status(rec, target, wait)
                    if status == "failed":
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
                    if status == "wait":
                        pending = True
                if not pending:
                    return True
                # Checked after the dependencies, so a failed one is reported as the cause
                # even when the failure is also what stops the app.
                if self._stopping.is_set():
                    return False
                self._cond.wait(0.5)

    def _run_redis(self, rec: _Record) -> None:
        spec = self._specs[rec.name]
        assert self._runtime is not None
        rec.runtime = self._runtime.name
        self._set(rec, State.STARTING)
        try:
            handle = self._runtime.start(spec, lambda s, line: self._on_line(rec, s, line))
        except ApphostError as exc:
            message = _without_name(rec.name, str(exc))
            self._set(rec, State.FAILED_TO_START, message=self.masker.mask(message))
            return
        with self._cond:
            rec.handle = handle
            stopping = self._stopping.is_set()
        if stopping:  # stop() may have passed this resource already: never leave it running
            handle.stop(STOP_GRACE_SECONDS)
            return
        rec.connection = RedisEndpoint("localhost", handle.host_port, spec.password)
        self._set(rec, State.RUNNING, endpoint=f"localhost:{handle.host_port}")

        def probe() -> bool:
            return redis_ping(handle.host, handle.host_port, spec.password, timeout=1.0)

        self._watch(rec, probe, lambda: handle.exit_code())

    def _run_azure(self, rec: _Record, r: AzureRedisResource) -> None:
        self._set(rec, State.PROVISIONING)
        try:
            from provisioning.app_model import requests_from_app
            from provisioning.run_mode import provision_for_run
        except ImportError as exc:
            self._set(
                rec,
                State.FAILED_TO_PROVISION,
                message=f"Azure provisioning is not available ({exc}); call "
                f"{r.name}.run_as_container() to run a local Redis instead",
            )
            return
        requests = [q for q in requests_from_app(self.app) if q.resource_name == r.name]

        def status(name: str, text: str) -> None:
            if text != "Provisioned":  # the state itself follows once outputs are read
                self._set(rec, State.PROVISIONING, message=text)

        try:
            outputs = provision_for_run(
                requests,
                self.app.configuration,
                self.app.state.directory,
                self.app.app_name,
                status,
                cancel=self._stopping,
            )[r.name]
        except ApphostError as exc:
            reason = getattr(exc, "reason", None) or str(exc)  # without the resource prefix
            self._set(rec, State.FAILED_TO_PROVISION, message=self.masker.mask(reason))
            return
        password = getattr(outputs, "password", None)
        self.masker.add(password)
        self.masker.add_connection_string(outputs.connection_string)
        rec.connection = RedisEndpoint(
            outputs.host_name,
            outputs.ssl_port,
            password,
            tls=True,
            fixed_connection_string=outputs.connection_string,
        )
        self._set(rec, State.PROVISIONED, message=None)
        self._set(
            rec, State.RUNNING, Health.HEALTHY, endpoint=f"{outputs.host_name}:{outputs.ssl_port}"
        )

    def _executable_argv(self, r: ExecutableResource) -> list[str]:
        cwd = Path(r.working_directory)
        if not cwd.is_dir():
            raise ApphostError(f"working directory {cwd} does not exist; create it or fix the path")
        if isinstance(r, PythonAppResource):
            script = cwd / r.command
            if not script.is_file():
                raise ApphostError(f"script {script} does not exist; fix add_python_app()")
            venv = cwd / ".venv" / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
            interpreter = str(venv) if venv.exists() else sys.executable
            return [interpreter, "-u", str(script), *r.args]
        command = r.command
        if os.sep not in command:
            found = shutil.which(command)
            if found is None:
                raise ApphostError(f"command {command!r} was not found on PATH; install it")
            command = found
        elif not os.path.isabs(command):
            command = str(cwd / command)
        return [command, *r.args]

    def injected_environment(self, r: Resource) -> dict[str, str]:
        """The variables this resource receives from references and ``with_environment``."""
        env: dict[str, str] = {}
        with self._cond:
            for ref in r.references:
                env.update(self._records[ref.target.name].injects(ref.connection_name))
        for k, v in r.environment.items():
            env[k] = self._value(v)
        return env

    def _run_executable(self, rec: _Record, r: ExecutableResource) -> None:
        self._set(rec, State.STARTING)
        try:
            argv = self._executable_argv(r)
        except ApphostError as exc:
            self._set(rec, State.FAILED_TO_START, message=self.masker.mask(str(exc)))
            return
        env = self.injected_environment(r)
        env.setdefault("OTEL_SERVICE_NAME", r.name)
        port: int | None = None
        if r.http_endpoint is not None:
            port = r.http_endpoint.port
            if port is not None and not port_is_free(port):
                self._set(
                    rec,
                    State.FAILED_TO_START,
                    message=f"host port {port} is already in use; stop what uses it or change "
                    f"{r.name}.with_http_endpoint(port=...)",
                )
                return
            port = port or free_port()
            env[r.http_endpoint.env] = str(port)
            rec.http_url = f"http://localhost:{port}"
        rec.environment = dict(env)
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **env}
        try:
            process = spawn(
                argv, r.working_directory, full_env, lambda s, ln: self._on_line(rec, s, ln)
            )
        except OSError as exc:
            self._set(
                rec,
                State.FAILED_TO_START,
                message=self.masker.mask(f"could not start {argv[0]}: {exc}"),
            )
            return
        with self._cond:
            rec.process = process
            stopping = self._stopping.is_set()
        if stopping:  # stop() may have passed this resource already: never leave it running
            process.stop(STOP_GRACE_SECONDS)
            return
        rec.runtime = f"pid {process.pid}"
        self._set(rec, State.RUNNING, endpoint=rec.http_url)
        if r.http_endpoint is None:
            self._set(rec, State.RUNNING, Health.HEALTHY)
            code = process.wait()
            process.join_output()
            self._finish(rec, code)
            return
        path = r.http_endpoint.health_path
        assert port is not None
        bound_port = port

        def probe() -> bool:
            if path is None:
                return tcp_accepts("127.0.0.1", bound_port)
            import urllib.request

            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{bound_port}{path}", timeout=2
                ) as resp:
                    return 200 <= int(resp.status) < 300
            except OSError:
                return False

        self._watch(rec, probe, process.exit_code)

    def _watch(
        self, rec: _Record, probe: Callable[[], bool], exit_code: Callable[[], int | None]
    ) -> None:
        """Poll health (fast until first healthy, then every few seconds) until the resource
        exits or the app stops; three failures in a row make it Unhealthy."""
        started = time.monotonic()
        failures = 0
        while not self._stopping.is_set():
            code = exit_code()
            if code is not None:
                if rec.process is not None:
                    rec.process.join_output()
                self._finish(rec, code)
                return
            ok = probe()
            if ok:
                failures = 0
                if rec.health is not Health.HEALTHY:
                    self._set(rec, State.RUNNING, Health.HEALTHY)
            else:
                failures += 1
                if rec.health is Health.HEALTHY and failures >= UNHEALTHY_AFTER_FAILURES:
                    self._set(rec, State.RUNNING, Health.UNHEALTHY)
            if rec.health is Health.HEALTHY:
                interval = 5.0
            else:
                interval = 0.01 if time.monotonic() - started < 2 else 0.2
            self._stopping.wait(interval)

    def _finish(self, rec: _Record, code: int | None) -> None:
        state = State.FINISHED if code == 0 else State.EXITED
        # A Redis that exits on its own is a broken dependency; a service that exits has no
        # health left to report.
        health = Health.UNHEALTHY if rec.name in self._specs else Health.UNKNOWN
        with self._cond:  # decided under the lock: a stop may be recording its own end
            stopped = (State.STOPPING, State.FINISHED, State.EXITED)
            if self._stopping.is_set() and rec.state in stopped:
                return
            self._set_locked(rec, state, health, exit_code=code)

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
            self.reporter.info(f"stopping {rec.name} failed: {self.masker.mask(str(exc))}")
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

    def _exit_expected(self, rec: _Record) -> bool:
        """True when some resource waits for ``rec`` to complete with the code it exited with."""
        return any(
            w.kind == "completion" and w.target is rec.resource and w.exit_code == rec.exit_code
            for r in self.app.model.resources
            for w in r.waits
        )

    def _is_ready(self, rec: _Record) -> bool:
        if rec.state is State.FINISHED:
            return True
        if rec.state is State.EXITED:
            return self._exit_expected(rec)
        return rec.state is State.RUNNING and rec.health is Health.HEALTHY

    def _set(self, rec: _Record, state: State, health: Health | None = None, **fields: Any) -> None:
        with self._cond:
            self._set_locked(rec, state, health, **fields)

    def _set_locked(
        self, rec: _Record, state: State, health: Health | None = None, **fields: Any
    ) -> None:
        before = rec.snapshot()
        rec.state = state
        if health is not None:
            rec.health = health
        for key, value in fields.items():
            setattr(rec, key, value)
        if "message" not in fields and state is not before.state:
            rec.message = None
        after = rec.snapshot()
        self._cond.notify_all()
        if after != before:
            self.reporter.state_changed(after, [r.snapshot() for r in self._records.values()])
            if self.on_change is not None:
                self.on_change()


def _without_name(name: str, message: str) -> str:
    """A runtime's error without its leading ``cache:`` / ``resource 'cache':`` (the failure
    report names the resource already)."""
    for prefix in (f"{name}: ", f"resource {name!r}: "):
        if message.startswith(prefix):
            return message[len(prefix) :]
    return message
