"""The sampling grid: no drift, no overlap."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from stats_log_collector.schedule import next_tick


def test_first_tick_is_the_start() -> None:
    assert next_tick(100.0, 5.0, None, 100.0).at == 100.0


def test_a_quick_poll_waits_for_the_next_grid_point() -> None:
    tick = next_tick(100.0, 5.0, 100.0, 101.3)
    assert (tick.at, tick.skipped) == (105.0, 0)


def test_a_slow_poll_skips_what_it_overran() -> None:
    tick = next_tick(100.0, 5.0, 100.0, 111.0)  # the poll of 100 ended at 111: 105 and 110 are gone
    assert (tick.at, tick.skipped) == (115.0, 2)


def test_a_poll_ending_exactly_on_a_grid_point_takes_it() -> None:
    tick = next_tick(100.0, 5.0, 100.0, 105.0)
    assert (tick.at, tick.skipped) == (105.0, 0)


@given(
    start=st.floats(0, 1e6),
    interval=st.floats(0.1, 3600),
    steps=st.integers(0, 1000),
    lateness=st.floats(0, 10),
)
def test_ticks_stay_on_the_grid_and_in_the_future(
    start: float, interval: float, steps: int, lateness: float
) -> None:
    previous = start + steps * interval
    now = previous + lateness * interval
    tick = next_tick(start, interval, previous, now)
    assert tick.at >= now - 1e-6 * max(1.0, abs(now))
    position = (tick.at - start) / interval
    assert abs(position - round(position)) < 1e-6 * max(1.0, position)
    assert tick.at - previous <= (tick.skipped + 1) * interval * (1 + 1e-9) + 1e-6
