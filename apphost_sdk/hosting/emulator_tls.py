"""Trusting the local ARM emulator's CA, for loopback TLS connections only.

The app host passes ``Azure:Emulator:CaFile`` (``Azure__Emulator__CaFile``) to services run
against the emulator, whose caches listen with TLS on ``127.0.0.x`` under certificates from
its own CA. That CA is applied to TLS connections to loopback hosts and nowhere else, so it
can never vouch for a real Azure host; such a connection counts as an Azure one (Entra ID
when the connection string has no password).
"""

from __future__ import annotations

import ipaddress
import ssl
from pathlib import Path

from ..configuration import Configuration
from ..errors import ConfigurationError

__all__ = ["EMULATOR_CA_KEY", "is_loopback_host", "read_emulator_ca"]

#: Configuration key of the emulator CA's PEM file.
EMULATOR_CA_KEY = "Azure:Emulator:CaFile"


def is_loopback_host(host: str) -> bool:
    """Whether ``host`` is ``localhost`` or a loopback address (127.0.0.0/8, ``::1``)."""
    name = host.strip().strip("[]").rstrip(".").casefold()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def read_emulator_ca(config: Configuration) -> str | None:
    """The checked path of ``Azure:Emulator:CaFile``, or None when it is not set.

    A path that is missing, unreadable or not a PEM certificate is a ``ConfigurationError``
    naming the key (the CA file holds no secret, so the path may be shown).
    """
    raw = config.get_str(EMULATOR_CA_KEY)
    if raw is None or not raw.strip():
        return None
    path = Path(raw.strip()).expanduser()
    env = EMULATOR_CA_KEY.replace(":", "__")
    if not path.is_file():
        raise ConfigurationError(
            f"{EMULATOR_CA_KEY} (environment: {env}) names {str(path)!r}, which is not a file: "
            "point it at the CA file the ARM emulator printed at start-up (dataPlane.caFile), "
            "or unset it"
        )
    try:
        ssl.create_default_context(cafile=str(path))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigurationError(
            f"{EMULATOR_CA_KEY} (environment: {env}) names {str(path)!r}, which cannot be read "
            f"as a PEM CA certificate ({type(exc).__name__}): point it at the emulator's CA file"
        ) from None
    return str(path.resolve())
