"""Container logs: compact storage and kubelet's rendering of ``GET .../pods/{name}/log``.

A log collector's correctness lives in the log parameters: a window computed with ``sinceTime``
that the API server truncates to whole seconds, ``tailLines`` that kubelet applies *before* the
time filter, ``limitBytes`` that counts the timestamp prefixes, ``previous`` after a restart,
``follow`` that ends when the container does. kmock has no notion of pod logs at all (it even
answers with ``application/octet-stream``, which clients reject), so this module keeps one store
per container run and renders it the way kubelet does.

Benchmarks keep tens of megabytes per virt-handler pod, so a run is stored as one ``bytearray`` of
newline-terminated lines plus two ``array`` columns (line end offsets, nanosecond timestamps):
about 16 bytes of overhead per line, and responses are streamed in bounded chunks.
"""

from __future__ import annotations

import asyncio
import bisect
import calendar
import json
import re
import time
from array import array
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .errors import ApiError, bad_request

CHUNK_BYTES = 256 * 1024
NANOS = 1_000_000_000

Stamp = datetime | int  # datetimes are taken as UTC if naive; ints are nanoseconds since the epoch


def to_nanos(stamp: Stamp | None) -> int:
    """Nanoseconds since the epoch; ``None`` means now."""
    if stamp is None:
        return time.time_ns()
    if isinstance(stamp, int):
        return stamp
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)
    whole = calendar.timegm(stamp.utctimetuple())
    return whole * NANOS + stamp.microsecond * 1000


_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(?:([Zz])|([+-])(\d{2}):(\d{2}))$"
)


def parse_rfc3339(text: str) -> int:
    """RFC 3339 (any fraction, ``Z`` or offset) to nanoseconds since the epoch."""
    match = _RFC3339.match(text)
    if match is None:
        raise ValueError(text)
    year, month, day, hour, minute, second = (int(part) for part in match.groups()[:6])
    fraction = int((match.group(7) or "").ljust(9, "0"))
    seconds = calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0))
    if match.group(9):
        offset = int(match.group(10)) * 3600 + int(match.group(11)) * 60
        seconds -= offset if match.group(9) == "+" else -offset
    return seconds * NANOS + fraction


def format_rfc3339_nano(nanos: int) -> str:
    """kubelet's fixed-width ``RFC3339NanoFixed``: always nine fraction digits."""
    seconds, fraction = divmod(nanos, NANOS)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{fraction:09d}Z"


def format_rfc3339_micro(nanos: int) -> str:
    """KubeVirt's log timestamps: microseconds, ``Z``."""
    seconds, fraction = divmod(nanos, NANOS)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{fraction // 1000:06d}Z"


class _PrefixFormatter:
    """Timestamp prefixes, formatting the date part once per second (lines come in time order)."""

    def __init__(self) -> None:
        self._second = -1
        self._date = b""

    def __call__(self, nanos: int) -> bytes:
        second, fraction = divmod(nanos, NANOS)
        if second != self._second:
            self._second = second
            self._date = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)).encode()
        return self._date + b".%09dZ " % fraction


class ContainerLog:
    """The log of one run of one container: lines, their timestamps, and a wake-up for followers.

    Lines are kept as kubelet's CRI files keep them, with their timestamp prefix already written, so
    the common request (``timestamps=true``, time-ordered log) is served as slices of one buffer.
    """

    __slots__ = ("_changed", "_data", "_ends", "_ordered", "_prefix", "_stamps", "closed")

    def __init__(self) -> None:
        self._data = bytearray()  # "<RFC3339NanoFixed> <line>\n" for every line
        self._ends = array("Q")
        self._stamps = array("q")
        self._ordered = True
        self._prefix = _PrefixFormatter()
        self._changed: asyncio.Event | None = None
        self.closed = False

    def __len__(self) -> int:
        return len(self._ends)

    @property
    def size(self) -> int:
        """Bytes of the lines without their timestamp prefixes (what ``timestamps=false`` returns)."""
        return len(self._data) - PREFIX_BYTES * len(self._ends)

    def append(self, nanos: int, line: bytes) -> None:
        """Add one line (without its newline), as the runtime would: a ``\r`` before it is dropped."""
        self.extend(((nanos, line),))

    def extend(self, entries: Iterable[tuple[int, bytes]]) -> None:
        """Add many ``(nanos, line)`` lines at once (benchmarks add millions)."""
        data, ends, stamps, prefix = self._data, self._ends, self._stamps, self._prefix
        last = stamps[-1] if stamps else None
        for nanos, line in entries:
            if line.endswith(b"\r"):
                line = line[:-1]
            if last is not None and nanos < last:
                self._ordered = False
            last = nanos
            data += prefix(nanos)
            data += line
            data += b"\n"
            ends.append(len(data))
            stamps.append(nanos)
        self._wake()

    def close(self) -> None:
        """The container stopped: no more lines, followers finish."""
        self.closed = True
        self._wake()

    def _wake(self) -> None:
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    async def wait(self) -> None:
        """Return once a line is appended or the run is closed."""
        if self._changed is None:
            self._changed = asyncio.Event()
        await self._changed.wait()

    def first_index(self, tail_lines: int | None, since: int | None) -> int:
        """Where a response starts: the tail first, then the time filter (as kubelet applies them)."""
        start = 0 if tail_lines is None else max(0, len(self) - tail_lines)
        if since is not None and self._ordered:
            start = max(start, bisect.bisect_left(self._stamps, since))
        return start

    def render(self, start: int, stop: int, *, timestamps: bool, since: int | None) -> Iterator[bytes]:
        """Chunks of lines ``[start, stop)``, optionally prefixed and filtered by time."""
        if since is None or self._ordered:
            for begin, end in self._aligned_chunks(start, stop):
                chunk = bytes(self._data[begin:end])
                yield chunk if timestamps else _PREFIXES.sub(b"", chunk)
        else:
            yield from self._line_chunks(start, stop, timestamps, since)

    def _offset(self, index: int) -> int:
        return self._ends[index - 1] if index > 0 else 0

    def _aligned_chunks(self, start: int, stop: int) -> Iterator[tuple[int, int]]:
        """Byte ranges of about CHUNK_BYTES that end on line ends (so prefixes can be stripped)."""
        while start < stop:
            begin = self._offset(start)
            end_index = min(stop, max(start + 1, bisect.bisect_right(self._ends, begin + CHUNK_BYTES)))
            yield begin, self._ends[end_index - 1]
            start = end_index

    def _line_chunks(self, start: int, stop: int, timestamps: bool, since: int | None) -> Iterator[bytes]:
        parts: list[bytes] = []
        size = 0
        begin = self._offset(start)
        for index in range(start, stop):
            end = self._ends[index]
            if since is None or self._stamps[index] >= since:
                line = bytes(self._data[begin if timestamps else begin + PREFIX_BYTES : end])
                parts.append(line)
                size += len(line)
                if size >= CHUNK_BYTES:
                    yield b"".join(parts)
                    parts, size = [], 0
            begin = end
        if parts:
            yield b"".join(parts)


PREFIX_BYTES = len("2006-01-02T15:04:05.000000000Z ")
_PREFIXES = re.compile(rb"^.{%d}" % PREFIX_BYTES, re.MULTILINE | re.DOTALL)


def split_lines(data: str | bytes) -> list[bytes]:
    """One entry per line of a text; a final newline does not start an extra empty line."""
    raw = data.encode() if isinstance(data, str) else bytes(data)
    if raw.endswith(b"\n"):
        raw = raw[:-1]
    return raw.split(b"\n")


# ---- request parameters ----------------------------------------------------------------------

_TRUE = {"1", "t", "T", "true", "TRUE", "True"}
_FALSE = {"0", "f", "F", "false", "FALSE", "False", ""}


def parse_bool(name: str, value: str | None) -> bool:
    if value is None:
        return False
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise bad_request(f'strconv.ParseBool: parsing "{value}": invalid syntax (for {name})')


def _parse_int(name: str, value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise bad_request(f'strconv.ParseInt: parsing "{value}": invalid syntax (for {name})') from None


@dataclass(frozen=True)
class PodLogOptions:
    """A pod log request's ``PodLogOptions`` after the API server's validation and conversion."""

    container: str | None = None
    follow: bool = False
    previous: bool = False
    timestamps: bool = False
    since: int | None = None  # nanoseconds; from sinceTime (whole seconds) or sinceSeconds
    tail_lines: int | None = None
    limit_bytes: int | None = None

    @classmethod
    def from_query(cls, query: dict[str, str], pod: str, now_nanos: int) -> PodLogOptions:
        since_seconds = _parse_int("sinceSeconds", query.get("sinceSeconds"))
        since_time = query.get("sinceTime")
        tail_lines = _parse_int("tailLines", query.get("tailLines"))
        limit_bytes = _parse_int("limitBytes", query.get("limitBytes"))
        problems = _validate(since_seconds, since_time, tail_lines, limit_bytes)
        if problems:
            raise ApiError(
                422,
                f'PodLogOptions "{pod}" is invalid: {", ".join(problems)}',
                reason="Invalid",
                details={"name": pod, "kind": "PodLogOptions"},
            )
        since: int | None = None
        if since_time is not None:
            since = _since_time(since_time)
        elif since_seconds is not None:
            since = now_nanos - since_seconds * NANOS
        return cls(
            container=query.get("container") or None,
            follow=parse_bool("follow", query.get("follow")),
            previous=parse_bool("previous", query.get("previous")),
            timestamps=parse_bool("timestamps", query.get("timestamps")),
            since=since,
            tail_lines=tail_lines,
            limit_bytes=limit_bytes,
        )


def _validate(
    since_seconds: int | None, since_time: str | None, tail: int | None, limit: int | None
) -> list[str]:
    problems: list[str] = []
    if since_seconds is not None and since_time is not None:
        problems.append("[]: Forbidden: at most one of `sinceTime` or `sinceSeconds` may be specified")
    if since_seconds is not None and since_seconds < 1:
        problems.append(f"sinceSeconds: Invalid value: {since_seconds}: must be greater than 0")
    if tail is not None and tail < 0:
        problems.append(f"tailLines: Invalid value: {tail}: must be greater than or equal to 0")
    if limit is not None and limit < 1:
        problems.append(f"limitBytes: Invalid value: {limit}: must be greater than 0")
    return problems


def _since_time(text: str) -> int:
    """The API server parses RFC 3339 but passes it on to kubelet at second precision."""
    try:
        nanos = parse_rfc3339(text)
    except ValueError:
        raise bad_request(
            f'parsing time "{text}" as "2006-01-02T15:04:05Z07:00": cannot parse "{text}" as RFC3339'
        ) from None
    return nanos - nanos % NANOS


# ---- realistic KubeVirt log lines --------------------------------------------------------------


def kubevirt_line(
    component: str,
    msg: str,
    *,
    time_nanos: int | None = None,
    level: str = "info",
    pos: str = "vm.go:1700",
    name: str | None = None,
    namespace: str | None = None,
    uid: str | None = None,
    kind: str | None = None,
    **extra: Any,
) -> str:
    """One JSON log line as KubeVirt components write them (keys sorted, microsecond timestamp)."""
    record: dict[str, Any] = {"component": component, "level": level, "msg": msg, "pos": pos}
    record["timestamp"] = format_rfc3339_micro(to_nanos(time_nanos))
    for key, value in (("kind", kind), ("name", name), ("namespace", namespace), ("uid", uid)):
        if value is not None:
            record[key] = value
    record.update(extra)
    return json.dumps(record, sort_keys=True, separators=(",", ":"))


def handler_line(
    msg: str,
    *,
    name: str | None = None,
    namespace: str | None = None,
    uid: str | None = None,
    time_nanos: int | None = None,
    level: str = "info",
    pos: str = "vm.go:1700",
) -> str:
    """A virt-handler line; with ``name``/``namespace``/``uid`` it is about that VMI."""
    kind = "VirtualMachineInstance" if name is not None else None
    return kubevirt_line(
        "virt-handler",
        msg,
        time_nanos=time_nanos,
        level=level,
        pos=pos,
        name=name,
        namespace=namespace,
        uid=uid,
        kind=kind,
    )


def launcher_line(
    msg: str,
    *,
    uid: str | None = None,
    time_nanos: int | None = None,
    level: str = "info",
    pos: str = "manager.go:1100",
) -> str:
    """A virt-launcher (``compute`` container) line about its own VMI."""
    return kubevirt_line("virt-launcher", msg, time_nanos=time_nanos, level=level, pos=pos, uid=uid)


def klog_line(
    msg: str,
    *,
    time_nanos: int | None = None,
    severity: str = "I",
    pid: int = 8123,
    source: str = "reflector.go:368",
) -> str:
    """A plain-text klog line (``I1123 10:00:00.123456    8123 file.go:12] msg``), as client-go writes."""
    nanos = to_nanos(time_nanos)
    seconds, fraction = divmod(nanos, NANOS)
    stamp = time.strftime("%m%d %H:%M:%S", time.gmtime(seconds))
    return f"{severity}{stamp}.{fraction // 1000:06d} {pid:7d} {source}] {msg}"


def iter_entries(entries: Iterable[tuple[Stamp | None, str | bytes]]) -> Iterator[tuple[int, bytes]]:
    """Normalise ``(time, text)`` pairs into ``(nanos, line)``; a multi-line text gives several lines."""
    for stamp, text in entries:
        nanos = to_nanos(stamp)
        for line in split_lines(text):
            yield nanos, line
