"""The per-app state directory: generated secrets, run status, and data kept across runs.

``APPHOST_STATE_DIR`` (default ``~/.apphost``) holds one folder per app host. Files that hold
secrets are written with mode 0600, atomically.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import string
import threading
from pathlib import Path
from typing import Any

from .errors import ApphostError
from .files import PrivateFileError, read_private_json, write_private
from .model.names import slug
from .process_identity import process_alive
from .status import phase_of

#: Written by a running app host; read by ``apphost start/status/stop``.
STATUS_FILE = "status.json"
#: Output of an app host started in the background by ``apphost start``.
LOG_FILE = "apphost.log"
#: Generated secrets (passwords, the configuration-hash key), 0600.
SECRETS_FILE = "secrets.json"

PASSWORD_ALPHABET = string.ascii_letters + string.digits
PASSWORD_LENGTH = 22


def generate_password(length: int = PASSWORD_LENGTH) -> str:
    """A password of letters and digits only (StackExchange.Redis strings cannot carry commas)."""
    return "".join(secrets.choice(PASSWORD_ALPHABET) for _ in range(length))


def state_root(environ: dict[str, str] | None = None) -> Path:
    """The folder that holds every app host's state folder."""
    env = os.environ if environ is None else environ
    raw = env.get("APPHOST_STATE_DIR")
    return Path(raw).expanduser() if raw else Path.home() / ".apphost"


def app_identity(app_host_path: Path) -> tuple[str, str]:
    """Return (app name, app id) for an app host file: the folder's name and a stable hash."""
    resolved = app_host_path.resolve()
    name = slug(resolved.parent.name if resolved.suffix == ".py" else resolved.name)
    digest = hashlib.sha256(str(resolved).encode()).hexdigest()[:10]
    return name, f"{name}-{digest}"


def running_status(state_dir: Path) -> dict[str, Any] | None:
    """The status of the app host that runs for this state folder, or None.

    The status names its writer by pid and process start time, so a pid reused after a crash
    or reboot is never taken for the app host (and never signalled). A status file that exists
    but cannot be read (a folder, a symbolic link, not JSON) raises ``ApphostError`` naming it.
    """
    status = read_status_file(state_dir / STATUS_FILE)
    phase = phase_of(status)
    if not isinstance(status, dict) or phase is None or not phase.is_running:
        return None
    pid, start = status.get("pid"), status.get("pidStart")
    if not isinstance(pid, int) or not isinstance(start, str) or not start:
        return None
    return status if process_alive(pid, start) else None


def read_status_file(path: Path) -> Any:
    """The content of a status file, None when there is none; ``ApphostError`` naming the file
    when it cannot be used."""
    try:
        return read_private_json(path, "remove it (the app host writes a new one when it starts)")
    except PrivateFileError as exc:
        raise ApphostError(str(exc)) from None


def running_statuses(root: Path | None = None) -> list[dict[str, Any]]:
    """The statuses of every app host that runs, one per state folder under ``root``."""
    root = state_root() if root is None else root
    try:
        folders = sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    except OSError as exc:
        raise ApphostError(f"cannot read the state folder {root}: {exc.strerror}") from None
    return [s for d in folders if (s := running_status(d)) is not None]


def ensure_directory(directory: Path) -> None:
    """Create ``directory`` (0700), or fail naming it and the setting that chose it."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ApphostError(
            f"cannot create the state folder {directory}: {exc.strerror}; set "
            "APPHOST_STATE_DIR to a writable folder"
        ) from None


class AppState:
    """One app host's state folder."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._lock = threading.Lock()
        ensure_directory(directory)
        try:
            os.chmod(directory, 0o700)
        except OSError:
            pass

    @property
    def secrets_file(self) -> Path:
        return self.directory / SECRETS_FILE

    @property
    def status_file(self) -> Path:
        """Written by a running app host; read by ``apphost start/status/stop``."""
        return self.directory / STATUS_FILE

    @property
    def log_file(self) -> Path:
        """Output of an app host started in the background by ``apphost start``."""
        return self.directory / LOG_FILE

    def secret(self, key: str) -> str:
        """Return the secret kept under ``key``, generating and saving it on first use."""
        with self._lock:
            data = self._read_secrets()
            value = data.get(key)
            if not isinstance(value, str) or not value:
                value = generate_password()
                data[key] = value
                try:
                    write_private(self.secrets_file, json.dumps(data, indent=2, sort_keys=True))
                except OSError as exc:
                    raise ApphostError(
                        f"cannot write {self.secrets_file}: {exc.strerror}; fix its permissions "
                        "or set APPHOST_STATE_DIR to a writable folder"
                    ) from None
            return value

    def _read_secrets(self) -> dict[str, Any]:
        """The kept secrets. A secrets file that exists but cannot be read is an error naming
        it, never an empty start: generating new passwords over it would lose the old ones,
        which persistent containers and volumes still use."""
        fix = (
            "fix or remove it (removing it generates new passwords: recreate persistent "
            "containers and volumes with `apphost down APPHOST.py --volumes`)"
        )
        try:
            data = read_private_json(self.secrets_file, fix)
        except PrivateFileError as exc:
            raise ApphostError(str(exc)) from None
        if data is None:
            return {}
        if not isinstance(data, dict):
            raise ApphostError(f"{self.secrets_file} is not a JSON object; {fix}")
        return data
