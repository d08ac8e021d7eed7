"""Downsampling for the dashboard: buckets, maxima, gaps, bounds."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stats_log_collector.memstat.downsample import downsample


def test_max_per_bucket_and_gaps() -> None:
    rows = [(0.0, "vm1", 10.0), (1.0, "vm1", 30.0), (2.0, "vm1", 20.0), (5.0, "vm2", 7.0), (9.9, "vm1", 1.0)]
    series = downsample(rows, 0.0, 10.0, 5)
    assert series.times == [0.0, 2.0, 4.0, 6.0, 8.0]
    assert series.values == {"vm1": [30.0, 20.0, None, None, 1.0], "vm2": [None, None, 7.0, None, None]}


def test_rows_outside_the_window_are_ignored() -> None:
    series = downsample([(-1.0, "a", 1.0), (10.0, "a", 2.0), (5.0, "b", 3.0)], 0.0, 10.0, 2)
    assert series.values == {"b": [None, 3.0]}


def test_bad_window() -> None:
    with pytest.raises(ValueError):
        downsample([], 5.0, 5.0, 10)


@given(
    st.lists(st.tuples(st.floats(0, 99.999), st.sampled_from("abc"), st.floats(0, 1e12)), max_size=300),
    st.integers(1, 50),
)
def test_the_peak_of_each_series_survives(rows: list[tuple[float, str, float]], buckets: int) -> None:
    series = downsample(rows, 0.0, 100.0, buckets)
    for name in {name for _, name, _ in rows}:
        assert max(v for v in series.values[name] if v is not None) == max(v for _, n, v in rows if n == name)
        assert len(series.values[name]) == buckets
