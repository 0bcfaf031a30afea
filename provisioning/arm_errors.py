"""Reading ARM error responses and turning them into our one-line errors."""

from __future__ import annotations

import json
import re
from typing import Any

from .errors import (
    AuthenticationFailedError,
    AuthorizationFailedError,
    NameNotAvailableError,
    ProductRetiredError,
    ProvisioningError,
)

_ACTION = re.compile(r"perform action '([^']+)'")


def status_of(exc: BaseException) -> int | None:
    """The HTTP status of an azure-core ``HttpResponseError`` (None for other errors)."""
    code = getattr(exc, "status_code", None)
    return code if isinstance(code, int) else None


def error_code_and_message(exc: BaseException) -> tuple[str, str]:
    """The ARM ``error.code`` and ``error.message`` of a failed response (best effort)."""
    error = getattr(exc, "error", None)
    code = getattr(error, "code", None)
    message = getattr(error, "message", None)
    if not code:
        response = getattr(exc, "response", None)
        try:
            body: Any = json.loads(response.text()) if response is not None else None
            inner = body.get("error", {}) if isinstance(body, dict) else {}
            code, message = inner.get("code"), inner.get("message")
        except Exception:
            pass
    text = str(message or getattr(exc, "message", "") or exc).strip().splitlines()
    return str(code or ""), (text[0] if text else "")


def retry_after_seconds(exc: BaseException) -> float | None:
    """The ``Retry-After`` header of a failed response, in seconds, if it is a number."""
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if not headers:
        return None
    raw = headers.get("Retry-After") or headers.get("retry-after")
    try:
        return max(0.0, float(raw)) if raw is not None else None
    except ValueError:
        return None


def is_not_found(exc: BaseException) -> bool:
    """404 of any kind (resource or resource group)."""
    return status_of(exc) == 404


def is_retired(code: str, message: str) -> bool:
    """Whether an ARM error says the product or SKU is retired (matched loosely: Azure's
    codes for it vary, its messages mention retirement)."""
    return "retire" in code.lower() or "retire" in message.lower()


def translate(exc: BaseException, doing: str) -> ProvisioningError:
    """Turn an SDK error raised while ``doing`` into a clear, secret-free ProvisioningError."""
    if isinstance(exc, ProvisioningError):
        return exc
    status = status_of(exc)
    code, message = error_code_and_message(exc)
    if status == 401:
        return AuthenticationFailedError(
            f"Azure rejected the sign-in while {doing} ({code or 'HTTP 401'}): the token is "
            "expired or invalid; sign in again (az login / azd auth login) and retry"
        )
    if status == 403:
        match = _ACTION.search(message)
        needed = f"permission '{match.group(1)}'" if match else "a required permission"
        return AuthorizationFailedError(
            f"the signed-in principal lacks {needed} while {doing} ({code or 'HTTP 403'}); "
            "ask for a role that grants it (e.g. Contributor on the resource group)"
        )
    if code == "NameNotAvailable":
        return NameNotAvailableError(
            f"the cache name is taken by another Azure cache ({message}); choose another "
            "resource name or resource group (Azure:ResourceGroup) so the name changes"
        )
    if status is not None and is_retired(code, message):
        return ProductRetiredError(
            f"Azure refused {doing}: the product is retired for this subscription ({code}: "
            f"{message}); Azure Cache for Redis is being retired, so use "
            "builder.add_azure_managed_redis(name) (Azure Managed Redis) instead, or "
            "as_existing() to use a cache that already exists"
        )
    if status is None:
        kind = type(exc).__name__
        return ProvisioningError(f"{doing} failed: {kind}: {message or 'no details'}")
    detail = f"{code}: {message}" if code else message
    return ProvisioningError(f"{doing} failed with HTTP {status} ({detail})")
