"""The resume point without a checkpoint (pure): for any console content and any point where the output
stopped, going on from the offset found gives exactly the content that is missing."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from stats_log_collector.tail.formats import ENCODERS, LineAssembler, Pieces
from stats_log_collector.tail.resume import Record, decode_records, resume_offset
from tests.tail.tailing import Env, written_then_forgotten

TS = b"2026-12-01T04:00:00.000000000Z"
# Line ends, CRs, a two-byte character, invalid UTF-8 and a literal U+FFFD: what the folding, the Go-style
# replacement and the UTF-8-safe splits must agree on.
ALPHABET = [b"a", b"b", b"\n", b"\r", b"\r\n", b"\xc3\xa9", b"\xff", b"\xc3", b"\xef\xbf\xbd", b" F "]


def encoded(pieces: Pieces, fmt: str) -> bytes:
    return ENCODERS[fmt](pieces, TS) if pieces else b""


def content(records: list[Record]) -> bytes:
    return b"".join(text + b"\n" if complete else text for text, complete in records)


def decoded(data: bytes, fmt: str) -> list[Record]:
    records = decode_records(data, fmt)
    assert records is not None
    return records


@settings(max_examples=1000, deadline=None)
@given(
    parts=st.lists(st.sampled_from(ALPHABET), max_size=40),
    cut=st.integers(min_value=0),
    idle=st.booleans(),
    fmt=st.sampled_from(["cri", "json"]),
)
def test_resuming_where_the_output_ends_gives_exactly_the_missing_content(
    parts: list[bytes], cut: int, idle: bool, fmt: str
) -> None:
    source = b"".join(parts)
    cut = cut % (len(source) + 1)
    assembler = LineAssembler(max_piece=4)  # 16 KiB splits, made small
    written = encoded(assembler.feed(source[:cut]), fmt)
    if idle:
        written += encoded(assembler.flush(), fmt)  # the console was idle: a partial record
    truth = written + encoded(assembler.feed(source[cut:]), fmt) + encoded(assembler.flush(final=True), fmt)

    offset = resume_offset(source, decoded(written, fmt), replaced=fmt == "json")

    assert offset is not None
    resumed = LineAssembler(max_piece=4)
    rest = encoded(resumed.feed(source[offset:]), fmt) + encoded(resumed.flush(final=True), fmt)
    assert content(decoded(written, fmt)) + content(decoded(rest, fmt)) == content(decoded(truth, fmt))


def test_an_output_that_begins_with_an_earlier_file() -> None:
    """A rotated-away file, then the start of the current one: the current one goes on after its start."""
    records = decoded(encoded(Pieces.of([b"old one", b"old two", b"new one"]), "cri"), "cri")
    assert resume_offset(b"new one\r\nnew two\r\n", records) == len(b"new one\r\n")


def test_content_the_source_does_not_hold_is_not_resumed() -> None:
    records = decoded(encoded(Pieces.of([b"other console"]), "cri"), "cri")
    assert resume_offset(b"this console\n", records) is None


def test_a_repeated_content_resumes_at_its_first_place() -> None:
    """Unsure which copy the output ends with: write again rather than skip."""
    records = decoded(encoded(Pieces.of([b"login:"]), "json"), "json")
    assert resume_offset(b"login:\nlogin:\nlogin:\n", records, replaced=True) == 7


def test_records_of_another_format_are_none() -> None:
    assert decode_records(b'{"log":"x\\n"}\n', "cri") is None
    assert decode_records(TS + b" stdout F x\n", "json") is None
    assert decode_records(TS + b" stdout X x\n", "cri") is None
    assert decode_records(TS + b" stdout F x\n" + TS + b" stdout F to", "cri") == [(b"x", True)]  # torn end


# --------------------------------------------------------------------------------------------------------
# The engine: a tailer that starts without a checkpoint next to an output that holds something


def lines(first: int, count: int) -> bytes:
    return b"".join(b"line %04d\r\n" % i for i in range(first, first + count))


def test_output_rotated_by_kubelet_holds_the_middle_of_the_source(env: Env) -> None:
    t = env.tailer()
    env.append(lines(0, 100))
    env.drain(t)
    t.close()
    rotated = env.output.with_name(env.output.name + ".20261201-040000")
    env.output.rename(rotated)  # kubelet's rotation: the next output starts in the middle of the source
    written_then_forgotten(env, lines(100, 100))
    env.append(lines(200, 10))
    env.drain(env.tailer())
    assert env.rebuilt(rotated, env.output) == env.expected()


def test_a_torn_last_record_is_ended_and_its_line_written_again(cri: Env) -> None:
    """(CRI: kubelet reads a torn CRI record as a shorter line; a torn JSON record is unreadable.)"""
    env = cri
    written_then_forgotten(env, lines(0, 10))
    with env.output.open("r+b") as output:  # a write cut short by a crash, then the checkpoint lost
        output.truncate(env.output.stat().st_size - 6)
    env.append(lines(10, 2))
    env.drain(env.tailer())
    torn = env.expected(lines(9, 1))[:-6]
    assert env.rebuilt() == env.expected(lines(0, 9)) + torn + b"\n" + env.expected(lines(9, 3))
