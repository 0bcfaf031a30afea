"""Azure credentials by ``Azure:CredentialSource``, the emulator's test credential, and the
signed-in principal read from a token.

The object id of whoever runs the app host is needed for the Entra ID access policy
assignment; it is the ``oid`` claim of any ARM access token, so we read it from the token we
already use instead of calling Microsoft Graph.
"""

from __future__ import annotations

import base64
import json
import time
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlsplit

import attrs

from .errors import AuthenticationFailedError, ConfigurationError
from .settings import CREDENTIAL_SOURCES, ProvisioningSettings, is_loopback_host

ARM_SCOPE = "https://management.azure.com/.default"
#: The Entra ID scope of Azure Cache for Redis and Azure Managed Redis data-plane tokens.
REDIS_SCOPE = "https://redis.azure.com/.default"

#: The fixed test principal the Emulator credential signs in as.
EMULATOR_OBJECT_ID = "7f3b6a2e-1c4d-4e5f-9a8b-0c1d2e3f4a5b"
EMULATOR_TENANT_ID = "00000000-0000-4000-8000-00000000e001"
EMULATOR_ALIAS = "apphost-emulator-user"


@attrs.frozen
class AccessTokenValue:
    """Shape-compatible with ``azure.core.credentials.AccessToken`` (token, expires_on)."""

    token: str = attrs.field(repr=False)
    expires_on: int


#: The emulator is a local endpoint: never send its requests through HTTP(S)_PROXY.
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _b64url(data: dict[str, Any]) -> str:
    raw = json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _is_management_scope(scope: str) -> bool:
    return "://management." in scope.lower()


class EmulatorCredential:
    """Issues unsigned JWT-shaped tokens for a fixed test principal.

    Only ever handed to a loopback endpoint (``ProvisioningSettings`` refuses otherwise): the
    token proves nothing, it only lets the emulator and our principal lookup see an ``oid``.
    ``lifetime`` may be negative to produce an already expired token for tests.

    With ``endpoint`` (the emulator's URL), tokens for any scope other than the management
    one (e.g. the Redis data plane's) are fetched from ``POST {endpoint}/_emulator/token``,
    which registers them with the emulated caches so they accept them as passwords.
    """

    def __init__(self, lifetime: float = 3600.0, endpoint: str | None = None) -> None:
        self._lifetime = lifetime
        self._endpoint = endpoint.rstrip("/") if endpoint else None
        if self._endpoint and not is_loopback_host(urlsplit(self._endpoint).hostname):
            raise ConfigurationError(
                f"the Emulator credential only talks to a loopback emulator, not {endpoint}"
            )

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessTokenValue:
        """Return a fresh token; scopes become the ``aud`` claim."""
        if self._endpoint and scopes and not _is_management_scope(scopes[0]):
            return self._emulator_token(scopes)
        now = int(time.time())
        expires = int(now + self._lifetime)
        audience = scopes[0].removesuffix("/.default") if scopes else "emulator"
        payload = {
            "aud": audience,
            "iss": f"https://sts.windows.net/{EMULATOR_TENANT_ID}/",
            "iat": now,
            "nbf": now,
            "exp": expires,
            "oid": EMULATOR_OBJECT_ID,
            "tid": EMULATOR_TENANT_ID,
            "upn": EMULATOR_ALIAS,
            "name": "apphost emulator user",
        }
        token = f"{_b64url({'alg': 'none', 'typ': 'JWT'})}.{_b64url(payload)}."
        return AccessTokenValue(token=token, expires_on=expires)

    def _emulator_token(self, scopes: tuple[str, ...]) -> AccessTokenValue:
        """A data-plane token the emulator issued and registered (contract: POST
        ``/_emulator/token`` -> ``{"accessToken", "expiresOn", "objectId"}``)."""
        url = f"{self._endpoint}/_emulator/token"
        body = json.dumps({"scopes": list(scopes), "objectId": EMULATOR_OBJECT_ID}).encode()
        request = urllib.request.Request(
            url, data=body, method="POST", headers={"Content-Type": "application/json"}
        )
        try:
            with _NO_PROXY.open(request, timeout=10) as response:
                data = json.loads(response.read())
            return AccessTokenValue(
                token=str(data["accessToken"]), expires_on=int(data["expiresOn"])
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            reason = getattr(exc, "reason", None) or type(exc).__name__
            raise AuthenticationFailedError(
                f"could not get a data-plane token from the ARM emulator at {url} ({reason}); "
                "is the emulator running at Azure:ResourceManagerEndpoint?"
            ) from None

    def close(self) -> None:
        """Nothing to release."""


def create_credential(settings: ProvisioningSettings) -> Any:
    """Build the azure-identity credential named by ``settings.credential_source``."""
    source = settings.credential_source
    if source == "Emulator":
        if not settings.endpoint_is_loopback:
            raise ConfigurationError(
                "Azure:CredentialSource=Emulator is only accepted with a loopback endpoint"
            )
        return EmulatorCredential(endpoint=settings.resource_manager_endpoint)
    return _identity_credential(source, settings.tenant_id)


def redis_credential(configuration: Any, app_name: str) -> Any:
    """The token credential for Redis data-plane tokens (scope :data:`REDIS_SCOPE`) of the
    principal that provisions the app's caches, chosen by ``Azure:CredentialSource``.

    With ``Emulator`` it fetches tokens from the emulator at ``Azure:ResourceManagerEndpoint``
    (which the emulated caches accept); otherwise it is the azure-identity credential of that
    source. Needs no subscription or location. ``app_name`` is accepted for symmetry with
    ``ProvisioningSettings.from_configuration`` (messages may name it).
    """
    section = configuration.get_section("Azure")
    raw = (section.get_str("CredentialSource") or "Default").strip()
    matches = [s for s in CREDENTIAL_SOURCES if s.lower() == raw.lower()]
    if not matches:
        raise ConfigurationError(
            f"Azure:CredentialSource {raw!r} is not supported (app {app_name}); use one of "
            + ", ".join(CREDENTIAL_SOURCES)
        )
    if matches[0] == "Emulator":
        endpoint = (section.get_str("ResourceManagerEndpoint") or "").strip()
        if not endpoint or not is_loopback_host(urlsplit(endpoint).hostname):
            raise ConfigurationError(
                "Azure:CredentialSource=Emulator needs Azure:ResourceManagerEndpoint set to the "
                f"loopback URL of the ARM emulator (got {endpoint or 'nothing'})"
            )
        return EmulatorCredential(endpoint=endpoint)
    tenant = (section.get_str("TenantId") or "").strip() or None
    return _identity_credential(matches[0], tenant)


def _identity_credential(source: str, tenant: str | None) -> Any:
    """The azure-identity credential for ``source`` (any source but Emulator)."""
    import azure.identity as identity

    tenant_kw: dict[str, Any] = {"tenant_id": tenant} if tenant else {}
    if source == "Default":
        kw: dict[str, Any] = {"exclude_interactive_browser_credential": True}
        if tenant:
            kw.update(
                shared_cache_tenant_id=tenant,
                visual_studio_code_tenant_id=tenant,
                workload_identity_tenant_id=tenant,
                additionally_allowed_tenants=[tenant],
            )
        return identity.DefaultAzureCredential(**kw)
    if source == "AzureCli":
        return identity.AzureCliCredential(**tenant_kw)
    if source == "AzureDeveloperCli":
        return identity.AzureDeveloperCliCredential(**tenant_kw)
    if source == "AzurePowerShell":
        return identity.AzurePowerShellCredential(**tenant_kw)
    if source == "Environment":
        return identity.EnvironmentCredential()
    if source == "WorkloadIdentity":
        return identity.WorkloadIdentityCredential(**tenant_kw)
    if source == "ManagedIdentity":
        return identity.ManagedIdentityCredential()
    if source == "InteractiveBrowser":
        return identity.InteractiveBrowserCredential(**tenant_kw)
    raise ConfigurationError(f"Azure:CredentialSource {source!r} is not supported")


def token_scope(settings: ProvisioningSettings) -> str:
    """The token scope for the management endpoint (sovereign clouds have their own)."""
    if settings.endpoint_is_loopback:
        return ARM_SCOPE
    return settings.resource_manager_endpoint.rstrip("/") + "/.default"


@attrs.frozen
class Principal:
    """Who runs the app host: the object id used for access policy assignments."""

    object_id: str
    alias: str


def decode_claims(token: str) -> dict[str, Any]:
    """Decode a JWT's payload without verifying it (we only read our own token's claims)."""
    parts = token.split(".")
    if len(parts) < 2:
        raise ValueError("not a JWT")
    body = parts[1] + "=" * (-len(parts[1]) % 4)
    claims = json.loads(base64.urlsafe_b64decode(body.encode()))
    if not isinstance(claims, dict):
        raise ValueError("JWT payload is not an object")
    return claims


def current_principal(credential: Any, settings: ProvisioningSettings) -> Principal:
    """Get an ARM token and return the principal in it; a sign-in failure is a clear error."""
    try:
        token = credential.get_token(token_scope(settings)).token
    except Exception as exc:  # azure-identity raises several types; all mean "cannot sign in"
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise AuthenticationFailedError(
            f"could not get an Azure token with Azure:CredentialSource="
            f"{settings.credential_source} ({first_line}); sign in again "
            "(az login / azd auth login) or choose another CredentialSource"
        ) from None
    try:
        claims = decode_claims(token)
    except ValueError:  # also binascii.Error and UnicodeDecodeError
        raise AuthenticationFailedError(
            "the Azure token is not a JWT, so the signed-in principal's object id is unknown"
        ) from None
    oid = claims.get("oid")
    if not isinstance(oid, str) or not oid:
        raise AuthenticationFailedError(
            "the Azure token carries no 'oid' claim; sign in as a user, service principal "
            "or managed identity"
        )
    alias = next(
        (
            str(claims[k])
            for k in ("upn", "unique_name", "preferred_username", "appid", "name")
            if claims.get(k)
        ),
        oid,
    )
    return Principal(object_id=oid, alias=alias)
