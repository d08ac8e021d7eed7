"""Tests of the kubelet-grammar checker itself: it must accept what kubelet reads and reject the rest."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from tests.kubelet_logs import (
    CriEntry,
    JsonEntry,
    LogEntry,
    detect_format,
    parse_cri_line,
    parse_json_line,
    parse_timestamp,
    read_log_file,
    rebuild,
)

TS = "2026-11-23T10:00:00.123456789Z"
TS_NS = 1_795_428_000_123_456_789


def json_line(log: str = "hi\n", stream: str = "stdout", time: str = TS) -> bytes:
    return json.dumps({"log": log, "stream": stream, "time": time}, separators=(",", ":")).encode() + b"\n"


# ---------------------------------------------------------------------------------------------------------
# Timestamps


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (TS, TS_NS),
        ("2026-11-23T10:00:00Z", TS_NS - 123_456_789),
        ("2026-11-23T10:00:00.1Z", TS_NS - 23_456_789),
        ("2026-11-23T11:30:00.123456789+01:30", TS_NS),
        ("2026-11-23T08:00:00.123456789-02:00", TS_NS),
        ("1970-01-01T00:00:00Z", 0),
        ("2024-02-29T23:59:59.999999999Z", None),
    ],
)
def test_timestamps_accepted(text: str, expected: int | None) -> None:
    ns = parse_timestamp(text)
    if expected is None:
        expected = int(dt.datetime(2024, 2, 29, 23, 59, 59, tzinfo=dt.UTC).timestamp()) * 10**9 + 999_999_999
    assert ns == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "2026-11-23 10:00:00Z",  # space instead of T
        "2026-11-23t10:00:00Z",  # lower-case t
        "2026-11-23T10:00:00z",  # lower-case z
        "2026-11-23T10:00:00",  # no zone
        "2026-11-23T10:00:00.Z",  # a point without digits
        "2026-11-23T10:00:00.1234567890Z",  # 10 fraction digits
        "2026-11-23T10:00:00,123Z",  # comma
        "2026-13-23T10:00:00Z",  # month 13
        "2026-02-30T10:00:00Z",  # no such day
        "2026-11-23T24:00:00Z",
        "2026-11-23T10:60:00Z",
        "2026-11-23T10:00:60Z",
        "2026-11-23T10:00:00+0100",  # offset without colon
        "2026-11-23T10:00:00+24:00",
        "26-11-23T10:00:00Z",
        "2026-11-23T10:00:00Z ",
        "\uff12\uff10\uff12\uff16-11-23T10:00:00Z",  # non-ASCII digits
    ],
)
def test_timestamps_rejected(text: str) -> None:
    with pytest.raises(ValueError, match="timestamp"):
        parse_timestamp(text)


# ---------------------------------------------------------------------------------------------------------
# CRI


def test_cri_line_parsed() -> None:
    entry = parse_cri_line(TS.encode() + b" stdout F hello  world \xff\x1b[0m\n")
    assert entry == CriEntry(
        time=TS, time_ns=TS_NS, stream="stdout", partial=False, content=b"hello  world \xff\x1b[0m"
    )
    assert entry.text == b"hello  world \xff\x1b[0m\n"
    partial = parse_cri_line(TS.encode() + b" stderr P part")
    assert partial.partial and partial.stream == "stderr" and partial.text == b"part"
    empty = parse_cri_line(TS.encode() + b" stdout F \n")
    assert empty.content == b"" and empty.text == b"\n"
    spaces = parse_cri_line(TS.encode() + b" stdout F  F \r")
    assert spaces.content == b" F \r"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (b"", "timestamp is not found"),
        (b"hello world", "does not match"),
        (b"hello", "timestamp is not found"),
        (TS.encode(), "timestamp is not found"),
        (TS.encode() + b" stdout", "stream is not found"),
        (TS.encode() + b" stdout F", "tag is not found"),  # empty content still needs the space
        (TS.encode() + b" stdin F x", "unexpected stream"),
        (TS.encode() + b" STDOUT F x", "unexpected stream"),
        (TS.encode() + b"  stdout F x", "unexpected stream"),  # double space
        (TS.encode() + b" stdout X x", "unexpected tag"),
        (TS.encode() + b" stdout f x", "unexpected tag"),
        (TS.encode() + b" stdout P:x x", "unexpected tag"),
        (TS.encode() + b" stdout  x", "unexpected tag"),
        (b"2026-11-23T10:00:00 stdout F x", "does not match"),
        (b"2026-11-23T10:00:00.1234567890Z stdout F x", "does not match"),
        (b"2026-11-23T10:00:00\xffZ stdout F x", "not ASCII"),
        (TS.encode() + b" stdout F a\nb\n", "newline inside"),
        (json_line(), "timestamp is not found"),
    ],
)
def test_cri_line_rejected(line: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_cri_line(line)


# ---------------------------------------------------------------------------------------------------------
# JSON


def test_json_line_parsed() -> None:
    entry = parse_json_line(
        b'{"log":"a\\u001b[0m \\"q\\" \xc3\xa9\\n","stream":"stdout","time":"' + TS.encode() + b'"}\n'
    )
    assert entry == JsonEntry(time=TS, time_ns=TS_NS, stream="stdout", log='a\x1b[0m "q" é\n')
    assert not entry.partial
    assert entry.text == 'a\x1b[0m "q" é\n'.encode()
    partial = parse_json_line(json_line("part", "stderr"))
    assert partial.partial and partial.stream == "stderr" and partial.text == b"part"
    with_attrs = parse_json_line(
        b'{"log":"x\\n","stream":"stdout","attrs":{"k":"v"},"time":"' + TS.encode() + b'"}'
    )
    assert with_attrs.log == "x\n"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (b"", "not a bare JSON object"),
        (b"[1]", "not a bare JSON object"),
        (b' {"log":"x"}', "not a bare JSON object"),
        (b'{"log":"x\\n","stream":"stdout"}', "missing 'time'"),
        (b'{"stream":"stdout","time":"' + TS.encode() + b'"}', "missing 'log'"),
        (b'{"log":1,"stream":"stdout","time":"' + TS.encode() + b'"}', "'log' is not a string"),
        (b'{"log":"x","stream":"stdin","time":"' + TS.encode() + b'"}', "unexpected stream"),
        (b'{"log":"x","stream":"stdout","time":"yesterday"}', "timestamp"),
        (b'{"log":"x","stream":"stdout","time":"' + TS.encode() + b'","extra":1}', "unknown keys"),
        (b'{"log":"x","log":"y","stream":"stdout","time":"' + TS.encode() + b'"}', "duplicate key"),
        (b'{"log":"x","stream":"stdout","time":"' + TS.encode() + b'","attrs":[1]}', "attrs"),
        (b'{"log":"\xff","stream":"stdout","time":"' + TS.encode() + b'"}', "not valid UTF-8"),
        (b'{"log":"\\ud800","stream":"stdout","time":"' + TS.encode() + b'"}', "surrogate"),
        (b'{"log":"a\x1bb","stream":"stdout","time":"' + TS.encode() + b'"}', "Invalid control character"),
        (b'{"log":"a","stream":"stdout","time":"' + TS.encode() + b'",}', "JSON line"),
        (b'{"log":NaN,"stream":"stdout","time":"' + TS.encode() + b'"}', "NaN is not JSON"),
        (TS.encode() + b" stdout F x", "not a bare JSON object"),
    ],
)
def test_json_line_rejected(line: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_json_line(line)


# ---------------------------------------------------------------------------------------------------------
# Files


def test_detect_format() -> None:
    assert detect_format(TS.encode() + b" stdout F x\n") == "cri"
    assert detect_format(json_line()) == "json"
    with pytest.raises(ValueError, match=r"neither CRI text .* nor docker JSON"):
        detect_format(b"plain console text\n")


def test_read_log_file_cri_and_rebuild(tmp_path: Path) -> None:
    data = (
        TS.encode() + b" stdout P hel\n"
        + TS.encode() + b" stdout F lo\n"
        + TS.encode() + b" stderr F \n"
        + TS.encode() + b" stdout P tail"
        + b"\n"
    )  # fmt: skip
    path = tmp_path / "0.log"
    path.write_bytes(data)
    for source in (data, path, str(path)):
        entries = read_log_file(source)
        assert [e.partial for e in entries] == [True, False, False, True]
        assert rebuild(entries) == b"hello\n\ntail"
    with pytest.raises(ValueError, match="in cri format, expected json"):
        read_log_file(data, expect="json")


def test_read_log_file_json_and_rebuild() -> None:
    data = json_line("caf") + json_line("é\n") + json_line("\n", "stderr")
    entries = read_log_file(data, expect="json")
    assert rebuild(entries) == "café\n\n".encode()


def test_read_log_file_empty() -> None:
    assert read_log_file(b"") == []


def test_mixed_formats_rejected() -> None:
    cri = TS.encode() + b" stdout F x\n"
    with pytest.raises(ValueError, match=r"line 2 \(file in cri format\)"):
        read_log_file(cri + json_line())
    with pytest.raises(ValueError, match=r"line 3 \(file in json format\)"):
        read_log_file(json_line() + json_line() + cri)


def test_bad_line_in_the_middle_is_named() -> None:
    cri = TS.encode() + b" stdout F x\n"
    with pytest.raises(ValueError, match=r"line 2 .*unexpected tag"):
        read_log_file(cri + TS.encode() + b" stdout Q y\n" + cri)


def test_incomplete_last_line_rejected() -> None:
    with pytest.raises(ValueError, match="does not end with a newline"):
        read_log_file(TS.encode() + b" stdout F x")


def test_unparseable_first_line_rejected() -> None:
    with pytest.raises(ValueError, match="first line is neither"):
        read_log_file(b"\n")


def test_rebuild_refuses_mixed_entries() -> None:
    entries: list[LogEntry] = [parse_cri_line(TS.encode() + b" stdout F x"), parse_json_line(json_line())]
    with pytest.raises(ValueError, match="mix"):
        rebuild(entries)
