"""The retry policy: what is retried and how long we wait."""

from __future__ import annotations

import random

import pytest

from stats_log_collector.kube.retry import RetryPolicy, is_retryable_status, parse_retry_after


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504, 599])
def test_retryable(status: int) -> None:
    assert is_retryable_status(status)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 410, 422])
def test_not_retryable(status: int) -> None:
    assert not is_retryable_status(status)


def test_delays_grow_exponentially_within_jitter_and_cap() -> None:
    policy = RetryPolicy(retries=8, base_delay=0.1, max_delay=2.0)
    rng = random.Random(1)
    for attempt in range(1, 9):
        cap = min(2.0, 0.1 * 2 ** (attempt - 1))
        samples = [policy.delay(attempt, rng) for _ in range(200)]
        assert all(0 <= sample <= cap for sample in samples)
        assert max(samples) > cap * 0.8  # full jitter spreads over the whole range
        assert min(samples) < cap * 0.2


def test_retry_after_is_honoured_up_to_the_cap() -> None:
    policy = RetryPolicy(retries=3, base_delay=0.1, max_delay=5.0)
    rng = random.Random(2)
    assert policy.delay(1, rng, retry_after=3.0) >= 3.0
    assert policy.delay(1, rng, retry_after=60.0) == 5.0


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2", 2.0),
        ("0.5", 0.5),
        (None, None),
        ("", None),
        ("Wed, 21 Oct 2015 07:28:00 GMT", None),
        ("-1", None),
    ],
)
def test_parse_retry_after(raw, expected) -> None:
    assert parse_retry_after(raw) == expected
