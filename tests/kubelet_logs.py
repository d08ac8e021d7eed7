"""A strict reader of the container log files kubelet serves, written from its grammar (kubernetes
pkg/kubelet/kuberuntime/logs/logs.go: parseCRILog, parseDockerJSONLog).

Tests use it to parse what our writers produced and to rebuild the original console text from it, so a
round trip proves both that kubelet can read every line and that nothing was lost, duplicated or altered.
It is deliberately independent of the writer (``virtlet_log.formats``): it shares no code with it, so a
mistake in one is not mirrored in the other.

The grammar, as kubelet applies it when serving ``kubectl logs``:

* The parser is chosen from the **first line** of the file, CRI text tried first, then docker JSON, and used
  for the whole file; a first line that neither accepts fails the request. So mixing formats in one file is an
  error here.
* CRI text: ``<timestamp> <stream> <tag> <content>\\n``, single spaces, the timestamp in Go's layout
  ``2006-01-02T15:04:05.999999999Z07:00`` (0 to 9 fraction digits, ``Z`` or ``±hh:mm``), the stream
  ``stdout`` or ``stderr``, the tag ``P`` (partial: the next piece continues the line) or ``F``; the
  content is raw bytes, unescaped. Even an empty content needs the space after the tag.
* Docker json-file: one JSON object per line with the string fields ``log``, ``stream`` and ``time``
  (RFC3339Nano); the ``log`` of a complete line ends with ``\\n``, a partial piece's does not.

Where kubelet is lenient and our writers have no reason to be, this checker is stricter, because its job is to
catch our mistakes: a CRI tag other than exactly ``P``/``F`` (kubelet treats anything but ``P`` as full and
ignores ``:``-separated extensions), more than 9 fraction digits or a ``,`` as decimal mark (Go's parser
accepts both), JSON that is not valid UTF-8 (Go would replace the bad bytes), unknown or duplicate JSON keys,
lone surrogate escapes, whitespace around the JSON object, and a file whose last line has no ``\\n``.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "CriEntry",
    "JsonEntry",
    "LogEntry",
    "LogFormat",
    "detect_format",
    "parse_cri_line",
    "parse_json_line",
    "parse_timestamp",
    "read_log_file",
    "rebuild",
]

LogFormat = Literal["cri", "json"]

_STREAMS = frozenset({"stdout", "stderr"})

# Go layout 2006-01-02T15:04:05.999999999Z07:00 (parsing: optional fraction; we allow 1-9 digits after ".").
_TIMESTAMP = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]{1,9}))?"
    r"(?:(Z)|([+-])([0-9]{2}):([0-9]{2}))",
    re.ASCII,
)
_EPOCH_ORDINAL = _dt.date(1970, 1, 1).toordinal()


def parse_timestamp(text: str) -> int:
    """Nanoseconds since the Unix epoch of an RFC3339Nano timestamp; ValueError if it is not one."""
    m = _TIMESTAMP.fullmatch(text)
    if m is None:
        raise ValueError(f"timestamp {text!r} does not match 2006-01-02T15:04:05.999999999Z07:00")
    year, month, day, hour, minute, second = (int(g) for g in m.group(1, 2, 3, 4, 5, 6))
    try:
        ordinal = _dt.date(year, month, day).toordinal()
    except ValueError as exc:
        raise ValueError(f"timestamp {text!r}: {exc}") from None
    if hour > 23 or minute > 59 or second > 59:
        raise ValueError(f"timestamp {text!r}: time of day out of range")
    offset = 0
    if m.group(8) is None:
        off_h, off_m = int(m.group(10)), int(m.group(11))
        if off_h > 23 or off_m > 59:
            raise ValueError(f"timestamp {text!r}: zone offset out of range")
        offset = (off_h * 3600 + off_m * 60) * (1 if m.group(9) == "+" else -1)
    fraction = m.group(7) or ""
    nanos = int(fraction.ljust(9, "0")) if fraction else 0
    seconds = (ordinal - _EPOCH_ORDINAL) * 86400 + hour * 3600 + minute * 60 + second - offset
    return seconds * 1_000_000_000 + nanos


@dataclass(frozen=True, slots=True)
class CriEntry:
    """One CRI text line. ``content`` excludes the line's ``\\n``."""

    time: str
    time_ns: int
    stream: str
    partial: bool
    content: bytes

    @property
    def text(self) -> bytes:
        """The console bytes this piece stands for: the content, plus ``\\n`` for a complete piece."""
        return self.content if self.partial else self.content + b"\n"


@dataclass(frozen=True, slots=True)
class JsonEntry:
    """One docker json-file line. ``log`` is the decoded field, ``\\n`` included for a complete piece."""

    time: str
    time_ns: int
    stream: str
    log: str

    @property
    def partial(self) -> bool:
        """A partial piece is a ``log`` without the trailing newline."""
        return not self.log.endswith("\n")

    @property
    def text(self) -> bytes:
        """The console text this piece stands for, as UTF-8."""
        return self.log.encode("utf-8")


LogEntry = CriEntry | JsonEntry


def _strip_newline(line: bytes) -> bytes:
    if line.endswith(b"\n"):
        line = line[:-1]
    if b"\n" in line:
        raise ValueError("more than one line given (a newline inside the line)")
    return line


def _cri_field(rest: bytes, name: str, line: bytes) -> tuple[bytes, bytes]:
    idx = rest.find(b" ")
    if idx < 0:
        raise ValueError(f"CRI line: {name} is not found (no space after it): {line[:80]!r}")
    return rest[:idx], rest[idx + 1 :]


def parse_cri_line(line: bytes) -> CriEntry:
    """Parse one CRI text line (with or without its ``\\n``); ValueError naming the first violation."""
    rest = _strip_newline(line)
    # Field by field, in kubelet's order: each must be followed by a single space.
    raw_time, rest = _cri_field(rest, "timestamp", line)
    try:
        time_text = raw_time.decode("ascii")
    except UnicodeDecodeError:
        raise ValueError(f"CRI line: timestamp {raw_time[:40]!r} is not ASCII") from None
    time_ns = parse_timestamp(time_text)
    raw_stream, rest = _cri_field(rest, "stream", line)
    stream = raw_stream.decode("latin-1")
    if stream not in _STREAMS:
        raise ValueError(f"CRI line: unexpected stream type {raw_stream[:40]!r} (stdout or stderr)")
    raw_tag, rest = _cri_field(rest, "tag", line)
    if raw_tag not in (b"P", b"F"):
        raise ValueError(f"CRI line: unexpected tag {raw_tag[:40]!r} (P or F)")
    return CriEntry(time=time_text, time_ns=time_ns, stream=stream, partial=raw_tag == b"P", content=rest)


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"JSON line: duplicate key {key!r}")
        result[key] = value
    return result


def _reject_constant(name: str) -> Any:
    raise ValueError(f"JSON line: {name} is not JSON")


def parse_json_line(line: bytes) -> JsonEntry:
    """Parse one docker json-file line (with or without its ``\\n``); ValueError names the first violation."""
    raw = _strip_newline(line)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"JSON line: not valid UTF-8 ({exc})") from None
    if not (text.startswith("{") and text.endswith("}")):
        raise ValueError(f"JSON line: not a bare JSON object: {text[:80]!r}")
    try:
        obj = json.loads(text, object_pairs_hook=_reject_duplicates, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise ValueError(f"JSON line: {exc}") from None
    if not isinstance(obj, dict):  # pragma: no cover - excluded by the braces check
        raise ValueError("JSON line: not an object")
    unknown = set(obj) - {"log", "stream", "time", "attrs"}
    if unknown:
        raise ValueError(f"JSON line: unknown keys {sorted(unknown)}")
    for key in ("log", "stream", "time"):
        if key not in obj:
            raise ValueError(f"JSON line: missing {key!r}")
        if not isinstance(obj[key], str):
            raise ValueError(f"JSON line: {key!r} is not a string")
    if "attrs" in obj and not (
        isinstance(obj["attrs"], dict) and all(isinstance(v, str) for v in obj["attrs"].values())
    ):
        raise ValueError("JSON line: 'attrs' is not an object of strings")
    log: str = obj["log"]
    try:
        log.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("JSON line: 'log' holds a lone surrogate escape") from None
    if obj["stream"] not in _STREAMS:
        raise ValueError(f"JSON line: unexpected stream {obj['stream']!r} (stdout or stderr)")
    time_ns = parse_timestamp(obj["time"])
    return JsonEntry(time=obj["time"], time_ns=time_ns, stream=obj["stream"], log=log)


def detect_format(first_line: bytes) -> LogFormat:
    """The parser kubelet picks from a file's first line: CRI if it parses, else JSON, else ValueError."""
    try:
        parse_cri_line(first_line)
    except ValueError as cri_error:
        try:
            parse_json_line(first_line)
        except ValueError as json_error:
            raise ValueError(
                f"first line is neither CRI text ({cri_error}) nor docker JSON ({json_error})"
            ) from None
        return "json"
    return "cri"


def read_log_file(
    source: bytes | str | os.PathLike[str], *, expect: LogFormat | None = None
) -> list[LogEntry]:
    """Check and parse a whole log file: ``bytes`` are its contents, ``str``/path a file to read.

    The format comes from the first line (``expect``, if given, must be it) and every line must parse with
    it; the file must end with ``\\n``. An empty file gives an empty list. Errors name the line (from 1).
    """
    if isinstance(source, bytes):
        data = source
    else:
        with open(source, "rb") as f:
            data = f.read()
    if not data:
        return []
    if not data.endswith(b"\n"):
        raise ValueError("log file does not end with a newline (last line incomplete)")
    lines = data[:-1].split(b"\n")
    fmt = detect_format(lines[0])
    if expect is not None and fmt != expect:
        raise ValueError(f"log file is in {fmt} format, expected {expect}")
    parse = parse_cri_line if fmt == "cri" else parse_json_line
    entries: list[LogEntry] = []
    for number, line in enumerate(lines, start=1):
        try:
            entries.append(parse(line))
        except ValueError as exc:
            raise ValueError(f"line {number} (file in {fmt} format): {exc}") from None
    return entries


def rebuild(entries: Iterable[LogEntry]) -> bytes:
    """Join pieces back into the console text: partial pieces concatenated, complete ones ending in ``\\n``.

    CRI entries give the raw bytes; JSON entries give UTF-8 text. Entries of both kinds together are an error.
    """
    kinds: set[type] = set()
    parts: list[bytes] = []
    for entry in entries:
        kinds.add(type(entry))
        parts.append(entry.text)
    if len(kinds) > 1:
        raise ValueError("cannot rebuild from a mix of CRI and JSON entries")
    return b"".join(parts)
