"""Fault injection for the ARM emulator.

A fault is written ``KIND[,key=value...]`` (on the command line with ``--fault`` or posted to
``/_emulator/faults`` as ``{"spec": "..."}``). Kinds:

- ``throttle``       429 ``SubscriptionRequestsThrottled`` with ``Retry-After`` (``retry_after``)
- ``server-error``   500 ``InternalServerError``
- ``busy``           409 ``Conflict`` ("busy processing a previous update request")
- ``expired-token``  401 ``ExpiredAuthenticationToken``
- ``forbidden``      403 ``AuthorizationFailed`` for ``action`` (default: redis write)
- ``create-failed``  the next matching create ends ``Failed`` instead of ``Succeeded``
- ``slow-create``    the next matching create takes ``delay`` seconds
- ``name-taken``     reserve cache name ``name`` as if another subscription owned it (for
  Managed Redis clusters: in every region)
- ``retired``        the next matching Azure Cache for Redis (``Microsoft.Cache/redis``) create is
  refused with 400 ``ProductRetired``, as Azure does for a subscription that can no longer create
  caches of the retiring product; the message points to Azure Managed Redis

Request faults apply to every ARM route (Azure Cache for Redis and Managed Redis alike) and match
on ``method`` (e.g. PUT) and ``path`` (a case-insensitive substring); create faults (and
``retired``) on ``name`` (a substring of the cache name; for a Managed Redis database, of
``{cluster}/default``). ``count`` is how many times the
fault fires (default 1; ``-1`` means always).
"""

from __future__ import annotations

import attrs

REQUEST_KINDS = ("throttle", "server-error", "busy", "expired-token", "forbidden")
CREATE_KINDS = ("create-failed", "slow-create")
KINDS = (*REQUEST_KINDS, *CREATE_KINDS, "name-taken", "retired")


class FaultSpecError(ValueError):
    """A fault specification that cannot be parsed."""


@attrs.define
class Fault:
    """One injected fault and how many more times it fires."""

    kind: str
    method: str | None = None
    path: str | None = None
    name: str | None = None
    count: int = 1
    retry_after: int = 1
    delay: float = 0.0
    action: str = "Microsoft.Cache/redis/write"

    def matches_request(self, method: str, path: str) -> bool:
        """True when this request-level fault applies to ``method path``."""
        if self.kind not in REQUEST_KINDS or self.count == 0:
            return False
        if self.method and self.method.upper() != method.upper():
            return False
        return not (self.path and self.path.lower() not in path.lower())

    def matches_create(self, cache_name: str) -> bool:
        """True when this create-level fault applies to a new cache called ``cache_name``."""
        if self.kind not in CREATE_KINDS or self.count == 0:
            return False
        return not (self.name and self.name.lower() not in cache_name.lower())

    def matches_retired(self, cache_name: str) -> bool:
        """True when this ``retired`` fault refuses a new classic cache called ``cache_name``."""
        if self.kind != "retired" or self.count == 0:
            return False
        return not (self.name and self.name.lower() not in cache_name.lower())

    def consume(self) -> None:
        """Count one firing (``-1`` never runs out)."""
        if self.count > 0:
            self.count -= 1


def parse_fault(spec: str) -> Fault:
    """Parse ``KIND[,key=value...]``; raises FaultSpecError naming the bad part."""
    parts = [p.strip() for p in spec.split(",") if p.strip()]
    if not parts or parts[0] not in KINDS:
        raise FaultSpecError(f"fault {spec!r}: kind must be one of {', '.join(KINDS)}")
    fault = Fault(kind=parts[0])
    for part in parts[1:]:
        key, sep, value = part.partition("=")
        key = key.strip().replace("-", "_")
        if not sep:
            raise FaultSpecError(f"fault {spec!r}: {part!r} is not key=value")
        try:
            if key in ("method", "path", "name", "action"):
                setattr(fault, key, value)
            elif key in ("count", "retry_after"):
                setattr(fault, key, int(value))
            elif key == "delay":
                fault.delay = float(value)
            else:
                raise FaultSpecError(f"fault {spec!r}: unknown key {key!r}")
        except ValueError as exc:
            if isinstance(exc, FaultSpecError):
                raise
            raise FaultSpecError(f"fault {spec!r}: {key} must be a number") from None
    if fault.kind == "name-taken" and not fault.name:
        raise FaultSpecError(f"fault {spec!r}: name-taken needs name=...")
    return fault
