"""Our single retry policy for Azure management calls.

azure-core's own ``RetryPolicy`` is switched off on the clients we build (``no_retries``) so
that one injected or real fault is retried here, once per attempt, with exponential backoff,
full jitter and ``Retry-After`` honoured -- instead of azure-core's retries multiplied by ours.

Retried: 408, 429, 5xx, 409 "busy" conflicts (a cache accepts one write at a time), and
connection errors. Everything else is raised at once.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TypeVar

import attrs

from .arm_errors import error_code_and_message, retry_after_seconds, status_of

T = TypeVar("T")

#: Longest Retry-After we honour; a larger value is capped rather than stalling for hours.
MAX_RETRY_AFTER = 300.0


def is_retriable(exc: BaseException) -> bool:
    """True for transient failures: throttling, server errors, busy caches, broken connections."""
    status = status_of(exc)
    if status is None:
        from azure.core.exceptions import ServiceRequestError, ServiceResponseError

        return isinstance(exc, (ServiceRequestError, ServiceResponseError))
    if status in (408, 429) or status >= 500:
        return True
    if status == 409:
        code, _ = error_code_and_message(exc)
        return code not in ("NameNotAvailable", "MissingSubscriptionRegistration")
    return False


@attrs.frozen
class RetryPolicy:
    """Bounded exponential backoff with full jitter; ``max_attempts=1`` disables retries."""

    max_attempts: int = 8
    base_delay: float = 1.0
    max_delay: float = 60.0
    sleep: Callable[[float], None] = time.sleep
    rng: random.Random = attrs.field(factory=random.Random)

    def delay_for(self, attempt: int, exc: BaseException) -> float:
        """Seconds to wait before attempt ``attempt + 1`` (``attempt`` counts from 1)."""
        retry_after = retry_after_seconds(exc)
        if retry_after is not None and retry_after > 0:
            return min(retry_after, MAX_RETRY_AFTER)
        ceiling = min(self.max_delay, self.base_delay * (2 ** (attempt - 1)))
        return self.rng.uniform(ceiling / 2, ceiling)

    def call(
        self,
        operation: Callable[[], T],
        on_retry: Callable[[int, BaseException, float], None] | None = None,
    ) -> T:
        """Run ``operation``, retrying transient failures; the last failure is re-raised."""
        attempt = 1
        while True:
            try:
                return operation()
            except Exception as exc:
                if attempt >= self.max_attempts or not is_retriable(exc):
                    raise
                delay = self.delay_for(attempt, exc)
                if on_retry is not None:
                    on_retry(attempt, exc, delay)
                self.sleep(delay)
                attempt += 1
