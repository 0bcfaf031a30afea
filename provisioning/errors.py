"""Errors raised while provisioning Azure resources.

Every message names the resource and what to change; none carries a key, token or connection
string. They derive from :class:`apphost_sdk.errors.ApphostError` so the app host reports them
like any other failure of its own.
"""

from __future__ import annotations

from apphost_sdk.errors import ApphostError, ConfigurationError

__all__ = [
    "AuthenticationFailedError",
    "AuthorizationFailedError",
    "CacheFailedError",
    "ConfigurationError",
    "NameNotAvailableError",
    "ProductRetiredError",
    "ProvisioningError",
    "ProvisioningTimeoutError",
]


class ProvisioningError(ApphostError):
    """Provisioning of one Azure resource failed.

    ``resource`` is the app-model name (``cache``) when the failure belongs to one resource,
    ``reason`` the one-line explanation without the resource prefix.
    """

    def __init__(self, reason: str, resource: str | None = None) -> None:
        self.resource = resource
        self.reason = reason
        super().__init__(f"{resource}: {reason}" if resource else reason)

    def for_resource(self, resource: str) -> ProvisioningError:
        """Return the same kind of error attributed to ``resource`` (kept if already set)."""
        if self.resource:
            return self
        clone = type(self).__new__(type(self))
        ProvisioningError.__init__(clone, self.reason, resource)
        return clone


class AuthenticationFailedError(ProvisioningError):
    """Azure rejected the token (HTTP 401), typically an expired sign-in."""


class AuthorizationFailedError(ProvisioningError):
    """The signed-in principal lacks a permission (HTTP 403); the message names the action."""


class CacheFailedError(ProvisioningError):
    """Azure reports the cache's provisioning state as ``Failed``."""


class NameNotAvailableError(ProvisioningError):
    """The cache's global DNS name is taken by someone else."""


class ProvisioningTimeoutError(ProvisioningError):
    """A create or update did not reach a final state within the configured bound."""


class ProductRetiredError(ProvisioningError):
    """Azure refused a create because the product (or SKU) is retired for the subscription."""
