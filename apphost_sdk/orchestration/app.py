"""``DistributedApplication``: the built app, run until Ctrl-C or driven programmatically."""

from __future__ import annotations

import datetime as _dt
import json
import os
import signal
import sys
import threading
import weakref
from collections.abc import Callable
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

import attrs

from ..errors import ApphostError, ResourceStartError
from ..masking import SecretMasker
from ..model.builder import DistributedApplicationBuilder, register_app_factory
from ..model.resources import Resource
from ..process_identity import process_start_time
from ..state import LOG_FILE, AppState, app_identity, running_status, state_root, write_private
from ..status import AppPhase, AppStatus, ResourceStatus
from .console import Reporter, make_reporter
from .dashboard_host import DashboardHost
from .orchestrator import Orchestrator
from .states import ResourceSnapshot

#: Set by the ``apphost`` CLI for commands (plan, provision, …) that need the built model
#: instead of a run: ``app.run()`` hands the app to it and exits with its return code.
_pending_command: Callable[[DistributedApplication], int] | None = None
#: Set once an app of this process is started or run; the CLI checks it to tell a user whose
#: app host file never calls ``builder.build().run()``.
run_called = False


def set_pending_command(command: Callable[[DistributedApplication], int] | None) -> None:
    """Make the next ``app.run()`` call ``command(app)`` instead of running the app."""
    global _pending_command
    _pending_command = command


def _install_error_hook() -> None:
    """Show our own errors (bad model, bad configuration) as one clear line, not a traceback:
    they name the fix, and the stack of the SDK's internals would only bury it."""
    previous = sys.excepthook
    if getattr(previous, "apphost_hook", False):
        return

    def hook(exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        if issubclass(exc_type, ApphostError):
            print(f"apphost: {exc}", file=sys.stderr)
        else:
            previous(exc_type, exc, tb)

    hook.apphost_hook = True  # type: ignore[attr-defined]
    sys.excepthook = hook


@attrs.frozen
class AppModel:
    """The validated resources of an app, in the order they were added."""

    resources: tuple[Resource, ...]

    def get(self, name: str) -> Resource:
        """The resource called ``name`` (case-insensitive)."""
        for r in self.resources:
            if r.name.casefold() == name.casefold():
                return r
        raise KeyError(f"no resource named {name!r}")


class DistributedApplication:
    """A built app host. ``run()`` runs until Ctrl-C/SIGTERM; ``start()``/``stop()`` (or
    ``with builder.build().start() as app:``) drive it from code and tests."""

    @staticmethod
    def create_builder(args: list[str] | None = None) -> DistributedApplicationBuilder:
        """Return a builder for the app host defined by the calling file.

        ``args`` are ``--Key=Value`` configuration overrides (default: ``sys.argv[1:]``).
        """
        caller = sys._getframe(1).f_code.co_filename
        path = Path(caller) if not caller.startswith("<") else Path.cwd()
        _install_error_hook()
        return DistributedApplicationBuilder(args, path.resolve(), DistributedApplication)

    def __init__(self, builder: DistributedApplicationBuilder) -> None:
        self.builder = builder
        self.model = AppModel(tuple(builder.resources))
        self.configuration = builder.configuration
        self.execution_context = builder.execution_context
        self.app_name, self.app_id = app_identity(builder.app_host_path)
        self.state = AppState(state_root() / self.app_id)
        self.state_dir = self.state.directory
        self.masker = SecretMasker()
        self._orchestrator: Orchestrator | None = None
        #: Set by run()'s signal handler: start() then stops waiting (see wait_until_settled).
        self._start_cancel: threading.Event | None = None
        self._reporter: Reporter | None = None
        #: The run's telemetry store, dashboard and control channel (see dashboard_host).
        self._host: DashboardHost | None = None
        self._status_lock = threading.Lock()
        self._status_seq = 0
        self._pid_start = process_start_time(os.getpid())
        self._status_written = 0
        self._phase = AppPhase.BUILT
        self._error: str | None = None

    # -- programmatic use ---------------------------------------------------------------
    def start(
        self, timeout: float | None = 120.0, quiet: bool = False, dashboard: bool = False
    ) -> DistributedApplication:
        """Start every resource and return once all are running and healthy.

        ``dashboard``: also serve the dashboard and its OTLP receiver (``run()`` does, unless
        ``--no-dashboard``); off by default here, as in Aspire's testing builder. The control
        channel (``apphost logs``, ``apphost resource``) is served either way.

        Raises ``ResourceStartError`` (after stopping everything) naming what failed, with its
        last log lines.
        """
        global run_called
        run_called = True
        if self._orchestrator is not None:
            raise ApphostError("this application is already started; call stop() first")
        if not self.execution_context.is_run_mode:
            raise ApphostError(
                "this app host is in publish mode (--publisher is set), which writes files and "
                "starts nothing: call run() to publish, or remove --publisher to start the app"
            )
        # One app host per app: the run lock, before anything starts or is written. It is held
        # until run() ends, the app is garbage-collected, or the process exits.
        if getattr(self, "_run_lock", None) is None:
            from .. import run_lock

            lock = run_lock.acquire(self.state.directory, self.app_name, self.builder.app_host_path)
            try:
                other = running_status(self.state.directory)  # one that predates the lock
                if other is not None and other.get("pid") != os.getpid():
                    raise run_lock.AlreadyRunningError(
                        run_lock.already_running_message(
                            self.app_name, self.builder.app_host_path, other["pid"]
                        ),
                        other["pid"],
                    )
            except BaseException:
                lock.release()
                raise
            self._run_lock: run_lock.RunLock | None = lock
            weakref.finalize(self, lock.release)
        self._reporter = make_reporter(self.masker, quiet=quiet)
        # In the background (``apphost start``) the output is the state folder's log: rotate it.
        self._reporter.rotate_log(self.state.directory / LOG_FILE)
        try:
            host = DashboardHost(
                self.configuration,
                list(self.builder.args) + ([] if dashboard else ["--no-dashboard"]),
                self.state.directory,
                self.app_id,
                self.masker,
                lambda: self.state.secret("otlp-api-key"),
                self._reporter.info,
            )
            host.bind()
        except BaseException as exc:  # a bad Dashboard:* setting, a taken port: nothing started
            if not isinstance(exc, KeyboardInterrupt):
                self._phase = AppPhase.FAILED
                self._error = str(exc)
                self._write_status()
            self._reporter.close()
            self._release_lock()
            raise
        self._host = host
        self._orchestrator = Orchestrator(
            self,
            self._reporter,
            self.masker,
            self._write_status,
            on_line=host.on_line,
            service_environment=host.service_environment,
        )
        host.start(self._orchestrator)
        host.announce(detached=os.environ.get("APPHOST_DETACHED") == "1", quiet=quiet)
        self._phase = AppPhase.STARTING
        self._write_status()
        try:
            self._orchestrator.start()
            ready = self._orchestrator.wait_until_settled(timeout, self._start_cancel)
        except BaseException as exc:  # never leave a half-started app (or a "starting" status)
            if not isinstance(exc, KeyboardInterrupt):
                self._phase = AppPhase.FAILED
                self._error = str(exc)
            self.stop()
            raise
        if not ready:
            failures = self._orchestrator.failure_report()
            if not failures:
                waiting = self._orchestrator.not_ready()
                failures = f"not ready after {timeout:g} s: {', '.join(waiting)} still not healthy"
            self._error = failures
            self._phase = AppPhase.FAILED
            self._write_status()
            self.stop()
            raise ResourceStartError(failures)
        self._phase = AppPhase.READY
        self._write_status()
        if not quiet:
            self._reporter.info("all resources are running; press Ctrl-C to stop")
        # What happened so far is on screen when start() returns (bounded: never waits long
        # on a slow reader of the output).
        self._reporter.flush()
        return self

    def stop(self) -> None:
        """Stop every resource (dependents first) and release what the run created."""
        orch = self._orchestrator
        if orch is None:
            return
        if self._phase is not AppPhase.FAILED:
            self._phase = AppPhase.STOPPING
        self._write_status()
        try:
            orch.stop()
        finally:
            self._orchestrator = None
            if self._host is not None:
                self._host.stop()
            if self._phase is not AppPhase.FAILED:
                self._phase = AppPhase.STOPPED
            self._write_status()
            self._host = None
            if self._reporter is not None:
                self._reporter.close()
            self._release_lock()

    def _release_lock(self) -> None:
        lock = getattr(self, "_run_lock", None)
        if lock is not None:  # another process may start the app now
            self._run_lock = None
            lock.release()

    def __enter__(self) -> DistributedApplication:
        if self._orchestrator is None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _orch(self) -> Orchestrator:
        if self._orchestrator is None:
            raise ApphostError("the application is not running; call start() first")
        return self._orchestrator

    def snapshots(self) -> list[ResourceSnapshot]:
        """State, health and endpoint of every resource."""
        return self._orch().snapshots()

    def connection_string(self, name: str) -> str | None:
        """The connection string a reference to ``name`` injects (as a host process sees it)."""
        orch = self._orch()
        rec = orch.record(name)
        return orch.reference_environment(rec.name, rec.name).get(f"ConnectionStrings__{rec.name}")

    def environment_for(self, name: str) -> dict[str, str]:
        """The variables the resource ``name`` was (or would be) started with, injected part."""
        orch = self._orch()
        rec = orch.record(name)
        return dict(rec.environment) or orch.injected_environment(rec.resource)

    # -- run ----------------------------------------------------------------------------
    def run(self) -> None:
        """Run until Ctrl-C or SIGTERM; exit non-zero naming the resource when one fails.

        Exit codes: 0 once stopped by SIGTERM, 130 by Ctrl-C (SIGINT), 1 when the app failed
        to start (or another app host already runs it).
        """
        global run_called
        run_called = True
        if _pending_command is not None:
            raise SystemExit(_pending_command(self))
        # `python apphost.py --help` (or -h): the usage, and nothing runs or is provisioned.
        argv = sys.argv
        if (
            argv
            and {"-h", "--help"}.intersection(argv[1:])
            and Path(argv[0]).resolve() == self.builder.app_host_path
        ):
            print(
                f"usage: python {argv[0]} [-h] [--no-dashboard] [--publisher "
                "manifest|docker-compose --output-path DIR] [--Key=Value | --Key Value ...]\n\n"
                "Run the app in the foreground until Ctrl-C (exit 130) or SIGTERM (exit 0); the "
                "same as `apphost run`.\nWith --publisher, write the app's deployment files "
                "into DIR instead and exit (the same as `apphost publish`).\nOther options are "
                "configuration for the app host (--Key=Value or --Key Value).\n"
                "--no-dashboard serves no dashboard (and no OTLP receiver).\nSee "
                "`apphost --help` for the other commands."
            )
            raise SystemExit(0)
        if self.execution_context.is_publish_mode:
            raise SystemExit(self._publish())
        stop_requested = threading.Event()
        signals: list[int] = []
        starting = True

        def on_signal(signum: int, frame: FrameType | None) -> None:
            signals.append(signum)
            stop_requested.set()
            # A start-up waiting on a resource (forever, maybe) notices the event within
            # 0.2 s and raises KeyboardInterrupt itself, at a safe point. Before that wait
            # begins (the run lock, the orchestrator's threads) raise at once.
            if starting and self._orchestrator is None:
                raise KeyboardInterrupt

        previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        self._start_cancel = stop_requested
        try:
            try:
                self.start(timeout=None, quiet=False, dashboard=True)
            except KeyboardInterrupt:
                if not signals:  # not from our handler: Python's own Ctrl-C
                    signals.append(signal.SIGINT)
            except ResourceStartError as exc:
                print(f"apphost: {exc}", file=sys.stderr)
                raise SystemExit(1) from None
            except ApphostError as exc:
                print(f"apphost: {self.masker.mask(str(exc))}", file=sys.stderr)
                raise SystemExit(1) from None
            starting = False
            while not stop_requested.wait(0.5):
                pass
            if self._reporter is not None:
                self._reporter.info("stopping…")
        finally:
            starting = False
            try:
                self.stop()
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)
                lock = getattr(self, "_run_lock", None)
                if lock is not None:
                    self._run_lock = None
                    lock.release()
        # Ctrl-C: 130, as shells report an interrupted command; SIGTERM (`apphost stop`, a
        # supervisor) asks for a clean stop, which this was: 0.
        raise SystemExit(130 if signal.SIGINT in signals else 0)

    def _publish(self) -> int:
        """Publish mode (``--publisher P --output-path DIR``): write the files, list them and
        return the exit code (1 with one line naming the fix when publishing fails)."""
        from ..publishing import check_publisher, publish

        publisher = self.configuration.get_str("publisher") or ""
        output = self.configuration.get_str("output-path")
        try:
            check_publisher(publisher)
            if not output:
                raise ApphostError(
                    f"publishing needs an output folder: add --output-path DIR after "
                    f"--publisher {publisher}"
                )
            written = publish(self, output, publisher)
        except ApphostError as exc:
            print(f"apphost: {self.masker.mask(str(exc))}", file=sys.stderr)
            return 1
        for path in written:
            print(f"wrote {path}")
        return 0

    # -- status file --------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """The JSON-ready status of this run, secrets in ``environment`` left in (the file is
        0600); ``environmentMasked`` is safe to show."""
        orch = self._orchestrator
        resources = []
        if orch is not None:
            for snap in orch.snapshots():
                injected = orch.reference_environment(snap.name, snap.name)
                item = snap.to_json()
                if snap.message:
                    item["message"] = self.masker.mask(snap.message)
                if snap.health_reason:
                    item["healthReason"] = self.masker.mask(snap.health_reason)
                resources.append(ResourceStatus(item, injected, self.masker.mask_mapping(injected)))
        status = AppStatus(
            app=self.app_name,
            app_id=self.app_id,
            app_host=str(self.builder.app_host_path),
            pid=os.getpid(),
            pid_start=self._pid_start,
            phase=self._phase,
            error=self.masker.mask(self._error) if self._error else None,
            updated=_dt.datetime.now(_dt.timezone.utc).isoformat(),
            resources=resources,
        ).to_json()
        # The dashboard's URLs; the login URL and OTLP key are secrets, kept here because this
        # file is 0600 (``apphost status`` masks them unless --show-secrets).
        host = self._host
        status["dashboard"] = host.status() if host is not None else None
        return status

    def _write_status(self) -> None:
        # Build the status before taking the file lock (it takes the orchestrator's lock, which
        # state changes hold while calling here), and never write an older one over a newer.
        with self._status_lock:
            self._status_seq += 1
            seq = self._status_seq
        text = json.dumps(self.status(), indent=2)
        with self._status_lock:
            if seq < self._status_written:
                return
            self._status_written = seq
            try:
                write_private(self.state.status_file, text)
            except OSError:
                pass


register_app_factory(DistributedApplication)
