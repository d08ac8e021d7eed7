"""Kubernetes quantities as bytes: every suffix family, fractions, exponents, and what is not one."""

from __future__ import annotations

import pytest

from stats_log_collector.kube.quantity import parse_quantity


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1Gi", 1 << 30),
        ("1294Mi", 1294 << 20),
        ("1.5Gi", 3 << 29),
        (".5Ki", 512),
        ("512e6", 512_000_000),
        ("1E3", 1000),
        ("5e-1", 1),  # Value() rounds a fraction of a byte up
        ("12k", 12_000),
        ("60M", 60_000_000),
        ("2G", 2_000_000_000),
        ("1E", 10**18),  # a bare E is exa, not an exponent
        ("100m", 1),
        ("1500m", 2),
        ("1Ei", 1 << 60),
        ("0", 0),
        ("+3Ki", 3072),
        (" 1Gi ", 1 << 30),
        (1073741824, 1 << 30),  # a JSON number
    ],
)
def test_quantities(text: object, expected: int) -> None:
    assert parse_quantity(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "garbage",
        "1GB",
        "1gi",
        "Gi",
        "1.2.3",
        "-1Gi",
        "1e999999999",
        "9Ei",
        "1 Gi",
        None,
        True,
        [],
        {},
        -5,
    ],
)
def test_what_is_not_a_byte_quantity_is_none(text: object) -> None:
    assert parse_quantity(text) is None
