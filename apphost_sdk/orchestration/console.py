"""What the user sees while the app runs: prefixed log lines and resource states.

On a terminal: coloured ``name |`` prefixes and a live table (``rich``) of every resource with
state, health and endpoint. Otherwise: plain lines, one per log line or state change.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TextIO

from ..masking import SecretMasker
from .states import Health, ResourceSnapshot, State

if TYPE_CHECKING:
    from rich.console import Console

_COLORS = ["36", "35", "33", "32", "34", "91", "96", "95", "93", "92"]
_RICH_COLORS = ["cyan", "magenta", "yellow", "green", "blue", "bright_red", "bright_cyan"]


def _use_color(stream: TextIO) -> bool:
    if os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("FORCE_COLOR"):
        return True
    return bool(getattr(stream, "isatty", lambda: False)())


class Reporter:
    """Receives log lines and state changes; the base class prints plain lines."""

    def __init__(
        self, masker: SecretMasker, stream: TextIO | None = None, quiet: bool = False
    ) -> None:
        self.masker = masker
        self.stream = stream or sys.stdout
        self.quiet = quiet
        self.color = _use_color(self.stream)
        self._lock = threading.Lock()
        self._colors: dict[str, str] = {}
        self.width = 8

    def set_resources(self, names: Sequence[str]) -> None:
        """Fix prefix widths and colours for these resource names."""
        self.width = max([8, *(len(n) for n in names)])
        for i, n in enumerate(names):
            self._colors[n] = _COLORS[i % len(_COLORS)]

    def _prefix(self, name: str) -> str:
        text = f"{name:<{self.width}} |"
        if self.color:
            return f"\x1b[{self._colors.get(name, '37')}m{text}\x1b[0m"
        return text

    def log(self, resource: str, stream: str, line: str) -> None:
        """One line of a resource's output, masked."""
        if self.quiet:
            return
        self._write(f"{self._prefix(resource)} {self.masker.mask(line)}")

    def info(self, text: str) -> None:
        """A message of the app host itself."""
        if self.quiet:
            return
        self._write(f"{self._prefix('apphost')} {self.masker.mask(text)}")

    def state_changed(self, snap: ResourceSnapshot, all_snaps: Sequence[ResourceSnapshot]) -> None:
        """A resource changed state or health."""
        text = f"{snap.name}: {snap.state.value}"
        if snap.health is not Health.UNKNOWN:
            text += f" ({snap.health.value})"
        if snap.endpoint and snap.state is State.RUNNING:
            text += f" at {snap.endpoint}"
        if snap.exit_code is not None:
            text += f", exit code {snap.exit_code}"
        if snap.message:
            text += f": {snap.message}"
        self.info(text)

    def _write(self, text: str) -> None:
        with self._lock:
            try:
                self.stream.write(text + "\n")
                self.stream.flush()
            except (OSError, ValueError):
                pass

    def close(self) -> None:
        """Stop any live display."""


class LiveReporter(Reporter):
    """A ``rich`` live table of resources under the scrolling, prefixed logs."""

    def __init__(self, masker: SecretMasker, stream: TextIO | None = None) -> None:
        super().__init__(masker, stream)
        from rich.console import Console
        from rich.live import Live

        self.console: Console = Console(file=self.stream)
        self._snaps: dict[str, ResourceSnapshot] = {}
        self._live = Live(self._table(), console=self.console, refresh_per_second=4)
        self._live.start()

    def _table(self) -> Any:
        from rich.table import Table

        table = Table(title="apphost resources", expand=False)
        for col in ("resource", "type", "state", "health", "endpoint"):
            table.add_column(col)
        style = {
            State.RUNNING: "green",
            State.FAILED_TO_START: "red",
            State.FAILED_TO_PROVISION: "red",
            State.EXITED: "yellow",
        }
        for s in self._snaps.values():
            health = {Health.HEALTHY: "[green]Healthy", Health.UNHEALTHY: "[red]Unhealthy"}
            table.add_row(
                s.name,
                s.kind,
                f"[{style.get(s.state, 'white')}]{s.state.value}",
                health.get(s.health, ""),
                s.endpoint or "",
            )
        return table

    def _write(self, text: str) -> None:
        with self._lock:
            self._live.console.print(text, markup=False, highlight=False, soft_wrap=True)

    def log(self, resource: str, stream: str, line: str) -> None:
        from rich.text import Text

        color = _RICH_COLORS[sum(map(ord, resource)) % len(_RICH_COLORS)]
        text = Text.assemble((f"{resource:<{self.width}} |", color), " ", self.masker.mask(line))
        with self._lock:
            self._live.console.print(text, highlight=False, soft_wrap=True)

    def info(self, text: str) -> None:
        from rich.text import Text

        # Text, not markup: a message may hold square brackets of its own.
        line = Text.assemble((f"{'apphost':<{self.width}} |", "bold"), " ", self.masker.mask(text))
        with self._lock:
            self._live.console.print(line, highlight=False, soft_wrap=True)

    def state_changed(self, snap: ResourceSnapshot, all_snaps: Sequence[ResourceSnapshot]) -> None:
        with self._lock:
            self._snaps = {s.name: s for s in all_snaps}
            self._live.update(self._table())
        if snap.state.is_failure or (snap.message and snap.state is not State.RUNNING):
            super().state_changed(snap, all_snaps)

    def close(self) -> None:
        self._live.stop()


def make_reporter(masker: SecretMasker, quiet: bool = False) -> Reporter:
    """A live table on an interactive terminal, plain lines otherwise."""
    if not quiet and sys.stdout.isatty() and os.environ.get("TERM") != "dumb":
        try:
            return LiveReporter(masker)
        except Exception:  # pragma: no cover - a terminal rich cannot drive
            pass
    return Reporter(masker, quiet=quiet)
