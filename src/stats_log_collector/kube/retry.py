"""When to retry an API call and how long to wait: pure policy, no I/O.

Retry what may succeed a moment later (connection errors, timeouts, 429, 5xx) and nothing else: a
400 or 403 will fail again, and a 404 is an answer. Waits grow exponentially with "full jitter" (a
uniform draw between 0 and the exponential cap), which spreads the retries of many clients hit by the
same outage; a 429's Retry-After is honoured when it asks for more.
"""

from __future__ import annotations

import dataclasses
import random

RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})


def is_retryable_status(status: int) -> bool:
    return status in RETRYABLE_STATUSES or status >= 500


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    retries: int = 5
    base_delay: float = 0.2
    max_delay: float = 10.0

    def delay(self, attempt: int, rng: random.Random, retry_after: float | None = None) -> float:
        """Seconds to wait before retry number ``attempt`` (1-based)."""
        cap = min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
        wait = rng.uniform(0, cap)
        if retry_after is not None:
            wait = max(wait, min(retry_after, self.max_delay))
        return wait


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After in seconds (the API server sends seconds; HTTP dates are not used by it)."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if seconds >= 0 else None
