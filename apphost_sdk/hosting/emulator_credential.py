"""The ARM emulator's token credential for services: Entra ID against emulated caches.

With ``Azure:CredentialSource=Emulator`` and ``Azure:ResourceManagerEndpoint`` set to the
emulator's loopback ``http://`` URL, registrations authenticate with tokens from the emulator's
``POST /_emulator/token``; the emulator registers each token with its caches, so it is accepted
as the password of the principal's object id. The service side never imports ``provisioning``:
this is a small azure-core-compatible ``TokenCredential`` over stdlib ``urllib``.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any, NamedTuple
from urllib.parse import urlsplit

from ..configuration import Configuration
from ..errors import ApphostError, ConfigurationError
from .emulator_tls import is_loopback_host

__all__ = [
    "CREDENTIAL_SOURCE_KEY",
    "ENDPOINT_KEY",
    "TOKEN_PATH",
    "AccessToken",
    "EmulatorTokenCredential",
    "EmulatorTokenError",
    "credential_from_configuration",
]

CREDENTIAL_SOURCE_KEY = "Azure:CredentialSource"
ENDPOINT_KEY = "Azure:ResourceManagerEndpoint"
TOKEN_PATH = "/_emulator/token"

#: urllib without proxies: HTTP(S)_PROXY must never divert calls to the loopback emulator.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class EmulatorTokenError(ApphostError):
    """The emulator's token endpoint could not be reached or answered something unusable."""


class AccessToken(NamedTuple):
    """The shape of ``azure.core.credentials.AccessToken``; ``repr`` hides the token."""

    token: str
    expires_on: int

    def __repr__(self) -> str:
        return f"AccessToken(token='***', expires_on={self.expires_on})"


def _checked_endpoint(endpoint: str) -> str:
    """``endpoint`` without a trailing slash; anything but loopback ``http(s)://`` is refused."""
    parts = urlsplit(endpoint.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(
            f"{ENDPOINT_KEY} must be the emulator's URL such as http://127.0.0.1:PORT for "
            f"{CREDENTIAL_SOURCE_KEY}=Emulator, not {endpoint!r}"
        )
    if not is_loopback_host(parts.hostname):
        raise ConfigurationError(
            f"{CREDENTIAL_SOURCE_KEY}=Emulator only talks to a loopback endpoint, and "
            f"{ENDPOINT_KEY} is {endpoint!r}: point it at the local emulator "
            "(http://127.0.0.1:PORT) or choose another credential source"
        )
    return endpoint.strip().rstrip("/")


class EmulatorTokenCredential:
    """``get_token(*scopes)`` from the emulator's token endpoint (loopback only).

    ``object_id`` asks for a token of that principal (default: the emulator's own test
    principal). Tokens never appear in errors, logs or ``repr``.
    """

    def __init__(
        self, endpoint: str, *, object_id: str | None = None, timeout: float = 10.0
    ) -> None:
        self.endpoint = _checked_endpoint(endpoint)
        self.object_id = object_id
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"EmulatorTokenCredential(endpoint={self.endpoint!r})"

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        """A fresh token for ``scopes`` (azure-core's ``TokenCredential.get_token``)."""
        if not scopes:
            raise ValueError("get_token needs at least one scope")
        body: dict[str, Any] = {"scopes": list(scopes)}
        if self.object_id:
            body["objectId"] = self.object_id
        url = self.endpoint + TOKEN_PATH
        request = urllib.request.Request(
            url,
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json", "Accept": "application/json"},
            method="POST",
        )
        try:
            with _OPENER.open(request, timeout=self.timeout) as response:
                payload = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            raise EmulatorTokenError(
                f"the ARM emulator at {self.endpoint} answered {exc.code} to POST {TOKEN_PATH}: "
                f"check that {ENDPOINT_KEY} points at the emulator"
            ) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise EmulatorTokenError(
                f"cannot reach the ARM emulator's token endpoint {url} ({reason}): start the "
                f"emulator or fix {ENDPOINT_KEY}"
            ) from None
        except ValueError:
            raise EmulatorTokenError(
                f"the ARM emulator at {self.endpoint} answered POST {TOKEN_PATH} with something "
                "that is not JSON: check that it is the apphost ARM emulator"
            ) from None
        token = payload.get("accessToken") if isinstance(payload, dict) else None
        expires = payload.get("expiresOn") if isinstance(payload, dict) else None
        if not isinstance(token, str) or not token:
            raise EmulatorTokenError(
                f"the ARM emulator at {self.endpoint} returned no accessToken from {TOKEN_PATH}"
            )
        if not isinstance(expires, (int, float)) or isinstance(expires, bool):
            expires = int(time.time()) + 300
        return AccessToken(token, int(expires))

    def close(self) -> None:
        """Nothing to release (each call opens its own connection)."""

    def __enter__(self) -> EmulatorTokenCredential:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def credential_from_configuration(config: Configuration) -> EmulatorTokenCredential | None:
    """The emulator credential when ``Azure:CredentialSource`` is ``Emulator``, else None.

    ``Azure:ResourceManagerEndpoint`` must then be set to the emulator's loopback URL; a
    missing or non-loopback endpoint is a ``ConfigurationError`` naming the key.
    """
    source = config.get_str(CREDENTIAL_SOURCE_KEY)
    if source is None or source.strip().casefold() != "emulator":
        return None
    endpoint = config.get_str(ENDPOINT_KEY)
    if endpoint is None or not endpoint.strip():
        raise ConfigurationError(
            f"{CREDENTIAL_SOURCE_KEY}=Emulator needs {ENDPOINT_KEY} (environment: "
            "Azure__ResourceManagerEndpoint) set to the emulator's URL, http://127.0.0.1:PORT"
        )
    return EmulatorTokenCredential(endpoint)
