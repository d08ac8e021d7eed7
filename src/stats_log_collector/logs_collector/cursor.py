"""Where a log stream was left, and the exact boundary of the next window: pure arithmetic on bytes.

The API takes ``sinceTime`` at whole seconds only, so a cursor keeps the last line's time (nanoseconds)
and how many lines carry exactly that time, and the lines at or before it are dropped here. Why:
docs/logs-collector.md, "Exactly-once windows and cursors".
"""

from __future__ import annotations

import calendar
import dataclasses
import re
from typing import Any

NANOS = 1_000_000_000
LONG_LINE = 1024 * 1024  # a line longer than this is passed on in pieces, never held whole

_FIXED = re.compile(rb"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2})")
_seconds_cache: dict[bytes, int] = {}


@dataclasses.dataclass(frozen=True)
class Cursor:
    """Everything up to ``nanos`` is collected, including the first ``count`` lines stamped ``nanos``.

    ``restarts`` is the container's restart count the cursor belongs to (launcher streams): when it
    grows, the end of the previous run of the container is still to be read, with ``previous=true``.
    """

    nanos: int
    count: int = 0
    restarts: int = 0

    def to_json(self) -> dict[str, int]:
        return {"t": self.nanos, "n": self.count, "r": self.restarts}

    @classmethod
    def from_json(cls, data: Any) -> Cursor:
        return cls(int(data["t"]), int(data.get("n", 0)), int(data.get("r", 0)))

    @property
    def second(self) -> int:
        """The whole second to ask the API from (it drops fractions)."""
        return self.nanos // NANOS


def parse_stamp(stamp: bytes) -> int | None:
    """An RFC 3339 timestamp (kubelet's fixed nine digits, or any fraction and offset) in nanoseconds."""
    match = _FIXED.fullmatch(stamp)
    if match is None:
        return None
    head = stamp[:19]
    seconds = _seconds_cache.get(head)
    if seconds is None:
        year, month, day, hour, minute, second = (int(part) for part in match.groups()[:6])
        seconds = calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0))
        if len(_seconds_cache) > 4096:
            _seconds_cache.clear()
        _seconds_cache[head] = seconds
    zone = match.group(8)
    if zone != b"Z":
        offset = int(zone[1:3]) * 3600 + int(zone[4:6]) * 60
        seconds -= offset if zone[:1] == b"+" else -offset
    fraction = match.group(7) or b""
    return seconds * NANOS + int(fraction.ljust(9, b"0") or b"0")


def line_stamp(line: bytes, start: int = 0) -> tuple[bytes, int | None]:
    """The timestamp prefix of the line beginning at ``start`` (bytes) and its value."""
    space = line.find(b" ", start, start + 64)
    stamp = line[start:space] if space >= 0 else line[start : start + 64]
    return stamp, parse_stamp(stamp)


class Boundary:
    """Decides, line by line, where a window starts after ``cursor`` (see the module docstring)."""

    __slots__ = ("_equal_seen", "cursor", "open")

    def __init__(self, cursor: Cursor) -> None:
        self.cursor = cursor
        self.open = False  # once a line is past the cursor, every later line is too
        self._equal_seen = 0

    def passes(self, nanos: int | None) -> bool:
        if self.open:
            return True
        if nanos is None or nanos < self.cursor.nanos:
            return False  # an unstamped line before the window opens cannot be placed: it was collected
        if nanos == self.cursor.nanos:
            self._equal_seen += 1
            if self._equal_seen <= self.cursor.count:
                return False
        self.open = True
        return True


class EndTracker:
    """The cursor after the lines kept so far: the latest time seen and how many lines carry it.

    The latest, not the last: stdout and stderr are stamped by separate readers in the runtime, so a
    line may carry an earlier time than the one before it, and the cursor must never move back (the
    next window would repeat lines). kubelet's stamps are fixed-width (nine fraction digits, ``Z``),
    so comparing them as bytes orders them in time without parsing every line.
    """

    __slots__ = ("_best",)

    def __init__(self, start: Cursor) -> None:
        self._best = start

    def add_latest(self, stamps: list[bytes]) -> None:
        """The stamps of a block of kept lines: the latest of them moves the cursor."""
        latest = max(stamps)
        if parse_stamp(latest) is None:  # not a timestamp (a line the API sent unstamped): skip those
            stamps = [stamp for stamp in stamps if parse_stamp(stamp) is not None]
            if not stamps:
                return
            latest = max(stamps)
        self.add(latest, stamps.count(latest))

    def add(self, stamp: bytes, count: int = 1) -> None:
        """``count`` kept lines stamped ``stamp``, the latest of their block."""
        nanos = parse_stamp(stamp)
        best = self._best
        if nanos is None or nanos < best.nanos:
            return
        if nanos == best.nanos:
            self._best = Cursor(nanos, best.count + count, best.restarts)
        else:
            self._best = Cursor(nanos, count, best.restarts)

    def cursor(self) -> Cursor:
        return self._best


_STAMPS = re.compile(rb"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z) ", re.MULTILINE)
TAIL_BYTES = 2048


class WindowFilter:
    """One container's log, chunk by chunk: drops the lines up to the cursor, tracks the new cursor.

    ``feed`` returns the bytes to keep (whole lines, or pieces of a line longer than LONG_LINE); the
    bulk of a log is returned as it came, without looking at each line.
    """

    def __init__(self, start: Cursor) -> None:
        self.boundary = Boundary(start)
        self.end = EndTracker(start)
        self._carry = b""
        self._long: bool | None = None  # inside a long line: whether it is kept
        self.kept_bytes = 0

    def feed(self, chunk: bytes) -> bytes:
        out: list[bytes] = []
        if self._long is not None:
            newline = chunk.find(b"\n")
            if newline < 0:
                return self._keep([chunk] if self._long else [])
            if self._long:
                out.append(chunk[: newline + 1])
            chunk, self._long = chunk[newline + 1 :], None
        data = self._carry + chunk if self._carry else chunk
        cut = data.rfind(b"\n") + 1
        if cut:
            out.append(self._block(data[:cut]))
        rest = data[cut:]
        if len(rest) > LONG_LINE:
            kept = self._block(rest)
            self._long = bool(kept)
            out.append(kept)
            rest = b""
        self._carry = rest
        return self._keep(out)

    def finish(self) -> bytes:
        """The end of the stream: a last line without newline is a line; pieces get their newline."""
        out: list[bytes] = []
        if self._long:
            out.append(b"\n")
        elif self._carry:
            kept = self._block(self._carry)
            if kept:
                out += [kept, b"\n"]
        self._carry, self._long = b"", None
        return self._keep(out)

    def _keep(self, parts: list[bytes]) -> bytes:
        data = b"".join(parts)
        self.kept_bytes += len(data)
        return data

    def _block(self, block: bytes) -> bytes:
        """Whole lines (the last one may lack its newline); returns those after the boundary."""
        if not self.boundary.open:
            position = 0
            while position < len(block):
                _, nanos = line_stamp(block, position)
                if self.boundary.passes(nanos):
                    break
                newline = block.find(b"\n", position)
                position = len(block) if newline < 0 else newline + 1
            block = block[position:]
        if block:
            self._track_end(block)
        return block

    def _track_end(self, block: bytes) -> None:
        """The latest stamp among the last lines of the block (the runtime's stamps only go back by
        microseconds, when stdout and stderr interleave), and how many of those lines carry it."""
        if len(block) > TAIL_BYTES:
            block = block[block.rfind(b"\n", 0, len(block) - TAIL_BYTES) + 1 :]
        stamps = _STAMPS.findall(block)
        if stamps:
            self.end.add_latest(stamps)
