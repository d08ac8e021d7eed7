"""Where an output ends in its source, when no checkpoint says so (deleted, lost or corrupt). Pure, no I/O.

Without a checkpoint a tailer would read the current file from byte 0 into an output that already holds
it. The output says how far it got: its last records, decoded back to console content, are looked for in
the source's content, made the way the engine makes it (``\\r\\n`` folded to ``\\n``; for JSON, invalid
UTF-8 replaced as :func:`.formats.go_decode` does), and reading goes on right after them. Partial records
(``P``, or a JSON ``log`` without its ``\\n``: a 16 KiB split or an idle flush) carry no newline, so the
content is one text whatever the record boundaries were. docs/tailing.md, "No checkpoint".
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import AnyStr, Final

from .formats import go_decode

__all__ = ["Record", "decode_records", "resume_offset"]

#: A kubelet log record decoded: its content (no newline) and whether it ends a line (``F``).
Record = tuple[bytes, bool]

_TAGS: Final = {b"F": True, b"P": False}
_REPLACEMENT: Final = "\ufffd".encode()


def decode_records(data: bytes, fmt: str) -> list[Record] | None:
    """The records of ``data`` (whole lines of a ``cri`` or ``json`` kubelet log); None if a line is not
    a record of that format. An unterminated last line (a torn write) is left out."""
    lines = data.split(b"\n")[:-1]
    if fmt == "cri":
        return _decode_cri(lines)
    if fmt == "json":
        return _decode_json(lines)
    return None


def _decode_cri(lines: list[bytes]) -> list[Record] | None:
    records: list[Record] = []
    for line in lines:
        fields = line.split(b" ", 3)  # <time> <stream> <tag> <content>
        if len(fields) != 4:
            return None
        complete = _TAGS.get(fields[2].split(b":", 1)[0])
        if complete is None:
            return None
        records.append((fields[3], complete))
    return records


def _decode_json(lines: list[bytes]) -> list[Record] | None:
    records: list[Record] = []
    for line in lines:
        try:
            text = json.loads(line)["log"]
        except (ValueError, TypeError, KeyError):
            return None
        if not isinstance(text, str):
            return None
        content = text.encode("utf-8", "surrogatepass")
        complete = content.endswith(b"\n")
        records.append((content[:-1] if complete else content, complete))
    return records


def resume_offset(
    source: bytes, records: Sequence[Record], *, replaced: bool = False, start: bool = True
) -> int | None:
    """The offset in ``source`` right after the content of ``records`` (an output's last records), None if
    that content is not there.

    ``replaced``: the records hold invalid UTF-8 replaced (JSON). ``start``: ``source`` begins at the file's
    start (else it is its end only, and an output that begins with an earlier file cannot be told).

    The first place the whole content is found wins: an output that holds the start of the source ends there
    exactly, and a content the source repeats is then written again rather than skipped. If it is not found,
    the output may begin with an earlier file (rotated away): the longest run of its last records that the
    source starts with tells how far the source got.
    """
    folded = source.replace(b"\r\n", b"\n")
    window = b"".join(content + b"\n" if complete else content for content, complete in records)
    if replaced:
        text = go_decode(folded)
        try:
            lengths = [len(content.decode("utf-8")) + complete for content, complete in records]
            end = _end_of(text, window.decode("utf-8"), _starts(lengths), start)
        except UnicodeDecodeError:  # not text we wrote
            return None
        found = None if end is None else _bytes_of(folded, text, end)
    else:
        lengths = [len(content) + complete for content, complete in records]
        found = _end_of(folded, window, _starts(lengths), start)
    return None if found is None else _unfolded(source, found)


def _starts(lengths: list[int]) -> list[int]:
    """Where each record's content starts in the window, from the lengths of their contents."""
    starts, at = [], 0
    for length in lengths:
        starts.append(at)
        at += length
    return starts


def _end_of(content: AnyStr, window: AnyStr, starts: list[int], at_start: bool) -> int | None:
    """The end of the first ``window`` in ``content``, else of the longest tail of it (from a record start)
    that ``content`` starts with (if ``content`` is the file's start); None if neither."""
    at = content.find(window)
    if at >= 0:
        return at + len(window)
    if at_start:
        for begin in starts[1:]:
            if content.startswith(window[begin:]):
                return len(window) - begin
    return None


def _bytes_of(folded: bytes, text: str, end: int) -> int:
    """How many bytes of ``folded`` (decoded: ``text``) make the first ``end`` characters of ``text``.

    Every character is its UTF-8 encoding, except a U+FFFD: the three bytes of one the console wrote (a
    valid sequence is never replaced), else the one invalid byte it replaces.
    """
    length = 0
    runs = text[:end].split("\ufffd")
    for run in runs[:-1]:
        length += len(run.encode("utf-8"))
        length += 3 if folded.startswith(_REPLACEMENT, length) else 1
    return length + len(runs[-1].encode("utf-8"))


def _unfolded(source: bytes, length: int) -> int:
    """The offset in ``source`` whose content, CRLF folded, is the first ``length`` bytes of the folded
    content. A ``\\r\\n`` is counted once its ``\\n`` is inside; a ``\\r`` whose ``\\n`` is not stays
    after the offset, so that the assembler reading on from there folds the pair itself."""
    offset = length
    while True:
        after = length + source.count(b"\r\n", 0, offset + 1)
        if after == offset:
            return offset
        offset = after
