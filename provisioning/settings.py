"""The ``Azure`` configuration section, read once and validated.

Keys match Aspire's so existing ``appsettings.json`` files and ``Azure__*`` environment
variables keep working. Every missing key is reported in one error, in both of its forms.
"""

from __future__ import annotations

import ipaddress
import json
import math
from typing import Any
from urllib.parse import urlsplit

import attrs

from .errors import ConfigurationError
from .naming import (
    generated_resource_group,
    validate_resource_group_name,
    validate_subscription_id,
)

PUBLIC_CLOUD_ENDPOINT = "https://management.azure.com"

CREDENTIAL_SOURCES = (
    "Default",
    "AzureCli",
    "AzureDeveloperCli",
    "AzurePowerShell",
    "Environment",
    "WorkloadIdentity",
    "ManagedIdentity",
    "InteractiveBrowser",
    "Emulator",
)

_REQUIRED = ("SubscriptionId", "Location")


def is_loopback_host(host: str | None) -> bool:
    """True for ``localhost`` and loopback IP literals (127.0.0.0/8, ::1)."""
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _missing_error(missing: list[str]) -> ConfigurationError:
    env = ", ".join(f"Azure__{k}" for k in missing)
    doc = json.dumps({"Azure": {k: "..." for k in missing}})
    keys = ", ".join(f"Azure:{k}" for k in missing)
    return ConfigurationError(
        f"Azure provisioning needs settings that are missing: {keys}. Set them as environment "
        f"variables ({env}) or in appsettings.json: {doc}"
    )


def _check_endpoint(endpoint: str) -> str:
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(
            f"Azure:ResourceManagerEndpoint {endpoint!r} is not an http(s) URL "
            f"(the public cloud is {PUBLIC_CLOUD_ENDPOINT})"
        )
    if parts.scheme == "http" and not is_loopback_host(parts.hostname):
        raise ConfigurationError(
            f"Azure:ResourceManagerEndpoint {endpoint!r} uses plain http on a non-loopback "
            "host; tokens would travel unencrypted. Use https, or http only on 127.0.0.1"
        )
    return endpoint.rstrip("/")


@attrs.frozen
class ProvisioningSettings:
    """Validated Azure provisioning settings.

    ``resource_group`` is ``Azure:ResourceGroup`` or, when that is not given, derived from
    ``ResourceGroupPrefix``, app name and subscription.
    """

    subscription_id: str
    location: str
    resource_group: str
    allow_resource_group_creation: bool
    tenant_id: str | None
    credential_source: str
    resource_manager_endpoint: str = PUBLIC_CLOUD_ENDPOINT
    #: Bound on waiting for one create/update/delete to reach a final state.
    provisioning_timeout: float = 60 * 60.0
    #: Seconds between GETs while waiting.
    poll_interval: float = 15.0
    #: Our retry policy: attempts per call (1 = no retry), first backoff, backoff cap.
    max_attempts: int = 8
    retry_base_delay: float = 1.0
    retry_max_delay: float = 60.0

    @property
    def endpoint_is_loopback(self) -> bool:
        """True when the management endpoint is on this machine (an emulator)."""
        return is_loopback_host(urlsplit(self.resource_manager_endpoint).hostname)

    @classmethod
    def from_configuration(cls, config: Any, app_name: str) -> ProvisioningSettings:
        """Read and validate the ``Azure`` section of an app host ``Configuration``.

        Optional tuning keys: ``Azure:ProvisioningTimeoutMinutes`` (default 60),
        ``Azure:PollIntervalSeconds`` (15), ``Azure:MaxAttempts`` (8),
        ``Azure:RetryBaseDelaySeconds`` (1), ``Azure:RetryMaxDelaySeconds`` (60).
        """
        section = config.get_section("Azure")
        missing = [k for k in _REQUIRED if not (section.get_str(k) or "").strip()]
        if missing:
            raise _missing_error(missing)
        subscription = section.get_str("SubscriptionId").strip()
        validate_subscription_id(subscription)
        location = section.get_str("Location").strip()

        named_group = (section.get_str("ResourceGroup") or "").strip()
        if named_group:
            validate_resource_group_name(named_group)
            group, generated = named_group, False
        else:
            prefix = (section.get_str("ResourceGroupPrefix") or "rg-aspire").strip()
            group, generated = generated_resource_group(prefix, app_name, subscription), True
        allow_creation = section.get_bool("AllowResourceGroupCreation", default=generated)

        source_raw = (section.get_str("CredentialSource") or "Default").strip()
        matches = [s for s in CREDENTIAL_SOURCES if s.lower() == source_raw.lower()]
        if not matches:
            raise ConfigurationError(
                f"Azure:CredentialSource {source_raw!r} is not supported; use one of "
                + ", ".join(CREDENTIAL_SOURCES)
            )
        endpoint = _check_endpoint(
            (section.get_str("ResourceManagerEndpoint") or PUBLIC_CLOUD_ENDPOINT).strip()
        )
        if matches[0] == "Emulator" and not is_loopback_host(urlsplit(endpoint).hostname):
            raise ConfigurationError(
                "Azure:CredentialSource=Emulator issues unsigned test tokens and is only "
                f"accepted with a loopback Azure:ResourceManagerEndpoint, not {endpoint}"
            )

        def positive(key: str, default: float) -> float:
            value = section.get_float(key, default)
            if value is None or not math.isfinite(value) or value <= 0:
                raise ConfigurationError(f"configuration key Azure:{key} must be positive")
            return value

        attempts = section.get_int("MaxAttempts", 8)
        if attempts is None or attempts < 1:
            raise ConfigurationError("configuration key Azure:MaxAttempts must be at least 1")
        return cls(
            subscription_id=subscription,
            location=location,
            resource_group=group,
            allow_resource_group_creation=allow_creation,
            tenant_id=(section.get_str("TenantId") or "").strip() or None,
            credential_source=matches[0],
            resource_manager_endpoint=endpoint,
            provisioning_timeout=positive("ProvisioningTimeoutMinutes", 60.0) * 60.0,
            poll_interval=positive("PollIntervalSeconds", 15.0),
            max_attempts=attempts,
            retry_base_delay=positive("RetryBaseDelaySeconds", 1.0),
            retry_max_delay=positive("RetryMaxDelaySeconds", 60.0),
        )
