"""A cgroup memory limit file's value, as memstat and the demo read it."""

from __future__ import annotations

import pytest

from stats_log_collector.cgroup_limit import memory_limit

MiB = 1 << 20


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("536870912\n", 512 * MiB),  # v2 memory.max, or v1 memory.limit_in_bytes
        ("436207616\n", 436207616),  # what the demo sets for a 160 MiB guest
        ("max\n", None),  # v2: no limit
        ("9223372036854771712\n", None),  # v1: PAGE_COUNTER_MAX pages, no limit
        ("0\n", None),
        ("", None),
        ("garbage", None),
        ("12 MiB", None),
        ("-1", None),
        ("-1\n", None),
    ],
)
def test_memory_limit(text: str, expected: int | None) -> None:
    assert memory_limit(text) == expected
