"""``apphost``: run, start, stop and inspect app hosts; provision and destroy Azure resources."""

from __future__ import annotations

import argparse
import json
import math
import re
import runpy
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from .. import __version__
from ..control.protocol import SINCE_HELP
from ..errors import ApphostError
from ..state import LOG_FILE, app_identity, running_status, running_statuses
from ..status import AppPhase, phase_of

USAGE = "apphost [-h] [--version] COMMAND [APPHOST.py] [options]"

COMMANDS_HELP = """commands:
  run APPHOST.py         run the app in the foreground until Ctrl-C (same as python APPHOST.py)
  start APPHOST.py       start it in the background; exit 0 once every resource is healthy
  stop APPHOST.py        stop an app started with `apphost start`
  status [APPHOST.py]    show the resources of running app hosts (and the dashboard's URL)
  resource APPHOST.py NAME start|stop|restart
                         start, stop or restart one resource of a running app
  logs APPHOST.py [NAME] [-f] [--since 10m]
                         print the console output of a running app's resources (or one's)
  down [APPHOST.py]      remove containers, networks (and with --volumes, volumes) it created
  plan APPHOST.py        show which Azure resources would be created, updated or left alone
  provision APPHOST.py   provision the app's Azure resources and print their outputs
  destroy APPHOST.py     delete the Azure resources this app created
  publish APPHOST.py -o DIR
                         write the app's deployment files (an Aspire manifest with Bicep
                         modules, or with --publisher docker-compose a Compose app)
"""

EPILOG = """`apphost COMMAND --help` shows a command's options. Other --Key=Value or --Key Value
options after APPHOST.py are configuration for the app host (e.g. --Azure:Location=westus).
Exit codes: 0 success, 1 failure (the reason on stderr), 2 usage error, 130 interrupted."""

#: What ``--no-dashboard`` (on ``run`` and ``start``) hands the app host.
NO_DASHBOARD_SETTING = "--Dashboard:Enabled=false"
NO_DASHBOARD_HELP = (
    "serve no dashboard (nor OTLP receiver); `apphost logs` and `apphost resource` still work"
)

CONFIG_EPILOG = (
    "Other --Key=Value or --Key Value options are configuration for the app host "
    "(e.g. --Azure:Location=westus); of those, only -h and --help belong to apphost."
)


def _app_host(value: str) -> Path:
    try:
        path = Path(value).expanduser()
    except RuntimeError:  # ~user that does not exist
        raise ApphostError(f"{value}: cannot expand '~'; give a full path") from None
    try:
        if path.is_dir():
            path = path / "apphost.py"
        found = path.is_file()
    except OSError as exc:  # a name too long, a folder we may not read...
        raise ApphostError(
            f"{value}: cannot read it ({exc.strerror or exc}); give the path to your apphost.py"
        ) from None
    if not found:
        raise ApphostError(f"{value}: no such app host file (give the path to your apphost.py)")
    if path.suffix != ".py":
        raise ApphostError(f"{value} is not a Python file; give the path to your apphost.py")
    return path.resolve()


def _run_path(app_host: Path, args: Sequence[str]) -> int:
    """Run the app host file as ``__main__`` with ``args`` as its arguments."""
    from ..orchestration import app as app_module

    old_argv, old_path = sys.argv, list(sys.path)
    sys.argv = [str(app_host), *args]
    sys.path.insert(0, str(app_host.parent))
    app_module.run_called = False
    try:
        runpy.run_path(str(app_host), run_name="__main__")
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            return exc.code or 0
        print(exc.code, file=sys.stderr)  # sys.exit("message"), as Python itself shows it
        return 1
    finally:
        sys.argv, sys.path[:] = old_argv, old_path
    if not app_module.run_called:
        raise ApphostError(f"{app_host} never called builder.build().run(); end it with that call")
    return 0


def _with_model(app_host: Path, command: Callable[[Any], int], args: Sequence[str]) -> int:
    """Run the app host so that ``builder.build().run()`` hands the built app to ``command``."""
    from ..orchestration.app import set_pending_command

    called: list[bool] = []

    def run_command(app: Any) -> int:
        called.append(True)
        return command(app)

    set_pending_command(run_command)
    try:
        code = _run_path(app_host, args)
    finally:
        set_pending_command(None)
    if not called:
        raise ApphostError(f"{app_host} never called builder.build().run(); end it with that call")
    return code


def _masked_resources(status: dict[str, Any], show_secrets: bool) -> list[dict[str, Any]]:
    out = []
    for r in status.get("resources", []):
        item = {k: v for k, v in r.items() if k not in ("injects", "injectsMasked")}
        item["environment"] = r.get("injects") if show_secrets else r.get("injectsMasked")
        out.append(item)
    return out


def _mask_login_url(url: str) -> str:
    """A login URL with its token (``t=``) replaced by ``***``."""
    return re.sub(r"([?&]t=)[^&#]*", r"\1***", url)


def _public_dashboard(status: dict[str, Any], show_secrets: bool) -> dict[str, Any] | None:
    """The dashboard's URLs; the login token and the OTLP key masked unless ``show_secrets``."""
    dashboard = status.get("dashboard")
    if not isinstance(dashboard, dict):
        return None
    out = dict(dashboard)
    if not show_secrets:
        if isinstance(out.get("loginUrl"), str):
            out["loginUrl"] = _mask_login_url(out["loginUrl"])
        if out.get("otlpApiKey"):
            out["otlpApiKey"] = "***"
    return out


def _public_status(status: dict[str, Any], show_secrets: bool) -> dict[str, Any]:
    return {
        "app": status.get("app"),
        "appHost": status.get("appHost"),
        "pid": status.get("pid"),
        "phase": status.get("phase"),
        "error": status.get("error"),
        "dashboard": _public_dashboard(status, show_secrets),
        "resources": _masked_resources(status, show_secrets),
    }


def _print_table(status: dict[str, Any], show_secrets: bool = False) -> None:
    """One app host's status as text; the dashboard's URL, or with ``show_secrets`` its login
    URL with the token (the one the background log points users to)."""
    header = f"{status.get('app')} (pid {status.get('pid')}, {status.get('phase')})"
    print(f"{header}: {status.get('appHost')}")
    dashboard = status.get("dashboard")
    if isinstance(dashboard, dict):
        url = dashboard.get("loginUrl") if show_secrets else None
        url = url or dashboard.get("url")
        if url:
            print(f"  dashboard: {url}")
    for r in status.get("resources", []):
        if not isinstance(r, dict):
            continue
        health = r.get("health") if r.get("health") != "Unknown" else ""
        why = r.get("healthReason")
        if r.get("heldBackBy"):  # "held back: cache was stopped" (masked by the app host)
            why = r.get("message") or why
        elif r.get("stoppedByCommand"):
            why = "stopped by a command"
        print(
            f"  {r.get('name', '?'):<20} {r.get('kind', ''):<14} {r.get('state', '?'):<14} "
            f"{health or '':<10} {r.get('endpoint') or ''}" + (f"  ({why})" if why else "")
        )


def cmd_start(ns: argparse.Namespace, rest: list[str]) -> int:
    from .. import run_lock
    from . import background

    app_host = _app_host(ns.apphost)
    if ns.no_dashboard:
        rest = [*rest, NO_DASHBOARD_SETTING]
    state_dir = background.state_dir_for(app_host)
    name = app_identity(app_host)[0]
    # The run lock first: a second starter stops here, before it touches the log or status.
    try:
        lock = run_lock.acquire(state_dir, name, app_host, record_pid=False)
    except run_lock.AlreadyRunningError as exc:
        status = running_status(state_dir)
        if status is None or phase_of(status) is not AppPhase.READY or status["pid"] != exc.pid:
            raise  # another starter is on its way: exit 1 naming its pid
        # Already up and healthy: what `start` promises holds, so report it (exit 0), as
        # `docker compose up --wait` does; nothing is started and nothing is written.
        if not ns.json:
            print(f"already running (pid {status['pid']})")
            if rest:
                print(f"ignored {' '.join(rest)}: stop the app first to change its settings")
        _show_status(status, ns)
        return 0
    try:
        other = running_status(state_dir)  # an app host that predates the lock
        if other is not None:
            raise ApphostError(run_lock.already_running_message(name, app_host, other["pid"]))
        proc = background.launch(app_host, rest, _run_path, lock)
    except BaseException:
        lock.release()
        raise
    try:
        ready, status, reason = background.wait_ready(proc, state_dir, ns.timeout)
    except KeyboardInterrupt:
        background.stop_pid(proc.pid, 30)
        print("apphost start: interrupted; stopped the app host", file=sys.stderr)
        return 130
    if not ready:
        print(f"apphost start: {reason}", file=sys.stderr)
        tail = background.log_tail(state_dir)
        if tail:
            print(f"last lines of {state_dir / LOG_FILE}:\n{tail}", file=sys.stderr)
        return 1
    assert status is not None
    _show_status(status, ns)
    return 0


def _show_status(status: dict[str, Any], ns: argparse.Namespace) -> None:
    if ns.json:
        print(json.dumps(_public_status(status, ns.show_secrets), indent=2))
        return
    _print_table(status)
    dashboard = status.get("dashboard")
    if isinstance(dashboard, dict) and dashboard.get("loginUrl"):
        if ns.show_secrets or sys.stdout.isatty():
            # The user's own terminal: the token is theirs (as the foreground run prints it).
            print(f"dashboard: {dashboard['loginUrl']}")
        else:  # a pipe or a file (a CI log): the token stays a secret
            print(
                f"dashboard: {dashboard.get('url')} (its login URL: `apphost status "
                f"{status.get('appHost')} --show-secrets`)"
            )


def cmd_stop(ns: argparse.Namespace, rest: list[str]) -> int:
    from . import background

    app_host = _app_host(ns.apphost)
    status = running_status(background.state_dir_for(app_host))
    if status is None:
        print(f"{app_host} is not running")
        return 0
    clean = background.stop_pid(int(status["pid"]), ns.timeout, str(status["pidStart"]))
    print(f"stopped {status.get('app')} (pid {status['pid']})" + ("" if clean else " by SIGKILL"))
    return 0


def cmd_status(ns: argparse.Namespace, rest: list[str]) -> int:
    from . import background

    if ns.apphost:
        found = running_status(background.state_dir_for(_app_host(ns.apphost)))
        statuses = [found] if found is not None else []
    else:
        statuses = running_statuses()
    if ns.json:
        print(json.dumps([_public_status(s, ns.show_secrets) for s in statuses], indent=2))
    elif not statuses:
        print("no app host is running")
    else:
        for s in statuses:
            _print_table(s, ns.show_secrets)
    return 0


def cmd_down(ns: argparse.Namespace, rest: list[str]) -> int:
    from ..runtimes.cleanup import down
    from ..state import app_identity, state_root
    from . import background

    if not ns.apphost and not ns.all:
        raise ApphostError("give APPHOST.py, or --all for every app")
    if ns.apphost and ns.all:  # which one was meant? Removing too much cannot be undone
        raise ApphostError(f"give APPHOST.py ({ns.apphost}) or --all, not both")
    app_host = None if ns.all else _app_host(ns.apphost)
    live = (
        running_statuses()
        if app_host is None
        else [s for s in [running_status(background.state_dir_for(app_host))] if s is not None]
    )
    if live:  # removing a running app's containers would break it under its feet
        names = ", ".join(f"{s.get('app')} (pid {s['pid']})" for s in live)
        verb = "is" if len(live) == 1 else "are"
        raise ApphostError(f"{names} {verb} running; stop with `apphost stop APPHOST.py` first")
    app_id = None if app_host is None else app_identity(app_host)[1]
    # The process runtime keeps an app's data in its state folder; the engine's objects are
    # checked against every live app host, whatever state folder it uses (``down`` refuses,
    # naming the pid, while one uses them).
    if app_host is None:
        root = state_root()
        state_dirs = sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    else:
        state_dirs = [background.state_dir_for(app_host)]
    # Announces each removal, or that there was none.
    removed = down(app_id, ns.volumes, print, state_dirs=state_dirs)
    if removed:
        print(f"removed {len(removed)} item(s)")
    if not ns.volumes:
        print("persistent containers and volumes are kept; add --volumes to remove them too")
    return 0


def cmd_publish(ns: argparse.Namespace, rest: list[str]) -> int:
    """``apphost publish APPHOST.py -o DIR [--publisher P]``: run the app host in publish mode
    and write its files; nothing is started or provisioned."""
    from ..publishing.publish import check_publisher, output_target, publish

    publisher = check_publisher(ns.publisher)
    if ns.output is None:
        raise ApphostError("give the output folder with -o DIR (or --output-path DIR)")
    output_target(ns.output, publisher)  # a bad path fails before the app host runs
    app_host = _app_host(ns.apphost)
    written: list[Path] = []

    def command(app: Any) -> int:
        written.extend(publish(app, ns.output, publisher))
        return 0

    # The builder reads these as configuration: it is then in publish mode, as under
    # ``python apphost.py --publisher P --output-path DIR`` (the user's own arguments first).
    mode = [f"--publisher={publisher}", f"--output-path={ns.output}"]
    try:
        code = _with_model(app_host, command, [*rest, *mode])
    except ApphostError:
        raise
    except Exception as exc:  # the app host file's own error (syntax, exception)
        from .background import describe_failure

        message = describe_failure(exc, app_host).removeprefix("apphost: ")
        raise ApphostError(message) from None
    for path in written:
        print(f"wrote {path}")
    return code


class UsageError(Exception):
    """Bad arguments to ``apphost plan | provision | destroy``: one line on stderr, exit 2."""


class _Parser(argparse.ArgumentParser):
    """The parser of every command; ``one_line_errors`` makes a usage error raise
    :class:`UsageError` (one line for pipelines) instead of printing the usage and exiting."""

    def __init__(self, *args: Any, one_line_errors: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.one_line_errors = one_line_errors
        #: The parser of each command, by name (on the top-level parser).
        self.commands: dict[str, _Parser] = {}

    def error(self, message: str) -> NoReturn:
        if self.one_line_errors:
            raise UsageError(f"{self.prog}: {message}")
        super().error(message)


def _seconds(minimum: float, allow_minimum: bool) -> Callable[[str], float]:
    """The type of a ``--timeout``: a finite number of seconds (no ``nan``, ``inf``, or
    negative number), a usage error otherwise."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        ok = math.isfinite(value) and (value > minimum or (allow_minimum and value == minimum))
        if not ok:
            bound = f"{minimum:g} or more" if allow_minimum else f"more than {minimum:g}"
            raise argparse.ArgumentTypeError(
                f"{text!r} is not a number of seconds; give a finite number, {bound}"
            )
        return value

    return parse


def _azure(name: str) -> Callable[[argparse.Namespace, list[str]], int]:
    def run(ns: argparse.Namespace, rest: list[str]) -> int:
        from . import azure_commands

        command = getattr(azure_commands, name)
        # ``rest``: what the command's parser did not recognise is configuration for the app
        # host (``--Key=Value`` or ``--Key Value``), as with ``apphost run``.
        return _with_model(_app_host(ns.apphost), lambda app: command(app, ns), rest)

    return run


def _add_parser(parser: _Parser, sub: Any, name: str, description: str, **kwargs: Any) -> _Parser:
    """A command's parser: no abbreviations (``--form`` or ``--time`` is configuration for the
    app host, never a prefix of one of our flags)."""
    p: _Parser = sub.add_parser(
        name, help=description, description=description, allow_abbrev=False, **kwargs
    )
    parser.commands[name] = p
    return p


def _add_azure_parser(parser: _Parser, sub: Any, name: str, description: str) -> _Parser:
    """The parser of ``apphost plan | provision | destroy APPHOST.py``: usage errors in one
    line."""
    p = _add_parser(parser, sub, name, description, epilog=CONFIG_EPILOG, one_line_errors=True)
    p.add_argument("apphost", metavar="APPHOST.py", help="the app host file (or its folder)")
    return p


def _add_timeout(p: _Parser, default: float, what: str, *, zero_ok: bool) -> None:
    """A command's ``--timeout SECONDS``: ``what`` happens after that long (``default``
    seconds unless given; 0 is allowed only when ``zero_ok``)."""
    p.add_argument(
        "--timeout",
        type=_seconds(0, allow_minimum=zero_ok),
        default=default,
        metavar="SECONDS",
        help=f"{what} (default {default:g})",
    )


def build_parser() -> _Parser:
    """The ``apphost`` parser: one subparser per command, used for help and for parsing."""
    parser = _Parser(
        prog="apphost",
        usage=USAGE,
        description=COMMANDS_HELP,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--version", action="version", version=f"apphost {__version__}", help="show the version"
    )
    # The commands are listed once, in the description; the subparsers' own list is hidden.
    sub = parser.add_subparsers(
        dest="command", required=True, prog="apphost", metavar="COMMAND", help=argparse.SUPPRESS
    )
    app_host_help = "the app host file (or its folder)"

    p = _add_parser(
        parser,
        sub,
        "run",
        "run the app in the foreground until Ctrl-C or SIGTERM (same as python APPHOST.py)",
        usage="apphost run [-h] APPHOST.py [--no-dashboard] [--Key=Value | --Key Value ...]",
        epilog="Everything after APPHOST.py is configuration for the app host (--Key=Value or "
        "--Key Value), except -h, --help and --no-dashboard (serve no dashboard). Ctrl-C stops "
        "it (exit 130); SIGTERM too (exit 0).",
    )
    p.add_argument("apphost", metavar="APPHOST.py", help=app_host_help)

    p = _add_parser(
        parser,
        sub,
        "start",
        "start the app in the background; exit 0 once every resource runs and is healthy",
        epilog=CONFIG_EPILOG,
    )
    p.add_argument("apphost", metavar="APPHOST.py", help=app_host_help)
    p.add_argument("--json", action="store_true", help="print the status as one JSON object")
    _add_timeout(
        p, 300.0, "give up (and stop the app host) when not healthy after this long", zero_ok=False
    )
    p.add_argument("--show-secrets", action="store_true", help="print secret values as they are")
    p.add_argument("--no-dashboard", action="store_true", help=NO_DASHBOARD_HELP)

    p = _add_parser(parser, sub, "stop", "stop an app started with `apphost start`")
    p.add_argument("apphost", metavar="APPHOST.py", help=app_host_help)
    _add_timeout(
        p, 60.0, "SIGKILL the app host when it has not stopped after this long", zero_ok=True
    )

    p = _add_parser(parser, sub, "status", "show running app hosts and their resources")
    p.add_argument("apphost", metavar="APPHOST.py", nargs="?", help="only this app host")
    p.add_argument("--json", action="store_true", help="print a JSON list")
    p.add_argument("--show-secrets", action="store_true", help="print secret values as they are")

    p = _add_parser(
        parser,
        sub,
        "resource",
        "start, stop or restart one resource of a running app; exit 0 once it is in that state",
    )
    p.add_argument("apphost", metavar="APPHOST.py", help=app_host_help)
    p.add_argument("name", metavar="NAME", help="the resource")
    p.add_argument("action", choices=("start", "stop", "restart"), help="the command")

    p = _add_parser(
        parser,
        sub,
        "logs",
        "print the console output of a running app's resources (all prefixed with their names, "
        "or one's as written), as `docker compose logs` does",
    )
    p.add_argument("apphost", metavar="APPHOST.py", help=app_host_help)
    p.add_argument("name", metavar="NAME", nargs="?", help="only this resource")
    p.add_argument(
        "-f", "--follow", action="store_true", help="keep printing new lines until Ctrl-C"
    )
    p.add_argument(
        "--since", type=_since, metavar="WHEN", help=f"only lines from then on: {SINCE_HELP}"
    )
    p.add_argument("--no-color", action="store_true", help="no coloured name prefixes")

    p = _add_parser(parser, sub, "down", "remove what the SDK created in the container engine")
    p.add_argument("apphost", metavar="APPHOST.py", nargs="?", help="only this app's")
    p.add_argument("--all", action="store_true", help="for every app, not one")
    p.add_argument("--volumes", action="store_true", help="also persistent containers and volumes")

    # The Azure commands' flags, read by apphost_sdk.cli.azure_commands.
    p = _add_azure_parser(
        parser, sub, "plan", "show which Azure resources would be created, updated or left alone"
    )
    p.add_argument("--json", action="store_true", help="print JSON on stdout")

    p = _add_azure_parser(
        parser, sub, "provision", "provision the app's Azure resources and print their outputs"
    )
    p.add_argument("--json", action="store_true", help="print JSON on stdout")
    p.add_argument(
        "--format", choices=("text", "json", "env", "github"), default=None, help="output form"
    )
    p.add_argument(
        "--show-secrets", action="store_true", help="print keys and secret connection strings"
    )

    p = _add_azure_parser(parser, sub, "destroy", "delete the Azure resources this app created")
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")

    # -o and --publisher are checked by cmd_publish (exit 1 naming the fix), not by argparse.
    p = _add_parser(
        parser,
        sub,
        "publish",
        "write the app's deployment files into a folder; nothing is started or provisioned",
        epilog=CONFIG_EPILOG,
        one_line_errors=True,
    )
    p.add_argument("apphost", metavar="APPHOST.py", help=app_host_help)
    p.add_argument(
        "-o",
        "--output-path",
        dest="output",
        metavar="DIR",
        help="the output folder (created); a path ending in .json names the manifest file",
    )
    p.add_argument(
        "--publisher",
        default="manifest",
        metavar="manifest|docker-compose",
        help="manifest: aspire-manifest.json and Bicep modules (default); docker-compose: "
        "docker-compose.yaml and .env",
    )
    return parser


def _control(name: str) -> Callable[[argparse.Namespace, list[str]], int]:
    """``apphost resource | logs``: the command of ``control_commands`` (imported on use)."""

    def run(ns: argparse.Namespace, rest: list[str]) -> int:
        from . import control_commands

        command = getattr(control_commands, name)
        return int(command(_app_host(ns.apphost), ns))

    return run


def _since(text: str) -> float:
    """The type of ``logs --since``: seconds since the epoch (a usage error otherwise)."""
    from .control_commands import since_type

    return since_type(text)


COMMANDS: dict[str, Callable[[argparse.Namespace, list[str]], int]] = {
    "start": cmd_start,
    "stop": cmd_stop,
    "status": cmd_status,
    "resource": _control("cmd_resource"),
    "logs": _control("cmd_logs"),
    "down": cmd_down,
    "plan": _azure("plan"),
    "provision": _azure("provision"),
    "destroy": _azure("destroy"),
    "publish": cmd_publish,
}


#: Commands whose unrecognised arguments are configuration for the app host.
TAKES_CONFIGURATION = frozenset({"run", "start", "plan", "provision", "destroy", "publish"})
HELP_FLAGS = frozenset({"-h", "--help"})


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``apphost`` console script and ``python -m apphost_sdk``."""
    try:
        return _main(list(sys.argv[1:] if argv is None else argv))
    except KeyboardInterrupt:
        return 130


def _main(args: list[str]) -> int:
    parser = build_parser()
    if args and args[0] in parser.commands and HELP_FLAGS.intersection(args[1:]):
        # -h / --help anywhere after the command shows its usage and runs nothing, even among
        # configuration arguments (which argparse would not see for `run`).
        parser.commands[args[0]].print_help()
        parser.exit(0)  # as argparse's own --help: SystemExit(0)
    if args and args[0] == "run":
        # Everything after the file belongs to the app host (configuration overrides).
        run_args = [a for a in args[1:] if a != "--no-dashboard"]
        if not run_args or run_args[0].startswith("-"):
            parser.commands["run"].error("give the path of an app host file after run")
        config = run_args[1:]
        if len(run_args) < len(args) - 1:
            config.append(NO_DASHBOARD_SETTING)
        return _cmd_run(run_args[0], config)
    try:
        ns, rest = parser.parse_known_args(args)
    except UsageError as exc:
        print(exc, file=sys.stderr)
        return 2
    if rest and ns.command not in TAKES_CONFIGURATION:
        parser.commands[ns.command].error(f"unrecognized arguments: {' '.join(rest)}")
    try:
        return COMMANDS[ns.command](ns, rest)
    except ApphostError as exc:
        print(f"apphost {ns.command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _cmd_run(path: str, config: list[str]) -> int:
    """``apphost run APPHOST.py ...``: the app host file in this process, its failures shown as
    ``apphost start`` shows them (the user's frames, never the CLI's)."""
    from .background import describe_failure

    try:
        app_host = _app_host(path)
    except ApphostError as exc:
        print(f"apphost run: {exc}", file=sys.stderr)
        return 1
    try:
        return _run_path(app_host, config)
    except ApphostError as exc:
        print(f"apphost run: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # the app host file's own error (syntax, exception)
        print(describe_failure(exc, app_host), file=sys.stderr)
        return 1
