"""Entry options of the distributed cache, as .NET's ``DistributedCacheEntryOptions``."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import attrs

__all__ = ["DistributedCacheEntryOptions"]


def _to_timedelta(value: timedelta | float | None) -> timedelta | None:
    if value is None or isinstance(value, timedelta):
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"expected a timedelta or a number of seconds, not {type(value).__name__}")
    return timedelta(seconds=value)


def _datetime(_inst: Any, attribute: Any, value: datetime | None) -> None:
    if value is not None and not isinstance(value, datetime):
        raise TypeError(f"{attribute.name} must be a datetime, not {type(value).__name__}")


def _positive(_inst: Any, attribute: Any, value: timedelta | None) -> None:
    if value is not None and value <= timedelta(0):
        raise ValueError(f"{attribute.name} must be positive, not {value}")


@attrs.frozen
class DistributedCacheEntryOptions:
    """When an entry expires: an absolute time, a duration from now, and/or a sliding window.

    Durations accept a ``timedelta`` or a number of seconds and must be positive. When both
    absolute forms are given, the relative one wins (as in .NET). A naive ``absolute_expiration``
    is read as local time, like ``datetime.timestamp()``.
    """

    absolute_expiration: datetime | None = attrs.field(default=None, validator=_datetime)
    absolute_expiration_relative_to_now: timedelta | None = attrs.field(
        default=None, converter=_to_timedelta, validator=_positive
    )
    sliding_expiration: timedelta | None = attrs.field(
        default=None, converter=_to_timedelta, validator=_positive
    )
