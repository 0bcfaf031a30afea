"""``apphost resource`` and ``apphost logs``: commands that reach a running app host through
its control channel (``apphost run`` in the foreground or ``apphost start``)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any, TextIO

from ..control.client import ControlClient, ControlError, ControlUnavailable
from ..control.protocol import SEND_TIMEOUT, SinceError, control_socket_path, parse_since
from ..errors import ApphostError
from ..state import app_identity, running_status
from .background import state_dir_for

#: Prefix colours, in the order of the resources, as the run output shows them.
_COLORS = ["36", "35", "33", "32", "34", "91", "96", "95", "93", "92"]
#: The narrowest ``name |`` prefix, as in the run output.
MIN_WIDTH = 8


def since_type(text: str) -> float:
    """The argparse type of ``--since``: seconds since the epoch, a usage error otherwise."""
    try:
        return parse_since(text)
    except SinceError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("--since ")) from None


def client_for(app_host: Path) -> ControlClient:
    """A client of the control socket of the app host at ``app_host``."""
    return ControlClient(control_socket_path(state_dir_for(app_host), app_identity(app_host)[1]))


def not_reachable(app_host: Path, exc: ControlUnavailable) -> ApphostError:
    """Why nothing answers, naming the fix: the app is not running, or it runs but its
    control channel is gone."""
    status = running_status(state_dir_for(app_host))
    if status is None:
        return ApphostError(f"{app_host} is not running; start it with `apphost start {app_host}`")
    return ApphostError(
        f"{app_host} runs (pid {status.get('pid')}) but does not answer: {exc}; stop and start "
        "it again"
    )


def cmd_resource(app_host: Path, ns: argparse.Namespace) -> int:
    """``apphost resource APPHOST.py NAME start|stop|restart``: exit 0 once the resource
    reached the command's state, 1 with the reason otherwise."""
    try:
        result = client_for(app_host).execute(ns.name, ns.action)
    except ControlUnavailable as exc:
        raise not_reachable(app_host, exc) from None
    if result.ok:
        print(result.message)
        return 0
    print(f"apphost resource: {result.message}", file=sys.stderr)
    return 1


def cmd_logs(app_host: Path, ns: argparse.Namespace) -> int:
    """``apphost logs APPHOST.py [NAME] [-f] [--since ...]``: one resource's console output as
    it was written, or every resource's with aligned ``name |`` prefixes."""
    printer = _Printer(sys.stdout, prefixed=ns.name is None, color=_use_color(ns, sys.stdout))
    try:
        for answer in client_for(app_host).logs(ns.name, follow=ns.follow, since=ns.since):
            printer.show(answer, flush=ns.follow)
    except ControlUnavailable as exc:
        raise not_reachable(app_host, exc) from None
    except BrokenPipeError:  # `apphost logs ... | head`: the reader has what it wanted
        _silence_stdout()
        return 0
    except ControlError:
        sys.stdout.flush()
        raise
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        _silence_stdout()
    if ns.follow and running_status(state_dir_for(app_host)) is not None:
        # The app host runs on but closed this follow: it drops a reader that falls behind.
        print(
            "apphost logs: the app host dropped this follow (output not read for "
            f"{SEND_TIMEOUT:g} s); run it again",
            file=sys.stderr,
        )
        return 1
    return 0


class _Printer:
    """Writes the answers of a logs request: lines to ``out``, dropped notices to stderr."""

    def __init__(self, out: TextIO, *, prefixed: bool, color: bool) -> None:
        self.out = out
        self.prefixed = prefixed
        self.color = color
        self.width = MIN_WIDTH
        self.colors: dict[str, str] = {}

    def show(self, answer: dict[str, Any], flush: bool) -> None:
        if "resources" in answer:
            names = [str(n) for n in answer["resources"]]
            self.width = max([MIN_WIDTH, *(len(n) for n in names)])
            self.colors = {n: _COLORS[i % len(_COLORS)] for i, n in enumerate(names)}
        elif "dropped" in answer:
            count = answer["dropped"]
            lines = "line" if count == 1 else "lines"
            print(
                f"apphost logs: {count} older {lines} of {answer.get('resource')} dropped (the "
                "app host keeps the newest lines of each resource)",
                file=sys.stderr,
            )
        elif "text" in answer:
            text = str(answer["text"])
            if self.prefixed:
                text = f"{self._prefix(str(answer.get('resource', '?')))} {text}"
            self.out.write(text + "\n")
            if flush:
                self.out.flush()

    def _prefix(self, name: str) -> str:
        text = f"{name:<{self.width}} |"
        if self.color:
            return f"\x1b[{self.colors.get(name, '37')}m{text}\x1b[0m"
        return text


def _use_color(ns: argparse.Namespace, stream: TextIO) -> bool:
    """Coloured prefixes on a terminal, unless ``--no-color`` or ``NO_COLOR``."""
    if ns.no_color or os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("FORCE_COLOR"):
        return True
    return bool(getattr(stream, "isatty", lambda: False)())


def _silence_stdout() -> None:
    """After a closed pipe: send what is left to /dev/null, so exiting prints no error."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    finally:
        os.close(devnull)


__all__ = ["cmd_logs", "cmd_resource", "since_type"]
