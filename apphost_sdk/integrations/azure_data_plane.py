"""The data plane of a provisioned Azure cache, seen from the app host: the health PING through
the connection info its consumers get, and the emulator settings they need to use it.

A provisioned cache is Healthy only when a PING over TLS, authenticated as its consumers
authenticate (the access key, or a Microsoft Entra ID token for the app host's principal),
succeeds. Against the ARM emulator the server's certificate comes from the emulator's CA
(``Azure:Emulator:CaFile``), trusted for loopback hosts only.
"""

from __future__ import annotations

import ipaddress
import json
import threading
import time
import urllib.request
from typing import Any
from urllib.parse import urlsplit

REDIS_SCOPE = "https://redis.azure.com/.default"
PING_TIMEOUT = 3.0
#: Renew the Entra token this long before it expires.
TOKEN_MARGIN = 300.0

_EMULATOR_KEYS = ("CredentialSource", "ResourceManagerEndpoint", "Emulator:CaFile")
#: The CA file each emulator endpoint reported (asked once per app host).
_DISCOVERED: dict[str, str | None] = {}
_DISCOVERED_LOCK = threading.Lock()


def _setting(configuration: Any, key: str) -> str | None:
    getter = getattr(configuration, "get_str", None)
    value = getter(key) if callable(getter) else None
    return value or None


def is_emulated(configuration: Any) -> bool:
    """Whether the app host provisions against the ARM emulator (``Azure:CredentialSource``)."""
    return (_setting(configuration, "Azure:CredentialSource") or "").lower() == "emulator"


def emulator_ca_file(configuration: Any) -> str | None:
    """The emulator's CA file: ``Azure:Emulator:CaFile`` when set, else asked of the emulator
    itself (``GET /_emulator/info`` on its loopback endpoint), so forgetting the key the
    emulator printed does not leave every PING failing certificate checks."""
    configured = _setting(configuration, "Azure:Emulator:CaFile")
    if configured or not is_emulated(configuration):
        return configured
    endpoint = (_setting(configuration, "Azure:ResourceManagerEndpoint") or "").rstrip("/")
    host = urlsplit(endpoint).hostname or ""
    if not endpoint.startswith("http://") or not _is_loopback(host):
        return None
    with _DISCOVERED_LOCK:
        if endpoint not in _DISCOVERED:
            try:
                # Straight to the loopback emulator: never through an HTTP(S)_PROXY.
                direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))
                with direct.open(f"{endpoint}/_emulator/info", timeout=5) as reply:
                    info = json.loads(reply.read())
                ca_file = info.get("dataPlane", {}).get("caFile")
                _DISCOVERED[endpoint] = str(ca_file) if ca_file else None
            except (OSError, ValueError, AttributeError):
                return None  # not reachable now: ask again next time
        return _DISCOVERED[endpoint]


def emulator_environment(configuration: Any) -> dict[str, str]:
    """The ``Azure__*`` variables a service needs to reach an emulated cache (the emulator's
    credential and CA); empty against real Azure, where services use their own identity."""
    if not is_emulated(configuration):
        return {}
    env: dict[str, str] = {}
    for key in _EMULATOR_KEYS:
        value = _setting(configuration, f"Azure:{key}")
        if key == "Emulator:CaFile":
            value = emulator_ca_file(configuration)
        if value:
            env["Azure__" + key.replace(":", "__")] = value
    return env


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class _TokenCache:
    """One Entra ID token for the Redis scope, renewed shortly before it expires (the emulator
    registers every token it issues, so one per health poll would pile up)."""

    def __init__(self, configuration: Any, app_name: str) -> None:
        self._configuration = configuration
        self._app_name = app_name
        self._lock = threading.Lock()
        self._value: tuple[str, str, float] | None = None  # (object id, token, expires_on)

    def get(self) -> tuple[str, str]:
        with self._lock:
            if self._value is None or self._value[2] - time.time() < TOKEN_MARGIN:
                from provisioning.credentials import decode_claims, redis_credential

                credential = redis_credential(self._configuration, self._app_name)
                token = credential.get_token(REDIS_SCOPE)
                object_id = str(decode_claims(token.token).get("oid") or "")
                if not object_id:
                    raise RuntimeError("the Entra ID token has no object id (oid claim)")
                self._value = (object_id, token.token, float(token.expires_on))
            return self._value[0], self._value[1]


class CachePinger:
    """PINGs one provisioned cache as its consumers would; ``failure()`` says why it failed."""

    def __init__(
        self, host: str, port: int, password: str | None, configuration: Any, app_name: str
    ) -> None:
        self._host = host
        self._port = port
        self._password = password
        self._configuration = configuration
        self._tokens = None if password else _TokenCache(configuration, app_name)
        self._client: Any = None
        self._client_token: str | None = None

    def _connect(self) -> Any:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        kwargs: dict[str, Any] = {
            "host": self._host,
            "port": self._port,
            "ssl": True,
            "socket_timeout": PING_TIMEOUT,
            "socket_connect_timeout": PING_TIMEOUT,
            # One attempt per check: the health loop is the retry, and reports each failure.
            "retry": Retry(NoBackoff(), 0),
        }
        ca_file = emulator_ca_file(self._configuration)
        if ca_file and _is_loopback(self._host):
            kwargs["ssl_ca_certs"] = ca_file
        token: str | None = None
        if self._tokens is not None:
            kwargs["username"], token = self._tokens.get()
            kwargs["password"] = token
        else:
            kwargs["password"] = self._password
        if self._client is not None and token == self._client_token:
            return self._client
        if self._client is not None:
            self._client.close()
        self._client = redis.Redis(**kwargs)
        self._client_token = token
        return self._client

    def failure(self) -> str | None:
        """None when PING answers, else the reason (never a key or token)."""
        import redis

        where = f"{self._host}:{self._port}"
        try:
            self._connect().ping()
            return None
        except redis.AuthenticationError:
            how = "the access key" if self._password else "the Entra ID token of the app host"
            return f"PING on {where} was refused with {how}"
        except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
            text = str(exc)
            for secret in (self._password, self._client_token):
                if secret:
                    text = text.replace(secret, "***")
            hint = ""
            if "CERTIFICATE_VERIFY_FAILED" in text and is_emulated(self._configuration):
                hint = " (set Azure:Emulator:CaFile to the caFile the emulator printed)"
            return f"PING on {where} failed: {text or type(exc).__name__}{hint}"
        except Exception as exc:
            return f"PING on {where} failed: {type(exc).__name__}"

    def close(self) -> None:
        """Close the connection."""
        if self._client is not None:
            self._client.close()
            self._client = None
