"""Microsoft Entra ID for Azure Cache for Redis: a redis-py credential provider from a token.

The username Redis expects is the principal's object id (the token's ``oid`` claim) and the
password is the access token; ``redis-entraid`` refreshes tokens before they expire and
re-authenticates open connections.
"""

from __future__ import annotations

from typing import Any

from redis.credentials import CredentialProvider

__all__ = ["REDIS_SCOPE", "OneShotEntraCredentials", "create_entra_credential_provider"]

REDIS_SCOPE = "https://redis.azure.com/.default"


def create_entra_credential_provider(
    credential: Any | None = None,
    *,
    scopes: tuple[str, ...] = (REDIS_SCOPE,),
    refresh_ratio: float = 0.7,
    request_timeout_ms: int = 10_000,
) -> Any:
    """A ``redis-entraid`` provider over ``credential`` (default: ``DefaultAzureCredential``).

    ``credential`` is any azure-core ``TokenCredential`` (``get_token(*scopes)``). Tokens are
    renewed after ``refresh_ratio`` of their lifetime. Needs the ``entraid`` extra.
    """
    try:
        from redis.auth.token_manager import RetryPolicy, TokenManagerConfig
        from redis_entraid.cred_provider import EntraIdCredentialsProvider
        from redis_entraid.identity_provider import DefaultAzureCredentialProvider
    except ImportError as exc:  # pragma: no cover - depends on the installed extras
        raise ImportError(
            "Entra ID authentication needs redis-entraid: pip install 'apphost-sdk[entraid]'"
        ) from exc
    if credential is None:
        from azure.identity import DefaultAzureCredential

        credential = DefaultAzureCredential()
    identity = DefaultAzureCredentialProvider(credential, scopes)
    config = TokenManagerConfig(refresh_ratio, 0, request_timeout_ms, RetryPolicy(3, 100))
    return EntraIdCredentialsProvider(identity, config)


class OneShotEntraCredentials(CredentialProvider):
    """One token, no background refresh: for a short-lived probe connection.

    ``redis-entraid``'s provider starts a refresh thread on first use; a connection that is
    closed right away (the cluster-mode probe) must not leave one behind.
    """

    def __init__(self, credential: Any | None, scopes: tuple[str, ...] = (REDIS_SCOPE,)) -> None:
        if credential is None:
            from azure.identity import DefaultAzureCredential

            credential = DefaultAzureCredential()
        self._credential = credential
        self._scopes = scopes

    def get_credentials(self) -> tuple[str, str]:
        """``(object id, token)`` from a fresh token (the ``oid`` claim is the username)."""
        from redis.auth.token import JWToken

        token = self._credential.get_token(*self._scopes).token
        return str(JWToken(token).try_get("oid")), token
