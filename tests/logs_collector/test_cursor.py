"""Window boundaries: exact under second-precision sinceTime, equal timestamps, any chunking."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kubevirt_test_cluster import format_rfc3339_nano
from stats_log_collector.logs_collector.cursor import (
    LONG_LINE,
    NANOS,
    Cursor,
    WindowFilter,
    parse_stamp,
)

BASE = 1_795_000_000 * NANOS


def line(nanos: int, text: str) -> bytes:
    return f"{format_rfc3339_nano(nanos)} {text}\n".encode()


def run(start: Cursor, data: bytes, cut: int | None = None) -> tuple[bytes, Cursor]:
    window = WindowFilter(start)
    pieces = [data] if cut is None else [data[i : i + cut] for i in range(0, len(data), cut)]
    out = b"".join(window.feed(piece) for piece in pieces) + window.finish()
    return out, window.end.cursor()


def test_parse_stamp_forms() -> None:
    assert parse_stamp(b"2026-11-23T10:00:00.000000001Z") == 1_795_428_000 * NANOS + 1
    assert parse_stamp(b"2026-11-23T10:00:00Z") == 1_795_428_000 * NANOS
    assert parse_stamp(b"2026-11-23T11:00:00.5+01:00") == 1_795_428_000 * NANOS + NANOS // 2
    assert parse_stamp(b"not a time") is None


@pytest.mark.parametrize("cut", [None, 1, 7, 64])
def test_lines_at_or_before_the_cursor_are_dropped(cut: int | None) -> None:
    # the API answers from the cursor's whole second: lines before the cursor come back and must go
    data = (
        line(BASE + 1, "old") + line(BASE + 5, "last collected") + line(BASE + 6, "new") + line(BASE + 9, "x")
    )
    out, end = run(Cursor(BASE + 5, 1), data, cut)
    assert out == line(BASE + 6, "new") + line(BASE + 9, "x")
    assert end == Cursor(BASE + 9, 1)


@pytest.mark.parametrize("cut", [None, 3, 50])
def test_equal_timestamps_at_the_boundary(cut: int | None) -> None:
    same = [line(BASE + 5, f"same {i}") for i in range(4)]
    # two of the four lines stamped BASE+5 were collected last time
    out, end = run(Cursor(BASE + 5, 2), b"".join(same), cut)
    assert out == same[2] + same[3]
    assert end == Cursor(BASE + 5, 4)  # still counts the earlier two: the next window drops all four
    out, end = run(end, b"".join(same) + line(BASE + 7, "later"), cut)
    assert out == line(BASE + 7, "later") and end == Cursor(BASE + 7, 1)


def test_first_window_keeps_lines_stamped_exactly_at_its_start() -> None:
    out, end = run(Cursor(BASE), line(BASE - 1, "before") + line(BASE, "at") + line(BASE, "at too"))
    assert out == line(BASE, "at") + line(BASE, "at too") and end == Cursor(BASE, 2)


def test_empty_window_keeps_the_cursor() -> None:
    start = Cursor(BASE + 5, 1, restarts=2)
    assert run(start, line(BASE + 5, "collected")) == (b"", start)
    assert run(start, b"") == (b"", start)


def test_last_line_without_newline_is_a_line() -> None:
    out, end = run(Cursor(BASE), line(BASE + 1, "a") + line(BASE + 2, "b").rstrip(b"\n"))
    assert out == line(BASE + 1, "a") + line(BASE + 2, "b") and end == Cursor(BASE + 2, 1)


def test_an_out_of_order_line_never_moves_the_cursor_back() -> None:
    out, end = run(Cursor(BASE), line(BASE + 9, "late") + line(BASE + 3, "earlier stamp"))
    assert out.count(b"\n") == 2 and end == Cursor(BASE + 9, 1)


def test_a_huge_line_passes_in_pieces() -> None:
    huge = line(BASE + 2, "h" * (3 * LONG_LINE))
    data = line(BASE + 1, "a") + huge + line(BASE + 3, "b")
    window = WindowFilter(Cursor(BASE))
    biggest = 0
    out = []
    for i in range(0, len(data), 256 * 1024):
        piece = window.feed(data[i : i + 256 * 1024])
        biggest = max(biggest, len(window._carry))
        out.append(piece)
    out.append(window.finish())
    assert b"".join(out) == data
    assert biggest <= LONG_LINE
    assert window.end.cursor() == Cursor(BASE + 3, 1)


def test_a_huge_line_before_the_cursor_is_dropped_whole() -> None:
    huge = line(BASE + 2, "h" * (2 * LONG_LINE))
    data = huge + line(BASE + 3, "b")
    out, end = run(Cursor(BASE + 2, 1), data, 100_000)
    assert out == line(BASE + 3, "b") and end == Cursor(BASE + 3, 1)


def test_invalid_utf8_is_kept_byte_for_byte() -> None:
    data = f"{format_rfc3339_nano(BASE + 1)} ".encode() + b"\xff\xfe bad \xc3\n"
    assert run(Cursor(BASE), data)[0] == data


def test_a_last_line_longer_than_the_tail_still_moves_the_cursor() -> None:
    data = line(BASE + 1, "a") + line(BASE + 2, "b" * 20_000)
    assert run(Cursor(BASE), data)[1] == Cursor(BASE + 2, 1)


@given(
    gaps=st.lists(st.sampled_from([0, 0, 1, 7, NANOS // 3, NANOS, 3 * NANOS]), min_size=1, max_size=40),
    data=st.data(),
)
def test_consecutive_windows_cover_a_growing_log_exactly(gaps: list[int], data: st.DataObject) -> None:
    """Runs at random moments of a growing log, the API answering from each cursor's whole second and
    chunks cut anywhere: the windows put together are the log, line for line."""
    stamps = [BASE + sum(gaps[: i + 1]) for i in range(len(gaps))]  # non-decreasing, many equal
    log = [line(stamp, f"line {i}") for i, stamp in enumerate(stamps)]
    ends = [*sorted(data.draw(st.lists(st.integers(0, len(log)), max_size=6))), len(log)]
    cursor, collected = Cursor(BASE), b""
    for end in ends:
        answer = b"".join(
            text
            for text, stamp in zip(log[:end], stamps[:end], strict=True)
            if stamp >= cursor.second * NANOS
        )
        cut = data.draw(st.integers(1, 300))
        out, cursor = run(cursor, answer, cut)
        collected += out
    assert collected == b"".join(log)
