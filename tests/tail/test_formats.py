"""Tests of the virtlet-log formatting core: pieces, CRLF, long lines, flushes, checkpoints, CRI and JSON.

The property tests feed arbitrary bytes in arbitrary chunks (with idle flushes at arbitrary points), encode
every batch, parse the result with the independent kubelet-grammar checker and rebuild the console text from
it: it must equal the input with each CRLF turned into LF (for JSON: decoded as Go's decoder would).
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stats_log_collector.tail.formats import (
    ENCODERS,
    MAX_PIECE_BYTES,
    LineAssembler,
    Pieces,
    encode_cri,
    encode_json,
    format_timestamp,
    go_decode,
)
from tests.kubelet_logs import CriEntry, JsonEntry, read_log_file, rebuild

TS = b"2026-11-23T10:00:00.123456789Z"

# Pieces of console output that make the edge cases likely: CR and LF in every combination, escape codes,
# characters of every UTF-8 length, truncated and invalid sequences, JSON specials.
TOKENS = [
    b"\r",
    b"\n",
    b"\r\n",
    b"\r\r\n",
    b"a",
    b"hello world",
    b"\x1b[1;31m",
    b"\xc3\xa9",
    b"\xe2\x82\xac",
    b"\xf0\x9f\x98\x80",
    b"\xe2\x82",
    b"\xe2",
    b"\x82",
    b"\xf0\x9f",
    b"\xff",
    b"\xc0\xaf",
    b"\xed\xa0\x80",
    b'"',
    b"\\",
    b"\t",
    b"\x00",
    b"\x7f",
]

console_bytes = st.lists(st.one_of(st.sampled_from(TOKENS), st.binary(max_size=12)), max_size=60).map(
    b"".join
)
any_bytes = st.one_of(st.binary(max_size=300), console_bytes)
# Long lines for the real 16 KiB limit: tokens repeated thousands of times.
long_bytes = st.lists(
    st.one_of(
        st.sampled_from(TOKENS),
        st.tuples(
            st.sampled_from([b"x", b"\xe2\x82\xac", b"\xf0\x9f\x98\x80", b"ab\r"]), st.integers(0, 9000)
        ).map(lambda t: t[0] * t[1]),
    ),
    max_size=8,
).map(b"".join)


@dataclass
class Plan:
    """Input bytes, cut into chunks, each followed (or not) by an idle flush."""

    data: bytes
    steps: list[tuple[bytes, bool]]


@st.composite
def plans(draw: st.DrawFn, data_strategy: st.SearchStrategy[bytes] = any_bytes, flushes: bool = True) -> Plan:
    data = draw(data_strategy)
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=12)))
    bounds = [0, *cuts, len(data)]
    chunks = [data[a:b] for a, b in itertools.pairwise(bounds)]
    if flushes:
        flags = draw(st.lists(st.booleans(), min_size=len(chunks), max_size=len(chunks)))
    else:
        flags = [False] * len(chunks)
    return Plan(data, list(zip(chunks, flags, strict=True)))


small_max = st.sampled_from([4, 5, 6, 7, 11, 64, MAX_PIECE_BYTES])


def run(asm: LineAssembler, steps: list[tuple[bytes, bool]], *, final: bool = True) -> list[Pieces]:
    batches: list[Pieces] = []
    for chunk, flush in steps:
        batches.append(asm.feed(chunk))
        if flush:
            batches.append(asm.flush())
    if final:
        batches.append(asm.flush(final=True))
    return batches


def pairs(batches: list[Pieces]) -> list[tuple[bytes, bool]]:
    return [pair for batch in batches for pair in batch]


def crlf_to_lf(data: bytes) -> bytes:
    return data.replace(b"\r\n", b"\n")


def check_pieces(batches: list[Pieces], max_piece: int) -> None:
    for content, partial in pairs(batches):
        assert b"\n" not in content
        assert len(content) <= max_piece
        if partial:
            assert content, "a partial piece is never empty"


def encode_all(batches: list[Pieces], fmt: str) -> bytes:
    encode = ENCODERS[fmt]
    out = []
    for i, batch in enumerate(batches):
        ts = format_timestamp(1_795_428_000_000_000_000 + i * 1_000_003)
        encoded = encode(batch, ts)
        assert encoded.count(b"\n") == len(batch)
        out.append(encoded)
    return b"".join(out)


# ---------------------------------------------------------------------------------------------------------
# Round trips through the kubelet checker


@given(plans(), small_max)
def test_cri_round_trip(plan: Plan, max_piece: int) -> None:
    batches = run(LineAssembler(max_piece), plan.steps)
    check_pieces(batches, max_piece)
    entries = read_log_file(encode_all(batches, "cri"), expect="cri")
    assert all(isinstance(e, CriEntry) and e.stream == "stdout" for e in entries)
    assert rebuild(entries) == crlf_to_lf(plan.data)


@given(plans(), small_max)
def test_json_round_trip(plan: Plan, max_piece: int) -> None:
    batches = run(LineAssembler(max_piece), plan.steps)
    entries = read_log_file(encode_all(batches, "json"), expect="json")
    assert all(isinstance(e, JsonEntry) and e.stream == "stdout" for e in entries)
    assert rebuild(entries) == go_decode(crlf_to_lf(plan.data)).encode("utf-8")


@settings(max_examples=40, deadline=None)
@given(plans(long_bytes))
def test_round_trip_with_real_piece_size(plan: Plan) -> None:
    batches = run(LineAssembler(), plan.steps)
    check_pieces(batches, MAX_PIECE_BYTES)
    expected = crlf_to_lf(plan.data)
    assert rebuild(read_log_file(encode_all(batches, "cri"))) == expected
    assert rebuild(read_log_file(encode_all(batches, "json"))) == go_decode(expected).encode("utf-8")


@given(plans(), small_max)
def test_without_final_flush_only_the_held_tail_is_missing(plan: Plan, max_piece: int) -> None:
    asm = LineAssembler(max_piece)
    batches = run(asm, plan.steps, final=False)
    expected = crlf_to_lf(plan.data)
    held = asm.held
    assert asm.pending_bytes == len(held)
    assert b"\n" not in held
    assert plan.data.endswith(held)
    assert rebuild(read_log_file(encode_all(batches, "cri"))) + held == expected
    if not plan.steps or not plan.steps[-1][1]:
        # Without an idle flush at the end, what is held is exactly the unterminated last line (less
        # what was already cut from it or flushed).
        assert expected.rsplit(b"\n", 1)[-1].endswith(held)


# ---------------------------------------------------------------------------------------------------------
# Pieces: chunking independence, long lines, checkpoints


@given(plans(flushes=False), small_max)
def test_pieces_do_not_depend_on_chunking(plan: Plan, max_piece: int) -> None:
    one_pass = pairs(run(LineAssembler(max_piece), [(plan.data, False)]))
    chunked = pairs(run(LineAssembler(max_piece), plan.steps))
    assert chunked == one_pass


@given(plans(flushes=False), small_max)
def test_long_lines_become_partial_pieces(plan: Plan, max_piece: int) -> None:
    got = pairs(run(LineAssembler(max_piece), plan.steps))
    # Group pieces into lines: each line is partial pieces followed by one complete piece (or, at the very
    # end, the partial pieces of the unterminated last line).
    lines: list[list[tuple[bytes, bool]]] = [[]]
    for piece in got:
        lines[-1].append(piece)
        if not piece[1]:
            lines.append([])
    expected_lines = crlf_to_lf(plan.data).split(b"\n")
    if not lines[-1]:
        lines.pop()
    if expected_lines[-1] == b"":
        expected_lines.pop()
    assert [b"".join(c for c, _ in line) for line in lines] == expected_lines
    for line in lines:
        total = sum(len(c) for c, _ in line)
        if total > max_piece:
            assert len(line) >= 2
        for content, partial in line[:-1]:
            assert partial
            # cut at most 3 bytes early, to keep a UTF-8 character whole
            assert max_piece - 3 <= len(content) <= max_piece


@given(plans(), small_max, st.data())
def test_checkpoint_at_committed_offset_resumes_exactly(
    plan: Plan, max_piece: int, data: st.DataObject
) -> None:
    full = pairs(run(LineAssembler(max_piece), plan.steps))

    # Crash right after step m (its pieces written, the checkpoint saved), restart from the checkpoint.
    m = data.draw(st.integers(0, len(plan.steps)), label="crash after step")
    first = LineAssembler(max_piece)
    before = pairs(run(first, plan.steps[:m], final=False))
    read = sum(len(chunk) for chunk, _ in plan.steps[:m])
    committed = read - first.pending_bytes
    assert plan.data[committed:read] == first.held

    # Same reads and idle flushes as before the crash: exactly the same pieces.
    resumed = LineAssembler(max_piece)
    after = pairs(run(resumed, [(plan.data[committed:read], False), *plan.steps[m:]]))
    assert before + after == full

    # Any other chunking and flush timing after the restart: the same text, nothing lost or doubled.
    rest = data.draw(plans(st.just(plan.data[committed:])), label="after restart")
    other = run(LineAssembler(max_piece), rest.steps)
    text = rebuild(read_log_file(encode_all([Pieces.from_pairs(before), *other], "cri")))
    assert text == crlf_to_lf(plan.data)


def test_long_line_pieces_sizes() -> None:
    asm = LineAssembler()
    assert list(asm.feed(b"x" * 40000 + b"\n")) == [
        (b"x" * 16384, True),
        (b"x" * 16384, True),
        (b"x" * (40000 - 2 * 16384), False),
    ]


def test_exactly_16384_bytes_is_one_complete_piece() -> None:
    asm = LineAssembler()
    assert list(asm.feed(b"a" * 16384)) == []  # may still be complete: wait for the next byte
    assert asm.pending_bytes == 16384
    assert list(asm.feed(b"\r")) == []  # "\r" may still be dropped
    assert list(asm.feed(b"\n")) == [(b"a" * 16384, False)]
    assert asm.pending_bytes == 0


def test_16385_bytes_is_a_partial_and_a_complete_piece() -> None:
    asm = LineAssembler()
    assert list(asm.feed(b"a" * 16385 + b"\r\n")) == [(b"a" * 16384, True), (b"a", False)]
    # unterminated: the partial piece is known as soon as byte 16385 is content
    asm = LineAssembler()
    assert list(asm.feed(b"a" * 16384 + b"b")) == [(b"a" * 16384, True)]
    assert asm.held == b"b"
    asm = LineAssembler()
    assert list(asm.feed(b"a" * 16384 + b"\r")) == []
    assert list(asm.feed(b"b")) == [(b"a" * 16384, True)]
    assert asm.held == b"\rb"


def test_long_line_is_not_cut_inside_a_character() -> None:
    line = b"a" * 16383 + "€".encode() + b"z"  # the 3-byte € spans bytes 16383..16385
    assert list(LineAssembler().feed(line + b"\n")) == [(b"a" * 16383, True), ("€z".encode(), False)]
    emoji = "😀".encode()
    line = b"a" * 16381 + emoji * 2  # the first emoji ends exactly at 16385: cut before it
    assert list(LineAssembler().feed(line + b"\n")) == [(b"a" * 16381, True), (emoji * 2, False)]
    line = b"a" * 16376 + emoji * 2  # ends exactly at 16384: no need to move the cut
    assert list(LineAssembler().feed(line + b"x\n")) == [(line, True), (b"x", False)]


# ---------------------------------------------------------------------------------------------------------
# CR, LF, empty lines, flush


def test_crlf_split_across_chunks() -> None:
    asm = LineAssembler()
    assert list(asm.feed(b"login\r")) == []
    assert asm.pending_bytes == 6
    assert list(asm.feed(b"\nnext\r\n")) == [(b"login", False), (b"next", False)]
    assert asm.pending_bytes == 0


def test_crlf_split_across_chunks_with_flush_between() -> None:
    asm = LineAssembler()
    asm.feed(b"login\r")
    assert list(asm.flush()) == [(b"login", True)]
    assert asm.held == b"\r"  # the "\r" is not emitted early
    assert list(asm.feed(b"\n")) == [(b"", False)]
    assert asm.pending_bytes == 0


def test_lone_cr_is_content() -> None:
    asm = LineAssembler()
    assert list(asm.feed(b"10%\r20%\r\n\r\r\n")) == [(b"10%\r20%", False), (b"\r", False)]
    assert list(asm.feed(b"\r")) == []
    assert list(asm.feed(b"x\n")) == [(b"\rx", False)]


def test_empty_lines_are_kept() -> None:
    asm = LineAssembler()
    assert list(asm.feed(b"\n\r\n\na\n\n")) == [(b"", False)] * 3 + [(b"a", False), (b"", False)]
    out = encode_cri(asm.feed(b"\n"), TS)
    assert out == TS + b" stdout F \n"  # the space after the tag is required even for empty content


def test_flush_emits_partial_then_the_rest_follows() -> None:
    asm = LineAssembler()
    assert list(asm.feed(b"boot ok\nlogin: ")) == [(b"boot ok", False)]
    assert asm.pending_bytes == len(b"login: ")
    assert list(asm.flush()) == [(b"login: ", True)]
    assert asm.pending_bytes == 0
    assert list(asm.flush()) == []
    assert list(asm.feed(b"root\r\n")) == [(b"root", False)]


def test_flush_holds_an_incomplete_character() -> None:
    asm = LineAssembler()
    asm.feed(b"caf\xc3")
    assert list(asm.flush()) == [(b"caf", True)]
    assert asm.held == b"\xc3"
    assert list(asm.flush()) == []
    assert list(asm.feed(b"\xa9\n")) == [("é".encode(), False)]
    asm.feed(b"\xe2\x82")
    assert list(asm.flush()) == []
    assert list(asm.flush(final=True)) == [(b"\xe2\x82", True)]
    assert asm.pending_bytes == 0


def test_final_flush_emits_everything_within_the_piece_size() -> None:
    asm = LineAssembler(8)
    assert list(asm.feed(b"12345678\r")) == []
    assert list(asm.flush(final=True)) == [(b"12345678", True), (b"\r", True)]


def test_max_piece_must_fit_a_character() -> None:
    with pytest.raises(ValueError, match="at least 4"):
        LineAssembler(3)


def test_empty_chunk() -> None:
    asm = LineAssembler()
    assert not asm.feed(b"")
    assert len(asm.feed(b"")) == 0


# ---------------------------------------------------------------------------------------------------------
# Encoders


def test_encode_cri_lines() -> None:
    pieces = Pieces.from_pairs(
        [(b"one", False), (b"two \xff", True), (b"", False), (b"x", True), (b"y", False)]
    )
    assert encode_cri(pieces, TS) == (
        TS + b" stdout F one\n"
        + TS + b" stdout P two \xff\n"
        + TS + b" stdout F \n"
        + TS + b" stdout P x\n"
        + TS + b" stdout F y\n"
    )  # fmt: skip
    assert encode_cri(Pieces.from_pairs([(b"e", False)]), TS, "stderr") == TS + b" stderr F e\n"
    assert encode_cri(Pieces.from_pairs([]), TS) == b""


def test_encode_json_lines() -> None:
    pieces = Pieces.from_pairs([(b"one", False), (b"two", True), (b"", False)])
    tail = b'","stream":"stdout","time":"' + TS + b'"}\n'
    assert encode_json(pieces, TS) == (
        b'{"log":"one\\n' + tail + b'{"log":"two' + tail + b'{"log":"\\n' + tail
    )
    assert encode_json(Pieces.from_pairs([]), TS) == b""
    assert b'"stream":"stderr"' in encode_json(pieces, TS, "stderr")


def test_json_escape_codes_pass_through_escaped() -> None:
    out = encode_json(Pieces.from_pairs([(b'\x1b[1;31mred\x1b[0m "q" back\\slash\ttab', False)]), TS)
    assert out.startswith(b'{"log":"\\u001b[1;31mred\\u001b[0m \\"q\\" back\\\\slash\\ttab\\n"')
    assert json.loads(out)["log"] == '\x1b[1;31mred\x1b[0m "q" back\\slash\ttab\n'
    raw = encode_cri(Pieces.from_pairs([(b"\x1b[0m", False)]), TS)
    assert raw == TS + b" stdout F \x1b[0m\n"


@pytest.mark.parametrize("byte", range(128))
def test_json_every_ascii_character(byte: int) -> None:
    content = b"<" + bytes([byte]) + b">"
    if byte == 0x0A:
        return
    out = encode_json(Pieces.from_pairs([(content, False)]), TS)
    assert out.isascii()
    assert b"\n" not in out[:-1]
    assert json.loads(out) == {"log": content.decode() + "\n", "stream": "stdout", "time": TS.decode()}


def test_json_invalid_utf8_as_go_decodes_it() -> None:
    content = b"ok \xe2\x82A \xff \xed\xa0\x80 \xc3\xa9"
    out = encode_json(Pieces.from_pairs([(content, False)]), TS)
    out.decode("utf-8")  # valid UTF-8
    # Go: one U+FFFD per byte not starting a valid sequence (Python's "replace" would give 1 for \xe2\x82)
    assert json.loads(out)["log"] == "ok \ufffd\ufffdA \ufffd \ufffd\ufffd\ufffd é\n"
    assert content.decode("utf-8", "replace") != go_decode(content)


def go_decode_reference(data: bytes) -> str:
    """Go's utf8.DecodeRune loop, written from its definition (accept ranges of the second byte)."""
    out: list[str] = []
    i = 0
    n = len(data)
    while i < n:
        b0 = data[i]
        if b0 < 0x80:
            out.append(chr(b0))
            i += 1
            continue
        if 0xC2 <= b0 <= 0xDF:
            size, lo, hi = 2, 0x80, 0xBF
        elif b0 == 0xE0:
            size, lo, hi = 3, 0xA0, 0xBF
        elif b0 == 0xED:
            size, lo, hi = 3, 0x80, 0x9F
        elif 0xE1 <= b0 <= 0xEF:
            size, lo, hi = 3, 0x80, 0xBF
        elif b0 == 0xF0:
            size, lo, hi = 4, 0x90, 0xBF
        elif 0xF1 <= b0 <= 0xF3:
            size, lo, hi = 4, 0x80, 0xBF
        elif b0 == 0xF4:
            size, lo, hi = 4, 0x80, 0x8F
        else:
            out.append("\ufffd")
            i += 1
            continue
        ok = (
            n - i >= size
            and lo <= data[i + 1] <= hi
            and all(0x80 <= data[i + k] <= 0xBF for k in range(2, size))
        )
        if ok:
            out.append(data[i : i + size].decode("utf-8"))
            i += size
        else:
            out.append("\ufffd")
            i += 1
    return "".join(out)


@given(st.one_of(st.binary(max_size=200), console_bytes, st.lists(st.integers(0x80, 0xFF)).map(bytes)))
def test_go_decode_matches_go_rules(data: bytes) -> None:
    assert go_decode(data) == go_decode_reference(data)


def test_format_timestamp() -> None:
    assert format_timestamp(0) == b"1970-01-01T00:00:00.000000000Z"
    assert format_timestamp(1_795_428_000_123_456_789) == b"2026-11-23T10:00:00.123456789Z"
    assert format_timestamp(1_795_428_000_000_000_005) == b"2026-11-23T10:00:00.000000005Z"
    assert format_timestamp(1_795_428_001_999_999_999) == b"2026-11-23T10:00:01.999999999Z"
    assert format_timestamp(1_795_428_000_000_000_000) == b"2026-11-23T10:00:00.000000000Z"


def test_pieces_api() -> None:
    p = Pieces.from_pairs([(b"a", False), (b"", True)])
    assert len(p) == 2 and p
    assert p.contents == [b"a", b""]
    assert p.partial == (1,)
    assert p == Pieces.of([b"a", b""], [1])
    assert p != Pieces.of([b"a", b""])
    assert "Pieces.from_pairs" in repr(p)
    assert list(Pieces.of([b""])) == [(b"", False)]
    assert not Pieces.of([])
    with pytest.raises(ValueError, match="must not contain"):
        Pieces.of([b"a\nb"])
    with pytest.raises(ValueError, match="out of range"):
        Pieces.of([b"a"], [1])
